"""Activations with run-time parameters (ReLU/ELU/PReLU/Softmax layers) against the reference."""
import numpy as np
import pytest

from fastlayers import _reference as R
from fastlayers import ops

DTYPES = [np.dtype(np.float32), np.dtype(np.float64)]
LAYOUTS = ["contig", "noncontig", "readonly"]
RELU_PARAMS = [(0.0, None, 0.0), (0.1, None, 0.0), (0.0, 6.0, 0.0), (0.1, 1.5, 0.5),
               (0.0, None, -0.5), (0.3, 2.0, -1.0)]
C = np.ascontiguousarray


@pytest.mark.parametrize("params", RELU_PARAMS, ids=lambda p: "-".join(map(str, p)))
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_relu_matches_reference(dtype, layout, params, make, close):
    X, dY = 3 * make((7, 13), dtype, layout), make((7, 13), dtype, layout)
    s, m, t = params
    mm = np.inf if m is None else m
    Y, eY = ops.relu_forward(X, s, m, t), np.empty((7, 13), dtype)
    R.relu_forward(C(X), eY, s, mm, t)
    close(Y, eY)
    dX, edX = ops.relu_backward(X, dY, s, m, t), np.empty((7, 13), dtype)
    R.relu_backward(C(X), C(dY), edX, s, mm, t)
    close(dX, edX)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_elu_and_prelu_match_reference(dtype, layout, make, close):
    X, dY = 2 * make((5, 3, 4), dtype, layout), make((5, 3, 4), dtype, layout)
    e = np.empty((5, 3, 4), dtype)
    R.elu_forward(C(X), e, 0.7)
    close(ops.elu_forward(X, 0.7), e)
    R.elu_backward(C(X), C(dY), e, 0.7)
    close(ops.elu_backward(X, dY, 0.7), e)
    alpha = make((1, 4), dtype)  # shared along axis 1
    full = np.broadcast_to(alpha, (3, 4)).reshape(-1).copy()
    X2, dY2 = C(X).reshape(5, 12), C(dY).reshape(5, 12)
    eY = np.empty((5, 12), dtype)
    R.prelu_forward(X2, full, eY)
    close(ops.prelu_forward(X, alpha).reshape(5, 12), eY)
    edX, eda = np.empty((5, 12), dtype), np.empty(12, dtype)
    R.prelu_backward(X2, full, dY2, edX, eda)
    dX, da = ops.prelu_backward(X, alpha, dY)
    close(dX.reshape(5, 12), edX)
    assert da.shape == (1, 4)
    close(da, eda.reshape(3, 4).sum(axis=0, keepdims=True), scale=4)


@pytest.mark.parametrize("axis", [-1, 1, (1, 2), 0])
def test_softmax_over_axes(axis, make, close):
    X, dY = make((3, 4, 5), np.float64), make((3, 4, 5), np.float64)
    Y = ops.softmax_forward(X, axis)
    e = np.exp(X - X.max(axis=axis, keepdims=True))
    close(Y, e / e.sum(axis=axis, keepdims=True))
    close(ops.softmax_backward(Y, dY, axis), Y * (dY - (dY * Y).sum(axis=axis, keepdims=True)))


def test_param_act_errors():
    x = np.ones((2, 3))
    with pytest.raises(ValueError, match="relu_forward: max_value must be None or a number"):
        ops.relu_forward(x, max_value=-1)
    with pytest.raises(ValueError, match="relu_backward: dY has shape"):
        ops.relu_backward(x, np.ones((3, 2)))
    with pytest.raises(ValueError, match="prelu_forward: alpha of shape"):
        ops.prelu_forward(x, np.ones(4))
    with pytest.raises(ValueError, match="softmax_forward: axis"):
        ops.softmax_forward(x, 2)
