# Header-only activation code, shared by dense.pyx (fused after the GEMM) and
# activations.pyx (standalone).  Row-wise because softmax needs a whole row.
from cython cimport floating
from cython.parallel cimport prange
from libc.string cimport memcpy

from _common cimport _chunks, _exp, _tanh


# Activation codes; the modules re-export them as LINEAR, RELU, ... .
cdef enum:
    ACT_LINEAR = 0
    ACT_RELU = 1
    ACT_SIGMOID = 2
    ACT_TANH = 3
    ACT_SOFTMAX = 4
    ACT_COUNT = 5


cdef inline floating _sigmoid(floating z) noexcept nogil:
    # Two branches so exp never overflows: exp(-z) for z >= 0, exp(z) otherwise.
    cdef floating e
    if z >= 0:
        return 1 / (1 + _exp(-z))
    e = _exp(z)
    return e / (1 + e)


cdef inline void _act_row(const floating* z,  # (k,) IN, may alias y
                          const floating* b,  # (k,) IN or NULL
                          floating* y,        # (k,) OUT
                          Py_ssize_t k, int act) noexcept nogil:
    """y = act(z + b) for one row; every z[j] is read before y[j] is written."""
    cdef Py_ssize_t j
    cdef floating t, m
    cdef double s
    if act == ACT_SOFTMAX:
        if k == 0:
            return
        for j in range(k):
            y[j] = z[j] + b[j] if b != NULL else z[j]
        m = y[0]
        for j in range(1, k):
            if y[j] > m:
                m = y[j]
        s = 0
        for j in range(k):
            y[j] = _exp(y[j] - m)   # max shifted to 0: no overflow
            s += y[j]
        t = <floating>(1.0 / s)
        for j in range(k):
            y[j] = y[j] * t
        return
    # One simple loop per case, so each compiles to straight-line vector code:
    # a per-element choice of activation (or a data-dependent branch for ReLU's
    # sign, random in practice) cost more than the arithmetic.
    if b != NULL:
        for j in range(k):
            y[j] = z[j] + b[j]
        z = y
    if act == ACT_RELU:
        for j in range(k):
            t = z[j]
            y[j] = 0 if t < 0 else t   # NaN passes through, as np.maximum does
    elif act == ACT_SIGMOID:
        for j in range(k):
            y[j] = _sigmoid(z[j])
    elif act == ACT_TANH:
        for j in range(k):
            y[j] = _tanh(z[j])
    elif <const floating*>y != z:
        for j in range(k):
            y[j] = z[j]


cdef inline void _act_rows(const floating* Z,  # (n, k) IN, may alias Y
                           const floating* b,  # (k,) IN or NULL
                           floating* Y,        # (n, k) OUT
                           Py_ssize_t n, Py_ssize_t k, int act) noexcept nogil:
    cdef Py_ssize_t i
    if act == ACT_LINEAR and b == NULL and <const floating*>Y == Z:
        return
    cdef int nc = _chunks(n * k), c
    if nc == 1:
        for i in range(n):
            _act_row(Z + i * k, b, Y + i * k, k, act)
        return
    for c in prange(nc, num_threads=nc, schedule='static'):
        for i in range(n * c // nc, n * (c + 1) // nc):
            _act_row(Z + i * k, b, Y + i * k, k, act)


cdef inline void _act_grad_row(const floating* y,   # (k,) IN (the forward output)
                               const floating* dy,  # (k,) IN, may alias dz
                               floating* dz,        # (k,) OUT
                               Py_ssize_t k, int act) noexcept nogil:
    """dz = dy * act'(.) expressed through y; dy[j] is read before dz[j] is written."""
    cdef Py_ssize_t j
    cdef double s
    cdef floating t
    if act == ACT_SOFTMAX:
        # The softmax Jacobian is diag(y) - y y^T, so dz = y * (dy - <dy, y>).
        s = 0
        for j in range(k):
            s += dy[j] * y[j]
        t = <floating>s
        for j in range(k):
            dz[j] = y[j] * (dy[j] - t)
    elif act == ACT_RELU:
        for j in range(k):
            dz[j] = dy[j] if y[j] > 0 else 0
    elif act == ACT_SIGMOID:
        for j in range(k):
            dz[j] = dy[j] * y[j] * (1 - y[j])
    elif act == ACT_TANH:
        for j in range(k):
            dz[j] = dy[j] * (1 - y[j] * y[j])
    elif dz != dy:
        memcpy(dz, dy, k * sizeof(floating))


cdef inline void _act_grad_rows(const floating* Y, const floating* dY, floating* dZ,
                                Py_ssize_t n, Py_ssize_t k, int act) noexcept nogil:
    cdef Py_ssize_t i
    if act == ACT_LINEAR:
        if <const floating*>dZ != dY and n * k > 0:
            memcpy(dZ, dY, n * k * sizeof(floating))
        return
    cdef int nc = _chunks(n * k), c
    if nc == 1:
        for i in range(n):
            _act_grad_row(Y + i * k, dY + i * k, dZ + i * k, k, act)
        return
    for c in prange(nc, num_threads=nc, schedule='static'):
        for i in range(n * c // nc, n * (c + 1) // nc):
            _act_grad_row(Y + i * k, dY + i * k, dZ + i * k, k, act)
