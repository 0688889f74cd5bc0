"""Pure-NumPy twins of the compiled kernels in ``fastlayers._kernels``.

Every function here has the name and signature of a raw kernel and writes into
the same OUT buffers, so the kernel test-suite can run one test against both and
so this file reads as the specification of what each kernel computes.  Inputs
are assumed validated (2-D C-contiguous, one float dtype) as ``fastlayers.ops``
guarantees; hyperparameters are cast to the array dtype the way the kernels cast
them.  Reductions that feed statistics run in float64, as the kernels' do.
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "LINEAR", "RELU", "SIGMOID", "TANH", "SOFTMAX", "EPSILON",
    "dense_forward", "dense_backward",
    "activation_forward", "activation_backward",
    "dropout_uniform", "dropout_forward", "dropout_backward",
    "batchnorm_forward_train", "batchnorm_forward_infer", "batchnorm_update_moving",
    "batchnorm_backward_train", "batchnorm_backward_infer",
    "update_reference", "sq_norm",
    "mse", "mae", "binary_crossentropy", "softmax_crossentropy_sparse",
    "softmax_crossentropy",
    "conv2d_forward", "conv2d_backward", "depthwise_forward", "depthwise_backward",
    "max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward", "avg_pool2d_backward",
    "layernorm_forward", "layernorm_backward", "embedding_forward", "embedding_backward",
    "normal_fill", "uniform_fill",
    "relu_forward", "relu_backward", "elu_forward", "elu_backward", "prelu_forward",
    "prelu_backward",
    "pad2d_forward", "pad2d_backward", "upsample2d_forward", "upsample2d_backward",
    "embedding_rows", "groupnorm_forward", "groupnorm_backward", "prelu_backward_shared",
]

from ._act_codes import ENUM_NAMES as _CODES  # the one Python table of activation codes
from ._codes import EPSILON  # Keras's fuzz factor: the clip applied to probabilities

LINEAR, RELU, SIGMOID, TANH, SOFTMAX = (_CODES[n] for n in
                                        ("LINEAR", "RELU", "SIGMOID", "TANH", "SOFTMAX"))


# ---------------------------------------------------------------------------
# Activations

def _sigmoid(Z):
    # exp of a non-positive number only, so nothing overflows.
    e = np.exp(-np.abs(Z))
    return np.where(Z >= 0, 1 / (1 + e), e / (1 + e)).astype(Z.dtype, copy=False)


def _act(Z, act):
    if act == LINEAR:
        return Z
    if act == RELU:
        return np.maximum(Z, Z.dtype.type(0))
    if act == SIGMOID:
        return _sigmoid(Z)
    if act == TANH:
        return np.tanh(Z)
    if act == SOFTMAX:
        if Z.shape[-1] == 0:
            return Z
        e = np.exp(Z - Z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    return _act_more(Z, act)


def _act_grad(Y, dY, act, Z=None):
    if act == LINEAR:
        return dY
    if act == RELU:
        return np.where(Y > 0, dY, Y.dtype.type(0))
    if act == SIGMOID:
        return dY * Y * (1 - Y)
    if act == TANH:
        return dY * (1 - Y * Y)
    if act == SOFTMAX:
        return Y * (dY - (dY * Y).sum(axis=-1, keepdims=True))
    return _act_grad_more(Z, Y, dY, act)


def activation_forward(X, Y, act):
    """Y = act(X), softmax row-wise."""
    Y[...] = _act(X, act)


def activation_backward(Y, dY, dX, act, Z=None):
    """dX = dY * act'(.), written through the forward output Y (through the
    input Z for gelu, silu and mish)."""
    dX[...] = _act_grad(Y, dY, act, Z)


# ---------------------------------------------------------------------------
# Dense

def dense_forward(X, W, b, Y, activation, Z=None):
    """Y = act(X @ W + b); Z, if given, gets X @ W + b."""
    np.matmul(X, W, out=Y)
    if b is not None:
        Y += b
    if Z is not None:
        Z[...] = Y
    Y[...] = _act(Y, activation)


def dense_backward(X, W, Y, dY, dZ, dX, dW, db, activation, accumulate, Z=None):
    """dZ = dY * act'; dX = dZ @ W.T; dW (+)= X.T @ dZ; db (+)= dZ.sum(0)."""
    dZ[...] = _act_grad(Y, dY, activation, Z)
    if dX is not None:
        np.matmul(dZ, W.T, out=dX)
    if dW is not None:
        if accumulate:
            dW += X.T @ dZ
        else:
            np.matmul(X.T, dZ, out=dW)
    if db is not None:
        col = dZ.sum(axis=0, dtype=np.float64).astype(db.dtype)
        if accumulate:
            db += col
        else:
            db[...] = col


# ---------------------------------------------------------------------------
# Dropout: splitmix64 keyed by the seed, evaluated at (counter + i)

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def _mix64(z):
    """splitmix64's finalizer on a uint64 array (wraps modulo 2**64)."""
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def dropout_uniform(seed, counter, size):
    """Uniforms in [0, 1) for flat indices 0..size-1 of one dropout call.

    u_i = top 53 bits of mix64(mix64(seed) + (counter + i) * golden) / 2**53.
    Pure function of (seed, counter + i): reproducible, and any element can be
    computed independently (so the kernel splits the array over threads).
    """
    key = _mix64(np.array([seed], dtype=np.uint64))
    idx = np.arange(size, dtype=np.uint64) + np.uint64(counter)
    z = _mix64(key + idx * _GOLDEN)
    return (z >> np.uint64(11)).astype(np.float64) * 2.0 ** -53


