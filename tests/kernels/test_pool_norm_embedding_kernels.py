"""Pooling, layer normalization and embedding kernels against the NumPy reference."""
import numpy as np
import pytest

from fastlayers import _reference as R
from fastlayers import ops

DTYPES = [np.dtype(np.float32), np.dtype(np.float64)]
LAYOUTS = ["contig", "noncontig", "readonly"]
# name: (n, h, w, c, pool_size, strides, padding)
POOLS = {
    "2x2": (2, 6, 7, 3, (2, 2), None, "valid"),
    "2x2-same-odd": (2, 5, 7, 3, (2, 2), None, "same"),
    "3x3-stride2-same": (1, 7, 6, 2, (3, 3), 2, "same"),
    "stride>pool": (2, 9, 8, 2, (2, 2), 3, "valid"),
    "1x1": (2, 4, 4, 5, (1, 1), None, "valid"),
    "uneven": (3, 6, 5, 1, (3, 2), (1, 2), "same"),
    "global": (2, 5, 4, 3, (5, 4), None, "valid"),
    "1d": (2, 1, 9, 3, (1, 3), (1, 2), "same"),
}
CASES = [pytest.param(dt, g, layout, id=f"{dt.name}-{name}-{layout}")
         for dt in DTYPES for name, g in POOLS.items() for layout in LAYOUTS]
C = np.ascontiguousarray


def _geom(g):
    n, h, w, c, pool, strides, padding = g
    return ops._pool_geometry("t", (h, w), pool, strides, padding)


@pytest.mark.parametrize("dtype,g,layout", CASES)
def test_max_pool_matches_reference(dtype, g, layout, make, close):
    n, h, w, c, pool, strides, padding = g
    X = make((n, h, w, c), dtype, layout)
    Y, arg = ops.max_pool2d_forward(X, pool, strides, padding)
    oh, ow, ph, pw, sh, sw, pt, pl = _geom(g)
    eY, earg = np.empty((n, oh, ow, c), dtype), np.empty((n, oh, ow, c), np.int64)
    R.max_pool2d_forward(C(X), eY, earg, ph, pw, sh, sw, pt, pl)
    np.testing.assert_array_equal(Y, eY)
    np.testing.assert_array_equal(arg, earg)
    dY = make(Y.shape, dtype, layout)
    dX = ops.max_pool2d_backward(dY, arg, X.shape)
    edX = np.empty(X.shape, dtype)
    R.max_pool2d_backward(C(dY), earg, edX)
    close(dX, edX)


@pytest.mark.parametrize("dtype,g,layout", CASES)
def test_avg_pool_matches_reference(dtype, g, layout, make, close):
    n, h, w, c, pool, strides, padding = g
    X = make((n, h, w, c), dtype, layout)
    Y = ops.avg_pool2d_forward(X, pool, strides, padding)
    oh, ow, ph, pw, sh, sw, pt, pl = _geom(g)
    eY = np.empty((n, oh, ow, c), dtype)
    R.avg_pool2d_forward(C(X), eY, ph, pw, sh, sw, pt, pl)
    close(Y, eY)
    dY = make(Y.shape, dtype, layout)
    dX = ops.avg_pool2d_backward(dY, X.shape, pool, strides, padding)
    edX = np.empty(X.shape, dtype)
    R.avg_pool2d_backward(C(dY), edX, ph, pw, sh, sw, pt, pl)
    close(dX, edX)


def test_same_average_pooling_ignores_padding():
    X = np.ones((1, 3, 3, 1))
    np.testing.assert_array_equal(ops.avg_pool2d_forward(X, 2, None, "same"), 1.0)
    Y, _ = ops.max_pool2d_forward(-np.ones((1, 3, 3, 1)), 2, None, "same")
    np.testing.assert_array_equal(Y, -1.0)  # padding is not a 0 that could win


def test_max_pool_ties_go_to_the_first_and_nan_propagates():
    X = np.zeros((1, 2, 2, 1))
    Y, arg = ops.max_pool2d_forward(X, 2)
    assert arg[0, 0, 0, 0] == 0
    X[0, 1, 0, 0] = np.nan
    assert np.isnan(ops.max_pool2d_forward(X, 2)[0]).all()


@pytest.mark.parametrize("call, message", [
    (lambda: ops.max_pool2d_forward(np.ones((2, 3, 3)), 2), "max_pool2d_forward: X must be 4-D"),
    (lambda: ops.max_pool2d_forward(np.ones((1, 3, 3, 1)), 0), "pool_size must be positive"),
    (lambda: ops.avg_pool2d_forward(np.ones((1, 3, 3, 1)), 2, padding="causal"), "padding"),
    (lambda: ops.max_pool2d_backward(np.ones((1, 1, 1, 1)), np.zeros((1, 1, 1, 2), np.int64),
                                     (1, 2, 2, 1)), "argmax has shape"),
    (lambda: ops.avg_pool2d_backward(np.ones((1, 2, 1, 1)), (1, 2, 2, 1), 2), "dY has shape"),
])
def test_pool_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ---------------------------------------------------------------------------- layer norm
LN_SHAPES = {"odd": (7, 13), "batch1": (1, 5), "one-feature": (4, 1), "3d": (2, 3, 9),
             "wide": (3, 150)}
