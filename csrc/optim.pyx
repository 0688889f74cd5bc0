# Design
# ------
# Fused optimizer steps: one call updates every weight of the compiled set
# (DESIGN.md "one fused call per step ... touching nothing else").  The Python
# lists are read once, with the GIL, into C arrays of pointers and sizes
# (_gather); then a single nogil region runs the update over all of them, each
# weight split across OpenMP threads when it is large enough to pay.
#
# Weights are flat 1-D contiguous views (fastlayers.ops passes w.reshape(-1),
# which is a view for C-contiguous arrays, so updates land in the caller's
# arrays).  Hyperparameters are cast to the weights' dtype once, as Keras does in
# float32 mode; the per-element arithmetic runs in that dtype.
from cython cimport floating
from libc.math cimport pow, sqrt
from libc.stdlib cimport free, malloc

# The per-weight loops live in _optim.pxd, shared with the fused training step
# (plan.pyx), so both update weights identically.
from _optim cimport _adam_one, _sgd_one

include "_team.pxi"  # binds this module to the process-wide team (csrc/_team.pxd)


cdef int _gather(list arrays, floating** ptrs, Py_ssize_t* sizes, str fn,
                 str what) except -1:
    # The one helper that needs the GIL: it turns Python arrays into pointers.
    cdef floating[::1] view
    cdef Py_ssize_t i
    for i in range(len(arrays)):
        view = arrays[i]
        if sizes[i] >= 0 and view.shape[0] != sizes[i]:
            raise ValueError(f"{fn}: {what}[{i}] has {view.shape[0]} elements, "
                             f"its weight has {sizes[i]}")
        sizes[i] = view.shape[0]
        ptrs[i] = &view[0] if view.shape[0] > 0 else NULL
    return 0


cdef int _gather_const(list arrays, const floating** ptrs, Py_ssize_t* sizes, str fn,
                       str what) except -1:
    cdef const floating[::1] view
    cdef Py_ssize_t i
    for i in range(len(arrays)):
        view = arrays[i]
        if view.shape[0] != sizes[i]:
            raise ValueError(f"{fn}: {what}[{i}] has {view.shape[0]} elements, "
                             f"its weight has {sizes[i]}")
        ptrs[i] = &view[0] if view.shape[0] > 0 else NULL
    return 0


cdef int _sgd(floating tag, list params, list grads, list velocities, double lr,
              double momentum, bint nesterov) except -1:
    # `tag` only selects the float/double specialization.
    cdef Py_ssize_t n = len(params), i
    cdef floating** w = <floating**>malloc(n * sizeof(floating*))
    cdef const floating** g = <const floating**>malloc(n * sizeof(floating*))
    cdef floating** v = <floating**>malloc(n * sizeof(floating*))
    cdef Py_ssize_t* sizes = <Py_ssize_t*>malloc(n * sizeof(Py_ssize_t))
    cdef floating lr_f = <floating>lr, mom_f = <floating>momentum
    try:
        if w == NULL or g == NULL or v == NULL or sizes == NULL:
            raise MemoryError()
        for i in range(n):
            sizes[i] = -1
            v[i] = NULL
        _gather(params, w, sizes, "sgd_update", "params")
        _gather_const(grads, g, sizes, "sgd_update", "grads")
        if velocities is not None:
            _gather(velocities, v, sizes, "sgd_update", "velocities")
        with nogil:
            for i in range(n):
                _sgd_one(w[i], g[i], v[i], sizes[i], lr_f, mom_f, nesterov)
    finally:
        free(w)
        free(g)
        free(v)
        free(sizes)
    return 0


cdef int _adam(floating tag, list params, list grads, list ms, list vs, double lr,
               double beta_1, double beta_2, double epsilon, long t) except -1:
    cdef Py_ssize_t n = len(params), i
    cdef floating** w = <floating**>malloc(n * sizeof(floating*))
    cdef const floating** g = <const floating**>malloc(n * sizeof(floating*))
    cdef floating** m = <floating**>malloc(n * sizeof(floating*))
    cdef floating** v = <floating**>malloc(n * sizeof(floating*))
    cdef Py_ssize_t* sizes = <Py_ssize_t*>malloc(n * sizeof(Py_ssize_t))
    # Keras folds both bias corrections into the step size.
    cdef floating lr_t = <floating>(lr * sqrt(1 - pow(beta_2, t)) / (1 - pow(beta_1, t)))
    cdef floating b1 = <floating>beta_1, b2 = <floating>beta_2
    cdef floating one_b1 = <floating>(1 - beta_1), one_b2 = <floating>(1 - beta_2)
    cdef floating eps = <floating>epsilon
    try:
        if w == NULL or g == NULL or m == NULL or v == NULL or sizes == NULL:
            raise MemoryError()
        for i in range(n):
            sizes[i] = -1
        _gather(params, w, sizes, "adam_update", "params")
        _gather_const(grads, g, sizes, "adam_update", "grads")
        _gather(ms, m, sizes, "adam_update", "ms")
        _gather(vs, v, sizes, "adam_update", "vs")
        with nogil:
            for i in range(n):
                _adam_one(w[i], g[i], m[i], v[i], sizes[i], lr_t, b1, b2, one_b1, one_b2, eps)
    finally:
        free(w)
        free(g)
        free(m)
        free(v)
        free(sizes)
    return 0


cdef bint _is_float32(str fn, list params) except -1:
    fmt = memoryview(params[0]).format
    if fmt == "f":
        return True
    if fmt == "d":
        return False
    raise TypeError(f"{fn}: params must be float32 or float64 (buffer format {fmt!r})")


cdef int _check_lengths(str fn, list params, list other, str what) except -1:
    if other is not None and len(other) != len(params):
        raise ValueError(f"{fn}: {len(params)} params but {len(other)} {what}")
    return 0


def sgd_update(list params,       # [(size_i,)] IN/OUT
               list grads,        # [(size_i,)] IN
               list velocities,   # [(size_i,)] IN/OUT, or None for plain SGD
               double lr, double momentum, bint nesterov):
    """Keras SGD: v = momentum v - lr g; w += v (nesterov: w += momentum v - lr g).

    With velocities None: w -= lr g (Keras's momentum == 0 path).
    """
    _check_lengths("sgd_update", params, grads, "grads")
    _check_lengths("sgd_update", params, velocities, "velocities")
    if velocities is None and momentum != 0:
        raise ValueError("sgd_update: momentum needs velocities")
    if not params:
        return
    if _is_float32("sgd_update", params):
        _sgd(<float>0, params, grads, velocities, lr, momentum, nesterov)
    else:
        _sgd(<double>0, params, grads, velocities, lr, momentum, nesterov)


def adam_update(list params,  # [(size_i,)] IN/OUT
                list grads,   # [(size_i,)] IN
                list ms,      # [(size_i,)] IN/OUT, first moments
                list vs,      # [(size_i,)] IN/OUT, second moments
                double lr, double beta_1, double beta_2, double epsilon, long t):
    """Keras Adam step number t (1 on the first step)."""
    _check_lengths("adam_update", params, grads, "grads")
    _check_lengths("adam_update", params, ms, "ms")
    _check_lengths("adam_update", params, vs, "vs")
    if t < 1:
        raise ValueError(f"adam_update: t counts steps from 1, got {t}")
    if not params:
        return
    if _is_float32("adam_update", params):
        _adam(<float>0, params, grads, ms, vs, lr, beta_1, beta_2, epsilon, t)
    else:
        _adam(<double>0, params, grads, ms, vs, lr, beta_1, beta_2, epsilon, t)
