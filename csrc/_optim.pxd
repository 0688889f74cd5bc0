# Header-only optimizer updates (`cdef inline` only: see _blas.pxd).
#
# update_one() is the one per-weight update of every optimizer: the engine's
# compiled step and optim.pyx (the eager path) both call it, with the per-step
# scalars Python computed once in Optimizer.begin_step() (fastlayers/_codes.py
# documents the `hyper` layout per kind).  Per-element arithmetic runs in the
# weight's dtype with the scalars cast to it, as Keras does for float32 weights;
# the clipnorm norm is summed in double.
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport fabs, isfinite, sqrt

from _codes cimport (H_A, H_B, H_C, H_CLIPNORM, H_CLIPVALUE, H_D, H_E, H_F, H_GSCALE, H_LR,
                     H_WD, OPT_ADADELTA, OPT_ADAGRAD, OPT_ADAM, OPT_ADAMAX, OPT_AMSGRAD,
                     OPT_COUNT, OPT_MOMENTUM, OPT_NADAM, OPT_NESTEROV, OPT_RMSPROP,
                     OPT_RMSPROP_CENTERED, OPT_RMSPROP_CENTERED_MOMENTUM,
                     OPT_RMSPROP_MOMENTUM, OPT_SGD)
from _common cimport _chunks, _sqrt


cdef inline int n_slots(int kind) noexcept nogil:
    """How many state arrays update_one reads for `kind` (-1: unknown kind)."""
    if kind == OPT_SGD:
        return 0
    if kind == OPT_MOMENTUM or kind == OPT_NESTEROV or kind == OPT_RMSPROP or kind == OPT_ADAGRAD:
        return 1
    if kind == OPT_RMSPROP_CENTERED_MOMENTUM or kind == OPT_AMSGRAD:
        return 3
    if 0 <= kind < OPT_COUNT:
        return 2
    return -1


cdef inline double sq_norm(const floating* g, Py_ssize_t size) noexcept nogil:
    """Sum of squares of g, accumulated in double (for clipnorm and the global norm)."""
    cdef double acc = 0.0, x
    cdef Py_ssize_t i
    for i in range(size):
        x = g[i]
        acc += x * x
    return acc


cdef struct _Pre:
    # The gradient preprocessing of one step, decided once per weight.
    double scale        # global-norm factor times the clipnorm factor
    bint scaled         # scale != 1
    bint clip           # clipvalue set
    bint decay          # weight decay set
    double clipvalue
    double wd


cdef inline floating _grad(floating g, bint scaled, floating scale, bint clip,
                           floating cv) noexcept nogil:
    """g after global-norm scaling, clipnorm (both folded into scale) and clipvalue."""
    if scaled:
        g = g * scale
    if clip:
        if g > cv:
            g = cv
        elif g < -cv:
            g = -cv
    return g


cdef inline floating _decayed(floating w, bint decay, floating wd) noexcept nogil:
    """Keras's decoupled weight decay: w - w * (weight_decay * lr)."""
    if decay:
        return w - w * wd
    return w


