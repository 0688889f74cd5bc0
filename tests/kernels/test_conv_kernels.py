"""Convolution kernels (ops.conv2d_*) against the NumPy reference (a sum over taps)."""
import itertools

import numpy as np
import pytest

from fastlayers import _reference as R
from fastlayers import ops

DTYPES = [np.dtype(np.float32), np.dtype(np.float64)]
# name: (n, h, w, c_in, filters, (kh, kw), strides, padding, dilation)
GEOMETRIES = {
    "3x3-valid": (2, 7, 9, 3, 5, (3, 3), 1, "valid", 1),
    "1x1": (3, 5, 4, 6, 2, (1, 1), 1, "valid", 1),
    "1x1-stride2-same": (2, 5, 6, 3, 4, (1, 1), 2, "same", 1),
    "stride>kernel": (2, 9, 8, 2, 3, (2, 2), 3, "valid", 1),
    "same-even": (2, 6, 7, 3, 4, (2, 4), 1, "same", 1),
    "same-even-stride": (1, 7, 6, 2, 3, (4, 2), (2, 3), "same", 1),
    "dilated-same": (2, 9, 10, 2, 3, (3, 2), 1, "same", (2, 3)),
    "batch1": (1, 5, 5, 1, 1, (3, 3), 1, "same", 1),
    "kernel>input-same": (2, 2, 3, 2, 2, (5, 5), 1, "same", 1),
}
LAYOUTS = ["contig", "noncontig", "readonly"]
ACTS = ["linear", "relu", "gelu", "softmax"]
# Every activation on contiguous input; the other layouts with gelu (the Z path).
CASES = [pytest.param(dt, g, layout, act, id=f"{dt.name}-{name}-{layout}-{act}")
         for dt in DTYPES for name, g in GEOMETRIES.items() for layout in LAYOUTS
         for act in (ACTS if layout == "contig" else ["gelu"])]
C = np.ascontiguousarray


def _geom(g):
    n, h, w, cin, f, (kh, kw), s, pad, d = g
    oh, ow, sh, sw, dh, dw, pt, pl = ops._conv_geometry("t", (h, w), (kh, kw), s, pad, d)
    return n, h, w, cin, f, kh, kw, oh, ow, sh, sw, dh, dw, pt, pl


def reference_forward(X, W, b, g, activation):
    n, h, w, cin, f, kh, kw, oh, ow, sh, sw, dh, dw, pt, pl = _geom(g)
    Y, Z = np.empty((n, oh, ow, f), X.dtype), np.empty((n, oh, ow, f), X.dtype)
    R.conv2d_forward(C(X), C(W).reshape(-1, f), None if b is None else C(b), Y, None, kh, kw,
                     sh, sw, dh, dw, pt, pl, ops.ACTIVATIONS[activation], Z)
    return Y, Z


def reference_backward(X, W, Y, Z, dY, g, activation, dW0=None, db0=None):
    n, h, w, cin, f, kh, kw, oh, ow, sh, sw, dh, dw, pt, pl = _geom(g)
    rows = (n * oh * ow, f)
    dZ, dX = np.empty(rows, X.dtype), np.empty(X.shape, X.dtype)
    dW = np.empty((kh * kw * cin, f), X.dtype) if dW0 is None else dW0.reshape(-1, f).copy()
    db = np.empty(f, X.dtype) if db0 is None else db0.copy()
    R.conv2d_backward(C(X), C(W).reshape(-1, f), Y.reshape(rows), C(dY).reshape(rows), dZ, dX,
                      dW, db, None, h, w, oh, ow, kh, kw, sh, sw, dh, dw, pt, pl,
                      ops.ACTIVATIONS[activation], dW0 is not None, Z.reshape(rows))
    return dX, dW.reshape(W.shape), db


def test_output_geometry_is_keras():
    # "same": ceil(in / stride) outputs, the odd padding element after.
    assert ops.conv_output_length(6, 2, 1, 1, "same") == (6, 0)
    assert ops.conv_output_length(6, 4, 1, 1, "same") == (6, 1)
    assert ops.conv_output_length(7, 4, 2, 1, "same") == (4, 1)
    assert ops.conv_output_length(5, 3, 2, 1, "same") == (3, 1)
    assert ops.conv_output_length(9, 3, 1, 2, "same") == (9, 2)
    assert ops.conv_output_length(9, 2, 3, 1, "valid") == (3, 0)
    assert ops.conv_output_length(2, 3, 1, 1, "valid") == (0, 0)


