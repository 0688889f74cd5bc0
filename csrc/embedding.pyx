# Design
# ------
# Embedding lookup: a gather of weight rows, and its gradient, a scatter-add of
# the output gradient rows into the rows of dW that were looked up (the others
# are not touched, so a caller that keeps dW zeroed pays only for the used
# rows).  Ids are validated here too: an out-of-range id would read or write
# outside W.  The scatter-add is serial: two ids may name the same row.  The loops
# are csrc/_embedding.pxd's, shared with the executor's EMBEDDING op.
from cython cimport floating
from libc.stdint cimport int64_t

from _codes cimport IDS_INT64
from _embedding cimport emb_gather, emb_scatter_add

from _common cimport _cp2, _p2

from _team cimport team, team_for_step

include "_team.pxi"  # binds this module to the process-wide team (csrc/_team.pxd)



cdef int _check_ids(str fn, const int64_t[::1] ids, Py_ssize_t vocab) except -1:
    cdef Py_ssize_t i
    cdef int64_t v
    for i in range(ids.shape[0]):
        v = ids[i]
        if v < 0 or v >= vocab:
            raise ValueError(f"{fn}: id {v} at position {i} is outside [0, {vocab})")
    return 0


def embedding_forward(const int64_t[::1] ids,   # (m,) IN, in [0, vocab)
                      const floating[:, ::1] W,  # (vocab, dim) IN
                      floating[:, ::1] Y):       # (m, dim) OUT
    """Y[i] = W[ids[i]]."""
    cdef Py_ssize_t m = ids.shape[0], d = W.shape[1]
    cdef const floating* wp = _cp2(W)
    cdef floating* yp = _p2(Y)
    if Y.shape[0] != m or Y.shape[1] != d:
        raise ValueError("embedding_forward: Y must be (len(ids), dim)")
    _check_ids("embedding_forward", ids, W.shape[0])
    if d == 0 or m == 0:
        return
    with nogil:
        emb_gather(<const void*>&ids[0], IDS_INT64, m, wp, W.shape[0], d, yp)


def embedding_backward(const int64_t[::1] ids,    # (m,) IN, in [0, vocab)
                       const floating[:, ::1] dY,  # (m, dim) IN
                       floating[:, ::1] dW):       # (vocab, dim) IN/OUT
    """dW[ids[i]] += dY[i] for every i (repeated ids add up)."""
    cdef Py_ssize_t m = ids.shape[0], d = dW.shape[1]
    cdef const floating* gp = _cp2(dY)
    cdef floating* wp = _p2(dW)
    if dY.shape[0] != m or dY.shape[1] != d:
        raise ValueError("embedding_backward: dY must be (len(ids), dim)")
    _check_ids("embedding_backward", ids, dW.shape[0])
    if d == 0 or m == 0:
        return
    with nogil:
        emb_scatter_add(<const void*>&ids[0], IDS_INT64, m, gp, dW.shape[0], d, wp)
