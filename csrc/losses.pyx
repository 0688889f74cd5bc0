# Design
# ------
# Loss kernels: each returns the loss (mean over the batch, as Keras reduces it)
# and, in the same pass, writes the gradient of that mean w.r.t. the prediction
# into G when G is not None.  Fusing the two halves the memory traffic of the
# loss step, and for softmax cross-entropy from logits it avoids both forming the
# softmax and the log of a rounded probability.
#
# Sums accumulate in double (per element, or per row for the cross-entropies), so
# float32 losses are as accurate as a float64 reference; gradients are written in
# the input dtype.  Large inputs are split over OpenMP threads with a `+=`
# reduction (static schedule, so a given thread count gives the same result
# every time).  An empty batch returns NaN, like NumPy's mean of nothing.
#
# Probabilities are clipped to [1e-7, 1 - 1e-7] as Keras does, in the input
# dtype, and the clip passes no gradient outside that range.
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport NAN
from libc.stdint cimport int64_t

from _common cimport PARALLEL_MIN_ELEMENTS, _cp2, _p2
# The per-element and per-row arithmetic lives in _loss.pxd, shared with the
# compiled step (executor.pyx), so both give bit-identical losses.
from _loss cimport _bce_logits, _bce_probs, _ce_logits_row, _ce_probs_row, _dist_sum
from _team cimport team

include "_team.pxi"  # binds this module to the process-wide team (csrc/_team.pxd)

# Keras's backend.epsilon(), the clip for probabilities.
from _codes cimport epsilon

cdef double _EPSILON = epsilon()
EPSILON = _EPSILON


cdef inline int _check_same(str fn, str what, Py_ssize_t* shape, Py_ssize_t n,
                            Py_ssize_t k) except -1:
    if shape[0] != n or shape[1] != k:
        raise ValueError(f"{fn}: {what} does not match y_pred")
    return 0


cdef double _distance_loss(str fn, const floating[:, ::1] Yp, const floating[:, ::1] Yt,
                           floating[:, ::1] G, bint absolute) except? -1:
    cdef Py_ssize_t n = Yp.shape[0], k = Yp.shape[1], size = n * k
    cdef floating* g = NULL
    cdef double total = 0
    _check_same(fn, "y_true", Yt.shape, n, k)
    if G is not None:
        _check_same(fn, "G", G.shape, n, k)
        g = _p2(G)
    if size == 0:
        return NAN
    with nogil:
        total = _dist_sum(_cp2(Yp), _cp2(Yt), g, size, absolute)
    return total / size


def mse(const floating[:, ::1] Yp,  # (n, k) IN
        const floating[:, ::1] Yt,  # (n, k) IN
        floating[:, ::1] G):        # (n, k) OUT or None
    """mean((Yp - Yt)**2); G = 2 (Yp - Yt) / (n k)."""
    return _distance_loss("mse", Yp, Yt, G, False)


def mae(const floating[:, ::1] Yp,  # (n, k) IN
        const floating[:, ::1] Yt,  # (n, k) IN
        floating[:, ::1] G):        # (n, k) OUT or None
    """mean(|Yp - Yt|); G = sign(Yp - Yt) / (n k), 0 where they are equal."""
    return _distance_loss("mae", Yp, Yt, G, True)


def binary_crossentropy(const floating[:, ::1] P,   # (n, k) IN, probabilities or logits
                        const floating[:, ::1] Yt,  # (n, k) IN, targets in [0, 1]
                        floating[:, ::1] G,         # (n, k) OUT or None
                        bint from_logits):
    """Mean binary cross-entropy over all elements (Keras)."""
    cdef Py_ssize_t n = P.shape[0], k = P.shape[1], size = n * k, i
    cdef const floating* p = _cp2(P)
    cdef const floating* t = _cp2(Yt)
    cdef floating* g = NULL
    cdef floating inv, lo = <floating>_EPSILON, hi = 1 - <floating>_EPSILON
    cdef double total = 0
    _check_same("binary_crossentropy", "y_true", Yt.shape, n, k)
    if G is not None:
        _check_same("binary_crossentropy", "G", G.shape, n, k)
    if size == 0:
        return NAN
    if G is not None:
        g = _p2(G)
    inv = <floating>(1.0 / size)
    with nogil:
        if from_logits:
            for i in prange(size, schedule='static', num_threads=team(),
                            use_threads_if=size >= PARALLEL_MIN_ELEMENTS):
                total += _bce_logits(p[i], t[i], inv, g + i if g != NULL else NULL)
        else:
            for i in prange(size, schedule='static', num_threads=team(),
                            use_threads_if=size >= PARALLEL_MIN_ELEMENTS):
                total += _bce_probs(p[i], t[i], lo, hi, inv, g + i if g != NULL else NULL)
    return total / size


