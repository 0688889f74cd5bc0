"""Dropout."""
from __future__ import annotations

from typing import Optional

import numpy as np

from .. import ops
from ..engine.program import OpKind
from ..engine.layer import Layer
from ..utils import random as _random


def _noise_shape(owner: str, value):
    if value is None:
        return None
    try:
        shape = tuple(value)
    except TypeError:
        shape = None
    if not shape or any(d is not None and (isinstance(d, bool) or not isinstance(
            d, (int, np.integer)) or d < 1) for d in shape):
        raise ValueError(f"{owner}: noise_shape must be a tuple of positive ints or None "
                         f"(the batch axis included), got {value!r}")
    return tuple(None if d is None else int(d) for d in shape)


class Dropout(Layer):
    """Zero a fraction ``rate`` of the inputs in training mode, scaling the rest by 1/(1-rate).

    It drops whenever it runs in training mode, whatever its ``trainable`` (R6,
    seed 002): ``trainable`` is about weights and Dropout has none.  In inference
    it is the identity.  Masks come from a counter-based generator seeded by
    ``seed`` (drawn from :func:`fastlayers.utils.set_random_seed`'s generator when
    not given): the same seed gives the same sequence of masks.

    ``noise_shape`` (Keras's: the mask's shape, batch axis included, None entries
    taking the input's) shares one keep/drop along its axes of size 1; such a layer
    draws its mask in :meth:`forward`, a callback op in training programs.
    """

    def __init__(self, rate: float, noise_shape=None, seed: Optional[int] = None, **kwargs):
        super().__init__(**kwargs)
        self.noise_shape = _noise_shape(f"Dropout {self.name!r}", noise_shape)
        # A one-element array the compiled step reads every step, so a rate changed
        # after compile() applies from the next step, as it does in eager Keras.
        self._rate = np.zeros(1, dtype=np.float64)
        self.rate = rate
        self.seed = _random.draw_seed(seed)
        # A one-element array so the fused training step can advance it in place.
        self._counter = np.zeros(1, dtype=np.uint64)

    def compute_output_shape(self, input_shape):
        if self.noise_shape is not None:
            self._mask_shape(tuple(input_shape))
        return input_shape

    def _mask_shape(self, shape):
        """The mask's shape for inputs of ``shape`` (entries may be None before a run)."""
        ns = self.noise_shape
        if len(ns) != len(shape) or any(n is not None and s is not None and n not in (1, s)
                                        for n, s in zip(ns, shape)):
            raise ValueError(f"Layer {self.name!r} (Dropout): noise_shape {ns} does not "
                             f"broadcast to inputs of shape {shape}")
        return tuple(s if n is None else n for n, s in zip(ns, shape))

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
        if self.noise_shape is not None:
            return NotImplemented  # a broadcast mask: forward() draws it (callback op)
        return ctx.emit(OpKind.DROPOUT, rate=self.rate, seed=self.seed, counter=self._counter,
                        kwargs={"rate": self._rate})

    def forward(self, inputs, training=False):
        """``(outputs, backprop)``: the engine's dropout op, or with ``noise_shape`` the
        broadcast mask drawn here from the same counter-based generator."""
        if self.noise_shape is None:
            return super().forward(inputs, training=training)
        x = np.asarray(inputs)
        if not training or self.rate == 0:
            return x, lambda dy: (dy, [])
        mshape = self._mask_shape(x.shape)
        size = int(np.prod(mshape))
        counter = int(self._counter[0])
        self._counter[0] = (counter + size) & ((1 << 64) - 1)
        # ones * mask / (1 - rate): the factor each kept entry is scaled by, 0 elsewhere.
        scale, _ = ops.dropout_forward(np.ones(mshape, x.dtype), self.rate, self.seed, counter)
        return x * scale, lambda dy: (np.asarray(dy) * scale, [])

    def get_config(self):
        cfg = super().get_config()
        cfg.update(rate=self.rate, seed=self.seed)
        if self.noise_shape is not None:
            cfg.update(noise_shape=self.noise_shape)
        return cfg

    def _saveable_state(self):
        """State saved with the weights: the mask counter, so a resumed run draws the same masks."""
        return {"counter": self._counter}