def dropout_forward(X, Y, mask, rate, seed, counter):
    """mask = u >= rate; Y = X * mask / (1 - rate)."""
    u = dropout_uniform(seed, counter, X.size).reshape(X.shape)
    mask[...] = u >= rate
    scale = X.dtype.type(1.0 / (1.0 - rate))
    Y[...] = np.where(mask != 0, X * scale, X.dtype.type(0))


def dropout_backward(dY, mask, rate, dX):
    """dX = dY * mask / (1 - rate)."""
    scale = dY.dtype.type(1.0 / (1.0 - rate))
    dX[...] = np.where(mask != 0, dY * scale, dY.dtype.type(0))


# ---------------------------------------------------------------------------
# Batch normalization over the rows of X (n, c)

def _f64(a, default):
    return default if a is None else a.astype(np.float64)


def _bn_apply(X, gamma, beta, mean, inv_std, Y):
    # In float64 from float64 statistics, as the kernel does per element.
    scale = _f64(gamma, 1.0) * inv_std
    Y[...] = (X.astype(np.float64) - mean) * scale + _f64(beta, 0.0)


def batchnorm_forward_train(X, gamma, beta, eps, Y, mean, var, inv_std):
    """Batch statistics (biased variance), then Y = (X - mean) inv_std gamma + beta."""
    X64 = X.astype(np.float64)
    m = X64.mean(axis=0)
    v = ((X64 - m) ** 2).mean(axis=0)
    inv = 1.0 / np.sqrt(v + eps)
    mean[...] = m
    var[...] = v
    inv_std[...] = inv
    _bn_apply(X, gamma, beta, m, inv, Y)


def batchnorm_forward_infer(X, gamma, beta, moving_mean, moving_var, eps, Y):
    """Y = (X - moving_mean) / sqrt(moving_var + eps) * gamma + beta."""
    inv = 1.0 / np.sqrt(moving_var.astype(np.float64) + eps)
    _bn_apply(X, gamma, beta, moving_mean.astype(np.float64), inv, Y)


def batchnorm_update_moving(moving_mean, moving_var, mean, var, momentum):
    """moving = momentum * moving + (1 - momentum) * batch (Keras convention)."""
    dt = moving_mean.dtype.type
    mom, rest = dt(momentum), dt(1.0 - momentum)
    moving_mean[...] = mom * moving_mean + rest * mean
    moving_var[...] = mom * moving_var + rest * var


def _bn_param_grads(dY, xhat, dgamma, dbeta, accumulate):
    dbeta64 = dY.sum(axis=0, dtype=np.float64)
    dgamma64 = (dY.astype(np.float64) * xhat).sum(axis=0)
    for out, val in ((dgamma, dgamma64), (dbeta, dbeta64)):
        if out is not None:
            if accumulate:
                out += val.astype(out.dtype)
            else:
                out[...] = val
    return dgamma64, dbeta64


def batchnorm_backward_train(X, dY, gamma, mean, inv_std, dX, dgamma, dbeta, accumulate):
    """Backward through the batch statistics.

    With xhat = (X - mean) inv_std:  dbeta = sum dY,  dgamma = sum dY xhat,
    dX = gamma inv_std / n (n dY - dbeta - xhat dgamma).
    """
    n = X.shape[0]
    inv64 = inv_std.astype(np.float64)
    xhat = (X.astype(np.float64) - mean.astype(np.float64)) * inv64
    dgamma64, dbeta64 = _bn_param_grads(dY, xhat, dgamma, dbeta, accumulate)
    if dX is not None and n > 0:
        g = 1.0 if gamma is None else gamma.astype(np.float64)
        dX[...] = g * inv64 / n * (n * dY - dbeta64 - xhat * dgamma64)


def batchnorm_backward_infer(X, dY, gamma, moving_mean, moving_var, eps, dX, dgamma,
                             dbeta, accumulate):
    """Backward with the moving statistics held constant."""
    inv64 = 1.0 / np.sqrt(moving_var.astype(np.float64) + eps)
    xhat = (X.astype(np.float64) - moving_mean.astype(np.float64)) * inv64
    _bn_param_grads(dY, xhat, dgamma, dbeta, accumulate)
    if dX is not None:
        g = 1.0 if gamma is None else gamma.astype(np.float64)
        dX[...] = dY * (g * inv64)


# ---------------------------------------------------------------------------
# Losses: mean over the batch; G (if not None) gets d(mean loss)/d(y_pred)

def mse(Yp, Yt, G):
    if Yp.size == 0:
        return float("nan")
    d = Yp - Yt
    if G is not None:
        G[...] = d * Yp.dtype.type(2.0 / Yp.size)
    return float((d.astype(np.float64) ** 2).mean())


