# Design
# ------
# Dense layer kernels.  The matrix products go to BLAS through _blas.gemm (never a
# hand-written loop); everything elementwise (bias, activation, activation
# gradient, bias gradient) is fused into one pass over the GEMM's output rows, so
# each call streams its (n, units) block through memory once after the GEMM.
#
# Each `def` checks only what keeps memory safe (shapes agree, required buffers
# present); dtype and layout checks, allocation and N-D reshaping are done by
# fastlayers.ops.  Every body runs under `with nogil:` on noexcept helpers.
# Outputs go into caller-provided buffers; nothing is allocated.
#
# Gradient accumulation (shared layers, DESIGN.md R8) is BLAS beta=1 for dW and
# an add for db, so a second use of a layer costs no extra buffer.
from cython cimport floating
from libc.limits cimport INT_MAX

from _act cimport (ACT_COUNT, ACT_LINEAR, ACT_RELU, ACT_SIGMOID, ACT_SOFTMAX,
                   ACT_TANH, _act_grad_rows_z, _act_needs_input, _act_rows)
from _blas cimport gemm_split
from _common cimport _colsum, _cp1, _cp2, _p1, _p2
from _team cimport team

include "_team.pxi"  # binds this module to the process-wide team (csrc/_team.pxd)

LINEAR = ACT_LINEAR
RELU = ACT_RELU
SIGMOID = ACT_SIGMOID
TANH = ACT_TANH
SOFTMAX = ACT_SOFTMAX


cdef inline int _check_activation(str fn, int activation) except -1:
    if not 0 <= activation < ACT_COUNT:
        raise ValueError(f"{fn}: unknown activation code {activation}")
    return 0


cdef inline int _check_blas_dims(str fn, Py_ssize_t a, Py_ssize_t b, Py_ssize_t c) except -1:
    # BLAS takes 32-bit ints: a larger dimension would wrap around silently.
    if a > INT_MAX or b > INT_MAX or c > INT_MAX:
        raise ValueError(f"{fn}: dimensions above 2**31 - 1 are beyond BLAS")
    return 0


def dense_forward(const floating[:, ::1] X,  # (n, d_in) IN
                  const floating[:, ::1] W,  # (d_in, units) IN
                  const floating[::1] b,     # (units,) IN or None
                  floating[:, ::1] Y,        # (n, units) OUT
                  int activation,
                  floating[:, ::1] Z=None):  # (n, units) OUT or None: X @ W + b kept
    """Y = act(X @ W + b); Z, if given, gets X @ W + b (what gelu/silu/mish's
    backward needs)."""
    cdef Py_ssize_t n = X.shape[0], d_in = X.shape[1], u = W.shape[1]
    cdef floating* zp = NULL
    cdef const floating* bp = NULL
    cdef const floating* xp = _cp2(X)
    cdef const floating* wp = _cp2(W)
    cdef floating* yp = _p2(Y)
    _check_activation("dense_forward", activation)
    _check_blas_dims("dense_forward", n, d_in, u)
    if W.shape[0] != d_in or Y.shape[0] != n or Y.shape[1] != u:
        raise ValueError("dense_forward: shapes of X, W, Y do not agree")
    if b is not None:
        if b.shape[0] != u:
            raise ValueError("dense_forward: b does not match W's units")
        bp = _cp1(b)
    if Z is not None:
        if Z.shape[0] != n or Z.shape[1] != u:
            raise ValueError("dense_forward: Z does not match Y")
        zp = _p2(Z)
    with nogil:
        if zp != NULL:
            gemm_split(team(), False, False, False, n, u, d_in, 1, xp, d_in,
                       wp, u, 0, zp, u)
            _act_rows(zp, bp, zp, n, u, ACT_LINEAR)
            _act_rows(zp, NULL, yp, n, u, activation)
        else:
            gemm_split(team(), False, False, False, n, u, d_in, 1, xp, d_in,
                       wp, u, 0, yp, u)
            _act_rows(yp, bp, yp, n, u, activation)


