"""BatchNormalization."""
from __future__ import annotations

import numpy as np

from .. import ops
from ..engine.layer import Layer


class BatchNormalization(Layer):
    """Normalize over the batch (Keras's conventions: ``momentum=0.99``, ``epsilon=1e-3``).

    In training mode it normalizes with the batch mean and biased variance and
    updates ``moving = momentum * moving + (1 - momentum) * batch_stat``.  In
    inference mode it uses the moving statistics.

    Frozen state is inference mode (R7, seed 004): when the layer is frozen in the
    model being run -- its own ``trainable`` is false, or a container through which
    it is reached has ``trainable`` false -- it runs in inference mode even under
    ``training=True``, and its moving statistics are not updated.  Under
    ``fit``/``train_on_batch`` that frozen state is the one captured at
    ``compile()`` (R4).  Weights, in order: ``gamma``, ``beta`` (trainable),
    ``moving_mean``, ``moving_variance`` (created non-trainable).
    """

    # Read by compile() when it takes the picture of which layers run frozen (R4).
    _frozen_means_inference = True

    def __init__(self, axis: int = -1, momentum: float = 0.99, epsilon: float = 1e-3,
                 center: bool = True, scale: bool = True, beta_initializer="zeros",
                 gamma_initializer="ones", moving_mean_initializer="zeros",
                 moving_variance_initializer="ones", **kwargs):
        super().__init__(**kwargs)
        if not isinstance(axis, (int, np.integer)):
            raise TypeError(f"BatchNormalization {self.name!r}: axis must be an int, got {axis!r}")
        if not 0.0 <= float(momentum) <= 1.0:
            raise ValueError(f"BatchNormalization {self.name!r}: momentum must be in [0, 1], got {momentum}")
        if not float(epsilon) > 0.0:
            raise ValueError(f"BatchNormalization {self.name!r}: epsilon must be > 0, got {epsilon}")
        self.axis = int(axis)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.center = bool(center)
        self.scale = bool(scale)
        self._inits = (gamma_initializer, beta_initializer, moving_mean_initializer,
                       moving_variance_initializer)
        from .. import initializers

        for init in self._inits:
            initializers.get(init)  # unknown names fail here, not at build
        self.gamma = self.beta = self.moving_mean = self.moving_variance = None

    def build(self, input_shape):
        ndim = len(input_shape)
        axis = self.axis if self.axis >= 0 else ndim + self.axis
        if not 1 <= axis < ndim or input_shape[axis] is None:
            raise ValueError(
                f"BatchNormalization {self.name!r}: axis {self.axis} is invalid for inputs of "
                f"shape {input_shape}")
        self._axis = axis
        c = (int(input_shape[axis]),)
        g_init, b_init, mm_init, mv_init = self._inits
        if self.scale:
            self.gamma = self.add_weight("gamma", c, g_init)
        if self.center:
            self.beta = self.add_weight("beta", c, b_init)
        self.moving_mean = self.add_weight("moving_mean", c, mm_init, trainable=False)
        self.moving_variance = self.add_weight("moving_variance", c, mv_init, trainable=False)
        self._ones = np.ones(c, dtype=self.dtype)
        self._zeros = np.zeros(c, dtype=self.dtype)
        self.built = True

    def compute_output_shape(self, input_shape):
        if input_shape[self._axis] != self.moving_mean.shape[0]:
            raise ValueError(
                f"Layer {self.name!r} (BatchNormalization) expects {self.moving_mean.shape[0]} "
                f"channels on axis {self.axis}, got shape {input_shape}")
        return input_shape

    def call(self, inputs, training=None):
        from .core import _NO_GRAD, _NODE

        return self._forward([self._as_input_array(inputs)], bool(training), _NO_GRAD, [False], _NODE)[0][0]

    def _to2d(self, x):
        moved = np.moveaxis(x, self._axis, -1)
        return np.ascontiguousarray(moved.reshape(-1, moved.shape[-1])), moved.shape

    def _from2d(self, y2, moved_shape):
        return np.moveaxis(y2.reshape(moved_shape), -1, self._axis)

    def _forward(self, xs, training, run, need, node):
        x = xs[0]
        c = self.moving_mean.shape[0]
        if x.ndim <= self._axis or x.shape[self._axis] != c:
            raise ValueError(
                f"Layer {self.name!r} (BatchNormalization) expects {c} channels on axis "
                f"{self.axis}, got an array of shape {x.shape}")
        x2, moved_shape = self._to2d(x)
        gamma = self.gamma.value if self.gamma is not None else self._ones
        beta = self.beta.value if self.beta is not None else self._zeros
        frozen = run.layer_frozen(self)
        batch_mode = training and not frozen and x2.shape[0] > 0
        if batch_mode:
            y2, mean, var, inv_std = ops.batchnorm_forward_train(x2, gamma, beta, self.epsilon)
            ops.batchnorm_update_moving(self.moving_mean.value, self.moving_variance.value,
                                        mean, var, self.momentum)
        else:
            mm = self.moving_mean.value.copy() if run.backprop else self.moving_mean.value
            mv = self.moving_variance.value.copy() if run.backprop else self.moving_variance.value
            y2 = ops.batchnorm_forward_infer(x2, gamma, beta, mm, mv, self.epsilon)
        y = self._from2d(y2, moved_shape)
        want_g = self.gamma is not None and run.wants(self.gamma)
        want_b = self.beta is not None and run.wants(self.beta)
        want_x = run.backprop and need[0]
        if not (want_g or want_b or want_x):
            return [y], None

        def backprop(gs):
            dy2, _ = self._to2d(gs[0])
            if batch_mode:
                dx2, dg, db = ops.batchnorm_backward_train(
                    x2, dy2, gamma, mean, inv_std, want_dX=want_x, want_dgamma=want_g,
                    want_dbeta=want_b)
            else:
                dx2, dg, db = ops.batchnorm_backward_infer(
                    x2, dy2, gamma, mm, mv, self.epsilon, want_dX=want_x, want_dgamma=want_g,
                    want_dbeta=want_b)
            if want_g:
                run.grads.add(self.gamma, dg)
            if want_b:
                run.grads.add(self.beta, db)
            return [self._from2d(dx2, moved_shape) if want_x else None]

        return [y], backprop

    def get_config(self):
        cfg = super().get_config()
        from .. import initializers

        g, b, mm, mv = (initializers.serialize(i) for i in self._inits)
        cfg.update(axis=self.axis, momentum=self.momentum, epsilon=self.epsilon,
                   center=self.center, scale=self.scale, beta_initializer=b,
                   gamma_initializer=g, moving_mean_initializer=mm,
                   moving_variance_initializer=mv)
        return cfg
