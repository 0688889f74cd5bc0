"""Activation layers with parameters: ReLU, LeakyReLU, PReLU, ELU, Softmax.

Where the parameters are those of a named activation (ReLU() = "relu",
ReLU(max_value=6) = "relu6", LeakyReLU(0.2) = "leaky_relu", ELU(1.0) = "elu",
Softmax(axis=-1) = "softmax") the layer runs the fused activation kernel
(csrc/_act.pxd) and lowers to the step program's ACTIVATION op (Softmax over one
other axis: that op between two transposes); other parameter values run the
run-time-parameter kernels of csrc/param_act.pyx as a callback op.
"""
from __future__ import annotations

import numpy as np

from .. import _act_codes, initializers, ops
from ..engine.layer import Layer
from ..engine.program import OpKind


def _number(owner, name, value, allow_none=False, minimum=None):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ValueError(f"{owner}: {name} must be a number, got {value!r}")
    value = float(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{owner}: {name} must be >= {minimum}, got {value!r}")
    return value


class _Elementwise(Layer):
    """A weightless activation: the fused kernel's code when one matches, else the
    layer's run-time-parameter kernel (_param_forward/_param_grad)."""

    _code = None  # activation name run by the kernel, or None

    def compute_output_shape(self, input_shape):
        return input_shape

    def _param_forward(self, x):  # pragma: no cover - overridden
        raise NotImplementedError

    def _param_grad(self, x, y, dy):  # pragma: no cover - overridden
        raise NotImplementedError

    def _lower(self, ctx):
        # Only where the arguments make the layer exactly a named activation (the
        # kernel forward() runs too); other values keep the parameterized callback.
        if self._code is None:
            return NotImplemented
        return ctx.emit(OpKind.ACTIVATION, act=_act_codes.ACTIVATION_CODES[self._code])

    def forward(self, inputs, training=False):
        x = np.asarray(inputs)
        if self._code is not None:
            y = ops.activation_forward(x, self._code)

            def backprop(dy):
                return ops.activation_backward(y, np.asarray(dy, x.dtype), self._code, X=x), []
        else:
            y = self._param_forward(x)

            def backprop(dy):
                dy = np.asarray(dy, x.dtype)
                return self._param_grad(x, y, dy), []

        return y, backprop


class ReLU(_Elementwise):
    """Keras's ReLU: x above threshold (clipped at max_value), else
    negative_slope * (x - threshold)."""

    def __init__(self, max_value=None, negative_slope: float = 0.0, threshold: float = 0.0,
                 **kwargs):
        super().__init__(**kwargs)
        owner = f"ReLU {self.name!r}"
        self.max_value = _number(owner, "max_value", max_value, allow_none=True, minimum=0)
        self.negative_slope = _number(owner, "negative_slope", negative_slope, minimum=0)
        self.threshold = _number(owner, "threshold", threshold)
        if self.negative_slope == 0 and self.threshold == 0:
            if self.max_value is None:
                self._code = "relu"
            elif self.max_value == 6:
                self._code = "relu6"
        elif self.negative_slope == 0.2 and self.threshold == 0 and self.max_value is None:
            self._code = "leaky_relu"

    def _param_forward(self, x):
        return ops.relu_forward(x, self.negative_slope, self.max_value, self.threshold)

    def _param_grad(self, x, y, dy):
        return ops.relu_backward(x, dy, self.negative_slope, self.max_value, self.threshold)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(max_value=self.max_value, negative_slope=self.negative_slope,
                   threshold=self.threshold)
        return cfg


class LeakyReLU(_Elementwise):
    """x for x >= 0, negative_slope * x below (Keras 3 default negative_slope=0.3;
    the "leaky_relu" activation string uses 0.2)."""

    def __init__(self, negative_slope: float = 0.3, **kwargs):
        if "alpha" in kwargs:  # Keras 2's name for it
            negative_slope = kwargs.pop("alpha")
        super().__init__(**kwargs)
        self.negative_slope = _number(f"LeakyReLU {self.name!r}", "negative_slope",
                                      negative_slope, minimum=0)
        if self.negative_slope == 0.2:
            self._code = "leaky_relu"

    def _param_forward(self, x):
        return ops.relu_forward(x, self.negative_slope)

    def _param_grad(self, x, y, dy):
        return ops.relu_backward(x, dy, self.negative_slope)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(negative_slope=self.negative_slope)
        return cfg


class ELU(_Elementwise):
    """x for x > 0, alpha * (exp(x) - 1) below."""

    def __init__(self, alpha: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.alpha = _number(f"ELU {self.name!r}", "alpha", alpha)
        if self.alpha == 1.0:
            self._code = "elu"

    def _param_forward(self, x):
        return ops.elu_forward(x, self.alpha)

    def _param_grad(self, x, y, dy):
        return ops.elu_backward(x, dy, self.alpha)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(alpha=self.alpha)
        return cfg


class Softmax(_Elementwise):
    """Softmax over ``axis`` (an int or a tuple of axes).  No mask argument."""

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
        if not axes or any(isinstance(a, bool) or not isinstance(a, (int, np.integer))
                           for a in axes):
            raise ValueError(f"Softmax {self.name!r}: axis must be an int or a tuple of ints, "
                             f"got {axis!r}")
        self.axis = axis
        self._axes = tuple(int(a) for a in axes)
        if self._axes == (-1,):
            self._code = "softmax"

    def _lower(self, ctx):
        rank = len(ctx.slot(0).shape) + 1  # with the batch axis
        if len(self._axes) != 1 or not -rank <= self._axes[0] < rank:
            return NotImplemented
        axis = self._axes[0] % rank
        if axis == 0:
            return NotImplemented  # over the batch: only the callback does that
        code = _act_codes.ACTIVATION_CODES["softmax"]
        if axis == rank - 1:
            return ctx.emit(OpKind.ACTIVATION, act=code)
        return ctx.emit_moved(OpKind.ACTIVATION, (), axis, act=code)

    def _param_forward(self, x):
        return ops.softmax_forward(x, self._axes)

    def _param_grad(self, x, y, dy):
        return ops.softmax_backward(y, dy, self._axes)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(axis=self.axis)
        return cfg


class PReLU(Layer):
    """max(x, 0) + alpha * min(x, 0) with a trainable ``alpha`` of shape
    input_shape[1:] (1 along ``shared_axes``, counted from 1 as Keras);
    alpha_initializer "zeros" as Keras.  In a model one PRELU op
    (csrc/_prelu.pxd: each value's slope through an index map of the shared axes)."""

    def __init__(self, alpha_initializer="zeros", shared_axes=None, **kwargs):
        super().__init__(**kwargs)
        from ._args import initializer

        self.alpha_initializer = initializer(alpha_initializer)
        if shared_axes is None:
            self.shared_axes = None
        else:
            axes = [shared_axes] if isinstance(shared_axes, (int, np.integer)) else \
                list(shared_axes)
            if any(isinstance(a, bool) or not isinstance(a, (int, np.integer)) or a < 1
                   for a in axes):
                raise ValueError(f"PReLU {self.name!r}: shared_axes count from 1, "
                                 f"got {shared_axes!r}")
            self.shared_axes = tuple(int(a) for a in axes)
        self.alpha = None

    def build(self, input_shape):
        shape = list(input_shape[1:])
        for a in self.shared_axes or ():
            if a > len(shape):
                raise ValueError(f"Layer {self.name!r} (PReLU): shared axis {a} is out of "
                                 f"range for input shape {input_shape}")
            shape[a - 1] = 1
        if any(s is None for s in shape):
            raise ValueError(f"Layer {self.name!r} (PReLU): needs known sizes on the "
                             f"non-shared axes, got {input_shape}")
        self.alpha = self.add_weight("alpha", tuple(shape), self.alpha_initializer)
        self.built = True

    def compute_output_shape(self, input_shape):
        return input_shape

    def _lower(self, ctx):
        shape = tuple(ctx.slot(0).shape)
        a = self.alpha.value
        if shape != tuple(np.broadcast_shapes(a.shape, shape)):
            raise ValueError(f"Layer {self.name!r} (PReLU): alpha {a.shape} does not "
                             f"broadcast to input {(None,) + shape}")
        # Each value of a sample's slope: alpha's flat index broadcast over the sample.
        index = np.broadcast_to(np.arange(a.size).reshape(a.shape), shape).flatten()
        return ctx.emit(OpKind.PRELU, [self.alpha], kwargs={"alpha_index": index})

    def forward(self, inputs, training=False):
        x = np.asarray(inputs)
        a = self.alpha.value
        if x.shape[1:] != tuple(np.broadcast_shapes(a.shape, x.shape[1:])):
            raise ValueError(f"Layer {self.name!r} (PReLU): alpha {a.shape} does not "
                             f"broadcast to input {x.shape}")
        y = ops.prelu_forward(x, a)

        def backprop(dy):
            dx, da = ops.prelu_backward(x, a, np.asarray(dy, x.dtype))
            return dx, [da]

        return y, backprop

    def get_config(self):
        cfg = super().get_config()
        cfg.update(alpha_initializer=initializers.serialize(self.alpha_initializer),
                   shared_axes=self.shared_axes)
        return cfg
