# Header-only depthwise 2-D convolution (channels_last), shared by conv.pyx (the
# standalone kernels) and executor.pyx (the DEPTHWISE op).  `cdef inline` only:
# see _blas.pxd.
#
# Channel c is convolved with its own depth_multiplier (dm) filters; output
# channel c * dm + m, as Keras.  The kernel W is Keras's (kh, kw, c, dm) read as
# (kh * kw, c * dm).  There is no sum over channels, so no GEMM applies: the loops
# run over the kernel taps with the contiguous (channel, multiplier) block
# innermost, each tap only over the outputs whose receptive field it reaches
# inside the input (_ox_range, computed once per tap), so no padding or stride
# can reach outside the buffers.  No bias or activation here: the callers apply
# them after (_act.pxd).
#
# Both passes split the batch over samples (two samples never write the same
# output or input gradient).  dW sums every sample: with a team, thread 0 adds
# into dW itself and every other thread into its own partial buffer of the
# caller's (`parts`, nparts buffers of kh * kw * c * dm values), reduced in
# thread order afterwards; with fewer buffers than threads the team shrinks, and
# with none dW is serial.
from cython cimport floating
from cython.parallel cimport prange
from libc.string cimport memset

from _conv cimport Geom, _copy_chunks, _ox_range


cdef inline void _dw_fwd_sample(const floating* X, const floating* W, const Geom* g,
                                Py_ssize_t dm, Py_ssize_t s, floating* Y) noexcept nogil:
    cdef Py_ssize_t oy, ox, ki, kj, iy, ix, ch, m, lo, hi, c = g.c, f = g.c * dm
    cdef const floating* src
    cdef const floating* wt
    cdef floating* dst
    cdef floating* d
    cdef floating v
    for oy in range(g.oh):
        dst = Y + (s * g.oh + oy) * g.ow * f
        for ox in range(g.ow * f):
            dst[ox] = 0
        for ki in range(g.kh):
            iy = oy * g.sh - g.pt + ki * g.dh
            if iy < 0 or iy >= g.h:
                continue
            for kj in range(g.kw):
                _ox_range(g, kj, &lo, &hi)
                wt = W + (ki * g.kw + kj) * f
                for ox in range(lo, hi):
                    ix = ox * g.sw - g.pl + kj * g.dw
                    src = X + ((s * g.h + iy) * g.w + ix) * c
                    d = dst + ox * f
                    # dm == 1 (the common case) as one contiguous loop that vectorizes.
                    if dm == 1:
                        for ch in range(c):
                            d[ch] += src[ch] * wt[ch]
                    else:
                        for ch in range(c):
                            v = src[ch]
                            for m in range(dm):
                                d[ch * dm + m] += v * wt[ch * dm + m]


cdef inline void _dw_bwd_sample(const floating* X, const floating* W, const floating* dZ,
                                const Geom* g, Py_ssize_t dm, Py_ssize_t s, floating* dX,
                                floating* dW) noexcept nogil:
    """dX[s] += its taps (the caller zeroed it); dW += this sample's taps."""
    cdef Py_ssize_t oy, ox, ki, kj, iy, ix, ch, m, lo, hi, c = g.c, f = g.c * dm
    cdef const floating* src
    cdef const floating* grad
    cdef const floating* wt
    cdef floating* gx
    cdef floating* gw
    cdef floating acc
    for oy in range(g.oh):
        for ki in range(g.kh):
            iy = oy * g.sh - g.pt + ki * g.dh
            if iy < 0 or iy >= g.h:
                continue
            for kj in range(g.kw):
                _ox_range(g, kj, &lo, &hi)
                wt = W + (ki * g.kw + kj) * f
                gw = dW + (ki * g.kw + kj) * f if dW != NULL else NULL
                for ox in range(lo, hi):
                    ix = ox * g.sw - g.pl + kj * g.dw
                    grad = dZ + ((s * g.oh + oy) * g.ow + ox) * f
                    if dX != NULL:
                        gx = dX + ((s * g.h + iy) * g.w + ix) * c
                        if dm == 1:
                            for ch in range(c):
                                gx[ch] += grad[ch] * wt[ch]
                        else:
                            for ch in range(c):
                                acc = 0
                                for m in range(dm):
                                    acc = acc + grad[ch * dm + m] * wt[ch * dm + m]
                                gx[ch] += acc
                    if gw != NULL:
                        src = X + ((s * g.h + iy) * g.w + ix) * c
                        if dm == 1:
                            for ch in range(c):
                                gw[ch] += src[ch] * grad[ch]
                        else:
                            for ch in range(c):
                                acc = src[ch]
                                for m in range(dm):
                                    gw[ch * dm + m] += acc * grad[ch * dm + m]