def mae(Yp, Yt, G):
    if Yp.size == 0:
        return float("nan")
    d = Yp - Yt
    if G is not None:
        G[...] = np.sign(d) * Yp.dtype.type(1.0 / Yp.size)
    return float(np.abs(d.astype(np.float64)).mean())


def binary_crossentropy(P, Yt, G, from_logits):
    if P.size == 0:
        return float("nan")
    dt = P.dtype.type
    if from_logits:
        z = P.astype(np.float64)
        y = Yt.astype(np.float64)
        loss = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
        if G is not None:
            G[...] = (_sigmoid(z) - y) / P.size
        return float(loss.mean())
    lo, hi = dt(EPSILON), dt(1) - dt(EPSILON)
    c = np.clip(P, lo, hi)
    if G is not None:
        inside = (P >= lo) & (P <= hi)
        G[...] = np.where(inside, ((1 - Yt) / (1 - c) - Yt / c) * dt(1.0 / P.size), dt(0))
    c64, y64 = c.astype(np.float64), Yt.astype(np.float64)
    return float((-(y64 * np.log(c64) + (1 - y64) * np.log(1 - c64))).mean())


def _ce_from_logits(Z, Y, G):
    z = Z.astype(np.float64)
    zmax = z.max(axis=1, keepdims=True)
    e = np.exp(z - zmax)
    s = e.sum(axis=1, keepdims=True)
    lse = zmax + np.log(s)
    ysum = Y.sum(axis=1, keepdims=True)
    if G is not None:
        G[...] = (e / s * ysum - Y) / Z.shape[0]
    return float((lse * ysum - (Y * z).sum(axis=1, keepdims=True)).mean())


def _ce_from_probs(P, Y, G):
    # Keras: normalise rows to sum 1, clip, -sum y log.  The clip passes no
    # gradient where it is active; the normalisation's Jacobian is (I - q 1^T)/s.
    dt = P.dtype.type
    lo, hi = dt(EPSILON), dt(1) - dt(EPSILON)
    s = P.sum(axis=1, keepdims=True, dtype=np.float64).astype(P.dtype)
    q = P / s
    r = np.clip(q, lo, hi)
    loss = -(Y * np.log(r.astype(np.float64))).sum(axis=1)
    if G is not None:
        g = np.where((q >= lo) & (q <= hi), -Y / r, 0.0)
        gq = (g * q).sum(axis=1, keepdims=True)
        G[...] = (g - gq) / s / P.shape[0]
    return float(loss.mean())


def softmax_crossentropy(Z, Yt, G, from_logits):
    if Z.shape[0] == 0:
        return float("nan")
    Y = Yt.astype(np.float64)
    return _ce_from_logits(Z, Y, G) if from_logits else _ce_from_probs(Z, Y, G)


def softmax_crossentropy_sparse(Z, labels, G, from_logits):
    n, k = Z.shape
    if np.any((labels < 0) | (labels >= k)):
        raise ValueError(f"softmax_crossentropy_sparse: labels must be in [0, {k})")
    if n == 0:
        return float("nan")
    Y = np.zeros((n, k))
    Y[np.arange(n), labels] = 1.0
    return _ce_from_logits(Z, Y, G) if from_logits else _ce_from_probs(Z, Y, G)


# ---------------------------------------------------------------------------
# Optimizers: the twin of update_one() in csrc/_optim.pxd (codes and the hyper
# layout: fastlayers/_codes.py).  The arithmetic runs in float64 and the results are
# stored back into the arrays' own dtype, once per step, as the kernel stores them.

def sq_norm(g):
    """Sum of squares in float64."""
    g = np.asarray(g, dtype=np.float64)
    return float(np.sum(g * g))


