"""Metrics by name, averaged over an epoch weighted by batch size (as Keras reports them)."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np


def binary_accuracy(y_true, y_pred, threshold: float = 0.5) -> float:
    """Fraction of predictions on the right side of ``threshold``."""
    y_true = np.asarray(y_true).reshape(y_pred.shape)
    return float(np.mean((y_pred > threshold) == (y_true > 0.5)))


def categorical_accuracy(y_true, y_pred) -> float:
    """Fraction of rows where the arg-max agrees with the one-hot target's."""
    return float(np.mean(np.argmax(y_pred, axis=-1) == np.argmax(y_true, axis=-1)))


def sparse_categorical_accuracy(y_true, y_pred) -> float:
    """Fraction of rows whose arg-max equals the integer label."""
    pred = np.argmax(y_pred, axis=-1)
    return float(np.mean(pred == np.asarray(y_true).reshape(pred.shape)))


def mean_absolute_error(y_true, y_pred) -> float:
    """mean(|y_pred - y_true|)."""
    return float(np.mean(np.abs(y_pred - np.asarray(y_true).reshape(y_pred.shape))))


def mean_squared_error(y_true, y_pred) -> float:
    """mean((y_pred - y_true)**2)."""
    return float(np.mean((y_pred - np.asarray(y_true).reshape(y_pred.shape)) ** 2))


_BY_NAME = {
    "binary_accuracy": binary_accuracy,
    "categorical_accuracy": categorical_accuracy,
    "sparse_categorical_accuracy": sparse_categorical_accuracy,
    "mae": mean_absolute_error, "mean_absolute_error": mean_absolute_error,
    "mse": mean_squared_error, "mean_squared_error": mean_squared_error,
}


class Metric:
    """A named metric function with a running, batch-size-weighted mean."""

    def __init__(self, name: str, fn: Callable):
        self.name = name
        self.fn = fn
        self.reset_state()

    def reset_state(self) -> None:
        self._total = 0.0
        self._count = 0

    def update_state(self, y_true, y_pred) -> None:
        n = len(y_pred)
        if n:
            self._total += self.fn(y_true, y_pred) * n
            self._count += n

    def result(self) -> float:
        return self._total / self._count if self._count else 0.0

    def get_config(self) -> dict:
        """``{"name": ...}``: metrics are saved by name (Keras's ``compile_config`` form)."""
        return {"name": self.name}

    @classmethod
    def from_config(cls, config: dict) -> "Metric":
        """The metric called ``config["name"]`` (a built-in name or a registered function)."""
        from .saving.registry import resolve

        name = config["name"]
        fn = resolve(name)
        return Metric(name, fn) if callable(fn) else get(name)


def get(identifier: Any, loss=None, output_shape=None) -> Metric:
    """Resolve a metric; ``"accuracy"`` picks the variant that fits the loss, as Keras does."""
    if isinstance(identifier, Metric):
        return identifier
    if callable(identifier) and not isinstance(identifier, str):
        return Metric(getattr(identifier, "__name__", "metric"), identifier)
    if not isinstance(identifier, str):
        raise TypeError(f"Could not interpret metric {identifier!r}")
    key = identifier.lower()
    if key in ("accuracy", "acc"):
        lname = getattr(loss, "name", "")
        if lname == "sparse_categorical_crossentropy":
            fn = sparse_categorical_accuracy
        elif lname == "categorical_crossentropy":
            fn = categorical_accuracy
        elif lname == "binary_crossentropy" or (output_shape is not None and output_shape[-1] == 1):
            fn = binary_accuracy
        else:
            fn = categorical_accuracy
        return Metric(identifier, fn)
    if key not in _BY_NAME:
        raise ValueError(f"Unknown metric {identifier!r}; expected 'accuracy' or one of {sorted(_BY_NAME)}")
    return Metric(identifier, _BY_NAME[key])