@pytest.mark.parametrize("dtype,g,layout,activation", CASES)
def test_conv2d_forward_matches_reference(dtype, g, layout, activation, make, close):
    n, h, w, cin, f, k, s, pad, d = g
    X, W, b = make((n, h, w, cin), dtype, layout), make(k + (cin, f), dtype, layout), \
        make((f,), dtype, layout)
    Y, Z = ops.conv2d_forward(X, W, b, s, pad, d, activation, Z=True)
    eY, eZ = reference_forward(X, W, b, g, activation)
    assert Y.dtype == dtype and Y.shape == eY.shape and Y.flags.c_contiguous
    close(Z, eZ, scale=4)
    close(Y, eY, scale=4)
    np.testing.assert_array_equal(ops.conv2d_forward(X, W, b, s, pad, d, activation), Y)


@pytest.mark.parametrize("dtype,g,layout,activation", CASES)
def test_conv2d_backward_matches_reference(dtype, g, layout, activation, make, close):
    n, h, w, cin, f, k, s, pad, d = g
    X, W = make((n, h, w, cin), dtype, layout), make(k + (cin, f), dtype, layout)
    Y, Z = ops.conv2d_forward(X, W, None, s, pad, d, activation, Z=True)
    dY = make(Y.shape, dtype, layout)
    before = dY.copy()
    got = ops.conv2d_backward(X, W, Y, dY, s, pad, d, activation, Z=Z)
    for value, expected in zip(got, reference_backward(X, W, Y, Z, dY, g, activation)):
        close(value, expected, scale=8)
    np.testing.assert_array_equal(dY, before)


@pytest.mark.parametrize("want", list(itertools.product([True, False], repeat=3)),
                         ids=lambda w: "".join("x" if f else "-" for f in w))
def test_conv2d_backward_skipped_outputs(want, make, close):
    g = GEOMETRIES["same-even-stride"]
    n, h, w, cin, f, k, s, pad, d = g
    X, W = make((n, h, w, cin), np.float64), make(k + (cin, f), np.float64)
    Y, Z = ops.conv2d_forward(X, W, None, s, pad, d, "tanh", Z=True)
    dY = make(Y.shape, np.float64)
    want_dX, want_dW, want_db = want
    got = ops.conv2d_backward(X if want_dW else None, W, Y, dY, s, pad, d, "tanh",
                              input_shape=X.shape, want_dX=want_dX, want_dW=want_dW,
                              want_db=want_db)
    for value, wanted, expected in zip(got, want, reference_backward(X, W, Y, Z, dY, g, "tanh")):
        if wanted:
            close(value, expected)
        else:
            assert value is None


@pytest.mark.parametrize("name", ["3x3-valid", "1x1", "dilated-same"])
def test_conv2d_accumulates_and_chunks(name, make, close, monkeypatch):
    # Scratch for one sample at a time: the batch goes through several GEMMs.
    monkeypatch.setattr(ops, "_COLS_ELEMENTS", 1)
    g = GEOMETRIES[name]
    n, h, w, cin, f, k, s, pad, d = g
    X, W = make((3, h, w, cin), np.float64), make(k + (cin, f), np.float64)
    g = (3,) + g[1:]
    Y, Z = ops.conv2d_forward(X, W, None, s, pad, d, "relu", Z=True)
    close(Y, reference_forward(X, W, None, g, "relu")[0])
    dY = make(Y.shape, np.float64)
    dW0, db0 = make(W.shape, np.float64), make((f,), np.float64)
    dW, db = dW0.copy(), db0.copy()
    dX, gW, gb = ops.conv2d_backward(X, W, Y, dY, s, pad, d, "relu", dW=dW, db=db,
                                     accumulate=True)
    assert gW is dW and gb is db
    eX, eW, eb = reference_backward(X, W, Y, Z, dY, g, "relu", dW0, db0)
    close(dX, eX)
    close(dW, eW)
    close(db, eb)


def test_conv2d_matches_finite_differences(rng):
    X, W, b = rng.standard_normal((2, 5, 6, 2)), rng.standard_normal((2, 3, 2, 3)), \
        rng.standard_normal(3)
    args = ((2, 1), "same", (1, 2), "mish")
    Y, Z = ops.conv2d_forward(X, W, b, *args, Z=True)
    Rn = rng.standard_normal(Y.shape)
    grads = ops.conv2d_backward(X, W, Y, Rn, *args, Z=Z)
    h = 1e-6
    for which, (arr, grad) in enumerate(zip((X, W, b), grads)):
        num = np.zeros_like(arr)
        for idx in np.ndindex(arr.shape):
            vals = []
            for sign in (1, -1):
                a = [X.copy(), W.copy(), b.copy()]
                a[which][idx] += sign * h
                vals.append((Rn * ops.conv2d_forward(*a, *args)).sum())
            num[idx] = (vals[0] - vals[1]) / (2 * h)
        np.testing.assert_allclose(grad, num, rtol=1e-6, atol=1e-8)


