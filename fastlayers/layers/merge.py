"""Concatenate and Add."""
from __future__ import annotations

import numpy as np

from ..engine.layer import Layer


class _Merge(Layer):
    def _check(self, input_shape):
        if not isinstance(input_shape, list) or len(input_shape) < 2:
            raise ValueError(f"{type(self).__name__} {self.name!r} must be called on a list of "
                             f"at least 2 inputs")

    def build(self, input_shape):
        self._check(input_shape)
        self.built = True

    def call(self, inputs, training=None):
        xs = [self._as_input_array(x, i) for i, x in enumerate(inputs)]
        return self._compute(xs)


class Concatenate(_Merge):
    """Concatenate a list of inputs along ``axis``."""

    def __init__(self, axis: int = -1, **kwargs):
        super().__init__(**kwargs)
        self.axis = int(axis)

    def compute_output_shape(self, input_shape):
        self._check(input_shape)
        nd = len(input_shape[0])
        ax = self.axis % nd
        if ax == 0 or any(len(s) != nd for s in input_shape):
            raise ValueError(f"Concatenate {self.name!r}: incompatible shapes {input_shape} for axis {self.axis}")
        for i in range(nd):
            if i != ax and len({s[i] for s in input_shape if s[i] is not None}) > 1:
                raise ValueError(f"Concatenate {self.name!r}: shapes {input_shape} differ outside axis {self.axis}")
        size = None if any(s[ax] is None for s in input_shape) else sum(s[ax] for s in input_shape)
        out = list(input_shape[0])
        out[ax] = size
        return tuple(out)

    def _compute(self, xs):
        return np.concatenate(xs, axis=self.axis)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(axis=self.axis)
        return cfg

    def _forward(self, xs, training, run, need, node):
        y = self._compute(xs)
        if not (run.backprop and any(need)):
            return [y], None
        ax = self.axis % xs[0].ndim
        splits = np.cumsum([x.shape[ax] for x in xs])[:-1]

        def backprop(gs):
            parts = np.split(gs[0], splits, axis=ax)
            return [np.ascontiguousarray(p) if n else None for p, n in zip(parts, need)]

        return [y], backprop


class Add(_Merge):
    """Elementwise sum of a list of inputs of one shape."""

    def compute_output_shape(self, input_shape):
        self._check(input_shape)
        if len({tuple(s) for s in input_shape}) > 1:
            raise ValueError(f"Add {self.name!r}: inputs must have one shape, got {input_shape}")
        return input_shape[0]

    def _compute(self, xs):
        shapes = {x.shape for x in xs}
        if len(shapes) > 1:
            raise ValueError(f"Add {self.name!r}: inputs must have one shape, got {sorted(shapes)}")
        out = xs[0].copy()
        for x in xs[1:]:
            out += x
        return out

    def _forward(self, xs, training, run, need, node):
        y = self._compute(xs)
        if not (run.backprop and any(need)):
            return [y], None
        return [y], lambda gs: [gs[0] if n else None for n in need]
