"""Model builders shared by the saving tests (float64, trained a little so state is non-trivial)."""
import numpy as np
import pytest

import fastlayers as fl


@fl.utils.register_serializable(package="SavingTests")
class Scale(fl.layers.Layer):
    """A user layer with a weight and its own argument: ``y = x * w * factor``."""

    def __init__(self, factor=1.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = float(factor)

    def build(self, input_shape):
        self.w = self.add_weight("w", (input_shape[-1],), "random_normal")

    def compute_output_shape(self, input_shape):
        return input_shape

    def forward(self, inputs, training=False):
        w = self.w.value

        def backprop(g):
            return g * w * self.factor, [np.sum(g * inputs, axis=0) * self.factor]

        return inputs * w * self.factor, backprop

    def get_config(self):
        cfg = super().get_config()
        cfg["factor"] = self.factor
        return cfg


def sequential():
    m = fl.Sequential([fl.layers.Dense(7, activation="relu", input_shape=(5,)),
                       fl.layers.BatchNormalization(), fl.layers.Dropout(0.3),
                       fl.layers.Dense(3, activation="softmax")], name="seq")
    return m, "sparse_categorical_crossentropy", 3


def functional():
    x = fl.Input((5,), name="x")
    a = fl.layers.Dense(6, activation="tanh", name="a")(x)
    b = fl.layers.Dense(6, name="b")(x)
    h = fl.layers.Add(name="sum")([a, b])
    h = fl.layers.Dropout(0.4, name="always_drop")(h, training=True)
    h = fl.layers.Concatenate(name="cat")([h, x])
    out = fl.layers.Dense(2, name="out")(h)
    return fl.Model(x, out, name="func"), "mse", None


def nested():
    ci = fl.Input((4,))
    inner = fl.Container(ci, fl.layers.BatchNormalization(name="inner_bn")(
        fl.layers.Dense(4, activation="relu", name="inner_dense")(ci)), name="block")
    inner.trainable = False
    si = fl.Input((4,))
    sub = fl.Model(si, fl.layers.Dense(3, name="sub_dense")(si), name="submodel")
    x = fl.Input((5,), name="x")
    h = fl.layers.Dense(4, name="stem")(x)
    h = inner(h)
    out = fl.layers.Activation("sigmoid", name="act")(sub(h))
    return fl.Model(x, out, name="nested"), "binary_crossentropy", 2


def shared():
    x = fl.Input((5,), name="x")
    d = fl.layers.Dense(5, activation="tanh", name="twice")
    h = d(d(x))
    h2 = d(x)
    out = fl.layers.Dense(1, name="out")(fl.layers.Concatenate()([h, h2]))
    return fl.Model(x, out, name="shared"), "mse", None


def gan():
    z = fl.Input((3,), name="z")
    g = fl.Model(z, fl.layers.Dense(5, activation="tanh", name="g_out")(
        fl.layers.Dense(6, activation="relu", name="g_hidden")(z)), name="generator")
    xi = fl.Input((5,), name="d_in")
    dsc = fl.Model(xi, fl.layers.Dense(1, name="d_out")(
        fl.layers.BatchNormalization(name="d_bn")(fl.layers.Dense(4, name="d_hidden")(xi))),
        name="discriminator")
    dsc.trainable = False
    zi = fl.Input((3,), name="gan_z")
    return fl.Model(zi, dsc(g(zi)), name="gan"), "binary_crossentropy", 2


def custom():
    x = fl.Input((5,), name="x")
    h = Scale(2.5, name="scale")(fl.layers.Dense(4, name="pre")(x))
    return fl.Model(x, fl.layers.Dense(2, name="out")(h), name="custom"), "mse", None


def frozen_bn():
    m = fl.Sequential([fl.layers.Dense(6, input_shape=(5,)),
                       fl.layers.BatchNormalization(name="frozen_bn", momentum=0.5),
                       fl.layers.Dense(1)], name="fbn")
    m.get_layer("frozen_bn").trainable = False
    return m, "mse", None


BUILDERS = {"sequential": sequential, "functional": functional, "nested": nested,
            "shared": shared, "gan": gan, "custom": custom, "frozen_bn": frozen_bn}


def data(n_in, n_out, loss, classes, n=16, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, n_in))
    if loss == "sparse_categorical_crossentropy":
        y = rng.integers(0, classes, n)
    elif loss == "binary_crossentropy":
        y = rng.integers(0, 2, (n, n_out)).astype(float)
    else:
        y = rng.normal(size=(n, n_out))
    return x, y


def build(kind, optimizer="adam", steps=2):
    """A compiled float64 model of ``kind``, trained ``steps`` batches; returns (model, x, y)."""
    model, loss, classes = BUILDERS[kind]()
    opt = fl.optimizers.Adam(0.01) if optimizer == "adam" else \
        fl.optimizers.SGD(0.05, momentum=0.9, nesterov=True)
    model.compile(optimizer=opt, loss=loss, metrics=None)
    x, y = data(model.inputs[0].shape[1], model.outputs[0].shape[1], loss, classes)
    for _ in range(steps):
        model.train_on_batch(x, y)
    return model, x, y


@pytest.fixture
def f64():
    fl.backend.set_floatx("float64")
    yield
    fl.backend.set_floatx("float32")


def explain_rows(model):
    return [{k: v for k, v in r.items() if k != "weight"} for r in model.explain_trainable()]


def flags(model):
    out = {}
    for layer in model.layers:
        out[layer.name] = layer.trainable
        if isinstance(layer, fl.Container):
            out.update({f"{layer.name}/{k}": v for k, v in flags(layer).items()})
    return out


def pinned(model):
    out = []
    for node in model._nodes:
        out.append((node.layer.name, node.training))
        if isinstance(node.layer, fl.Container):
            out += [(f"{node.layer.name}/{n}", t) for n, t in pinned(node.layer)]
    return out


def assert_same_model(a, b, x, y, tol=1e-12):
    """Same predictions, explain rows, flags, pinned training and next training step."""
    assert type(a) is type(b)
    assert [l.name for l in a.layers] == [l.name for l in b.layers]
    assert flags(a) == flags(b)
    assert pinned(a) == pinned(b)
    np.testing.assert_allclose(b.predict(x, verbose=0), a.predict(x, verbose=0), rtol=0, atol=tol)
    assert explain_rows(a) == explain_rows(b)
    la, lb = a.train_on_batch(x, y), b.train_on_batch(x, y)
    assert abs(la - lb) <= tol
    for wa, wb in zip(a.weights, b.weights):
        np.testing.assert_allclose(wb.value, wa.value, rtol=0, atol=tol, err_msg=wa.path)
    assert len(a.weights) == len(b.weights)
    # A second step too: optimizer moments and dropout counters carried on.
    la, lb = a.train_on_batch(x, y), b.train_on_batch(x, y)
    assert abs(la - lb) <= tol
