"""Dense, Activation and Flatten."""
from __future__ import annotations

from typing import Optional

import numpy as np

from .. import _act_codes, _codes
from ..engine.layer import Layer
from ..engine.program import OpKind

# Every name the kernels know (fastlayers/_act_codes.py), in code order.
ACTIVATION_CODES = _codes.ACTIVATIONS
ACTIVATIONS = tuple(sorted(ACTIVATION_CODES, key=ACTIVATION_CODES.get))


def _activation_name(activation, owner: str) -> str:
    if activation is None:
        return "linear"
    if callable(activation) and hasattr(activation, "__name__"):
        activation = activation.__name__
    if not isinstance(activation, str) or activation.lower() not in ACTIVATIONS:
        raise ValueError(f"{owner}: unknown activation {activation!r}; expected one of {ACTIVATIONS}")
    return activation.lower()


def activity_op(layer: Layer, regularizer) -> Optional["ActivityRegularization"]:
    """The op a layer's ``activity_regularizer`` runs as, after the layer's own (its
    ``_lower`` adds it with ``ctx.then``), or None without one."""
    if regularizer is None:
        return None
    return ActivityRegularization(regularizer=regularizer, name=f"{layer.name}_activity",
                                  dtype=layer.dtype)


def set_penalties(layer: Layer, kernel_regularizer, bias_regularizer, activity_regularizer,
                  kernel_constraint, bias_constraint) -> None:
    """Keras's regularizer and constraint arguments of a layer with a kernel and a bias,
    resolved onto it (``layer._activity``: :func:`activity_op`)."""
    from .. import constraints, regularizers

    layer.kernel_regularizer = regularizers.get(kernel_regularizer)
    layer.bias_regularizer = regularizers.get(bias_regularizer)
    layer.activity_regularizer = regularizers.get(activity_regularizer)
    layer._activity = activity_op(layer, layer.activity_regularizer)
    layer.kernel_constraint = constraints.get(kernel_constraint)
    layer.bias_constraint = constraints.get(bias_constraint)


def add_penalties_config(cfg: dict, **options) -> dict:
    """``cfg`` with each regularizer (``*_regularizer``) or constraint (``*_constraint``)
    of ``options`` that is set, serialized -- only those, so a config without them is
    what Keras writes for the defaults."""
    from .. import constraints, regularizers

    for key, value in options.items():
        if value is not None:
            serialize = constraints.serialize if key.endswith("_constraint") else \
                regularizers.serialize
            cfg[key] = serialize(value)
    return cfg


class Dense(Layer):
    """``activation(inputs · kernel + bias)`` over the last axis; kernel is (input_dim, units)."""

    def __init__(self, units: int, activation=None, use_bias: bool = True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(**kwargs)
        set_penalties(self, kernel_regularizer, bias_regularizer, activity_regularizer,
                      kernel_constraint, bias_constraint)
        if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units < 1:
            raise ValueError(f"Dense {self.name!r}: units must be a positive integer, got {units!r}")
        self.units = int(units)
        self.activation = _activation_name(activation, f"Dense {self.name!r}")
        self.use_bias = bool(use_bias)
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = bias_initializer
        from .. import initializers

        initializers.get(kernel_initializer)
        initializers.get(bias_initializer)
        self.kernel = None
        self.bias = None

    def build(self, input_shape):
        if not isinstance(input_shape, tuple) or len(input_shape) < 2 or input_shape[-1] is None:
            raise ValueError(
                f"Dense {self.name!r}: needs inputs with a known last dimension, got shape {input_shape}")
        d_in = int(input_shape[-1])
        self.kernel = self.add_weight("kernel", (d_in, self.units), self.kernel_initializer,
                                      regularizer=self.kernel_regularizer,
                                      constraint=self.kernel_constraint)
        if self.use_bias:
            self.bias = self.add_weight("bias", (self.units,), self.bias_initializer,
                                        regularizer=self.bias_regularizer,
                                        constraint=self.bias_constraint)
        self.built = True

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) < 2:
            raise ValueError(f"Layer {self.name!r} (Dense) needs inputs of rank >= 2, got shape "
                             f"{input_shape}")
        if self.kernel is not None and input_shape[-1] is not None and \
                input_shape[-1] != self.kernel.shape[0]:
            raise ValueError(
                f"Layer {self.name!r} (Dense) expects inputs with last dimension "
                f"{self.kernel.shape[0]}, got shape {input_shape}")
        return tuple(input_shape[:-1]) + (self.units,)

    def _lower(self, ctx):
        weights = [w for w in (self.kernel, self.bias) if w is not None]
        if self.activation in _act_codes.NEEDS_INPUT:
            # gelu/silu/mish: the gradient needs the pre-activation, so it stays in its
            # own slot and the activation is a separate op.
            z = ctx.emit(OpKind.DENSE, weights, act=_codes.ACT_LINEAR)
            y = ctx.then(OpKind.ACTIVATION, z[0], act=ACTIVATION_CODES[self.activation])
        else:
            y = ctx.emit(OpKind.DENSE, weights, act=ACTIVATION_CODES[self.activation])
        if self._activity is not None:
            y = ctx.then(OpKind.CALLBACK, y[0], layer=self._activity)
        return y

    def get_config(self):
        cfg = super().get_config()
        from .. import initializers

        cfg.update(units=self.units, activation=self.activation, use_bias=self.use_bias,
                   kernel_initializer=initializers.serialize(self.kernel_initializer),
                   bias_initializer=initializers.serialize(self.bias_initializer))
        return add_penalties_config(
            cfg, kernel_regularizer=self.kernel_regularizer,
            bias_regularizer=self.bias_regularizer,
            activity_regularizer=self.activity_regularizer,
            kernel_constraint=self.kernel_constraint, bias_constraint=self.bias_constraint)


