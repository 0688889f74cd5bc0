"""Weight regularizers with Keras's names: ``"l1"``, ``"l2"``, ``L1``, ``L2``, ``L1L2``.

A regularizer adds ``penalty(w)`` to the loss and ``gradient(w)`` to the weight's
gradient.  The rule for frozen weights (fastlayers follows Keras): the penalty of
every regularized weight the model reaches is part of the loss ``fit``/``evaluate``
report (``model.losses`` lists them), but only the weights in the compiled trainable
set receive its gradient; a frozen weight does not move.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np


class Regularizer:
    """Base class: ``penalty(w) -> float`` and ``gradient(w) -> array`` (NumPy)."""

    def __call__(self, w) -> float:
        return self.penalty(w)

    def penalty(self, w) -> float:
        raise NotImplementedError

    def gradient(self, w) -> np.ndarray:
        raise NotImplementedError

    def get_config(self) -> dict:
        return {}

    @classmethod
    def from_config(cls, config: dict) -> "Regularizer":
        return cls(**config)


def _factor(name: str, value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {value!r}") from None
    if not np.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


class L1L2(Regularizer):
    """``l1 * sum(|w|) + l2 * sum(w**2)`` (Keras's defaults: 0 and 0)."""

    def __init__(self, l1: float = 0.0, l2: float = 0.0):
        self.l1 = _factor("L1L2: l1", l1)
        self.l2 = _factor("L1L2: l2", l2)

    def penalty(self, w) -> float:
        w = np.asarray(w, dtype=np.float64)
        out = 0.0
        if self.l1:
            out += self.l1 * float(np.abs(w).sum())
        if self.l2:
            out += self.l2 * float(np.square(w).sum())
        return out

    def gradient(self, w) -> np.ndarray:
        w = np.asarray(w)
        g = np.zeros_like(w)
        if self.l1:
            g += self.l1 * np.sign(w)
        if self.l2:
            g += 2.0 * self.l2 * w
        return g

    def get_config(self) -> dict:
        return {"l1": self.l1, "l2": self.l2}


class L1(L1L2):
    """``l1 * sum(|w|)`` (Keras's default l1=0.01)."""

    def __init__(self, l1: float = 0.01):
        super().__init__(l1=l1)

    def get_config(self) -> dict:
        return {"l1": self.l1}


class L2(L1L2):
    """``l2 * sum(w**2)`` (Keras's default l2=0.01)."""

    def __init__(self, l2: float = 0.01):
        super().__init__(l2=l2)

    def get_config(self) -> dict:
        return {"l2": self.l2}


l1, l2, l1_l2 = L1, L2, L1L2
_BY_NAME = {"l1": L1, "l2": L2, "l1_l2": L1L2, "l1l2": L1L2}


def get(identifier: Any) -> Optional[Regularizer]:
    """A regularizer from None, a name (``"l1"``, ``"l2"``, ``"l1_l2"``), a config or an instance."""
    if identifier is None or isinstance(identifier, Regularizer):
        return identifier
    if isinstance(identifier, str):
        cls = _BY_NAME.get(identifier.lower())
        if cls is None:
            raise ValueError(f"Unknown regularizer {identifier!r}; expected one of "
                             f"{sorted(_BY_NAME)}")
        return cls()
    if isinstance(identifier, dict) and "class_name" in identifier:
        cls = {"L1": L1, "L2": L2, "L1L2": L1L2}.get(identifier["class_name"])
        if cls is None:
            raise ValueError(f"Unknown regularizer {identifier['class_name']!r}")
        return cls.from_config(identifier.get("config", {}))
    raise TypeError(f"Could not interpret regularizer {identifier!r}")


def serialize(reg: Optional[Regularizer]):
    """Keras's ``{"class_name", "config"}`` form (``None`` for none)."""
    if reg is None:
        return None
    return {"class_name": type(reg).__name__, "config": reg.get_config()}