def update_reference(kind, hyper, w, g, slots):
    """One step of optimizer ``kind`` on weight ``w`` and its ``slots`` (in place);
    ``g`` is only read.  Order: global-norm scale, clipnorm, clipvalue, weight decay,
    then the update."""
    from . import _codes as C

    h = [float(x) for x in hyper]
    g = np.asarray(g, dtype=np.float64).copy()
    s = [np.asarray(x, dtype=np.float64).copy() for x in slots]
    x = w.astype(np.float64)
    lr, a, b, c, d, e, f = h[C.H_LR], h[C.H_A], h[C.H_B], h[C.H_C], h[C.H_D], h[C.H_E], h[C.H_F]
    scale = h[C.H_GSCALE]
    if np.isfinite(h[C.H_CLIPNORM]):
        norm = np.sqrt(sq_norm(g)) * abs(scale)
        if norm > h[C.H_CLIPNORM]:
            scale *= h[C.H_CLIPNORM] / norm
        elif np.isnan(norm):
            scale = np.nan
    g = g * scale
    if np.isfinite(h[C.H_CLIPVALUE]):
        g = np.clip(g, -h[C.H_CLIPVALUE], h[C.H_CLIPVALUE])
    x = x - x * h[C.H_WD]
    if kind == C.OPT_SGD:
        x = x - g * lr
    elif kind in (C.OPT_MOMENTUM, C.OPT_NESTEROV):
        s[0] = s[0] * a - g * lr
        x = x + (s[0] * a - g * lr if kind == C.OPT_NESTEROV else s[0])
    elif C.OPT_RMSPROP <= kind <= C.OPT_RMSPROP_CENTERED_MOMENTUM:
        with_momentum = kind in (C.OPT_RMSPROP_MOMENTUM, C.OPT_RMSPROP_CENTERED_MOMENTUM)
        centered = kind in (C.OPT_RMSPROP_CENTERED, C.OPT_RMSPROP_CENTERED_MOMENTUM)
        s[0] = a * s[0] + b * g * g
        denom = s[0] + c
        if centered:
            s[-1] = a * s[-1] + b * g
            denom = s[0] - s[-1] * s[-1] + c
        inc = lr * g / np.sqrt(denom)
        if with_momentum:
            s[1] = d * s[1] + inc
            x = x - s[1]
        else:
            x = x - inc
    elif kind in (C.OPT_ADAM, C.OPT_AMSGRAD):
        s[0] = s[0] + (g - s[0]) * b
        s[1] = s[1] + (g * g - s[1]) * c
        v = s[1]
        if kind == C.OPT_AMSGRAD:
            s[2] = np.maximum(s[2], s[1])
            v = s[2]
        x = x - s[0] * a / (np.sqrt(v) + d)
    elif kind == C.OPT_ADAGRAD:
        s[0] = s[0] + g * g
        x = x - lr * g / np.sqrt(s[0] + a)
    elif kind == C.OPT_ADADELTA:
        s[0] = a * s[0] + b * g * g
        delta = -(np.sqrt(s[1] + c) * g) / np.sqrt(s[0] + c)
        s[1] = a * s[1] + b * delta * delta
        x = x + lr * delta
    elif kind == C.OPT_ADAMAX:
        s[0] = s[0] + (g - s[0]) * b
        s[1] = np.maximum(c * s[1], np.abs(g))
        x = x - a * s[0] / (s[1] + d)
    elif kind == C.OPT_NADAM:
        s[0] = s[0] + (g - s[0]) * d
        s[1] = s[1] + (g * g - s[1]) * e
        m_hat = a * s[0] + b * g
        x = x - m_hat * lr / (np.sqrt(s[1] * c) + f)
    else:
        raise ValueError(f"update_reference: unknown optimizer kind {kind}")
    w[...] = x
    for dst, src in zip(slots, s):
        dst[...] = src



# ---------------------------------------------------------------------------
# Convolutional catalogue: the activations after code 4, convolution, pooling,
# layer normalization and embedding.  Written independently of the kernels'
# lowering (convolution here is a sum over kernel taps of strided slices, not
# im2col) so the two can catch each other's mistakes.

(GELU, LEAKY_RELU, ELU, SELU, SILU, SOFTPLUS, SOFTSIGN, HARD_SIGMOID, RELU6, EXPONENTIAL,
 MISH, LOG_SOFTMAX) = (_CODES[n] for n in ("GELU", "LEAKY_RELU", "ELU", "SELU", "SILU",
                                          "SOFTPLUS", "SOFTSIGN", "HARD_SIGMOID", "RELU6",
                                          "EXPONENTIAL", "MISH", "LOG_SOFTMAX"))
from ._act_codes import LEAKY_RELU_SLOPE as _LEAKY_SLOPE  # noqa: E402
from ._act_codes import SELU_ALPHA as _SELU_ALPHA  # noqa: E402
from ._act_codes import SELU_SCALE as _SELU_SCALE  # noqa: E402


def _erf(Z):
    from scipy.special import erf
    return erf(Z).astype(Z.dtype, copy=False)


def _softplus(Z):
    return np.maximum(Z, 0) + np.log1p(np.exp(-np.abs(Z)))


def _act_more(Z, act):
    dt = Z.dtype.type
    if act == GELU:
        return dt(0.5) * Z * (1 + _erf(Z / np.sqrt(dt(2))))
    if act == LEAKY_RELU:
        return np.where(Z < 0, Z * dt(_LEAKY_SLOPE), Z)
    if act == ELU:
        return np.where(Z > 0, Z, np.expm1(np.minimum(Z, 0)))
    if act == SELU:
        return dt(_SELU_SCALE) * np.where(Z > 0, Z, dt(_SELU_ALPHA) * np.expm1(np.minimum(Z, 0)))
    if act == SILU:
        return Z * _sigmoid(Z)
    if act == SOFTPLUS:
        return _softplus(Z)
    if act == SOFTSIGN:
        return Z / (1 + np.abs(Z))
    if act == HARD_SIGMOID:
        return np.clip(Z / dt(6) + dt(0.5), dt(0), dt(1))
    if act == RELU6:
        return np.clip(Z, dt(0), dt(6))
    if act == EXPONENTIAL:
        return np.exp(Z)
    if act == MISH:
        return Z * np.tanh(_softplus(Z))
    if act == LOG_SOFTMAX:
        if Z.shape[-1] == 0:
            return Z
        m = Z.max(axis=-1, keepdims=True)
        return Z - (m + np.log(np.exp(Z - m).sum(axis=-1, keepdims=True, dtype=np.float64))
                    .astype(Z.dtype))
    raise ValueError(f"unknown activation code {act}")


