"""The Keras-style public API shared by fastlayers and Keras 3: optimizers and the graphs.

``lib`` is ``fastlayers`` or ``keras``: both have ``Input``, ``Model``, ``Sequential``,
``layers.Dense/Dropout/Concatenate/BatchNormalization``, ``losses``, ``optimizers``,
``compile`` and ``train_on_batch`` / ``test_on_batch`` with the same names and
arguments, so one builder writes each seed's idiom for both.  Only public API.
"""
from __future__ import annotations

import numpy as np

from ..graphs import BN_EPSILON
from ..scenarios import OPTIMIZERS
from . import Unavailable

_CLASSES = {"sgd": "SGD", "rmsprop": "RMSprop", "adamw-clip": "AdamW"}


def optimizer(lib, sc):
    """The scenario's optimizer, every setting explicit; Unavailable if ``lib`` lacks it."""
    cls_name = _CLASSES[sc.optimizer]
    cls = getattr(lib.optimizers, cls_name, None)
    if cls is None:
        raise Unavailable(f"{lib.__name__}.optimizers.{cls_name} is not available in this "
                          "version")
    kwargs = OPTIMIZERS[sc.optimizer]
    try:
        return cls(**kwargs)
    except TypeError as e:  # e.g. an optimizer without global_clipnorm yet
        raise Unavailable(f"{lib.__name__}.optimizers.{cls_name}({_kw(kwargs)}) is not "
                          f"supported: {e}") from None


def _kw(kwargs):
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


def loss(lib, kind):
    if kind == "sce":
        return lib.losses.SparseCategoricalCrossentropy(from_logits=True)
    if kind == "bce":
        return lib.losses.BinaryCrossentropy(from_logits=True)
    return "mse"


class GraphRunner:
    """A compiled graph model and its batch; the interface of ``bench.peers``."""

    def __init__(self, model, xs, ys):
        self.model = model
        # one array for one input / output (the seeds' idiom), lists for several
        self.x = xs[0] if len(xs) == 1 else xs
        self.y = ys[0] if len(ys) == 1 else ys

    def eval_loss(self):
        return float(_first(self.model.test_on_batch(self.x, self.y)))

    def train_step(self):
        return float(_first(self.model.train_on_batch(self.x, self.y)))

    def train(self, k):
        tob, x, y = self.model.train_on_batch, self.x, self.y
        for _ in range(k):
            tob(x, y)


def _first(v):
    # train_on_batch returns the loss, or [loss, *per-output losses / metrics]
    return v[0] if isinstance(v, (list, tuple)) else v


