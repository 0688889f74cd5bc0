"""Losses with Keras's names; each computes its value and its gradient in one kernel call.

Every loss is a mean over the batch (Keras's default reduction).
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np

from . import ops


class Loss:
    """Base class.  ``loss(y_true, y_pred)`` returns a float; ``loss_and_grad`` also the
    gradient with respect to ``y_pred``."""

    name = "loss"

    def __init__(self, name: Optional[str] = None):
        if name is not None:
            self.name = name

    def __call__(self, y_true, y_pred) -> float:
        """The loss of ``y_pred`` against ``y_true`` (cast to ``y_pred``'s float type)."""
        y_pred = np.asarray(y_pred)
        if y_pred.dtype not in (np.float32, np.float64):
            from . import backend

            y_pred = y_pred.astype(backend.floatx())
        y_pred = np.ascontiguousarray(y_pred) if y_pred.ndim else y_pred.reshape(1)
        y_true = self.prepare_targets(y_true, (None,) + y_pred.shape[1:], y_pred.dtype)
        return self.loss_and_grad(y_true, y_pred, want_grad=False)[0]

    def loss_and_grad(self, y_true, y_pred, want_grad: bool = True) -> Tuple[float, Optional[np.ndarray]]:
        raise NotImplementedError

    def prepare_targets(self, y_true, y_pred_shape, dtype) -> np.ndarray:
        """Convert targets once (fit does this before batching); raise on bad shapes."""
        y = np.asarray(y_true)
        if y.dtype.kind not in "biuf":
            raise TypeError(f"{self.name}: targets must be numeric, got dtype {y.dtype}")
        y = y.astype(dtype, copy=False)
        want = tuple(y_pred_shape[1:])
        if y.ndim == 1 and want == (1,):
            y = y.reshape(-1, 1)
        if tuple(y.shape[1:]) != want and None not in want:
            raise ValueError(
                f"{self.name}: targets have shape {y.shape}, but the model's output has shape "
                f"{tuple(y_pred_shape)}")
        return np.ascontiguousarray(y)

    def get_config(self) -> dict:
        """The constructor arguments, JSON-ready (Keras's names)."""
        cfg = {"name": self.name}
        if hasattr(self, "from_logits"):
            cfg["from_logits"] = self.from_logits
        return cfg

    @classmethod
    def from_config(cls, config: dict) -> "Loss":
        """Rebuild a loss from :meth:`get_config`'s output."""
        return cls(**config)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"


def _2d(a: np.ndarray) -> np.ndarray:
    return a.reshape(a.shape[0], -1) if a.ndim != 2 else a


class MeanSquaredError(Loss):
    """mean((y_pred - y_true)**2)."""

    name = "mean_squared_error"

    def loss_and_grad(self, y_true, y_pred, want_grad=True):
        loss, g = ops.mse(_2d(y_pred), _2d(y_true), want_grad=want_grad)
        return loss, (g.reshape(y_pred.shape) if g is not None else None)


class MeanAbsoluteError(Loss):
    """mean(|y_pred - y_true|)."""

    name = "mean_absolute_error"

    def loss_and_grad(self, y_true, y_pred, want_grad=True):
        loss, g = ops.mae(_2d(y_pred), _2d(y_true), want_grad=want_grad)
        return loss, (g.reshape(y_pred.shape) if g is not None else None)


class BinaryCrossentropy(Loss):
    """Binary cross-entropy on probabilities, or on logits with ``from_logits=True``."""

    name = "binary_crossentropy"

    def __init__(self, from_logits: bool = False, name: Optional[str] = None):
        super().__init__(name)
        self.from_logits = bool(from_logits)

    def loss_and_grad(self, y_true, y_pred, want_grad=True):
        loss, g = ops.binary_crossentropy(_2d(y_pred), _2d(y_true), from_logits=self.from_logits,
                                          want_grad=want_grad)
        return loss, (g.reshape(y_pred.shape) if g is not None else None)


class CategoricalCrossentropy(Loss):
    """Cross-entropy with one-hot (or probability) targets over the last axis."""

    name = "categorical_crossentropy"

    def __init__(self, from_logits: bool = False, name: Optional[str] = None):
        super().__init__(name)
        self.from_logits = bool(from_logits)

    def loss_and_grad(self, y_true, y_pred, want_grad=True):
        loss, g = ops.categorical_crossentropy(y_pred, y_true, from_logits=self.from_logits,
                                               want_grad=want_grad)
        return loss, g


class SparseCategoricalCrossentropy(Loss):
    """Cross-entropy with integer class labels (shape ``(n,)`` or ``(n, 1)``)."""

    name = "sparse_categorical_crossentropy"

    def __init__(self, from_logits: bool = False, name: Optional[str] = None):
        super().__init__(name)
        self.from_logits = bool(from_logits)

    def prepare_targets(self, y_true, y_pred_shape, dtype):
        y = np.asarray(y_true)
        want = tuple(y_pred_shape[1:-1])
        if y.ndim == len(want) + 2 and y.shape[-1] == 1:
            y = y[..., 0]
        if y.ndim != len(want) + 1 or any(w is not None and g != w
                                          for g, w in zip(y.shape[1:], want)):
            shape = ", ".join(["n"] + [str(w) for w in want])
            raise ValueError(
                f"{self.name}: labels must have shape ({shape}) (or with a trailing 1) for an "
                f"output of shape {tuple(y_pred_shape)}, got {y.shape}")
        if y.dtype.kind == "f":
            if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
                raise ValueError(f"{self.name}: labels must be integers, got non-integer values")
        elif y.dtype.kind not in "biu":
            raise TypeError(f"{self.name}: labels must be integers, got dtype {y.dtype}")
        y = y.astype(np.int64)
        k = y_pred_shape[-1]
        if y.size and (y.min() < 0 or (k is not None and y.max() >= k)):
            raise ValueError(
                f"{self.name}: labels must be in [0, {k}), got values in [{y.min()}, {y.max()}]")
        return np.ascontiguousarray(y)

    def loss_and_grad(self, y_true, y_pred, want_grad=True):
        return ops.sparse_categorical_crossentropy(y_pred, y_true, from_logits=self.from_logits,
                                                   want_grad=want_grad)


_BY_NAME = {
    "mse": MeanSquaredError, "mean_squared_error": MeanSquaredError,
    "mae": MeanAbsoluteError, "mean_absolute_error": MeanAbsoluteError,
    "binary_crossentropy": BinaryCrossentropy, "bce": BinaryCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
}


def serialize(loss: Loss) -> dict:
    """Keras's layout: ``{"module", "class_name", "config", "registered_name"}``."""
    from .saving.compile_config import _loss_dict

    return _loss_dict(loss)


def get(identifier: Any) -> Loss:
    """Resolve a loss from a name, a class, an instance or a serialized dict."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, dict) and "class_name" in identifier:
        from .saving.compile_config import _loss_from

        return _loss_from(identifier, None, "losses.get")
    if isinstance(identifier, str):
        cls = _BY_NAME.get(identifier.lower())
        if cls is None:
            raise ValueError(f"Unknown loss {identifier!r}; expected one of {sorted(_BY_NAME)}")
        return cls()
    if isinstance(identifier, type) and issubclass(identifier, Loss):
        return identifier()
    raise TypeError(f"Could not interpret loss {identifier!r}: give a name or a fastlayers.losses.Loss")


mean_squared_error = mse = MeanSquaredError()
mean_absolute_error = mae = MeanAbsoluteError()
