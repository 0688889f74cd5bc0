# Header-only layer-normalization loops, shared by layernorm.pyx (the standalone
# kernels) and executor.pyx (the compiled step's LAYERNORM op).  `cdef inline`
# only: see _blas.pxd.
#
# X is (m, d): each row is normalized by its own mean and biased variance, then
# scaled by gamma and shifted by beta (one value per column; either may be NULL).
# Row statistics are accumulated in double; rows run in parallel.  The column
# sums of the parameter gradients stream the rows in blocks of COL_BLOCK columns
# with double accumulators (as _colsum does), so nothing is allocated.
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport sqrt

from _common cimport COL_BLOCK, _chunks, _colsum
from _team cimport team


cdef inline void _ln_row(const floating* x, const floating* gamma, const floating* beta,
                         double eps, Py_ssize_t d, floating* y, floating* mean,
                         floating* inv_std) noexcept nogil:
    cdef Py_ssize_t j
    cdef double m = 0, v = 0, t, inv
    for j in range(d):
        m += x[j]
    m = m / d if d > 0 else 0
    for j in range(d):
        t = x[j] - m
        v += t * t
    v = v / d if d > 0 else 0
    # sqrt, not ** 0.5: Cython's power of a double may turn complex (a NaN row).
    inv = 1.0 / sqrt(v + eps)
    mean[0] = <floating>m
    inv_std[0] = <floating>inv
    for j in range(d):
        t = (x[j] - m) * inv
        if gamma != NULL:
            t = t * gamma[j]
        if beta != NULL:
            t = t + beta[j]
        y[j] = <floating>t


cdef inline void _ln_grad_row(const floating* x, const floating* dy, const floating* gamma,
                              double mean, double inv, Py_ssize_t d,
                              floating* dx) noexcept nogil:
    cdef Py_ssize_t j
    cdef double s1 = 0, s2 = 0, g, xh
    for j in range(d):
        g = dy[j] * (gamma[j] if gamma != NULL else 1.0)
        xh = (x[j] - mean) * inv
        s1 += g
        s2 += g * xh
    for j in range(d):
        g = dy[j] * (gamma[j] if gamma != NULL else 1.0)
        xh = (x[j] - mean) * inv
        dx[j] = <floating>(inv / d * (d * g - s1 - xh * s2))


cdef inline void _dgamma_block(const floating* X, const floating* dY, const floating* mean,
                               const floating* inv_std, Py_ssize_t m, Py_ssize_t d,
                               Py_ssize_t j0, Py_ssize_t j1, floating* out,
                               bint add) noexcept nogil:
    cdef double acc[COL_BLOCK]
    cdef double mu, inv
    cdef Py_ssize_t i, j
    for j in range(j1 - j0):
        acc[j] = 0
    for i in range(m):
        mu = mean[i]
        inv = inv_std[i]
        for j in range(j0, j1):
            acc[j - j0] += dY[i * d + j] * ((X[i * d + j] - mu) * inv)
    for j in range(j0, j1):
        out[j] = <floating>(out[j] + acc[j - j0]) if add else <floating>acc[j - j0]


cdef inline void ln_forward(const floating* X,      # (m, d) IN
                            Py_ssize_t m, Py_ssize_t d,
                            const floating* gamma,  # (d,) IN or NULL
                            const floating* beta,   # (d,) IN or NULL
                            double eps,
                            floating* Y,            # (m, d) OUT, may be X
                            floating* mean,         # (m,) OUT
                            floating* inv_std) noexcept nogil:  # (m,) OUT
    """Y = (X - mean_row) * inv_std_row * gamma + beta; d >= 1."""
    cdef Py_ssize_t i
    cdef int nc = _chunks(m * d), t
    if m == 0:
        return
    if nc == 1:
        for i in range(m):
            _ln_row(X + i * d, gamma, beta, eps, d, Y + i * d, mean + i, inv_std + i)
        return
    for t in prange(nc, num_threads=nc, schedule='static'):
        for i in range(m * t // nc, m * (t + 1) // nc):
            _ln_row(X + i * d, gamma, beta, eps, d, Y + i * d, mean + i, inv_std + i)


cdef inline void ln_backward(const floating* X,        # (m, d) IN
                             const floating* dY,       # (m, d) IN
                             Py_ssize_t m, Py_ssize_t d,
                             const floating* gamma,    # (d,) IN or NULL
                             const floating* mean,     # (m,) IN
                             const floating* inv_std,  # (m,) IN
                             floating* dX,             # (m, d) OUT or NULL
                             floating* dgamma,         # (d,) OUT (IN/OUT if add_dgamma) or NULL
                             floating* dbeta,          # (d,) OUT (IN/OUT if add_dbeta) or NULL
                             bint add_dgamma, bint add_dbeta) noexcept nogil:
    """dX through the row statistics; dgamma (+)= sum dY xhat; dbeta (+)= sum dY; d >= 1."""
    cdef Py_ssize_t i, nblocks, blk, j1
    cdef int nc = _chunks(m * d), t
    if dbeta != NULL:
        _colsum(dY, m, d, 1.0, dbeta, add_dbeta)
    if dgamma != NULL:
        nblocks = (d + COL_BLOCK - 1) // COL_BLOCK
        if nc == 1 or nblocks == 1:
            for blk in range(nblocks):
                j1 = (blk + 1) * COL_BLOCK
                _dgamma_block(X, dY, mean, inv_std, m, d, blk * COL_BLOCK, j1 if j1 < d else d,
                              dgamma, add_dgamma)
        else:
            for blk in prange(nblocks, num_threads=team(), schedule='static'):
                j1 = (blk + 1) * COL_BLOCK
                _dgamma_block(X, dY, mean, inv_std, m, d, blk * COL_BLOCK, j1 if j1 < d else d,
                              dgamma, add_dgamma)
    if dX == NULL or m == 0:
        return
    if nc == 1:
        for i in range(m):
            _ln_grad_row(X + i * d, dY + i * d, gamma, mean[i], inv_std[i], d, dX + i * d)
        return
    for t in prange(nc, num_threads=nc, schedule='static'):
        for i in range(m * t // nc, m * (t + 1) // nc):
            _ln_grad_row(X + i * d, dY + i * d, gamma, mean[i], inv_std[i], d, dX + i * d)
