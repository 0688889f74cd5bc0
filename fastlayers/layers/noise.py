"""Training-time noise layers: GaussianNoise, GaussianDropout, AlphaDropout,
SpatialDropout1D/2D.

Like Dropout (R5/R6) they add or drop noise whenever they run in training mode,
whatever their ``trainable`` (they have no weights); in inference they are the
identity: lowered, an inference op is no op at all (its output slot is its input's,
as Dropout's), and a training op is a callback running ``forward``.  Their random
numbers come from the seeded counter-based generator (``csrc/_rng.pxd``; masks
through the dropout kernel, normals through ``csrc/noise.pyx``): the same ``seed``
gives the same sequence of draws, and the counter in ``_counter`` is what the
gradient checker rewinds.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

from .. import ops
from ..engine.layer import Layer
from . import _args
from ..utils import random as _random

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


class _Noise(Layer):
    def __init__(self, seed: Optional[int] = None, **kwargs):
        super().__init__(**kwargs)
        self.seed = _random.draw_seed(seed)
        # A one-element array, as Dropout's, so a fused step could advance it in place.
        self._counter = np.zeros(1, dtype=np.uint64)

    def _next_counter(self, size: int) -> int:
        c = int(self._counter[0])
        self._counter[0] = (c + size) & ((1 << 64) - 1)
        return c

    def compute_output_shape(self, input_shape):
        return input_shape

    def _lower(self, ctx):
        if not ctx.training:
            return ctx.alias()  # R6: the identity in inference mode
        # No op kind draws these (normals, or a mask per channel): forward() does, with
        # its own counter, as it always has.
        return NotImplemented

    def _identity(self, x):
        return x, lambda dy: (dy, [])

    def get_config(self):
        cfg = super().get_config()
        cfg.update(seed=self.seed)
        return cfg


def _rate(owner, rate):
    if isinstance(rate, bool) or not isinstance(rate, (int, float, np.floating)) \
            or not 0 <= rate < 1:
        raise ValueError(f"{owner}: rate must be a number in [0, 1), got {rate!r}")
    return float(rate)


class GaussianNoise(_Noise):
    """Add N(0, stddev^2) noise in training mode."""

    def __init__(self, stddev: float, seed: Optional[int] = None, **kwargs):
        super().__init__(seed, **kwargs)
        if isinstance(stddev, bool) or not isinstance(stddev, (int, float, np.floating)) \
                or stddev < 0:
            raise ValueError(f"GaussianNoise {self.name!r}: stddev must be a number >= 0, "
                             f"got {stddev!r}")
        self.stddev = float(stddev)

    def forward(self, inputs, training=False):
        x = np.asarray(inputs)
        if not training or self.stddev == 0:
            return self._identity(x)
        noise = ops.random_normal(x.shape, x.dtype, self.seed, self._next_counter(2 * x.size))
        return x + x.dtype.type(self.stddev) * noise, lambda dy: (dy, [])

    def get_config(self):
        cfg = super().get_config()
        cfg.update(stddev=self.stddev)
        return cfg


class GaussianDropout(_Noise):
    """Multiply by N(1, rate / (1 - rate)) noise in training mode."""

    def __init__(self, rate: float, seed: Optional[int] = None, **kwargs):
        super().__init__(seed, **kwargs)
        self.rate = _rate(f"GaussianDropout {self.name!r}", rate)

    def forward(self, inputs, training=False):
        x = np.asarray(inputs)
        if not training or self.rate == 0:
            return self._identity(x)
        noise = ops.random_normal(x.shape, x.dtype, self.seed, self._next_counter(2 * x.size))
        factor = 1 + x.dtype.type(math.sqrt(self.rate / (1 - self.rate))) * noise
        return x * factor, lambda dy: (np.asarray(dy) * factor, [])

    def get_config(self):
        cfg = super().get_config()
        cfg.update(rate=self.rate)
        return cfg


class AlphaDropout(_Noise):
    """Dropout that keeps SELU's mean and variance: dropped units are set to
    -alpha * scale, then everything goes through Keras's affine correction
    a * x + b.  ``noise_shape`` broadcasts the mask (None entries take the input's)."""

    def __init__(self, rate: float, noise_shape=None, seed: Optional[int] = None, **kwargs):
        super().__init__(seed, **kwargs)
        self.rate = _rate(f"AlphaDropout {self.name!r}", rate)
        self.noise_shape = None if noise_shape is None else tuple(noise_shape)

    def _mask_shape(self, shape):
        if self.noise_shape is None:
            return shape
        if len(self.noise_shape) != len(shape):
            raise ValueError(f"AlphaDropout {self.name!r}: noise_shape {self.noise_shape} "
                             f"does not match input shape {shape}")
        out = tuple(s if n is None else int(n) for n, s in zip(self.noise_shape, shape))
        np.broadcast_shapes(out, shape)
        return out

    def forward(self, inputs, training=False):
        x = np.asarray(inputs)
        if not training or self.rate == 0:
            return self._identity(x)
        mshape = self._mask_shape(x.shape)
        ones = np.ones(mshape, x.dtype)
        _, mask = ops.dropout_forward(ones, self.rate, self.seed,
                                      self._next_counter(int(np.prod(mshape))))
        kept = mask.astype(x.dtype)
        alpha_p = -_SELU_ALPHA * _SELU_SCALE
        a = ((1 - self.rate) * (1 + self.rate * alpha_p ** 2)) ** -0.5
        b = -a * alpha_p * self.rate
        dt = x.dtype.type
        y = dt(a) * (x * kept + dt(alpha_p) * (1 - kept)) + dt(b)
        return y, lambda dy: (np.asarray(dy) * (dt(a) * kept), [])

    def get_config(self):
        cfg = super().get_config()
        cfg.update(rate=self.rate, noise_shape=self.noise_shape)
        return cfg


class _SpatialDropout(_Noise):
    rank = 2

    def __init__(self, rate: float, data_format=None, seed: Optional[int] = None, **kwargs):
        super().__init__(seed, **_args.keras_name(type(self), kwargs))

        _args.channels_last(f"{type(self).__name__} {self.name!r}", data_format)
        self.data_format = "channels_last"
        self.rate = _rate(f"{type(self).__name__} {self.name!r}", rate)

    def compute_output_shape(self, input_shape):
        # Checked here so a model refuses a wrong rank even where the layer is an alias.
        _args.check_shape_rank(self, tuple(input_shape), self.rank + 2)
        return input_shape

    def forward(self, inputs, training=False):
        x = np.asarray(inputs)
        if x.ndim != self.rank + 2:
            raise ValueError(f"Layer {self.name!r} ({type(self).__name__}) expects "
                             f"{self.rank + 2}-D inputs, got shape {x.shape}")
        if not training or self.rate == 0:
            return self._identity(x)
        # One keep/drop per (sample, channel), shared by every position.
        mshape = (x.shape[0],) + (1,) * self.rank + (x.shape[-1],)
        scale, _ = ops.dropout_forward(np.ones(mshape, x.dtype), self.rate, self.seed,
                                       self._next_counter(int(np.prod(mshape))))
        return x * scale, lambda dy: (np.asarray(dy) * scale, [])

    def get_config(self):
        cfg = super().get_config()
        cfg.update(rate=self.rate, data_format=self.data_format)
        return cfg


class SpatialDropout1D(_SpatialDropout):
    """Drop whole channels of (batch, steps, channels) in training mode."""

    rank = 1

    def __init__(self, rate: float, seed: Optional[int] = None, **kwargs):
        super().__init__(rate, None, seed, **kwargs)

    def get_config(self):
        cfg = super().get_config()
        cfg.pop("data_format", None)  # Keras's SpatialDropout1D has none
        return cfg


class SpatialDropout2D(_SpatialDropout):
    """Drop whole channels of (batch, rows, cols, channels) in training mode."""
