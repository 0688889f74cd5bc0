# Design
# ------
# Random fills for the noise layers (GaussianNoise, GaussianDropout,
# AlphaDropout, SpatialDropout) from the counter-based generator of _rng.pxd,
# so they are seeded, reproducible and thread-count independent like Dropout.
# Element i of a normal fill uses the stream positions counter + 2i and
# counter + 2i + 1 (Box-Muller, cosine branch); a uniform fill uses position
# counter + i.  The caller advances its counter by 2 * size or size.
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport cos, log, sqrt
from libc.stdint cimport uint64_t

from _common cimport _chunks
from _rng cimport rng_key, rng_uniform

from _team cimport team, team_for_step

include "_team.pxi"  # binds this module to the process-wide team (csrc/_team.pxd)


cdef double TWO_PI = 6.283185307179586


cdef inline void _normal_range(floating* out, Py_ssize_t lo, Py_ssize_t hi, uint64_t key,
                               uint64_t counter) noexcept nogil:
    cdef Py_ssize_t i
    cdef double u1, u2
    for i in range(lo, hi):
        u1 = rng_uniform(key, counter + 2 * <uint64_t>i)
        u2 = rng_uniform(key, counter + 2 * <uint64_t>i + 1)
        # 1 - u1 is in (0, 1]: the log is finite.
        out[i] = <floating>(sqrt(-2.0 * log(1.0 - u1)) * cos(TWO_PI * u2))


def normal_fill(floating[::1] out,  # (size,) OUT
                uint64_t seed,
                uint64_t counter):
    """out[i] = a standard normal drawn from stream positions counter + 2i, + 2i + 1."""
    cdef Py_ssize_t size = out.shape[0]
    cdef uint64_t key = rng_key(seed)
    cdef int nc = _chunks(size), t
    if size == 0:
        return
    cdef floating* p = &out[0]
    with nogil:
        if nc == 1:
            _normal_range(p, 0, size, key, counter)
        else:
            for t in prange(nc, num_threads=nc, schedule='static'):
                _normal_range(p, size * t // nc, size * (t + 1) // nc, key, counter)


def uniform_fill(floating[::1] out,  # (size,) OUT
                 uint64_t seed,
                 uint64_t counter):
    """out[i] = the uniform in [0, 1) at stream position counter + i (as dropout's)."""
    cdef Py_ssize_t size = out.shape[0], i
    cdef uint64_t key = rng_key(seed)
    with nogil:
        for i in range(size):
            out[i] = <floating>rng_uniform(key, counter + <uint64_t>i)
