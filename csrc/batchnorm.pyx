# Design
# ------
# Batch normalization of X (n, c) over its rows, per channel.  Statistics and
# parameter gradients are reductions down the columns of a row-major array, so
# every kernel walks blocks of COL_BLOCK channels: per block, the rows stream
# through in memory order while the block's per-channel sums sit in double
# accumulators on the stack.  Blocks are independent, which is also how the work
# is split over OpenMP threads; nothing is allocated.
#
# Statistics are computed in double (two passes: mean, then the biased variance
# of the centred values, which does not cancel like E[x^2] - E[x]^2) and stored
# in the input dtype.  Y may be X and dX may be dY: within a block every element
# is read before it is written.
#
# gamma or beta may be None (Keras scale=False / center=False): 1 and 0.  The
# moving-statistics update follows Keras: moving = momentum*moving +
# (1-momentum)*batch, with the biased batch variance (DESIGN.md R7).
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport sqrt

from _common cimport COL_BLOCK, PARALLEL_MIN_ELEMENTS, _cp1, _cp2, _p1, _p2


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


def batchnorm_forward_train(const floating[:, ::1] X,   # (n, c) IN, n >= 1
                            const floating[::1] gamma,  # (c,) IN or None
                            const floating[::1] beta,   # (c,) IN or None
                            double eps,
                            floating[:, ::1] Y,         # (n, c) OUT, may be X
                            floating[::1] mean,         # (c,) OUT
                            floating[::1] var,          # (c,) OUT, biased
                            floating[::1] inv_std):     # (c,) OUT, 1/sqrt(var + eps)
    """Normalize with batch statistics: Y = (X - mean) * inv_std * gamma + beta."""
    cdef Py_ssize_t n = X.shape[0], c = X.shape[1], nblocks, blk, j1
    cdef const floating* xp = _cp2(X)
    cdef const floating* gp = NULL
    cdef const floating* bp = NULL
    cdef floating* yp = _p2(Y)
    cdef floating* mp = _p1(mean)
    cdef floating* vp = _p1(var)
    cdef floating* ip = _p1(inv_std)
    if n == 0:
        raise ValueError("batchnorm_forward_train: an empty batch has no statistics")
    if Y.shape[0] != n or Y.shape[1] != c or mean.shape[0] != c or var.shape[0] != c \
            or inv_std.shape[0] != c:
        raise ValueError("batchnorm_forward_train: shapes of X, Y, statistics do not agree")
    if gamma is not None:
        if gamma.shape[0] != c:
            raise ValueError("batchnorm_forward_train: gamma does not match channels")
        gp = _cp1(gamma)
    if beta is not None:
        if beta.shape[0] != c:
            raise ValueError("batchnorm_forward_train: beta does not match channels")
        bp = _cp1(beta)
    nblocks = (c + COL_BLOCK - 1) // COL_BLOCK
    with nogil:
        for blk in prange(nblocks, schedule='static',
                          use_threads_if=nblocks > 1 and n * c >= PARALLEL_MIN_ELEMENTS):
            j1 = (blk + 1) * COL_BLOCK
            _train_block(xp, n, c, blk * COL_BLOCK, j1 if j1 < c else c, gp, bp, eps,
                         yp, mp, vp, ip)


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


def batchnorm_forward_infer(const floating[:, ::1] X,          # (n, c) IN
                            const floating[::1] gamma,         # (c,) IN or None
                            const floating[::1] beta,          # (c,) IN or None
                            const floating[::1] moving_mean,   # (c,) IN
                            const floating[::1] moving_var,    # (c,) IN
                            double eps,
                            floating[:, ::1] Y):               # (n, c) OUT, may be X
    """Normalize with the moving statistics."""
    cdef Py_ssize_t n = X.shape[0], c = X.shape[1], nblocks, blk, j1
    cdef const floating* xp = _cp2(X)
    cdef const floating* gp = NULL
    cdef const floating* bp = NULL
    cdef const floating* mmp = _cp1(moving_mean)
    cdef const floating* mvp = _cp1(moving_var)
    cdef floating* yp = _p2(Y)
    if Y.shape[0] != n or Y.shape[1] != c or moving_mean.shape[0] != c \
            or moving_var.shape[0] != c:
        raise ValueError("batchnorm_forward_infer: shapes of X, Y, statistics do not agree")
    if gamma is not None:
        if gamma.shape[0] != c:
            raise ValueError("batchnorm_forward_infer: gamma does not match channels")
        gp = _cp1(gamma)
    if beta is not None:
        if beta.shape[0] != c:
            raise ValueError("batchnorm_forward_infer: beta does not match channels")
        bp = _cp1(beta)
    nblocks = (c + COL_BLOCK - 1) // COL_BLOCK
    if n == 0:
        return
    with nogil:
        for blk in prange(nblocks, schedule='static',
                          use_threads_if=nblocks > 1 and n * c >= PARALLEL_MIN_ELEMENTS):
            j1 = (blk + 1) * COL_BLOCK
            _infer_block(xp, n, c, blk * COL_BLOCK, j1 if j1 < c else c, gp, bp, mmp, mvp,
                         eps, yp)


def batchnorm_update_moving(floating[::1] moving_mean,     # (c,) IN/OUT
                            floating[::1] moving_var,      # (c,) IN/OUT
                            const floating[::1] mean,      # (c,) IN, batch mean
                            const floating[::1] var,       # (c,) IN, biased batch variance
                            double momentum):
    """moving = momentum * moving + (1 - momentum) * batch."""
    cdef Py_ssize_t c = moving_mean.shape[0], j
    cdef floating mom = <floating>momentum, rest = <floating>(1.0 - momentum)
    if moving_var.shape[0] != c or mean.shape[0] != c or var.shape[0] != c:
        raise ValueError("batchnorm_update_moving: statistics do not agree in length")
    with nogil:
        for j in range(c):
            moving_mean[j] = mom * moving_mean[j] + rest * mean[j]
            moving_var[j] = mom * moving_var[j] + rest * var[j]


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


