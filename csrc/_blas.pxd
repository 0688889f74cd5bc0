# Header-only BLAS access for the kernels: the only file that names a BLAS.
#
# Why scipy.linalg.cython_blas: it is the one route to nogil sgemm/dgemm with no
# compiler or linker flags (scikit-learn's route, STYLE.md §7); the function
# pointers come from scipy's bundled OpenBLAS at import time.
#
# Why `cdef inline` in a .pxd with no .pyx: csrc/ is flat and compiled into
# fastlayers._kernels.<name>, so a non-inline cdef shared through a .pxd would be
# looked up at runtime as a top-level module `_blas` and break the import.
from cython cimport floating
from scipy.linalg.cython_blas cimport sgemm, dgemm


cdef inline void gemm(bint trans_a, bint trans_b, int m, int n, int k,
                      floating alpha,
                      const floating* A, int lda,   # op(A) is (m, k), row-major
                      const floating* B, int ldb,   # op(B) is (k, n), row-major
                      floating beta,
                      floating* C, int ldc,         # (m, n), row-major, IN/OUT
                      ) noexcept nogil:
    """Row-major C = alpha * op(A) @ op(B) + beta * C."""
    cdef char ta = b'T' if trans_a else b'N'
    cdef char tb = b'T' if trans_b else b'N'
    cdef Py_ssize_t i, j
    if m <= 0 or n <= 0:
        return
    if k <= 0:
        # An empty inner dimension means op(A) @ op(B) == 0.  Do it here: the
        # empty operands have leading dimension 0, which BLAS rejects (xerbla).
        for i in range(m):
            for j in range(n):
                C[i * ldc + j] = 0 if beta == 0 else beta * C[i * ldc + j]
        return
    # Fortran BLAS is column-major and sees each row-major matrix transposed, so
    # compute C^T = op(B)^T @ op(A)^T: swap the operands and their flags.
    # scipy declares the inputs non-const; BLAS does not write them.
    if floating is float:
        sgemm(&tb, &ta, &n, &m, &k, &alpha, <float*>B, &ldb, <float*>A, &lda,
              &beta, C, &ldc)
    else:
        dgemm(&tb, &ta, &n, &m, &k, &alpha, <double*>B, &ldb, <double*>A, &lda,
              &beta, C, &ldc)
