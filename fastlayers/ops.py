"""The validated Python boundary to the compiled kernels.

Layers, losses and optimizers call these functions, never ``fastlayers._kernels``
directly.  Each function checks what the kernels take on trust (ndim, shapes,
one float dtype per call, integer labels in range), makes inputs C-contiguous,
views N-D arrays as 2-D over their last axis, allocates the outputs it is not
given, validates the ones it is given (shape, dtype, C-contiguity, writeable),
and then makes exactly one kernel call.

"Python decides, Cython computes": nothing here knows about layers, weights or
trainability.  Errors name the function and the argument:
``TypeError("dense_forward: W has dtype float64 but X has float32")``.
"""
from __future__ import annotations

import math
import numbers
from typing import List, Optional, Tuple, Union

import numpy as np

from . import _act_codes
from ._kernels import activations as _activations
from ._kernels import batchnorm as _batchnorm
from ._kernels import conv as _conv
from ._kernels import dense as _dense
from ._kernels import dropout as _dropout
from ._kernels import embedding as _embedding
from ._kernels import layernorm as _layernorm
from ._kernels import noise as _noise
from ._kernels import param_act as _param_act
from ._kernels import pool as _pool
from ._kernels import losses as _losses
from . import _codes
from . import _threads
from ._kernels import optim as _optim

__all__ = [
    "BACKEND", "ACTIVATIONS", "activation_code", "activation_needs_input",
    "dense_forward", "dense_backward",
    "activation_forward", "activation_backward",
    "dropout_forward", "dropout_backward",
    "batchnorm_forward_train", "batchnorm_forward_infer", "batchnorm_update_moving",
    "batchnorm_backward_train", "batchnorm_backward_infer",
    "optimizer_update", "sq_norm",
    "mse", "mae", "binary_crossentropy", "categorical_crossentropy",
    "sparse_categorical_crossentropy",
    "conv_output_length", "conv2d_forward", "conv2d_infer", "conv2d_backward",
    "depthwise_conv2d_forward", "depthwise_conv2d_backward",
    "max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward", "avg_pool2d_backward",
    "layernorm_forward", "layernorm_backward", "embedding_forward", "embedding_backward",
    "random_normal", "random_uniform",
    "relu_forward", "relu_backward", "elu_forward", "elu_backward", "prelu_forward",
    "prelu_backward", "softmax_forward", "softmax_backward",
]

BACKEND = "cython"

# Activation names accepted by the kernels and their codes there (one table).
from ._codes import ACTIVATIONS  # noqa: E402

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_U64 = 1 << 64


# ---------------------------------------------------------------------------
# Validation helpers

class _Call:
    """Checks the arguments of one call; the first float array fixes the dtype."""

    __slots__ = ("fn", "dtype", "first")

    def __init__(self, fn: str):
        self.fn = fn
        self.dtype: Optional[np.dtype] = None
        self.first = ""

    def _dtype(self, name: str, a: np.ndarray) -> None:
        if a.dtype not in _FLOAT_DTYPES:
            raise TypeError(f"{self.fn}: {name} has dtype {a.dtype}; "
                            "expected float32 or float64")
        if self.dtype is None:
            self.dtype, self.first = a.dtype, name
        elif a.dtype != self.dtype:
            raise TypeError(f"{self.fn}: {name} has dtype {a.dtype} "
                            f"but {self.first} has {self.dtype}")

    def _ndim(self, name: str, a: np.ndarray, ndim: Optional[int], min_ndim: int) -> None:
        if ndim is not None and a.ndim != ndim:
            raise ValueError(f"{self.fn}: {name} must be {ndim}-D, got shape {a.shape}")
        if a.ndim < min_ndim:
            raise ValueError(f"{self.fn}: {name} must have at least {min_ndim} "
                             f"dimension(s), got shape {a.shape}")

    def input(self, name: str, a, ndim: Optional[int] = None, min_ndim: int = 0) -> np.ndarray:
        """A float input: checked, then made C-contiguous (copying only if needed)."""
        a = np.asarray(a)
        self._dtype(name, a)
        self._ndim(name, a, ndim, min_ndim)
        # (np.ascontiguousarray would also turn a 0-d array into 1-d.)
        return a if a.flags.c_contiguous else np.ascontiguousarray(a)

    def inplace(self, name: str, a, shape: Optional[Tuple[int, ...]] = None) -> np.ndarray:
        """An array the kernel updates in place: it must already be usable as is,
        because updating a contiguous copy would silently change nothing."""
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{self.fn}: {name} must be a numpy array, "
                            f"got {type(a).__name__}")
        self._dtype(name, a)
        _check_buffer(self.fn, name, a, shape)
        return a

    def output(self, name: str, out, shape: Tuple[int, ...]) -> np.ndarray:
        """A given output buffer, validated; or a new one when out is None."""
        if out is None:
            return np.empty(shape, dtype=self.dtype)
        return self.inplace(name, out, shape)


def _check_buffer(fn: str, name: str, a: np.ndarray, shape) -> None:
    if shape is not None and a.shape != tuple(shape):
        raise ValueError(f"{fn}: {name} has shape {a.shape}, expected {tuple(shape)}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{fn}: {name} must be C-contiguous")
    if not a.flags.writeable:
        raise ValueError(f"{fn}: {name} is read-only")


def _rows(a: np.ndarray) -> np.ndarray:
    """View a C-contiguous N-D array as 2-D (rows, last axis)."""
    if a.ndim == 2:
        return a
    if a.ndim == 0:
        return a.reshape(1, 1)
    return a.reshape(math.prod(a.shape[:-1]), a.shape[-1])


def _flat_rows(a: np.ndarray) -> np.ndarray:
    """View a C-contiguous array as 2-D for an elementwise kernel."""
    return a.reshape(-1, 1) if a.ndim < 2 else _rows(a)


def _no_overlap(fn: str, name: str, out: Optional[np.ndarray], **inputs) -> None:
    if out is None:
        return
    for other_name, other in inputs.items():
        if other is not None and np.may_share_memory(out, other):
            raise ValueError(f"{fn}: {name} overlaps {other_name}; "
                             "the kernel would read what it is writing")


def activation_code(fn: str, activation) -> int:
    """Map an activation name (None means linear) to its kernel code."""
    if activation is None:
        return _dense.LINEAR
    code = ACTIVATIONS.get(activation) if isinstance(activation, str) else None
    if code is None:
        raise ValueError(f"{fn}: unknown activation {activation!r}; "
                         f"valid names are {sorted(ACTIVATIONS)} or None")
    return code


def activation_needs_input(activation) -> bool:
    """Whether the backward pass of ``activation`` needs its input (gelu, silu/swish,
    mish), not only its output."""
    return activation in _act_codes.NEEDS_INPUT


def _want(fn: str, name: str, want: bool, buf) -> None:
    if buf is not None and not want:
        raise ValueError(f"{fn}: {name} buffer given but want_{name} is False")


# ---------------------------------------------------------------------------
# Dense

def dense_forward(X, W, b=None, activation="linear", out=None,
                  Z=None) -> Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]:
    """Y = activation(X @ W + b), X of shape (..., d_in), W (d_in, units).

    With ``Z`` (True, or a buffer of Y's shape) the pre-activation X @ W + b is
    kept too and ``(Y, Z)`` is returned: dense_backward needs it for the
    activations of :func:`activation_needs_input`.
    """
    fn = "dense_forward"
    c = _Call(fn)
    X = c.input("X", X, min_ndim=2)
    W = c.input("W", W, ndim=2)
    d_in, units = W.shape
    if X.shape[-1] != d_in:
        raise ValueError(f"{fn}: X has {X.shape[-1]} features but W has shape {W.shape}")
    if b is not None:
        b = c.input("b", b, ndim=1)
        if b.shape[0] != units:
            raise ValueError(f"{fn}: b has shape {b.shape}, expected ({units},)")
    code = activation_code(fn, activation)
    Y = c.output("out", out, X.shape[:-1] + (units,))
    _no_overlap(fn, "out", out, X=X, W=W, b=b)
    if Z is None or Z is False:
        _dense.dense_forward(_rows(X), W, b, _rows(Y), code)
        return Y
    Z = c.output("Z", None if Z is True else Z, Y.shape)
    _no_overlap(fn, "Z", Z, X=X, W=W, b=b, Y=Y)
    _dense.dense_forward(_rows(X), W, b, _rows(Y), code, _rows(Z))
    return Y, Z


