"""The state of one run through a graph.

A run carries what the layers need to know besides their inputs: which weights
get gradients (the compiled set, R3/R9), where gradients are summed (R8), the
containers on the current path (R7: a batch-norm layer reached through a frozen
container runs in inference mode), and the compile-time snapshot of those frozen
states (R4).
"""
from __future__ import annotations

from typing import Dict, FrozenSet, List, Optional

import numpy as np


class GradientStore:
    """Per-weight gradient buffers reused across steps.

    The first contribution in a step overwrites the buffer; later ones (other uses
    of a shared layer, R8) add into it.
    """

    def __init__(self):
        self.buffers: Dict[int, np.ndarray] = {}
        self.touched: set = set()

    def reset(self) -> None:
        self.touched.clear()

    def slot(self, weight) -> "tuple[np.ndarray, bool]":
        """Return ``(buffer, accumulate)`` for ``weight``'s gradient in this step."""
        key = id(weight)
        buf = self.buffers.get(key)
        if buf is None or buf.shape != weight.shape or buf.dtype != weight.dtype:
            buf = np.empty(weight.shape, dtype=weight.dtype)
            self.buffers[key] = buf
        accumulate = key in self.touched
        self.touched.add(key)
        return buf, accumulate

    def add(self, weight, grad: np.ndarray) -> None:
        """Add ``grad`` into the weight's gradient for this step."""
        buf, accumulate = self.slot(weight)
        if accumulate:
            buf += grad
        else:
            np.copyto(buf, grad, casting="same_kind")

    def get(self, weight) -> Optional[np.ndarray]:
        key = id(weight)
        return self.buffers[key] if key in self.touched else None


class Run:
    """Context of one forward (and maybe backward) pass.

    ``train_ids`` are the ids of weights whose gradients are wanted; empty when the
    run does not backpropagate.  ``frozen_bn`` maps a path key to the frozen state
    of a batch-norm layer captured at compile time (None: read the live flags).
    """

    def __init__(self, train_ids: FrozenSet[int] = frozenset(), grads: Optional[GradientStore] = None,
                 frozen_bn: Optional[Dict[tuple, bool]] = None, backprop: bool = False):
        self.train_ids = train_ids
        self.grads = grads if grads is not None else GradientStore()
        self.frozen_bn = frozen_bn
        self.backprop = backprop
        self.path: List[object] = []

    def wants(self, weight) -> bool:
        """True when this run computes a gradient for ``weight``."""
        return self.backprop and id(weight) in self.train_ids

    def path_key(self, layer) -> tuple:
        return tuple(id(c) for c in self.path) + (id(layer),)

    def layer_frozen(self, layer) -> bool:
        """Whether ``layer`` is frozen in the model being run (R7).

        Its own ``trainable`` is false, or a container on the path has
        ``trainable`` false.  Under ``fit`` the answer is the one taken at
        ``compile()`` (R4).
        """
        if self.frozen_bn is not None:
            key = self.path_key(layer)
            if key in self.frozen_bn:
                return self.frozen_bn[key]
        return (not layer.trainable) or any(not c.trainable for c in self.path)
