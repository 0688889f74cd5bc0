# Header-only 2-D max and average pooling over NHWC arrays, shared by pool.pyx
# (the standalone kernels) and executor.pyx (the compiled step's POOL op).
# `cdef inline` only: see _blas.pxd.
#
# Output position (oy, ox) pools input rows oy*sh - pt .. + ph - 1 and columns
# ox*sw - pl .. + pw - 1, clipped to the input: padding never contributes, as in
# TensorFlow/Keras ("same" average pooling divides by the number of real elements
# in the window).  1-D pooling is height 1, global pooling one window over the
# whole input.  The innermost loop runs over the contiguous channels.  Max
# pooling records, per output element, the flat index iy*w + ix of its maximum
# (first one on ties) when the caller gives an argmax buffer (training); the
# backward pass adds dY there.  Parallel over samples (two samples never write
# the same element).
from cython cimport floating
from cython.parallel cimport prange
from libc.stdint cimport int64_t
from libc.string cimport memcpy, memset


cdef enum:
    # Window loops are memory-bound: below this many elements one thread.
    POOL_MIN_ELEMENTS = 1 << 18


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


cdef inline floating nan_max(floating m, floating v) noexcept nogil:
    """max(m, v), NaN when either is (max pooling's rule, also the fused pooling's in
    _conv_infer.pxd).  `v > m ? v : m` is one maxps, which returns m when either is
    NaN, so a NaN m survives; the select after lets a NaN v in."""
    cdef floating r = v if v > m else m
    return v if v != v else r


cdef inline void _max_sample(const floating* X, const PGeom* g, floating* Y,
                             int64_t* arg) noexcept nogil:
    cdef Py_ssize_t oy, ox, iy, ix, ch, y0, y1, x0, x1, o
    cdef const floating* src
    cdef floating* yo
    cdef floating v, m
    for oy in range(g.oh):
        for ox in range(g.ow):
            _window(g, oy, ox, &y0, &y1, &x0, &x1)
            o = (oy * g.ow + ox) * g.c
            if y0 >= y1 or x0 >= x1:
                # An all-padding window (impossible for Keras's padding): 0, no gradient.
                for ch in range(g.c):
                    Y[o + ch] = 0
                    if arg != NULL:
                        arg[o + ch] = -1
                continue
            src = X + (y0 * g.w + x0) * g.c
            for ch in range(g.c):
                Y[o + ch] = src[ch]
            if arg != NULL:
                for ch in range(g.c):
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
            else:
                # The maximum alone, with the NaN rule in two selects that vectorize.
                yo = Y + o
                for iy in range(y0, y1):
                    for ix in range(x0, x1):
                        src = X + (iy * g.w + ix) * g.c
                        for ch in range(g.c):
                            yo[ch] = nan_max(yo[ch], src[ch])


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


cdef inline void _max_grad_x_sample(const floating* X, const floating* Y, const floating* dY,
                                    const PGeom* g, floating* dX) noexcept nogil:
    """dX = 0, then dY added at each window's first maximum, found again from X and Y
    (the position argmax would have recorded; a NaN maximum at the first NaN).

    Selects of registers over the contiguous channels, so the loops vectorize; `left`
    is the gradient not yet placed (0 once its maximum was found).
    """
    cdef Py_ssize_t oy, ox, iy, ix, ch, c0, cw, y0, y1, x0, x1, o
    cdef floating left[64]
    cdef const floating* src
    cdef const floating* yo
    cdef floating* dst
    cdef floating v, y, r, z = 0
    cdef Py_ssize_t nans
    memset(dX, 0, g.h * g.w * g.c * sizeof(floating))
    for oy in range(g.oh):
        for ox in range(g.ow):
            _window(g, oy, ox, &y0, &y1, &x0, &x1)
            if y0 >= y1 or x0 >= x1:
                continue
            o = (oy * g.ow + ox) * g.c
            for c0 in range(0, g.c, 64):
                cw = g.c - c0 if g.c - c0 < 64 else 64
                yo = Y + o + c0
                memcpy(left, dY + o + c0, cw * sizeof(floating))
                nans = 0
                for ch in range(cw):
                    nans = nans + (1 if yo[ch] != yo[ch] else 0)
                for iy in range(y0, y1):
                    for ix in range(x0, x1):
                        src = X + (iy * g.w + ix) * g.c + c0
                        dst = dX + (iy * g.w + ix) * g.c + c0
                        if nans == 0:
                            # Float selects on one compare: the loop vectorizes.
                            for ch in range(cw):
                                r = left[ch]
                                v = r if src[ch] == yo[ch] else z
                                dst[ch] = dst[ch] + v
                                left[ch] = z if src[ch] == yo[ch] else r
                        else:
                            # A NaN maximum goes to the window's first NaN.
                            for ch in range(cw):
                                v = src[ch]
                                y = yo[ch]
                                r = left[ch]
                                if v == y or (v != v and y != y):
                                    dst[ch] = dst[ch] + r
                                    left[ch] = z


