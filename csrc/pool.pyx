# Design
# ------
# 2-D max and average pooling over NHWC arrays (1-D pooling and the global
# poolings are these with height 1 or a window covering the whole input).
# Output position (oy, ox) pools input rows oy*sh - pt .. + ph - 1 and columns
# ox*sw - pl .. + pw - 1, clipped to the input: padding never contributes, as in
# TensorFlow/Keras ("same" average pooling divides by the number of real
# elements in the window).  The innermost loop runs over the contiguous
# channels.  Max pooling records, per output element, the flat index iy*w + ix
# of its maximum (first one on ties); the backward pass adds dY there.
# Parallel over samples (two samples never write the same element).
from cython cimport floating
from cython.parallel cimport prange
from libc.stdint cimport int64_t
from libc.string cimport memset

from _common cimport _chunks

from _team cimport team, team_for_step

include "_team.pxi"  # binds this module to the process-wide team (csrc/_team.pxd)



cdef inline int _pool_chunks(Py_ssize_t work) noexcept nogil:
    # Window loops are memory-bound: a thread team pays off only for megabytes.
    return 1 if work < (1 << 20) else _chunks(work)


cdef inline const floating* _cp4(const floating[:, :, :, ::1] a) noexcept nogil:
    if a.shape[0] == 0 or a.shape[1] == 0 or a.shape[2] == 0 or a.shape[3] == 0:
        return NULL
    return &a[0, 0, 0, 0]


cdef inline floating* _p4(floating[:, :, :, ::1] a) noexcept nogil:
    if a.shape[0] == 0 or a.shape[1] == 0 or a.shape[2] == 0 or a.shape[3] == 0:
        return NULL
    return &a[0, 0, 0, 0]


cdef struct PGeom:
    Py_ssize_t h, w, c, oh, ow, ph, pw, sh, sw, pt, pl


cdef inline void _window(const PGeom* g, Py_ssize_t oy, Py_ssize_t ox, Py_ssize_t* y0,
                         Py_ssize_t* y1, Py_ssize_t* x0, Py_ssize_t* x1) noexcept nogil:
    y0[0] = oy * g.sh - g.pt
    x0[0] = ox * g.sw - g.pl
    y1[0] = y0[0] + g.ph
    x1[0] = x0[0] + g.pw
    if y0[0] < 0:
        y0[0] = 0
    if x0[0] < 0:
        x0[0] = 0
    if y1[0] > g.h:
        y1[0] = g.h
    if x1[0] > g.w:
        x1[0] = g.w


cdef inline void _max_sample(const floating* X, const PGeom* g, floating* Y,
                             int64_t* arg) noexcept nogil:
    cdef Py_ssize_t oy, ox, iy, ix, ch, y0, y1, x0, x1, o
    cdef const floating* src
    cdef floating v
    for oy in range(g.oh):
        for ox in range(g.ow):
            _window(g, oy, ox, &y0, &y1, &x0, &x1)
            o = (oy * g.ow + ox) * g.c
            if y0 >= y1 or x0 >= x1:
                # An all-padding window (impossible for Keras's padding): 0, no gradient.
                for ch in range(g.c):
                    Y[o + ch] = 0
                    arg[o + ch] = -1
                continue
            src = X + (y0 * g.w + x0) * g.c
            for ch in range(g.c):
                Y[o + ch] = src[ch]
                arg[o + ch] = y0 * g.w + x0
            for iy in range(y0, y1):
                for ix in range(x0, x1):
                    src = X + (iy * g.w + ix) * g.c
                    for ch in range(g.c):
                        v = src[ch]
                        # `not <=` lets a NaN win, so it propagates as in TF.
                        if not v <= Y[o + ch]:
                            if Y[o + ch] == Y[o + ch]:
                                Y[o + ch] = v
                                arg[o + ch] = iy * g.w + ix


cdef inline void _avg_sample(const floating* X, const PGeom* g, floating* Y) noexcept nogil:
    cdef Py_ssize_t oy, ox, iy, ix, ch, y0, y1, x0, x1, o
    cdef const floating* src
    cdef floating inv
    for oy in range(g.oh):
        for ox in range(g.ow):
            _window(g, oy, ox, &y0, &y1, &x0, &x1)
            o = (oy * g.ow + ox) * g.c
            for ch in range(g.c):
                Y[o + ch] = 0
            if y0 >= y1 or x0 >= x1:
                continue
            for iy in range(y0, y1):
                for ix in range(x0, x1):
                    src = X + (iy * g.w + ix) * g.c
                    for ch in range(g.c):
                        Y[o + ch] += src[ch]
            inv = <floating>(1.0 / ((y1 - y0) * (x1 - x0)))
            for ch in range(g.c):
                Y[o + ch] = Y[o + ch] * inv