def build_graph(lib, sc, arrays, keras_semantics=False):
    """The scenario's graph in ``lib``, compiled, with the initial weights of ``arrays``.

    ``keras_semantics``: Keras 3 propagates ``trainable`` to a model's layers, so the
    seed-000 idiom ``model1.trainable = False`` would freeze the shared layer in model2
    too; the Keras peer leaves model1 unfrozen (model2's step is the same work).
    """
    g = sc.graph_spec
    L = lib.layers
    made = {}

    def dense(name, **kw):
        _, _, o, act = g.dense_spec(name)
        d = made[name] = L.Dense(o, activation=act, name=name, **kw)
        return d

    def bn(name):
        b = made[name] = L.BatchNormalization(epsilon=BN_EPSILON, name=name)
        return b

    def load():
        # before any compile(), as a user loading trained weights would
        bns = {b for b, _ in g.bn}
        for name, layer in made.items():
            if name in bns:
                layer.set_weights([arrays[f"{k}_{name}"] for k in ("gamma", "beta", "mean", "var")])
            else:
                layer.set_weights([arrays[f"W_{name}"], arrays[f"b_{name}"]])

    opt = optimizer(lib, sc)
    kinds = {t: kind for t, kind, _ in g.targets}
    if g.name == "shared":  # seed 000
        inp = lib.Input(shape=(784,))
        shared_layer = dense("shared")
        sout = shared_layer(inp)
        model1 = lib.Model(inp, dense("m1")(sout), name="model1")
        model2 = lib.Model(inp, dense("h2b")(dense("h2a")(sout)), name="model2")
        if not keras_semantics:
            model1.trainable = False
        model = model2
        load()
        model.compile(optimizer=opt, loss=loss(lib, kinds["y"]))
    elif g.name == "merged":  # seed 002
        def sub(p):
            i = lib.Input(shape=(784,))
            h = dense(p + "2")(L.Dropout(0.5)(dense(p + "1")(i)))
            return lib.Model(i, h, name=f"model_{p.upper()}")

        model_a, model_b = sub("a"), sub("b")
        model_a.trainable = False
        model_b.trainable = False
        inp = lib.Input(shape=(784,))
        merged = L.Concatenate()([model_a(inp), model_b(inp)])
        model = lib.Model(inp, dense("head")(merged), name="model_AB")
        load()
        model.compile(optimizer=opt, loss=loss(lib, kinds["y"]))
    elif g.name == "container":  # seed 003
        container_cls = getattr(lib, "Container", None) or lib.Model  # Keras 3 has no Container
        x = in_x = lib.Input(shape=(784,))
        x = dense("c2")(dense("c1")(x))
        fc_fixed = container_cls(in_x, x, name="FixedContainer")
        fc_fixed.trainable = False
        x = fc_fixed(in_x)
        model = lib.Model(in_x, dense("head")(x), name="model_fixed")
        load()
        model.compile(optimizer=opt, loss=loss(lib, kinds["y"]))
    elif g.name == "gan":
        generator = lib.Sequential([lib.Input(shape=(64,)), dense("g1"), dense("g2")],
                                   name="generator")
        discriminator = lib.Sequential([lib.Input(shape=(784,)), dense("d1"), dense("d2")],
                                       name="discriminator")
        load()
        discriminator.compile(optimizer=optimizer(lib, sc), loss=loss(lib, "bce"))
        discriminator.trainable = False
        z = lib.Input(shape=(64,))
        model = lib.Model(z, discriminator(generator(z)), name="gan")
        model.compile(optimizer=opt, loss=loss(lib, "bce"))
    elif g.name == "bn-base":  # seed 004
        base = lib.Sequential([lib.Input(shape=(784,)), dense("f1"), bn("bn1"), dense("f2"),
                               bn("bn2")], name="base")
        model = lib.Sequential([base, dense("head")])
        model.layers[0].trainable = False  # freeze the base
        load()
        model.compile(optimizer=opt, loss=loss(lib, kinds["y"]))
    elif g.name == "multi-io":
        xa, xb = lib.Input(shape=(784,), name="xa"), lib.Input(shape=(64,), name="xb")
        both = L.Concatenate()([dense("ea")(xa), dense("eb")(xb)])
        trunk = dense("trunk")(both)
        model = lib.Model([xa, xb], [dense("cls")(trunk), dense("reg")(trunk)], name="multi_io")
        load()
        model.compile(optimizer=opt, loss=[loss(lib, kinds["y"]), loss(lib, kinds["y2"])],
                      loss_weights=list(g.loss_weights))
    else:
        raise ValueError(f"no graph {g.name!r}")
    xs = [np.ascontiguousarray(arrays[n], np.float32) for n, _ in g.inputs]
    ys = [arrays[t] for t, _, _ in g.targets]
    return GraphRunner(model, xs, ys)


class CNNRunner(GraphRunner):
    """A compiled CNN with its batch; ``forward`` for the frozen scenario."""

    def forward(self, k):
        pob, x = self.model.predict_on_batch, self.x
        for _ in range(k):
            pob(x)


def build_cnn(lib, sc, arrays):
    """The scenario's CNN (``bench.cnn``) as a ``Sequential``, channels_last, with the
    initial weights of ``arrays`` and ``trainable=False`` on its frozen layers before
    ``compile``."""
    c = sc.cnn_spec
    L = lib.layers
    layers, weighted = [lib.Input(shape=c.input)], []
    for spec in c.layers:
        kind = spec[0]
        if kind == "conv":
            _, name, filters, k, pad, act = spec
            layer = L.Conv2D(filters, k, padding=pad, activation=act, name=name)
            weighted.append(layer)
        elif kind == "dense":
            _, name, units, act = spec
            layer = L.Dense(units, activation=act, name=name)
            weighted.append(layer)
        elif kind == "pool":
            layer = L.MaxPooling2D(2)
        elif kind == "gap":
            layer = L.GlobalAveragePooling2D()
        else:
            layer = L.Flatten()
        layers.append(layer)
    model = lib.Sequential(layers, name=c.name.replace("-", "_"))
    for layer in weighted:
        layer.set_weights([arrays[f"W_{layer.name}"], arrays[f"b_{layer.name}"]])
        if layer.name in c.frozen:
            layer.trainable = False
    model.compile(optimizer=optimizer(lib, sc), loss=loss(lib, "sce"))
    return CNNRunner(model, [np.ascontiguousarray(arrays["x"], np.float32)], [arrays["y"]])
