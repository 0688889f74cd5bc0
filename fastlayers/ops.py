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
from typing import List, Optional, Tuple

import numpy as np

from ._kernels import activations as _activations
from ._kernels import batchnorm as _batchnorm
from ._kernels import dense as _dense
from ._kernels import dropout as _dropout
from ._kernels import losses as _losses
from . import _codes
from ._kernels import optim as _optim

__all__ = [
    "BACKEND", "ACTIVATIONS", "activation_code",
    "dense_forward", "dense_backward",
    "activation_forward", "activation_backward",
    "dropout_forward", "dropout_backward",
    "batchnorm_forward_train", "batchnorm_forward_infer", "batchnorm_update_moving",
    "batchnorm_backward_train", "batchnorm_backward_infer",
    "optimizer_update", "sq_norm",
    "mse", "mae", "binary_crossentropy", "categorical_crossentropy",
    "sparse_categorical_crossentropy",
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


def _want(fn: str, name: str, want: bool, buf) -> None:
    if buf is not None and not want:
        raise ValueError(f"{fn}: {name} buffer given but want_{name} is False")


# ---------------------------------------------------------------------------
# Dense

def dense_forward(X, W, b=None, activation="linear", out=None) -> np.ndarray:
    """Y = activation(X @ W + b), X of shape (..., d_in), W (d_in, units)."""
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
    _dense.dense_forward(_rows(X), W, b, _rows(Y), code)
    return Y


def dense_backward(X, W, Y, dY, activation="linear", *, want_dX=True, want_dW=True,
                   want_db=True, dX=None, dW=None, db=None, accumulate=False, dZ=None):
    """Gradients of a dense layer: returns (dX, dW, db), None where not wanted.

    X may be None when dW is not wanted; Y (the forward output) may be None for
    a linear activation.  With accumulate=True, dW and db are added into the
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
    _no_overlap(fn, "dX", dX, dZ=dZ, W=W)
    _no_overlap(fn, "dW", dW, X=X, dZ=dZ)
    if X is None:
        # The kernel picks its float/double version from its first argument, so
        # X cannot be None; an empty stand-in of the right dtype is never read.
        X = np.empty((0, d_in), dtype=W.dtype)
    _dense.dense_backward(_rows(X), W,
                          None if Y is None else _rows(Y), _rows(dY), _rows(dZ),
                          None if dX is None else _rows(dX), dW, db, code, bool(accumulate))
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


def activation_backward(Y, dY, activation, out=None) -> np.ndarray:
    """dX = dY * activation'(.), through the forward output Y.  out may be dY."""
    fn = "activation_backward"
    c = _Call(fn)
    Y = c.input("Y", Y, min_ndim=1)
    dY = c.input("dY", dY)
    if dY.shape != Y.shape:
        raise ValueError(f"{fn}: dY has shape {dY.shape} but Y has {Y.shape}")
    code = activation_code(fn, activation)
    dX = c.output("out", out, Y.shape)
    _activations.activation_backward(_rows(Y), _rows(dY), _rows(dX), code)
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