cdef inline void _avg_grad_sample(const floating* dY, const PGeom* g,
                                  floating* dX) noexcept nogil:
    cdef Py_ssize_t oy, ox, iy, ix, ch, y0, y1, x0, x1, o
    cdef floating* dst
    cdef floating inv
    memset(dX, 0, g.h * g.w * g.c * sizeof(floating))
    for oy in range(g.oh):
        for ox in range(g.ow):
            _window(g, oy, ox, &y0, &y1, &x0, &x1)
            if y0 >= y1 or x0 >= x1:
                continue
            o = (oy * g.ow + ox) * g.c
            inv = <floating>(1.0 / ((y1 - y0) * (x1 - x0)))
            for iy in range(y0, y1):
                for ix in range(x0, x1):
                    dst = dX + (iy * g.w + ix) * g.c
                    for ch in range(g.c):
                        dst[ch] += dY[o + ch] * inv


cdef inline void _max_grad_sample(const floating* dY, const int64_t* arg, const PGeom* g,
                                  floating* dX) noexcept nogil:
    cdef Py_ssize_t o, ch, m = g.oh * g.ow
    cdef int64_t a
    memset(dX, 0, g.h * g.w * g.c * sizeof(floating))
    for o in range(m):
        for ch in range(g.c):
            a = arg[o * g.c + ch]
            if 0 <= a < g.h * g.w:
                dX[a * g.c + ch] += dY[o * g.c + ch]


cdef int _pgeom(str fn, PGeom* g, Py_ssize_t h, Py_ssize_t w, Py_ssize_t c, Py_ssize_t oh,
                Py_ssize_t ow, int ph, int pw, int sh, int sw, int pt, int pl) except -1:
    if ph < 1 or pw < 1 or sh < 1 or sw < 1 or pt < 0 or pl < 0:
        raise ValueError(f"{fn}: pool size and strides must be >= 1, padding >= 0")
    g.h, g.w, g.c, g.oh, g.ow = h, w, c, oh, ow
    g.ph, g.pw, g.sh, g.sw, g.pt, g.pl = ph, pw, sh, sw, pt, pl
    return 0


