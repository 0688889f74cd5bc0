"""Batch normalization kernels against the reference."""
import numpy as np
import pytest

from fastlayers import _reference as R
from fastlayers import ops
from fastlayers._kernels import batchnorm as K

DTYPES = [np.dtype(np.float32), np.dtype(np.float64)]
# (n, c); "wide" has several channel blocks and > 32k elements (the OpenMP path).
SHAPES = {"1x1": (1, 1), "batch1": (1, 7), "odd": (7, 13), "wide": (131, 257)}
LAYOUTS = ["contig", "noncontig", "readonly"]
CASES = [pytest.param(dt, shape, layout, id=f"{dt.name}-{name}-{layout}")
         for dt in DTYPES for name, shape in SHAPES.items() for layout in LAYOUTS]
EPS = 1e-3
C = np.ascontiguousarray


def params(make, c, dtype, layout="contig"):
    gamma = make((c,), dtype, layout, low=0.5, high=1.5)
    beta = make((c,), dtype, layout)
    return gamma, beta


def data(make, shape, dtype, layout):
    # A channel offset makes the mean matter (and catches E[x^2] - E[x]^2).
    X = make(shape, dtype, layout)
    return (X + dtype.type(3)) if layout != "readonly" else X


@pytest.mark.parametrize("dtype,shape,layout", CASES)
def test_batchnorm_forward_train_matches_reference(dtype, shape, layout, make, close):
    X = data(make, shape, dtype, layout)
    gamma, beta = params(make, shape[1], dtype, layout)
    got = ops.batchnorm_forward_train(X, gamma, beta, EPS)
    expected = [np.empty(shape, dtype)] + [np.empty(shape[1], dtype) for _ in range(3)]
    R.batchnorm_forward_train(C(X), C(gamma), C(beta), EPS, *expected)
    for g, e in zip(got, expected):
        assert g.dtype == dtype
        close(g, e)


@pytest.mark.parametrize("dtype,shape,layout", CASES + [
    pytest.param(dt, (0, 5), "contig", id=f"{dt.name}-empty-contig") for dt in DTYPES])
def test_batchnorm_forward_infer_matches_reference(dtype, shape, layout, make, close):
    X = data(make, shape, dtype, layout)
    gamma, beta = params(make, shape[1], dtype, layout)
    mm = make((shape[1],), dtype, layout)
    mv = make((shape[1],), dtype, layout, low=0.5, high=2)
    Y = ops.batchnorm_forward_infer(X, gamma, beta, mm, mv, EPS)
    expected = np.empty(shape, dtype)
    R.batchnorm_forward_infer(C(X), C(gamma), C(beta), C(mm), C(mv), EPS, expected)
    close(Y, expected)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_batchnorm_without_gamma_and_beta(dtype, make, close):
    X = data(make, (7, 13), dtype, "contig")
    Y, mean, var, inv = ops.batchnorm_forward_train(X, None, None, EPS)
    close(Y, (X - mean) * inv, scale=4)
    dX, dgamma, dbeta = ops.batchnorm_backward_train(X, X, None, mean, inv)
    expected = [np.empty_like(X), np.empty(13, dtype), np.empty(13, dtype)]
    R.batchnorm_backward_train(X, X, None, mean, inv, *expected, False)
    for g, e in zip((dX, dgamma, dbeta), expected):
        close(g, e)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_batchnorm_update_moving_matches_reference(dtype, make, close):
    mm, mv = make((13,), dtype), make((13,), dtype, low=0.5, high=2)
    mean, var = make((13,), dtype, "noncontig"), make((13,), dtype, "readonly", low=0, high=1)
    emm, emv = mm.copy(), mv.copy()
    ops.batchnorm_update_moving(mm, mv, mean, var, 0.99)
    R.batchnorm_update_moving(emm, emv, C(mean), var, 0.99)
    close(mm, emm)
    close(mv, emv)


@pytest.mark.parametrize("dtype,shape,layout", CASES)
def test_batchnorm_backward_train_matches_reference(dtype, shape, layout, make, close):
    X = data(make, shape, dtype, layout)
    gamma, beta = params(make, shape[1], dtype, layout)
    _, mean, _, inv = ops.batchnorm_forward_train(X, gamma, beta, EPS)
    dY = make(shape, dtype, layout)
    got = ops.batchnorm_backward_train(X, dY, gamma, mean, inv)
    expected = [np.empty(shape, dtype), np.empty(shape[1], dtype), np.empty(shape[1], dtype)]
    R.batchnorm_backward_train(C(X), C(dY), C(gamma), mean, inv, *expected, False)
    for g, e in zip(got, expected):
        close(g, e, scale=10)  # dX cancels three terms of size n * dY


@pytest.mark.parametrize("dtype,shape,layout", CASES)
def test_batchnorm_backward_infer_matches_reference(dtype, shape, layout, make, close):
    X = data(make, shape, dtype, layout)
    gamma, _ = params(make, shape[1], dtype, layout)
    mm = make((shape[1],), dtype)
    mv = make((shape[1],), dtype, low=0.5, high=2)
    dY = make(shape, dtype, layout)
    got = ops.batchnorm_backward_infer(X, dY, gamma, mm, mv, EPS)
    expected = [np.empty(shape, dtype), np.empty(shape[1], dtype), np.empty(shape[1], dtype)]
    R.batchnorm_backward_infer(C(X), C(dY), C(gamma), mm, mv, EPS, *expected, False)
    for g, e in zip(got, expected):
        close(g, e, scale=10)


