# Header-only batch-normalization loops, shared by batchnorm.pyx (the standalone
# kernels) and executor.pyx (the compiled step).  `cdef inline` only: see
# _blas.pxd.  X is (n, c); per-channel statistics are reductions down the columns,
# done in blocks of COL_BLOCK channels whose sums sit in double accumulators on
# the stack while the rows stream through.  Blocks are independent, which is
# also how the work splits over threads.
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport sqrt

from _common cimport COL_BLOCK, _chunks
from _team cimport team


cdef inline void _train_block(const floating* X, Py_ssize_t n, Py_ssize_t c,
                              Py_ssize_t j0, Py_ssize_t j1,
                              const floating* gamma, const floating* beta, double eps,
                              floating* Y, floating* mean, floating* var,
                              floating* inv_std) noexcept nogil:
    cdef double mu[COL_BLOCK]
    cdef double acc[COL_BLOCK]
    cdef double shift[COL_BLOCK]
    cdef Py_ssize_t i, j, w = j1 - j0
    cdef double d, inv
    cdef const floating* x
    for j in range(w):
        mu[j] = 0
        acc[j] = 0
    for i in range(n):
        x = X + i * c + j0
        for j in range(w):
            mu[j] += x[j]
    for j in range(w):
        mu[j] /= n
    for i in range(n):
        x = X + i * c + j0
        for j in range(w):
            d = x[j] - mu[j]
            acc[j] += d * d
    for j in range(w):
        acc[j] /= n
        inv = 1.0 / sqrt(acc[j] + eps)
        mean[j0 + j] = <floating>mu[j]
        var[j0 + j] = <floating>acc[j]
        inv_std[j0 + j] = <floating>inv
        acc[j] = inv * gamma[j0 + j] if gamma != NULL else inv   # now the scale
        shift[j] = beta[j0 + j] if beta != NULL else 0
    for i in range(n):
        x = X + i * c + j0
        for j in range(w):
            Y[i * c + j0 + j] = <floating>((x[j] - mu[j]) * acc[j] + shift[j])


cdef inline void _infer_block(const floating* X, Py_ssize_t n, Py_ssize_t c,
                              Py_ssize_t j0, Py_ssize_t j1,
                              const floating* gamma, const floating* beta,
                              const floating* mm, const floating* mv, double eps,
                              floating* Y) noexcept nogil:
    cdef double scale[COL_BLOCK]
    cdef double shift[COL_BLOCK]
    cdef double mu[COL_BLOCK]
    cdef Py_ssize_t i, j, w = j1 - j0
    cdef const floating* x
    for j in range(w):
        mu[j] = mm[j0 + j]
        scale[j] = 1.0 / sqrt(<double>mv[j0 + j] + eps)
        if gamma != NULL:
            scale[j] *= gamma[j0 + j]
        shift[j] = beta[j0 + j] if beta != NULL else 0
    for i in range(n):
        x = X + i * c + j0
        for j in range(w):
            Y[i * c + j0 + j] = <floating>((x[j] - mu[j]) * scale[j] + shift[j])