def max_pool2d_forward(const floating[:, :, :, ::1] X,  # (n, h, w, c) IN
                       floating[:, :, :, ::1] Y,        # (n, oh, ow, c) OUT
                       int64_t[:, :, :, ::1] argmax,    # (n, oh, ow, c) OUT: iy * w + ix
                       int ph, int pw, int sh, int sw, int pt, int pl):
    """Y = max over each window; argmax gets where each maximum was."""
    cdef Py_ssize_t n = X.shape[0], h = X.shape[1], w = X.shape[2], c = X.shape[3]
    cdef Py_ssize_t oh = Y.shape[1], ow = Y.shape[2], s, inper = h * w * c
    cdef Py_ssize_t outper = oh * ow * c
    cdef PGeom g
    cdef int nc, t
    if Y.shape[0] != n or Y.shape[3] != c:
        raise ValueError("max_pool2d_forward: Y must be (n, oh, ow, c)")
    if argmax.shape[0] != n or argmax.shape[1] != oh or argmax.shape[2] != ow \
            or argmax.shape[3] != c:
        raise ValueError("max_pool2d_forward: argmax does not match Y")
    _pgeom("max_pool2d_forward", &g, h, w, c, oh, ow, ph, pw, sh, sw, pt, pl)
    if n * outper == 0:
        return
    if inper == 0:
        # Every window is empty: 0 and no maximum (argmax -1).
        Y[...] = 0
        argmax[...] = -1
        return
    cdef const floating* xp = _cp4(X)
    cdef floating* yp = _p4(Y)
    cdef int64_t* ap = &argmax[0, 0, 0, 0]
    nc = _pool_chunks(n * oh * ow * c * ph * pw)
    if nc > n:
        nc = <int>n
    with nogil:
        if nc == 1:
            for s in range(n):
                _max_sample(xp + s * inper, &g, yp + s * outper, ap + s * outper)
        else:
            for t in prange(nc, num_threads=nc, schedule='static'):
                for s in range(n * t // nc, n * (t + 1) // nc):
                    _max_sample(xp + s * inper, &g, yp + s * outper, ap + s * outper)


def max_pool2d_backward(const floating[:, :, :, ::1] dY,    # (n, oh, ow, c) IN
                        const int64_t[:, :, :, ::1] argmax,  # (n, oh, ow, c) IN
                        floating[:, :, :, ::1] dX):          # (n, h, w, c) OUT
    """dX = 0, then dY added at each window's argmax."""
    cdef Py_ssize_t n = dY.shape[0], oh = dY.shape[1], ow = dY.shape[2], c = dY.shape[3]
    cdef Py_ssize_t h = dX.shape[1], w = dX.shape[2], s, inper = h * w * c
    cdef Py_ssize_t outper = oh * ow * c
    cdef PGeom g
    cdef int nc, t
    if dX.shape[0] != n or dX.shape[3] != c:
        raise ValueError("max_pool2d_backward: dX must be (n, h, w, c)")
    if argmax.shape[0] != n or argmax.shape[1] != oh or argmax.shape[2] != ow \
            or argmax.shape[3] != c:
        raise ValueError("max_pool2d_backward: argmax does not match dY")
    _pgeom("max_pool2d_backward", &g, h, w, c, oh, ow, 1, 1, 1, 1, 0, 0)
    if n * inper == 0:
        return
    if outper == 0:
        memset(&dX[0, 0, 0, 0], 0, n * inper * sizeof(floating))
        return
    cdef const floating* dyp = _cp4(dY)
    cdef const int64_t* ap = &argmax[0, 0, 0, 0]
    cdef floating* dxp = _p4(dX)
    nc = _pool_chunks(n * (inper + outper))
    if nc > n:
        nc = <int>n
    with nogil:
        if nc == 1:
            for s in range(n):
                _max_grad_sample(dyp + s * outper, ap + s * outper, &g, dxp + s * inper)
        else:
            for t in prange(nc, num_threads=nc, schedule='static'):
                for s in range(n * t // nc, n * (t + 1) // nc):
                    _max_grad_sample(dyp + s * outper, ap + s * outper, &g, dxp + s * inper)


def avg_pool2d_forward(const floating[:, :, :, ::1] X,  # (n, h, w, c) IN
                       floating[:, :, :, ::1] Y,        # (n, oh, ow, c) OUT
                       int ph, int pw, int sh, int sw, int pt, int pl):
    """Y = mean over the real (unpadded) elements of each window."""
    cdef Py_ssize_t n = X.shape[0], h = X.shape[1], w = X.shape[2], c = X.shape[3]
    cdef Py_ssize_t oh = Y.shape[1], ow = Y.shape[2], s, inper = h * w * c
    cdef Py_ssize_t outper = oh * ow * c
    cdef PGeom g
    cdef int nc, t
    if Y.shape[0] != n or Y.shape[3] != c:
        raise ValueError("avg_pool2d_forward: Y must be (n, oh, ow, c)")
    _pgeom("avg_pool2d_forward", &g, h, w, c, oh, ow, ph, pw, sh, sw, pt, pl)
    if n * outper == 0:
        return
    if inper == 0:
        memset(&Y[0, 0, 0, 0], 0, n * outper * sizeof(floating))
        return
    cdef const floating* xp = _cp4(X)
    cdef floating* yp = _p4(Y)
    nc = _pool_chunks(n * oh * ow * c * ph * pw)
    if nc > n:
        nc = <int>n
    with nogil:
        if nc == 1:
            for s in range(n):
                _avg_sample(xp + s * inper, &g, yp + s * outper)
        else:
            for t in prange(nc, num_threads=nc, schedule='static'):
                for s in range(n * t // nc, n * (t + 1) // nc):
                    _avg_sample(xp + s * inper, &g, yp + s * outper)


def avg_pool2d_backward(const floating[:, :, :, ::1] dY,  # (n, oh, ow, c) IN
                        floating[:, :, :, ::1] dX,        # (n, h, w, c) OUT
                        int ph, int pw, int sh, int sw, int pt, int pl):
    """dX = each window's dY spread evenly over its real elements."""
    cdef Py_ssize_t n = dY.shape[0], oh = dY.shape[1], ow = dY.shape[2], c = dY.shape[3]
    cdef Py_ssize_t h = dX.shape[1], w = dX.shape[2], s, inper = h * w * c
    cdef Py_ssize_t outper = oh * ow * c
    cdef PGeom g
    cdef int nc, t
    if dX.shape[0] != n or dX.shape[3] != c:
        raise ValueError("avg_pool2d_backward: dX must be (n, h, w, c)")
    _pgeom("avg_pool2d_backward", &g, h, w, c, oh, ow, ph, pw, sh, sw, pt, pl)
    if n * inper == 0:
        return
    if outper == 0:
        memset(&dX[0, 0, 0, 0], 0, n * inper * sizeof(floating))
        return
    cdef const floating* dyp = _cp4(dY)
    cdef floating* dxp = _p4(dX)
    nc = _pool_chunks(n * oh * ow * c * ph * pw)
    if nc > n:
        nc = <int>n
    with nogil:
        if nc == 1:
            for s in range(n):
                _avg_grad_sample(dyp + s * outper, &g, dxp + s * inper)
        else:
            for t in prange(nc, num_threads=nc, schedule='static'):
                for s in range(n * t // nc, n * (t + 1) // nc):
                    _avg_grad_sample(dyp + s * outper, &g, dxp + s * inper)
