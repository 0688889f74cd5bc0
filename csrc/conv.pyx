# Design
# ------
# The standalone 2-D convolution kernels (channels_last, NHWC): validation here,
# the loops in _conv.pxd (im2col + BLAS GEMM, shared with the executor's CONV op).
# Conv1D is this kernel with height 1.  The depthwise convolution (no channel sum,
# so no GEMM) is below, its loops in _depthwise.pxd.
#
# `cols` is scratch from the caller: its row count fixes how many samples go
# through one GEMM (a whole batch's im2col can be tens of MB).  A 1x1 kernel
# with stride 1 and no padding needs no im2col (cols is X itself): the caller
# passes cols=None.
from cython cimport floating
from libc.limits cimport INT_MAX

from _act cimport ACT_COUNT, ACT_LINEAR, _act_needs_input
from _common cimport _cp1, _cp2, _p1, _p2
from _conv cimport Geom, conv_backward, conv_forward
from _conv_infer cimport conv_infer, infer_work, wino_fits
from _depthwise cimport dw_backward, dw_forward

from _team cimport team, team_for_step

include "_team.pxi"  # binds this module to the process-wide team (csrc/_team.pxd)


cdef inline const floating* _cp4(const floating[:, :, :, ::1] a) noexcept nogil:
    if a.shape[0] == 0 or a.shape[1] == 0 or a.shape[2] == 0 or a.shape[3] == 0:
        return NULL
    return &a[0, 0, 0, 0]


cdef inline floating* _p4(floating[:, :, :, ::1] a) noexcept nogil:
    if a.shape[0] == 0 or a.shape[1] == 0 or a.shape[2] == 0 or a.shape[3] == 0:
        return NULL
    return &a[0, 0, 0, 0]


cdef int _geom(str fn, Geom* g, Py_ssize_t h, Py_ssize_t w, Py_ssize_t c, Py_ssize_t oh,
               Py_ssize_t ow, int kh, int kw, int sh, int sw, int dh, int dw, int pt,
               int pl, Py_ssize_t wrows, cols_given, Py_ssize_t cols_rows,
               Py_ssize_t cols_width) except -1:
    if kh < 1 or kw < 1 or sh < 1 or sw < 1 or dh < 1 or dw < 1 or pt < 0 or pl < 0:
        raise ValueError(f"{fn}: kernel size, strides and dilation must be >= 1, "
                         "padding >= 0")
    if wrows != kh * kw * c:
        raise ValueError(f"{fn}: W has {wrows} rows, expected kh * kw * c_in = {kh * kw * c}")
    g.h, g.w, g.c, g.oh, g.ow = h, w, c, oh, ow
    g.kh, g.kw, g.sh, g.sw, g.dh, g.dw, g.pt, g.pl = kh, kw, sh, sw, dh, dw, pt, pl
    if cols_given:
        if cols_width != kh * kw * c:
            raise ValueError(f"{fn}: cols must have kh * kw * c_in = {kh * kw * c} columns")
        if oh * ow > 0 and cols_rows < oh * ow:
            raise ValueError(f"{fn}: cols must hold at least one sample's {oh * ow} rows")
    elif not (kh == 1 and kw == 1 and sh == 1 and sw == 1 and pt == 0 and pl == 0
              and oh == h and ow == w):
        raise ValueError(f"{fn}: cols may be None only for a 1x1 kernel with stride 1 "
                         "and no padding")
    if oh * ow * kh * kw * c > INT_MAX or c > INT_MAX:
        raise ValueError(f"{fn}: dimensions above 2**31 - 1 are beyond BLAS")
    return 0


