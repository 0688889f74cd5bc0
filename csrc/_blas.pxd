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
from cython.parallel cimport prange
from scipy.linalg.cython_blas cimport sgemm, dgemm

from libc.stdint cimport int64_t

from _team cimport fl_blas_single, fl_now_ns, fl_team_observe


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


cdef enum:
    # Below this many multiply-adds a product runs on the calling thread alone:
    # waking the team costs a few microseconds.
    SPLIT_MIN_MADDS = 1 << 20
    # Slices are multiples of this many rows/columns, so each thread's block
    # keeps the BLAS micro-kernel's full width.
    SPLIT_ALIGN = 16


cdef inline void gemm_split(int nthreads, bint split_rows,
                            bint trans_a, bint trans_b, int m, int n, int k,
                            floating alpha,
                            const floating* A, int lda,
                            const floating* B, int ldb,
                            floating beta,
                            floating* C, int ldc) noexcept nogil:
    """gemm() with C split into `nthreads` row (or column) slices, one per thread.

    Each slice is an independent single-threaded BLAS call on its own part of
    C: the BLAS is put back to one thread first if someone (threadpoolctl)
    raised it, since a threaded BLAS inside every slice is many times slower
    (and a serial product must not wake BLAS threads beside a spinning team).
    Pass nthreads = team() from _team.pxd.  Splitting
    along the weight's axis gives each thread half of the weight matrix: at the
    batch sizes of small models this scales where BLAS's own threading does not
    (DESIGN.md "Performance notes").
    """
    cdef int total = m if split_rows else n
    cdef int chunk, t, lo, hi
    cdef int64_t start
    cdef int64_t stamps[2]
    cdef int64_t* marks = stamps  # written by the thread of slice 0
    fl_blas_single()
    if nthreads <= 1 or total < 2 * SPLIT_ALIGN or <double>m * n * k < SPLIT_MIN_MADDS:
        gemm(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)
        return
    chunk = (total + nthreads - 1) // nthreads
    chunk = (chunk + SPLIT_ALIGN - 1) // SPLIT_ALIGN * SPLIT_ALIGN
    # Slice 0 is the largest: the region should take about as long (_team.pxd).
    start = fl_now_ns()
    for t in prange(nthreads, num_threads=nthreads, schedule='static'):
        if t == 0:
            marks[0] = fl_now_ns()
        lo = t * chunk
        hi = lo + chunk
        if hi > total:
            hi = total
        if lo < hi:
            if split_rows:
                # Rows lo..hi of op(A): row offsets of A, or column offsets of A^T.
                gemm(trans_a, trans_b, hi - lo, n, k, alpha,
                     A + (lo if trans_a else lo * lda), lda, B, ldb, beta, C + lo * ldc, ldc)
            else:
                # Columns lo..hi of op(B): column offsets of B, or row offsets of B^T.
                gemm(trans_a, trans_b, m, hi - lo, k, alpha, A, lda,
                     B + (lo * ldb if trans_b else lo), ldb, beta, C + lo, ldc)
        if t == 0:
            marks[1] = fl_now_ns()
    fl_team_observe(fl_now_ns() - start, marks[1] - marks[0])
