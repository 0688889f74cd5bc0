"""Convolution layers (channels_last): Conv1D, Conv2D, Conv2DTranspose,
DepthwiseConv2D, SeparableConv2D.

Weights and their order are Keras's, so ``set_weights`` takes Keras arrays as they
are: ``kernel`` (kh, kw, in, filters) -- (k, in, filters) for Conv1D,
(kh, kw, filters, in) for Conv2DTranspose -- then ``bias``.  The arithmetic is the
im2col + BLAS GEMM kernel of ``csrc/_conv.pxd``, with the bias and activation fused
after the GEMM.  In a model each is lowered to ops of the step program (``_lower``):
Conv1D and Conv2D a CONV op, DepthwiseConv2D a DEPTHWISE op (csrc/_depthwise.pxd),
SeparableConv2D a DEPTHWISE then a 1x1 CONV op, Conv2DTranspose a CONV_TRANSPOSE op
(the data gradient of the convolution with its kernel).  Direct calls run the
public custom-layer protocol (``forward`` returns ``(outputs, backprop)``).

Regularizers and constraints are Keras's arguments, as on Dense: weight penalties
and constraints on the weights (``add_weight``), ``activity_regularizer`` an
ActivityRegularization layer in ``_activity`` that the layer's op is followed by.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from .. import _act_codes, _codes, initializers, ops
from ..engine.layer import Layer
from ..engine.program import OpKind
from . import _args
from .core import _activation_name, activity_op, add_penalties_config, set_penalties


def _conv_out(length, k, s, d, padding, layer=None):
    if length is None:
        return None
    out = ops.conv_output_length(length, k, s, d, padding)[0]
    if out <= 0 and layer is not None:
        # Keras refuses too: "Computed output size would be negative".
        raise ValueError(f"Layer {layer.name!r} ({type(layer).__name__}): a kernel of "
                         f"effective size {(k - 1) * d + 1} does not fit an input of length "
                         f"{length} with padding={padding!r}")
    return out


def _then_activity(layer, ctx, y):
    """The activity penalty's op after the layer's (none without an activity_regularizer)."""
    activity = getattr(layer, "_activity", None)
    if activity is not None:
        y = ctx.then(OpKind.CALLBACK, y[0], layer=activity)
    return y


def _check_lowered_input(layer, shape, channels, rank=2):
    """The checks a direct call makes (forward), on the program's per-sample ``shape``."""
    _args.check_shape_rank(layer, (None,) + shape, rank + 2)
    if shape[-1] != channels:
        raise ValueError(f"Layer {layer.name!r} ({type(layer).__name__}) expects "
                         f"{channels} channels on the last axis, got shape {(None,) + shape}")
    layer.compute_output_shape((None,) + shape)  # a kernel that does not fit raises


def _emit_activated(ctx, kind, weights, activation, geom, emit=None):
    """An op with ``activation`` fused (``emit(kind, weights, act=, kwargs=)``, default
    ``ctx.emit``), or linear then an ACTIVATION op for gelu/silu/mish, whose gradient
    needs the pre-activation, kept in its own slot."""
    emit = emit or ctx.emit
    code = _act_codes.ACTIVATION_CODES[activation]
    if activation in _act_codes.NEEDS_INPUT:
        z = emit(kind, weights, act=_codes.ACT_LINEAR, kwargs={"geom": geom})
        return ctx.then(OpKind.ACTIVATION, z[0], act=code)
    return emit(kind, weights, act=code, kwargs={"geom": geom})


