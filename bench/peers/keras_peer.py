"""Keras 3 on the JAX backend: Sequential, compile(SGD(0.01)), train_on_batch / fit.

The graph scenarios and the RMSprop / AdamW ones go through ``keraslike``, the same
builder as fastlayers' (Keras 3 has no ``Container``: a functional ``Model`` stands in), and so do the CNNs.

The worker sets KERAS_BACKEND=jax in the environment before this module imports keras.
"""
import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402

from ..scenarios import weights_of  # noqa: E402
from . import keraslike  # noqa: E402

MODULE = "keras"


def setup(threads):
    if int(keras.__version__.split(".")[0]) < 3:
        raise ImportError(f"keras {keras.__version__} found, Keras 3 needed")
    backend = keras.backend.backend()
    v = {"keras": keras.__version__, "keras backend": backend}
    if backend == "jax":
        import jax

        v["jax (keras)"] = jax.__version__
    return v


class Runner:
    def __init__(self, sc, arrays):
        keras.utils.set_random_seed(0)
        self.sc = sc
        layers = [keras.Input(shape=(sc.in_dim,))]
        dense = []
        last = sc.n_dense - 1
        for j, (_, o, act) in enumerate(sc.layers):
            d = keras.layers.Dense(o, activation=act)
            layers.append(d)
            dense.append(d)
            if sc.dropout and j < last:
                layers.append(keras.layers.Dropout(sc.dropout))
        model = keras.Sequential(layers)
        for d, (w, b) in zip(dense, weights_of(arrays, sc)):
            d.set_weights([w, b])
        for d in dense[:sc.frozen]:
            d.trainable = False
        loss = ("mse" if sc.loss == "mse"
                else keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.compile(optimizer=keraslike.optimizer(keras, sc), loss=loss)
        self.model = model
        self.x, self.y = arrays["x"], arrays["y"]
        if sc.kind == "fit":
            self.X, self.Y = arrays["X"], arrays["Y"]

    def eval_loss(self):
        return float(self.model.test_on_batch(self.x, self.y))

    def train_step(self):
        return float(self.model.train_on_batch(self.x, self.y))

    def train(self, k):
        tob, x, y = self.model.train_on_batch, self.x, self.y
        for _ in range(k):
            tob(x, y)

    def forward(self, k):
        pob, x = self.model.predict_on_batch, self.x
        for _ in range(k):
            pob(x)

    def fit_epoch(self):
        h = self.model.fit(self.X, self.Y, batch_size=self.sc.batch, epochs=1, verbose=0,
                           shuffle=True)
        return float(h.history["loss"][-1])


def build(sc, arrays):
    if sc.graph:
        keras.utils.set_random_seed(0)
        return keraslike.build_graph(keras, sc, arrays, keras_semantics=True)
    if sc.cnn:
        keras.utils.set_random_seed(0)
        return keraslike.build_cnn(keras, sc, arrays)
    return Runner(sc, arrays)