def test_conv2d_against_torch_if_installed(rng):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    X, W = rng.standard_normal((2, 9, 8, 3)), rng.standard_normal((3, 2, 3, 4))
    ours = ops.conv2d_forward(X, W, None, (2, 2), "valid", 1)
    theirs = F.conv2d(torch.from_numpy(X.transpose(0, 3, 1, 2)),
                      torch.from_numpy(W.transpose(3, 2, 0, 1)), stride=2)
    np.testing.assert_allclose(ours, theirs.numpy().transpose(0, 2, 3, 1), rtol=1e-12,
                               atol=1e-12)


@pytest.mark.parametrize("call, exc, message", [
    (lambda: ops.conv2d_forward(np.ones((1, 4, 4, 2)), np.ones((3, 3, 3, 1))), ValueError,
     "conv2d_forward: X has 2 channels"),
    (lambda: ops.conv2d_forward(np.ones((4, 4, 2)), np.ones((3, 3, 2, 1))), ValueError,
     "conv2d_forward: X must be 4-D"),
    (lambda: ops.conv2d_forward(np.ones((1, 4, 4, 2)), np.ones((3, 3, 2, 1), np.float32)),
     TypeError, "conv2d_forward: W has dtype float32"),
    (lambda: ops.conv2d_forward(np.ones((1, 4, 4, 2)), np.ones((3, 3, 2, 1)), strides=0),
     ValueError, "strides must be positive"),
    (lambda: ops.conv2d_forward(np.ones((1, 4, 4, 2)), np.ones((3, 3, 2, 1)), padding="full"),
     ValueError, "padding must be 'valid' or 'same'"),
    (lambda: ops.conv2d_backward(None, np.ones((3, 3, 2, 1)), None, np.ones((1, 2, 2, 1))),
     ValueError, "X is required to compute dW"),
    (lambda: ops.conv2d_backward(np.ones((1, 4, 4, 2)), np.ones((3, 3, 2, 1)), None,
                                 np.ones((1, 3, 3, 1))), ValueError, "dY has shape"),
    (lambda: ops.conv2d_backward(np.ones((1, 4, 4, 2)), np.ones((3, 3, 2, 1)), None,
                                 np.ones((1, 2, 2, 1)), activation="gelu"), ValueError,
     "Y is required"),
])
def test_conv2d_errors(call, exc, message):
    with pytest.raises(exc, match=message):
        call()


def test_raw_conv_kernel_rejects_unsafe_geometry():
    from fastlayers._kernels import conv as K
    X, W, Y = np.ones((1, 4, 4, 2)), np.ones((18, 1)), np.empty((1, 2, 2, 1))
    with pytest.raises(ValueError, match="cols may be None only"):
        K.conv2d_forward(X, W, None, Y, None, 3, 3, 1, 1, 1, 1, 0, 0, 0)
    with pytest.raises(ValueError, match="at least one sample"):
        K.conv2d_forward(X, W, None, Y, np.empty((3, 18)), 3, 3, 1, 1, 1, 1, 0, 0, 0)
    with pytest.raises(ValueError, match="W has 18 rows"):
        K.conv2d_forward(X, W, None, Y, np.empty((4, 18)), 2, 2, 1, 1, 1, 1, 0, 0, 0)
    # Any padding is memory-safe: out-of-range taps read zeros.
    K.conv2d_forward(X, W, None, Y, np.empty((4, 18)), 3, 3, 5, 5, 1, 1, 7, 7, 0)
    expected = np.empty_like(Y)
    R.conv2d_forward(X, W, None, expected, None, 3, 3, 5, 5, 1, 1, 7, 7, 0)
    np.testing.assert_array_equal(Y, expected)
    K.conv2d_forward(X, W, None, Y, np.empty((4, 18)), 3, 3, 1, 1, 1, 1, 90, 90, 0)
    np.testing.assert_array_equal(Y, 0)


