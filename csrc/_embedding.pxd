# Header-only embedding loops, shared by embedding.pyx (the standalone kernels) and
# executor.pyx (the compiled step's EMBEDDING op).  `cdef inline` only: see _blas.pxd.
#
# Ids are read through `ids_kind` (_codes IDS_*): int32/int64 as they are, float
# ids rounded to the nearest integer (rint, as Embedding.forward's np.rint).  An id
# that names no row (negative, >= vocab, NaN) is found by emb_first_bad before any
# gather or scatter runs; the loops below assume every id is valid.
from cython cimport floating
from libc.math cimport rint
from libc.stdint cimport int32_t, int64_t
from libc.string cimport memcpy, memset

from _codes cimport IDS_FLOAT32, IDS_FLOAT64, IDS_INT32, IDS_INT64


cdef inline Py_ssize_t emb_row(const void* ids, int ids_kind, Py_ssize_t i,
                               Py_ssize_t vocab) noexcept nogil:
    """Id ``i`` as a row of the table, or -1 when it names none."""
    cdef double v
    cdef int64_t k
    if ids_kind == IDS_INT64:
        k = (<const int64_t*>ids)[i]
    elif ids_kind == IDS_INT32:
        k = (<const int32_t*>ids)[i]
    else:
        v = (<const float*>ids)[i] if ids_kind == IDS_FLOAT32 else (<const double*>ids)[i]
        v = rint(v)
        if not (v >= 0 and v < vocab):  # NaN fails both
            return -1
        return <Py_ssize_t>v
    return <Py_ssize_t>k if 0 <= k < vocab else -1


cdef inline Py_ssize_t emb_first_bad(const void* ids, int ids_kind, Py_ssize_t m,
                                     Py_ssize_t vocab) noexcept nogil:
    """The position of the first of ``m`` ids outside [0, vocab), else -1."""
    cdef Py_ssize_t i
    for i in range(m):
        if emb_row(ids, ids_kind, i, vocab) < 0:
            return i
    return -1


cdef inline void emb_gather(const void* ids, int ids_kind, Py_ssize_t m,  # (m,) IN, valid
                            const floating* W,                          # (vocab, d) IN
                            Py_ssize_t vocab, Py_ssize_t d,
                            floating* Y) noexcept nogil:                # (m, d) OUT
    """Y[i] = W[ids[i]]."""
    cdef Py_ssize_t i, r
    for i in range(m):
        r = emb_row(ids, ids_kind, i, vocab)
        if r >= 0:
            memcpy(Y + i * d, W + r * d, d * sizeof(floating))
        else:
            memset(Y + i * d, 0, d * sizeof(floating))


cdef inline void emb_scatter_add(const void* ids, int ids_kind, Py_ssize_t m,  # (m,) IN, valid
                                 const floating* dY,                         # (m, d) IN
                                 Py_ssize_t vocab, Py_ssize_t d,
                                 floating* dW) noexcept nogil:               # (vocab, d) IN/OUT
    """dW[ids[i]] += dY[i]: only the rows looked up are touched (serial: two ids may
    name the same row)."""
    cdef Py_ssize_t i, j, r
    cdef floating* row
    for i in range(m):
        r = emb_row(ids, ids_kind, i, vocab)
        if r < 0:
            continue
        row = dW + r * d
        for j in range(d):
            row[j] += dY[i * d + j]