@pytest.mark.parametrize("which", ["train", "infer"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_batchnorm_backward_skips_and_accumulates(which, dtype, make, close):
    X, dY = data(make, (7, 13), dtype, "contig"), make((7, 13), dtype)
    gamma, beta = params(make, 13, dtype)
    if which == "train":
        _, mean, _, inv = ops.batchnorm_forward_train(X, gamma, beta, EPS)

        def run(**kw):
            return ops.batchnorm_backward_train(X, dY, gamma, mean, inv, **kw)
    else:
        mm, mv = make((13,), dtype), make((13,), dtype, low=0.5, high=2)

        def run(**kw):
            return ops.batchnorm_backward_infer(X, dY, gamma, mm, mv, EPS, **kw)
    full = run()
    dX, dgamma, dbeta = run(want_dX=False, want_dbeta=False)
    assert dX is None and dbeta is None
    close(dgamma, full[1])
    dX, dgamma, dbeta = run(want_dgamma=False, want_dbeta=False)
    assert dgamma is None and dbeta is None
    close(dX, full[0])
    g0, b0 = make((13,), dtype), make((13,), dtype)
    g_acc, b_acc = g0.copy(), b0.copy()
    _, dgamma, dbeta = run(want_dX=False, accumulate_into=(g_acc, b_acc))
    assert dgamma is g_acc and dbeta is b_acc
    close(g_acc, g0 + full[1], scale=4)
    close(b_acc, b0 + full[2], scale=4)
    _, dgamma, dbeta = run(accumulate_into=(None, b_acc))
    close(dgamma, full[1])


def _numeric(f, x, h=1e-6):
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        old = x[idx]
        x[idx] = old + h
        up = f()
        x[idx] = old - h
        down = f()
        x[idx] = old
        g[idx] = (up - down) / (2 * h)
    return g


@pytest.mark.parametrize("which", ["train", "infer"])
def test_batchnorm_backward_matches_finite_differences(which, rng):
    X = rng.standard_normal((5, 3)) + 2
    gamma, beta = rng.uniform(0.5, 1.5, 3), rng.standard_normal(3)
    mm, mv = rng.standard_normal(3), rng.uniform(0.5, 2, 3)
    Rnd = rng.standard_normal((5, 3))

    def loss():
        if which == "train":
            Y = ops.batchnorm_forward_train(X, gamma, beta, EPS)[0]
        else:
            Y = ops.batchnorm_forward_infer(X, gamma, beta, mm, mv, EPS)
        return float((Rnd * Y).sum())

    if which == "train":
        _, mean, _, inv = ops.batchnorm_forward_train(X, gamma, beta, EPS)
        dX, dgamma, dbeta = ops.batchnorm_backward_train(X, Rnd, gamma, mean, inv)
    else:
        dX, dgamma, dbeta = ops.batchnorm_backward_infer(X, Rnd, gamma, mm, mv, EPS)
    for arr, grad in ((X, dX), (gamma, dgamma), (beta, dbeta)):
        np.testing.assert_allclose(grad, _numeric(loss, arr), rtol=1e-6, atol=1e-8)


def test_batchnorm_handles_leading_axes(make, close):
    dtype = np.dtype(np.float64)
    X = make((2, 3, 4), dtype)
    gamma, beta = params(make, 4, dtype)
    Y, mean, var, inv = ops.batchnorm_forward_train(X, gamma, beta, EPS)
    Y2, mean2, _, _ = ops.batchnorm_forward_train(X.reshape(6, 4), gamma, beta, EPS)
    assert Y.shape == X.shape
    close(Y.reshape(6, 4), Y2)
    close(mean, mean2)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_raw_batchnorm_kernels_accept_readonly_inputs(dtype, make, close):
    X, dY = make((7, 13), dtype, "readonly"), make((7, 13), dtype, "readonly")
    gamma, beta = params(make, 13, dtype, "readonly")
    Y = np.empty((7, 13), dtype)
    stats = [np.empty(13, dtype) for _ in range(3)]
    K.batchnorm_forward_train(X, gamma, beta, EPS, Y, *stats)
    eY = np.empty_like(Y)
    estats = [np.empty(13, dtype) for _ in range(3)]
    R.batchnorm_forward_train(X, gamma, beta, EPS, eY, *estats)
    close(Y, eY)
    for s in stats:
        s.setflags(write=False)
    mean, var, inv = stats
    K.batchnorm_forward_infer(X, gamma, beta, mean, var, EPS, Y)
    out = [np.empty((7, 13), dtype), np.empty(13, dtype), np.empty(13, dtype)]
    K.batchnorm_backward_train(X, dY, gamma, mean, inv, *out, False)
    K.batchnorm_backward_infer(X, dY, gamma, mean, var, EPS, *out, True)
    mm, mv = np.zeros(13, dtype), np.ones(13, dtype)
    K.batchnorm_update_moving(mm, mv, mean, var, 0.9)
    close(mm, dtype.type(0.1) * mean)
    with pytest.raises(ValueError, match="empty batch"):
        K.batchnorm_forward_train(X[:0], gamma, beta, EPS, Y[:0], *[np.empty(13, dtype)] * 3)
