"""Write the Keras 3 fixture files in ``fixtures/`` (run by hand; the tests only read them).

    python tests/saving/make_fixtures.py            # every file
    python tests/saving/make_fixtures.py keras_cnn  # only the files named


Needs Keras 3 (jax backend, for training).  Each model gets seeded random weights
(batch-norm moving statistics included, so inference mode is exercised) and is
compiled, so the file carries a compile config; ``fixtures/expected.json`` records,
for each file, the input it was run on, Keras's predictions, and each layer's
``trainable`` flag.  The ``*_resume`` files were saved after two training steps:
their entry also records the batch, the loss of Keras's third step and the
predictions after it, which a resumed fastlayers run must reproduce.  ``keras_cnn``
and ``keras_text`` carry the convolutional catalogue (``catalogue_models.py``'s
``cnn`` and ``embedding`` builders; the text model's inputs are int32 ids,
recorded as ``x_dtype``).
"""
import json
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np  # noqa: E402

import keras  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import catalogue_models  # noqa: E402

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")


def randomize(model, seed):
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers() if hasattr(model, "_flatten_layers") else model.layers:
        ws = layer.get_weights()
        if not ws or isinstance(layer, keras.Model):
            continue
        new = []
        for i, w in enumerate(ws):
            if isinstance(layer, keras.layers.BatchNormalization) and i == len(ws) - 1:
                new.append(rng.uniform(0.5, 2.0, w.shape).astype(w.dtype))  # variance > 0
            else:
                new.append(rng.normal(0, 0.5, w.shape).astype(w.dtype))
        layer.set_weights(new)


def sequential():
    m = keras.Sequential([
        keras.Input((6,)),
        keras.layers.Dense(5, activation="relu", name="hidden"),
        keras.layers.BatchNormalization(name="bn"),
        keras.layers.Dropout(0.25, name="drop"),
        keras.layers.Dense(3, activation="softmax", name="probs"),
    ], name="keras_seq")
    m.get_layer("hidden").trainable = False
    m.compile(optimizer=keras.optimizers.Adam(0.005), loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])
    return m, np.random.default_rng(1).normal(size=(4, 6)).astype("float32")


def functional():
    inp = keras.Input((2, 3), name="grid")
    flat = keras.layers.Flatten(name="flat")(inp)
    shared = keras.layers.Dense(4, activation="tanh", name="shared")
    a = shared(flat)
    b = shared(keras.layers.Dense(6, name="pre")(flat))
    s = keras.layers.Add(name="sum")([a, b])
    s = keras.layers.BatchNormalization(name="bn")(s, training=False)
    s = keras.layers.Dropout(0.5, seed=7, name="drop")(s)
    sub_in = keras.Input((4,), name="sub_in")
    sub_out = keras.layers.Dense(2, activation="sigmoid", name="sub_dense")(sub_in)
    sub = keras.Model(sub_in, sub_out, name="head")
    seq = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="seq_dense"),
                            keras.layers.Activation("relu", name="seq_relu")], name="side")
    out = keras.layers.Concatenate(name="cat")([sub(s), seq(s), flat])
    m = keras.Model(inp, out, name="keras_functional")
    m.get_layer("pre").trainable = False
    m.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), loss="mse")
    return m, np.random.default_rng(2).normal(size=(5, 2, 3)).astype("float32")


def resume_functional():
    inp = keras.Input((4,), name="x")
    shared = keras.layers.Dense(3, activation="tanh", name="shared")
    a = shared(keras.layers.Dense(3, name="pre")(inp))
    b = shared(keras.layers.Dense(3, name="frozen")(inp))
    h = keras.layers.BatchNormalization(name="bn")(keras.layers.Add(name="sum")([a, b]))
    side = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="side_dense")],
                            name="side")
    out = keras.layers.Concatenate(name="cat")([side(h), keras.layers.Dense(1, name="skip")(inp)])
    m = keras.Model(inp, out, name="resume_functional")
    m.get_layer("frozen").trainable = False
    m.compile(optimizer=keras.optimizers.Adam(0.02), loss="mse")
    rng = np.random.default_rng(3)
    return m, rng.normal(size=(8, 4)).astype("float32"), rng.normal(size=(8, 3)).astype("float32")


def resume_sequential():
    m = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4, activation="relu", name="h"),
                          keras.layers.BatchNormalization(name="bn"),
                          keras.layers.Dense(3, activation="softmax", name="out")],
                         name="resume_sequential")
    m.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
              loss="categorical_crossentropy")
    rng = np.random.default_rng(4)
    return m, rng.normal(size=(8, 5)).astype("float32"), \
        np.eye(3, dtype="float32")[rng.integers(0, 3, 8)]


def cnn():
    m, x = catalogue_models.cnn(keras)
    m.get_layer("conv").trainable = False
    m.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    return m, x


def text():
    m, x = catalogue_models.embedding(keras)
    m.get_layer("emb").trainable = False
    m.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    return m, x


def deflate(path):
    """Keras stores its zip entries uncompressed; the same entries, byte for byte,
    deflated (HDF5's empty groups shrink tenfold, and zipfile reads either)."""
    import zipfile

    with zipfile.ZipFile(path) as zf:
        entries = [(i, zf.read(i.filename)) for i in zf.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for info, data in entries:
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)


def flags(model):
    out = {}
    for layer in model.layers:
        out[layer.name] = bool(layer.trainable)
        if isinstance(layer, keras.Model):
            out.update({f"{layer.name}/{k}": v for k, v in flags(layer).items()})
    return out


def main(names):
    path = os.path.join(HERE, "expected.json")
    expected = json.load(open(path)) if os.path.exists(path) else {}
    wanted = lambda name: not names or name in names  # noqa: E731
    for i, (name, make) in enumerate([("keras_sequential", sequential),
                                      ("keras_functional", functional),
                                      ("keras_cnn", cnn), ("keras_text", text)]):
        if not wanted(name):
            continue
        model, x = make()
        randomize(model, 10 + i)
        path = os.path.join(HERE, name + ".keras")
        model.save(path)
        deflate(path)
        again = keras.models.load_model(path)
        y = np.asarray(again.predict(x, verbose=0))
        expected[name] = {"file": name + ".keras", "x": x.tolist(), "y": y.tolist(),
                          "trainable": flags(again), "keras_version": keras.__version__}
        if x.dtype != np.float32:
            expected[name]["x_dtype"] = x.dtype.name
    for i, (name, make) in enumerate([("keras_functional_resume", resume_functional),
                                      ("keras_sequential_resume", resume_sequential)]):
        if not wanted(name):
            continue
        model, x, y = make()
        randomize(model, 20 + i)
        for _ in range(2):
            model.train_on_batch(x, y)
        path = os.path.join(HERE, name + ".keras")
        model.save(path)
        before = np.asarray(model.predict(x, verbose=0))
        loss = float(model.train_on_batch(x, y))
        after = np.asarray(model.predict(x, verbose=0))
        expected[name] = {"file": name + ".keras", "x": x.tolist(), "y": before.tolist(),
                          "targets": y.tolist(), "next_loss": loss, "after": after.tolist(),
                          "trainable": flags(model), "keras_version": keras.__version__}
    with open(os.path.join(HERE, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
    print("wrote", sorted(os.listdir(HERE)), file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
