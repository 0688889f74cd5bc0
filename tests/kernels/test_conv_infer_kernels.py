"""The forward-only convolution (ops.conv2d_infer: Winograd F(2x2, 3x3) and the fused
2x2 pooling) against its NumPy twin (_reference.conv2d_infer: the direct sum over
taps, then the pooling)."""
import contextlib

import numpy as np
import pytest

import fastlayers as fl
from fastlayers import _reference as R
from fastlayers import ops
from fastlayers._kernels import conv as K

DTYPES = [np.dtype(np.float32), np.dtype(np.float64)]
# name: (n, h, w, c_in, filters, (kh, kw), strides, padding, dilation)
WINOGRAD = {
    "valid": (2, 13, 13, 8, 16, (3, 3), 1, "valid", 1),
    "same-odd": (3, 7, 9, 5, 6, (3, 3), 1, "same", 1),
    "odd-tiles": (2, 6, 5, 3, 7, (3, 3), 1, "valid", 1),
    "batch1-same": (1, 5, 6, 16, 3, (3, 3), 1, "same", 1),
    "one-channel": (2, 8, 8, 1, 4, (3, 3), 1, "valid", 1),
    "smallest": (1, 3, 3, 2, 1, (3, 3), 1, "valid", 1),
}
DIRECT = {
    "3x3-valid": (2, 10, 11, 1, 8, (3, 3), 1, "valid", 1),
    "1x1": (3, 5, 4, 6, 2, (1, 1), 1, "valid", 1),
    "stride>kernel": (2, 17, 16, 2, 3, (2, 2), 3, "valid", 1),
    "same-even": (2, 6, 7, 3, 4, (2, 4), 1, "same", 1),
    "dilated-same": (2, 9, 10, 2, 3, (3, 2), 1, "same", (2, 3)),
    "batch1": (1, 5, 5, 1, 1, (3, 3), 1, "same", 1),
}
POOLS = [None, "max", "average"]
LAYOUTS = ["contig", "noncontig", "readonly"]
ACTS = ["relu", "linear", "gelu", "sigmoid"]
C = np.ascontiguousarray


@contextlib.contextmanager
def _team(k):
    old = fl.backend.get_num_threads()
    fl.backend.set_num_threads(k)
    try:
        yield
    finally:
        fl.backend.set_num_threads(old)


