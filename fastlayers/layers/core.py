"""Dense, Activation and Flatten."""
from __future__ import annotations

import numpy as np

from .. import _act_codes, ops
from ..engine.layer import Layer

# Every name the kernels know (fastlayers/_act_codes.py), in code order.
ACTIVATIONS = tuple(sorted(_act_codes.ACTIVATION_CODES, key=_act_codes.ACTIVATION_CODES.get))


def _activation_name(activation, owner: str) -> str:
    if activation is None:
        return "linear"
    if callable(activation) and hasattr(activation, "__name__"):
        activation = activation.__name__
    if not isinstance(activation, str) or activation.lower() not in ACTIVATIONS:
        raise ValueError(f"{owner}: unknown activation {activation!r}; expected one of {ACTIVATIONS}")
    return activation.lower()


def _check_last_dim(layer, x: np.ndarray, expected: int) -> None:
    if x.ndim < 2 or x.shape[-1] != expected:
        raise ValueError(
            f"Layer {layer.name!r} ({type(layer).__name__}) expects inputs with last dimension "
            f"{expected}, got an array of shape {x.shape}")


class Dense(Layer):
    """``activation(inputs · kernel + bias)`` over the last axis; kernel is (input_dim, units)."""

    def __init__(self, units: int, activation=None, use_bias: bool = True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
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
        self.kernel = self.add_weight("kernel", (d_in, self.units), self.kernel_initializer)
        if self.use_bias:
            self.bias = self.add_weight("bias", (self.units,), self.bias_initializer)
        self.built = True

    def compute_output_shape(self, input_shape):
        if input_shape[-1] != self.kernel.shape[0]:
            raise ValueError(
                f"Layer {self.name!r} (Dense) expects inputs with last dimension "
                f"{self.kernel.shape[0]}, got shape {input_shape}")
        return tuple(input_shape[:-1]) + (self.units,)

    def call(self, inputs, training=None):
        return self._forward([self._as_input_array(inputs)], bool(training), _NO_GRAD, [False], _NODE)[0][0]

    def _forward(self, xs, training, run, need, node):
        x = xs[0]
        d_in = self.kernel.shape[0]
        _check_last_dim(self, x, d_in)
        lead = x.shape[:-1]
        x2 = x.reshape(-1, d_in)
        W = self.kernel.value
        b = self.bias.value if self.bias is not None else None
        z = None
        if ops.activation_needs_input(self.activation):
            # gelu/silu/mish: the backward needs the pre-activation too.
            y, z = ops.dense_forward(x2, W, b, self.activation, Z=True)
        else:
            y = ops.dense_forward(x2, W, b, self.activation)
        want_w = run.wants(self.kernel)
        want_b = self.bias is not None and run.wants(self.bias)
        want_x = run.backprop and need[0]
        out = y.reshape(lead + (self.units,))
        if not (want_w or want_b or want_x):
            return [out], None

        def backprop(gs):
            dy = np.ascontiguousarray(gs[0]).reshape(-1, self.units)
            dW = db = None
            acc = acc_b = False
            if want_w:
                dW, acc = run.grads.slot(self.kernel)
            if want_b:
                db, acc_b = run.grads.slot(self.bias)
            if want_w and want_b and acc != acc_b:
                # Kernel and bias are always reached together; keep this exact anyway.
                db_step = np.empty_like(db)
                dx, _, _ = ops.dense_backward(
                    x2, W, y, dy, self.activation, want_dX=want_x, dW=dW, db=db_step, accumulate=acc,
                    Z=z)
                db[...] = db + db_step if acc_b else db_step
            else:
                dx, _, _ = ops.dense_backward(
                    x2, W, y, dy, self.activation, want_dX=want_x, want_dW=want_w, want_db=want_b,
                    dW=dW, db=db, accumulate=acc if want_w else acc_b, Z=z)
            return [dx.reshape(lead + (d_in,)) if want_x else None]

        return [out], backprop

    def get_config(self):
        cfg = super().get_config()
        cfg.update(units=self.units, activation=self.activation, use_bias=self.use_bias)
        return cfg


class Activation(Layer):
    """Apply an activation by name (any of ``ACTIVATIONS``; softmax and log_softmax over
    the last axis)."""

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = _activation_name(activation, f"Activation {self.name!r}")

    def compute_output_shape(self, input_shape):
        return input_shape

    def call(self, inputs, training=None):
        return self._forward([self._as_input_array(inputs)], bool(training), _NO_GRAD, [False], _NODE)[0][0]

    def _forward(self, xs, training, run, need, node):
        x = xs[0]
        if self.activation == "linear":
            y = x
        else:
            y = ops.activation_forward(x, self.activation)
        if not (run.backprop and need[0]):
            return [y], None

        def backprop(gs):
            if self.activation == "linear":
                return [gs[0]]
            return [ops.activation_backward(y, gs[0], self.activation, X=x)]

        return [y], backprop


class Flatten(Layer):
    """Flatten every axis but the batch axis."""

    def compute_output_shape(self, input_shape):
        rest = input_shape[1:]
        size = None if any(s is None for s in rest) else int(np.prod(rest)) if rest else 1
        return (input_shape[0], size)

    def call(self, inputs, training=None):
        x = self._as_input_array(inputs)
        return x.reshape(x.shape[0], -1)

    def _forward(self, xs, training, run, need, node):
        x = xs[0]
        y = x.reshape(x.shape[0], -1)
        if not (run.backprop and need[0]):
            return [y], None
        return [y], lambda gs: [np.reshape(gs[0], x.shape)]


from ..engine.node import Node as _Node  # noqa: E402
from ..engine.run import Run as _Run  # noqa: E402

# Eager ``call`` runs the same code path as a graph node, with no gradient wanted.
_NO_GRAD = _Run()
_NODE = _Node(None, [], None, False)
