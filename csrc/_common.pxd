# Header-only helpers shared by the kernels (`cdef inline` only; see _blas.pxd for
# why nothing here may be a plain cdef).
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport exp, expf, log, logf, sqrt, sqrtf, tanh, tanhf

from _team cimport team


cdef enum:
    # Below this many elements an OpenMP team costs more than it saves: waking
    # the threads is a few microseconds, about what a serial pass over 32k
    # floats takes.  Used as `prange(..., use_threads_if=size >= ...)`.
    PARALLEL_MIN_ELEMENTS = 32768
    # Columns reduced together by _colsum: 64 doubles of accumulator stay in
    # registers/L1 while the rows stream through in memory order.
    COL_BLOCK = 64


cdef inline int _chunks(Py_ssize_t work) noexcept nogil:
    """How many chunks to split a loop over `work` elements into: 1 when small.

    Decide before entering a parallel region: `prange(..., use_threads_if=False)`
    still costs an OpenMP region entry (about 0.6 us), more than a small layer's
    whole loop.  Chunk c of nc covers [size * c // nc, size * (c + 1) // nc).
    """
    return 1 if work < PARALLEL_MIN_ELEMENTS else team()


cdef inline floating _exp(floating x) noexcept nogil:
    if floating is float:
        return expf(x)
    else:
        return exp(x)


cdef inline floating _log(floating x) noexcept nogil:
    if floating is float:
        return logf(x)
    else:
        return log(x)


cdef inline floating _sqrt(floating x) noexcept nogil:
    if floating is float:
        return sqrtf(x)
    else:
        return sqrt(x)


cdef inline floating _tanh(floating x) noexcept nogil:
    if floating is float:
        return tanhf(x)
    else:
        return tanh(x)


# Pointer to the first element, or NULL for an empty view: `&a[0, 0]` on an
# empty view is an IndexError in the debug (boundscheck) build.
cdef inline floating* _p1(floating[::1] a) noexcept nogil:
    return &a[0] if a.shape[0] > 0 else NULL


cdef inline const floating* _cp1(const floating[::1] a) noexcept nogil:
    return &a[0] if a.shape[0] > 0 else NULL


cdef inline floating* _p2(floating[:, ::1] a) noexcept nogil:
    return &a[0, 0] if a.shape[0] > 0 and a.shape[1] > 0 else NULL


cdef inline const floating* _cp2(const floating[:, ::1] a) noexcept nogil:
    return &a[0, 0] if a.shape[0] > 0 and a.shape[1] > 0 else NULL


cdef inline void _colsum_block(const floating* A, Py_ssize_t n, Py_ssize_t k,
                               Py_ssize_t j0, Py_ssize_t j1, double alpha,
                               floating* out, bint add) noexcept nogil:
    cdef double acc[COL_BLOCK]
    cdef Py_ssize_t i, j
    for j in range(j1 - j0):
        acc[j] = 0
    for i in range(n):
        for j in range(j0, j1):
            acc[j - j0] += A[i * k + j]
    for j in range(j0, j1):
        if add:
            out[j] = out[j] + <floating>(alpha * acc[j - j0])
        else:
            out[j] = <floating>(alpha * acc[j - j0])


cdef inline void _colsum(const floating* A,  # (n, k) IN
                         Py_ssize_t n, Py_ssize_t k, double alpha,
                         floating* out,      # (k,) OUT, or IN/OUT when add
                         bint add) noexcept nogil:
    """out = alpha * A.sum(axis=0) (or out += ...), summed in double.

    Double accumulators keep float32 column sums as accurate as NumPy's pairwise
    sum without a scratch buffer; blocks of COL_BLOCK columns keep the row-major
    reads sequential.
    """
    cdef Py_ssize_t nblocks = (k + COL_BLOCK - 1) // COL_BLOCK, blk, j1
    cdef int nt = _chunks(n * k)
    if nblocks == 1 or nt == 1:
        for blk in range(nblocks):
            j1 = (blk + 1) * COL_BLOCK
            _colsum_block(A, n, k, blk * COL_BLOCK, j1 if j1 < k else k, alpha, out, add)
        return
    for blk in prange(nblocks, num_threads=nt, schedule='static'):
        j1 = (blk + 1) * COL_BLOCK
        _colsum_block(A, n, k, blk * COL_BLOCK, j1 if j1 < k else k, alpha, out, add)
