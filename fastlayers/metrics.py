"""Metrics by name, averaged over an epoch weighted by batch size (as Keras reports them).

A metric compiled through ``weighted_metrics`` is instead the sample-weighted mean of its
per-sample values over the epoch, ``sum(value * w) / sum(w)`` (``Metric.update_state`` with a
``sample_weight``), as tf-keras and Keras 3 compute it.
"""
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


def _rows(values, n: int) -> np.ndarray:
    """Each sample's mean of an elementwise metric array whose first axis is the batch."""
    return np.asarray(values, dtype=np.float64).reshape(n, -1).mean(axis=1)


def _binary_accuracy_rows(y_true, y_pred, threshold: float = 0.5) -> np.ndarray:
    y_true = np.asarray(y_true).reshape(y_pred.shape)
    return _rows((y_pred > threshold) == (y_true > 0.5), len(y_pred))


def _categorical_accuracy_rows(y_true, y_pred) -> np.ndarray:
    return _rows(np.argmax(y_pred, axis=-1) == np.argmax(y_true, axis=-1), len(y_pred))


def _sparse_categorical_accuracy_rows(y_true, y_pred) -> np.ndarray:
    pred = np.argmax(y_pred, axis=-1)
    return _rows(pred == np.asarray(y_true).reshape(pred.shape), len(y_pred))


def _mean_absolute_error_rows(y_true, y_pred) -> np.ndarray:
    return _rows(np.abs(y_pred - np.asarray(y_true).reshape(y_pred.shape)), len(y_pred))


def _mean_squared_error_rows(y_true, y_pred) -> np.ndarray:
    return _rows((y_pred - np.asarray(y_true).reshape(y_pred.shape)) ** 2, len(y_pred))


# Per-sample twins of the built-in metrics: a weighted metric weights each sample's value.
_ROWS = {
    binary_accuracy: _binary_accuracy_rows,
    categorical_accuracy: _categorical_accuracy_rows,
    sparse_categorical_accuracy: _sparse_categorical_accuracy_rows,
    mean_absolute_error: _mean_absolute_error_rows,
    mean_squared_error: _mean_squared_error_rows,
}


def per_sample(fn: Callable, y_true, y_pred):
    """``fn``'s value for each sample, shape ``(n,)``; a float when ``fn`` only gives the
    batch's value (a user function returning a scalar)."""
    n = len(y_pred)
    rows = _ROWS.get(fn)
    if rows is not None:
        return rows(y_true, y_pred)
    value = np.asarray(fn(y_true, y_pred), dtype=np.float64)
    if value.ndim and len(value) == n:  # Keras's convention: one value per sample
        return _rows(value, n)
    return float(np.mean(value))


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

    def update_state(self, y_true, y_pred, sample_weight=None) -> None:
        """Add a batch: its value counted once per sample, or, given ``sample_weight``
        (one weight per sample), each sample's value counted with its weight."""
        n = len(y_pred)
        if not n:
            return
        if sample_weight is None:
            self._total += float(np.mean(self.fn(y_true, y_pred))) * n
            self._count += n
            return
        w = np.asarray(sample_weight, dtype=np.float64).reshape(-1)
        if len(w) != n:
            raise ValueError(f"Metric {self.name!r}: sample_weight has {len(w)} entries for "
                             f"a batch of {n}")
        values = per_sample(self.fn, y_true, y_pred)
        # A user function that gives only the batch's value counts with the batch's weight.
        self._total += float(np.dot(values, w)) if isinstance(values, np.ndarray) \
            else values * float(w.sum())
        self._count += float(w.sum())

    def result(self) -> float:
        # Keras's Mean: a zero total weight gives 0, not NaN.
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