def conv2d_forward(const floating[:, :, :, ::1] X,  # (n, h, w, c_in) IN
                   const floating[:, ::1] W,        # (kh * kw * c_in, filters) IN
                   const floating[::1] b,           # (filters,) IN or None
                   floating[:, :, :, ::1] Y,        # (n, oh, ow, filters) OUT
                   floating[:, ::1] cols,           # (rows, kh * kw * c_in) scratch or None
                   int kh, int kw, int sh, int sw, int dh, int dw, int pt, int pl,
                   int activation,
                   floating[:, :, :, ::1] Z=None):  # (n, oh, ow, filters) OUT or None
    """Y = act(conv(X, W) + b); Z, if given, keeps the pre-activation.

    Output position (oy, ox) reads input rows oy*sh - pt + ki*dh and columns
    ox*sw - pl + kj*dw (zero outside the input).
    """
    cdef Py_ssize_t n = X.shape[0], f = W.shape[1]
    cdef Py_ssize_t oh = Y.shape[1], ow = Y.shape[2], K = W.shape[0]
    cdef Geom g
    cdef const floating* xp = _cp4(X)
    cdef const floating* wp = _cp2(W)
    cdef const floating* bp = NULL
    cdef floating* yp = _p4(Y)
    cdef floating* zp = NULL
    cdef floating* cp = NULL
    cdef bint direct = cols is None
    if not 0 <= activation < ACT_COUNT:
        raise ValueError(f"conv2d_forward: unknown activation code {activation}")
    if Y.shape[0] != n or Y.shape[3] != f:
        raise ValueError("conv2d_forward: Y must be (n, oh, ow, filters)")
    _geom("conv2d_forward", &g, X.shape[1], X.shape[2], X.shape[3], oh, ow, kh, kw, sh, sw,
          dh, dw, pt, pl, K, not direct, 0 if direct else cols.shape[0],
          0 if direct else cols.shape[1])
    if b is not None:
        if b.shape[0] != f:
            raise ValueError("conv2d_forward: b does not match W's filters")
        bp = _cp1(b)
    if Z is not None:
        if Z.shape[0] != n or Z.shape[1] != oh or Z.shape[2] != ow or Z.shape[3] != f:
            raise ValueError("conv2d_forward: Z does not match Y")
        zp = _p4(Z)
    if not direct:
        cp = _p2(cols)
    with nogil:
        conv_forward(team(), &g, n, f, xp, wp, bp, yp, zp, cp,
                     0 if direct else cols.shape[0], activation)


def infer_work_size(int nthreads, Py_ssize_t h, Py_ssize_t w, Py_ssize_t c, Py_ssize_t oh,
                    Py_ssize_t ow, int kh, int kw, int sh, int sw, int dh, int dw, int pt,
                    int pl, Py_ssize_t filters, bint winograd, int pool):
    """Values of the ``work`` scratch conv2d_infer needs for a team of nthreads."""
    cdef Geom g
    if pool not in (-1, 0, 1):
        raise ValueError(f"infer_work_size: pool must be -1, 0 or 1, got {pool}")
    _geom("infer_work_size", &g, h, w, c, oh, ow, kh, kw, sh, sw, dh, dw, pt, pl,
          kh * kw * c, True, oh * ow, kh * kw * c)
    if winograd and not wino_fits(&g):
        raise ValueError("infer_work_size: Winograd needs a 3x3 kernel, stride and "
                         "dilation 1")
    if not winograd and pool < 0:
        raise ValueError("infer_work_size: the direct path runs here only with a pooling")
    return infer_work(nthreads, &g, filters, winograd, pool)


def conv2d_infer(const floating[:, :, :, ::1] X,  # (n, h, w, c_in) IN
                 const floating[:, ::1] W,        # (kh * kw * c_in, filters) IN
                 const floating[::1] b,           # (filters,) IN or None
                 floating[:, :, :, ::1] Y,        # (n, oh, ow, filters) or pooled OUT
                 floating[::1] work,              # (infer_work_size(...),) scratch
                 Py_ssize_t oh, Py_ssize_t ow,    # the convolution's output size
                 int kh, int kw, int sh, int sw, int dh, int dw, int pt, int pl,
                 int activation, bint winograd, int pool):
    """The forward-only convolution: Y = act(conv(X, W) + b), then, when pool is 0
    (max) or 1 (mean), a 2x2 pooling with stride 2 ("valid"), Y then
    (n, oh // 2, ow // 2, filters).  winograd: F(2x2, 3x3) (3x3 kernel, stride and
    dilation 1); otherwise pool must be given (the im2col path, pooled per row pair)."""
    cdef Py_ssize_t n = X.shape[0], f = W.shape[1], need
    cdef Geom g
    cdef const floating* bp = NULL
    if not 0 <= activation < ACT_COUNT:
        raise ValueError(f"conv2d_infer: unknown activation code {activation}")
    if pool not in (-1, 0, 1):
        raise ValueError(f"conv2d_infer: pool must be -1, 0 or 1, got {pool}")
    _geom("conv2d_infer", &g, X.shape[1], X.shape[2], X.shape[3], oh, ow, kh, kw, sh, sw,
          dh, dw, pt, pl, W.shape[0], True, oh * ow, kh * kw * X.shape[3])
    if winograd and not wino_fits(&g):
        raise ValueError("conv2d_infer: Winograd needs a 3x3 kernel, stride and dilation 1")
    if not winograd and pool < 0:
        raise ValueError("conv2d_infer: without Winograd a pooling must be fused "
                         "(conv2d_forward computes the plain convolution)")
    if pool >= 0:
        if Y.shape[0] != n or Y.shape[1] != oh // 2 or Y.shape[2] != ow // 2 or \
                Y.shape[3] != f:
            raise ValueError("conv2d_infer: Y must be (n, oh // 2, ow // 2, filters)")
    elif Y.shape[0] != n or Y.shape[1] != oh or Y.shape[2] != ow or Y.shape[3] != f:
        raise ValueError("conv2d_infer: Y must be (n, oh, ow, filters)")
    if b is not None:
        if b.shape[0] != f:
            raise ValueError("conv2d_infer: b does not match W's filters")
        bp = &b[0]
    if X.shape[3] == 0 or f == 0:
        raise ValueError("conv2d_infer: X and W must have at least one channel and filter")
    need = infer_work(1, &g, f, winograd, pool)
    if work.shape[0] < need:
        raise ValueError(f"conv2d_infer: work must hold at least {need} values")
    if n == 0 or Y.shape[1] == 0 or Y.shape[2] == 0:
        return
    with nogil:
        conv_infer(team(), &g, n, f, &X[0, 0, 0, 0], &W[0, 0], bp, &Y[0, 0, 0, 0],
                   &work[0], work.shape[0], winograd, pool, activation)


