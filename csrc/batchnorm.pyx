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

from _bn cimport (_bn_backward_infer, _bn_backward_train, _bn_infer, _bn_train,
                 _bn_update_moving)
from _common cimport _cp1, _cp2, _p1, _p2

include "_team.pxi"  # binds this module to the process-wide team (csrc/_team.pxd)


def batchnorm_forward_train(const floating[:, ::1] X,   # (n, c) IN, n >= 1
                            const floating[::1] gamma,  # (c,) IN or None
                            const floating[::1] beta,   # (c,) IN or None
                            double eps,
                            floating[:, ::1] Y,         # (n, c) OUT, may be X
                            floating[::1] mean,         # (c,) OUT
                            floating[::1] var,          # (c,) OUT, biased
                            floating[::1] inv_std):     # (c,) OUT, 1/sqrt(var + eps)
    """Normalize with batch statistics: Y = (X - mean) * inv_std * gamma + beta."""
    cdef Py_ssize_t n = X.shape[0], c = X.shape[1]
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
    with nogil:
        _bn_train(xp, n, c, gp, bp, eps, yp, mp, vp, ip)


def batchnorm_forward_infer(const floating[:, ::1] X,          # (n, c) IN
                            const floating[::1] gamma,         # (c,) IN or None
                            const floating[::1] beta,          # (c,) IN or None
                            const floating[::1] moving_mean,   # (c,) IN
                            const floating[::1] moving_var,    # (c,) IN
                            double eps,
                            floating[:, ::1] Y):               # (n, c) OUT, may be X
    """Normalize with the moving statistics."""
    cdef Py_ssize_t n = X.shape[0], c = X.shape[1]
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
    with nogil:
        _bn_infer(xp, n, c, gp, bp, mmp, mvp, eps, yp)


def batchnorm_update_moving(floating[::1] moving_mean,     # (c,) IN/OUT
                            floating[::1] moving_var,      # (c,) IN/OUT
                            const floating[::1] mean,      # (c,) IN, batch mean
                            const floating[::1] var,       # (c,) IN, biased batch variance
                            double momentum):
    """moving = momentum * moving + (1 - momentum) * batch."""
    cdef Py_ssize_t c = moving_mean.shape[0]
    if moving_var.shape[0] != c or mean.shape[0] != c or var.shape[0] != c:
        raise ValueError("batchnorm_update_moving: statistics do not agree in length")
    with nogil:
        _bn_update_moving(_p1(moving_mean), _p1(moving_var), _cp1(mean), _cp1(var), c,
                          momentum)


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
    cdef Py_ssize_t n = X.shape[0], c = X.shape[1]
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
    with nogil:
        _bn_backward_train(xp, dyp, n, c, gp, mp, ip, dxp, dgp, dbp, accumulate)


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
    cdef Py_ssize_t n = X.shape[0], c = X.shape[1]
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
    with nogil:
        _bn_backward_infer(xp, dyp, n, c, gp, mmp, mvp, eps, dxp, dgp, dbp, accumulate)