def _act_grad_more(Z, Y, dY, act):
    dt = dY.dtype.type
    if act in (GELU, SILU, MISH):
        if Z is None:
            raise ValueError(f"activation code {act} needs the input Z")
        if act == GELU:
            return dY * (dt(0.5) * (1 + _erf(Z / np.sqrt(dt(2))))
                         + Z * np.exp(-Z * Z / 2) / np.sqrt(dt(2 * np.pi)))
        s = _sigmoid(Z)
        if act == SILU:
            return dY * s * (1 + Z * (1 - s))
        th = np.tanh(_softplus(Z))
        return dY * (th + Z * s * (1 - th * th))
    if act == LEAKY_RELU:
        return np.where(Y > 0, dY, dY * dt(_LEAKY_SLOPE))
    if act == ELU:
        return np.where(Y > 0, dY, dY * (Y + 1))
    if act == SELU:
        return np.where(Y > 0, dY * dt(_SELU_SCALE), dY * (Y + dt(_SELU_SCALE * _SELU_ALPHA)))
    if act == SOFTPLUS:
        return -dY * np.expm1(-Y)
    if act == SOFTSIGN:
        return dY * (1 - np.abs(Y)) ** 2
    if act == HARD_SIGMOID:
        return np.where((Y > 0) & (Y < 1), dY / dt(6), dt(0))
    if act == RELU6:
        return np.where((Y > 0) & (Y < 6), dY, dt(0))
    if act == EXPONENTIAL:
        return dY * Y
    if act == LOG_SOFTMAX:
        return dY - np.exp(Y) * dY.sum(axis=-1, keepdims=True)
    raise ValueError(f"unknown activation code {act}")


def _taps(h, w, oh, ow, kh, kw, sh, sw, dh, dw, pt, pl):
    """For each kernel tap (ki, kj): the output slice it feeds and the padded
    input slice it reads (padded input of shape (h + pt + kh*dh, w + pl + kw*dw))."""
    for ki in range(kh):
        for kj in range(kw):
            ys = slice(ki * dh, ki * dh + (oh - 1) * sh + 1, sh)
            xs = slice(kj * dw, kj * dw + (ow - 1) * sw + 1, sw)
            yield ki, kj, ys, xs


def _pad(X, pt, pl, kh, kw, dh, dw, sh, sw, oh, ow):
    n, h, w, c = X.shape
    H = max(h + pt, pt + (oh - 1) * sh + (kh - 1) * dh + 1)
    Wd = max(w + pl, pl + (ow - 1) * sw + (kw - 1) * dw + 1)
    P = np.zeros((n, H, Wd, c), X.dtype)
    P[:, pt:pt + h, pl:pl + w] = X
    return P


def conv2d_forward(X, W, b, Y, cols, kh, kw, sh, sw, dh, dw, pt, pl, activation, Z=None):
    """Y = act(sum over taps of X_padded[taps] @ W[tap] + b); cols is unused."""
    n, h, w, c = X.shape
    _, oh, ow, f = Y.shape
    W4 = W.reshape(kh, kw, c, f)
    P = _pad(X, pt, pl, kh, kw, dh, dw, sh, sw, oh, ow)
    acc = np.zeros((n, oh, ow, f), X.dtype)
    for ki, kj, ys, xs in _taps(h, w, oh, ow, kh, kw, sh, sw, dh, dw, pt, pl):
        acc += P[:, ys, xs, :] @ W4[ki, kj]
    if b is not None:
        acc += b
    if Z is not None:
        Z[...] = acc
    Y[...] = _act(acc.reshape(-1, f), activation).reshape(Y.shape)


def conv2d_infer(X, W, b, Y, work, oh, ow, kh, kw, sh, sw, dh, dw, pt, pl, activation,
                 winograd, pool):
    """conv2d_forward, then (pool 0 max, 1 mean) the 2x2 pooling with stride 2; work and
    winograd are unused (the twin computes the direct sum whatever the algorithm)."""
    n, f = X.shape[0], W.shape[1]
    full = np.empty((n, oh, ow, f), X.dtype)
    conv2d_forward(X, W, b, full, None, kh, kw, sh, sw, dh, dw, pt, pl, activation)
    if pool < 0:
        Y[...] = full
    elif pool == 0:
        max_pool2d_forward(full, Y, np.empty(Y.shape, np.int64), 2, 2, 2, 2, 0, 0)
    else:
        avg_pool2d_forward(full, Y, 2, 2, 2, 2, 0, 0)


