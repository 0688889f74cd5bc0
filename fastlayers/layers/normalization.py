"""BatchNormalization, LayerNormalization and GroupNormalization."""
from __future__ import annotations

import numpy as np

from .. import initializers, ops
from ..engine.layer import Layer
from ..engine.program import OpKind


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

    ``synchronized=True`` (Keras 3's argument): under a data-parallel ``fit`` the
    batch statistics are those of the global batch (every rank's sums and counts
    combined with ``fl.distribute.allreduce``), for the normalization, the moving
    statistics and the backward pass, so N ranks train as one process on the
    global batch.  On one process it is the plain layer.  It is decided when the
    step is lowered: inside an MPI launcher (``mpirun``) a synchronized layer that
    needs batch statistics runs as a NumPy callback op, which asks at each step
    whether the model is being fit with a strategy of size > 1 (so a model
    compiled before ``fl.distribute.init()`` synchronizes too); outside a launcher
    it is the native op.  A frozen (inference-mode) layer exchanges nothing (R7).
    """

    # Read by compile() when it takes the picture of which layers run frozen (R4).
    _frozen_means_inference = True

    def __init__(self, axis: int = -1, momentum: float = 0.99, epsilon: float = 1e-3,
                 center: bool = True, scale: bool = True, beta_initializer="zeros",
                 gamma_initializer="ones", moving_mean_initializer="zeros",
                 moving_variance_initializer="ones", synchronized: bool = False, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(synchronized, (bool, np.bool_)):
            raise TypeError(f"BatchNormalization {self.name!r}: synchronized must be a bool, "
                            f"got {synchronized!r}")
        self.synchronized = bool(synchronized)
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
        if self.synchronized and batch and _may_synchronize():
            model = getattr(getattr(ctx, "_low", None), "model", None)
            return ctx.emit(OpKind.CALLBACK, self.weights, kwargs={
                "_bn_mode": (batch, settings["update_stats"]), "_bn_model": model})
        weights = [w for w in (self.gamma, self.beta) if w is not None]
        if self._axis == len(ctx.slot(0).shape):
            return ctx.emit(OpKind.BATCHNORM, weights, **settings)
        # Another axis than the last: the same op on the channels moved last.
        return ctx.emit_moved(OpKind.BATCHNORM, weights, self._axis, **settings)

    def forward(self, inputs, training=False, _bn_mode=None, _bn_model=None):
        """``(outputs, backprop)``; ``_bn_mode`` and ``_bn_model`` are set by the
        synchronized callback op only (see ``_lower``)."""
        if _bn_mode is None:
            return super().forward(inputs, training=training)
        from . import _sync_batchnorm

        strategy = getattr(_bn_model, "_distribute", None)
        sync = strategy is not None and strategy.size > 1
        return _sync_batchnorm.forward(self, inputs, *_bn_mode, sync=sync)

    def get_config(self):
        cfg = super().get_config()
        g, b, mm, mv = (initializers.serialize(i) for i in self._inits)
        cfg.update(axis=self.axis, momentum=self.momentum, epsilon=self.epsilon,
                   center=self.center, scale=self.scale, beta_initializer=b,
                   gamma_initializer=g, moving_mean_initializer=mm,
                   moving_variance_initializer=mv, synchronized=self.synchronized)
        return cfg


def _may_synchronize() -> bool:
    """Whether this process may be one of several ranks (started by an MPI launcher,
    or in a world already larger than one); outside one, sync BN is the native op."""
    from ..distribute import _world

    return _world.launcher_size() != 1 or _world.WORLD.size > 1



# ---------------------------------------------------------------------------
# Per-sample normalizations (no moving statistics, same in training and inference)

def _norm_axes(owner: str, axis, ndim: int):
    axes = [axis] if isinstance(axis, (int, np.integer)) else list(axis)
    out = []
    for a in axes:
        if isinstance(a, bool) or not isinstance(a, (int, np.integer)):
            raise ValueError(f"{owner}: axis must be an int or a list of ints, got {axis!r}")
        a = int(a) + ndim if a < 0 else int(a)
        if not 1 <= a < ndim:
            raise ValueError(f"{owner}: axis {axis!r} is out of range for {ndim}-D inputs "
                             "(the batch axis cannot be normalized)")
        out.append(a)
    if len(set(out)) != len(out):
        raise ValueError(f"{owner}: axis {axis!r} repeats an axis")
    return sorted(out)


class LayerNormalization(Layer):
    """Normalize each sample over ``axis`` (Keras defaults: axis=-1, epsilon=1e-3).

    y = (x - mean) / sqrt(var + epsilon) * gamma + beta, the statistics over
    ``axis`` for each sample (biased variance); the same in training and
    inference.  Weights, in order: ``gamma`` (scale=True), ``beta`` (center=True),
    of shape ``input_shape[axis]``.  Runs on the row loops of
    ``csrc/_layernorm.pxd``: in a model one LAYERNORM op when ``axis`` is the
    trailing axes (a single other axis is moved last and back around the op;
    several non-trailing axes run as a callback); ``forward`` is the same kernel
    for a direct call.
    """

    def __init__(self, axis=-1, epsilon: float = 1e-3, center: bool = True, scale: bool = True,
                 beta_initializer="zeros", gamma_initializer="ones", rms_scaling: bool = False,
                 **kwargs):
        super().__init__(**kwargs)
        owner = f"LayerNormalization {self.name!r}"
        if rms_scaling:
            raise ValueError(f"{owner}: rms_scaling=True is not supported")
        self.axis = axis
        if not isinstance(epsilon, (int, float)) or isinstance(epsilon, bool) or epsilon < 0:
            raise ValueError(f"{owner}: epsilon must be a number >= 0, got {epsilon!r}")
        self.epsilon = float(epsilon)
        self.center, self.scale = bool(center), bool(scale)
        from ._args import initializer

        self.beta_initializer = initializer(beta_initializer)
        self.gamma_initializer = initializer(gamma_initializer)
        self.gamma = self.beta = None

    def build(self, input_shape):
        owner = f"Layer {self.name!r} (LayerNormalization)"
        self._axes = _norm_axes(owner, self.axis, len(input_shape))
        shape = tuple(input_shape[a] for a in self._axes)
        if any(s is None for s in shape):
            raise ValueError(f"{owner}: the normalized axes need known sizes, got "
                             f"{input_shape}")
        self._ndim = len(input_shape)
        if self.scale:
            self.gamma = self.add_weight("gamma", shape, self.gamma_initializer)
        if self.center:
            self.beta = self.add_weight("beta", shape, self.beta_initializer)
        self._param_shape = shape
        self.built = True

    def compute_output_shape(self, input_shape):
        return input_shape

    def _lower(self, ctx):
        shape = ctx.slot(0).shape
        ndim = len(shape) + 1
        if ndim != self._ndim or tuple(shape[a - 1] for a in self._axes) != self._param_shape:
            raise ValueError(f"Layer {self.name!r} (LayerNormalization) was built for "
                             f"axes {self._axes} of size {self._param_shape}, got input "
                             f"shape {(None,) + tuple(shape)}")
        weights = [w for w in (self.gamma, self.beta) if w is not None]
        width = int(np.prod(self._param_shape))
        settings = dict(epsilon=self.epsilon, kwargs={"width": width})
        if self._axes == list(range(ndim - len(self._axes), ndim)):
            # Trailing axes: each sample's rows of `width` values are contiguous.
            return ctx.emit(OpKind.LAYERNORM, weights, **settings)
        if len(self._axes) == 1:
            return ctx.emit_moved(OpKind.LAYERNORM, weights, self._axes[0], **settings)
        return NotImplemented  # several axes to gather: the NumPy transpose of forward

    def forward(self, inputs, training=False):
        x = np.asarray(inputs)
        if x.ndim != self._ndim or tuple(x.shape[a] for a in self._axes) != self._param_shape:
            raise ValueError(f"Layer {self.name!r} (LayerNormalization) was built for "
                             f"axes {self._axes} of size {self._param_shape}, got input "
                             f"shape {x.shape}")
        rest = [a for a in range(x.ndim) if a not in self._axes]
        perm = rest + self._axes
        moved = perm != list(range(x.ndim))
        xt = np.ascontiguousarray(x.transpose(perm)) if moved else x
        d = int(np.prod(self._param_shape))
        x2 = xt.reshape(-1, d)
        g = self.gamma.value.reshape(-1) if self.gamma is not None else None
        b = self.beta.value.reshape(-1) if self.beta is not None else None
        y2, mean, inv = ops.layernorm_forward(x2, g, b, self.epsilon)
        inverse = list(np.argsort(perm))
        y = y2.reshape(xt.shape)
        y = np.ascontiguousarray(y.transpose(inverse)) if moved else y

        def backprop(dy):
            dy = np.asarray(dy, dtype=x.dtype)
            dyt = np.ascontiguousarray(dy.transpose(perm)) if moved else dy
            dx2, dg, db = ops.layernorm_backward(x2, dyt.reshape(-1, d), g, mean, inv,
                                                 want_dgamma=self.scale, want_dbeta=self.center)
            dx = dx2.reshape(xt.shape)
            dx = np.ascontiguousarray(dx.transpose(inverse)) if moved else dx
            grads = ([dg.reshape(self._param_shape)] if self.scale else []) + \
                ([db.reshape(self._param_shape)] if self.center else [])
            return dx, grads

        return y, backprop

    def get_config(self):
        cfg = super().get_config()
        cfg.update(axis=self.axis, epsilon=self.epsilon, center=self.center, scale=self.scale,
                   beta_initializer=initializers.serialize(self.beta_initializer),
                   gamma_initializer=initializers.serialize(self.gamma_initializer))
        return cfg


class GroupNormalization(Layer):
    """Normalize each sample over groups of channels (Keras: groups=32, axis=-1,
    epsilon=1e-3).

    The channels (last axis) are split into ``groups`` consecutive groups; each
    (sample, group) is normalized over its positions and channels, then scaled
    and shifted per channel.  Weights: ``gamma``, ``beta`` of shape (channels,).
    Only axis=-1 (channels_last).  The statistics and the input gradient are the
    layer-norm row kernel on (sample, group) rows; the per-channel affine part is
    NumPy broadcasting.  In a model the layer is one GROUPNORM op over the
    channels-last layout (csrc/_groupnorm.pxd), no transpose.
    """

    def __init__(self, groups: int = 32, axis: int = -1, epsilon: float = 1e-3,
                 center: bool = True, scale: bool = True, beta_initializer="zeros",
                 gamma_initializer="ones", **kwargs):
        super().__init__(**kwargs)
        owner = f"GroupNormalization {self.name!r}"
        if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
            raise ValueError(f"{owner}: groups must be a positive integer, got {groups!r}")
        if axis != -1:
            raise ValueError(f"{owner}: only axis=-1 (channels_last) is supported, got {axis!r}")
        if not isinstance(epsilon, (int, float)) or isinstance(epsilon, bool) or epsilon < 0:
            raise ValueError(f"{owner}: epsilon must be a number >= 0, got {epsilon!r}")
        self.groups, self.axis, self.epsilon = int(groups), -1, float(epsilon)
        self.center, self.scale = bool(center), bool(scale)
        from ._args import initializer

        self.beta_initializer = initializer(beta_initializer)
        self.gamma_initializer = initializer(gamma_initializer)
        self.gamma = self.beta = None

    def build(self, input_shape):
        owner = f"Layer {self.name!r} (GroupNormalization)"
        if len(input_shape) < 2 or input_shape[-1] is None:
            raise ValueError(f"{owner}: needs a known channel axis, got {input_shape}")
        c = int(input_shape[-1])
        if c % self.groups:
            raise ValueError(f"{owner}: groups={self.groups} must divide the {c} channels")
        self._channels = c
        if self.scale:
            self.gamma = self.add_weight("gamma", (c,), self.gamma_initializer)
        if self.center:
            self.beta = self.add_weight("beta", (c,), self.beta_initializer)
        self.built = True

    def compute_output_shape(self, input_shape):
        return input_shape

    def _lower(self, ctx):
        shape = ctx.slot(0).shape
        if not shape or shape[-1] != self._channels:
            raise ValueError(f"Layer {self.name!r} (GroupNormalization) expects "
                             f"{self._channels} channels on the last axis, got "
                             f"{(None,) + tuple(shape)}")
        weights = [w for w in (self.gamma, self.beta) if w is not None]
        return ctx.emit(OpKind.GROUPNORM, weights, epsilon=self.epsilon,
                        kwargs={"groups": self.groups})

    def forward(self, inputs, training=False):
        x = np.asarray(inputs)
        if x.ndim < 2 or x.shape[-1] != self._channels:
            raise ValueError(f"Layer {self.name!r} (GroupNormalization) expects "
                             f"{self._channels} channels on the last axis, got {x.shape}")
        n, G, c = x.shape[0], self.groups, self._channels
        # (n, positions, G, c/G) -> (n, G, positions, c/G): one row per (sample, group).
        grouped = x.reshape(n, -1, G, c // G).transpose(0, 2, 1, 3)
        shape_g = grouped.shape
        x2 = np.ascontiguousarray(grouped).reshape(n * G, -1)
        xhat2, mean, inv = ops.layernorm_forward(x2, None, None, self.epsilon)
        xhat = xhat2.reshape(shape_g).transpose(0, 2, 1, 3).reshape(x.shape)
        y = xhat
        if self.gamma is not None:
            y = y * self.gamma.value
        if self.beta is not None:
            y = y + self.beta.value
        y = np.ascontiguousarray(y)

        def backprop(dy):
            dy = np.asarray(dy, dtype=x.dtype)
            red = tuple(range(x.ndim - 1))
            grads = []
            if self.scale:
                grads.append((dy * xhat).sum(axis=red))
            if self.center:
                grads.append(dy.sum(axis=red))
            dxhat = dy * self.gamma.value if self.gamma is not None else dy
            d2 = np.ascontiguousarray(
                dxhat.reshape(n, -1, G, c // G).transpose(0, 2, 1, 3)).reshape(n * G, -1)
            dx2, _, _ = ops.layernorm_backward(x2, d2, None, mean, inv, want_dgamma=False,
                                               want_dbeta=False)
            dx = dx2.reshape(shape_g).transpose(0, 2, 1, 3).reshape(x.shape)
            return np.ascontiguousarray(dx), grads

        return y, backprop

    def get_config(self):
        cfg = super().get_config()
        cfg.update(groups=self.groups, axis=self.axis, epsilon=self.epsilon,
                   center=self.center, scale=self.scale,
                   beta_initializer=initializers.serialize(self.beta_initializer),
                   gamma_initializer=initializers.serialize(self.gamma_initializer))
        return cfg
