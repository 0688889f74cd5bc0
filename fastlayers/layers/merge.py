"""Merge layers: Concatenate, Add, Subtract, Multiply, Average, Maximum, Minimum, Dot."""
from __future__ import annotations

import numpy as np

from .. import _codes
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

    def get_config(self):
        cfg = super().get_config()
        cfg.update(axis=self.axis)
        return cfg


class _Elementwise(_Merge):
    """Inputs of one shape combined elementwise (one MERGE op of the step program)."""

    _mode = _codes.MERGE_ADD
    _arity = None  # exactly this many inputs, when set

    def _check(self, input_shape):
        super()._check(input_shape)
        if self._arity is not None and len(input_shape) != self._arity:
            raise ValueError(f"{type(self).__name__} {self.name!r} must be called on exactly "
                             f"{self._arity} inputs, got {len(input_shape)}")

    def compute_output_shape(self, input_shape):
        self._check(input_shape)
        if len({tuple(s[1:]) for s in input_shape}) > 1:
            raise ValueError(f"{type(self).__name__} {self.name!r}: inputs must have one shape, "
                             f"got {input_shape}")
        return input_shape[0]

    def _lower(self, ctx):
        return ctx.emit(OpKind.MERGE, act=self._mode)


class Add(_Elementwise):
    """Elementwise sum of a list of inputs of one shape."""

    _mode = _codes.MERGE_ADD


class Subtract(_Elementwise):
    """``inputs[0] - inputs[1]`` (exactly two inputs of one shape)."""

    _mode = _codes.MERGE_SUBTRACT
    _arity = 2


class Multiply(_Elementwise):
    """Elementwise product of a list of inputs of one shape."""

    _mode = _codes.MERGE_MULTIPLY


class Average(_Elementwise):
    """Elementwise mean of a list of inputs of one shape."""

    _mode = _codes.MERGE_AVERAGE


class Maximum(_Elementwise):
    """Elementwise maximum (the gradient goes to the first input that attains it)."""

    _mode = _codes.MERGE_MAXIMUM


class Minimum(_Elementwise):
    """Elementwise minimum (the gradient goes to the first input that attains it)."""

    _mode = _codes.MERGE_MINIMUM


class Dot(_Merge):
    """Per-sample dot product of two inputs along ``axes`` (Keras's ``Dot``).

    ``axes`` is an int or a pair (axes of each input, batch axis excluded: 1 is the
    first feature axis); ``normalize=True`` takes the cosine similarity.  Runs as a
    callback op of the step program (NumPy, with its gradient).
    """

    def __init__(self, axes, normalize: bool = False, **kwargs):
        super().__init__(**kwargs)
        if isinstance(axes, (int, np.integer)):
            axes = (int(axes), int(axes))
        axes = tuple(int(a) for a in axes)
        if len(axes) != 2:
            raise ValueError(f"Dot {self.name!r}: axes must be an int or a pair, got {axes!r}")
        self.axes = axes
        self.normalize = bool(normalize)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(axes=list(self.axes), normalize=self.normalize)
        return cfg

    def _axes(self, shapes):
        out = []
        for a, s in zip(self.axes, shapes):
            nd = len(s)
            ax = a % nd
            if ax == 0:
                raise ValueError(f"Dot {self.name!r}: axes cannot include the batch axis")
            out.append(ax)
        return out

    def compute_output_shape(self, input_shape):
        self._check(input_shape)
        if len(input_shape) != 2:
            raise ValueError(f"Dot {self.name!r} must be called on exactly 2 inputs")
        a, b = input_shape
        if len(a) != 2 or len(b) != 2:
            raise ValueError(f"Dot {self.name!r}: only 2-D inputs (batch, features) are "
                             f"supported, got {input_shape}")
        self._axes(input_shape)
        if a[1] != b[1]:
            raise ValueError(f"Dot {self.name!r}: dimension mismatch {a} vs {b}")
        return (a[0], 1)

    def forward(self, inputs, training=False):
        a, b = (np.asarray(v) for v in inputs)
        if self.normalize:
            na = np.sqrt(np.maximum(np.sum(a * a, axis=1, keepdims=True), 1e-12))
            nb = np.sqrt(np.maximum(np.sum(b * b, axis=1, keepdims=True), 1e-12))
            ua, ub = a / na, b / nb
        else:
            ua, ub = a, b
        y = np.sum(ua * ub, axis=1, keepdims=True)

        def backprop(g):
            g = np.asarray(g)
            if not self.normalize:
                return [g * b, g * a]
            da = g * (ub - y * ua) / na
            db = g * (ua - y * ub) / nb
            return [da, db]

        return y.astype(a.dtype), backprop


def _functional(cls, inputs, **kwargs):
    return cls(**kwargs)(inputs)


def concatenate(inputs, axis: int = -1, **kwargs):
    """Functional form of :class:`Concatenate`."""
    return Concatenate(axis=axis, **kwargs)(inputs)


def add(inputs, **kwargs):
    """Functional form of :class:`Add`."""
    return Add(**kwargs)(inputs)


def subtract(inputs, **kwargs):
    """Functional form of :class:`Subtract`."""
    return Subtract(**kwargs)(inputs)


def multiply(inputs, **kwargs):
    """Functional form of :class:`Multiply`."""
    return Multiply(**kwargs)(inputs)


def average(inputs, **kwargs):
    """Functional form of :class:`Average`."""
    return Average(**kwargs)(inputs)


def maximum(inputs, **kwargs):
    """Functional form of :class:`Maximum`."""
    return Maximum(**kwargs)(inputs)


def minimum(inputs, **kwargs):
    """Functional form of :class:`Minimum`."""
    return Minimum(**kwargs)(inputs)


def dot(inputs, axes, normalize: bool = False, **kwargs):
    """Functional form of :class:`Dot`."""
    return Dot(axes=axes, normalize=normalize, **kwargs)(inputs)
