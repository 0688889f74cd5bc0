"""Pooling layers (channels_last): MaxPooling1D/2D, AveragePooling1D/2D and the
global poolings, on the kernels of ``csrc/_pool.pxd``.

In a model each is one POOL op of the step program (``_lower``); ``forward`` is the
same kernel for a direct call.  1-D layers run as the 2-D kernel with height 1;
global pooling is one window covering every position.  ``strides`` defaults to ``pool_size`` as in Keras;
"same" padding never lets padding win a max or count in an average.
"""
from __future__ import annotations

import numpy as np

from .. import _codes, ops
from ..engine.layer import Layer
from ..engine.program import OpKind
from . import _args


def _emit_pool(ctx, is_max: bool, hwc, window, strides, padding):
    """The POOL op: geometry (h, w, c, oh, ow, ph, pw, sh, sw, pt, pl) over NHWC."""
    h, w, c = hwc
    (ph, pw), (sh, sw) = window, strides
    oh, pt = ops.conv_output_length(h, ph, sh, 1, padding)
    ow, pl = ops.conv_output_length(w, pw, sw, 1, padding)
    geom = (h, w, c, oh, ow, ph, pw, sh, sw, pt, pl)
    return ctx.emit(OpKind.POOL, act=_codes.POOL_MAX if is_max else _codes.POOL_AVERAGE,
                    kwargs={"geom": geom})


class _Pool(Layer):
    rank = 2
    _max = True

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None,
                 **kwargs):
        super().__init__(**_args.keras_name(type(self), kwargs))
        owner = f"{type(self).__name__} {self.name!r}"
        self.pool_size = _args.int_tuple(owner, "pool_size", pool_size, self.rank)
        self.strides = self.pool_size if strides is None else \
            _args.int_tuple(owner, "strides", strides, self.rank)
        self.padding = _args.padding_mode(owner, padding)
        _args.channels_last(owner, data_format)
        self.data_format = "channels_last"

    def compute_output_shape(self, input_shape):
        _args.check_shape_rank(self, input_shape, self.rank + 2)
        spatial = tuple(None if n is None else
                        ops.conv_output_length(n, k, s, 1, self.padding)[0]
                        for n, k, s in zip(input_shape[1:-1], self.pool_size, self.strides))
        if any(v is not None and v <= 0 for v in spatial):
            raise ValueError(f"Layer {self.name!r} ({type(self).__name__}): pool_size "
                             f"{self.pool_size} does not fit input shape {input_shape} with "
                             f"padding={self.padding!r}")
        return (input_shape[0],) + spatial + (input_shape[-1],)

    def _geom(self):
        if self.rank == 1:
            return (1,) + self.pool_size, (1,) + self.strides
        return self.pool_size, self.strides

    def forward(self, inputs, training=False):
        x = np.asarray(inputs)
        _args.check_input(self, x, self.rank + 2)
        self.compute_output_shape((None,) + x.shape[1:])  # a window that does not fit raises
        x4 = x[:, None] if self.rank == 1 else x
        pool, strides = self._geom()
        if self._max:
            y4, arg = ops.max_pool2d_forward(x4, pool, strides, self.padding)
        else:
            y4 = ops.avg_pool2d_forward(x4, pool, strides, self.padding)
        y = y4[:, 0] if self.rank == 1 else y4

        def backprop(dy):
            dy4 = np.reshape(dy, y4.shape)
            if self._max:
                dx = ops.max_pool2d_backward(dy4, arg, x4.shape)
            else:
                dx = ops.avg_pool2d_backward(dy4, x4.shape, pool, strides, self.padding)
            return dx.reshape(x.shape), []

        return y, backprop

    def _lower(self, ctx):
        shape = ctx.slot(0).shape
        hwc = (1,) + shape if self.rank == 1 else shape
        pool, strides = self._geom()
        return _emit_pool(ctx, self._max, hwc, pool, strides, self.padding)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(pool_size=self.pool_size, strides=self.strides, padding=self.padding,
                   data_format=self.data_format)
        return cfg


class MaxPooling2D(_Pool):
    """Max over pool_size windows of (batch, rows, cols, channels)."""

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None,
                 **kwargs):
        super().__init__(pool_size, strides, padding, data_format, **kwargs)


class AveragePooling2D(_Pool):
    """Mean over pool_size windows of (batch, rows, cols, channels)."""

    _max = False

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None,
                 **kwargs):
        super().__init__(pool_size, strides, padding, data_format, **kwargs)


class MaxPooling1D(_Pool):
    """Max over pool_size steps of (batch, steps, channels)."""

    rank = 1


class AveragePooling1D(_Pool):
    """Mean over pool_size steps of (batch, steps, channels)."""

    rank = 1
    _max = False


class _GlobalPool(Layer):
    rank = 2
    _max = True

    def __init__(self, data_format=None, keepdims: bool = False, **kwargs):
        super().__init__(**_args.keras_name(type(self), kwargs))
        _args.channels_last(f"{type(self).__name__} {self.name!r}", data_format)
        self.data_format = "channels_last"
        self.keepdims = bool(keepdims)

    def compute_output_shape(self, input_shape):
        _args.check_shape_rank(self, input_shape, self.rank + 2)
        if self.keepdims:
            return (input_shape[0],) + (1,) * self.rank + (input_shape[-1],)
        return (input_shape[0], input_shape[-1])

    def forward(self, inputs, training=False):
        x = np.asarray(inputs)
        _args.check_input(self, x, self.rank + 2)
        x4 = x[:, None] if self.rank == 1 else x
        window = x4.shape[1:3]
        if min(window) == 0:
            raise ValueError(f"Layer {self.name!r} ({type(self).__name__}) cannot pool an "
                             f"empty input of shape {x.shape}")
        if self._max:
            y4, arg = ops.max_pool2d_forward(x4, window)
        else:
            y4 = ops.avg_pool2d_forward(x4, window)
        out_shape = (x.shape[0],) + ((1,) * self.rank if self.keepdims else ()) + \
            (x.shape[-1],)

        def backprop(dy):
            dy4 = np.reshape(dy, y4.shape)
            if self._max:
                dx = ops.max_pool2d_backward(dy4, arg, x4.shape)
            else:
                dx = ops.avg_pool2d_backward(dy4, x4.shape, window)
            return dx.reshape(x.shape), []

        return y4.reshape(out_shape), backprop

    def _lower(self, ctx):
        shape = ctx.slot(0).shape
        hwc = (1,) + shape if self.rank == 1 else shape
        return _emit_pool(ctx, self._max, hwc, hwc[:2], hwc[:2], "valid")

    def get_config(self):
        cfg = super().get_config()
        cfg.update(data_format=self.data_format, keepdims=self.keepdims)
        return cfg


class GlobalAveragePooling2D(_GlobalPool):
    """Mean over rows and cols: (batch, rows, cols, ch) -> (batch, ch)."""

    _max = False


class GlobalMaxPooling2D(_GlobalPool):
    """Max over rows and cols: (batch, rows, cols, ch) -> (batch, ch)."""


class GlobalAveragePooling1D(_GlobalPool):
    """Mean over steps: (batch, steps, ch) -> (batch, ch).  (No mask support.)"""

    rank = 1
    _max = False


class GlobalMaxPooling1D(_GlobalPool):
    """Max over steps: (batch, steps, ch) -> (batch, ch)."""

    rank = 1
