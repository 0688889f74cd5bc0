"""``PyDataset`` (alias ``Sequence``) and ``to_categorical``, with Keras's names."""
from __future__ import annotations

from typing import Optional

import numpy as np


class PyDataset:
    """Base class for batch-producing datasets (Keras's ``PyDataset`` / ``Sequence``).

    Define ``__len__`` (the number of batches per epoch) and ``__getitem__(index)``
    returning one batch: ``x``, ``(x,)``, ``(x, y)`` or ``(x, y, sample_weight)``;
    optionally ``on_epoch_begin``/``on_epoch_end``.  ``fit`` asks for indices
    ``0 .. len(self) - 1`` only, so ``__getitem__`` need not raise ``IndexError``
    past the end.  ``workers``, ``use_multiprocessing`` and ``max_queue_size`` are
    accepted for Keras compatibility; batches are produced in the calling thread.
    """

    def __init__(self, workers: int = 1, use_multiprocessing: bool = False,
                 max_queue_size: int = 10):
        self._workers = workers
        self._use_multiprocessing = use_multiprocessing
        self._max_queue_size = max_queue_size

    @property
    def workers(self) -> int:
        return getattr(self, "_workers", 1)

    @property
    def use_multiprocessing(self) -> bool:
        return getattr(self, "_use_multiprocessing", False)

    @property
    def max_queue_size(self) -> int:
        return getattr(self, "_max_queue_size", 10)

    def __getitem__(self, index: int):
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__(index)")

    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} must define __len__()")

    @property
    def num_batches(self) -> Optional[int]:
        """``len(self)``; ``None`` for an endless dataset (override to return None)."""
        return len(self)

    def __iter__(self):
        # Without this, Python would iterate through __getitem__ until an
        # IndexError that a Keras-style Sequence never raises.
        n = self.num_batches
        if n is None:
            raise TypeError(f"{type(self).__name__} is endless (num_batches is None): "
                            f"iterate it with an explicit number of steps")
        for i in range(n):
            yield self[i]

    def on_epoch_begin(self) -> None:
        """Called before each epoch."""

    def on_epoch_end(self) -> None:
        """Called after each epoch (shuffle your data here, for instance)."""


Sequence = PyDataset


def to_categorical(y, num_classes: Optional[int] = None, dtype: str = "float32") -> np.ndarray:
    """One-hot encode integer class labels (Keras's ``to_categorical``).

    ``y`` of shape ``(n,)`` (a trailing axis of 1 is dropped) gives ``(n, num_classes)``;
    ``num_classes`` defaults to ``max(y) + 1``.
    """
    arr = np.asarray(y)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise ValueError("to_categorical: labels must be integers")
    elif arr.dtype.kind not in "biu":
        raise TypeError(f"to_categorical: labels must be integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    shape = arr.shape
    if len(shape) > 1 and shape[-1] == 1:
        shape = shape[:-1]
    arr = arr.reshape(-1)
    if arr.size and arr.min() < 0:
        raise ValueError(f"to_categorical: labels must be non-negative, got {arr.min()}")
    if num_classes is None:
        num_classes = int(arr.max()) + 1 if arr.size else 0
    num_classes = int(num_classes)
    if arr.size and arr.max() >= num_classes:
        raise ValueError(f"to_categorical: label {arr.max()} out of range for "
                         f"num_classes={num_classes}")
    out = np.zeros((arr.size, num_classes), dtype=dtype)
    out[np.arange(arr.size), arr] = 1
    return out.reshape(shape + (num_classes,))


def normalize(x, axis: int = -1, order: int = 2) -> np.ndarray:
    """Scale ``x`` to unit ``order``-norm along ``axis`` (Keras's ``normalize``).

    Slices whose norm is 0 are left as they are (divided by 1).  Integer input gives
    float64, as NumPy's division does.
    """
    a = np.asarray(x)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"normalize: x must be numeric, got dtype {a.dtype}")
    if a.ndim == 0:
        raise ValueError("normalize: x must have at least one axis")
    if not -a.ndim <= axis < a.ndim:
        raise ValueError(f"normalize: axis {axis} is out of range for an array of rank {a.ndim}")
    norms = np.atleast_1d(np.linalg.norm(a, order, axis))
    norms = np.where(norms == 0, 1, norms)
    return a / np.expand_dims(norms, axis)
