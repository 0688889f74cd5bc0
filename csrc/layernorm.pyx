# Design
# ------
# Layer normalization over the rows of X (m, d): the validated entry points of
# the row loops in _layernorm.pxd, which the executor's LAYERNORM op runs too.
# GroupNormalization is this kernel on (sample, group) rows without gamma/beta.
from cython cimport floating
from libc.math cimport sqrt

from _common cimport _cp1, _cp2, _p1, _p2
from _layernorm cimport ln_backward, ln_forward

from _team cimport team, team_for_step

include "_team.pxi"  # binds this module to the process-wide team (csrc/_team.pxd)



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
            ip[i] = <floating>(1.0 / sqrt(epsilon)) if epsilon > 0 else 0
        return
    with nogil:
        ln_forward(xp, m, d, gp, bp, epsilon, yp, mp, ip)


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
    cdef Py_ssize_t m = X.shape[0], d = X.shape[1]
    cdef const floating* xp = _cp2(X)
    cdef const floating* dyp = _cp2(dY)
    cdef const floating* gp = NULL
    cdef const floating* mp = _cp1(mean)
    cdef const floating* ip = _cp1(inv_std)
    cdef floating* dxp = NULL
    cdef floating* dgp = NULL
    cdef floating* dbp = NULL
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
    with nogil:
        ln_backward(xp, dyp, m, d, gp, mp, ip, dxp, dgp, dbp, accumulate, accumulate)