cdef inline void _backward_block(const floating* X, const floating* dY,
                                 Py_ssize_t n, Py_ssize_t c, Py_ssize_t j0, Py_ssize_t j1,
                                 const floating* gamma, const floating* mean,
                                 const double* inv_std,   # (j1 - j0,) of this block
                                 bint batch_stats,
                                 floating* dX, floating* dgamma, floating* dbeta,
                                 bint accumulate) noexcept nogil:
    # With xhat = (x - mean) inv_std:  dbeta = sum dy,  dgamma = sum dy xhat.
    # Through batch statistics dX = gamma inv_std / n (n dy - dbeta - xhat dgamma);
    # with constant (moving) statistics dX = gamma inv_std dy.
    cdef double sdy[COL_BLOCK]
    cdef double sdyx[COL_BLOCK]
    cdef double mu[COL_BLOCK]
    cdef double k[COL_BLOCK]
    cdef Py_ssize_t i, j, w = j1 - j0, r
    cdef double xhat
    for j in range(w):
        sdy[j] = 0
        sdyx[j] = 0
        mu[j] = mean[j0 + j]
    for i in range(n):
        r = i * c + j0
        for j in range(w):
            sdy[j] += dY[r + j]
            sdyx[j] += dY[r + j] * ((X[r + j] - mu[j]) * inv_std[j])
    for j in range(w):
        if dbeta != NULL:
            dbeta[j0 + j] = (dbeta[j0 + j] + <floating>sdy[j]) if accumulate \
                else <floating>sdy[j]
        if dgamma != NULL:
            dgamma[j0 + j] = (dgamma[j0 + j] + <floating>sdyx[j]) if accumulate \
                else <floating>sdyx[j]
        k[j] = inv_std[j] * (gamma[j0 + j] if gamma != NULL else 1.0)
    if dX == NULL:
        return
    if batch_stats:
        for j in range(w):
            k[j] /= n
        for i in range(n):
            r = i * c + j0
            for j in range(w):
                xhat = (X[r + j] - mu[j]) * inv_std[j]
                dX[r + j] = <floating>(k[j] * (n * <double>dY[r + j] - sdy[j] - xhat * sdyx[j]))
    else:
        for i in range(n):
            r = i * c + j0
            for j in range(w):
                dX[r + j] = <floating>(k[j] * dY[r + j])


cdef inline void _train_backward_block(const floating* X, const floating* dY,
                                       Py_ssize_t n, Py_ssize_t c, Py_ssize_t j0,
                                       Py_ssize_t j1, const floating* gamma,
                                       const floating* mean, const floating* inv_std,
                                       floating* dX, floating* dgamma, floating* dbeta,
                                       bint accumulate) noexcept nogil:
    cdef double inv[COL_BLOCK]
    cdef Py_ssize_t j
    for j in range(j1 - j0):
        inv[j] = inv_std[j0 + j]
    _backward_block(X, dY, n, c, j0, j1, gamma, mean, inv, True, dX, dgamma, dbeta,
                    accumulate)


cdef inline void _infer_backward_block(const floating* X, const floating* dY,
                                       Py_ssize_t n, Py_ssize_t c, Py_ssize_t j0,
                                       Py_ssize_t j1, const floating* gamma,
                                       const floating* mm, const floating* mv, double eps,
                                       floating* dX, floating* dgamma, floating* dbeta,
                                       bint accumulate) noexcept nogil:
    cdef double inv[COL_BLOCK]
    cdef Py_ssize_t j
    for j in range(j1 - j0):
        inv[j] = 1.0 / sqrt(<double>mv[j0 + j] + eps)
    _backward_block(X, dY, n, c, j0, j1, gamma, mm, inv, False, dX, dgamma, dbeta,
                    accumulate)


cdef inline bint _bn_serial(Py_ssize_t n, Py_ssize_t c) noexcept nogil:
    return c <= COL_BLOCK or _chunks(n * c) == 1


cdef inline void _bn_train(const floating* X, Py_ssize_t n, Py_ssize_t c,
                           const floating* gamma, const floating* beta, double eps,
                           floating* Y, floating* mean, floating* var,
                           floating* inv_std) noexcept nogil:
    """Y = (X - mean) * inv_std * gamma + beta with batch statistics (n >= 1)."""
    cdef Py_ssize_t nblocks = (c + COL_BLOCK - 1) // COL_BLOCK, blk, j1
    if _bn_serial(n, c):
        for blk in range(nblocks):
            j1 = (blk + 1) * COL_BLOCK
            _train_block(X, n, c, blk * COL_BLOCK, j1 if j1 < c else c, gamma, beta, eps,
                         Y, mean, var, inv_std)
        return
    for blk in prange(nblocks, num_threads=team(), schedule='static'):
        j1 = (blk + 1) * COL_BLOCK
        _train_block(X, n, c, blk * COL_BLOCK, j1 if j1 < c else c, gamma, beta, eps,
                     Y, mean, var, inv_std)