def dense_backward(const floating[:, ::1] X,   # (n, d_in) IN; unread (any shape) when dW is None
                   const floating[:, ::1] W,   # (d_in, units) IN
                   const floating[:, ::1] Y,   # (n, units) IN, forward output; None if linear
                   const floating[:, ::1] dY,  # (n, units) IN
                   floating[:, ::1] dZ,        # (n, units) OUT, scratch; may be dY itself
                   floating[:, ::1] dX,        # (n, d_in) OUT or None
                   floating[:, ::1] dW,        # (d_in, units) OUT (IN/OUT if accumulate) or None
                   floating[::1] db,           # (units,) OUT (IN/OUT if accumulate) or None
                   int activation,
                   bint accumulate,
                   const floating[:, ::1] Z=None):  # (n, units) IN, pre-activation, or None
    """dZ = dY * act'; dX = dZ @ W.T; dW (+)= X.T @ dZ; db (+)= dZ.sum(0).

    Z (dense_forward's pre-activation) is required where the activation's
    derivative needs the input (gelu, silu, mish); it may then alias dZ.

    X must be an array even when dW is None: Cython picks the float or double
    version from the first argument.
    """
    cdef Py_ssize_t n = dY.shape[0], u = dY.shape[1], d_in = W.shape[0]
    cdef const floating* xp = NULL
    cdef const floating* yp = NULL
    cdef const floating* zp = NULL
    cdef const floating* wp = _cp2(W)
    cdef const floating* dyp = _cp2(dY)
    cdef floating* dzp = _p2(dZ)
    cdef floating* dxp = NULL
    cdef floating* dwp = NULL
    cdef floating* dbp = NULL
    cdef bint want_dx = dX is not None, want_dw = dW is not None, want_db = db is not None
    cdef floating beta = 1 if accumulate else 0
    _check_activation("dense_backward", activation)
    _check_blas_dims("dense_backward", n, d_in, u)
    if W.shape[1] != u or dZ.shape[0] != n or dZ.shape[1] != u:
        raise ValueError("dense_backward: shapes of W, dY, dZ do not agree")
    if activation != ACT_LINEAR:
        if Y is None:
            raise ValueError("dense_backward: Y is required for a non-linear activation")
        if Y.shape[0] != n or Y.shape[1] != u:
            raise ValueError("dense_backward: Y does not match dY")
        yp = _cp2(Y)
    if _act_needs_input(activation):
        if Z is None:
            raise ValueError(f"dense_backward: Z is required for activation code {activation}")
        if Z.shape[0] != n or Z.shape[1] != u:
            raise ValueError("dense_backward: Z does not match dY")
        zp = _cp2(Z)
    if want_dx:
        if dX.shape[0] != n or dX.shape[1] != d_in:
            raise ValueError("dense_backward: dX does not match (n, d_in)")
        dxp = _p2(dX)
    if want_dw:
        if X is None:
            raise ValueError("dense_backward: X is required for dW")
        if X.shape[0] != n or X.shape[1] != d_in:
            raise ValueError("dense_backward: X does not match (n, d_in)")
        if dW.shape[0] != d_in or dW.shape[1] != u:
            raise ValueError("dense_backward: dW does not match W")
        xp = _cp2(X)
        dwp = _p2(dW)
    if want_db:
        if db.shape[0] != u:
            raise ValueError("dense_backward: db does not match units")
        dbp = _p1(db)
    with nogil:
        _act_grad_rows_z(zp, yp, dyp, dzp, n, u, activation)
        if want_dx:
            gemm_split(team(), False, False, True, n, d_in, u, 1, dzp, u, wp, u,
                       0, dxp, d_in)
        if want_dw:
            gemm_split(team(), True, True, False, d_in, u, n, 1, xp, d_in, dzp, u,
                       beta, dwp, u)
        if want_db:
            _colsum(dzp, n, u, 1.0, dbp, accumulate)


def _gemm_split_memview(int nthreads, bint split_rows, bint trans_a, bint trans_b,
                        double alpha,
                        const floating[:, ::1] A,  # op(A) is (m, k) IN
                        const floating[:, ::1] B,  # op(B) is (k, n) IN
                        double beta,
                        floating[:, ::1] C):       # (m, n) IN/OUT
    """C = alpha * op(A) @ op(B) + beta * C through _blas.gemm_split (test hook).

    The team size and split axis are the caller's, so a test reaches every
    branch (row or column slices, the serial fallback) whatever the machine.
    """
    cdef Py_ssize_t m = C.shape[0], n = C.shape[1]
    cdef Py_ssize_t k = A.shape[0] if trans_a else A.shape[1]
    if nthreads < 1:
        raise ValueError(f"_gemm_split_memview: nthreads must be >= 1, got {nthreads}")
    if (A.shape[1] if trans_a else A.shape[0]) != m:
        raise ValueError("_gemm_split_memview: op(A) does not have C's rows")
    if (B.shape[1] if trans_b else B.shape[0]) != k or (B.shape[0] if trans_b else B.shape[1]) != n:
        raise ValueError("_gemm_split_memview: op(B) is not (k, n)")
    _check_blas_dims("_gemm_split_memview", m, n, k)
    cdef const floating* ap = _cp2(A)
    cdef const floating* bp = _cp2(B)
    cdef floating* cp = _p2(C)
    # Leading dimensions of empty operands still have to be >= 1 for BLAS.
    cdef int lda = max(A.shape[1], 1), ldb = max(B.shape[1], 1), ldc = max(n, 1)
    with nogil:
        gemm_split(nthreads, split_rows, trans_a, trans_b, m, n, k, <floating>alpha,
                   ap, lda, bp, ldb, <floating>beta, cp, ldc)
