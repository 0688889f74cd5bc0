"""Dropout."""
from __future__ import annotations

from typing import Optional

import numpy as np

from .. import ops
from ..engine.layer import Layer
from ..utils import random as _random


class Dropout(Layer):
    """Zero a fraction ``rate`` of the inputs in training mode, scaling the rest by 1/(1-rate).

    It drops whenever it runs in training mode, whatever its ``trainable`` (R6,
    seed 002): ``trainable`` is about weights and Dropout has none.  In inference
    it is the identity.  Masks come from a counter-based generator seeded by
    ``seed`` (drawn from :func:`fastlayers.utils.set_random_seed`'s generator when
    not given): the same seed gives the same sequence of masks.
    """

    def __init__(self, rate: float, seed: Optional[int] = None, **kwargs):
        super().__init__(**kwargs)
        try:
            rate = float(rate)
        except (TypeError, ValueError):
            raise TypeError(f"Dropout {self.name!r}: rate must be a number, got {rate!r}") from None
        if not (0.0 <= rate < 1.0):
            raise ValueError(f"Dropout {self.name!r}: rate must be in [0, 1), got {rate}")
        self.rate = rate
        self.seed = _random.draw_seed(seed)
        # A one-element array so the fused training step can advance it in place.
        self._counter = np.zeros(1, dtype=np.uint64)

    def compute_output_shape(self, input_shape):
        return input_shape

    def call(self, inputs, training=None):
        from .core import _NO_GRAD, _NODE

        return self._forward([self._as_input_array(inputs)], bool(training), _NO_GRAD, [False], _NODE)[0][0]

    def _next_counter(self, size: int) -> int:
        c = int(self._counter[0])
        self._counter[0] = (c + size) & ((1 << 64) - 1)
        return c

    def _forward(self, xs, training, run, need, node):
        x = xs[0]
        if not training or self.rate == 0.0:
            if not (run.backprop and need[0]):
                return [x], None
            return [x], lambda gs: [gs[0]]
        y, mask = ops.dropout_forward(x, self.rate, self.seed, self._next_counter(x.size))
        if not (run.backprop and need[0]):
            return [y], None
        return [y], lambda gs: [ops.dropout_backward(gs[0], mask, self.rate)]

    def get_config(self):
        cfg = super().get_config()
        cfg.update(rate=self.rate, seed=self.seed)
        return cfg

    def _saveable_state(self):
        """State saved with the weights: the mask counter, so a resumed run draws the same masks."""
        return {"counter": self._counter}
