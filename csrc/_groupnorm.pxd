# Header-only group-normalization loops for the compiled step's GROUPNORM op
# (executor.pyx).  `cdef inline` only: see _blas.pxd.
#
# X is (n, P, C) channels-last: the C channels split into G consecutive groups of
# cg = C / G; each (sample, group) is normalized over its P * cg values (biased
# variance, statistics in double), then scaled and shifted per channel (gamma/beta
# may be NULL).  The statistics (mean, inv_std) of the n * G (sample, group) pairs
# go to caller buffers for the backward pass.  Samples run in parallel (forward and
# the input gradient); nothing is allocated: the parameter gradients stream the rows
# in blocks of COL_BLOCK channels (as _colsum does).
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport sqrt

from _common cimport COL_BLOCK, _chunks, _colsum
from _team cimport team


cdef inline void _gn_sample(const floating* X, Py_ssize_t P, Py_ssize_t C, Py_ssize_t G,
                            const floating* gamma, const floating* beta, double eps,
                            floating* Y, floating* mean, floating* inv_std) noexcept nogil:
    """One sample's (P, C) values: its G groups' statistics and normalized output."""
    cdef Py_ssize_t cg = C // G, g, p, c, base
    cdef double m, v, t, inv, cnt = <double>(P * cg)
    for g in range(G):
        m = 0
        for p in range(P):
            base = p * C + g * cg
            for c in range(cg):
                m += X[base + c]
        m = m / cnt
        v = 0
        for p in range(P):
            base = p * C + g * cg
            for c in range(cg):
                t = X[base + c] - m
                v += t * t
        v = v / cnt
        inv = 1.0 / sqrt(v + eps)
        mean[g] = <floating>m
        inv_std[g] = <floating>inv
        for p in range(P):
            base = p * C + g * cg
            for c in range(cg):
                t = (X[base + c] - m) * inv
                if gamma != NULL:
                    t = t * gamma[g * cg + c]
                if beta != NULL:
                    t = t + beta[g * cg + c]
                Y[base + c] = <floating>t


cdef inline void gn_forward(const floating* X,      # (n, P, C) IN
                            Py_ssize_t n, Py_ssize_t P, Py_ssize_t C, Py_ssize_t G,
                            const floating* gamma,  # (C,) IN or NULL
                            const floating* beta,   # (C,) IN or NULL
                            double eps,
                            floating* Y,            # (n, P, C) OUT
                            floating* mean,         # (n * G,) OUT
                            floating* inv_std) noexcept nogil:  # (n * G,) OUT
    """Samples run in parallel (each is independent: the same result on any team)."""
    cdef Py_ssize_t i, S = P * C
    cdef int nc = _chunks(n * S), t
    if nc == 1 or n == 1:
        for i in range(n):
            _gn_sample(X + i * S, P, C, G, gamma, beta, eps, Y + i * S, mean + i * G,
                       inv_std + i * G)
        return
    for t in prange(nc, num_threads=nc, schedule='static'):
        for i in range(n * t // nc, n * (t + 1) // nc):
            _gn_sample(X + i * S, P, C, G, gamma, beta, eps, Y + i * S, mean + i * G,
                       inv_std + i * G)


cdef inline void _gn_dgamma_block(const floating* X, const floating* dY, const floating* mean,
                                  const floating* inv_std, Py_ssize_t n, Py_ssize_t P,
                                  Py_ssize_t C, Py_ssize_t G, Py_ssize_t j0, Py_ssize_t j1,
                                  floating* out, bint add) noexcept nogil:
    cdef double acc[COL_BLOCK]
    cdef Py_ssize_t r, j, s, cg = C // G
    for j in range(j1 - j0):
        acc[j] = 0
    for r in range(n * P):
        s = (r // P) * G
        for j in range(j0, j1):
            acc[j - j0] += dY[r * C + j] * ((X[r * C + j] - mean[s + j // cg])
                                            * inv_std[s + j // cg])
    for j in range(j0, j1):
        out[j] = <floating>(out[j] + acc[j - j0]) if add else <floating>acc[j - j0]


cdef inline void _gn_sample_dx(const floating* X, const floating* dY, Py_ssize_t P,
                               Py_ssize_t C, Py_ssize_t G, const floating* gamma,
                               const floating* mean, const floating* inv_std,
                               floating* dX) noexcept nogil:
    """One sample's input gradient through its G groups' statistics."""
    cdef Py_ssize_t cg = C // G, g, p, c, k
    cdef double s1, s2, gg, xh, m, inv, cnt = <double>(P * cg)
    for g in range(G):
        m = mean[g]
        inv = inv_std[g]
        s1 = 0
        s2 = 0
        for p in range(P):
            for c in range(cg):
                k = p * C + g * cg + c
                gg = dY[k] * (gamma[g * cg + c] if gamma != NULL else 1.0)
                xh = (X[k] - m) * inv
                s1 += gg
                s2 += gg * xh
        for p in range(P):
            for c in range(cg):
                k = p * C + g * cg + c
                gg = dY[k] * (gamma[g * cg + c] if gamma != NULL else 1.0)
                xh = (X[k] - m) * inv
                dX[k] = <floating>(inv / cnt * (cnt * gg - s1 - xh * s2))


cdef inline void gn_backward(const floating* X,        # (n, P, C) IN
                             const floating* dY,       # (n, P, C) IN
                             Py_ssize_t n, Py_ssize_t P, Py_ssize_t C, Py_ssize_t G,
                             const floating* gamma,    # (C,) IN or NULL
                             const floating* mean,     # (n * G,) IN
                             const floating* inv_std,  # (n * G,) IN
                             floating* dX,             # (n, P, C) OUT or NULL
                             floating* dgamma,         # (C,) OUT (IN/OUT if add_dgamma) or NULL
                             floating* dbeta,          # (C,) OUT (IN/OUT if add_dbeta) or NULL
                             bint add_dgamma, bint add_dbeta) noexcept nogil:
    """dX through the group statistics; dgamma (+)= sum dY xhat; dbeta (+)= sum dY."""
    cdef Py_ssize_t i, blk, j1, nblocks
    cdef int nc, t
    if dbeta != NULL:
        _colsum(dY, n * P, C, 1.0, dbeta, add_dbeta)
    if dgamma != NULL:
        nblocks = (C + COL_BLOCK - 1) // COL_BLOCK
        if nblocks == 1 or _chunks(n * P * C) == 1:
            for blk in range(nblocks):
                j1 = (blk + 1) * COL_BLOCK
                _gn_dgamma_block(X, dY, mean, inv_std, n, P, C, G, blk * COL_BLOCK,
                                 j1 if j1 < C else C, dgamma, add_dgamma)
        else:
            for blk in prange(nblocks, num_threads=team(), schedule='static'):
                j1 = (blk + 1) * COL_BLOCK
                _gn_dgamma_block(X, dY, mean, inv_std, n, P, C, G, blk * COL_BLOCK,
                                 j1 if j1 < C else C, dgamma, add_dgamma)
    if dX == NULL or n == 0:
        return
    nc = _chunks(n * P * C)
    if nc == 1 or n == 1:
        for i in range(n):
            _gn_sample_dx(X + i * P * C, dY + i * P * C, P, C, G, gamma, mean + i * G,
                          inv_std + i * G, dX + i * P * C)
        return
    for t in prange(nc, num_threads=nc, schedule='static'):
        for i in range(n * t // nc, n * (t + 1) // nc):
            _gn_sample_dx(X + i * P * C, dY + i * P * C, P, C, G, gamma, mean + i * G,
                          inv_std + i * G, dX + i * P * C)