class Activation(Layer):
    """Apply an activation by name (any of ``ACTIVATIONS``; softmax and log_softmax over
    the last axis)."""

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = _activation_name(activation, f"Activation {self.name!r}")

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def _lower(self, ctx):
        if self.activation == "linear":
            return ctx.alias()
        return ctx.emit(OpKind.ACTIVATION, act=ACTIVATION_CODES[self.activation])

    def get_config(self):
        cfg = super().get_config()
        cfg.update(activation=self.activation)
        return cfg


class Flatten(Layer):
    """Flatten every axis but the batch axis."""

    def compute_output_shape(self, input_shape):
        rest = input_shape[1:]
        size = None if any(s is None for s in rest) else int(np.prod(rest)) if rest else 1
        return (input_shape[0], size)

    def _lower(self, ctx):
        return ctx.alias()  # a C-contiguous batch is already its flat rows


class Lambda(Layer):
    """Wrap a NumPy function as a layer (Keras's ``Lambda``).

    ``function(inputs, **arguments)`` computes the output; ``output_shape`` (a tuple
    without the batch axis, or a function of the input shape) saves a dry run.  It
    is usable in inference as is; to train through it give ``backprop(inputs,
    outputs, grad_outputs) -> grad_inputs``.  A ``Lambda`` without one on a path that
    needs gradients is refused when the model is compiled.
    """

    def __init__(self, function, output_shape=None, arguments=None, backprop=None, **kwargs):
        super().__init__(**kwargs)
        if not callable(function):
            raise TypeError(f"Lambda {self.name!r}: function must be callable, got {function!r}")
        if backprop is not None and not callable(backprop):
            raise TypeError(f"Lambda {self.name!r}: backprop must be callable, got {backprop!r}")
        self.function = function
        self.arguments = dict(arguments or {})
        self.backprop = backprop
        self._output_shape = output_shape

    def compute_output_shape(self, input_shape):
        spec = self._output_shape
        if spec is None:
            return self._dry_run_output_shape(input_shape)
        if callable(spec):
            return tuple(spec(input_shape))
        batch = input_shape[0][0] if isinstance(input_shape, list) else input_shape[0]
        return (batch,) + tuple(spec)

    def call(self, inputs, training=None):
        return self.function(inputs, **self.arguments)

    def forward(self, inputs, training=False):
        y = np.asarray(self.function(inputs, **self.arguments))

        def backprop(g):
            if self.backprop is None:
                raise ValueError(f"Lambda {self.name!r} has no backprop function")
            return self.backprop(inputs, y, g)

        return y, backprop

    def _check_trainable_through(self) -> None:
        if self.backprop is None:
            raise ValueError(
                f"Lambda {self.name!r} is on a path that needs gradients but has no backprop "
                f"function; give Lambda(function, backprop=lambda inputs, outputs, grad: ...) "
                f"or freeze everything below it")


class ActivityRegularization(Layer):
    """Identity that adds ``l1 * sum(|x|) + l2 * sum(x**2)`` over the batch, divided by the
    batch size (tf.keras's activity regularization), to the loss ``fit`` minimizes.

    Runs as a callback op: forward passes its input on and records the penalty;
    backward adds the penalty's gradient to the incoming one.  Dense's
    ``activity_regularizer`` is this op after the Dense op.
    """

    def __init__(self, l1: float = 0.0, l2: float = 0.0, regularizer=None, **kwargs):
        super().__init__(**kwargs)
        from .. import regularizers

        self.regularizer = (regularizers.get(regularizer) if regularizer is not None
                            else regularizers.L1L2(l1=l1, l2=l2))
        self._penalty = 0.0

    def compute_output_shape(self, input_shape):
        return input_shape

    def forward(self, inputs, training=False):
        x = np.asarray(inputs)
        n = max(1, len(x))
        self._penalty = self.regularizer.penalty(x) / n

        def backprop(g):
            return np.asarray(g) + self.regularizer.gradient(x).astype(x.dtype) / n

        return x.copy(), backprop

    def call(self, inputs, training=None):
        return self.forward(inputs, training)[0]

    def get_config(self):
        cfg = super().get_config()
        cfg.update(self.regularizer.get_config())
        return cfg
