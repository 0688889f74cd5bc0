# Header-only dropout loops, shared by dropout.pyx (the standalone kernels) and
# executor.pyx (the compiled step).  `cdef inline` only: see _blas.pxd.
#
# Element i of the flattened array is kept when u(key, counter + i) >= rate, so
# the mask depends only on (seed, counter, size): chunks split over threads give
# the same mask as one serial pass.
from cython cimport floating
from cython.parallel cimport prange
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy

from _common cimport _chunks
from _rng cimport rng_bits, rng_threshold


cdef inline floating _keep_or_zero(floating v, bint keep) noexcept nogil:
    """v if keep else +0.0, without a branch.

    Masks are random, so a branch mispredicts on half the elements: it made
    dropout 5x slower than this bit mask (the memcpy calls compile to register
    moves and respect C's aliasing rules).
    """
    cdef uint32_t b32
    cdef uint64_t b64
    if floating is float:
        memcpy(&b32, &v, 4)
        b32 &= <uint32_t>0 - <uint32_t>keep
        memcpy(&v, &b32, 4)
    else:
        memcpy(&b64, &v, 8)
        b64 &= <uint64_t>0 - <uint64_t>keep
        memcpy(&v, &b64, 8)
    return v


cdef inline void _dropout_fwd_range(const floating* x, floating* y, uint8_t* mask,
                                    Py_ssize_t lo, Py_ssize_t hi, double rate,
                                    floating scale, uint64_t key,
                                    uint64_t counter) noexcept nogil:
    cdef Py_ssize_t i
    cdef bint keep
    cdef uint64_t threshold = rng_threshold(rate)
    for i in range(lo, hi):
        keep = rng_bits(key, counter + <uint64_t>i) >= threshold
        mask[i] = keep
        y[i] = _keep_or_zero(x[i] * scale, keep)


cdef inline void _dropout_fwd(const floating* x,  # (size,) IN, may alias y
                              floating* y,        # (size,) OUT
                              uint8_t* mask,      # (size,) OUT, 1 where kept
                              Py_ssize_t size, double rate, uint64_t key,
                              uint64_t counter) noexcept nogil:
    """mask = u(key, counter + i) >= rate; y = x * mask / (1 - rate)."""
    cdef floating scale = <floating>(1.0 / (1.0 - rate))
    # Hashing costs ~2 ns an element, so the mask pays for threads sooner than
    # the other elementwise loops do.
    cdef int nc = _chunks(size * 4), c
    if nc == 1:
        _dropout_fwd_range(x, y, mask, 0, size, rate, scale, key, counter)
        return
    for c in prange(nc, num_threads=nc, schedule='static'):
        _dropout_fwd_range(x, y, mask, size * c // nc, size * (c + 1) // nc, rate, scale,
                           key, counter)


cdef inline void _dropout_bwd_range(const floating* dy, const uint8_t* mask, floating* dx,
                                    Py_ssize_t lo, Py_ssize_t hi,
                                    floating scale) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(lo, hi):
        dx[i] = _keep_or_zero(dy[i] * scale, mask[i] != 0)


cdef inline void _dropout_bwd(const floating* dy,    # (size,) IN, may alias dx
                              const uint8_t* mask,   # (size,) IN
                              floating* dx,          # (size,) OUT
                              Py_ssize_t size, double rate) noexcept nogil:
    """dx = dy * mask / (1 - rate)."""
    cdef floating scale = <floating>(1.0 / (1.0 - rate))
    cdef int nc = _chunks(size), c
    if nc == 1:
        _dropout_bwd_range(dy, mask, dx, 0, size, scale)
        return
    for c in prange(nc, num_threads=nc, schedule='static'):
        _dropout_bwd_range(dy, mask, dx, size * c // nc, size * (c + 1) // nc, scale)