LN_CASES = [pytest.param(dt, s, layout, id=f"{dt.name}-{name}-{layout}")
            for dt in DTYPES for name, s in LN_SHAPES.items() for layout in LAYOUTS]


def _ln_reference(X, gamma, beta, eps):
    X2 = C(X).reshape(-1, X.shape[-1])
    Y = np.empty(X2.shape, X.dtype)
    mean, inv = np.empty(X2.shape[0], X.dtype), np.empty(X2.shape[0], X.dtype)
    R.layernorm_forward(X2, gamma, beta, eps, Y, mean, inv)
    return Y.reshape(X.shape), mean, inv


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("dtype,shape,layout", LN_CASES)
def test_layernorm_matches_reference(dtype, shape, layout, affine, make, close):
    X = 3 * make(shape, dtype, layout) + 1
    d = shape[-1]
    gamma = make((d,), dtype, layout) if affine else None
    beta = make((d,), dtype, layout) if affine else None
    Y, mean, inv = ops.layernorm_forward(X, gamma, beta, 1e-3)
    eY, emean, einv = _ln_reference(X, None if gamma is None else C(gamma),
                                    None if beta is None else C(beta), 1e-3)
    close(Y, eY)
    close(mean.reshape(-1), emean)
    close(inv.reshape(-1), einv)
    dY = make(shape, dtype, layout)
    dX, dg, db = ops.layernorm_backward(X, dY, gamma, mean, inv)
    X2, dY2 = C(X).reshape(-1, d), C(dY).reshape(-1, d)
    edX, edg, edb = np.empty(X2.shape, dtype), np.empty(d, dtype), np.empty(d, dtype)
    R.layernorm_backward(X2, dY2, None if gamma is None else C(gamma), emean, einv, edX, edg,
                         edb, False)
    close(dX.reshape(-1, d), edX, scale=10)
    close(dg, edg, scale=4)
    close(db, edb, scale=4)


def test_layernorm_accumulates_and_skips(make, close):
    X, dY, g = make((5, 7), np.float64), make((5, 7), np.float64), make((7,), np.float64)
    _, mean, inv = ops.layernorm_forward(X, g, None, 1e-3)
    _, dg, db = ops.layernorm_backward(X, dY, g, mean, inv)
    acc_g, acc_b = np.ones(7), np.ones(7)
    dX, rg, rb = ops.layernorm_backward(X, dY, g, mean, inv, want_dX=False,
                                        accumulate_into=(acc_g, acc_b))
    assert dX is None and rg is acc_g and rb is acc_b
    close(acc_g, 1 + dg)
    close(acc_b, 1 + db)


def test_layernorm_matches_finite_differences(rng):
    X, g, b = rng.standard_normal((3, 6)), rng.standard_normal(6), rng.standard_normal(6)
    Rn = rng.standard_normal((3, 6))
    Y, mean, inv = ops.layernorm_forward(X, g, b, 1e-3)
    grads = ops.layernorm_backward(X, Rn, g, mean, inv)
    h = 1e-6
    for which, (arr, grad) in enumerate(zip((X, g, b), grads)):
        num = np.zeros_like(arr)
        for idx in np.ndindex(arr.shape):
            vals = []
            for sign in (1, -1):
                a = [X.copy(), g.copy(), b.copy()]
                a[which][idx] += sign * h
                vals.append((Rn * ops.layernorm_forward(a[0], a[1], a[2], 1e-3)[0]).sum())
            num[idx] = (vals[0] - vals[1]) / (2 * h)
        np.testing.assert_allclose(grad, num, rtol=1e-6, atol=1e-8)


def test_layernorm_errors():
    with pytest.raises(ValueError, match="layernorm_forward: gamma has shape"):
        ops.layernorm_forward(np.ones((2, 3)), np.ones(4), None, 1e-3)
    with pytest.raises(ValueError, match="epsilon must be"):
        ops.layernorm_forward(np.ones((2, 3)), None, None, -1)
    with pytest.raises(ValueError, match="layernorm_backward: mean has shape"):
        ops.layernorm_backward(np.ones((2, 3)), np.ones((2, 3)), None, np.ones(3), np.ones(2))