def conv2d_backward(X, W, Y, dY, dZ, dX, dW, db, cols, h, w, oh, ow, kh, kw, sh, sw, dh,
                    dw, pt, pl, activation, accumulate, Z=None):
    """Gradients of conv2d_forward; dY, dZ, Y and Z are (n * oh * ow, filters)."""
    f = W.shape[1]
    c = W.shape[0] // (kh * kw)
    n = dY.shape[0] // (oh * ow)
    W4 = W.reshape(kh, kw, c, f)
    dZ[...] = _act_grad(Y, dY, activation, Z)
    G = dZ.reshape(n, oh, ow, f)
    if db is not None:
        col = dZ.sum(axis=0, dtype=np.float64).astype(db.dtype)
        db[...] = db + col if accumulate else col
    P = _pad(X, pt, pl, kh, kw, dh, dw, sh, sw, oh, ow) if dW is not None else None
    dP = None
    if dX is not None:
        shape = _pad(np.zeros((n, h, w, c), dZ.dtype), pt, pl, kh, kw, dh, dw, sh, sw, oh,
                     ow).shape
        dP = np.zeros(shape, dZ.dtype)
    gW = np.zeros((kh, kw, c, f), dZ.dtype)
    for ki, kj, ys, xs in _taps(h, w, oh, ow, kh, kw, sh, sw, dh, dw, pt, pl):
        if dW is not None:
            gW[ki, kj] = np.einsum("nyxc,nyxf->cf", P[:, ys, xs, :], G)
        if dX is not None:
            dP[:, ys, xs, :] += G @ W4[ki, kj].T
    if dW is not None:
        gW = gW.reshape(W.shape)
        dW[...] = dW + gW if accumulate else gW
    if dX is not None:
        dX[...] = dP[:, pt:pt + h, pl:pl + w]


def _pool_windows(h, w, oh, ow, ph, pw, sh, sw, pt, pl):
    for oy in range(oh):
        y0, y1 = max(oy * sh - pt, 0), min(oy * sh - pt + ph, h)
        for ox in range(ow):
            x0, x1 = max(ox * sw - pl, 0), min(ox * sw - pl + pw, w)
            yield oy, ox, y0, y1, x0, x1


def max_pool2d_forward(X, Y, argmax, ph, pw, sh, sw, pt, pl):
    """Max over each window clipped to the input; argmax = iy * w + ix of the first max."""
    n, h, w, c = X.shape
    oh, ow = Y.shape[1:3]
    for oy, ox, y0, y1, x0, x1 in _pool_windows(h, w, oh, ow, ph, pw, sh, sw, pt, pl):
        win = X[:, y0:y1, x0:x1, :].reshape(n, -1, c)
        k = win.argmax(axis=1)
        Y[:, oy, ox, :] = np.take_along_axis(win, k[:, None, :], axis=1)[:, 0, :]
        iy, ix = y0 + k // (x1 - x0), x0 + k % (x1 - x0)
        argmax[:, oy, ox, :] = iy * w + ix


def max_pool2d_backward(dY, argmax, dX):
    """dX = 0 with dY added at argmax."""
    n, h, w, c = dX.shape
    flat = np.zeros((n, h * w, c), dX.dtype)
    a = argmax.reshape(n, -1, c)
    g = dY.reshape(n, -1, c)
    for s in range(n):
        for ch in range(c):
            np.add.at(flat[s, :, ch], a[s, :, ch], g[s, :, ch])
    dX[...] = flat.reshape(dX.shape)


def avg_pool2d_forward(X, Y, ph, pw, sh, sw, pt, pl):
    """Mean over the real elements of each window."""
    n, h, w, c = X.shape
    oh, ow = Y.shape[1:3]
    for oy, ox, y0, y1, x0, x1 in _pool_windows(h, w, oh, ow, ph, pw, sh, sw, pt, pl):
        Y[:, oy, ox, :] = X[:, y0:y1, x0:x1, :].mean(axis=(1, 2))


def avg_pool2d_backward(dY, dX, ph, pw, sh, sw, pt, pl):
    n, h, w, c = dX.shape
    oh, ow = dY.shape[1:3]
    dX[...] = 0
    for oy, ox, y0, y1, x0, x1 in _pool_windows(h, w, oh, ow, ph, pw, sh, sw, pt, pl):
        dX[:, y0:y1, x0:x1, :] += (dY[:, oy, ox, :] / ((y1 - y0) * (x1 - x0)))[:, None, None, :]


def layernorm_forward(X, gamma, beta, eps, Y, mean, inv_std):
    """Per row: statistics in float64 (biased variance), Y = xhat gamma + beta."""
    X64 = X.astype(np.float64)
    m = X64.mean(axis=1)
    v = ((X64 - m[:, None]) ** 2).mean(axis=1)
    inv = 1.0 / np.sqrt(v + eps)
    mean[...] = m
    inv_std[...] = inv
    Y[...] = (X64 - m[:, None]) * inv[:, None] * _f64(gamma, 1.0) + _f64(beta, 0.0)


def layernorm_backward(X, dY, gamma, mean, inv_std, dX, dgamma, dbeta, accumulate):
    """dX = inv/d (d g - sum g - xhat sum(g xhat)) with g = dY gamma, per row."""
    d = X.shape[1]
    inv = inv_std.astype(np.float64)[:, None]
    xhat = (X.astype(np.float64) - mean.astype(np.float64)[:, None]) * inv
    dY64 = dY.astype(np.float64)
    for out, val in ((dgamma, (dY64 * xhat).sum(axis=0)), (dbeta, dY64.sum(axis=0))):
        if out is not None:
            out[...] = out + val.astype(out.dtype) if accumulate else val
    if dX is not None and d > 0:
        g = dY64 * _f64(gamma, 1.0)
        dX[...] = inv / d * (d * g - g.sum(axis=1, keepdims=True)
                             - xhat * (g * xhat).sum(axis=1, keepdims=True))


def embedding_forward(ids, W, Y):
    """Y[i] = W[ids[i]]."""
    Y[...] = W[ids]


