# Design
# ------
# Standalone activation layers (Activation("relu"), a softmax head).  The code is
# the same as the activation fused into dense.pyx (header _act.pxd), so the two
# paths cannot drift apart.  Row-wise because softmax needs whole rows; rows are
# split over OpenMP threads when the array is large.  Y may be X (in place): each
# element is read before it is written.  The backward pass is expressed through
# the forward output Y, which every supported activation allows.
from cython cimport floating

from _act cimport (ACT_COUNT, ACT_LINEAR, ACT_RELU, ACT_SIGMOID, ACT_SOFTMAX,
                   ACT_TANH, _act_grad_rows, _act_rows)
from _common cimport _cp2, _p2

include "_team.pxi"  # binds this module to the process-wide team (csrc/_team.pxd)

LINEAR = ACT_LINEAR
RELU = ACT_RELU
SIGMOID = ACT_SIGMOID
TANH = ACT_TANH
SOFTMAX = ACT_SOFTMAX


def activation_forward(const floating[:, ::1] X,  # (n, k) IN
                       floating[:, ::1] Y,        # (n, k) OUT, may be X
                       int act):
    """Y = act(X), softmax over each row."""
    cdef Py_ssize_t n = X.shape[0], k = X.shape[1]
    cdef const floating* xp = _cp2(X)
    cdef floating* yp = _p2(Y)
    if not 0 <= act < ACT_COUNT:
        raise ValueError(f"activation_forward: unknown activation code {act}")
    if Y.shape[0] != n or Y.shape[1] != k:
        raise ValueError("activation_forward: Y does not match X")
    with nogil:
        _act_rows(xp, <const floating*>NULL, yp, n, k, act)


def activation_backward(const floating[:, ::1] Y,   # (n, k) IN, forward output
                        const floating[:, ::1] dY,  # (n, k) IN
                        floating[:, ::1] dX,        # (n, k) OUT, may be dY
                        int act):
    """dX = dY * act'(.), through Y."""
    cdef Py_ssize_t n = Y.shape[0], k = Y.shape[1]
    cdef const floating* yp = _cp2(Y)
    cdef const floating* dyp = _cp2(dY)
    cdef floating* dxp = _p2(dX)
    if not 0 <= act < ACT_COUNT:
        raise ValueError(f"activation_backward: unknown activation code {act}")
    if dY.shape[0] != n or dY.shape[1] != k or dX.shape[0] != n or dX.shape[1] != k:
        raise ValueError("activation_backward: shapes of Y, dY, dX do not agree")
    with nogil:
        _act_grad_rows(yp, dyp, dxp, n, k, act)