cdef inline void _range(int kind, const double* h, const _Pre* p, floating* w,
                        const floating* g, floating* s0, floating* s1, floating* s2,
                        Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    # Everything the loops read is copied into locals first: a store to w[i] could
    # otherwise alias h or p, forcing a reload per element and no vectorization.
    cdef Py_ssize_t i
    cdef floating gi, wi, a, b, c, d, e, f, lr = <floating>h[H_LR]
    cdef floating x, y, denom
    cdef bint scaled = p.scaled, clip = p.clip, decay = p.decay
    cdef floating scale = <floating>p.scale, cv = <floating>p.clipvalue, wd = <floating>p.wd
    a = <floating>h[H_A]
    b = <floating>h[H_B]
    c = <floating>h[H_C]
    d = <floating>h[H_D]
    e = <floating>h[H_E]
    f = <floating>h[H_F]
    if not scaled and not clip:
        # The common cases as straight loops (same arithmetic as below, no per-element
        # branches) so that they vectorize, sqrt and division included.
        if decay:
            for i in range(lo, hi):
                w[i] = w[i] - w[i] * wd
        if kind == OPT_RMSPROP:
            for i in range(lo, hi):
                gi = g[i]
                s0[i] = a * s0[i] + b * (gi * gi)
                w[i] = w[i] - (lr * gi) / _sqrt(s0[i] + c)
            return
        if kind == OPT_ADAM:
            for i in range(lo, hi):
                gi = g[i]
                s0[i] = s0[i] + (gi - s0[i]) * b
                s1[i] = s1[i] + (gi * gi - s1[i]) * c
                w[i] = w[i] - (s0[i] * a) / (_sqrt(s1[i]) + d)
            return
        if decay:
            decay = False  # applied above
    if kind == OPT_SGD:
        for i in range(lo, hi):
            gi = _grad(g[i], scaled, scale, clip, cv)
            w[i] = _decayed(w[i], decay, wd) - gi * lr
    elif kind == OPT_MOMENTUM or kind == OPT_NESTEROV:
        # a = momentum.  Keras: m = m momentum - g lr; w += m (Nesterov: w += m momentum - g lr)
        for i in range(lo, hi):
            gi = _grad(g[i], scaled, scale, clip, cv)
            wi = _decayed(w[i], decay, wd)
            s0[i] = s0[i] * a - gi * lr
            if kind == OPT_NESTEROV:
                w[i] = wi + (s0[i] * a - gi * lr)
            else:
                w[i] = wi + s0[i]
    elif kind >= OPT_RMSPROP and kind <= OPT_RMSPROP_CENTERED_MOMENTUM:
        # a = rho, b = 1 - rho, c = epsilon, d = momentum.  s0 = velocity; s1 = momentum
        # (with momentum); the last slot = average gradient (centered).
        for i in range(lo, hi):
            gi = _grad(g[i], scaled, scale, clip, cv)
            wi = _decayed(w[i], decay, wd)
            s0[i] = a * s0[i] + b * (gi * gi)
            if kind == OPT_RMSPROP_CENTERED:
                s1[i] = a * s1[i] + b * gi
                denom = s0[i] - s1[i] * s1[i] + c
            elif kind == OPT_RMSPROP_CENTERED_MOMENTUM:
                s2[i] = a * s2[i] + b * gi
                denom = s0[i] - s2[i] * s2[i] + c
            else:
                denom = s0[i] + c
            x = (lr * gi) / _sqrt(denom)
            if kind == OPT_RMSPROP_MOMENTUM or kind == OPT_RMSPROP_CENTERED_MOMENTUM:
                s1[i] = d * s1[i] + x
                w[i] = wi - s1[i]
            else:
                w[i] = wi - x
    elif kind == OPT_ADAM or kind == OPT_AMSGRAD:
        # a = alpha (both bias corrections), b = 1 - beta_1, c = 1 - beta_2, d = epsilon.
        for i in range(lo, hi):
            gi = _grad(g[i], scaled, scale, clip, cv)
            wi = _decayed(w[i], decay, wd)
            s0[i] = s0[i] + (gi - s0[i]) * b
            s1[i] = s1[i] + (gi * gi - s1[i]) * c
            x = s1[i]
            if kind == OPT_AMSGRAD:
                if x > s2[i]:
                    s2[i] = x
                x = s2[i]
            w[i] = wi - (s0[i] * a) / (_sqrt(x) + d)
    elif kind == OPT_ADAGRAD:
        # a = epsilon.  Keras puts epsilon inside the square root.
        for i in range(lo, hi):
            gi = _grad(g[i], scaled, scale, clip, cv)
            wi = _decayed(w[i], decay, wd)
            s0[i] = s0[i] + gi * gi
            w[i] = wi - (lr * gi) / _sqrt(s0[i] + a)
    elif kind == OPT_ADADELTA:
        # a = rho, b = 1 - rho, c = epsilon; s0 = accumulated grad, s1 = accumulated delta.
        for i in range(lo, hi):
            gi = _grad(g[i], scaled, scale, clip, cv)
            wi = _decayed(w[i], decay, wd)
            s0[i] = a * s0[i] + b * (gi * gi)
            x = -((_sqrt(s1[i] + c) * gi) / _sqrt(s0[i] + c))
            s1[i] = a * s1[i] + b * (x * x)
            w[i] = wi + lr * x
    elif kind == OPT_ADAMAX:
        # a = lr / (1 - beta_1^t), b = 1 - beta_1, c = beta_2, d = epsilon; s1 = norm u.
        for i in range(lo, hi):
            gi = _grad(g[i], scaled, scale, clip, cv)
            wi = _decayed(w[i], decay, wd)
            s0[i] = s0[i] + (gi - s0[i]) * b
            x = c * s1[i]
            y = gi if gi >= 0 else -gi
            s1[i] = x if x > y else y
            w[i] = wi - (a * s0[i]) / (s1[i] + d)
    elif kind == OPT_NADAM:
        # a = c_m, b = c_g, c = c_v, d = 1 - beta_1, e = 1 - beta_2, f = epsilon.
        for i in range(lo, hi):
            gi = _grad(g[i], scaled, scale, clip, cv)
            wi = _decayed(w[i], decay, wd)
            s0[i] = s0[i] + (gi - s0[i]) * d
            s1[i] = s1[i] + (gi * gi - s1[i]) * e
            x = a * s0[i] + b * gi
            y = s1[i] * c
            w[i] = wi - (x * lr) / (_sqrt(y) + f)


cdef inline void update_one(int kind, const double* hyper, floating* w, floating* g,
                            floating* s0, floating* s1, floating* s2,
                            Py_ssize_t size) noexcept nogil:
    """One optimizer step on one weight of `size` elements, in place on w and its slots.

    Order (Keras 3): g * hyper[H_GSCALE], clipnorm (this weight's norm), clipvalue,
    decoupled weight decay, then the update of `kind`.  g is read only (the scaling
    is folded into the element loop), so it may also be a read-only buffer.  The
    slots the kind reads (n_slots(kind) of s0, s1, s2) must be non-NULL.  A weight of
    PARALLEL_MIN_ELEMENTS or more is split over its own OpenMP team (_chunks), so call
    it from serial code, not from inside a prange.
    """
    cdef _Pre p
    cdef double norm, cn = hyper[H_CLIPNORM]
    cdef int nc, c
    if size <= 0 or n_slots(kind) < 0:
        return
    p.scale = hyper[H_GSCALE]
    if isfinite(cn):
        # Keras: g * clipnorm / max(||g||, clipnorm), on the already scaled gradient.
        norm = sqrt(sq_norm(g, size)) * fabs(p.scale)
        if norm > cn:
            p.scale = p.scale * (cn / norm)
        elif norm != norm:
            p.scale = norm  # NaN gradient: Keras's clip propagates NaN
    p.scaled = p.scale != 1.0
    p.clipvalue = hyper[H_CLIPVALUE]
    p.clip = isfinite(p.clipvalue)
    p.wd = hyper[H_WD]
    p.decay = p.wd != 0.0
    nc = _chunks(size)
    if nc == 1:
        _range(kind, hyper, &p, w, g, s0, s1, s2, 0, size)
        return
    for c in prange(nc, num_threads=nc, schedule='static'):
        _range(kind, hyper, &p, w, g, s0, s1, s2, size * c // nc, size * (c + 1) // nc)
