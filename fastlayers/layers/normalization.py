"""BatchNormalization."""
from __future__ import annotations

import numpy as np

from ..engine.program import OpKind
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
        input_shape = tuple(input_shape)
        if not self.built:
            if not -len(input_shape) <= self.axis < len(input_shape):
                raise ValueError(f"BatchNormalization {self.name!r}: axis {self.axis} is invalid "
                                 f"for inputs of shape {input_shape}")
            return input_shape
        if input_shape[self._axis] is not None and \
                input_shape[self._axis] != self.moving_mean.shape[0]:
            raise ValueError(
                f"Layer {self.name!r} (BatchNormalization) expects {self.moving_mean.shape[0]} "
                f"channels on axis {self.axis}, got shape {input_shape}")
        return input_shape

    def _lower(self, ctx):
        # R7, decided here once: batch statistics only in training mode and when not
        # frozen along this path (the compiled picture under fit); only programs that
        # train (or an eager training call) update the moving statistics.
        batch = ctx.training and not ctx.frozen
        settings = dict(epsilon=self.epsilon, momentum=self.momentum, batch_stats=batch,
                        update_stats=batch and ctx.updates_state)
        weights = [w for w in (self.gamma, self.beta) if w is not None]
        if self._axis == len(ctx.slot(0).shape):
            return ctx.emit(OpKind.BATCHNORM, weights, **settings)
        # Another axis than the last: the same op on the channels moved last.
        return ctx.emit_moved(OpKind.BATCHNORM, weights, self._axis, **settings)

    def get_config(self):
        cfg = super().get_config()
        from .. import initializers

        g, b, mm, mv = (initializers.serialize(i) for i in self._inits)
        cfg.update(axis=self.axis, momentum=self.momentum, epsilon=self.epsilon,
                   center=self.center, scale=self.scale, beta_initializer=b,
                   gamma_initializer=g, moving_mean_initializer=mm,
                   moving_variance_initializer=mv)
        return cfg
