"""The activations after code 4: Keras's definitions, fused into Dense, gradients."""
import numpy as np
import pytest

from fastlayers import _act_codes
from fastlayers import _reference as R
from fastlayers import ops

NEW = ["gelu", "leaky_relu", "elu", "selu", "silu", "swish", "softplus", "softsign",
       "hard_sigmoid", "relu6", "exponential", "mish", "log_softmax"]
DTYPES = [np.dtype(np.float32), np.dtype(np.float64)]
C = np.ascontiguousarray


def test_definitions_match_keras_formulas():
    from scipy.special import erf
    x = np.linspace(-7, 7, 57)[None]
    sig = 1 / (1 + np.exp(-x))
    sp = np.log1p(np.exp(x))
    expected = {
        "gelu": 0.5 * x * (1 + erf(x / np.sqrt(2))),
        "leaky_relu": np.where(x >= 0, x, 0.2 * x),
        "elu": np.where(x > 0, x, np.exp(x) - 1),
        "selu": 1.0507009873554805 * np.where(x > 0, x, 1.6732632423543772 * (np.exp(x) - 1)),
        "silu": x * sig, "swish": x * sig,
        "softplus": sp,
        "softsign": x / (1 + np.abs(x)),
        "hard_sigmoid": np.clip(x + 3, 0, 6) / 6,
        "relu6": np.clip(x, 0, 6),
        "exponential": np.exp(x),
        "mish": x * np.tanh(sp),
        "log_softmax": x - np.log(np.exp(x).sum(axis=-1, keepdims=True)),
    }
    for name, value in expected.items():
        np.testing.assert_allclose(ops.activation_forward(x, name), value, rtol=1e-12,
                                   atol=1e-14, err_msg=name)


@pytest.mark.parametrize("name", NEW)
def test_backward_matches_finite_differences(name, rng):
    # Away from the kinks (0, +-3, 6) so central differences are exact enough.
    x = rng.uniform(-5, 7, (4, 9))
    for kink in (0.0, -3.0, 3.0, 6.0):
        x = np.where(np.abs(x - kink) < 1e-3, x + 0.01, x)
    r = rng.standard_normal(x.shape)
    y = ops.activation_forward(x, name)
    g = ops.activation_backward(y, r, name, X=x)
    h = 1e-6
    num = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        num[idx] = ((r * ops.activation_forward(xp, name)).sum()
                    - (r * ops.activation_forward(xm, name)).sum()) / (2 * h)
    # The sum reaches ~1e3 (exponential), so differences carry ~1e-7 of rounding.
    np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", NEW)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_dense_fused_matches_reference(name, dtype, make, close):
    X, W, b = make((7, 13), dtype, "noncontig"), make((13, 11), dtype), make((11,), dtype)
    code = ops.ACTIVATIONS[name]
    Y, Z = ops.dense_forward(X, W, b, name, Z=True)
    eY, eZ = np.empty((7, 11), dtype), np.empty((7, 11), dtype)
    R.dense_forward(C(X), W, b, eY, code, eZ)
    close(Y, eY, scale=4)
    close(Z, eZ)
    np.testing.assert_array_equal(ops.dense_forward(X, W, b, name), Y)
    dY = make((7, 11), dtype, "readonly")
    dX, dW, db = ops.dense_backward(X, W, Y, dY, name, Z=Z)
    edZ, edX, edW, edb = (np.empty(s, dtype) for s in [(7, 11), (7, 13), (13, 11), (11,)])
    R.dense_backward(C(X), W, Y, dY, edZ, edX, edW, edb, code, False, Z)
    close(dX, edX, scale=4)
    close(dW, edW, scale=4)
    close(db, edb, scale=4)


def test_needs_input_names():
    assert _act_codes.NEEDS_INPUT == {"gelu", "silu", "swish", "mish"}


def test_extreme_inputs_stay_finite():
    x = np.array([[-1e4, -50.0, 0.0, 50.0, 1e4]], np.float32)
    for name in NEW:
        if name == "exponential":
            continue
        y = ops.activation_forward(x, name)
        assert np.all(np.isfinite(y)), name
        g = ops.activation_backward(y, np.ones_like(x), name, X=x)
        assert np.all(np.isfinite(g)), name


@pytest.mark.parametrize("name", NEW)
def test_nan_propagates(name):
    X = np.array([[np.nan, 1.0]])
    assert np.isnan(ops.activation_forward(X, name)[0, 0])