class _Conv(Layer):
    """Shared N-D (N = 1, 2) convolution over channels_last inputs."""

    rank = 2
    _paddings = ("valid", "same")
    _kernel_arg = "kernel"  # the prefix of the kernel's arguments in Keras's signature

    def __init__(self, filters: int, kernel_size, strides=1, padding: str = "valid",
                 data_format: Optional[str] = None, dilation_rate=1, groups: int = 1,
                 activation=None, use_bias: bool = True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(**_args.keras_name(type(self), kwargs))
        owner = f"{type(self).__name__} {self.name!r}"
        set_penalties(self, kernel_regularizer, bias_regularizer, activity_regularizer,
                      kernel_constraint, bias_constraint)
        if isinstance(filters, bool) or not isinstance(filters, (int, np.integer)) \
                or filters < 1:
            raise ValueError(f"{owner}: filters must be a positive integer, got {filters!r}")
        self.filters = int(filters)
        self.kernel_size = _args.int_tuple(owner, "kernel_size", kernel_size, self.rank)
        self.strides = _args.int_tuple(owner, "strides", strides, self.rank)
        self.dilation_rate = _args.int_tuple(owner, "dilation_rate", dilation_rate, self.rank)
        self.padding = _args.padding_mode(owner, padding, self._paddings)
        _args.channels_last(owner, data_format)
        self.data_format = "channels_last"
        if groups != 1:
            raise ValueError(f"{owner}: only groups=1 is supported, got {groups!r}")
        self.groups = 1
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            # Keras's rule too.
            raise ValueError(f"{owner}: strides > 1 is not compatible with dilation_rate > 1")
        self.activation = _activation_name(activation, owner)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = _args.initializer(kernel_initializer)
        self.bias_initializer = _args.initializer(bias_initializer)
        self.kernel = None
        self.bias = None

    # -- shapes ---------------------------------------------------------------
    def _kernel_shape(self, channels: int):
        return self.kernel_size + (channels, self.filters)

    def build(self, input_shape):
        _args.check_shape_rank(self, input_shape, self.rank + 2)
        if input_shape[-1] is None:
            raise ValueError(f"Layer {self.name!r} ({type(self).__name__}) needs a known "
                             f"channel dimension, got shape {input_shape}")
        self._channels = int(input_shape[-1])
        self.kernel = self.add_weight("kernel", self._kernel_shape(self._channels),
                                      self.kernel_initializer,
                                      regularizer=self.kernel_regularizer,
                                      constraint=self.kernel_constraint)
        if self.use_bias:
            self.bias = self._add_bias()
        self.built = True

    def _add_bias(self):
        return self.add_weight("bias", (self.filters,), self.bias_initializer,
                               regularizer=self.bias_regularizer,
                               constraint=self.bias_constraint)

    def compute_output_shape(self, input_shape):
        _args.check_shape_rank(self, input_shape, self.rank + 2)
        spatial = [_conv_out(n, k, s, d, self.padding, self) for n, k, s, d in
                   zip(input_shape[1:-1], self.kernel_size, self.strides, self.dilation_rate)]
        return (input_shape[0],) + tuple(spatial) + (self.filters,)

    # -- compute (through the 2-D kernel) ---------------------------------------
    def _as_2d(self, x, W):
        """(x, W, strides, dilation, padding) for the 2-D kernel."""
        return x, W, self.strides, self.dilation_rate, self.padding

    def forward(self, inputs, training=False):
        x = np.asarray(inputs)
        _args.check_input(self, x, self.rank + 2, self._channels)
        self.compute_output_shape((None,) + x.shape[1:])  # a kernel that does not fit raises
        x2, W2, strides, dilation, padding = self._as_2d(x, self.kernel.value)
        b = self.bias.value if self.bias is not None else None
        keep_z = ops.activation_needs_input(self.activation)
        res = ops.conv2d_forward(x2, W2, b, strides, padding, dilation, self.activation,
                                 Z=keep_z)
        y2, z2 = res if keep_z else (res, None)
        y = y2[:, 0] if self.rank == 1 else y2

        def backprop(dy):
            dx, dW, db = ops.conv2d_backward(x2, W2, y2, np.reshape(dy, y2.shape), strides,
                                             padding, dilation, self.activation,
                                             want_db=self.use_bias, Z=z2)
            grads = [dW.reshape(self.kernel.shape)] + ([db] if self.use_bias else [])
            return dx.reshape(x.shape), grads

        return y, backprop

    def _lower_geometry(self, shape):
        """(h, w, c, oh, ow, kh, kw, sh, sw, dh, dw, pt, pl) of the 2-D kernel for an
        input of per-sample ``shape``; Conv1D is height 1, causal a left padding."""
        if self.rank == 1:
            (w, c), h = shape, 1
            (kw,), (sw,), (dw,) = self.kernel_size, self.strides, self.dilation_rate
            kh = sh = dh = 1
            if self.padding == "causal":
                ow, pl = (w - 1) // sw + 1, (kw - 1) * dw
            else:
                ow, pl = ops.conv_output_length(w, kw, sw, dw, self.padding)
            return (h, w, c, 1, ow, kh, kw, sh, sw, dh, dw, 0, pl)
        h, w, c = shape
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.strides, self.dilation_rate
        oh, pt = ops.conv_output_length(h, kh, sh, dh, self.padding)
        ow, pl = ops.conv_output_length(w, kw, sw, dw, self.padding)
        return (h, w, c, oh, ow, kh, kw, sh, sw, dh, dw, pt, pl)

    def _lower(self, ctx):
        if type(self).forward is not _Conv.forward and type(self) is not Conv1D:
            # A subclass with its own forward: run it at its place (the transposed and
            # depthwise convolutions have their own _lower).
            return _then_activity(self, ctx, ctx.callback())
        shape = ctx.slot(0).shape
        # The checks a direct call makes (forward), on the program's shapes.
        _args.check_shape_rank(self, (None,) + shape, self.rank + 2)
        if shape[-1] != self._channels:
            raise ValueError(f"Layer {self.name!r} ({type(self).__name__}) expects "
                             f"{self._channels} channels on the last axis, got shape "
                             f"{(None,) + shape}")
        self.compute_output_shape((None,) + shape)  # a kernel that does not fit raises
        geom = self._lower_geometry(shape)
        weights = [w for w in (self.kernel, self.bias) if w is not None]
        code = _act_codes.ACTIVATION_CODES[self.activation]
        if self.activation in _act_codes.NEEDS_INPUT:
            # gelu/silu/mish: the gradient needs the pre-activation, kept in its own slot.
            z = ctx.emit(OpKind.CONV, weights, act=_codes.ACT_LINEAR, kwargs={"geom": geom})
            y = ctx.then(OpKind.ACTIVATION, z[0], act=code)
        else:
            y = ctx.emit(OpKind.CONV, weights, act=code, kwargs={"geom": geom})
        return _then_activity(self, ctx, y)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(filters=self.filters, kernel_size=self.kernel_size, strides=self.strides,
                   padding=self.padding, data_format=self.data_format,
                   dilation_rate=self.dilation_rate, groups=self.groups,
                   activation=self.activation, use_bias=self.use_bias)
        k = self._kernel_arg
        cfg[f"{k}_initializer"] = initializers.serialize(self.kernel_initializer)
        cfg["bias_initializer"] = initializers.serialize(self.bias_initializer)
        return add_penalties_config(cfg, **{
            f"{k}_regularizer": self.kernel_regularizer,
            "bias_regularizer": self.bias_regularizer,
            "activity_regularizer": self.activity_regularizer,
            f"{k}_constraint": self.kernel_constraint, "bias_constraint": self.bias_constraint})


class Conv2D(_Conv):
    """2-D convolution over (batch, rows, cols, channels); kernel (kh, kw, in, filters).

    ``padding="same"`` pads as Keras/TensorFlow do (the odd element after).
    """

    rank = 2


class Conv1D(_Conv):
    """1-D convolution over (batch, steps, channels); kernel (k, in, filters).

    padding is "valid", "same" or "causal" (left padding only, for sequence models).
    Runs as the 2-D kernel with height 1.
    """

    rank = 1
    _paddings = ("valid", "same", "causal")

    def compute_output_shape(self, input_shape):
        _args.check_shape_rank(self, input_shape, 3)
        steps = input_shape[1]
        if steps is not None:
            steps = _conv_out(steps, self.kernel_size[0], self.strides[0],
                              self.dilation_rate[0],
                              "same" if self.padding == "causal" else self.padding, self)
            if self.padding == "causal":
                steps = (input_shape[1] - 1) // self.strides[0] + 1
        return (input_shape[0], steps, self.filters)

    def forward(self, inputs, training=False):
        if self.padding != "causal":
            return super().forward(inputs, training)
        x = np.asarray(inputs)
        _args.check_input(self, x, 3, self._channels)
        left = (self.kernel_size[0] - 1) * self.dilation_rate[0]
        y, bp = super().forward(np.pad(x, ((0, 0), (left, 0), (0, 0))), training)

        def backprop(dy):
            dx, grads = bp(dy)
            return dx[:, left:], grads

        return y, backprop

    def _as_2d(self, x, W):
        # Causal padding is applied in forward: here it is a valid convolution.
        return (x[:, None], W[None], (1,) + self.strides, (1,) + self.dilation_rate,
                "valid" if self.padding == "causal" else self.padding)


class Conv2DTranspose(_Conv):
    """Transposed 2-D convolution; kernel (kh, kw, filters, in) as Keras.

    Its forward pass is the input gradient of a convolution with that kernel, and
    its backward pass a forward convolution: the same GEMM kernels.  Output size:
    "valid": (n - 1) * stride + (k - 1) * dilation + 1; "same": n * stride.
    ``output_padding`` is not supported.
    """

    rank = 2

    def __init__(self, filters, kernel_size, strides=1, padding="valid",
                 output_padding=None, data_format=None, dilation_rate=1, activation=None,
                 use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(filters, kernel_size, strides, padding, data_format, dilation_rate,
                         1, activation, use_bias, kernel_initializer, bias_initializer,
                         kernel_regularizer, bias_regularizer, activity_regularizer,
                         kernel_constraint, bias_constraint, **kwargs)
        if output_padding is not None:
            raise ValueError(f"Conv2DTranspose {self.name!r}: output_padding is not supported")
        self.output_padding = None

    def get_config(self):
        cfg = super().get_config()
        cfg.pop("groups", None)  # not an argument of Keras's Conv2DTranspose
        cfg.update(output_padding=None)
        return cfg

    def _kernel_shape(self, channels):
        return self.kernel_size + (self.filters, channels)

    def _out_len(self, n, k, s, d):
        if n is None:
            return None
        if self.padding == "same":
            return n * s
        return (n - 1) * s + (k - 1) * d + 1

    def compute_output_shape(self, input_shape):
        _args.check_shape_rank(self, input_shape, 4)
        spatial = [self._out_len(n, k, s, d) for n, k, s, d in
                   zip(input_shape[1:3], self.kernel_size, self.strides, self.dilation_rate)]
        return (input_shape[0],) + tuple(spatial) + (self.filters,)

    def forward(self, inputs, training=False):
        x = np.asarray(inputs)
        _args.check_input(self, x, 4, self._channels)
        W = self.kernel.value
        out_shape = (x.shape[0],) + self.compute_output_shape((None,) + x.shape[1:])[1:]
        geom = (self.strides, self.padding, self.dilation_rate)
        z, _, _ = ops.conv2d_backward(None, W, None, x, *geom, input_shape=out_shape,
                                      want_dW=False, want_db=False)
        if self.bias is not None:
            z += self.bias.value
        if self.activation == "linear":
            y = z
        else:
            y = ops.activation_forward(z, self.activation)

        def backprop(dy):
            dy = np.asarray(dy, dtype=z.dtype)
            dz = dy if self.activation == "linear" else \
                ops.activation_backward(y, dy, self.activation, X=z)
            dx = ops.conv2d_forward(dz, W, None, *geom)
            _, dW, _ = ops.conv2d_backward(dz, W, None, x, *geom, want_dX=False,
                                           want_db=False)
            grads = [dW]
            if self.use_bias:
                grads.append(dz.reshape(-1, self.filters).sum(axis=0))
            return dx, grads

        return y, backprop

    def _lower(self, ctx):
        """One CONV_TRANSPOSE op: the data gradient of the convolution with this kernel
        from the output (h, w, filters) to the input (oh, ow, in), bias and activation."""
        if type(self).forward is not Conv2DTranspose.forward:
            return _then_activity(self, ctx, ctx.callback())
        shape = ctx.slot(0).shape
        _check_lowered_input(self, shape, self._channels)
        h, w = self.compute_output_shape((None,) + shape)[1:3]
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.strides, self.dilation_rate
        oh, pt = ops.conv_output_length(h, kh, sh, dh, self.padding)
        ow, pl = ops.conv_output_length(w, kw, sw, dw, self.padding)
        if (oh, ow) != tuple(shape[:2]):  # the output-size rule and the convolution's agree
            raise AssertionError(f"{self.name}: transposed geometry {(oh, ow)} != {shape[:2]}")
        geom = (h, w, self.filters, oh, ow, kh, kw, sh, sw, dh, dw, pt, pl)
        weights = [wt for wt in (self.kernel, self.bias) if wt is not None]
        y = _emit_activated(ctx, OpKind.CONV_TRANSPOSE, weights, self.activation, geom)
        return _then_activity(self, ctx, y)


class DepthwiseConv2D(_Conv):
    """Depthwise 2-D convolution: each input channel convolved with its own
    ``depth_multiplier`` filters; weight ``kernel`` (kh, kw, in, depth_multiplier),
    output channel c * depth_multiplier + m, as Keras.  The depthwise kernel of
    csrc/_depthwise.pxd (no channel sum, so no GEMM); bias and activation after it.
    """

    rank = 2
    _kernel_arg = "depthwise"

    def __init__(self, kernel_size, strides=1, padding="valid", depth_multiplier=1,
                 data_format=None, dilation_rate=1, activation=None, use_bias=True,
                 depthwise_initializer="glorot_uniform", bias_initializer="zeros",
                 depthwise_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 depthwise_constraint=None, bias_constraint=None, **kwargs):
        wrong = sorted(k for k in kwargs if k in ("kernel_initializer", "kernel_regularizer",
                                                  "kernel_constraint"))
        if wrong:
            # Keras's names for this kernel's arguments are depthwise_*.
            raise TypeError(f"DepthwiseConv2D: unexpected keyword argument(s) {wrong}; its "
                            f"kernel takes depthwise_initializer, depthwise_regularizer and "
                            f"depthwise_constraint")
        if isinstance(depth_multiplier, bool) or not isinstance(depth_multiplier,
                                                                 (int, np.integer)) \
                or depth_multiplier < 1:
            raise ValueError(f"DepthwiseConv2D: depth_multiplier must be a positive integer, "
                             f"got {depth_multiplier!r}")
        super().__init__(1, kernel_size, strides, padding, data_format, dilation_rate, 1,
                         activation, use_bias, depthwise_initializer, bias_initializer,
                         depthwise_regularizer, bias_regularizer, activity_regularizer,
                         depthwise_constraint, bias_constraint, **kwargs)
        self.depth_multiplier = int(depth_multiplier)
        self.depthwise_initializer = self.kernel_initializer
        self.depthwise_regularizer = self.kernel_regularizer
        self.depthwise_constraint = self.kernel_constraint

    def get_config(self):
        # Keras's DepthwiseConv2D arguments: no filters / groups (they follow the input)
        cfg = super().get_config()
        for key in ("filters", "groups"):
            cfg.pop(key, None)
        cfg.update(depth_multiplier=self.depth_multiplier)
        return cfg

    def build(self, input_shape):
        _args.check_shape_rank(self, input_shape, 4)
        if input_shape[-1] is None:
            raise ValueError(f"Layer {self.name!r} (DepthwiseConv2D) needs a known channel "
                             f"dimension, got shape {input_shape}")
        self._channels = int(input_shape[-1])
        self.filters = self._channels * self.depth_multiplier
        self.kernel = self.add_weight(
            "kernel", self.kernel_size + (self._channels, self.depth_multiplier),
            self.depthwise_initializer, regularizer=self.depthwise_regularizer,
            constraint=self.depthwise_constraint)
        self.depthwise_kernel = self.kernel
        if self.use_bias:
            self.bias = self._add_bias()
        self.built = True

    def forward(self, inputs, training=False):
        x = np.asarray(inputs)
        _args.check_input(self, x, 4, self._channels)
        self.compute_output_shape((None,) + x.shape[1:])  # a kernel that does not fit raises
        W = self.kernel.value
        geom = (self.strides, self.padding, self.dilation_rate)
        z = ops.depthwise_conv2d_forward(x, W, *geom)
        if self.bias is not None:
            z += self.bias.value
        y = z if self.activation == "linear" else ops.activation_forward(z, self.activation)

        def backprop(dy):
            dy = np.asarray(dy, dtype=z.dtype)
            dz = dy if self.activation == "linear" else \
                ops.activation_backward(y, dy, self.activation, X=z)
            dx, dW = ops.depthwise_conv2d_backward(x, W, dz, *geom)
            grads = [dW]
            if self.use_bias:
                grads.append(dz.reshape(-1, self.filters).sum(axis=0))
            return dx, grads

        return y, backprop

    def _lower(self, ctx):
        """One DEPTHWISE op (bias and activation fused, or an ACTIVATION op after it)."""
        if type(self).forward is not DepthwiseConv2D.forward:
            return _then_activity(self, ctx, ctx.callback())
        shape = ctx.slot(0).shape
        _check_lowered_input(self, shape, self._channels)
        weights = [w for w in (self.kernel, self.bias) if w is not None]
        y = _emit_activated(ctx, OpKind.DEPTHWISE, weights, self.activation,
                            self._lower_geometry(shape))
        return _then_activity(self, ctx, y)


class SeparableConv2D(Layer):
    """Depthwise then pointwise (1x1) convolution; weights depthwise_kernel
    (kh, kw, in, depth_multiplier), pointwise_kernel (1, 1, in * depth_multiplier,
    filters), bias, as Keras."""

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None,
                 dilation_rate=1, depth_multiplier=1, activation=None, use_bias=True,
                 depthwise_initializer="glorot_uniform", pointwise_initializer="glorot_uniform",
                 bias_initializer="zeros", depthwise_regularizer=None,
                 pointwise_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 depthwise_constraint=None, pointwise_constraint=None, bias_constraint=None,
                 **kwargs):
        super().__init__(**_args.keras_name(type(self), kwargs))
        from .. import regularizers

        # The weight penalties and constraints live on the inner layers' weights (which
        # become this layer's); the activity penalty is on this layer's output.
        self.activity_regularizer = regularizers.get(activity_regularizer)
        self._activity = activity_op(self, self.activity_regularizer)
        self._depthwise = DepthwiseConv2D(kernel_size, strides, padding, depth_multiplier,
                                          data_format, dilation_rate, None, False,
                                          depthwise_initializer,
                                          depthwise_regularizer=depthwise_regularizer,
                                          depthwise_constraint=depthwise_constraint,
                                          dtype=self.dtype, name=f"{self.name}_depthwise")
        self._pointwise = Conv2D(filters, 1, activation=activation, use_bias=use_bias,
                                 kernel_initializer=pointwise_initializer,
                                 bias_initializer=bias_initializer,
                                 kernel_regularizer=pointwise_regularizer,
                                 bias_regularizer=bias_regularizer,
                                 kernel_constraint=pointwise_constraint,
                                 bias_constraint=bias_constraint, dtype=self.dtype,
                                 name=f"{self.name}_pointwise")
        self.depthwise_regularizer = self._depthwise.depthwise_regularizer
        self.depthwise_constraint = self._depthwise.depthwise_constraint
        self.pointwise_regularizer = self._pointwise.kernel_regularizer
        self.pointwise_constraint = self._pointwise.kernel_constraint
        self.bias_regularizer = self._pointwise.bias_regularizer
        self.bias_constraint = self._pointwise.bias_constraint
        self.filters = self._pointwise.filters
        self.kernel_size = self._depthwise.kernel_size
        self.strides = self._depthwise.strides
        self.padding = self._depthwise.padding
        self.dilation_rate = self._depthwise.dilation_rate
        self.depth_multiplier = self._depthwise.depth_multiplier
        self.activation = self._pointwise.activation
        self.use_bias = self._pointwise.use_bias

    def get_config(self):
        cfg = super().get_config()
        cfg.update(filters=self.filters, kernel_size=self.kernel_size, strides=self.strides,
                   padding=self.padding, data_format=self._depthwise.data_format,
                   dilation_rate=self.dilation_rate, depth_multiplier=self.depth_multiplier,
                   activation=self.activation, use_bias=self.use_bias,
                   depthwise_initializer=initializers.serialize(
                       self._depthwise.kernel_initializer),
                   pointwise_initializer=initializers.serialize(
                       self._pointwise.kernel_initializer),
                   bias_initializer=initializers.serialize(self._pointwise.bias_initializer))
        return add_penalties_config(
            cfg, depthwise_regularizer=self.depthwise_regularizer,
            pointwise_regularizer=self.pointwise_regularizer,
            bias_regularizer=self.bias_regularizer,
            activity_regularizer=self.activity_regularizer,
            depthwise_constraint=self.depthwise_constraint,
            pointwise_constraint=self.pointwise_constraint,
            bias_constraint=self.bias_constraint)

    def build(self, input_shape):
        self._depthwise.build(input_shape)
        mid = self._depthwise.compute_output_shape(input_shape)
        self._pointwise.build(mid)
        # The weights belong to this layer (Keras's names and order).
        dw, pw = self._depthwise.kernel, self._pointwise.kernel
        dw.name, pw.name = "depthwise_kernel", "pointwise_kernel"
        self._weights = [dw, pw] + ([self._pointwise.bias] if self.use_bias else [])
        for w in self._weights:
            w.layer = self
        self.depthwise_kernel, self.pointwise_kernel = dw, pw
        self.bias = self._pointwise.bias
        self.built = True

    def compute_output_shape(self, input_shape):
        return self._pointwise.compute_output_shape(
            self._depthwise.compute_output_shape(input_shape))

    def _lower(self, ctx):
        """A DEPTHWISE op (no bias, linear) into its own slot, the 1x1 pointwise CONV op
        (bias and activation), then the activity penalty.  The weights are this
        layer's, each used by one op."""
        if type(self).forward is not SeparableConv2D.forward:
            return _then_activity(self, ctx, ctx.callback())
        dw, pw = self._depthwise, self._pointwise
        shape = ctx.slot(0).shape
        _check_lowered_input(self, shape, dw._channels)
        geom = dw._lower_geometry(shape)
        oh, ow, mid = geom[3], geom[4], dw.filters
        h = ctx.emit_shaped(OpKind.DEPTHWISE, ctx.inputs[:1], (oh, ow, mid), [dw.kernel],
                            act=_codes.ACT_LINEAR, kwargs={"geom": geom})
        weights = [w for w in (pw.kernel, pw.bias) if w is not None]
        point = (oh, ow, mid, oh, ow, 1, 1, 1, 1, 1, 1, 0, 0)
        y = _emit_activated(ctx, OpKind.CONV, weights, self.activation, point,
                            emit=lambda kind, ws, **kw: ctx.emit_shaped(
                                kind, h, ctx.out_shapes[0], ws, **kw))
        return _then_activity(self, ctx, y)

    def forward(self, inputs, training=False):
        h, bp1 = self._depthwise.forward(inputs, training)
        y, bp2 = self._pointwise.forward(h, training)

        def backprop(dy):
            dh, g2 = bp2(dy)
            dx, g1 = bp1(dh)
            return dx, g1 + g2

        return y, backprop
