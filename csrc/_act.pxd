# Header-only activation code, shared by dense.pyx (fused after the GEMM) and
# activations.pyx (standalone).  Row-wise because softmax needs a whole row.
from cython cimport floating
from cython.parallel cimport prange
from libc.string cimport memcpy

from libc.math cimport NAN, erf, erff, expm1, expm1f, fabs, fabsf, log1p, log1pf

from _common cimport _chunks, _exp, _log, _tanh


# Activation codes; the modules re-export them as LINEAR, RELU, ... .
cdef enum:
    ACT_LINEAR = 0
    ACT_RELU = 1
    ACT_SIGMOID = 2
    ACT_TANH = 3
    ACT_SOFTMAX = 4
    # Appended codes; 0-4 are fixed (the fused plan and saved models use them).
    ACT_GELU = 5          # exact erf form (Keras approximate=False); grad needs Z
    ACT_LEAKY_RELU = 6    # negative_slope 0.2 (keras.activations.leaky_relu)
    ACT_ELU = 7           # alpha 1
    ACT_SELU = 8
    ACT_SILU = 9          # swish; grad needs Z
    ACT_SOFTPLUS = 10
    ACT_SOFTSIGN = 11
    ACT_HARD_SIGMOID = 12  # relu6(x + 3) / 6 (Keras 3)
    ACT_RELU6 = 13
    ACT_EXPONENTIAL = 14
    ACT_MISH = 15         # grad needs Z
    ACT_LOG_SOFTMAX = 16  # row-wise, like softmax
    ACT_COUNT = 17


cdef extern from *:
    # Fixed constants of the parametrised activations, as Keras fixes them for
    # the string names.
    """
    #define FL_LEAKY_SLOPE 0.2
    #define FL_SELU_ALPHA 1.6732632423543772848170429916717
    #define FL_SELU_SCALE 1.0507009873554804934193349852946
    #define FL_INV_SQRT2 0.70710678118654752440084436210485
    #define FL_INV_SQRT2PI 0.39894228040143267793994605993438
    """
    double FL_LEAKY_SLOPE
    double FL_SELU_ALPHA
    double FL_SELU_SCALE
    double FL_INV_SQRT2
    double FL_INV_SQRT2PI


cdef inline bint _act_needs_input(int act) noexcept nogil:
    """Whether act's derivative needs the pre-activation Z (the output does not
    determine it: these three are not monotonic)."""
    return act == ACT_GELU or act == ACT_SILU or act == ACT_MISH


cdef inline floating _erf(floating x) noexcept nogil:
    if floating is float:
        return erff(x)
    else:
        return erf(x)


cdef inline floating _expm1(floating x) noexcept nogil:
    if floating is float:
        return expm1f(x)
    else:
        return expm1(x)


cdef inline floating _log1p(floating x) noexcept nogil:
    if floating is float:
        return log1pf(x)
    else:
        return log1p(x)


cdef inline floating _abs(floating x) noexcept nogil:
    if floating is float:
        return fabsf(x)
    else:
        return fabs(x)


cdef inline floating _softplus(floating z) noexcept nogil:
    # log(1 + e^z) = max(z, 0) + log1p(e^-|z|): no overflow, exact for large |z|.
    return (z if z > 0 else 0) + _log1p(_exp(-_abs(z)))


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
    if act == ACT_SOFTMAX or act == ACT_LOG_SOFTMAX:
        if k == 0:
            return
        for j in range(k):
            y[j] = z[j] + b[j] if b != NULL else z[j]
        m = y[0]
        for j in range(1, k):
            if y[j] > m:
                m = y[j]
        s = 0
        if act == ACT_LOG_SOFTMAX:
            for j in range(k):
                s += _exp(y[j] - m)
            t = <floating>(m + _log(<floating>s))
            for j in range(k):
                y[j] = y[j] - t
            return
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
    elif act == ACT_GELU:
        for j in range(k):
            t = z[j]
            y[j] = <floating>0.5 * t * (1 + _erf(t * <floating>FL_INV_SQRT2))
    elif act == ACT_LEAKY_RELU:
        for j in range(k):
            t = z[j]
            y[j] = t * <floating>FL_LEAKY_SLOPE if t < 0 else t
    elif act == ACT_ELU:
        for j in range(k):
            t = z[j]
            y[j] = t if t > 0 else _expm1(t)
    elif act == ACT_SELU:
        for j in range(k):
            t = z[j]
            y[j] = <floating>FL_SELU_SCALE * (
                t if t > 0 else <floating>FL_SELU_ALPHA * _expm1(t))
    elif act == ACT_SILU:
        for j in range(k):
            t = z[j]
            y[j] = t * _sigmoid(t)
    elif act == ACT_SOFTPLUS:
        for j in range(k):
            y[j] = _softplus(z[j])
    elif act == ACT_SOFTSIGN:
        for j in range(k):
            t = z[j]
            y[j] = t / (1 + _abs(t))
    elif act == ACT_HARD_SIGMOID:
        for j in range(k):
            t = z[j] * <floating>(1.0 / 6.0) + <floating>0.5
            y[j] = 0 if t < 0 else (1 if t > 1 else t)
    elif act == ACT_RELU6:
        for j in range(k):
            t = z[j]
            y[j] = 0 if t < 0 else (6 if t > 6 else t)
    elif act == ACT_EXPONENTIAL:
        for j in range(k):
            y[j] = _exp(z[j])
    elif act == ACT_MISH:
        for j in range(k):
            t = z[j]
            y[j] = t * _tanh(_softplus(t))
    elif <const floating*>y != z:
        for j in range(k):
            y[j] = z[j]


