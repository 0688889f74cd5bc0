"""A weight: a named NumPy array owned by one layer."""
from __future__ import annotations

from typing import Tuple

import numpy as np


class Weight:
    """A layer's variable.

    ``trainable`` is the flag the weight was *created* with: false for state such as
    batch-norm moving statistics.  Whether ``fit`` updates it also depends on its
    layer and on the containers through which a model reaches it (rules R2/R3).
    The value is kept in one C-contiguous array for the weight's whole life, so
    kernels and optimizers can update it in place.
    """

    __slots__ = ("name", "layer", "trainable", "_value", "regularizer", "constraint",
                 "__weakref__")

    def __init__(self, name: str, value: np.ndarray, trainable: bool = True, layer=None,
                 regularizer=None, constraint=None):
        self.name = name
        self.layer = layer
        self.trainable = bool(trainable)
        self.regularizer = regularizer  # fastlayers.regularizers: penalty and its gradient
        self.constraint = constraint    # fastlayers.constraints: applied after each update
        value = np.asarray(value)
        # np.ascontiguousarray would turn a 0-d weight into shape (1,).
        self._value = value if value.flags.c_contiguous else value.copy(order="C")

    @property
    def value(self) -> np.ndarray:
        """The weight's array (updated in place by training)."""
        return self._value

    @property
    def shape(self) -> Tuple[int, ...]:
        return self._value.shape

    @property
    def dtype(self) -> np.dtype:
        return self._value.dtype

    @property
    def path(self) -> str:
        """``layer_name/weight_name``."""
        return f"{self.layer.name}/{self.name}" if self.layer is not None else self.name

    def numpy(self) -> np.ndarray:
        """Return a copy of the value."""
        return self._value.copy()

    def assign(self, value) -> None:
        """Copy ``value`` into the weight (same shape; cast to the weight's dtype)."""
        value = real_array(value, f"Weight {self.path!r}: assign")
        if value.shape != self._value.shape:
            raise ValueError(
                f"Weight {self.path!r} has shape {self._value.shape}, "
                f"cannot assign a value of shape {value.shape}")
        np.copyto(self._value, value, casting="unsafe")

    def __array__(self, dtype=None, copy=None):
        return self._value if dtype is None else self._value.astype(dtype)

    def __repr__(self) -> str:
        return (f"<Weight {self.path} shape={self.shape} dtype={self.dtype} "
                f"trainable={self.trainable}>")


def real_array(value, what: str) -> np.ndarray:
    """``value`` as an array of real numbers (bool, integer or float), else a TypeError:
    a complex value would lose its imaginary part in the cast to the weight's dtype."""
    value = np.asarray(value)
    if value.dtype.kind not in "biuf":
        raise TypeError(f"{what} needs real numbers, got an array of dtype {value.dtype}")
    return value