cdef int _grad_pointers(str fn, Py_ssize_t n, Py_ssize_t c,
                        const floating[::1] gamma,   # (c,) IN or None
                        floating[:, ::1] dX,         # (n, c) OUT or None
                        floating[::1] dgamma,        # (c,) OUT or None
                        floating[::1] dbeta,         # (c,) OUT or None
                        const floating** gp, floating** dxp, floating** dgp,
                        floating** dbp) except -1:
    """Check the optional arguments of a backward kernel and take their pointers."""
    if gamma is not None:
        if gamma.shape[0] != c:
            raise ValueError(f"{fn}: gamma does not match channels")
        gp[0] = _cp1(gamma)
    if dX is not None:
        if dX.shape[0] != n or dX.shape[1] != c:
            raise ValueError(f"{fn}: dX does not match X")
        dxp[0] = _p2(dX)
    if dgamma is not None:
        if dgamma.shape[0] != c:
            raise ValueError(f"{fn}: dgamma does not match channels")
        dgp[0] = _p1(dgamma)
    if dbeta is not None:
        if dbeta.shape[0] != c:
            raise ValueError(f"{fn}: dbeta does not match channels")
        dbp[0] = _p1(dbeta)
    return 0


def batchnorm_backward_train(const floating[:, ::1] X,        # (n, c) IN
                             const floating[:, ::1] dY,       # (n, c) IN
                             const floating[::1] gamma,       # (c,) IN or None (= 1)
                             const floating[::1] mean,        # (c,) IN, batch mean
                             const floating[::1] inv_std,     # (c,) IN, from forward
                             floating[:, ::1] dX,             # (n, c) OUT or None; may be dY
                             floating[::1] dgamma,            # (c,) OUT (IN/OUT if accumulate) or None
                             floating[::1] dbeta,             # (c,) OUT (IN/OUT if accumulate) or None
                             bint accumulate):
    """Backward through the batch statistics of batchnorm_forward_train."""
    cdef Py_ssize_t n = X.shape[0], c = X.shape[1], nblocks, blk, j1
    cdef const floating* xp = _cp2(X)
    cdef const floating* dyp = _cp2(dY)
    cdef const floating* gp = NULL
    cdef const floating* mp = _cp1(mean)
    cdef const floating* ip = _cp1(inv_std)
    cdef floating* dxp = NULL
    cdef floating* dgp = NULL
    cdef floating* dbp = NULL
    if dY.shape[0] != n or dY.shape[1] != c or mean.shape[0] != c or inv_std.shape[0] != c:
        raise ValueError("batchnorm_backward_train: shapes of X, dY, statistics do not agree")
    _grad_pointers("batchnorm_backward_train", n, c, gamma, dX, dgamma, dbeta, &gp, &dxp, &dgp, &dbp)
    nblocks = (c + COL_BLOCK - 1) // COL_BLOCK
    with nogil:
        for blk in prange(nblocks, schedule='static',
                          use_threads_if=nblocks > 1 and n * c >= PARALLEL_MIN_ELEMENTS):
            j1 = (blk + 1) * COL_BLOCK
            _train_backward_block(xp, dyp, n, c, blk * COL_BLOCK, j1 if j1 < c else c, gp,
                                  mp, ip, dxp, dgp, dbp, accumulate)


def batchnorm_backward_infer(const floating[:, ::1] X,            # (n, c) IN
                             const floating[:, ::1] dY,           # (n, c) IN
                             const floating[::1] gamma,           # (c,) IN or None (= 1)
                             const floating[::1] moving_mean,     # (c,) IN
                             const floating[::1] moving_var,      # (c,) IN
                             double eps,
                             floating[:, ::1] dX,                 # (n, c) OUT or None; may be dY
                             floating[::1] dgamma,                # (c,) OUT (IN/OUT if accumulate) or None
                             floating[::1] dbeta,                 # (c,) OUT (IN/OUT if accumulate) or None
                             bint accumulate):
    """Backward of batchnorm_forward_infer: the moving statistics are constants."""
    cdef Py_ssize_t n = X.shape[0], c = X.shape[1], nblocks, blk, j1
    cdef const floating* xp = _cp2(X)
    cdef const floating* dyp = _cp2(dY)
    cdef const floating* gp = NULL
    cdef const floating* mmp = _cp1(moving_mean)
    cdef const floating* mvp = _cp1(moving_var)
    cdef floating* dxp = NULL
    cdef floating* dgp = NULL
    cdef floating* dbp = NULL
    if dY.shape[0] != n or dY.shape[1] != c or moving_mean.shape[0] != c \
            or moving_var.shape[0] != c:
        raise ValueError("batchnorm_backward_infer: shapes of X, dY, statistics do not agree")
    _grad_pointers("batchnorm_backward_infer", n, c, gamma, dX, dgamma, dbeta, &gp, &dxp, &dgp, &dbp)
    nblocks = (c + COL_BLOCK - 1) // COL_BLOCK
    with nogil:
        for blk in prange(nblocks, schedule='static',
                          use_threads_if=nblocks > 1 and n * c >= PARALLEL_MIN_ELEMENTS):
            j1 = (blk + 1) * COL_BLOCK
            _infer_backward_block(xp, dyp, n, c, blk * COL_BLOCK, j1 if j1 < c else c, gp,
                                  mmp, mvp, eps, dxp, dgp, dbp, accumulate)
