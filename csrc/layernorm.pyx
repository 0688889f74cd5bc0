# Design
# ------
# Layer normalization over the rows of X (m, d): each row is normalized by its
# own mean and biased variance, then scaled by gamma and shifted by beta (one
# value per column).  Row statistics are accumulated in double; rows run in
# parallel.  The column sums of the parameter gradients stream the rows in
# blocks of COL_BLOCK columns with double accumulators (as _colsum does), so
# nothing is allocated.  GroupNormalization is this kernel on (sample, group)
# rows without gamma/beta.
from cython cimport floating
from cython.parallel cimport prange

from _common cimport COL_BLOCK, _chunks, _colsum, _cp1, _cp2, _p1, _p2

from _team cimport team, team_for_step

include "_team.pxi"  # binds this module to the process-wide team (csrc/_team.pxd)



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
    inv = 1.0 / (v + eps) ** 0.5
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


def layernorm_forward(const floating[:, ::1] X,    # (m, d) IN
                      const floating[::1] gamma,   # (d,) IN or None
                      const floating[::1] beta,    # (d,) IN or None
                      double epsilon,
                      floating[:, ::1] Y,          # (m, d) OUT, may be X
                      floating[::1] mean,          # (m,) OUT
                      floating[::1] inv_std):      # (m,) OUT: 1 / sqrt(var + epsilon)
    """Y = (X - mean_row) * inv_std_row * gamma + beta."""
    cdef Py_ssize_t m = X.shape[0], d = X.shape[1], i
    cdef const floating* xp = _cp2(X)
    cdef const floating* gp = NULL
    cdef const floating* bp = NULL
    cdef floating* yp = _p2(Y)
    cdef floating* mp = _p1(mean)
    cdef floating* ip = _p1(inv_std)
    cdef int nc, t
    if Y.shape[0] != m or Y.shape[1] != d:
        raise ValueError("layernorm_forward: Y does not match X")
    if mean.shape[0] != m or inv_std.shape[0] != m:
        raise ValueError("layernorm_forward: mean and inv_std must have one value per row")
    if not epsilon >= 0:
        raise ValueError("layernorm_forward: epsilon must be >= 0")
    if gamma is not None:
        if gamma.shape[0] != d:
            raise ValueError("layernorm_forward: gamma does not match X's columns")
        gp = _cp1(gamma)
    if beta is not None:
        if beta.shape[0] != d:
            raise ValueError("layernorm_forward: beta does not match X's columns")
        bp = _cp1(beta)
    if m == 0:
        return
    if d == 0:
        for i in range(m):
            mp[i] = 0
            ip[i] = <floating>(1.0 / (epsilon ** 0.5)) if epsilon > 0 else 0
        return
    nc = _chunks(m * d)
    with nogil:
        if nc == 1:
            for i in range(m):
                _ln_row(xp + i * d, gp, bp, epsilon, d, yp + i * d, mp + i, ip + i)
        else:
            for t in prange(nc, num_threads=nc, schedule='static'):
                for i in range(m * t // nc, m * (t + 1) // nc):
                    _ln_row(xp + i * d, gp, bp, epsilon, d, yp + i * d, mp + i, ip + i)


def layernorm_backward(const floating[:, ::1] X,       # (m, d) IN
                       const floating[:, ::1] dY,      # (m, d) IN
                       const floating[::1] gamma,      # (d,) IN or None
                       const floating[::1] mean,       # (m,) IN
                       const floating[::1] inv_std,    # (m,) IN
                       floating[:, ::1] dX,            # (m, d) OUT or None
                       floating[::1] dgamma,           # (d,) OUT (IN/OUT if accumulate) or None
                       floating[::1] dbeta,            # (d,) OUT (IN/OUT if accumulate) or None
                       bint accumulate):
    """dX through the row statistics; dgamma (+)= sum dY xhat; dbeta (+)= sum dY."""
    cdef Py_ssize_t m = X.shape[0], d = X.shape[1], i, nblocks, blk, j1
    cdef const floating* xp = _cp2(X)
    cdef const floating* dyp = _cp2(dY)
    cdef const floating* gp = NULL
    cdef const floating* mp = _cp1(mean)
    cdef const floating* ip = _cp1(inv_std)
    cdef floating* dxp = NULL
    cdef floating* dgp = NULL
    cdef floating* dbp = NULL
    cdef int nc, t
    if dY.shape[0] != m or dY.shape[1] != d:
        raise ValueError("layernorm_backward: dY does not match X")
    if mean.shape[0] != m or inv_std.shape[0] != m:
        raise ValueError("layernorm_backward: mean and inv_std must have one value per row")
    if gamma is not None:
        if gamma.shape[0] != d:
            raise ValueError("layernorm_backward: gamma does not match X's columns")
        gp = _cp1(gamma)
    if dX is not None:
        if dX.shape[0] != m or dX.shape[1] != d:
            raise ValueError("layernorm_backward: dX does not match X")
        dxp = _p2(dX)
    if dgamma is not None:
        if dgamma.shape[0] != d:
            raise ValueError("layernorm_backward: dgamma does not match X's columns")
        dgp = _p1(dgamma)
    if dbeta is not None:
        if dbeta.shape[0] != d:
            raise ValueError("layernorm_backward: dbeta does not match X's columns")
        dbp = _p1(dbeta)
    if d == 0:
        return
    nc = _chunks(m * d)
    with nogil:
        if dbp != NULL:
            _colsum(dyp, m, d, 1.0, dbp, accumulate)
        if dgp != NULL:
            nblocks = (d + COL_BLOCK - 1) // COL_BLOCK
            if nc == 1 or nblocks == 1:
                for blk in range(nblocks):
                    j1 = (blk + 1) * COL_BLOCK
                    _dgamma_block(xp, dyp, mp, ip, m, d, blk * COL_BLOCK, j1 if j1 < d else d,
                                  dgp, accumulate)
            else:
                for blk in prange(nblocks, num_threads=team(), schedule='static'):
                    j1 = (blk + 1) * COL_BLOCK
                    _dgamma_block(xp, dyp, mp, ip, m, d, blk * COL_BLOCK, j1 if j1 < d else d,
                                  dgp, accumulate)
        if dxp != NULL and m > 0:
            if nc == 1:
                for i in range(m):
                    _ln_grad_row(xp + i * d, dyp + i * d, gp, mp[i], ip[i], d, dxp + i * d)
            else:
                for t in prange(nc, num_threads=nc, schedule='static'):
                    for i in range(m * t // nc, m * (t + 1) // nc):
                        _ln_grad_row(xp + i * d, dyp + i * d, gp, mp[i], ip[i], d,
                                     dxp + i * d)