cdef inline int _dw_team(int nt, const Geom* g, Py_ssize_t n, Py_ssize_t dm) noexcept nogil:
    # Memory-bound like im2col: a team only for hundreds of kilobytes of work.
    cdef int nc = _copy_chunks(nt, n * g.oh * g.ow * g.c * dm * g.kh * g.kw)
    return <int>n if nc > n else nc


cdef inline void dw_forward(int nt, const Geom* g, Py_ssize_t n, Py_ssize_t dm,
                            const floating* X,  # (n, h, w, c) IN
                            const floating* W,  # (kh * kw, c * dm) IN
                            floating* Y         # (n, oh, ow, c * dm) OUT
                            ) noexcept nogil:
    """Y[..., c * dm + m] = sum over taps of X[..., c] * W[tap, c * dm + m]."""
    cdef Py_ssize_t s, per = g.oh * g.ow * g.c * dm
    cdef int nc, t
    if n == 0 or per == 0:
        return
    if g.h * g.w * g.c == 0:
        memset(Y, 0, n * per * sizeof(floating))
        return
    nc = _dw_team(nt, g, n, dm)
    if nc <= 1:
        for s in range(n):
            _dw_fwd_sample(X, W, g, dm, s, Y)
        return
    for t in prange(nc, num_threads=nc, schedule='static'):
        for s in range(n * t // nc, n * (t + 1) // nc):
            _dw_fwd_sample(X, W, g, dm, s, Y)


cdef inline void dw_backward(int nt, const Geom* g, Py_ssize_t n, Py_ssize_t dm,
                             const floating* X,   # (n, h, w, c) IN; unread without dW
                             const floating* W,   # (kh * kw, c * dm) IN
                             const floating* dZ,  # (n, oh, ow, c * dm) IN
                             floating* dX,        # (n, h, w, c) OUT or NULL
                             floating* dW,        # like W, OUT (IN/OUT if acc_w) or NULL
                             bint acc_w,
                             floating* parts,     # (nparts, kh * kw * c * dm) scratch
                             Py_ssize_t nparts) noexcept nogil:
    """dX = the taps' transpose of dZ; dW (+)= the sum over samples of X's taps * dZ."""
    cdef Py_ssize_t s, kf = g.kh * g.kw * g.c * dm, j, p
    cdef int nc, t
    cdef floating* gw
    if dX != NULL and n * g.h * g.w * g.c > 0:
        memset(dX, 0, n * g.h * g.w * g.c * sizeof(floating))
    if dW != NULL and not acc_w and kf > 0:
        memset(dW, 0, kf * sizeof(floating))
    if n == 0 or g.oh * g.ow == 0 or kf == 0 or g.h * g.w == 0:
        return
    nc = _dw_team(nt, g, n, dm)
    if dW != NULL and nc > nparts + 1:
        nc = <int>(nparts + 1)
    if nc <= 1:
        for s in range(n):
            _dw_bwd_sample(X, W, dZ, g, dm, s, dX, dW)
        return
    if dW != NULL:
        memset(parts, 0, (nc - 1) * kf * sizeof(floating))
    for t in prange(nc, num_threads=nc, schedule='static'):
        gw = NULL
        if dW != NULL:
            gw = dW if t == 0 else parts + (t - 1) * kf
        for s in range(n * t // nc, n * (t + 1) // nc):
            _dw_bwd_sample(X, W, dZ, g, dm, s, dX, gw)
    if dW != NULL:
        for p in range(nc - 1):
            for j in range(kf):
                dW[j] = dW[j] + parts[p * kf + j]
