# Header-only per-weight optimizer updates, shared by optim.pyx (the fused update
# over a list of weights) and plan.pyx (the fused training step).  `cdef inline`
# only: see _blas.pxd.
from cython cimport floating
from cython.parallel cimport prange

from _common cimport PARALLEL_MIN_ELEMENTS, _sqrt


cdef inline void _sgd_one(floating* w, const floating* g, floating* v, Py_ssize_t size,
                          floating lr, floating momentum, bint nesterov) noexcept nogil:
    cdef Py_ssize_t i
    cdef bint par = size >= PARALLEL_MIN_ELEMENTS
    if v == NULL:
        for i in prange(size, schedule='static', use_threads_if=par):
            w[i] = w[i] - lr * g[i]
    elif nesterov:
        for i in prange(size, schedule='static', use_threads_if=par):
            v[i] = momentum * v[i] - lr * g[i]
            w[i] = w[i] + (momentum * v[i] - lr * g[i])
    else:
        for i in prange(size, schedule='static', use_threads_if=par):
            v[i] = momentum * v[i] - lr * g[i]
            w[i] = w[i] + v[i]


cdef inline void _adam_one(floating* w, const floating* g, floating* m, floating* v,
                           Py_ssize_t size, floating lr_t, floating b1, floating b2,
                           floating one_b1, floating one_b2, floating eps) noexcept nogil:
    cdef Py_ssize_t i
    for i in prange(size, schedule='static', use_threads_if=size >= PARALLEL_MIN_ELEMENTS):
        m[i] = b1 * m[i] + one_b1 * g[i]
        v[i] = b2 * v[i] + one_b2 * g[i] * g[i]
        w[i] = w[i] - lr_t * m[i] / (_sqrt(v[i]) + eps)