cdef inline void _act_rows_serial(const floating* Z,  # (n, k) IN, may alias Y
                                  const floating* b,  # (k,) IN or NULL
                                  floating* Y,        # (n, k) OUT
                                  Py_ssize_t n, Py_ssize_t k, int act) noexcept nogil:
    """Y = act(Z + b) row by row on the calling thread.  relu and linear are one 2-D
    loop (a call per row of 16-64 channels, a convolution's rows, cost more than the
    work); the other codes one _act_row call per row, with the same values."""
    cdef Py_ssize_t i, j
    cdef floating t
    cdef const floating* z
    cdef floating* y
    if act == ACT_RELU:
        for i in range(n):
            z, y = Z + i * k, Y + i * k
            if b != NULL:
                for j in range(k):
                    t = z[j] + b[j]
                    y[j] = 0 if t < 0 else t   # as _act_row: NaN passes through
            else:
                for j in range(k):
                    t = z[j]
                    y[j] = 0 if t < 0 else t
    elif act == ACT_LINEAR:
        for i in range(n):
            z, y = Z + i * k, Y + i * k
            if b != NULL:
                for j in range(k):
                    y[j] = z[j] + b[j]
            elif <const floating*>y != z:
                for j in range(k):
                    y[j] = z[j]
    else:
        for i in range(n):
            _act_row(Z + i * k, b, Y + i * k, k, act)


