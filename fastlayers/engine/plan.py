"""Compile a model into a fused training step when its graph allows it.

A model qualifies when it is a chain -- one input, one output, each node reading
the previous node's output -- of built-in ``Dense``, ``Dropout``, ``Activation``,
``BatchNormalization`` and ``Flatten`` layers (N-D input only through a leading ``Flatten``), each used once, trained with a built-in loss and
SGD or Adam.  Everything else runs on the layer-by-layer path, with the same
semantics: this module only moves the decisions the engine already made
(compiled weight set, R3/R4; where backprop stops, R9; which dropout layers drop,
R5/R6) into a :class:`fastlayers._kernels.plan.TrainPlan`.

The optimizer's settings are read at every step, as on the layer path (momentum
switched on after ``compile()`` under plain SGD hands the step to the layer path).
Set ``FASTLAYERS_NO_PLAN=1`` to force the layer-by-layer path (tests compare
the two).
"""
from __future__ import annotations

import os
from typing import Optional

import numpy as np

from .. import losses as _losses
from .. import optimizers as _optimizers
from ..layers.core import Activation, Dense, Flatten
from ..layers.dropout import Dropout
from ..layers.normalization import BatchNormalization

_ACT_CODES = {"linear": 0, "relu": 1, "sigmoid": 2, "tanh": 3, "softmax": 4}

_LOSS_KINDS = {
    _losses.MeanSquaredError: "mse",
    _losses.MeanAbsoluteError: "mae",
    _losses.BinaryCrossentropy: "bce",
    _losses.CategoricalCrossentropy: "ce",
    _losses.SparseCategoricalCrossentropy: "sparse_ce",
}


def _enabled() -> bool:
    return os.environ.get("FASTLAYERS_NO_PLAN", "0") in ("", "0")


def build_plan(model, compiled) -> Optional[object]:
    """A TrainPlan for ``model`` under ``compiled``, or None when it does not qualify."""
    if not _enabled() or len(model.inputs) != 1 or len(model.outputs) != 1:
        return None
    if compiled.loss_weights != [1.0]:
        return None
    loss = compiled.losses[0]
    kind = _LOSS_KINDS.get(type(loss))
    opt = compiled.optimizer
    if kind is None or type(opt) not in (_optimizers.SGD, _optimizers.Adam):
        return None
    inp = model.inputs[0]
    if any(d is None for d in inp.shape[1:]) or len(inp.shape) < 2:
        return None
    if len(inp.shape) > 2 and (not model._nodes or type(model._nodes[0].layer) is not Flatten):
        return None  # N-D input only through a leading Flatten (the caller flattens the batch)
    dtype = np.dtype(inp.dtype)
    specs = []
    prev = inp
    seen = set()
    width = int(np.prod(inp.shape[1:]))
    for node in model._nodes:
        layer = node.layer
        if len(node.inputs) != 1 or node.inputs[0] is not prev or len(node.outputs) != 1:
            return None
        if id(layer) in seen or node.kwargs:
            return None
        seen.add(id(layer))
        prev = node.outputs[0]
        t = type(layer)
        if t is Flatten:
            continue  # identity on 2-D inputs
        if np.dtype(layer.dtype) != dtype:
            return None
        if t is Dense:
            spec = {"kind": "dense", "act": _ACT_CODES[layer.activation], "d_in": width,
                    "d_out": layer.units, "W": layer.kernel.value,
                    "b": layer.bias.value if layer.bias is not None else None,
                    "train_w": id(layer.kernel) in compiled.train_ids,
                    "train_b": layer.bias is not None and id(layer.bias) in compiled.train_ids}
            if any(w.dtype != dtype for w in layer.weights):
                return None
            _optimizer_buffers(spec, opt, layer.kernel, "W")
            if layer.bias is not None:
                _optimizer_buffers(spec, opt, layer.bias, "b")
            width = layer.units
        elif t is Dropout:
            pinned = node.training
            spec = {"kind": "dropout", "d_in": width, "d_out": width, "rate": layer.rate,
                    "seed": layer.seed, "counter": layer._counter,
                    "mode_train": pinned is not False and layer.rate > 0,
                    "mode_infer": pinned is True and layer.rate > 0}
        elif t is BatchNormalization:
            if layer._axis != 1 or node.training is not None:
                return None  # a pinned training= on batch norm stays on the layer path
            # R7 as compiled: frozen by its own flag or the model's (R4's picture).
            frozen = compiled.frozen_bn.get((id(model), id(layer)), True)
            gamma, beta = layer.gamma, layer.beta
            c = layer.moving_mean.shape[0]
            spec = {"kind": "batchnorm", "d_in": width, "d_out": width,
                    "W": gamma.value if gamma is not None else None,
                    "b": beta.value if beta is not None else None,
                    "train_w": gamma is not None and id(gamma) in compiled.train_ids,
                    "train_b": beta is not None and id(beta) in compiled.train_ids,
                    "mm": layer.moving_mean.value, "mv": layer.moving_variance.value,
                    "bmean": np.empty(c, dtype), "bvar": np.empty(c, dtype),
                    "binv": np.empty(c, dtype), "eps": layer.epsilon,
                    "bn_momentum": layer.momentum,
                    "mode_train": not frozen, "mode_infer": False}
            if any(w.dtype != dtype for w in layer.weights):
                return None
            for w, suffix in ((gamma, "W"), (beta, "b")):
                if w is not None and spec["train_" + suffix.lower()]:
                    spec["g" + suffix] = np.empty(w.shape, dtype)
                    _optimizer_buffers(spec, opt, w, suffix)
        elif t is Activation:
            if layer.activation == "linear":
                continue
            spec = {"kind": "activation", "act": _ACT_CODES[layer.activation],
                    "d_in": width, "d_out": width}
        else:
            return None
        specs.append(spec)
    if prev is not model.outputs[0] or all(sp["kind"] == "dropout" for sp in specs):
        return None  # nothing to fuse: a chain of dropouts alone stays on the layer path
    from .._kernels.plan import TrainPlan

    if isinstance(opt, _optimizers.SGD):
        name = "sgd" if opt.momentum == 0 else ("nesterov" if opt.nesterov else "momentum")
        plan = TrainPlan(dtype, specs, kind, getattr(loss, "from_logits", False), name,
                         momentum=opt.momentum)
    else:
        plan = TrainPlan(dtype, specs, kind, getattr(loss, "from_logits", False), "adam",
                         beta_1=opt.beta_1, beta_2=opt.beta_2, epsilon=opt.epsilon)
    return plan


def _optimizer_buffers(spec: dict, opt, weight, suffix: str) -> None:
    """Share the optimizer's own slots, so both paths continue each other's state."""
    if not spec["train_" + suffix.lower()]:
        return
    if isinstance(opt, _optimizers.SGD) and opt.momentum == 0:
        return
    spec["g" + suffix] = np.empty(weight.shape, weight.dtype)
    if isinstance(opt, _optimizers.Adam):
        m, v = opt._slot(weight, 2)
        spec["s1" + suffix], spec["s2" + suffix] = m, v
    else:
        (spec["s1" + suffix],) = opt._slot(weight, 1)
