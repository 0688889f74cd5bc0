"""Standalone activation kernels against the reference."""
import numpy as np
import pytest

from fastlayers import _reference as R
from fastlayers import ops
from fastlayers._kernels import activations as K

DTYPES = [np.dtype(np.float32), np.dtype(np.float64)]
SHAPES = {"1x1": (1, 1), "batch1": (1, 13), "odd": (7, 13), "empty": (0, 5),
          "parallel": (181, 191)}
LAYOUTS = ["contig", "noncontig", "readonly"]
ACTIVATIONS = sorted(ops.ACTIVATIONS)
# The large (OpenMP) shape on contiguous input only: the layouts are copied
# to contiguous memory before the kernel, so they exercise the wrappers.
CASES = [pytest.param(dt, shape, layout, id=f"{dt.name}-{name}-{layout}")
         for dt in DTYPES for name, shape in SHAPES.items() for layout in LAYOUTS
         if name != "parallel" or layout == "contig"]
C = np.ascontiguousarray


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("dtype,shape,layout", CASES)
def test_activation_forward_matches_reference(dtype, shape, layout, activation, make, close):
    X = 3 * make(shape, dtype, layout)
    Y = ops.activation_forward(X, activation)
    expected = np.empty(shape, dtype)
    R.activation_forward(C(X), expected, ops.ACTIVATIONS[activation])
    close(Y, expected)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("dtype,shape,layout", CASES)
def test_activation_backward_matches_reference(dtype, shape, layout, activation, make, close):
    X = 3 * make(shape, dtype)
    Y = ops.activation_forward(X, activation)
    dY = make(shape, dtype, layout)
    dX = ops.activation_backward(Y, dY, activation, X=X)
    expected = np.empty(shape, dtype)
    R.activation_backward(Y, C(dY), expected, ops.ACTIVATIONS[activation], X)
    close(dX, expected)


def test_sigmoid_and_softmax_do_not_overflow():
    X = np.array([[-1000.0, 0.0, 1000.0]], np.float32)
    np.testing.assert_array_equal(ops.activation_forward(X, "sigmoid"), [[0.0, 0.5, 1.0]])
    np.testing.assert_array_equal(ops.activation_forward(X, "softmax"), [[0.0, 0.0, 1.0]])


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_nan_propagates(activation):
    # A diverging model should show NaN, not have it silently turned into 0.
    X = np.array([[np.nan, 1.0]])
    assert np.isnan(ops.activation_forward(X, activation)[0, 0])
    assert np.isnan(ops.dense_forward(X, np.eye(2), activation=activation)[0, 0])


def test_activations_in_place_and_over_leading_axes(make, close):
    X = make((2, 3, 4), np.float64)
    expected = np.empty((6, 4))
    R.activation_forward(X.reshape(6, 4), expected, ops.ACTIVATIONS["softmax"])
    Y = ops.activation_forward(X, "softmax", out=X)
    assert Y is X
    close(X.reshape(6, 4), expected)
    assert ops.activation_forward(np.zeros(3), "softmax").shape == (3,)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_raw_activation_kernels_accept_readonly_inputs(dtype, make, close):
    X = make((7, 13), dtype, "readonly")
    Y = np.empty_like(X)
    K.activation_forward(X, Y, K.TANH)
    close(Y, np.tanh(X))
    Y.setflags(write=False)
    dX = np.empty_like(X)
    K.activation_backward(Y, X, dX, K.TANH)
    close(dX, X * (1 - Y * Y))
    with pytest.raises(ValueError, match="unknown activation"):
        K.activation_forward(X, dX, K.COUNT)
    with pytest.raises(ValueError, match="needs Z"):
        K.activation_backward(Y, X, dX, ops.ACTIVATIONS["gelu"])
