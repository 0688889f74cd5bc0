# Design
# ------
# Standalone activation layers (Activation("relu"), a softmax head).  The code is
# the same as the activation fused into dense.pyx (header _act.pxd), so the two
# paths cannot drift apart.  Row-wise because softmax needs whole rows; rows are
# split over OpenMP threads when the array is large.  Y may be X (in place): each
# element is read before it is written.  The backward pass is expressed through
# the forward output Y, except for gelu, silu and mish, whose derivative needs the
# pre-activation input Z (they are not monotonic, so Y does not determine Z).
from cython cimport floating

from _act cimport (ACT_COUNT, ACT_LINEAR, ACT_RELU, ACT_SIGMOID, ACT_SOFTMAX,
                   ACT_TANH, _act_grad_rows_z, _act_needs_input, _act_rows)
from _common cimport _cp2, _p2

include "_team.pxi"  # binds this module to the process-wide team (csrc/_team.pxd)

LINEAR = ACT_LINEAR
RELU = ACT_RELU
SIGMOID = ACT_SIGMOID
TANH = ACT_TANH
SOFTMAX = ACT_SOFTMAX
COUNT = ACT_COUNT


def needs_input(int act):
    """Whether the backward pass of activation code `act` needs the input Z."""
    return bool(_act_needs_input(act))


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
                        int act,
                        const floating[:, ::1] Z=None):  # (n, k) IN, forward input
    """dX = dY * act'(.), through Y, or through Z where needs_input(act)."""
    cdef Py_ssize_t n = Y.shape[0], k = Y.shape[1]
    cdef const floating* zp = NULL
    cdef const floating* yp = _cp2(Y)
    cdef const floating* dyp = _cp2(dY)
    cdef floating* dxp = _p2(dX)
    if not 0 <= act < ACT_COUNT:
        raise ValueError(f"activation_backward: unknown activation code {act}")
    if dY.shape[0] != n or dY.shape[1] != k or dX.shape[0] != n or dX.shape[1] != k:
        raise ValueError("activation_backward: shapes of Y, dY, dX do not agree")
    if _act_needs_input(act):
        if Z is None:
            raise ValueError(f"activation_backward: activation code {act} needs Z")
        if Z.shape[0] != n or Z.shape[1] != k:
            raise ValueError("activation_backward: Z does not match Y")
        zp = _cp2(Z)
    with nogil:
        _act_grad_rows_z(zp, yp, dyp, dxp, n, k, act)