def embedding_backward(ids, dY, dW):
    """dW[ids[i]] += dY[i] (rows not used are left as they are)."""
    np.add.at(dW, ids, dY)


def uniform_fill(out, seed, counter):
    """out[i] = dropout's uniform at stream position counter + i."""
    out[...] = dropout_uniform(seed, counter, out.size).astype(out.dtype).reshape(out.shape)


def normal_fill(out, seed, counter):
    """Box-Muller (cosine branch) on stream positions counter + 2i and counter + 2i + 1."""
    u = dropout_uniform(seed, counter, 2 * out.size)
    u1, u2 = u[0::2], u[1::2]
    z = np.sqrt(-2.0 * np.log(1.0 - u1)) * np.cos(2 * np.pi * u2)
    out[...] = z.astype(out.dtype).reshape(out.shape)



def relu_forward(X, Y, negative_slope, max_value, threshold):
    """keras.activations.relu; max_value = inf means no clip."""
    s, m, t = negative_slope, max_value, threshold
    if s != 0 and m == np.inf and t == 0:
        Y[...] = np.where(X >= 0, X, X * X.dtype.type(s))
        return
    pos = np.where(X > t, X, 0) if t != 0 else np.maximum(X, 0)
    if m != np.inf:
        pos = np.clip(pos, 0, m)
    if s != 0:
        pos = pos - X.dtype.type(s) * np.maximum(X.dtype.type(t) - X, 0)
    Y[...] = pos


def relu_backward(X, dY, dX, negative_slope, max_value, threshold):
    s, m, t = negative_slope, max_value, threshold
    if s != 0 and m == np.inf and t == 0:
        dX[...] = np.where(X >= 0, dY, dY * dY.dtype.type(s))
        return
    g = (X > t) if t != 0 else (X > 0)
    if m != np.inf:
        g = g & (X > 0) & (X < m)
    g = g.astype(dY.dtype)
    if s != 0:
        g = g + np.where(X < t, dY.dtype.type(s), 0)
    dX[...] = dY * g


def elu_forward(X, Y, alpha):
    Y[...] = np.where(X > 0, X, alpha * np.expm1(np.minimum(X.astype(np.float64), 0)))


def elu_backward(X, dY, dX, alpha):
    dX[...] = np.where(X > 0, dY, dY * alpha * np.exp(np.minimum(X.astype(np.float64), 0)))


def prelu_forward(X, alpha, Y):
    Y[...] = np.where(X > 0, X, alpha * X)


def prelu_backward(X, alpha, dY, dX, dalpha):
    if dX is not None:
        dX[...] = np.where(X > 0, dY, alpha * dY)
    if dalpha is not None:
        dalpha[...] = (dY.astype(np.float64) * np.minimum(X, 0)).sum(axis=0)


def depthwise_forward(X, W, Y, kh, kw, sh, sw, dh, dw, pt, pl):
    """Channel c through conv2d_forward with its own (kh, kw, 1, dm) filters."""
    n, h, w, c = X.shape
    dm = W.shape[1] // c
    W4 = W.reshape(kh, kw, c, dm)
    for ch in range(c):
        out = np.empty(Y.shape[:3] + (dm,), X.dtype)
        conv2d_forward(X[..., ch:ch + 1], W4[:, :, ch:ch + 1, :].reshape(kh * kw, dm), None, out,
                       None, kh, kw, sh, sw, dh, dw, pt, pl, LINEAR)
        Y[..., ch * dm:(ch + 1) * dm] = out


def depthwise_backward(X, W, dZ, dX, dW, kh, kw, sh, sw, dh, dw, pt, pl):
    n, h, w, c = X.shape
    dm = W.shape[1] // c
    W4 = W.reshape(kh, kw, c, dm)
    oh, ow = dZ.shape[1:3]
    dW4 = np.empty((kh, kw, c, dm), X.dtype)
    for ch in range(c):
        g = np.ascontiguousarray(dZ[..., ch * dm:(ch + 1) * dm]).reshape(-1, dm)
        gx, gw = np.empty((n, h, w, 1), X.dtype), np.empty((kh * kw, dm), X.dtype)
        conv2d_backward(np.ascontiguousarray(X[..., ch:ch + 1]),
                        W4[:, :, ch:ch + 1, :].reshape(kh * kw, dm), None, g, g.copy(), gx, gw,
                        None, None, h, w, oh, ow, kh, kw, sh, sw, dh, dw, pt, pl, LINEAR, False)
        if dX is not None:
            dX[..., ch] = gx[..., 0]
        dW4[:, :, ch, :] = gw.reshape(kh, kw, dm)
    if dW is not None:
        dW[...] = dW4.reshape(dW.shape)


# ---------------------------------------------------------------------------
# Image copies of the executor's PAD2D and UPSAMPLE2D ops (csrc/_resample.pxd),
# over NHWC arrays: padding/cropping as one offset placement, nearest upsampling
# as a broadcast into (n, h, sh, w, sw, c) blocks.

def _overlap(n_in, n_out, offset):
    """Input indices [a, b) that land at [a + offset, b + offset) inside the output."""
    return max(0, -offset), min(n_in, n_out - offset)