def test_conv2d_large_batch_takes_the_parallel_copy_path(make, close):
    # im2col work above 2**20 elements: the copies split over the OpenMP team.
    g = (16, 32, 32, 8, 4, (3, 3), 1, "same", 1)
    X, W = make((16, 32, 32, 8), np.float32), make((3, 3, 8, 4), np.float32)
    Y, Z = ops.conv2d_forward(X, W, None, 1, "same", 1, "relu", Z=True)
    close(Y, reference_forward(X, W, None, g, "relu")[0], scale=4)
    dY = make(Y.shape, np.float32)
    got = ops.conv2d_backward(X, W, Y, dY, 1, "same", 1, "relu")
    for value, expected in zip(got, reference_backward(X, W, Y, Z, dY, g, "relu")):
        close(value, expected, scale=50)


hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies


@hypothesis.settings(max_examples=60, deadline=None, derandomize=True)
@hypothesis.given(n=st.integers(1, 3), h=st.integers(1, 7), w=st.integers(1, 7),
                  cin=st.integers(1, 3), f=st.integers(1, 3), kh=st.integers(1, 4),
                  kw=st.integers(1, 4), s=st.integers(1, 3), d=st.integers(1, 2),
                  padding=st.sampled_from(["valid", "same"]))
def test_conv2d_any_geometry_matches_reference(n, h, w, cin, f, kh, kw, s, d, padding):
    oh, ow, *_ = ops._conv_geometry("t", (h, w), (kh, kw), s, padding, d)
    hypothesis.assume(oh > 0 and ow > 0)
    rng = np.random.default_rng(n * 1000 + h * 100 + w)
    X, W, b = rng.standard_normal((n, h, w, cin)), rng.standard_normal((kh, kw, cin, f)), \
        rng.standard_normal(f)
    g = (n, h, w, cin, f, (kh, kw), s, padding, d)
    Y, Z = ops.conv2d_forward(X, W, b, s, padding, d, "tanh", Z=True)
    eY, _ = reference_forward(X, W, b, g, "tanh")
    np.testing.assert_allclose(Y, eY, rtol=1e-12, atol=1e-12)
    dY = rng.standard_normal(Y.shape)
    got = ops.conv2d_backward(X, W, Y, dY, s, padding, d, "tanh")
    for value, expected in zip(got, reference_backward(X, W, Y, Z, dY, g, "tanh")):
        np.testing.assert_allclose(value, expected, rtol=1e-11, atol=1e-11)


DEPTHWISE = {name: g for name, g in GEOMETRIES.items()
             if name in ("3x3-valid", "1x1-stride2-same", "stride>kernel", "same-even",
                         "dilated-same", "batch1", "kernel>input-same")}


@pytest.mark.parametrize("dm", [1, 3])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", list(DEPTHWISE))
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_depthwise_matches_reference(dtype, name, layout, dm, make, close):
    n, h, w, cin, _, k, s, pad, d = DEPTHWISE[name]
    X, W = make((n, h, w, cin), dtype, layout), make(k + (cin, dm), dtype, layout)
    _, _, _, _, _, kh, kw, oh, ow, sh, sw, dh, dw, pt, pl = _geom(DEPTHWISE[name])
    Y = ops.depthwise_conv2d_forward(X, W, s, pad, d)
    eY = np.empty((n, oh, ow, cin * dm), dtype)
    R.depthwise_forward(C(X), C(W).reshape(kh * kw, -1), eY, kh, kw, sh, sw, dh, dw, pt, pl)
    close(Y, eY, scale=4)
    dZ = make(Y.shape, dtype, layout)
    dX, dW = ops.depthwise_conv2d_backward(X, W, dZ, s, pad, d)
    edX, edW = np.empty(X.shape, dtype), np.empty((kh * kw, cin * dm), dtype)
    R.depthwise_backward(C(X), C(W).reshape(kh * kw, -1), C(dZ), edX, edW, kh, kw, sh, sw, dh,
                         dw, pt, pl)
    close(dX, edX, scale=8)
    close(dW, edW.reshape(W.shape), scale=8)
    only_dx = ops.depthwise_conv2d_backward(X, W, dZ, s, pad, d, want_dW=False)
    assert only_dx[1] is None
    np.testing.assert_array_equal(only_dx[0], dX)


def test_depthwise_errors():
    with pytest.raises(ValueError, match="depthwise_conv2d_forward: X has 2 channels"):
        ops.depthwise_conv2d_forward(np.ones((1, 4, 4, 2)), np.ones((3, 3, 3, 1)))
    with pytest.raises(ValueError, match="depthwise_conv2d_backward: dZ has shape"):
        ops.depthwise_conv2d_backward(np.ones((1, 4, 4, 2)), np.ones((3, 3, 2, 1)),
                                      np.ones((1, 3, 3, 2)))