def dense_backward(X, W, Y, dY, activation="linear", *, want_dX=True, want_dW=True,
                   want_db=True, dX=None, dW=None, db=None, accumulate=False, dZ=None,
                   Z=None):
    """Gradients of a dense layer: returns (dX, dW, db), None where not wanted.

    X may be None when dW is not wanted; Y (the forward output) may be None for
    a linear activation.  Z (the pre-activation from ``dense_forward(..., Z=True)``)
    is required for the activations of :func:`activation_needs_input`.  With accumulate=True, dW and db are added into the
    given buffers (a shared layer summing the gradients of its uses).  dZ is
    scratch for dY * activation'; the caller's dY is never written.
    """
    fn = "dense_backward"
    c = _Call(fn)
    dY = c.input("dY", dY, min_ndim=2)
    W = c.input("W", W, ndim=2)
    d_in, units = W.shape
    if dY.shape[-1] != units:
        raise ValueError(f"{fn}: dY has {dY.shape[-1]} units but W has shape {W.shape}")
    lead = dY.shape[:-1]
    code = activation_code(fn, activation)
    if want_dW:
        if X is None:
            raise ValueError(f"{fn}: X is required to compute dW")
    if X is not None:
        X = c.input("X", X, min_ndim=2)
        if X.shape != lead + (d_in,):
            raise ValueError(f"{fn}: X has shape {X.shape}, expected {lead + (d_in,)}")
    if code != _dense.LINEAR or Y is not None:
        if Y is None:
            raise ValueError(f"{fn}: Y is required for activation {activation!r}")
        Y = c.input("Y", Y)
        if Y.shape != dY.shape:
            raise ValueError(f"{fn}: Y has shape {Y.shape} but dY has {dY.shape}")
    if activation_needs_input(activation):
        if Z is None:
            raise ValueError(f"{fn}: Z (the pre-activation) is required for "
                             f"activation {activation!r}")
        Z = c.input("Z", Z)
        if Z.shape != dY.shape:
            raise ValueError(f"{fn}: Z has shape {Z.shape} but dY has {dY.shape}")
    else:
        Z = None
    for name, want, buf in (("dX", want_dX, dX), ("dW", want_dW, dW), ("db", want_db, db)):
        _want(fn, name, want, buf)
    if accumulate and ((want_dW and dW is None) or (want_db and db is None)):
        raise ValueError(f"{fn}: accumulate=True needs the dW and db buffers to add into")
    dX = c.output("dX", dX, lead + (d_in,)) if want_dX else None
    dW = c.output("dW", dW, (d_in, units)) if want_dW else None
    db = c.output("db", db, (units,)) if want_db else None
    if dZ is None:
        # A linear activation never writes dZ when it is dY itself, so a
        # writeable dY can serve as the scratch without being changed.
        if code == _dense.LINEAR and dY.flags.writeable:
            dZ = dY
        else:
            dZ = np.empty_like(dY)
    else:
        dZ = c.output("dZ", dZ, dY.shape)
    _no_overlap(fn, "dX", dX, dZ=dZ, W=W, Z=Z)
    _no_overlap(fn, "dW", dW, X=X, dZ=dZ)
    if X is None:
        # The kernel picks its float/double version from its first argument, so
        # X cannot be None; an empty stand-in of the right dtype is never read.
        X = np.empty((0, d_in), dtype=W.dtype)
    _dense.dense_backward(_rows(X), W,
                          None if Y is None else _rows(Y), _rows(dY), _rows(dZ),
                          None if dX is None else _rows(dX), dW, db, code, bool(accumulate),
                          None if Z is None else _rows(Z))
    return dX, dW, db


# ---------------------------------------------------------------------------
# Activations

def activation_forward(X, activation, out=None) -> np.ndarray:
    """Y = activation(X); softmax over the last axis.  out may be X itself."""
    fn = "activation_forward"
    c = _Call(fn)
    X = c.input("X", X, min_ndim=1)
    code = activation_code(fn, activation)
    Y = c.output("out", out, X.shape)
    _activations.activation_forward(_rows(X), _rows(Y), code)
    return Y


def activation_backward(Y, dY, activation, out=None, X=None) -> np.ndarray:
    """dX = dY * activation'(.), through the forward output Y.  out may be dY.

    X, the forward input, is required for the activations of
    :func:`activation_needs_input` (and ignored for the others).
    """
    fn = "activation_backward"
    c = _Call(fn)
    Y = c.input("Y", Y, min_ndim=1)
    dY = c.input("dY", dY)
    if dY.shape != Y.shape:
        raise ValueError(f"{fn}: dY has shape {dY.shape} but Y has {Y.shape}")
    code = activation_code(fn, activation)
    if activation_needs_input(activation):
        if X is None:
            raise ValueError(f"{fn}: X (the forward input) is required for "
                             f"activation {activation!r}")
        X = c.input("X", X)
        if X.shape != Y.shape:
            raise ValueError(f"{fn}: X has shape {X.shape} but Y has {Y.shape}")
    else:
        X = None
    dX = c.output("out", out, Y.shape)
    _activations.activation_backward(_rows(Y), _rows(dY), _rows(dX), code,
                                     None if X is None else _rows(X))
    return dX


# ---------------------------------------------------------------------------
# Dropout

def _check_rate(fn: str, rate) -> float:
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not 0 <= rate < 1:
        raise ValueError(f"{fn}: rate must be a number in [0, 1), got {rate!r}")
    return float(rate)


def _check_u64(fn: str, name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) \
            or not 0 <= value < _U64:
        raise ValueError(f"{fn}: {name} must be an integer in [0, 2**64), got {value!r}")
    return int(value)


def _mask_buffer(fn: str, mask, shape) -> np.ndarray:
    if mask is None:
        return np.empty(shape, dtype=np.uint8)
    if not isinstance(mask, np.ndarray) or mask.dtype != np.uint8:
        raise TypeError(f"{fn}: mask must be a uint8 numpy array")
    _check_buffer(fn, "mask", mask, shape)
    return mask


def dropout_forward(X, rate, seed, counter, out=None, mask=None):
    """Returns (Y, mask): mask[i] = u(seed, counter + i) >= rate, Y = X mask / (1 - rate).

    i is the flat C-order index, so a caller advancing counter by X.size per call
    never reuses a random number.
    """
    fn = "dropout_forward"
    c = _Call(fn)
    X = c.input("X", X)
    rate = _check_rate(fn, rate)
    seed = _check_u64(fn, "seed", seed)
    counter = _check_u64(fn, "counter", counter)
    Y = c.output("out", out, X.shape)
    mask = _mask_buffer(fn, mask, X.shape)
    _dropout.dropout_forward(_flat_rows(X), _flat_rows(Y), _flat_rows(mask), rate, seed,
                             counter)
    return Y, mask


def dropout_backward(dY, mask, rate, out=None) -> np.ndarray:
    """dX = dY * mask / (1 - rate)."""
    fn = "dropout_backward"
    c = _Call(fn)
    dY = c.input("dY", dY)
    rate = _check_rate(fn, rate)
    mask = np.asarray(mask)
    if mask.dtype != np.uint8:
        if mask.dtype != np.bool_:
            raise TypeError(f"{fn}: mask must be uint8 or bool, got {mask.dtype}")
        mask = mask.view(np.uint8)
    if mask.shape != dY.shape:
        raise ValueError(f"{fn}: mask has shape {mask.shape} but dY has {dY.shape}")
    mask = np.ascontiguousarray(mask)
    dX = c.output("out", out, dY.shape)
    _dropout.dropout_backward(_flat_rows(dY), _flat_rows(mask), rate, _flat_rows(dX))
    return dX


