# Design
# ------
# The eager optimizer step: one call updates every weight of one dtype with
# update_one() from _optim.pxd, the same per-weight update the engine's compiled
# step runs.  The Python lists are read once, with the GIL, into C arrays of
# pointers and sizes (_gather); then a single nogil region runs the updates.
#
# What to do is data: `kind` (an OPT_* code of _codes.pxd) and `hyper`, the
# float64 scalars of this step (layout in fastlayers/_codes.py), which Python's
# Optimizer.begin_step() computed.  Nothing here decides a hyperparameter.
#
# Arrays are flat 1-D contiguous views (fastlayers.ops passes w.reshape(-1), a
# view of the caller's C-contiguous array, so updates land in place).
from cython cimport floating
from libc.stdlib cimport free, malloc

cimport _codes
from _codes cimport HYPER_LEN, OPT_COUNT
from _optim cimport n_slots, sq_norm as _sq_norm, update_one

include "_team.pxi"  # binds this module to the process-wide team (csrc/_team.pxd)


cdef int _gather(list arrays, floating** ptrs, Py_ssize_t* sizes, str what) except -1:
    # Writable arrays: sizes < 0 are filled in, others must match.
    cdef floating[::1] view
    cdef Py_ssize_t i
    for i in range(len(arrays)):
        view = arrays[i]
        if sizes[i] >= 0 and view.shape[0] != sizes[i]:
            raise ValueError(f"apply_update: {what}[{i}] has {view.shape[0]} elements, "
                             f"its weight has {sizes[i]}")
        sizes[i] = view.shape[0]
        ptrs[i] = &view[0] if view.shape[0] > 0 else NULL
    return 0


cdef int _gather_const(list arrays, floating** ptrs, Py_ssize_t* sizes, str what) except -1:
    # Read-only arrays are fine: update_one never writes g.
    cdef const floating[::1] view
    cdef Py_ssize_t i
    for i in range(len(arrays)):
        view = arrays[i]
        if view.shape[0] != sizes[i]:
            raise ValueError(f"apply_update: {what}[{i}] has {view.shape[0]} elements, "
                             f"its weight has {sizes[i]}")
        ptrs[i] = <floating*>&view[0] if view.shape[0] > 0 else NULL
    return 0


cdef int _apply(floating tag, int kind, const double* h, list params, list grads,
                list slots) except -1:
    # `tag` only selects the float/double specialization.
    cdef Py_ssize_t n = len(params), i
    cdef int j, ns = len(slots)
    cdef floating** w = <floating**>malloc(n * sizeof(floating*))
    cdef floating** g = <floating**>malloc(n * sizeof(floating*))
    cdef floating** s = <floating**>malloc(3 * n * sizeof(floating*))
    cdef Py_ssize_t* sizes = <Py_ssize_t*>malloc(n * sizeof(Py_ssize_t))
    try:
        if w == NULL or g == NULL or s == NULL or sizes == NULL:
            raise MemoryError()
        for i in range(n):
            sizes[i] = -1
        for i in range(3 * n):
            s[i] = NULL
        _gather(params, w, sizes, "params")
        _gather_const(grads, g, sizes, "grads")
        for j in range(ns):
            _gather(slots[j], s + j * n, sizes, f"slots[{j}]")
        with nogil:
            for i in range(n):
                update_one(kind, h, w[i], g[i], s[i], s[n + i], s[2 * n + i], sizes[i])
    finally:
        free(w)
        free(g)
        free(s)
        free(sizes)
    return 0


def slot_count(int kind):
    """How many per-weight state arrays the kernel reads for `kind` (-1: unknown)."""
    return n_slots(kind)


def codes():
    """The compiled values of _codes.pxd, to check them against fastlayers._codes."""
    return {
        "OPT_SGD": _codes.OPT_SGD, "OPT_MOMENTUM": _codes.OPT_MOMENTUM,
        "OPT_NESTEROV": _codes.OPT_NESTEROV, "OPT_RMSPROP": _codes.OPT_RMSPROP,
        "OPT_RMSPROP_MOMENTUM": _codes.OPT_RMSPROP_MOMENTUM,
        "OPT_RMSPROP_CENTERED": _codes.OPT_RMSPROP_CENTERED,
        "OPT_RMSPROP_CENTERED_MOMENTUM": _codes.OPT_RMSPROP_CENTERED_MOMENTUM,
        "OPT_ADAM": _codes.OPT_ADAM, "OPT_AMSGRAD": _codes.OPT_AMSGRAD,
        "OPT_ADAGRAD": _codes.OPT_ADAGRAD, "OPT_ADADELTA": _codes.OPT_ADADELTA,
        "OPT_ADAMAX": _codes.OPT_ADAMAX, "OPT_NADAM": _codes.OPT_NADAM,
        "OPT_COUNT": _codes.OPT_COUNT,
        "H_LR": _codes.H_LR, "H_WD": _codes.H_WD, "H_CLIPVALUE": _codes.H_CLIPVALUE,
        "H_CLIPNORM": _codes.H_CLIPNORM, "H_GSCALE": _codes.H_GSCALE, "H_A": _codes.H_A,
        "H_B": _codes.H_B, "H_C": _codes.H_C, "H_D": _codes.H_D, "H_E": _codes.H_E,
        "H_F": _codes.H_F, "HYPER_LEN": _codes.HYPER_LEN,
    }


def sq_norm(const floating[::1] g):  # (size,) IN
    """Sum of squares of g, accumulated in double."""
    if g.shape[0] == 0:
        return 0.0
    return _sq_norm(&g[0], g.shape[0])


def apply_update(int kind,
                 const double[::1] hyper,  # (HYPER_LEN,) IN
                 list params,              # [(size_i,)] IN/OUT, one float dtype
                 list grads,               # [(size_i,)] IN (may be read-only)
                 list slots):              # slot_count(kind) lists of [(size_i,)] IN/OUT
    """One optimizer step of `kind` with this step's scalars `hyper` over every weight."""
    cdef int ns = n_slots(kind)
    if ns < 0:
        raise ValueError(f"apply_update: unknown optimizer kind {kind}")
    if hyper.shape[0] != HYPER_LEN:
        raise ValueError(f"apply_update: hyper has {hyper.shape[0]} values, "
                         f"expected {HYPER_LEN}")
    if len(grads) != len(params):
        raise ValueError(f"apply_update: {len(params)} params but {len(grads)} grads")
    if len(slots) != ns:
        raise ValueError(f"apply_update: kind {kind} takes {ns} slot lists, got {len(slots)}")
    for j in range(ns):
        if len(slots[j]) != len(params):
            raise ValueError(f"apply_update: {len(params)} params but {len(slots[j])} "
                             f"slots[{j}]")
    if not params:
        return
    fmt = memoryview(params[0]).format
    if fmt == "f":
        _apply(<float>0, kind, &hyper[0], params, grads, slots)
    elif fmt == "d":
        _apply(<double>0, kind, &hyper[0], params, grads, slots)
    else:
        raise TypeError(f"apply_update: params must be float32 or float64 (buffer format {fmt!r})")