# ---------------------------------------------------------------------------- embedding
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_embedding_matches_reference(dtype, layout, make, rng):
    W = make((11, 5), dtype, layout)
    ids = rng.integers(0, 11, (4, 3))
    ids[0, :2] = 7  # a repeated id: its gradients add up
    Y = ops.embedding_forward(ids, W)
    assert Y.shape == (4, 3, 5)
    eY = np.empty((12, 5), dtype)
    R.embedding_forward(ids.reshape(-1), C(W), eY)
    np.testing.assert_array_equal(Y.reshape(12, 5), eY)
    dY = make((4, 3, 5), dtype, layout)
    dW = ops.embedding_backward(ids, dY, np.zeros((11, 5), dtype))
    edW = np.zeros((11, 5), dtype)
    R.embedding_backward(ids.reshape(-1), C(dY).reshape(12, 5), edW)
    np.testing.assert_allclose(dW, edW, rtol=1e-6)
    unused = np.setdiff1d(np.arange(11), ids)
    np.testing.assert_array_equal(dW[unused], 0)


def test_embedding_backward_touches_only_used_rows():
    dW = np.full((6, 2), 5.0)
    ops.embedding_backward(np.array([1, 1, 4]), np.ones((3, 2)), dW)
    np.testing.assert_array_equal(dW, [[5, 5], [7, 7], [5, 5], [5, 5], [6, 6], [5, 5]])
    ops.embedding_backward(np.array([2.0]), np.ones((1, 2)), dW)  # integral floats accepted
    assert dW[2, 0] == 6


@pytest.mark.parametrize("ids, exc, message", [
    (np.array([0, 6]), ValueError, r"ids must be in \[0, 6\)"),
    (np.array([-1]), ValueError, r"ids must be in \[0, 6\)"),
    (np.array([0.5]), ValueError, "ids must be integers"),
    (np.array(["a"]), TypeError, "ids must be integers"),
])
def test_embedding_errors(ids, exc, message):
    with pytest.raises(exc, match=message):
        ops.embedding_forward(ids, np.ones((6, 2)))


def test_raw_embedding_kernel_checks_ids():
    from fastlayers._kernels import embedding as K
    with pytest.raises(ValueError, match="outside"):
        K.embedding_forward(np.array([3], np.int64), np.ones((3, 2)), np.empty((1, 2)))
    with pytest.raises(ValueError, match="outside"):
        K.embedding_backward(np.array([-1], np.int64), np.ones((1, 2)), np.zeros((3, 2)))


def test_pooling_large_batch_takes_the_parallel_path(make, close):
    X = make((16, 64, 64, 16), np.float32)
    Y, arg = ops.max_pool2d_forward(X, 2)
    np.testing.assert_array_equal(Y, X.reshape(16, 32, 2, 32, 2, 16).max(axis=(2, 4)))
    dY = make(Y.shape, np.float32)
    dX = ops.max_pool2d_backward(dY, arg, X.shape)
    np.testing.assert_allclose(dX.sum(), dY.sum(), rtol=1e-4)
    A = ops.avg_pool2d_forward(X, 2)
    close(A, X.reshape(16, 32, 2, 32, 2, 16).mean(axis=(2, 4)))
    dA = ops.avg_pool2d_backward(dY, X.shape, 2)
    close(dA, np.repeat(np.repeat(dY, 2, axis=1), 2, axis=2) / 4)


hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies


@hypothesis.settings(max_examples=60, deadline=None, derandomize=True)
@hypothesis.given(n=st.integers(1, 2), h=st.integers(1, 7), w=st.integers(1, 7),
                  c=st.integers(1, 3), ph=st.integers(1, 4), pw=st.integers(1, 4),
                  sh=st.integers(1, 4), sw=st.integers(1, 4),
                  padding=st.sampled_from(["valid", "same"]))
def test_pooling_any_geometry_matches_reference(n, h, w, c, ph, pw, sh, sw, padding):
    g = (n, h, w, c, (ph, pw), (sh, sw), padding)
    oh, ow, _, _, _, _, pt, pl = _geom(g)
    hypothesis.assume(oh > 0 and ow > 0)
    rng = np.random.default_rng(h * 100 + w * 10 + c)
    X, dY = rng.standard_normal((n, h, w, c)), rng.standard_normal((n, oh, ow, c))
    Y, arg = ops.max_pool2d_forward(X, (ph, pw), (sh, sw), padding)
    eY, earg = np.empty(Y.shape), np.empty(Y.shape, np.int64)
    R.max_pool2d_forward(X, eY, earg, ph, pw, sh, sw, pt, pl)
    np.testing.assert_array_equal(Y, eY)
    np.testing.assert_array_equal(arg, earg)
    A = ops.avg_pool2d_forward(X, (ph, pw), (sh, sw), padding)
    R.avg_pool2d_forward(X, eY, ph, pw, sh, sw, pt, pl)
    np.testing.assert_allclose(A, eY, rtol=1e-12, atol=1e-14)
    dX = ops.avg_pool2d_backward(dY, X.shape, (ph, pw), (sh, sw), padding)
    edX = np.empty(X.shape)
    R.avg_pool2d_backward(dY, edX, ph, pw, sh, sw, pt, pl)
    np.testing.assert_allclose(dX, edX, rtol=1e-12, atol=1e-14)