# ---------------------------------------------------------------------------
# Batch normalization over every axis but the last

def _channel_vectors(c: _Call, channels: int, **vectors):
    result = []
    for name, v in vectors.items():
        if v is not None:
            v = c.input(name, v, ndim=1)
            if v.shape[0] != channels:
                raise ValueError(f"{c.fn}: {name} has shape {v.shape}, "
                                 f"expected ({channels},)")
        result.append(v)
    return result


def _check_epsilon(fn: str, epsilon) -> float:
    if not isinstance(epsilon, numbers.Real) or not epsilon >= 0:
        raise ValueError(f"{fn}: epsilon must be a number >= 0, got {epsilon!r}")
    return float(epsilon)


def batchnorm_forward_train(X, gamma, beta, epsilon, out=None):
    """Normalize with batch statistics: returns (Y, mean, var, inv_std).

    var is the biased batch variance; inv_std = 1 / sqrt(var + epsilon) is what
    batchnorm_backward_train needs.  gamma or beta may be None (scale=False,
    center=False).
    """
    fn = "batchnorm_forward_train"
    c = _Call(fn)
    X = c.input("X", X, min_ndim=2)
    ch = X.shape[-1]
    gamma, beta = _channel_vectors(c, ch, gamma=gamma, beta=beta)
    eps = _check_epsilon(fn, epsilon)
    X2 = _rows(X)
    if X2.shape[0] == 0:
        raise ValueError(f"{fn}: an empty batch has no statistics")
    Y = c.output("out", out, X.shape)
    mean = np.empty(ch, dtype=X.dtype)
    var = np.empty(ch, dtype=X.dtype)
    inv_std = np.empty(ch, dtype=X.dtype)
    _batchnorm.batchnorm_forward_train(X2, gamma, beta, eps, _rows(Y), mean, var, inv_std)
    return Y, mean, var, inv_std


def batchnorm_forward_infer(X, gamma, beta, moving_mean, moving_var, epsilon,
                            out=None) -> np.ndarray:
    """Normalize with the moving statistics."""
    fn = "batchnorm_forward_infer"
    c = _Call(fn)
    X = c.input("X", X, min_ndim=2)
    gamma, beta, mm, mv = _channel_vectors(c, X.shape[-1], gamma=gamma, beta=beta,
                                           moving_mean=moving_mean, moving_var=moving_var)
    if mm is None or mv is None:
        raise ValueError(f"{fn}: moving_mean and moving_var are required")
    eps = _check_epsilon(fn, epsilon)
    Y = c.output("out", out, X.shape)
    _batchnorm.batchnorm_forward_infer(_rows(X), gamma, beta, mm, mv, eps, _rows(Y))
    return Y


def batchnorm_update_moving(moving_mean, moving_var, mean, var, momentum) -> None:
    """In place: moving = momentum * moving + (1 - momentum) * batch."""
    fn = "batchnorm_update_moving"
    c = _Call(fn)
    moving_mean = c.inplace("moving_mean", moving_mean)
    if moving_mean.ndim != 1:
        raise ValueError(f"{fn}: moving_mean must be 1-D, got shape {moving_mean.shape}")
    ch = moving_mean.shape[0]
    moving_var = c.inplace("moving_var", moving_var, (ch,))
    mean, var = _channel_vectors(c, ch, mean=mean, var=var)
    if mean is None or var is None:
        raise ValueError(f"{fn}: mean and var are required")
    _batchnorm.batchnorm_update_moving(moving_mean, moving_var, mean, var, float(momentum))


def _bn_grad_buffers(c: _Call, ch: int, want_dgamma, want_dbeta, accumulate_into):
    if accumulate_into is None:
        dgamma = np.empty(ch, dtype=c.dtype) if want_dgamma else None
        dbeta = np.empty(ch, dtype=c.dtype) if want_dbeta else None
        return dgamma, dbeta, False
    try:
        dgamma, dbeta = accumulate_into
    except (TypeError, ValueError):
        raise ValueError(f"{c.fn}: accumulate_into must be a pair (dgamma, dbeta)") from None
    _want(c.fn, "dgamma", want_dgamma, dgamma)
    _want(c.fn, "dbeta", want_dbeta, dbeta)
    # The kernel adds into both, so a missing one starts from zero.
    dgamma = (c.inplace("dgamma", dgamma, (ch,)) if dgamma is not None
              else np.zeros(ch, dtype=c.dtype)) if want_dgamma else None
    dbeta = (c.inplace("dbeta", dbeta, (ch,)) if dbeta is not None
             else np.zeros(ch, dtype=c.dtype)) if want_dbeta else None
    return dgamma, dbeta, True


def batchnorm_backward_train(X, dY, gamma, mean, inv_std, *, want_dX=True, want_dgamma=True,
                             want_dbeta=True, accumulate_into=None):
    """Backward through the batch statistics: returns (dX, dgamma, dbeta).

    accumulate_into=(dgamma, dbeta) adds the parameter gradients into those
    buffers (either may be None) and returns them.
    """
    fn = "batchnorm_backward_train"
    c = _Call(fn)
    X = c.input("X", X, min_ndim=2)
    dY = c.input("dY", dY)
    if dY.shape != X.shape:
        raise ValueError(f"{fn}: dY has shape {dY.shape} but X has {X.shape}")
    ch = X.shape[-1]
    gamma, mean, inv_std = _channel_vectors(c, ch, gamma=gamma, mean=mean, inv_std=inv_std)
    if mean is None or inv_std is None:
        raise ValueError(f"{fn}: mean and inv_std are required")
    dgamma, dbeta, acc = _bn_grad_buffers(c, ch, want_dgamma, want_dbeta, accumulate_into)
    dX = np.empty(X.shape, dtype=X.dtype) if want_dX else None
    _batchnorm.batchnorm_backward_train(_rows(X), _rows(dY), gamma, mean, inv_std,
                                        None if dX is None else _rows(dX), dgamma, dbeta, acc)
    return dX, dgamma, dbeta


def batchnorm_backward_infer(X, dY, gamma, moving_mean, moving_var, epsilon, *, want_dX=True,
                             want_dgamma=True, want_dbeta=True, accumulate_into=None):
    """Backward with the moving statistics as constants: returns (dX, dgamma, dbeta)."""
    fn = "batchnorm_backward_infer"
    c = _Call(fn)
    X = c.input("X", X, min_ndim=2)
    dY = c.input("dY", dY)
    if dY.shape != X.shape:
        raise ValueError(f"{fn}: dY has shape {dY.shape} but X has {X.shape}")
    ch = X.shape[-1]
    gamma, mm, mv = _channel_vectors(c, ch, gamma=gamma, moving_mean=moving_mean,
                                     moving_var=moving_var)
    if mm is None or mv is None:
        raise ValueError(f"{fn}: moving_mean and moving_var are required")
    eps = _check_epsilon(fn, epsilon)
    dgamma, dbeta, acc = _bn_grad_buffers(c, ch, want_dgamma, want_dbeta, accumulate_into)
    dX = np.empty(X.shape, dtype=X.dtype) if want_dX else None
    _batchnorm.batchnorm_backward_infer(_rows(X), _rows(dY), gamma, mm, mv, eps,
                                        None if dX is None else _rows(dX), dgamma, dbeta, acc)
    return dX, dgamma, dbeta


# ---------------------------------------------------------------------------
# Optimizers: one fused kernel call over every weight

def _param_list(c: _Call, params) -> List[np.ndarray]:
    if isinstance(params, np.ndarray) or not isinstance(params, (list, tuple)):
        raise TypeError(f"{c.fn}: params must be a list of arrays")
    seen = set()
    result = []
    for i, p in enumerate(params):
        p = c.inplace(f"params[{i}]", p)
        if id(p) in seen:
            raise ValueError(f"{c.fn}: params[{i}] appears twice; it would be updated twice")
        seen.add(id(p))
        result.append(p)
    return result