def pad2d_forward(X, Y, top, left):
    """Y = zeros with X placed at row ``top``, column ``left`` (negative: cropped)."""
    Y[...] = 0
    a, b = _overlap(X.shape[1], Y.shape[1], top)
    c, d = _overlap(X.shape[2], Y.shape[2], left)
    if b > a and d > c:
        Y[:, a + top:b + top, c + left:d + left] = X[:, a:b, c:d]


def pad2d_backward(dY, dX, top, left, accumulate=False):
    """dX (+)= the part of dY where X was placed; zero where X did not reach Y."""
    out = np.zeros(dX.shape, dX.dtype)
    a, b = _overlap(dX.shape[1], dY.shape[1], top)
    c, d = _overlap(dX.shape[2], dY.shape[2], left)
    if b > a and d > c:
        out[:, a:b, c:d] = dY[:, a + top:b + top, c + left:d + left]
    dX[...] = dX + out if accumulate else out


def upsample2d_forward(X, Y, sh, sw):
    """Y[:, y * sh + i, x * sw + j] = X[:, y, x] (nearest)."""
    n, h, w, c = X.shape
    Y.reshape(n, h, sh, w, sw, c)[...] = X[:, :, None, :, None, :]


def upsample2d_backward(dY, dX, sh, sw, accumulate=False):
    """dX (+)= the sum of dY over each pixel's sh x sw block (in float64)."""
    n, h, w, c = dX.shape
    g = dY.reshape(n, h, sh, w, sw, c).sum(axis=(2, 4), dtype=np.float64)
    dX[...] = dX + g.astype(dX.dtype) if accumulate else g


# ---------------------------------------------------------------------------
# Twins of the executor's EMBEDDING, GROUPNORM and PRELU ops (csrc/_embedding.pxd,
# _groupnorm.pxd, _prelu.pxd): ids as rows (float ids rounded, as Embedding.forward),
# group normalization over channels-last (n, P, C) in float64, PReLU's slope gradient
# summed over the batch and the shared axes.

def embedding_rows(ids, vocab):
    """``ids`` as int64 rows of a table of ``vocab`` rows (float ids rounded to the
    nearest integer), or None if some id names no row (negative, >= vocab, NaN)."""
    ids = np.asarray(ids)
    r = np.rint(ids.astype(np.float64)) if ids.dtype.kind == "f" else ids.astype(np.int64)
    if r.size and not ((r >= 0) & (r < vocab)).all():
        return None
    return r.astype(np.int64)


def _groups(X, G):
    n, P, C = X.shape
    return X.astype(np.float64).reshape(n, P, G, C // G)


def groupnorm_forward(X, G, gamma, beta, eps, Y, mean, inv_std):
    """Y = (X - mean) * inv_std * gamma + beta, the statistics per (sample, group)
    over the positions and the group's channels (biased variance)."""
    n, P, C = X.shape
    x = _groups(X, G)
    m = x.mean(axis=(1, 3))                                   # (n, G)
    v = ((x - m[:, None, :, None]) ** 2).mean(axis=(1, 3))
    inv = 1.0 / np.sqrt(v + eps)
    y = ((x - m[:, None, :, None]) * inv[:, None, :, None]).reshape(n, P, C)
    if gamma is not None:
        y = y * gamma
    if beta is not None:
        y = y + beta
    Y[...] = y
    mean[...] = m.reshape(-1)
    inv_std[...] = inv.reshape(-1)


def groupnorm_backward(X, dY, G, gamma, mean, inv_std, dX, dgamma, dbeta):
    """dX through the group statistics; dgamma = sum dY xhat; dbeta = sum dY."""
    n, P, C = X.shape
    m = mean.astype(np.float64).reshape(n, 1, G, 1)
    inv = inv_std.astype(np.float64).reshape(n, 1, G, 1)
    xhat = (_groups(X, G) - m) * inv
    dy = dY.astype(np.float64)
    if dbeta is not None:
        dbeta[...] = dy.sum(axis=(0, 1))
    if dgamma is not None:
        dgamma[...] = (dy * xhat.reshape(n, P, C)).sum(axis=(0, 1))
    if dX is not None:
        g = (dy * (gamma if gamma is not None else 1.0)).reshape(n, P, G, C // G)
        cnt = P * (C // G)
        s1 = g.sum(axis=(1, 3), keepdims=True)
        s2 = (g * xhat).sum(axis=(1, 3), keepdims=True)
        dX[...] = (inv / cnt * (cnt * g - s1 - xhat * s2)).reshape(n, P, C)


def prelu_backward_shared(X, alpha, dY, dX, dalpha):
    """PReLU's gradients for a slope ``alpha`` of shape X.shape[1:] with 1 along the
    shared axes: dX = dY * (1 or alpha), dalpha = sum of dY * min(X, 0) over the batch
    and the shared axes (float64)."""
    if dX is not None:
        dX[...] = np.where(X > 0, dY, alpha * dY)
    if dalpha is not None:
        full = dY.astype(np.float64) * np.minimum(X, 0)
        axes = (0,) + tuple(1 + i for i, s in enumerate(alpha.shape)
                            if s == 1 and X.shape[1 + i] != 1)
        dalpha[...] = full.sum(axis=axes, keepdims=True)[0]
