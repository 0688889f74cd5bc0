# Header-only PReLU loops, shared by param_act.pyx (the standalone kernels) and
# executor.pyx (the compiled step's PRELU op).  `cdef inline` only: see _blas.pxd.
#
# X is (n, k): n samples of k values.  Value j of a sample uses the slope
# alpha[aidx[j]] (aidx maps each position to its slope when alpha is shared along
# some axes; NULL: one slope per position).  The slopes' gradient sums
# dY * min(X, 0) over the rows in double accumulators, blocks of COL_BLOCK columns
# streaming the rows in order, then adds each column into its slope.
from cython cimport floating

from _common cimport COL_BLOCK


cdef inline void prelu_forward_rows(const floating* X,       # (n, k) IN
                                    Py_ssize_t n, Py_ssize_t k,
                                    const floating* alpha,   # (n_alpha,) IN
                                    const Py_ssize_t* aidx,  # (k,) IN or NULL
                                    floating* Y) noexcept nogil:  # (n, k) OUT
    """Y = max(X, 0) + alpha * min(X, 0)."""
    cdef Py_ssize_t i, j
    cdef floating x
    for i in range(n):
        for j in range(k):
            x = X[i * k + j]
            Y[i * k + j] = x if x > 0 else (alpha[aidx[j]] if aidx != NULL else alpha[j]) * x


cdef inline void prelu_backward_rows(const floating* X,       # (n, k) IN
                                     const floating* dY,      # (n, k) IN
                                     Py_ssize_t n, Py_ssize_t k,
                                     const floating* alpha,   # (n_alpha,) IN
                                     const Py_ssize_t* aidx,  # (k,) IN or NULL (n_alpha == k)
                                     Py_ssize_t n_alpha,
                                     floating* dX,            # (n, k) OUT or NULL
                                     floating* dalpha,        # (n_alpha,) OUT (IN/OUT if add) or NULL
                                     bint add) noexcept nogil:
    """dX = dY * (1 if X > 0 else alpha); dalpha (+)= sums of dY * min(X, 0)."""
    cdef Py_ssize_t i, j, j0, j1
    cdef double acc[COL_BLOCK]
    cdef floating x, a
    if dX != NULL:
        for i in range(n):
            for j in range(k):
                x = X[i * k + j]
                a = alpha[aidx[j]] if aidx != NULL else alpha[j]
                dX[i * k + j] = dY[i * k + j] if x > 0 else a * dY[i * k + j]
    if dalpha == NULL:
        return
    if not add:
        for j in range(n_alpha):
            dalpha[j] = 0
    j0 = 0
    while j0 < k:
        j1 = j0 + COL_BLOCK if j0 + COL_BLOCK < k else k
        for j in range(j1 - j0):
            acc[j] = 0
        for i in range(n):
            for j in range(j0, j1):
                x = X[i * k + j]
                if x < 0:
                    acc[j - j0] += dY[i * k + j] * x
        for j in range(j0, j1):
            if aidx != NULL:
                dalpha[aidx[j]] = dalpha[aidx[j]] + <floating>acc[j - j0]
            else:
                dalpha[j] = dalpha[j] + <floating>acc[j - j0]
        j0 = j1
