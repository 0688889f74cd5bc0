# Design
# ------
# Dropout with masks from a counter-based generator (_rng.pxd): element i of the
# flattened (C-order) array is kept when u(seed, counter + i) >= rate.  The mask
# therefore depends only on (seed, counter, size), never on the thread count, so
# the forward pass splits freely over OpenMP threads and a NumPy reference can
# reproduce it exactly.  The caller owns the generator state: advancing counter
# by the array size per call never reuses a number.
#
# The mask (uint8, 1 = kept) is written for the backward pass, which only
# rescales by it.  Kept values are scaled by 1 / (1 - rate) (inverted dropout, as
# Keras), so inference is the identity and needs no kernel.
from cython cimport floating
from libc.stdint cimport uint8_t, uint64_t

from _common cimport _cp2, _p2
from _dropout cimport _dropout_bwd, _dropout_fwd
from _rng cimport rng_key

include "_team.pxi"  # binds this module to the process-wide team (csrc/_team.pxd)


def dropout_forward(const floating[:, ::1] X,  # (n, k) IN
                    floating[:, ::1] Y,        # (n, k) OUT, may be X
                    uint8_t[:, ::1] mask,      # (n, k) OUT, 1 where kept
                    double rate,               # in [0, 1)
                    uint64_t seed,
                    uint64_t counter):
    """mask = u(seed, counter + i) >= rate; Y = X * mask / (1 - rate)."""
    cdef Py_ssize_t n = X.shape[0], k = X.shape[1], size = n * k
    cdef const floating* xp = _cp2(X)
    cdef floating* yp = _p2(Y)
    cdef uint8_t* mp = &mask[0, 0] if size > 0 else NULL
    cdef uint64_t key = rng_key(seed)
    if Y.shape[0] != n or Y.shape[1] != k or mask.shape[0] != n or mask.shape[1] != k:
        raise ValueError("dropout_forward: shapes of X, Y, mask do not agree")
    if not 0 <= rate < 1:
        raise ValueError(f"dropout_forward: rate must be in [0, 1), got {rate}")
    with nogil:
        _dropout_fwd(xp, yp, mp, size, rate, key, counter)


def dropout_backward(const floating[:, ::1] dY,     # (n, k) IN
                     const uint8_t[:, ::1] mask,    # (n, k) IN, from dropout_forward
                     double rate,
                     floating[:, ::1] dX):          # (n, k) OUT, may be dY
    """dX = dY * mask / (1 - rate)."""
    cdef Py_ssize_t n = dY.shape[0], k = dY.shape[1], size = n * k
    cdef const floating* dyp = _cp2(dY)
    cdef floating* dxp = _p2(dX)
    cdef const uint8_t* mp = &mask[0, 0] if size > 0 else NULL
    if dX.shape[0] != n or dX.shape[1] != k or mask.shape[0] != n or mask.shape[1] != k:
        raise ValueError("dropout_backward: shapes of dY, mask, dX do not agree")
    if not 0 <= rate < 1:
        raise ValueError(f"dropout_backward: rate must be in [0, 1), got {rate}")
    with nogil:
        _dropout_bwd(dyp, mp, dxp, size, rate)
