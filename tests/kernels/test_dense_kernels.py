"""Dense kernels (ops.dense_*) against the NumPy reference."""
import itertools

import numpy as np
import pytest

from fastlayers import _reference as R
from fastlayers import ops
from fastlayers._kernels import dense as K

DTYPES = [np.dtype(np.float32), np.dtype(np.float64)]
# (n, d_in, units)
SHAPES = {"1x1": (1, 1, 1), "batch1": (1, 5, 3), "odd": (7, 13, 11), "empty": (0, 4, 3)}
LAYOUTS = ["contig", "noncontig", "readonly"]
ACTIVATIONS = ["linear", "relu", "sigmoid", "tanh", "softmax"]
CASES = [pytest.param(dt, shape, layout, id=f"{dt.name}-{name}-{layout}")
         for dt in DTYPES for name, shape in SHAPES.items() for layout in LAYOUTS]
C = np.ascontiguousarray


def reference_forward(X, W, b, activation):
    Y = np.empty((X.shape[0], W.shape[1]), X.dtype)
    R.dense_forward(C(X), C(W), None if b is None else C(b), Y, ops.ACTIVATIONS[activation])
    return Y


def reference_backward(X, W, Y, dY, activation, dW=None, db=None, accumulate=False):
    dZ = np.empty(dY.shape, dY.dtype)
    dX = np.empty(X.shape, X.dtype)
    dW = np.empty(W.shape, W.dtype) if dW is None else dW.copy()
    db = np.empty(W.shape[1], W.dtype) if db is None else db.copy()
    R.dense_backward(C(X), C(W), C(Y), C(dY), dZ, dX, dW, db, ops.ACTIVATIONS[activation],
                     accumulate)
    return dX, dW, db


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("dtype,shape,layout", CASES)
def test_dense_forward_matches_reference(dtype, shape, layout, activation, make, close):
    n, d_in, units = shape
    X, W, b = make((n, d_in), dtype, layout), make((d_in, units), dtype, layout), \
        make((units,), dtype, layout)
    Y = ops.dense_forward(X, W, b, activation)
    assert Y.dtype == dtype and Y.shape == (n, units) and Y.flags.c_contiguous
    close(Y, reference_forward(X, W, b, activation))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_dense_forward_without_bias_and_into_out(dtype, make, close):
    X, W = make((7, 13), dtype), make((13, 11), dtype)
    out = np.full((7, 11), np.nan, dtype)
    Y = ops.dense_forward(X, W, None, None, out=out)
    assert Y is out
    close(Y, reference_forward(X, W, None, "linear"))


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("dtype,shape,layout", CASES)
def test_dense_backward_matches_reference(dtype, shape, layout, activation, make, close):
    n, d_in, units = shape
    X, W = make((n, d_in), dtype, layout), make((d_in, units), dtype, layout)
    Y = reference_forward(X, W, make((units,), dtype), activation)
    if layout == "readonly":
        Y.setflags(write=False)
    dY = make((n, units), dtype, layout)
    dY_before = dY.copy()
    dX, dW, db = ops.dense_backward(X, W, Y, dY, activation)
    eX, eW, eb = reference_backward(X, W, Y, dY, activation)
    close(dX, eX)
    close(dW, eW)
    close(db, eb)
    np.testing.assert_array_equal(dY, dY_before)  # dY is the caller's: never written


@pytest.mark.parametrize("want", list(itertools.product([True, False], repeat=3)),
                         ids=lambda w: "".join("x" if f else "-" for f in w))
def test_dense_backward_skipped_outputs(want, make, close):
    want_dX, want_dW, want_db = want
    dtype = np.dtype(np.float64)
    X, W, dY = make((7, 13), dtype), make((13, 11), dtype), make((7, 11), dtype)
    Y = reference_forward(X, W, None, "relu")
    got = ops.dense_backward(X if want_dW else None, W, Y, dY, "relu", want_dX=want_dX,
                             want_dW=want_dW, want_db=want_db)
    for value, wanted, expected in zip(got, want, reference_backward(X, W, Y, dY, "relu")):
        if wanted:
            close(value, expected)
        else:
            assert value is None


