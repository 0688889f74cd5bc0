# Header-only per-element and per-row loss helpers, shared by losses.pyx (the
# standalone loss kernels) and executor.pyx (the compiled step), so both compute
# bit-identical losses and gradients.  `cdef inline` only: see _blas.pxd.
from cython cimport floating
from libc.math cimport exp, fabs, log, log1p
from libc.stdint cimport int64_t

from cython.parallel cimport prange

from _common cimport _chunks, _exp


cdef inline double _bce_logits(floating z, floating y, floating inv, floating* g) noexcept nogil:
    # max(z, 0) - z y + log(1 + exp(-|z|)) never overflows and keeps precision
    # for large |z|; its derivative is sigmoid(z) - y.
    cdef double e = exp(-fabs(<double>z))
    if g != NULL:
        g[0] = <floating>(((1.0 / (1.0 + e) if z >= 0 else e / (1.0 + e)) - y) * inv)
    return (z if z > 0 else 0) - <double>z * y + log1p(e)


cdef inline double _bce_probs(floating p, floating y, floating lo, floating hi,
                              floating inv, floating* g) noexcept nogil:
    cdef floating c = p
    if c < lo:
        c = lo
    elif c > hi:
        c = hi
    if g != NULL:
        g[0] = ((1 - y) / (1 - c) - y / c) * inv if lo <= p <= hi else 0
    return -(y * log(<double>c) + (1 - <double>y) * log(1 - <double>c))


cdef inline double _ce_logits_row(const floating* z,  # (k,) IN
                                  const floating* y,  # (k,) IN, or NULL: one-hot `label`
                                  int64_t label,
                                  floating* g,        # (k,) OUT or NULL
                                  Py_ssize_t k, double inv_n) noexcept nogil:
    """sum_j y_j (logsumexp(z) - z_j); gradient softmax(z) sum(y) - y, over n."""
    cdef Py_ssize_t j
    cdef floating m = z[0]
    cdef double s = 0, lse, ysum = 0, yz = 0, yj
    for j in range(1, k):
        if z[j] > m:
            m = z[j]
    for j in range(k):
        s += _exp(z[j] - m)
    lse = m + log(s)
    if y == NULL:
        ysum = 1
        yz = z[label]
    else:
        for j in range(k):
            ysum += y[j]
            yz += <double>y[j] * z[j]
    if g != NULL:
        for j in range(k):
            yj = (1.0 if j == label else 0.0) if y == NULL else y[j]
            g[j] = <floating>((_exp(z[j] - m) / s * ysum - yj) * inv_n)
    return lse * ysum - yz


cdef inline double _ce_probs_row(const floating* p,  # (k,) IN, probabilities
                                 const floating* y,  # (k,) IN, or NULL: one-hot `label`
                                 int64_t label,
                                 floating* g,        # (k,) OUT or NULL
                                 Py_ssize_t k, floating lo, floating hi,
                                 double inv_n) noexcept nogil:
    """Keras: q = p / sum(p), r = clip(q), loss = -sum y log r.

    With g_j = dloss/dq_j (zero where the clip is active), the gradient through
    the normalisation is dloss/dp_l = (g_l - sum_j g_j q_j) / sum(p).
    """
    cdef Py_ssize_t j
    cdef double acc = 0, loss = 0, gq = 0, gj
    cdef floating s, q, r, yj
    for j in range(k):
        acc += p[j]
    s = <floating>acc
    for j in range(k):
        yj = (1 if j == label else 0) if y == NULL else y[j]
        q = p[j] / s
        r = lo if q < lo else (hi if q > hi else q)
        if yj != 0:
            loss -= yj * log(<double>r)
        if g != NULL:
            gj = -yj / r if lo <= q <= hi else 0
            gq += gj * q
            g[j] = <floating>gj
    if g != NULL:
        for j in range(k):
            g[j] = <floating>((g[j] - gq) / s * inv_n)
    return loss


cdef inline double _dist_range(const floating* p, const floating* t, floating* g,
                               Py_ssize_t lo, Py_ssize_t hi, floating scale,
                               bint absolute) noexcept nogil:
    # One loop per case, so neither carries a per-element branch on `absolute`.
    cdef Py_ssize_t i
    cdef floating d
    cdef double total = 0
    if absolute:
        for i in range(lo, hi):
            d = p[i] - t[i]
            total += fabs(d)
            if g != NULL:
                g[i] = scale if d > 0 else (-scale if d < 0 else 0)
    else:
        for i in range(lo, hi):
            d = p[i] - t[i]
            total += <double>d * d
            if g != NULL:
                g[i] = d * scale
    return total


cdef inline double _dist_sum(const floating* p, const floating* t, floating* g,
                             Py_ssize_t size, bint absolute) noexcept nogil:
    """sum(|p - t|) or sum((p - t)**2), with the gradient of its mean into g (or NULL)."""
    cdef floating scale = <floating>((1.0 if absolute else 2.0) / size)
    cdef double total = 0
    cdef int nc = _chunks(size), c
    if nc == 1:
        return _dist_range(p, t, g, 0, size, scale, absolute)
    for c in prange(nc, num_threads=nc, schedule='static'):
        total += _dist_range(p, t, g, size * c // nc, size * (c + 1) // nc, scale, absolute)
    return total


cdef inline double _mse_sum(const floating* p, const floating* t, floating* g,
                            Py_ssize_t size) noexcept nogil:
    """sum((p - t)**2); g = 2 (p - t) / size when g is not NULL."""
    return _dist_sum(p, t, g, size, False)


cdef inline double _mae_sum(const floating* p, const floating* t, floating* g,
                            Py_ssize_t size) noexcept nogil:
    """sum(|p - t|); g = sign(p - t) / size when g is not NULL."""
    return _dist_sum(p, t, g, size, True)