cdef inline void _bn_infer(const floating* X, Py_ssize_t n, Py_ssize_t c,
                           const floating* gamma, const floating* beta,
                           const floating* mm, const floating* mv, double eps,
                           floating* Y) noexcept nogil:
    """Y = (X - moving_mean) / sqrt(moving_var + eps) * gamma + beta."""
    cdef Py_ssize_t nblocks = (c + COL_BLOCK - 1) // COL_BLOCK, blk, j1
    if n == 0:
        return
    if _bn_serial(n, c):
        for blk in range(nblocks):
            j1 = (blk + 1) * COL_BLOCK
            _infer_block(X, n, c, blk * COL_BLOCK, j1 if j1 < c else c, gamma, beta, mm, mv,
                         eps, Y)
        return
    for blk in prange(nblocks, num_threads=team(), schedule='static'):
        j1 = (blk + 1) * COL_BLOCK
        _infer_block(X, n, c, blk * COL_BLOCK, j1 if j1 < c else c, gamma, beta, mm, mv,
                     eps, Y)


cdef inline void _bn_update_moving(floating* mm, floating* mv, const floating* mean,
                                   const floating* var, Py_ssize_t c,
                                   double momentum) noexcept nogil:
    """moving = momentum * moving + (1 - momentum) * batch (Keras's convention)."""
    cdef Py_ssize_t j
    cdef floating mom = <floating>momentum, rest = <floating>(1.0 - momentum)
    for j in range(c):
        mm[j] = mom * mm[j] + rest * mean[j]
        mv[j] = mom * mv[j] + rest * var[j]


cdef inline void _bn_backward_train(const floating* X, const floating* dY, Py_ssize_t n,
                                    Py_ssize_t c, const floating* gamma,
                                    const floating* mean, const floating* inv_std,
                                    floating* dX, floating* dgamma, floating* dbeta,
                                    bint accumulate) noexcept nogil:
    """Backward through the batch statistics; dX, dgamma, dbeta may each be NULL."""
    cdef Py_ssize_t nblocks = (c + COL_BLOCK - 1) // COL_BLOCK, blk, j1
    if _bn_serial(n, c):
        for blk in range(nblocks):
            j1 = (blk + 1) * COL_BLOCK
            _train_backward_block(X, dY, n, c, blk * COL_BLOCK, j1 if j1 < c else c, gamma,
                                  mean, inv_std, dX, dgamma, dbeta, accumulate)
        return
    for blk in prange(nblocks, num_threads=team(), schedule='static'):
        j1 = (blk + 1) * COL_BLOCK
        _train_backward_block(X, dY, n, c, blk * COL_BLOCK, j1 if j1 < c else c, gamma,
                              mean, inv_std, dX, dgamma, dbeta, accumulate)


cdef inline void _bn_backward_infer(const floating* X, const floating* dY, Py_ssize_t n,
                                    Py_ssize_t c, const floating* gamma,
                                    const floating* mm, const floating* mv, double eps,
                                    floating* dX, floating* dgamma, floating* dbeta,
                                    bint accumulate) noexcept nogil:
    """Backward of the inference-mode normalization: the moving statistics are constants."""
    cdef Py_ssize_t nblocks = (c + COL_BLOCK - 1) // COL_BLOCK, blk, j1
    if _bn_serial(n, c):
        for blk in range(nblocks):
            j1 = (blk + 1) * COL_BLOCK
            _infer_backward_block(X, dY, n, c, blk * COL_BLOCK, j1 if j1 < c else c, gamma,
                                  mm, mv, eps, dX, dgamma, dbeta, accumulate)
        return
    for blk in prange(nblocks, num_threads=team(), schedule='static'):
        j1 = (blk + 1) * COL_BLOCK
        _infer_backward_block(X, dY, n, c, blk * COL_BLOCK, j1 if j1 < c else c, gamma,
                              mm, mv, eps, dX, dgamma, dbeta, accumulate)
