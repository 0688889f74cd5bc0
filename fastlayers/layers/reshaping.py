"""Shape layers: Reshape, Permute, RepeatVector, ZeroPadding2D, UpSampling2D,
Cropping2D.  Pure data movement (views, copies, block sums).  In a step program
Reshape is a view of its input (no op), a Permute that is one block swap a
TRANSPOSE op, ZeroPadding2D and Cropping2D one PAD2D op (the input placed at an
offset in the output: positive pads, negative crops) and UpSampling2D one
UPSAMPLE2D op (the loops of csrc/_resample.pxd); their ``forward`` (a direct call)
is NumPy."""
from __future__ import annotations

import math

import numpy as np

from ..engine.layer import Layer
from ..engine.program import OpKind
from . import _args


class Reshape(Layer):
    """Reshape each sample to ``target_shape`` (one entry may be -1)."""

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        try:
            target = tuple(int(v) for v in target_shape)
        except TypeError:
            raise ValueError(f"Reshape {self.name!r}: target_shape must be a tuple of ints, "
                             f"got {target_shape!r}") from None
        if target.count(-1) > 1 or any(v < -1 or v == 0 for v in target):
            raise ValueError(f"Reshape {self.name!r}: target_shape may hold positive ints and "
                             f"one -1, got {target_shape!r}")
        self.target_shape = target

    def _resolve(self, in_shape):
        size = None if any(s is None for s in in_shape) else math.prod(in_shape)
        known = math.prod(v for v in self.target_shape if v != -1)
        if -1 in self.target_shape:
            if size is None:
                return tuple(None if v == -1 else v for v in self.target_shape)
            if size % known:
                raise ValueError(f"Reshape {self.name!r}: cannot reshape {in_shape} into "
                                 f"{self.target_shape}")
            return tuple(size // known if v == -1 else v for v in self.target_shape)
        if size is not None and size != known:
            raise ValueError(f"Reshape {self.name!r}: cannot reshape {in_shape} (size {size}) "
                             f"into {self.target_shape}")
        return self.target_shape

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + self._resolve(tuple(input_shape[1:]))

    def _lower(self, ctx):
        # A C-contiguous batch reshaped per sample is the same buffer: a view, no copy.
        return ctx.alias()

    def forward(self, inputs, training=False):
        x = np.asarray(inputs)
        y = x.reshape((x.shape[0],) + self._resolve(x.shape[1:]))
        return y, lambda dy: (np.reshape(dy, x.shape), [])

    def get_config(self):
        cfg = super().get_config()
        cfg.update(target_shape=self.target_shape)
        return cfg


class Permute(Layer):
    """Permute the non-batch axes; ``dims`` counts them from 1, as Keras."""

    def __init__(self, dims, **kwargs):
        super().__init__(**kwargs)
        dims = tuple(int(d) for d in dims)
        if sorted(dims) != list(range(1, len(dims) + 1)):
            raise ValueError(f"Permute {self.name!r}: dims must be a permutation of "
                             f"1..{len(dims)}, got {dims!r}")
        self.dims = dims

    def compute_output_shape(self, input_shape):
        if len(input_shape) != len(self.dims) + 1:
            raise ValueError(f"Permute {self.name!r}: dims {self.dims} do not match input "
                             f"shape {input_shape}")
        return (input_shape[0],) + tuple(input_shape[d] for d in self.dims)

    def _block_swap(self):
        """``(k, j)`` when ``dims`` keeps axes 1..k and swaps the blocks k+1..j and
        j+1..n (what one TRANSPOSE op does: (outer, t1, t2) -> (outer, t2, t1)), else None."""
        n, d = len(self.dims), self.dims
        k = 0
        while k < n and d[k] == k + 1:
            k += 1
        if k == n:
            return None
        j = d[k] - 1
        if d[k:] != tuple(range(j + 1, n + 1)) + tuple(range(k + 1, j + 1)):
            return None
        return k, j

    def _lower(self, ctx):
        if self.dims == tuple(range(1, len(self.dims) + 1)):
            return ctx.alias()
        swap = self._block_swap()
        if swap is None:
            return NotImplemented  # several moves: the callback's NumPy transpose
        k, j = swap
        shape = ctx.slot(0).shape
        outer, t1, t2 = (math.prod(shape[:k]), math.prod(shape[k:j]), math.prod(shape[j:]))
        return ctx.emit(OpKind.TRANSPOSE, axis=outer, kwargs={"dims": (t1, t2)})

    def forward(self, inputs, training=False):
        x = np.asarray(inputs)
        if x.ndim != len(self.dims) + 1:
            raise ValueError(f"Permute {self.name!r}: dims {self.dims} do not match input "
                             f"shape {x.shape}")
        perm = (0,) + self.dims
        inverse = tuple(np.argsort(perm))
        y = np.ascontiguousarray(x.transpose(perm))
        return y, lambda dy: (np.ascontiguousarray(np.transpose(dy, inverse)), [])

    def get_config(self):
        cfg = super().get_config()
        cfg.update(dims=self.dims)
        return cfg


class RepeatVector(Layer):
    """(batch, features) -> (batch, n, features)."""

    def __init__(self, n: int, **kwargs):
        super().__init__(**kwargs)
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"RepeatVector {self.name!r}: n must be a positive integer, "
                             f"got {n!r}")
        self.n = int(n)

    def compute_output_shape(self, input_shape):
        _args.check_shape_rank(self, input_shape, 2)
        return (input_shape[0], self.n, input_shape[1])

    def _lower(self, ctx):
        # One CONCAT of the input n times (exact: copies, and a sum of the copies'
        # gradients), viewed as (n, features).
        if len(ctx.slot(0).shape) != 1:
            return NotImplemented  # forward's rank check raises
        return ctx.tile(self.n)

    def forward(self, inputs, training=False):
        x = np.asarray(inputs)
        _args.check_input(self, x, 2)
        y = np.repeat(x[:, None, :], self.n, axis=1)
        return y, lambda dy: (np.asarray(dy).sum(axis=1), [])

    def get_config(self):
        cfg = super().get_config()
        cfg.update(n=self.n)
        return cfg


