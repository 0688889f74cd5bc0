# Design
# ------
# Activations with parameters, for the layers ReLU(max_value, negative_slope,
# threshold), ELU(alpha) and PReLU (a trained alpha per column).  The fixed-
# parameter activations of the Dense/Conv kernels live in _act.pxd; these take
# their parameters at run time and so have their own small kernels.  Every
# backward pass here is expressed through the input X (ReLU's threshold makes
# the output ambiguous).  Rows are split over OpenMP threads when large.
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport INFINITY, expm1, exp

from _common cimport _chunks, _cp1, _cp2, _p1, _p2
from _prelu cimport prelu_backward_rows, prelu_forward_rows

from _team cimport team, team_for_step

include "_team.pxi"  # binds this module to the process-wide team (csrc/_team.pxd)



cdef inline floating _relu(floating x, double slope, double maxv, double thr) noexcept nogil:
    # keras.activations.relu, case by case.
    cdef floating pos
    if slope != 0 and maxv == INFINITY and thr == 0:
        return x if x >= 0 else <floating>(slope * x)
    if thr != 0:
        pos = x if x > thr else 0
    else:
        pos = x if x > 0 else 0
    if maxv != INFINITY:
        if pos < 0:
            pos = 0
        elif pos > maxv:
            pos = <floating>maxv
    if slope != 0 and x < thr:
        pos = pos - <floating>(slope * (thr - x))
    return pos


cdef inline floating _relu_grad(floating x, double slope, double maxv,
                                double thr) noexcept nogil:
    cdef floating g
    if slope != 0 and maxv == INFINITY and thr == 0:
        return 1 if x >= 0 else <floating>slope
    g = 1 if (x > thr if thr != 0 else x > 0) else 0
    if maxv != INFINITY and not (0 < x < maxv):
        g = 0
    if slope != 0 and x < thr:
        g = g + <floating>slope
    return g


cdef int _same(str fn, Py_ssize_t n, Py_ssize_t k, Py_ssize_t n2, Py_ssize_t k2) except -1:
    if n != n2 or k != k2:
        raise ValueError(f"{fn}: array shapes do not agree")
    return 0


def relu_forward(const floating[:, ::1] X,  # (n, k) IN
                 floating[:, ::1] Y,        # (n, k) OUT
                 double negative_slope, double max_value, double threshold):
    """Keras's relu(x, negative_slope, max_value, threshold); max_value=inf for None."""
    cdef Py_ssize_t n = X.shape[0], k = X.shape[1], i, m = n * k
    cdef const floating* xp = _cp2(X)
    cdef floating* yp = _p2(Y)
    cdef int nc = _chunks(m)
    _same("relu_forward", n, k, Y.shape[0], Y.shape[1])
    with nogil:
        if nc == 1:
            for i in range(m):
                yp[i] = _relu(xp[i], negative_slope, max_value, threshold)
        else:
            for i in prange(m, num_threads=nc, schedule='static'):
                yp[i] = _relu(xp[i], negative_slope, max_value, threshold)


def relu_backward(const floating[:, ::1] X,   # (n, k) IN, forward input
                  const floating[:, ::1] dY,  # (n, k) IN
                  floating[:, ::1] dX,        # (n, k) OUT, may be dY
                  double negative_slope, double max_value, double threshold):
    """dX = dY * relu'(X) for the same parameters."""
    cdef Py_ssize_t n = X.shape[0], k = X.shape[1], i, m = n * k
    cdef const floating* xp = _cp2(X)
    cdef const floating* dyp = _cp2(dY)
    cdef floating* dxp = _p2(dX)
    cdef int nc = _chunks(m)
    _same("relu_backward", n, k, dY.shape[0], dY.shape[1])
    _same("relu_backward", n, k, dX.shape[0], dX.shape[1])
    with nogil:
        if nc == 1:
            for i in range(m):
                dxp[i] = dyp[i] * _relu_grad(xp[i], negative_slope, max_value, threshold)
        else:
            for i in prange(m, num_threads=nc, schedule='static'):
                dxp[i] = dyp[i] * _relu_grad(xp[i], negative_slope, max_value, threshold)


def elu_forward(const floating[:, ::1] X, floating[:, ::1] Y, double alpha):
    """Y = X where X > 0, else alpha * (exp(X) - 1)."""
    cdef Py_ssize_t n = X.shape[0], k = X.shape[1], i, m = n * k
    cdef const floating* xp = _cp2(X)
    cdef floating* yp = _p2(Y)
    _same("elu_forward", n, k, Y.shape[0], Y.shape[1])
    with nogil:
        for i in range(m):
            yp[i] = xp[i] if xp[i] > 0 else <floating>(alpha * expm1(xp[i]))


def elu_backward(const floating[:, ::1] X, const floating[:, ::1] dY, floating[:, ::1] dX,
                 double alpha):
    """dX = dY where X > 0, else dY * alpha * exp(X)."""
    cdef Py_ssize_t n = X.shape[0], k = X.shape[1], i, m = n * k
    cdef const floating* xp = _cp2(X)
    cdef const floating* dyp = _cp2(dY)
    cdef floating* dxp = _p2(dX)
    _same("elu_backward", n, k, dY.shape[0], dY.shape[1])
    _same("elu_backward", n, k, dX.shape[0], dX.shape[1])
    with nogil:
        for i in range(m):
            dxp[i] = dyp[i] if xp[i] > 0 else <floating>(dyp[i] * alpha * exp(xp[i]))


def prelu_forward(const floating[:, ::1] X,    # (n, k) IN
                  const floating[::1] alpha,   # (k,) IN, one slope per column
                  floating[:, ::1] Y):         # (n, k) OUT
    """Y = max(X, 0) + alpha * min(X, 0)."""
    cdef Py_ssize_t n = X.shape[0], k = X.shape[1]
    cdef const floating* xp = _cp2(X)
    cdef const floating* ap = _cp1(alpha)
    cdef floating* yp = _p2(Y)
    _same("prelu_forward", n, k, Y.shape[0], Y.shape[1])
    if alpha.shape[0] != k:
        raise ValueError("prelu_forward: alpha must have one value per column")
    with nogil:
        prelu_forward_rows(xp, n, k, ap, NULL, yp)


def prelu_backward(const floating[:, ::1] X,    # (n, k) IN
                   const floating[::1] alpha,   # (k,) IN
                   const floating[:, ::1] dY,   # (n, k) IN
                   floating[:, ::1] dX,         # (n, k) OUT or None
                   floating[::1] dalpha):       # (k,) OUT or None: sum over rows of dY min(X, 0)
    """dX = dY * (1 if X > 0 else alpha); dalpha = column sums of dY * min(X, 0)."""
    cdef Py_ssize_t n = X.shape[0], k = X.shape[1]
    cdef const floating* xp = _cp2(X)
    cdef const floating* ap = _cp1(alpha)
    cdef const floating* dyp = _cp2(dY)
    cdef floating* dxp = NULL
    cdef floating* dap = NULL
    _same("prelu_backward", n, k, dY.shape[0], dY.shape[1])
    if alpha.shape[0] != k:
        raise ValueError("prelu_backward: alpha must have one value per column")
    if dX is not None:
        _same("prelu_backward", n, k, dX.shape[0], dX.shape[1])
        dxp = _p2(dX)
    if dalpha is not None:
        if dalpha.shape[0] != k:
            raise ValueError("prelu_backward: dalpha must have one value per column")
        dap = _p1(dalpha)
    with nogil:
        prelu_backward_rows(xp, dyp, n, k, ap, NULL, k, dxp, dap, False)
