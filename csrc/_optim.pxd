# Header-only per-weight optimizer updates, shared by optim.pyx (the fused update
# over a list of weights) and plan.pyx (the fused training step).  `cdef inline`
# only: see _blas.pxd.
from cython cimport floating
from cython.parallel cimport prange

from _common cimport _chunks, _sqrt


cdef inline void _sgd_range(floating* w, const floating* g, floating* v, Py_ssize_t lo,
                            Py_ssize_t hi, floating lr, floating momentum,
                            bint nesterov) noexcept nogil:
    cdef Py_ssize_t i
    if v == NULL:
        for i in range(lo, hi):
            w[i] = w[i] - lr * g[i]
    elif nesterov:
        for i in range(lo, hi):
            v[i] = momentum * v[i] - lr * g[i]
            w[i] = w[i] + (momentum * v[i] - lr * g[i])
    else:
        for i in range(lo, hi):
            v[i] = momentum * v[i] - lr * g[i]
            w[i] = w[i] + v[i]


cdef inline void _sgd_one(floating* w, const floating* g, floating* v, Py_ssize_t size,
                          floating lr, floating momentum, bint nesterov) noexcept nogil:
    """Keras SGD on one weight (v NULL: plain SGD), split over threads when large."""
    cdef int nc = _chunks(size), c
    if nc == 1:
        _sgd_range(w, g, v, 0, size, lr, momentum, nesterov)
        return
    for c in prange(nc, num_threads=nc, schedule='static'):
        _sgd_range(w, g, v, size * c // nc, size * (c + 1) // nc, lr, momentum, nesterov)


cdef inline void _adam_range(floating* w, const floating* g, floating* m, floating* v,
                             Py_ssize_t lo, Py_ssize_t hi, floating lr_t, floating b1,
                             floating b2, floating one_b1, floating one_b2,
                             floating eps) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(lo, hi):
        m[i] = b1 * m[i] + one_b1 * g[i]
        v[i] = b2 * v[i] + one_b2 * g[i] * g[i]
        w[i] = w[i] - lr_t * m[i] / (_sqrt(v[i]) + eps)


cdef inline void _adam_one(floating* w, const floating* g, floating* m, floating* v,
                           Py_ssize_t size, floating lr_t, floating b1, floating b2,
                           floating one_b1, floating one_b2, floating eps) noexcept nogil:
    """Keras Adam on one weight (lr_t carries the bias corrections)."""
    cdef int nc = _chunks(size), c
    if nc == 1:
        _adam_range(w, g, m, v, 0, size, lr_t, b1, b2, one_b1, one_b2, eps)
        return
    for c in prange(nc, num_threads=nc, schedule='static'):
        _adam_range(w, g, m, v, size * c // nc, size * (c + 1) // nc, lr_t, b1, b2,
                    one_b1, one_b2, eps)


from _codes cimport (H_A, H_B, H_C, H_D, H_GSCALE, H_LR, OPT_ADAM, OPT_MOMENTUM,
                     OPT_NESTEROV, OPT_SGD)


cdef inline double sq_norm(const floating* g, Py_ssize_t size) noexcept nogil:
    cdef Py_ssize_t i
    cdef double s = 0
    for i in range(size):
        s += <double>g[i] * g[i]
    return s


cdef inline void update_one(int kind, const double* hyper, floating* w, floating* g,
                            floating* s0, floating* s1, floating* s2,
                            Py_ssize_t size) noexcept nogil:
    """One optimizer update of one weight from its complete gradient g."""
    cdef Py_ssize_t i
    cdef floating sc = <floating>hyper[H_GSCALE]
    if sc != 1:
        for i in range(size):
            g[i] = g[i] * sc
    if kind == OPT_ADAM:
        _adam_one(w, g, s0, s1, size, <floating>hyper[H_A], <floating>hyper[H_B],
                  <floating>hyper[H_C], <floating>(1 - hyper[H_B]), <floating>(1 - hyper[H_C]),
                  <floating>hyper[H_D])
    else:
        _sgd_one(w, g, s0 if kind != OPT_SGD else NULL, size, <floating>hyper[H_LR],
                 <floating>hyper[H_A], kind == OPT_NESTEROV)
