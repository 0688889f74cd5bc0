"""fastlayers through its public Keras-style API only (``import fastlayers as fl``).

Sequential + Dense/Dropout, ``set_weights([kernel (in,out), bias])``, ``trainable=False``
before ``compile``, SGD(0.01), ``train_on_batch`` / ``test_on_batch`` /
``predict_on_batch`` / ``fit``.  The graph scenarios (``Model``, ``Container``,
``Concatenate``, ``BatchNormalization``, ``loss_weights``) and the RMSprop / AdamW
optimizers are built by ``keraslike`` with the same public API, and so are the CNN
scenarios (``Conv2D``, ``MaxPooling2D``, ``GlobalAveragePooling2D``, ``Flatten``).  Nothing here reaches
into fastlayers' internals.
"""
import numpy as np
import fastlayers as fl

from ..scenarios import weights_of
from . import keraslike

MODULE = "fastlayers"

if not hasattr(fl, "Sequential"):
    # The checkout's package exists before its engine does: say so instead of failing later.
    raise ImportError(f"fastlayers at {getattr(fl, '__file__', None) or list(fl.__path__)} "
                      "has no Sequential yet (not built, or not written yet)")


def setup(threads):
    backend = getattr(fl, "backend", None)
    if backend is not None and hasattr(backend, "set_num_threads"):
        backend.set_num_threads(threads)
    version = getattr(fl, "__version__", None)
    if version is None:
        try:
            from importlib.metadata import version as _v

            version = _v("fastlayers")
        except Exception:
            version = "?"
    v = {"fastlayers": version}
    return v


class Runner:
    def __init__(self, sc, arrays):
        _seed()
        self.sc = sc
        layers, dense = [], []
        last = sc.n_dense - 1
        for j, (i, o, act) in enumerate(sc.layers):
            kw = {"activation": act}
            if j == 0:
                kw["input_shape"] = (i,)
            d = fl.layers.Dense(o, **kw)
            layers.append(d)
            dense.append(d)
            if sc.dropout and j < last:
                layers.append(fl.layers.Dropout(sc.dropout))
        model = fl.Sequential(layers)
        for d, (w, b) in zip(dense, weights_of(arrays, sc)):
            d.set_weights([w, b])
        for d in dense[:sc.frozen]:
            d.trainable = False
        loss = ("mse" if sc.loss == "mse"
                else fl.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.compile(optimizer=keraslike.optimizer(fl, sc), loss=loss)
        self.model = model
        self.x = np.ascontiguousarray(arrays["x"], np.float32)
        self.y = arrays["y"]
        if sc.kind == "fit":
            self.X, self.Y = arrays["X"], arrays["Y"]

    def eval_loss(self):
        return float(_loss(self.model.test_on_batch(self.x, self.y)))

    def train_step(self):
        return float(_loss(self.model.train_on_batch(self.x, self.y)))

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


def _loss(v):
    # train_on_batch returns the loss, or [loss, *metrics] when metrics were compiled
    return v[0] if isinstance(v, (list, tuple)) else v


def build(sc, arrays):
    if sc.graph:
        _seed()
        return keraslike.build_graph(fl, sc, arrays)
    if sc.cnn:
        _seed()
        return keraslike.build_cnn(fl, sc, arrays)
    return Runner(sc, arrays)


def _seed():
    utils = getattr(fl, "utils", None)
    if utils is not None and hasattr(utils, "set_random_seed"):
        utils.set_random_seed(0)