def _state_list(c: _Call, name: str, arrays, params, inplace: bool) -> List[np.ndarray]:
    if isinstance(arrays, np.ndarray) or not isinstance(arrays, (list, tuple)):
        raise TypeError(f"{c.fn}: {name} must be a list of arrays")
    if len(arrays) != len(params):
        raise ValueError(f"{c.fn}: {len(params)} params but {len(arrays)} {name}")
    result = []
    for i, (a, p) in enumerate(zip(arrays, params)):
        label = f"{name}[{i}]"
        if inplace:
            a = c.inplace(label, a, p.shape)
        else:
            a = c.input(label, a)
            if a.shape != p.shape:
                raise ValueError(f"{c.fn}: {label} has shape {a.shape} "
                                 f"but params[{i}] has {p.shape}")
        result.append(a.reshape(-1))
    return result


def optimizer_update(kind, hyper, params, grads, slots) -> None:
    """One optimizer step of ``kind`` (an ``OPT_*`` code of ``fastlayers._codes``) with
    this step's scalars ``hyper`` (float64, ``HYPER_LEN``), in place on every array of
    params and slots.

    ``slots[j][i]`` is state array j of ``params[i]``; ``len(slots)`` must be
    ``_codes.N_SLOTS[kind]``.  grads are only read (they may be read-only or strided).
    """
    c = _Call("optimizer_update")
    if isinstance(kind, bool) or not isinstance(kind, numbers.Integral) \
            or not 0 <= kind < _codes.OPT_COUNT:
        raise ValueError(f"optimizer_update: kind must be an OPT_* code in "
                         f"[0, {_codes.OPT_COUNT}), got {kind!r}")
    kind = int(kind)
    h = np.asarray(hyper)
    if h.dtype != np.float64 or h.shape != (_codes.HYPER_LEN,):
        raise ValueError(f"optimizer_update: hyper must be float64 of shape "
                         f"({_codes.HYPER_LEN},), got {h.dtype} {h.shape}")
    params = _param_list(c, params)
    flat_grads = _state_list(c, "grads", grads, params, inplace=False)
    n = _codes.N_SLOTS[kind]
    if isinstance(slots, np.ndarray) or not isinstance(slots, (list, tuple)) or len(slots) != n:
        raise ValueError(f"optimizer_update: kind {_codes.OPT_NAMES[kind]} takes {n} slot "
                         f"lists, got {slots!r:.60}")
    flat_slots = [_state_list(c, f"slots[{j}]", s, params, inplace=True)
                  for j, s in enumerate(slots)]
    seen = {id(p) for p in params}
    for j, s in enumerate(slots):
        for i, a in enumerate(s):
            if id(a) in seen:
                raise ValueError(f"optimizer_update: slots[{j}][{i}] is also a param "
                                 "or another slot")
            seen.add(id(a))
    _optim.apply_update(kind, np.ascontiguousarray(h), [p.reshape(-1) for p in params],
                        flat_grads, flat_slots)


def sq_norm(g) -> float:
    """Sum of squares of one float array, accumulated in double (for gradient clipping)."""
    c = _Call("sq_norm")
    g = c.input("g", g)
    return float(_optim.sq_norm(g.reshape(-1)))


# ---------------------------------------------------------------------------
# Losses: (mean loss as a float, its gradient w.r.t. y_pred or None)

def _pred_true(fn: str, y_pred, y_true):
    c = _Call(fn)
    y_pred = c.input("y_pred", y_pred, min_ndim=1)
    y_true = c.input("y_true", y_true)
    if y_true.shape != y_pred.shape:
        # Keras accepts (n,) targets for an (n, 1) output.
        if y_pred.shape[-1:] == (1,) and y_true.shape == y_pred.shape[:-1]:
            y_true = y_true.reshape(y_pred.shape)
        else:
            raise ValueError(f"{fn}: y_true has shape {y_true.shape} "
                             f"but y_pred has {y_pred.shape}")
    return y_pred, y_true


def _elementwise_loss(kernel, fn, y_pred, y_true, want_grad, *flags):
    y_pred, y_true = _pred_true(fn, y_pred, y_true)
    grad = np.empty_like(y_pred) if want_grad else None
    loss = kernel(_flat_rows(y_pred), _flat_rows(y_true),
                  None if grad is None else _flat_rows(grad), *flags)
    return float(loss), grad


def mse(y_pred, y_true, want_grad=True):
    """Mean squared error over all elements."""
    return _elementwise_loss(_losses.mse, "mse", y_pred, y_true, want_grad)


def mae(y_pred, y_true, want_grad=True):
    """Mean absolute error over all elements (gradient 0 where they are equal)."""
    return _elementwise_loss(_losses.mae, "mae", y_pred, y_true, want_grad)


def binary_crossentropy(y_pred, y_true, from_logits=False, want_grad=True):
    """Mean binary cross-entropy over all elements; probabilities clipped as Keras does."""
    return _elementwise_loss(_losses.binary_crossentropy, "binary_crossentropy",
                             y_pred, y_true, want_grad, bool(from_logits))


def categorical_crossentropy(y_pred, y_true, from_logits=False, want_grad=True):
    """Mean over samples of -sum(y_true * log softmax(y_pred)) (classes on the last axis).

    Without from_logits, y_pred rows are probabilities: normalised to sum 1 and
    clipped to [1e-7, 1 - 1e-7] as Keras does.
    """
    fn = "categorical_crossentropy"
    c = _Call(fn)
    y_pred = c.input("y_pred", y_pred, min_ndim=1)
    y_true = c.input("y_true", y_true)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{fn}: y_true has shape {y_true.shape} but y_pred has {y_pred.shape}")
    grad = np.empty_like(y_pred) if want_grad else None
    loss = _losses.softmax_crossentropy(_rows(y_pred), _rows(y_true),
                                        None if grad is None else _rows(grad),
                                        bool(from_logits))
    return float(loss), grad