def conv2d_backward(const floating[:, :, :, ::1] X,   # (n, h, w, c_in) IN; unread if dW is None
                    const floating[:, ::1] W,         # (kh * kw * c_in, filters) IN
                    const floating[:, ::1] Y,         # (n * oh * ow, filters) IN or None if linear
                    const floating[:, ::1] dY,        # (n * oh * ow, filters) IN
                    floating[:, ::1] dZ,              # (n * oh * ow, filters) OUT scratch, may be dY
                    floating[:, :, :, ::1] dX,        # (n, h, w, c_in) OUT or None
                    floating[:, ::1] dW,              # like W, OUT (IN/OUT if accumulate) or None
                    floating[::1] db,                 # (filters,) OUT (IN/OUT if accumulate) or None
                    floating[:, ::1] cols,            # (rows, kh * kw * c_in) scratch or None
                    int h, int w, int oh, int ow,
                    int kh, int kw, int sh, int sw, int dh, int dw, int pt, int pl,
                    int activation, bint accumulate,
                    const floating[:, ::1] Z=None):   # (n * oh * ow, filters) IN, pre-activation
    """dZ = dY * act'; db (+)= dZ.sum(0); dW (+)= cols.T @ dZ; dX = col2im(dZ @ W.T)."""
    cdef Py_ssize_t f = W.shape[1], K = W.shape[0], per = <Py_ssize_t>oh * ow
    cdef Py_ssize_t rows_all = dY.shape[0], n, c
    cdef Geom g
    cdef const floating* xp = NULL
    cdef const floating* wp = _cp2(W)
    cdef const floating* yp = NULL
    cdef const floating* zp = NULL
    cdef const floating* dyp = _cp2(dY)
    cdef floating* dzp = _p2(dZ)
    cdef floating* dxp = NULL
    cdef floating* dwp = NULL
    cdef floating* dbp = NULL
    cdef floating* cp = NULL
    cdef bint direct = cols is None
    cdef bint want_dx = dX is not None, want_dw = dW is not None, want_db = db is not None
    if not 0 <= activation < ACT_COUNT:
        raise ValueError(f"conv2d_backward: unknown activation code {activation}")
    if per <= 0 or dY.shape[1] != f or rows_all % per != 0:
        raise ValueError("conv2d_backward: dY must be (n * oh * ow, filters)")
    n = rows_all // per
    if dZ.shape[0] != rows_all or dZ.shape[1] != f:
        raise ValueError("conv2d_backward: dZ does not match dY")
    if K % (kh * kw if kh > 0 and kw > 0 else 1) != 0:
        raise ValueError("conv2d_backward: W's rows are not a multiple of kh * kw")
    c = K // (kh * kw) if kh > 0 and kw > 0 else 0
    _geom("conv2d_backward", &g, h, w, c, oh, ow, kh, kw, sh, sw, dh, dw, pt, pl, K,
          not direct, 0 if direct else cols.shape[0], 0 if direct else cols.shape[1])
    if activation != ACT_LINEAR:
        if Y is None or Y.shape[0] != rows_all or Y.shape[1] != f:
            raise ValueError("conv2d_backward: Y (matching dY) is required for a non-linear "
                             "activation")
        yp = _cp2(Y)
    if _act_needs_input(activation):
        if Z is None or Z.shape[0] != rows_all or Z.shape[1] != f:
            raise ValueError("conv2d_backward: Z (matching dY) is required for activation "
                             f"code {activation}")
        zp = _cp2(Z)
    if want_dw:
        if X is None or X.shape[0] != n or X.shape[1] != h or X.shape[2] != w \
                or X.shape[3] != c:
            raise ValueError("conv2d_backward: X must be (n, h, w, c_in) to compute dW")
        if dW.shape[0] != K or dW.shape[1] != f:
            raise ValueError("conv2d_backward: dW does not match W")
        xp = _cp4(X)
        dwp = _p2(dW)
    if want_dx:
        if dX.shape[0] != n or dX.shape[1] != h or dX.shape[2] != w or dX.shape[3] != c:
            raise ValueError("conv2d_backward: dX must be (n, h, w, c_in)")
        dxp = _p4(dX)
    if want_db:
        if db.shape[0] != f:
            raise ValueError("conv2d_backward: db does not match filters")
        dbp = _p1(db)
    if not direct:
        cp = _p2(cols)
    with nogil:
        conv_backward(team(), &g, n, f, xp, wp, yp, zp, dyp, dzp, dxp, dwp, dbp, cp,
                      0 if direct else cols.shape[0], False, activation, accumulate,
                      accumulate, NULL, 0)