cdef inline int _pool_chunks(int nt, Py_ssize_t n, Py_ssize_t work) noexcept nogil:
    if work < POOL_MIN_ELEMENTS or nt < 2:
        return 1
    return <int>n if n < nt else nt


cdef inline void pool_forward(int nt, const PGeom* g, Py_ssize_t n, bint is_max,
                              const floating* X,  # (n, h, w, c) IN
                              floating* Y,        # (n, oh, ow, c) OUT
                              int64_t* arg) noexcept nogil:  # like Y, OUT or NULL
    """Y = max (arg: where) or mean over each window."""
    cdef Py_ssize_t s, inper = g.h * g.w * g.c, outper = g.oh * g.ow * g.c
    cdef int nc = _pool_chunks(nt, n, n * outper * g.ph * g.pw), t
    if n * outper == 0:
        return
    if inper == 0:
        memset(Y, 0, n * outper * sizeof(floating))
        if arg != NULL:
            for s in range(n * outper):
                arg[s] = -1
        return
    if nc == 1:
        for s in range(n):
            if is_max:
                _max_sample(X + s * inper, g, Y + s * outper,
                            arg + s * outper if arg != NULL else NULL)
            else:
                _avg_sample(X + s * inper, g, Y + s * outper)
        return
    for t in prange(nc, num_threads=nc, schedule='static'):
        for s in range(n * t // nc, n * (t + 1) // nc):
            if is_max:
                _max_sample(X + s * inper, g, Y + s * outper,
                            arg + s * outper if arg != NULL else NULL)
            else:
                _avg_sample(X + s * inper, g, Y + s * outper)


cdef inline void pool_backward(int nt, const PGeom* g, Py_ssize_t n, bint is_max,
                               const floating* X,    # (n, h, w, c) IN (max, no argmax)
                               const floating* Y,    # (n, oh, ow, c) IN (max, no argmax)
                               const floating* dY,   # (n, oh, ow, c) IN
                               const int64_t* arg,   # like dY IN (max pooling) or NULL
                               floating* dX) noexcept nogil:  # (n, h, w, c) OUT
    """dX = 0, then dY added at each window's maximum (max) or spread over it (mean).

    Max pooling finds each maximum in ``arg`` when given, else again from X and Y
    (the executor's way: no argmax written in the forward pass).
    """
    cdef Py_ssize_t s, inper = g.h * g.w * g.c, outper = g.oh * g.ow * g.c
    cdef int nc = _pool_chunks(nt, n, n * (inper + outper * g.ph * g.pw)), t
    if n * inper == 0:
        return
    if outper == 0:
        memset(dX, 0, n * inper * sizeof(floating))
        return
    if nc == 1:
        for s in range(n):
            if is_max and arg == NULL:
                _max_grad_x_sample(X + s * inper, Y + s * outper, dY + s * outper, g,
                                   dX + s * inper)
            elif is_max:
                _max_grad_sample(dY + s * outper, arg + s * outper, g, dX + s * inper)
            else:
                _avg_grad_sample(dY + s * outper, g, dX + s * inper)
        return
    for t in prange(nc, num_threads=nc, schedule='static'):
        for s in range(n * t // nc, n * (t + 1) // nc):
            if is_max and arg == NULL:
                _max_grad_x_sample(X + s * inper, Y + s * outper, dY + s * outper, g,
                                   dX + s * inper)
            elif is_max:
                _max_grad_sample(dY + s * outper, arg + s * outper, g, dX + s * inper)
            else:
                _avg_grad_sample(dY + s * outper, g, dX + s * inper)
