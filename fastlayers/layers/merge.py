"""Concatenate and Add."""
from __future__ import annotations

import numpy as np

from ..engine.layer import Layer
from ..engine.program import OpKind


class _Merge(Layer):
    def _check(self, input_shape):
        if not isinstance(input_shape, list) or len(input_shape) < 2:
            raise ValueError(f"{type(self).__name__} {self.name!r} must be called on a list of "
                             f"at least 2 inputs")

    def build(self, input_shape):
        self._check(input_shape)
        self.built = True



class Concatenate(_Merge):
    """Concatenate a list of inputs along ``axis``."""

    def __init__(self, axis: int = -1, **kwargs):
        super().__init__(**kwargs)
        self.axis = int(axis)

    def compute_output_shape(self, input_shape):
        self._check(input_shape)
        nd = len(input_shape[0])
        if not -nd <= self.axis < nd:
            raise ValueError(f"Concatenate {self.name!r}: axis {self.axis} is out of range for "
                             f"inputs of rank {nd} (shapes {input_shape})")
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

    def _lower(self, ctx):
        nd = len(ctx.slot(0).shape) + 1
        return ctx.emit(OpKind.CONCAT, axis=self.axis % nd - 1)


class Add(_Merge):
    """Elementwise sum of a list of inputs of one shape."""

    def compute_output_shape(self, input_shape):
        self._check(input_shape)
        if len({tuple(s) for s in input_shape}) > 1:
            raise ValueError(f"Add {self.name!r}: inputs must have one shape, got {input_shape}")
        return input_shape[0]

    def _lower(self, ctx):
        return ctx.emit(OpKind.ADD)