@pytest.mark.parametrize("shape", [SHAPES["odd"], SHAPES["empty"]], ids=["odd", "empty"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_dense_backward_accumulate_adds_into_buffers(dtype, shape, make, close):
    n, d_in, units = shape
    X, W, dY = make((n, d_in), dtype), make((d_in, units), dtype), make((n, units), dtype)
    Y = reference_forward(X, W, None, "tanh")
    dW0, db0 = make((d_in, units), dtype), make((units,), dtype)
    dW, db = dW0.copy(), db0.copy()
    _, got_dW, got_db = ops.dense_backward(X, W, Y, dY, "tanh", want_dX=False, dW=dW, db=db,
                                           accumulate=True)
    assert got_dW is dW and got_db is db
    _, eW, eb = reference_backward(X, W, Y, dY, "tanh", dW0, db0, accumulate=True)
    close(dW, eW)
    close(db, eb)
    # Twice the same batch is the gradient of a layer used twice (R8).
    _, fresh_W, fresh_b = reference_backward(X, W, Y, dY, "tanh")
    ops.dense_backward(X, W, Y, dY, "tanh", want_dX=False, dW=dW, db=db, accumulate=True)
    close(dW, dW0 + 2 * fresh_W, scale=4)
    close(db, db0 + 2 * fresh_b, scale=4)


@pytest.mark.parametrize("activation", ["linear", "softmax"])
def test_dense_backward_uses_given_scratch(activation, make, close):
    dtype = np.dtype(np.float32)
    X, W, dY = make((7, 13), dtype), make((13, 11), dtype), make((7, 11), dtype)
    Y = reference_forward(X, W, None, activation)
    dZ = np.empty_like(dY)
    dX, dW, db = ops.dense_backward(X, W, Y, dY, activation, dZ=dZ)
    expected = np.empty_like(dY)
    R.dense_backward(X, W, Y, dY, expected, None, None, None, ops.ACTIVATIONS[activation], False)
    close(dZ, expected)
    close(db, reference_backward(X, W, Y, dY, activation)[2])


def test_dense_backward_linear_needs_no_Y(make, close):
    dtype = np.dtype(np.float64)
    X, W, dY = make((7, 13), dtype), make((13, 11), dtype), make((7, 11), dtype)
    got = ops.dense_backward(X, W, None, dY)
    for value, expected in zip(got, reference_backward(X, W, dY, dY, "linear")):
        close(value, expected)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_dense_handles_leading_axes(dtype, make, close):
    X, W, b = make((2, 3, 5), dtype), make((5, 4), dtype), make((4,), dtype)
    Y = ops.dense_forward(X, W, b, "sigmoid")
    assert Y.shape == (2, 3, 4)
    close(Y.reshape(6, 4), reference_forward(X.reshape(6, 5), W, b, "sigmoid"))
    dY = make((2, 3, 4), dtype)
    dX, dW, db = ops.dense_backward(X, W, Y, dY, "sigmoid")
    assert dX.shape == X.shape
    expected = reference_backward(X.reshape(6, 5), W, Y.reshape(6, 4), dY.reshape(6, 4),
                                  "sigmoid")
    close(dX.reshape(6, 5), expected[0])
    close(dW, expected[1])
    close(db, expected[2])


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_raw_dense_kernels_accept_readonly_inputs(dtype, make, close):
    X, W, b, dY = (make(s, dtype, "readonly") for s in [(7, 13), (13, 11), (11,), (7, 11)])
    Y = np.empty((7, 11), dtype)
    K.dense_forward(X, W, b, Y, K.TANH)
    close(Y, reference_forward(X, W, b, "tanh"))
    Y.setflags(write=False)
    dZ, dX, dW, db = (np.empty(s, dtype) for s in [(7, 11), (7, 13), (13, 11), (11,)])
    K.dense_backward(X, W, Y, dY, dZ, dX, dW, db, K.TANH, False)
    for value, expected in zip((dX, dW, db), reference_backward(X, W, Y, dY, "tanh")):
        close(value, expected)


def test_raw_dense_backward_dZ_may_alias_dY(make, close):
    dtype = np.dtype(np.float64)
    X, W, dY = make((7, 13), dtype), make((13, 11), dtype), make((7, 11), dtype)
    Y = reference_forward(X, W, None, "softmax")
    expected = reference_backward(X, W, Y, dY, "softmax")
    dX, dW, db = np.empty((7, 13)), np.empty((13, 11)), np.empty(11)
    K.dense_backward(X, W, Y, dY, dY, dX, dW, db, K.SOFTMAX, False)
    for value, exp in zip((dX, dW, db), expected):
        close(value, exp)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_dense_backward_matches_finite_differences(activation, rng):
    # float64, loss = sum(Rnd * dense_forward(X)): its gradient w.r.t. Y is Rnd.
    X, W, b = rng.standard_normal((3, 4)), rng.standard_normal((4, 5)), rng.standard_normal(5)
    Rnd = rng.standard_normal((3, 5))

    def loss(X_, W_, b_):
        return float((Rnd * ops.dense_forward(X_, W_, b_, activation)).sum())

    Y = ops.dense_forward(X, W, b, activation)
    dX, dW, db = ops.dense_backward(X, W, Y, Rnd, activation)
    h = 1e-6
    for arr, grad, which in ((X, dX, 0), (W, dW, 1), (b, db, 2)):
        numeric = np.zeros_like(arr)
        for idx in np.ndindex(arr.shape):
            args = [X.copy(), W.copy(), b.copy()]
            args[which][idx] += h
            up = loss(*args)
            args[which][idx] -= 2 * h
            numeric[idx] = (up - loss(*args)) / (2 * h)
        np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)
