"""Weight constraints with Keras's names: ``max_norm``, ``non_neg``, ``unit_norm``, ``min_max_norm``.

A constraint projects a weight after each optimizer update that moved it; a frozen
weight never moves, so its constraint is never applied.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

_EPS = 1e-7  # Keras's epsilon in the norm divisions


class Constraint:
    """Base class: ``__call__(w) -> projected w`` (NumPy)."""

    def __call__(self, w):
        return w

    def get_config(self) -> dict:
        return {}

    @classmethod
    def from_config(cls, config: dict) -> "Constraint":
        return cls(**config)


def _norms(w, axis):
    return np.sqrt(np.sum(np.square(w), axis=axis, keepdims=True))


class MaxNorm(Constraint):
    """Rescale so the norm along ``axis`` is at most ``max_value`` (Keras: 2, axis 0)."""

    def __init__(self, max_value: float = 2.0, axis: int = 0):
        self.max_value, self.axis = float(max_value), axis

    def __call__(self, w):
        n = _norms(w, self.axis)
        return w * (np.clip(n, 0, self.max_value) / (_EPS + n))

    def get_config(self):
        return {"max_value": self.max_value, "axis": self.axis}


class NonNeg(Constraint):
    """Negative entries set to zero."""

    def __call__(self, w):
        return w * (w >= 0)


class UnitNorm(Constraint):
    """Norm along ``axis`` made one (Keras: axis 0)."""

    def __init__(self, axis: int = 0):
        self.axis = axis

    def __call__(self, w):
        return w / (_EPS + _norms(w, self.axis))

    def get_config(self):
        return {"axis": self.axis}


class MinMaxNorm(Constraint):
    """Norm along ``axis`` moved into [min_value, max_value] at ``rate`` (Keras's formula)."""

    def __init__(self, min_value: float = 0.0, max_value: float = 1.0, rate: float = 1.0,
                 axis: int = 0):
        self.min_value, self.max_value = float(min_value), float(max_value)
        self.rate, self.axis = float(rate), axis

    def __call__(self, w):
        n = _norms(w, self.axis)
        desired = self.rate * np.clip(n, self.min_value, self.max_value) + (1 - self.rate) * n
        return w * (desired / (_EPS + n))

    def get_config(self):
        return {"min_value": self.min_value, "max_value": self.max_value, "rate": self.rate,
                "axis": self.axis}


max_norm, non_neg, unit_norm, min_max_norm = MaxNorm, NonNeg, UnitNorm, MinMaxNorm
_BY_NAME = {"max_norm": MaxNorm, "non_neg": NonNeg, "unit_norm": UnitNorm,
            "min_max_norm": MinMaxNorm, "maxnorm": MaxNorm, "nonneg": NonNeg,
            "unitnorm": UnitNorm}


def get(identifier: Any) -> Optional[Constraint]:
    """A constraint from None, a name, a config or an instance (or any callable)."""
    if identifier is None or isinstance(identifier, Constraint):
        return identifier
    if isinstance(identifier, str):
        cls = _BY_NAME.get(identifier.lower())
        if cls is None:
            raise ValueError(f"Unknown constraint {identifier!r}; expected one of "
                             f"{sorted(_BY_NAME)}")
        return cls()
    if isinstance(identifier, dict) and "class_name" in identifier:
        cls = {"MaxNorm": MaxNorm, "NonNeg": NonNeg, "UnitNorm": UnitNorm,
               "MinMaxNorm": MinMaxNorm}.get(identifier["class_name"])
        if cls is None:
            raise ValueError(f"Unknown constraint {identifier['class_name']!r}")
        return cls.from_config(identifier.get("config", {}))
    if callable(identifier):
        return identifier
    raise TypeError(f"Could not interpret constraint {identifier!r}")


def serialize(c) -> Optional[dict]:
    if c is None:
        return None
    return {"class_name": type(c).__name__, "config": c.get_config() if hasattr(c, "get_config") else {}}