def _pairs(owner, name, value):
    """int, (sym_h, sym_w) or ((top, bottom), (left, right)) -> ((t, b), (l, r))."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (value, value)
    try:
        a, b = value
    except (TypeError, ValueError):
        raise ValueError(f"{owner}: {name} must be an int, a pair, or a pair of pairs, "
                         f"got {value!r}") from None
    out = []
    for v in (a, b):
        pair = _args.int_tuple(owner, name, v, 2, minimum=0)
        out.append(pair)
    return tuple(out)


class ZeroPadding2D(Layer):
    """Zero rows/columns around each (rows, cols, channels) sample."""

    def __init__(self, padding=(1, 1), data_format=None, **kwargs):
        super().__init__(**_args.keras_name(type(self), kwargs))
        owner = f"ZeroPadding2D {self.name!r}"
        _args.channels_last(owner, data_format)
        self.padding = _pairs(owner, "padding", padding)
        self.data_format = "channels_last"

    def compute_output_shape(self, input_shape):
        _args.check_shape_rank(self, input_shape, 4)
        (t, b), (l, r) = self.padding
        h, w = input_shape[1:3]
        return (input_shape[0], None if h is None else h + t + b,
                None if w is None else w + l + r, input_shape[3])

    def _lower(self, ctx):
        h, w, c = ctx.slot(0).shape
        (t, b), (l, r) = self.padding
        return ctx.emit(OpKind.PAD2D, kwargs={"geom": (h, w, c, h + t + b, w + l + r, t, l)})

    def forward(self, inputs, training=False):
        x = np.asarray(inputs)
        _args.check_input(self, x, 4)
        (t, b), (l, r) = self.padding
        y = np.pad(x, ((0, 0), (t, b), (l, r), (0, 0)))
        h, w = x.shape[1:3]
        return y, lambda dy: (np.ascontiguousarray(np.asarray(dy)[:, t:t + h, l:l + w]), [])

    def get_config(self):
        cfg = super().get_config()
        cfg.update(padding=self.padding, data_format=self.data_format)
        return cfg


class Cropping2D(Layer):
    """Remove rows/columns from the edges of each (rows, cols, channels) sample."""

    def __init__(self, cropping=((0, 0), (0, 0)), data_format=None, **kwargs):
        super().__init__(**_args.keras_name(type(self), kwargs))
        owner = f"Cropping2D {self.name!r}"
        _args.channels_last(owner, data_format)
        self.cropping = _pairs(owner, "cropping", cropping)
        self.data_format = "channels_last"

    def compute_output_shape(self, input_shape):
        _args.check_shape_rank(self, input_shape, 4)
        (t, b), (l, r) = self.cropping
        h, w = input_shape[1:3]
        for n, lo, hi, axis in ((h, t, b, "rows"), (w, l, r, "cols")):
            if n is not None and lo + hi >= n:
                raise ValueError(f"Cropping2D {self.name!r}: cropping {self.cropping} leaves "
                                 f"no {axis} of input shape {input_shape}")
        return (input_shape[0], None if h is None else h - t - b,
                None if w is None else w - l - r, input_shape[3])

    def _lower(self, ctx):
        h, w, c = ctx.slot(0).shape
        (t, b), (l, r) = self.cropping
        # The output is the window of the input at (t, l): the input at offset (-t, -l).
        return ctx.emit(OpKind.PAD2D, kwargs={"geom": (h, w, c, h - t - b, w - l - r, -t, -l)})

    def forward(self, inputs, training=False):
        x = np.asarray(inputs)
        _args.check_input(self, x, 4)
        self.compute_output_shape((None,) + x.shape[1:])
        (t, b), (l, r) = self.cropping
        h, w = x.shape[1:3]
        y = np.ascontiguousarray(x[:, t:h - b, l:w - r])

        def backprop(dy):
            return np.pad(np.asarray(dy), ((0, 0), (t, b), (l, r), (0, 0))), []

        return y, backprop

    def get_config(self):
        cfg = super().get_config()
        cfg.update(cropping=self.cropping, data_format=self.data_format)
        return cfg


class UpSampling2D(Layer):
    """Repeat each row ``size[0]`` and each column ``size[1]`` times (nearest only)."""

    def __init__(self, size=(2, 2), data_format=None, interpolation="nearest", **kwargs):
        super().__init__(**_args.keras_name(type(self), kwargs))
        owner = f"UpSampling2D {self.name!r}"
        _args.channels_last(owner, data_format)
        self.size = _args.int_tuple(owner, "size", size, 2)
        if interpolation != "nearest":
            raise ValueError(f"{owner}: only interpolation='nearest' is supported, "
                             f"got {interpolation!r}")
        self.interpolation = "nearest"
        self.data_format = "channels_last"

    def compute_output_shape(self, input_shape):
        _args.check_shape_rank(self, input_shape, 4)
        h, w = input_shape[1:3]
        return (input_shape[0], None if h is None else h * self.size[0],
                None if w is None else w * self.size[1], input_shape[3])

    def _lower(self, ctx):
        h, w, c = ctx.slot(0).shape
        sh, sw = self.size
        return ctx.emit(OpKind.UPSAMPLE2D, kwargs={"geom": (h, w, c, sh, sw)})

    def forward(self, inputs, training=False):
        x = np.asarray(inputs)
        _args.check_input(self, x, 4)
        sh, sw = self.size
        y = np.repeat(np.repeat(x, sh, axis=1), sw, axis=2)
        n, h, w, c = x.shape

        def backprop(dy):
            return np.asarray(dy).reshape(n, h, sh, w, sw, c).sum(axis=(2, 4)), []

        return y, backprop

    def get_config(self):
        cfg = super().get_config()
        cfg.update(size=self.size, data_format=self.data_format,
                   interpolation=self.interpolation)
        return cfg