cdef inline int _check_classes(str fn, Py_ssize_t n, Py_ssize_t k) except -1:
    if n > 0 and k == 0:
        raise ValueError(f"{fn}: y_pred has no classes")
    return 0


def softmax_crossentropy_sparse(const floating[:, ::1] Z,      # (n, k) IN, logits or probabilities
                                const int64_t[::1] labels,     # (n,) IN, in [0, k)
                                floating[:, ::1] G,            # (n, k) OUT or None
                                bint from_logits):
    """Mean over rows of -log softmax(Z)[label] (or of the clipped probability)."""
    cdef Py_ssize_t n = Z.shape[0], k = Z.shape[1], i
    cdef const floating* z = _cp2(Z)
    cdef const int64_t* lab = &labels[0] if labels.shape[0] > 0 else NULL
    cdef floating* g = NULL
    cdef floating lo = <floating>_EPSILON, hi = 1 - <floating>_EPSILON
    cdef double total = 0, inv_n
    cdef bint bad = False
    _check_classes("softmax_crossentropy_sparse", n, k)
    if G is not None:
        _check_same("softmax_crossentropy_sparse", "G", G.shape, n, k)
    if labels.shape[0] != n:
        raise ValueError("softmax_crossentropy_sparse: labels do not match y_pred rows")
    if n == 0:
        return NAN
    if G is not None:
        g = _p2(G)
    inv_n = 1.0 / n
    with nogil:
        # Checked here too because an out-of-range label would read outside Z.
        for i in range(n):
            if lab[i] < 0 or lab[i] >= k:
                bad = True
        if not bad:
            if from_logits:
                for i in prange(n, schedule='static', num_threads=team(),
                                use_threads_if=n * k >= PARALLEL_MIN_ELEMENTS):
                    total += _ce_logits_row(z + i * k, NULL, lab[i],
                                            g + i * k if g != NULL else NULL, k, inv_n)
            else:
                for i in prange(n, schedule='static', num_threads=team(),
                                use_threads_if=n * k >= PARALLEL_MIN_ELEMENTS):
                    total += _ce_probs_row(z + i * k, NULL, lab[i],
                                           g + i * k if g != NULL else NULL, k, lo, hi, inv_n)
    if bad:
        raise ValueError(f"softmax_crossentropy_sparse: labels must be in [0, {k})")
    return total * inv_n


def softmax_crossentropy(const floating[:, ::1] Z,   # (n, k) IN, logits or probabilities
                         const floating[:, ::1] Yt,  # (n, k) IN, target distributions
                         floating[:, ::1] G,         # (n, k) OUT or None
                         bint from_logits):
    """Mean over rows of -sum_j y_j log softmax(Z)_j (or of the clipped probabilities)."""
    cdef Py_ssize_t n = Z.shape[0], k = Z.shape[1], i
    cdef const floating* z = _cp2(Z)
    cdef const floating* t = _cp2(Yt)
    cdef floating* g = NULL
    cdef floating lo = <floating>_EPSILON, hi = 1 - <floating>_EPSILON
    cdef double total = 0, inv_n
    _check_classes("softmax_crossentropy", n, k)
    if G is not None:
        _check_same("softmax_crossentropy", "G", G.shape, n, k)
    _check_same("softmax_crossentropy", "y_true", Yt.shape, n, k)
    if n == 0:
        return NAN
    if G is not None:
        g = _p2(G)
    inv_n = 1.0 / n
    with nogil:
        if from_logits:
            for i in prange(n, schedule='static', num_threads=team(),
                            use_threads_if=n * k >= PARALLEL_MIN_ELEMENTS):
                total += _ce_logits_row(z + i * k, t + i * k, -1,
                                        g + i * k if g != NULL else NULL, k, inv_n)
        else:
            for i in prange(n, schedule='static', num_threads=team(),
                            use_threads_if=n * k >= PARALLEL_MIN_ELEMENTS):
                total += _ce_probs_row(z + i * k, t + i * k, -1,
                                       g + i * k if g != NULL else NULL, k, lo, hi, inv_n)
    return total * inv_n