def _labels(fn: str, labels, lead: Tuple[int, ...], k: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape == lead + (1,):
        labels = labels.reshape(lead)
    if labels.shape != lead:
        raise ValueError(f"{fn}: labels have shape {labels.shape}, expected {lead}")
    if labels.dtype.kind == "f":
        # Keras users often hold class ids in float arrays; accept exact integers.
        if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
            raise ValueError(f"{fn}: labels must be integer class ids")
    elif labels.dtype.kind not in "iu":
        raise ValueError(f"{fn}: labels must be integer class ids, got dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= k):
        raise ValueError(f"{fn}: labels must be in [0, {k}), "
                         f"got values in [{labels.min()}, {labels.max()}]")
    return np.ascontiguousarray(labels.reshape(-1), dtype=np.int64)


def sparse_categorical_crossentropy(y_pred, labels, from_logits=False, want_grad=True):
    """categorical_crossentropy with integer class ids (shape y_pred.shape[:-1])."""
    fn = "sparse_categorical_crossentropy"
    c = _Call(fn)
    y_pred = c.input("y_pred", y_pred, min_ndim=1)
    lab = _labels(fn, labels, y_pred.shape[:-1], y_pred.shape[-1])
    grad = np.empty_like(y_pred) if want_grad else None
    loss = _losses.softmax_crossentropy_sparse(_rows(y_pred), lab,
                                               None if grad is None else _rows(grad),
                                               bool(from_logits))
    return float(loss), grad



# ---------------------------------------------------------------------------
# Convolution (NHWC; kernels in Keras's (kh, kw, c_in, filters) layout)

# Elements of im2col scratch per GEMM: bounds the scratch at 4 MB (float32) or
# 8 MB (float64) while keeping the GEMMs large.
_COLS_ELEMENTS = 1 << 20


def _pair(fn: str, name: str, value) -> Tuple[int, int]:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (value, value)
    try:
        a, b = value
    except (TypeError, ValueError):
        raise ValueError(f"{fn}: {name} must be an int or a pair of ints, got {value!r}") \
            from None
    for v in (a, b):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{fn}: {name} must be positive integers, got {value!r}")
    return int(a), int(b)


def _padding(fn: str, padding) -> str:
    p = padding.lower() if isinstance(padding, str) else padding
    if p not in ("valid", "same"):
        raise ValueError(f"{fn}: padding must be 'valid' or 'same', got {padding!r}")
    return p


def conv_output_length(length: int, kernel: int, stride: int, dilation: int,
                       padding: str) -> Tuple[int, int]:
    """(output length, padding before) along one axis, as Keras/TensorFlow compute
    them: "same" gives ceil(length / stride) outputs and puts the odd padding
    element after (pad_before = total // 2)."""
    eff = (kernel - 1) * dilation + 1
    if padding == "valid":
        return max((length - eff) // stride + 1, 0), 0
    out = -(-length // stride)
    total = max((out - 1) * stride + eff - length, 0)
    return out, total // 2


def _conv_geometry(fn, in_hw, k_hw, strides, padding, dilation_rate):
    sh, sw = _pair(fn, "strides", strides)
    dh, dw = _pair(fn, "dilation_rate", dilation_rate)
    padding = _padding(fn, padding)
    oh, pt = conv_output_length(in_hw[0], k_hw[0], sh, dh, padding)
    ow, pl = conv_output_length(in_hw[1], k_hw[1], sw, dw, padding)
    return oh, ow, sh, sw, dh, dw, pt, pl


def _cols_buffer(dtype, n, oh, ow, K, direct, whole=False):
    """im2col scratch (rows, K): the whole batch's rows, or about _COLS_ELEMENTS values
    (at least one sample); None for a direct 1x1 kernel, which reads X itself."""
    if direct:
        return None
    per = max(oh * ow, 1)
    samples = n if whole else max(1, min(n, _COLS_ELEMENTS // max(per * K, 1)))
    return np.empty((samples * per, K), dtype)


def _is_direct(kh, kw, sh, sw, pt, pl, oh, ow, h, w):
    return kh == kw == sh == sw == 1 and pt == pl == 0 and (oh, ow) == (h, w)


def _conv_inputs(fn: str, X, W, b):
    """X (n, h, w, c_in), W (kh, kw, c_in, filters) and b (filters,) or None, checked."""
    c = _Call(fn)
    X = c.input("X", X, ndim=4)
    W = c.input("W", W, ndim=4)
    if W.shape[2] != X.shape[3]:
        raise ValueError(f"{fn}: X has {X.shape[3]} channels but W has shape {W.shape}")
    if b is not None:
        b = c.input("b", b, ndim=1)
        if b.shape != (W.shape[3],):
            raise ValueError(f"{fn}: b has shape {b.shape}, expected ({W.shape[3]},)")
    return X, W, b


def conv2d_forward(X, W, b=None, strides=1, padding="valid", dilation_rate=1,
                   activation="linear",
                   Z=None) -> Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]:
    """Y = activation(conv2d(X, W) + b) for X (n, h, w, c_in), W (kh, kw, c_in, filters).

    strides, dilation_rate: int or pair; padding "valid" or "same" (Keras's
    split).  With Z=True the pre-activation is kept and ``(Y, Z)`` returned
    (needed by conv2d_backward for gelu, silu and mish).
    """
    fn = "conv2d_forward"
    X, W, b = _conv_inputs(fn, X, W, b)
    n, h, w, cin = X.shape
    kh, kw, _, f = W.shape
    code = activation_code(fn, activation)
    oh, ow, sh, sw, dh, dw, pt, pl = _conv_geometry(fn, (h, w), (kh, kw), strides, padding,
                                                    dilation_rate)
    Y = np.empty((n, oh, ow, f), X.dtype)
    Zb = np.empty_like(Y) if Z else None
    cols = _cols_buffer(X.dtype, n, oh, ow, kh * kw * cin,
                        _is_direct(kh, kw, sh, sw, pt, pl, oh, ow, h, w))
    _conv.conv2d_forward(X, W.reshape(kh * kw * cin, f), b, Y, cols, kh, kw, sh, sw, dh, dw,
                         pt, pl, code, Zb)
    return (Y, Zb) if Z else Y


# Winograd F(2x2, 3x3) beats the direct im2col GEMM from this many input channels
# (with fewer, its 16 products are GEMMs too thin for BLAS).  One thread, 32 x 30 x 30
# x c -> 32 filters, ms direct / Winograd: pooled c=4 1.28/1.35, c=8 2.07/1.35;
# unpooled (every output written) c=8 1.92/2.25, c=16 3.37/2.54.
WINOGRAD_MIN_CHANNELS = 8
WINOGRAD_MIN_CHANNELS_UNPOOLED = 16


def _winograd_pays(kh, kw, sh, sw, dh, dw, c, pooled) -> bool:
    """The forward-only convolution's choice of Winograd (read by the engine too)."""
    return (kh, kw, sh, sw, dh, dw) == (3, 3, 1, 1, 1, 1) and \
        c >= (WINOGRAD_MIN_CHANNELS if pooled else WINOGRAD_MIN_CHANNELS_UNPOOLED)


def conv2d_infer(X, W, b=None, strides=1, padding="valid", dilation_rate=1,
                 activation="linear", pool=None, winograd=None) -> np.ndarray:
    """The forward-only convolution: conv2d_forward's Y, then, with ``pool="max"`` or
    ``"average"``, a 2x2 pooling with stride 2 ("valid") fused into it.

    ``winograd``: compute with Winograd F(2x2, 3x3) (3x3 kernel, strides and
    dilation 1); None picks it for such kernels over enough channels (as the engine
    does).  Without Winograd a pooling must be given (the plain convolution is
    conv2d_forward).  Nothing is kept for a backward pass.
    """
    fn = "conv2d_infer"
    X, W, b = _conv_inputs(fn, X, W, b)
    n, h, w, cin = X.shape
    kh, kw, _, f = W.shape
    if cin == 0 or f == 0:
        raise ValueError(f"{fn}: X and W need at least one channel and one filter")
    code = activation_code(fn, activation)
    modes = {None: -1, "max": _codes.POOL_MAX, "average": _codes.POOL_AVERAGE}
    if not isinstance(pool, (str, type(None))) or pool not in modes:
        raise ValueError(f"{fn}: pool must be None, 'max' or 'average', got {pool!r}")
    oh, ow, sh, sw, dh, dw, pt, pl = _conv_geometry(fn, (h, w), (kh, kw), strides, padding,
                                                    dilation_rate)
    fits = (kh, kw, sh, sw, dh, dw) == (3, 3, 1, 1, 1, 1)
    if winograd is None:
        winograd = _winograd_pays(kh, kw, sh, sw, dh, dw, cin, pool is not None)
        if not winograd and pool is None:
            raise ValueError(f"{fn}: without a pool this convolution is conv2d_forward's "
                             "(give winograd=True to force Winograd on a 3x3 kernel)")
    elif not isinstance(winograd, (bool, np.bool_)):
        raise TypeError(f"{fn}: winograd must be True, False or None, got {winograd!r}")
    if winograd and not fits:
        raise ValueError(f"{fn}: Winograd needs a 3x3 kernel with strides and "
                         f"dilation_rate 1, got kernel {(kh, kw)}, strides {(sh, sw)}, "
                         f"dilation_rate {(dh, dw)}")
    if not winograd and pool is None:
        raise ValueError(f"{fn}: without Winograd give a pool (conv2d_forward computes "
                         "the plain convolution)")
    p = modes[pool]
    Y = np.empty((n, oh // 2, ow // 2, f) if p >= 0 else (n, oh, ow, f), X.dtype)
    if Y.size == 0:
        return Y
    work = np.empty(_conv.infer_work_size(_threads.team(), h, w, cin, oh, ow, kh, kw, sh, sw,
                                          dh, dw, pt, pl, f, bool(winograd), p), X.dtype)
    _conv.conv2d_infer(X, W.reshape(kh * kw * cin, f), b, Y, work, oh, ow, kh, kw, sh, sw, dh,
                       dw, pt, pl, code, bool(winograd), p)
    return Y


def conv2d_backward(X, W, Y, dY, strides=1, padding="valid", dilation_rate=1,
                    activation="linear", *, input_shape=None, want_dX=True, want_dW=True,
                    want_db=True, dW=None, db=None, accumulate=False,
                    Z=None) -> Tuple[Optional[np.ndarray], ...]:
    """Gradients of conv2d_forward: returns (dX, dW, db), None where not wanted.

    X may be None when dW is not wanted (then input_shape, X's shape, is
    required); Y may be None for a linear activation; Z is required for the
    activations of :func:`activation_needs_input`.  accumulate=True adds dW and
    db into the given buffers.
    """
    fn = "conv2d_backward"
    c = _Call(fn)
    dY = c.input("dY", dY, ndim=4)
    W = c.input("W", W, ndim=4)
    kh, kw, cin, f = W.shape
    if X is not None:
        X = c.input("X", X, ndim=4)
        shape = X.shape
    elif want_dW:
        raise ValueError(f"{fn}: X is required to compute dW")
    elif input_shape is None:
        raise ValueError(f"{fn}: input_shape is required when X is None")
    else:
        shape = tuple(int(v) for v in input_shape)
        if len(shape) != 4:
            raise ValueError(f"{fn}: input_shape must be (n, h, w, c_in), got {input_shape!r}")
    n, h, w, xc = shape
    if xc != cin:
        raise ValueError(f"{fn}: X has {xc} channels but W has shape {W.shape}")
    oh, ow, sh, sw, dh, dw, pt, pl = _conv_geometry(fn, (h, w), (kh, kw), strides, padding,
                                                    dilation_rate)
    if dY.shape != (n, oh, ow, f):
        raise ValueError(f"{fn}: dY has shape {dY.shape}, expected {(n, oh, ow, f)}")
    code = activation_code(fn, activation)
    if code != _dense.LINEAR:
        if Y is None:
            raise ValueError(f"{fn}: Y is required for activation {activation!r}")
        Y = c.input("Y", Y)
        if Y.shape != dY.shape:
            raise ValueError(f"{fn}: Y has shape {Y.shape} but dY has {dY.shape}")
    else:
        Y = None
    if activation_needs_input(activation):
        if Z is None:
            raise ValueError(f"{fn}: Z (the pre-activation) is required for "
                             f"activation {activation!r}")
        Z = c.input("Z", Z)
        if Z.shape != dY.shape:
            raise ValueError(f"{fn}: Z has shape {Z.shape} but dY has {dY.shape}")
    else:
        Z = None
    _want(fn, "dW", want_dW, dW)
    _want(fn, "db", want_db, db)
    if accumulate and ((want_dW and dW is None) or (want_db and db is None)):
        raise ValueError(f"{fn}: accumulate=True needs the dW and db buffers to add into")
    dW = c.output("dW", dW, W.shape) if want_dW else None
    db = c.output("db", db, (f,)) if want_db else None
    _no_overlap(fn, "dW", dW, X=X, W=W, dY=dY)
    _no_overlap(fn, "db", db, dY=dY)
    dX = np.empty(shape, dY.dtype) if want_dX else None
    dZ = dY if code == _dense.LINEAR and dY.flags.writeable else np.empty_like(dY)
    K = kh * kw * cin
    cols = _cols_buffer(dY.dtype, n, oh, ow, K, _is_direct(kh, kw, sh, sw, pt, pl, oh, ow, h, w))
    if X is None:
        X = np.empty((0, 1, 1, 1), dY.dtype)  # picks the kernel's dtype; never read
    rows = (n * oh * ow, f)
    _conv.conv2d_backward(X, W.reshape(K, f), None if Y is None else Y.reshape(rows),
                          dY.reshape(rows), dZ.reshape(rows), dX,
                          None if dW is None else dW.reshape(K, f), db, cols, h, w, oh, ow,
                          kh, kw, sh, sw, dh, dw, pt, pl, code, bool(accumulate),
                          None if Z is None else Z.reshape(rows))
    return dX, dW, db


def depthwise_conv2d_forward(X, W, strides=1, padding="valid",
                             dilation_rate=1) -> np.ndarray:
    """Depthwise convolution of X (n, h, w, c) with W (kh, kw, c, depth_multiplier):
    output channel c * depth_multiplier + m, as Keras.  No bias or activation."""
    fn = "depthwise_conv2d_forward"
    c = _Call(fn)
    X = c.input("X", X, ndim=4)
    W = c.input("W", W, ndim=4)
    n, h, w, ch = X.shape
    kh, kw, wc, dm = W.shape
    if wc != ch:
        raise ValueError(f"{fn}: X has {ch} channels but W has shape {W.shape}")
    oh, ow, sh, sw, dh, dw, pt, pl = _conv_geometry(fn, (h, w), (kh, kw), strides, padding,
                                                    dilation_rate)
    Y = np.empty((n, oh, ow, ch * dm), X.dtype)
    _conv.depthwise_forward(X, W.reshape(kh * kw, ch * dm), Y, kh, kw, sh, sw, dh, dw, pt, pl)
    return Y


def depthwise_conv2d_backward(X, W, dZ, strides=1, padding="valid", dilation_rate=1, *,
                              want_dX=True, want_dW=True) -> Tuple[Optional[np.ndarray], ...]:
    """(dX, dW) of depthwise_conv2d_forward for the output gradient dZ."""
    fn = "depthwise_conv2d_backward"
    c = _Call(fn)
    X = c.input("X", X, ndim=4)
    W = c.input("W", W, ndim=4)
    dZ = c.input("dZ", dZ, ndim=4)
    n, h, w, ch = X.shape
    kh, kw, wc, dm = W.shape
    if wc != ch:
        raise ValueError(f"{fn}: X has {ch} channels but W has shape {W.shape}")
    oh, ow, sh, sw, dh, dw, pt, pl = _conv_geometry(fn, (h, w), (kh, kw), strides, padding,
                                                    dilation_rate)
    if dZ.shape != (n, oh, ow, ch * dm):
        raise ValueError(f"{fn}: dZ has shape {dZ.shape}, expected {(n, oh, ow, ch * dm)}")
    dX = np.empty_like(X) if want_dX else None
    dW = np.empty(W.shape, X.dtype) if want_dW else None
    _conv.depthwise_backward(X, W.reshape(kh * kw, ch * dm), dZ, dX,
                             None if dW is None else dW.reshape(kh * kw, ch * dm),
                             kh, kw, sh, sw, dh, dw, pt, pl)
    return dX, dW


# ---------------------------------------------------------------------------
# Pooling (NHWC); 1-D pooling is height 1, global pooling a whole-input window

def _pool_geometry(fn, X_hw, pool_size, strides, padding):
    ph, pw = _pair(fn, "pool_size", pool_size)
    sh, sw = _pair(fn, "strides", pool_size if strides is None else strides)
    padding = _padding(fn, padding)
    oh, pt = conv_output_length(X_hw[0], ph, sh, 1, padding)
    ow, pl = conv_output_length(X_hw[1], pw, sw, 1, padding)
    return oh, ow, ph, pw, sh, sw, pt, pl


def max_pool2d_forward(X, pool_size, strides=None,
                       padding="valid") -> Tuple[np.ndarray, np.ndarray]:
    """Max pooling of X (n, h, w, c): returns (Y, argmax) (argmax feeds the backward).

    strides defaults to pool_size, as in Keras.
    """
    fn = "max_pool2d_forward"
    X = _Call(fn).input("X", X, ndim=4)
    n, h, w, ch = X.shape
    oh, ow, ph, pw, sh, sw, pt, pl = _pool_geometry(fn, (h, w), pool_size, strides, padding)
    Y = np.empty((n, oh, ow, ch), X.dtype)
    argmax = np.empty(Y.shape, np.int64)
    _pool.max_pool2d_forward(X, Y, argmax, ph, pw, sh, sw, pt, pl)
    return Y, argmax


def max_pool2d_backward(dY, argmax, input_shape) -> np.ndarray:
    """dX (of input_shape) = 0 with dY added where each window's maximum was."""
    fn = "max_pool2d_backward"
    dY = _Call(fn).input("dY", dY, ndim=4)
    argmax = np.asarray(argmax)
    if argmax.dtype != np.int64:
        raise TypeError(f"{fn}: argmax must be int64 (from max_pool2d_forward)")
    if argmax.shape != dY.shape:
        raise ValueError(f"{fn}: argmax has shape {argmax.shape} but dY has {dY.shape}")
    shape = tuple(int(v) for v in input_shape)
    if len(shape) != 4 or shape[0] != dY.shape[0] or shape[3] != dY.shape[3]:
        raise ValueError(f"{fn}: input_shape {input_shape!r} does not match dY {dY.shape}")
    dX = np.empty(shape, dY.dtype)
    _pool.max_pool2d_backward(dY, np.ascontiguousarray(argmax), dX)
    return dX


def avg_pool2d_forward(X, pool_size, strides=None, padding="valid") -> np.ndarray:
    """Average pooling of X (n, h, w, c); "same" padding averages real elements only."""
    fn = "avg_pool2d_forward"
    X = _Call(fn).input("X", X, ndim=4)
    n, h, w, ch = X.shape
    oh, ow, ph, pw, sh, sw, pt, pl = _pool_geometry(fn, (h, w), pool_size, strides, padding)
    Y = np.empty((n, oh, ow, ch), X.dtype)
    _pool.avg_pool2d_forward(X, Y, ph, pw, sh, sw, pt, pl)
    return Y


def avg_pool2d_backward(dY, input_shape, pool_size, strides=None,
                        padding="valid") -> np.ndarray:
    """Gradient of avg_pool2d_forward for an input of input_shape."""
    fn = "avg_pool2d_backward"
    dY = _Call(fn).input("dY", dY, ndim=4)
    shape = tuple(int(v) for v in input_shape)
    if len(shape) != 4:
        raise ValueError(f"{fn}: input_shape must be (n, h, w, c), got {input_shape!r}")
    oh, ow, ph, pw, sh, sw, pt, pl = _pool_geometry(fn, shape[1:3], pool_size, strides,
                                                    padding)
    if dY.shape != (shape[0], oh, ow, shape[3]):
        raise ValueError(f"{fn}: dY has shape {dY.shape}, expected "
                         f"{(shape[0], oh, ow, shape[3])}")
    dX = np.empty(shape, dY.dtype)
    _pool.avg_pool2d_backward(dY, dX, ph, pw, sh, sw, pt, pl)
    return dX


# ---------------------------------------------------------------------------
# Layer normalization over the last axis

def layernorm_forward(X, gamma, beta, epsilon,
                      out=None) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalize each row of X (..., d): returns (Y, mean, inv_std), one statistic per row.

    gamma or beta may be None (scale=False, center=False).
    """
    fn = "layernorm_forward"
    c = _Call(fn)
    X = c.input("X", X, min_ndim=1)
    gamma, beta = _channel_vectors(c, X.shape[-1], gamma=gamma, beta=beta)
    eps = _check_epsilon(fn, epsilon)
    Y = c.output("out", out, X.shape)
    X2 = _rows(X)
    mean = np.empty(X2.shape[0], X.dtype)
    inv_std = np.empty(X2.shape[0], X.dtype)
    _layernorm.layernorm_forward(X2, gamma, beta, eps, _rows(Y), mean, inv_std)
    return Y, mean.reshape(X.shape[:-1]), inv_std.reshape(X.shape[:-1])


def layernorm_backward(X, dY, gamma, mean, inv_std, *, want_dX=True, want_dgamma=True,
                       want_dbeta=True,
                       accumulate_into=None) -> Tuple[Optional[np.ndarray], ...]:
    """Backward of layernorm_forward: returns (dX, dgamma, dbeta).

    accumulate_into=(dgamma, dbeta) adds into those buffers, as for batch norm.
    """
    fn = "layernorm_backward"
    c = _Call(fn)
    X = c.input("X", X, min_ndim=1)
    dY = c.input("dY", dY)
    if dY.shape != X.shape:
        raise ValueError(f"{fn}: dY has shape {dY.shape} but X has {X.shape}")
    (gamma,) = _channel_vectors(c, X.shape[-1], gamma=gamma)
    rows = _rows(X).shape[0]
    stats = []
    for name, v in (("mean", mean), ("inv_std", inv_std)):
        v = c.input(name, v)
        if v.size != rows or v.shape != X.shape[:-1]:
            raise ValueError(f"{fn}: {name} has shape {v.shape}, expected {X.shape[:-1]}")
        stats.append(v.reshape(rows))
    dgamma, dbeta, acc = _bn_grad_buffers(c, X.shape[-1], want_dgamma, want_dbeta,
                                          accumulate_into)
    dX = np.empty(X.shape, X.dtype) if want_dX else None
    _layernorm.layernorm_backward(_rows(X), _rows(dY), gamma, stats[0], stats[1],
                                  None if dX is None else _rows(dX), dgamma, dbeta, acc)
    return dX, dgamma, dbeta


# ---------------------------------------------------------------------------
# Embedding

def _ids(fn: str, ids, vocab: int) -> np.ndarray:
    ids = np.asarray(ids)
    if ids.dtype.kind == "f":
        if not np.all(np.isfinite(ids)) or np.any(ids != np.round(ids)):
            raise ValueError(f"{fn}: ids must be integers")
    elif ids.dtype.kind not in "iu":
        raise TypeError(f"{fn}: ids must be integers, got dtype {ids.dtype}")
    if ids.size and (ids.min() < 0 or ids.max() >= vocab):
        raise ValueError(f"{fn}: ids must be in [0, {vocab}), "
                         f"got values in [{ids.min()}, {ids.max()}]")
    return ids


def embedding_forward(ids, W) -> np.ndarray:
    """W[ids]: shape ids.shape + (dim,)."""
    fn = "embedding_forward"
    W = _Call(fn).input("W", W, ndim=2)
    ids = _ids(fn, ids, W.shape[0])
    Y = np.empty(ids.shape + (W.shape[1],), W.dtype)
    _embedding.embedding_forward(np.ascontiguousarray(ids.reshape(-1), dtype=np.int64), W,
                                 Y.reshape(-1, W.shape[1]))
    return Y


def embedding_backward(ids, dY, dW) -> np.ndarray:
    """In place: dW[ids[i]] += dY[i], touching only the rows looked up.  Returns dW.

    dW is (vocab, dim); pass zeros for a fresh gradient.
    """
    fn = "embedding_backward"
    c = _Call(fn)
    dW = c.inplace("dW", dW)
    if dW.ndim != 2:
        raise ValueError(f"{fn}: dW must be 2-D, got shape {dW.shape}")
    dY = c.input("dY", dY)
    ids = _ids(fn, ids, dW.shape[0])
    if dY.shape != ids.shape + (dW.shape[1],):
        raise ValueError(f"{fn}: dY has shape {dY.shape}, expected {ids.shape + (dW.shape[1],)}")
    _embedding.embedding_backward(np.ascontiguousarray(ids.reshape(-1), dtype=np.int64),
                                  dY.reshape(-1, dW.shape[1]), dW)
    return dW



# ---------------------------------------------------------------------------
# Seeded random fills (the noise layers)

def _random_fill(fn, kernel, shape, dtype, seed, counter) -> np.ndarray:
    dtype = np.dtype(dtype)
    if dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{fn}: dtype must be float32 or float64, got {dtype}")
    seed = _check_u64(fn, "seed", seed)
    counter = _check_u64(fn, "counter", counter)
    out = np.empty(tuple(int(s) for s in shape), dtype)
    kernel(out.reshape(-1), seed, counter)
    return out


def random_normal(shape, dtype, seed, counter) -> np.ndarray:
    """Standard normals from the counter-based generator; uses 2 * size positions."""
    return _random_fill("random_normal", _noise.normal_fill, shape, dtype, seed, counter)


def random_uniform(shape, dtype, seed, counter) -> np.ndarray:
    """Uniforms in [0, 1) at positions counter + i (dropout's stream)."""
    return _random_fill("random_uniform", _noise.uniform_fill, shape, dtype, seed, counter)



# ---------------------------------------------------------------------------
# Activations with run-time parameters (the ReLU, ELU, PReLU and Softmax layers)

def _relu_params(fn, negative_slope, max_value, threshold):
    vals = []
    for name, v in (("negative_slope", negative_slope), ("threshold", threshold)):
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise ValueError(f"{fn}: {name} must be a number, got {v!r}")
        vals.append(float(v))
    if max_value is None:
        m = math.inf
    elif isinstance(max_value, bool) or not isinstance(max_value, numbers.Real) \
            or max_value < 0:
        raise ValueError(f"{fn}: max_value must be None or a number >= 0, got {max_value!r}")
    else:
        m = float(max_value)
    return vals[0], m, vals[1]


def relu_forward(X, negative_slope=0.0, max_value=None, threshold=0.0) -> np.ndarray:
    """keras.activations.relu(X, negative_slope, max_value, threshold), elementwise."""
    fn = "relu_forward"
    X = _Call(fn).input("X", X)
    s, m, t = _relu_params(fn, negative_slope, max_value, threshold)
    Y = np.empty_like(X)
    _param_act.relu_forward(_flat_rows(X), _flat_rows(Y), s, m, t)
    return Y


def relu_backward(X, dY, negative_slope=0.0, max_value=None, threshold=0.0) -> np.ndarray:
    """dX = dY * relu'(X) (through the forward input X)."""
    fn = "relu_backward"
    c = _Call(fn)
    X = c.input("X", X)
    dY = c.input("dY", dY)
    if dY.shape != X.shape:
        raise ValueError(f"{fn}: dY has shape {dY.shape} but X has {X.shape}")
    s, m, t = _relu_params(fn, negative_slope, max_value, threshold)
    dX = np.empty_like(X)
    _param_act.relu_backward(_flat_rows(X), _flat_rows(dY), _flat_rows(dX), s, m, t)
    return dX


def _alpha(fn, alpha) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
        raise ValueError(f"{fn}: alpha must be a number, got {alpha!r}")
    return float(alpha)


def elu_forward(X, alpha=1.0) -> np.ndarray:
    """X where X > 0, else alpha * (exp(X) - 1)."""
    X = _Call("elu_forward").input("X", X)
    Y = np.empty_like(X)
    _param_act.elu_forward(_flat_rows(X), _flat_rows(Y), _alpha("elu_forward", alpha))
    return Y


def elu_backward(X, dY, alpha=1.0) -> np.ndarray:
    """dX = dY * elu'(X)."""
    fn = "elu_backward"
    c = _Call(fn)
    X = c.input("X", X)
    dY = c.input("dY", dY)
    if dY.shape != X.shape:
        raise ValueError(f"{fn}: dY has shape {dY.shape} but X has {X.shape}")
    dX = np.empty_like(X)
    _param_act.elu_backward(_flat_rows(X), _flat_rows(dY), _flat_rows(dX), _alpha(fn, alpha))
    return dX


def _prelu_alpha(c, X, alpha):
    alpha = c.input("alpha", alpha)
    try:
        full = np.broadcast_to(alpha, X.shape[1:])
    except ValueError:
        raise ValueError(f"{c.fn}: alpha of shape {alpha.shape} does not broadcast to "
                         f"the samples of X {X.shape}") from None
    return alpha, np.ascontiguousarray(full).reshape(-1)


def prelu_forward(X, alpha) -> np.ndarray:
    """max(X, 0) + alpha * min(X, 0); alpha broadcasts over one sample (X.shape[1:])."""
    c = _Call("prelu_forward")
    X = c.input("X", X, min_ndim=2)
    _, a = _prelu_alpha(c, X, alpha)
    Y = np.empty_like(X)
    _param_act.prelu_forward(X.reshape(X.shape[0], -1), a, Y.reshape(X.shape[0], -1))
    return Y


def prelu_backward(X, alpha, dY,
                   want_dX=True) -> Tuple[Optional[np.ndarray], np.ndarray]:
    """Returns (dX, dalpha); dalpha has alpha's shape (summed over the batch and the
    axes alpha is broadcast along)."""
    fn = "prelu_backward"
    c = _Call(fn)
    X = c.input("X", X, min_ndim=2)
    dY = c.input("dY", dY)
    if dY.shape != X.shape:
        raise ValueError(f"{fn}: dY has shape {dY.shape} but X has {X.shape}")
    alpha, a = _prelu_alpha(c, X, alpha)
    n = X.shape[0]
    dX = np.empty_like(X) if want_dX else None
    dfull = np.empty(a.shape, X.dtype)
    _param_act.prelu_backward(X.reshape(n, -1), a, dY.reshape(n, -1),
                              None if dX is None else dX.reshape(n, -1), dfull)
    dfull = dfull.reshape(X.shape[1:])
    # Sum the per-position slopes' gradients over the axes alpha is shared along.
    lead = dfull.ndim - alpha.ndim
    axes = tuple(range(lead)) + tuple(lead + i for i, s in enumerate(alpha.shape)
                                      if s == 1 and dfull.shape[lead + i] != 1)
    dalpha = dfull.sum(axis=axes, keepdims=True).reshape(alpha.shape) if axes else \
        dfull.reshape(alpha.shape)
    return dX, dalpha


def _softmax_rows(c, X, axes):
    nd = X.ndim
    axes = sorted({a + nd if a < 0 else a for a in axes})
    if not axes or axes[0] < 0 or axes[-1] >= nd:
        raise ValueError(f"{c.fn}: axis {axes} is out of range for shape {X.shape}")
    rest = [a for a in range(nd) if a not in axes]
    perm = rest + axes
    return perm, list(np.argsort(perm))


def softmax_forward(X, axis=-1) -> np.ndarray:
    """Softmax over ``axis`` (an int or a tuple): the softmax kernel on rows."""
    c = _Call("softmax_forward")
    X = c.input("X", X, min_ndim=1)
    axes = (axis,) if isinstance(axis, numbers.Integral) else tuple(axis)
    perm, inverse = _softmax_rows(c, X, axes)
    Xt = np.ascontiguousarray(X.transpose(perm))
    k = math.prod(Xt.shape[len(perm) - len(axes):])
    Y = np.empty_like(Xt)
    _activations.activation_forward(Xt.reshape(-1, k), Y.reshape(-1, k), _dense.SOFTMAX)
    return np.ascontiguousarray(Y.transpose(inverse))


def softmax_backward(Y, dY, axis=-1) -> np.ndarray:
    """dX = Y * (dY - sum(dY * Y over axis)), through the softmax kernel's backward."""
    fn = "softmax_backward"
    c = _Call(fn)
    Y = c.input("Y", Y, min_ndim=1)
    dY = c.input("dY", dY)
    if dY.shape != Y.shape:
        raise ValueError(f"{fn}: dY has shape {dY.shape} but Y has {Y.shape}")
    axes = (axis,) if isinstance(axis, numbers.Integral) else tuple(axis)
    perm, inverse = _softmax_rows(c, Y, axes)
    Yt = np.ascontiguousarray(Y.transpose(perm))
    dYt = np.ascontiguousarray(dY.transpose(perm))
    k = math.prod(Yt.shape[len(perm) - len(axes):])
    dX = np.empty_like(Yt)
    _activations.activation_backward(Yt.reshape(-1, k), dYt.reshape(-1, k), dX.reshape(-1, k),
                                     _dense.SOFTMAX)
    return np.ascontiguousarray(dX.transpose(inverse))
