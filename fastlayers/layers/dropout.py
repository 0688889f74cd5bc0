"""Dropout."""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..engine.program import OpKind
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
        # A one-element array the compiled step reads every step, so a rate changed
        # after compile() applies from the next step, as it does in eager Keras.
        self._rate = np.zeros(1, dtype=np.float64)
        self.rate = rate
        self.seed = _random.draw_seed(seed)
        # A one-element array so the fused training step can advance it in place.
        self._counter = np.zeros(1, dtype=np.uint64)

    def compute_output_shape(self, input_shape):
        return input_shape

    @property
    def rate(self) -> float:
        """The fraction of inputs dropped in training mode, in [0, 1)."""
        return float(self._rate[0])

    @rate.setter
    def rate(self, value) -> None:
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise TypeError(f"Dropout {self.name!r}: rate must be a number, got {value!r}") from None
        if isinstance(value, bool) or not (0.0 <= v < 1.0):
            raise ValueError(f"Dropout {self.name!r}: rate must be in [0, 1), got {value!r}")
        self._rate[0] = v

    def _lower(self, ctx):
        if not ctx.training:
            return ctx.alias()  # R6: identity in inference mode
        return ctx.emit(OpKind.DROPOUT, rate=self.rate, seed=self.seed, counter=self._counter,
                        kwargs={"rate": self._rate})

    def get_config(self):
        cfg = super().get_config()
        cfg.update(rate=self.rate, seed=self.seed)
        return cfg

    def _saveable_state(self):
        """State saved with the weights: the mask counter, so a resumed run draws the same masks."""
        return {"counter": self._counter}