# ---------------------------------------------------------------------------
# Depthwise convolution: the loops are in _depthwise.pxd (shared with the
# executor's DEPTHWISE op); validation here.

def depthwise_forward(const floating[:, :, :, ::1] X,  # (n, h, w, c) IN
                      const floating[:, ::1] W,        # (kh * kw, c * dm) IN
                      floating[:, :, :, ::1] Y,        # (n, oh, ow, c * dm) OUT
                      int kh, int kw, int sh, int sw, int dh, int dw, int pt, int pl):
    """Y[..., c * dm + m] = sum over taps of X[..., c] * W[tap, c * dm + m] (no bias)."""
    cdef Py_ssize_t n = X.shape[0], c = X.shape[3], f = W.shape[1], dm
    cdef Geom g
    if c == 0 or f % c != 0:
        raise ValueError("depthwise_forward: W's columns must be c * depth_multiplier")
    dm = f // c
    if Y.shape[0] != n or Y.shape[3] != f:
        raise ValueError("depthwise_forward: Y must be (n, oh, ow, c * depth_multiplier)")
    # _geom's checks with W as (kh * kw * c) rows; there is no im2col scratch here.
    _geom("depthwise_forward", &g, X.shape[1], X.shape[2], c, Y.shape[1], Y.shape[2],
          kh, kw, sh, sw, dh, dw, pt, pl, W.shape[0] * c, True, Y.shape[1] * Y.shape[2],
          kh * kw * c)
    if n == 0 or Y.shape[1] * Y.shape[2] == 0:
        return
    cdef const floating* xp = _cp4(X)
    cdef const floating* wp = _cp2(W)
    cdef floating* yp = _p4(Y)
    if xp == NULL:
        Y[...] = 0
        return
    with nogil:
        dw_forward(team(), &g, n, dm, xp, wp, yp)


def depthwise_backward(const floating[:, :, :, ::1] X,   # (n, h, w, c) IN
                       const floating[:, ::1] W,         # (kh * kw, c * dm) IN
                       const floating[:, :, :, ::1] dZ,  # (n, oh, ow, c * dm) IN
                       floating[:, :, :, ::1] dX,        # (n, h, w, c) OUT or None
                       floating[:, ::1] dW,              # like W, OUT or None
                       int kh, int kw, int sh, int sw, int dh, int dw, int pt, int pl):
    """Gradients of depthwise_forward w.r.t. X and W (dW serial: it sums every sample)."""
    cdef Py_ssize_t n = X.shape[0], c = X.shape[3], f = W.shape[1], dm
    cdef Geom g
    cdef floating* dxp = NULL
    cdef floating* dwp = NULL
    if c == 0 or f % c != 0:
        raise ValueError("depthwise_backward: W's columns must be c * depth_multiplier")
    dm = f // c
    if dZ.shape[0] != n or dZ.shape[3] != f:
        raise ValueError("depthwise_backward: dZ must be (n, oh, ow, c * depth_multiplier)")
    _geom("depthwise_backward", &g, X.shape[1], X.shape[2], c, dZ.shape[1], dZ.shape[2],
          kh, kw, sh, sw, dh, dw, pt, pl, W.shape[0] * c, True, dZ.shape[1] * dZ.shape[2],
          kh * kw * c)
    if dX is not None:
        if dX.shape[0] != n or dX.shape[1] != X.shape[1] or dX.shape[2] != X.shape[2] \
                or dX.shape[3] != c:
            raise ValueError("depthwise_backward: dX must match X")
        dxp = _p4(dX)
    if dW is not None:
        if dW.shape[0] != W.shape[0] or dW.shape[1] != f:
            raise ValueError("depthwise_backward: dW must match W")
        dwp = _p2(dW)
    cdef const floating* xp = _cp4(X)
    cdef const floating* wp = _cp2(W)
    cdef const floating* dzp = _cp4(dZ)
    if xp == NULL or dzp == NULL:
        if dX is not None:
            dX[...] = 0
        if dW is not None:
            dW[...] = 0
        return
    with nogil:
        # No partial buffers: dW serial (a standalone call allocates nothing per team).
        dw_backward(team(), &g, n, dm, xp, wp, dzp, dxp, dwp, False, NULL, 0)
