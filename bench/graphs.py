"""The seeds' graphs (issue 7, "Performance"), described once for every framework.

A graph scenario names one entry of ``GRAPHS``: its Dense layers (name, in, out,
activation), its BatchNormalization layers, its inputs and targets.  Each peer builds
the same graph its own way (``bench/peers/*_graphs.py``) from the arrays written by
``make_arrays``: ``W_<dense>``/``b_<dense>`` (kernel ``(in, out)``, bias),
``gamma_/beta_/mean_/var_<bn>``, and the batch ``x``/``y`` (``x``, ``x2``, ``y``,
``y2`` for two inputs / outputs).

``step`` lists the Dense layers the timed training step runs, each with whether its
weights train and whether the gradient with respect to its input is needed (something
trainable lies below it): the GEMM work a step cannot avoid, as for the chains.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HIDDEN = 256
BN_EPSILON = 1e-3  # Keras's BatchNormalization default; torch is told the same


@dataclass(frozen=True)
class Graph:
    name: str
    dense: tuple  # (name, in, out, activation or None), every Dense of the graph
    step: tuple  # (dense name, trainable, needs input gradient) for the timed step
    inputs: tuple  # (array name, width)
    # (array name, kind, output Dense): kind "sce" integer labels for softmax cross-entropy
    # from logits, "mse" floats, "bce" ones for binary cross-entropy from logits (GAN)
    targets: tuple
    bn: tuple = ()  # (name, width)
    loss_weights: tuple = (1.0,)

    def dense_spec(self, name):
        return next(d for d in self.dense if d[0] == name)


GRAPHS = {
    g.name: g
    for g in (
        # seed 000: model1 = shared -> m1 (frozen model); model2 = shared -> h2a -> h2b
        Graph(
            "shared",
            dense=(("shared", 784, 256, "relu"), ("m1", 256, 10, None),
                   ("h2a", 256, 256, "relu"), ("h2b", 256, 10, None)),
            step=(("shared", True, False), ("h2a", True, True), ("h2b", True, True)),
            inputs=(("x", 784),), targets=(("y", "sce", "h2b"),),
        ),
        # seed 002: frozen model_A and model_B (784 -> 256 relu -> Dropout(0.5) -> 128 relu),
        # concatenated, trained Dense(10) head
        Graph(
            "merged",
            dense=(("a1", 784, 256, "relu"), ("a2", 256, 128, "relu"),
                   ("b1", 784, 256, "relu"), ("b2", 256, 128, "relu"),
                   ("head", 256, 10, None)),
            step=(("a1", False, False), ("a2", False, False), ("b1", False, False),
                  ("b2", False, False), ("head", True, False)),
            inputs=(("x", 784),), targets=(("y", "sce", "head"),),
        ),
        # seed 003: a frozen Container 784 -> 256 relu -> 256 relu, Dense(10) head
        Graph(
            "container",
            dense=(("c1", 784, 256, "relu"), ("c2", 256, 256, "relu"), ("head", 256, 10, None)),
            step=(("c1", False, False), ("c2", False, False), ("head", True, False)),
            inputs=(("x", 784),), targets=(("y", "sce", "head"),),
        ),
        # GAN generator step: g 64 -> 256 relu -> 784 tanh, frozen d 784 -> 256 relu -> 1
        Graph(
            "gan",
            dense=(("g1", 64, 256, "relu"), ("g2", 256, 784, "tanh"),
                   ("d1", 784, 256, "relu"), ("d2", 256, 1, None)),
            step=(("g1", True, False), ("g2", True, True), ("d1", False, True),
                  ("d2", False, True)),
            inputs=(("x", 64),), targets=(("y", "bce", "d2"),),
        ),
        # seed 004: frozen base 784 -> 256 relu -> BN -> 256 relu -> BN, Dense(10) head
        Graph(
            "bn-base",
            dense=(("f1", 784, 256, "relu"), ("f2", 256, 256, "relu"), ("head", 256, 10, None)),
            bn=(("bn1", 256), ("bn2", 256)),
            step=(("f1", False, False), ("f2", False, False), ("head", True, False)),
            inputs=(("x", 784),), targets=(("y", "sce", "head"),),
        ),
        # two inputs, two outputs: xa 784 -> ea 256 relu, xb 64 -> eb 64 relu, concatenated
        # (320) -> shared trunk 256 relu -> cls 10 (softmax CE) and reg 1 (MSE),
        # total loss = 1.0 * CE + 0.5 * MSE
        Graph(
            "multi-io",
            dense=(("ea", 784, 256, "relu"), ("eb", 64, 64, "relu"),
                   ("trunk", 320, 256, "relu"), ("cls", 256, 10, None), ("reg", 256, 1, None)),
            step=(("ea", True, False), ("eb", True, False), ("trunk", True, True),
                  ("cls", True, True), ("reg", True, True)),
            inputs=(("x", 784), ("x2", 64)), targets=(("y", "sce", "cls"), ("y2", "mse", "reg")),
            loss_weights=(1.0, 0.5),
        ),
    )
}


def step_flops(g: Graph, batch: int) -> float:
    """GEMM flops (2 per MAC) of one training step: forward, dW where trained, dX where needed."""
    total = 0.0
    for name, trains, needs_dx in g.step:
        _, i, o, _ = g.dense_spec(name)
        mac = 2.0 * batch * i * o
        total += mac * (1 + trains + needs_dx)
    return total


def forward_flops(g: Graph, batch: int) -> float:
    return sum(2.0 * batch * g.dense_spec(n)[1] * g.dense_spec(n)[2] for n, _, _ in g.step)


def _glorot(rng, fan_in, fan_out):
    lim = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-lim, lim, size=(fan_in, fan_out)).astype(np.float32)


def make_arrays(g: Graph, batch: int, rng) -> dict:
    out = {}
    for name, i, o, _ in g.dense:
        out[f"W_{name}"] = _glorot(rng, i, o)
        out[f"b_{name}"] = rng.uniform(-0.1, 0.1, size=(o,)).astype(np.float32)
    for name, width in g.bn:
        # Moving statistics away from (0, 1) and gamma/beta away from (1, 0), so a framework
        # that normalizes with the batch's statistics instead (training mode) fails the check.
        out[f"gamma_{name}"] = rng.uniform(0.5, 1.5, width).astype(np.float32)
        out[f"beta_{name}"] = rng.uniform(-0.2, 0.2, width).astype(np.float32)
        out[f"mean_{name}"] = rng.uniform(0.0, 0.5, width).astype(np.float32)
        out[f"var_{name}"] = rng.uniform(0.5, 1.5, width).astype(np.float32)
    for name, width in g.inputs:
        if g.name == "gan":
            out[name] = rng.standard_normal((batch, width)).astype(np.float32)  # latent z
        else:
            out[name] = rng.random((batch, width), dtype=np.float32)
    x = out[g.inputs[0][0]]
    for name, kind, dense in g.targets:
        o = g.dense_spec(dense)[2]
        if kind == "sce":
            # learnable labels from a random linear teacher, as for the chains
            teacher = rng.standard_normal((x.shape[1], o)).astype(np.float32)
            out[name] = np.argmax((x - 0.5) @ teacher, axis=1).astype(np.int64)
        elif kind == "bce":
            out[name] = np.ones((batch, o), np.float32)  # the generator step wants "real"
        else:
            out[name] = (0.5 * rng.standard_normal((batch, o))).astype(np.float32)
    return out