cdef inline void _act_rows(const floating* Z,  # (n, k) IN, may alias Y
                           const floating* b,  # (k,) IN or NULL
                           floating* Y,        # (n, k) OUT
                           Py_ssize_t n, Py_ssize_t k, int act) noexcept nogil:
    """_act_rows_serial in parallel pieces of rows when the work is large."""
    cdef Py_ssize_t lo
    if act == ACT_LINEAR and b == NULL and <const floating*>Y == Z:
        return
    cdef int nc = _chunks(n * k), c
    if nc == 1:
        _act_rows_serial(Z, b, Y, n, k, act)
        return
    for c in prange(nc, num_threads=nc, schedule='static'):
        lo = n * c // nc
        _act_rows_serial(Z + lo * k, b, Y + lo * k, n * (c + 1) // nc - lo, k, act)


cdef inline void _act_grad_row(const floating* y,   # (k,) IN (the forward output)
                               const floating* dy,  # (k,) IN, may alias dz
                               floating* dz,        # (k,) OUT
                               Py_ssize_t k, int act) noexcept nogil:
    """dz = dy * act'(.) expressed through y; dy[j] is read before dz[j] is written.

    Not for the codes where _act_needs_input(act): use _act_grad_row_z.
    """
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
    elif act == ACT_LOG_SOFTMAX:
        # d log_softmax = I - 1 softmax^T, softmax = exp(y): dz = dy - exp(y) sum(dy).
        s = 0
        for j in range(k):
            s += dy[j]
        t = <floating>s
        for j in range(k):
            dz[j] = dy[j] - _exp(y[j]) * t
    elif act == ACT_RELU:
        # Both loaded first: a select of registers, which vectorizes (no branch on the
        # sign, mispredicted half the time).
        for j in range(k):
            t = dy[j]
            dz[j] = t if y[j] > 0 else 0
    elif act == ACT_SIGMOID:
        for j in range(k):
            dz[j] = dy[j] * y[j] * (1 - y[j])
    elif act == ACT_TANH:
        for j in range(k):
            dz[j] = dy[j] * (1 - y[j] * y[j])
    elif act == ACT_LEAKY_RELU:
        for j in range(k):
            dz[j] = dy[j] if y[j] > 0 else dy[j] * <floating>FL_LEAKY_SLOPE
    elif act == ACT_ELU:
        # y = e^z - 1 below zero, so e^z = y + 1.
        for j in range(k):
            dz[j] = dy[j] if y[j] > 0 else dy[j] * (y[j] + 1)
    elif act == ACT_SELU:
        for j in range(k):
            dz[j] = dy[j] * <floating>FL_SELU_SCALE if y[j] > 0 else \
                dy[j] * (y[j] + <floating>(FL_SELU_SCALE * FL_SELU_ALPHA))
    elif act == ACT_SOFTPLUS:
        # sigmoid(z) = 1 - e^-y.
        for j in range(k):
            dz[j] = -dy[j] * _expm1(-y[j])
    elif act == ACT_SOFTSIGN:
        # 1 / (1 + |z|)^2 = (1 - |y|)^2.
        for j in range(k):
            t = 1 - _abs(y[j])
            dz[j] = dy[j] * t * t
    elif act == ACT_HARD_SIGMOID:
        for j in range(k):
            dz[j] = dy[j] * <floating>(1.0 / 6.0) if 0 < y[j] < 1 else 0
    elif act == ACT_RELU6:
        for j in range(k):
            dz[j] = dy[j] if 0 < y[j] < 6 else 0
    elif act == ACT_EXPONENTIAL:
        for j in range(k):
            dz[j] = dy[j] * y[j]
    elif _act_needs_input(act):
        # The output does not determine these derivatives: a caller that forgot
        # Z gets NaN, never a silently wrong gradient.
        for j in range(k):
            dz[j] = <floating>NAN
    elif dz != dy:
        memcpy(dz, dy, k * sizeof(floating))


cdef inline void _act_grad_row_z(const floating* z,   # (k,) IN, pre-activation (with bias)
                                 const floating* y,   # (k,) IN, forward output
                                 const floating* dy,  # (k,) IN, may alias dz
                                 floating* dz,        # (k,) OUT
                                 Py_ssize_t k, int act) noexcept nogil:
    """dz = dy * act'(z) for every code: through z where it must, else through y."""
    cdef Py_ssize_t j
    cdef floating t, s, th
    if act == ACT_GELU:
        for j in range(k):
            t = z[j]
            dz[j] = dy[j] * (<floating>0.5 * (1 + _erf(t * <floating>FL_INV_SQRT2))
                             + t * <floating>FL_INV_SQRT2PI * _exp(<floating>-0.5 * t * t))
    elif act == ACT_SILU:
        for j in range(k):
            t = z[j]
            s = _sigmoid(t)
            dz[j] = dy[j] * s * (1 + t * (1 - s))
    elif act == ACT_MISH:
        for j in range(k):
            t = z[j]
            th = _tanh(_softplus(t))
            dz[j] = dy[j] * (th + t * _sigmoid(t) * (1 - th * th))
    else:
        _act_grad_row(y, dy, dz, k, act)


cdef inline void _act_grad_rows_serial(const floating* Z, const floating* Y,
                                       const floating* dY, floating* dZ, Py_ssize_t n,
                                       Py_ssize_t k, int act) noexcept nogil:
    """_act_grad_rows_z on the calling thread (a piece of a parallel loop's work)."""
    cdef Py_ssize_t i
    if act == ACT_LINEAR:
        if <const floating*>dZ != dY and n * k > 0:
            memcpy(dZ, dY, n * k * sizeof(floating))
    elif act == ACT_SOFTMAX or act == ACT_LOG_SOFTMAX:
        for i in range(n):
            _act_grad_row(Y + i * k, dY + i * k, dZ + i * k, k, act)
    else:
        _act_grad_row_z(Z, Y, dY, dZ, n * k, act)


cdef inline void _act_grad_rows_z(const floating* Z, const floating* Y, const floating* dY,
                                  floating* dZ, Py_ssize_t n, Py_ssize_t k,
                                  int act) noexcept nogil:
    """dZ = dY * act' over (n, k) rows for every code; Z (the pre-activation) is read
    only when _act_needs_input(act), and may be NULL otherwise.

    Elementwise codes run over the rows as one array, in parallel pieces (a call per
    row of a convolution's 16-64 channels cost more than the loop); softmax and
    log_softmax row by row.
    """
    cdef Py_ssize_t i, total = n * k, lo, hi
    cdef int nc, c
    if act == ACT_LINEAR:
        if <const floating*>dZ != dY and total > 0:
            memcpy(dZ, dY, total * sizeof(floating))
        return
    nc = _chunks(total)
    if nc == 1:
        _act_grad_rows_serial(Z, Y, dY, dZ, n, k, act)
        return
    if act == ACT_SOFTMAX or act == ACT_LOG_SOFTMAX:
        for c in prange(nc, num_threads=nc, schedule='static'):
            for i in range(n * c // nc, n * (c + 1) // nc):
                _act_grad_row(Y + i * k, dY + i * k, dZ + i * k, k, act)
        return
    for c in prange(nc, num_threads=nc, schedule='static'):
        lo = total * c // nc
        hi = total * (c + 1) // nc
        _act_grad_row_z(Z + lo if Z != NULL else NULL, Y + lo if Y != NULL else NULL,
                        dY + lo, dZ + lo, hi - lo, act)


cdef inline void _act_grad_rows(const floating* Y, const floating* dY, floating* dZ,
                                Py_ssize_t n, Py_ssize_t k, int act) noexcept nogil:
    """_act_grad_rows_z for the codes whose derivative the output determines."""
    _act_grad_rows_z(NULL, Y, dY, dZ, n, k, act)