def _twin(X, W, b, g, activation, pool):
    n, h, w, cin, f, (kh, kw), s, pad, d = g
    oh, ow, sh, sw, dh, dw, pt, pl = ops._conv_geometry("t", (h, w), (kh, kw), s, pad, d)
    p = {None: -1, "max": 0, "average": 1}[pool]
    Y = np.empty((n, oh // 2, ow // 2, f) if p >= 0 else (n, oh, ow, f), X.dtype)
    R.conv2d_infer(C(X), C(W).reshape(-1, f), None if b is None else C(b), Y, None, oh, ow,
                   kh, kw, sh, sw, dh, dw, pt, pl, ops.ACTIVATIONS[activation], None, p)
    return Y


def _cases(table, pools):
    return [pytest.param(dt, g, layout, act, pool, id=f"{dt.name}-{name}-{layout}-{act}-{pool}")
            for dt in DTYPES for name, g in table.items() for pool in pools
            for layout in LAYOUTS for act in (ACTS if layout == "contig" else ["relu"])]


@pytest.mark.parametrize("dtype,g,layout,activation,pool", _cases(WINOGRAD, POOLS))
def test_winograd_matches_the_twin(dtype, g, layout, activation, pool, make, close):
    n, h, w, cin, f, k, s, pad, d = g
    X, W, b = make((n, h, w, cin), dtype, layout), make(k + (cin, f), dtype, layout), \
        make((f,), dtype, layout)
    before = [X.copy(), W.copy(), b.copy()]
    Y = ops.conv2d_infer(X, W, b, s, pad, d, activation, pool=pool, winograd=True)
    expected = _twin(X, W, b, g, activation, pool)
    assert Y.dtype == dtype and Y.shape == expected.shape and Y.flags.c_contiguous
    close(Y, expected, scale=8)
    for a, a0 in zip((X, W, b), before):
        np.testing.assert_array_equal(a, a0)


@pytest.mark.parametrize("dtype,g,layout,activation,pool", _cases(DIRECT, ["max", "average"]))
def test_direct_pooled_matches_the_twin(dtype, g, layout, activation, pool, make, close):
    n, h, w, cin, f, k, s, pad, d = g
    X, W = make((n, h, w, cin), dtype, layout), make(k + (cin, f), dtype, layout)
    b = make((f,), dtype, layout)
    Y = ops.conv2d_infer(X, W, b, s, pad, d, activation, pool=pool, winograd=False)
    close(Y, _twin(X, W, b, g, activation, pool), scale=4)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("winograd", [True, False])
def test_pooled_max_propagates_nan_and_keeps_the_rest(dtype, winograd, make):
    g = WINOGRAD["valid"]
    n, h, w, cin, f, k, s, pad, d = g
    X, W = make((n, h, w, cin), dtype), make(k + (cin, f), dtype)
    X[0, 4, 4, 0] = np.nan   # feeds the tiles (outputs 2..4) around it
    Y = ops.conv2d_infer(X, W, None, pool="max", activation="relu", winograd=winograd)
    expected = _twin(X, W, None, g, "relu", "max")
    np.testing.assert_array_equal(np.isnan(Y), np.isnan(expected))
    assert np.isnan(Y).any()
    ok = ~np.isnan(expected)
    np.testing.assert_allclose(Y[ok], expected[ok], rtol=1e-4 if dtype == np.float32 else 1e-11)


def test_every_thread_count_gives_the_same_values(make):
    """Units are split over the team; each pooled value comes from one thread's chunk."""
    X, W = make((5, 13, 12, 16), np.float64), make((3, 3, 16, 16), np.float64)
    for pool in ("max", None):
        with _team(1):
            one = ops.conv2d_infer(X, W, padding="same", pool=pool)
        with _team(2):
            two = ops.conv2d_infer(X, W, padding="same", pool=pool)
        np.testing.assert_array_equal(one, two)


def test_a_work_buffer_for_fewer_threads_is_never_overrun(make):
    """A team larger than the work was sized for runs on the threads it has room for."""
    X, W = make((16, 20, 20, 16), np.float32), make((3, 3, 16, 16), np.float32)
    need = K.infer_work_size(1, 20, 20, 16, 18, 18, 3, 3, 1, 1, 1, 1, 0, 0, 16, True, 0)
    work = np.full(need + 64, 7.0, np.float32)
    Y = np.empty((16, 9, 9, 16), np.float32)
    with _team(2):
        K.conv2d_infer(X, W.reshape(-1, 16), None, Y, work[:need], 18, 18, 3, 3, 1, 1, 1, 1,
                       0, 0, 0, True, 0)
    assert (work[need:] == 7.0).all()
    np.testing.assert_allclose(Y, _twin(X, W, None, (16, 20, 20, 16, 16, (3, 3), 1, "valid", 1),
                                        "linear", "max"), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("call,match", [
    (lambda X, W: ops.conv2d_infer(X, W, winograd=False), "without Winograd give a pool"),
    (lambda X, W: ops.conv2d_infer(X, W), "conv2d_forward's"),  # 2 channels: not Winograd
    (lambda X, W: ops.conv2d_infer(X, W, strides=2, winograd=True), "Winograd needs"),
    (lambda X, W: ops.conv2d_infer(X, W, pool="min"), "pool must be"),
    (lambda X, W: ops.conv2d_infer(X, W[:, :, :1], pool="max"), "channels"),
    (lambda X, W: ops.conv2d_infer(X, W, b=np.zeros(3, np.float32)), "b has shape"),
    (lambda X, W: ops.conv2d_infer(X, W, activation="nope"), "activation"),
])
def test_bad_arguments_raise_clear_errors(call, match, make):
    X, W = make((2, 6, 6, 2), np.float32), make((3, 3, 2, 4), np.float32)
    with pytest.raises(ValueError, match=match):
        call(X, W)


def test_the_raw_kernel_checks_its_buffers(make):
    X, W = make((2, 6, 6, 2), np.float32), make((3, 3, 2, 4), np.float32)
    Y = np.empty((2, 2, 2, 4), np.float32)
    need = K.infer_work_size(1, 6, 6, 2, 4, 4, 3, 3, 1, 1, 1, 1, 0, 0, 4, True, 0)
    with pytest.raises(ValueError, match="work must hold"):
        K.conv2d_infer(X, W.reshape(-1, 4), None, Y, np.empty(need - 1, np.float32), 4, 4,
                       3, 3, 1, 1, 1, 1, 0, 0, 0, True, 0)
    with pytest.raises(ValueError, match="Y must be"):
        K.conv2d_infer(X, W.reshape(-1, 4), None, np.empty((2, 4, 4, 4), np.float32),
                       np.empty(need, np.float32), 4, 4, 3, 3, 1, 1, 1, 1, 0, 0, 0, True, 0)
    with pytest.raises(ValueError, match="Winograd needs"):
        K.conv2d_infer(X, W.reshape(-1, 4), None, Y, np.empty(need, np.float32), 4, 4,
                       3, 3, 2, 1, 1, 1, 0, 0, 0, True, 0)
