"""Keras 3 files both ways: committed fixtures (no Keras needed) and, where Keras is
installed, files written here loaded by Keras and files Keras writes loaded here."""
import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastlayers as fl

from .conftest import flags

pytest.importorskip("h5py")

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
EXPECTED = json.load(open(os.path.join(FIXTURES, "expected.json")))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_keras_fixture_loads_with_keras_predictions(name):
    e = EXPECTED[name]
    model = fl.models.load_model(os.path.join(FIXTURES, e["file"]))
    x = np.array(e["x"], dtype=e.get("x_dtype", "float32"))
    np.testing.assert_allclose(model.predict(x, verbose=0), np.array(e["y"]), rtol=1e-5,
                               atol=1e-6)
    assert flags(model) == e["trainable"]
    assert model.optimizer is not None  # compile config applied


@pytest.mark.parametrize("name", [n for n in sorted(EXPECTED) if n.endswith("_resume")])
def test_training_resumes_from_a_keras_file(name):
    """Saved by Keras after two steps: the third step here is Keras's third step."""
    e = EXPECTED[name]
    model = fl.models.load_model(os.path.join(FIXTURES, e["file"]))
    assert model.optimizer.iterations == 2
    x = np.array(e["x"], dtype=np.float32)
    loss = model.train_on_batch(x, np.array(e["targets"], dtype=np.float32))
    assert loss == pytest.approx(e["next_loss"], rel=1e-5)
    # Both fixtures have a BatchNormalization: its moving variance takes the unbiased batch
    # variance here (DESIGN.md R7, as Keras 2/tf.keras/PyTorch) and the biased one in
    # Keras 3, so inference after the step agrees to the size of that difference only.
    np.testing.assert_allclose(model.predict(x, verbose=0), np.array(e["after"]), rtol=5e-3,
                               atol=5e-3)
    fresh = fl.models.load_model(os.path.join(FIXTURES, e["file"]))
    fresh.compile(fresh.optimizer.__class__.from_config(fresh.optimizer.get_config()),
                  fresh.loss)  # same settings, optimizer state dropped: a different step
    fresh.train_on_batch(x, np.array(e["targets"], dtype=np.float32))
    assert not np.allclose(fresh.predict(x, verbose=0), np.array(e["after"]), rtol=1e-4,
                           atol=1e-5)


def test_keras_fixture_compile_config_and_fine_tuning():
    model = fl.models.load_model(os.path.join(FIXTURES, "keras_sequential.keras"))
    assert isinstance(model.optimizer, fl.optimizers.Adam)
    assert model.optimizer.learning_rate == pytest.approx(0.005)
    assert isinstance(model.loss, fl.losses.SparseCategoricalCrossentropy)
    frozen = model.get_layer("hidden")
    before = frozen.get_weights()
    x = np.array(EXPECTED["keras_sequential"]["x"], dtype=np.float32)
    model.train_on_batch(x, np.array([0, 1, 2, 0]))
    for a, b in zip(before, frozen.get_weights()):
        np.testing.assert_array_equal(a, b)  # frozen in Keras, frozen here
    other = fl.models.load_model(os.path.join(FIXTURES, "keras_functional.keras"), compile=False)
    assert other.optimizer is None
    assert isinstance(fl.models.load_model(os.path.join(FIXTURES, "keras_functional.keras"))
                      .optimizer, fl.optimizers.SGD)


def test_keras_fixture_pinned_training_and_nesting():
    model = fl.models.load_model(os.path.join(FIXTURES, "keras_functional.keras"))
    bn_node = [n for n in model._nodes if n.layer.name == "bn"][0]
    assert bn_node.training is False
    # Keras records Dropout's call default, training=False, on every call: not a pin
    # (Keras's fit overrides it), so the layer drops in training here as in Keras.
    drop_node = [n for n in model._nodes if n.layer.name == "drop"][0]
    assert drop_node.training is None
    assert isinstance(model.get_layer("head"), fl.Model)
    assert isinstance(model.get_layer("side"), fl.Sequential)
    shared = model.get_layer("shared")
    assert len([n for n in model._nodes if n.layer is shared]) == 2


def test_load_weights_from_keras_fixture_into_a_fastlayers_model():
    m = fl.Sequential([fl.layers.Dense(5, activation="relu", input_shape=(6,)),
                       fl.layers.BatchNormalization(), fl.layers.Dropout(0.25),
                       fl.layers.Dense(3, activation="softmax")])
    m.load_weights(os.path.join(FIXTURES, "keras_sequential.keras"))
    e = EXPECTED["keras_sequential"]
    np.testing.assert_allclose(m.predict(np.array(e["x"], np.float32), verbose=0), e["y"],
                               rtol=1e-5, atol=1e-6)


def test_missing_h5py_is_a_clear_import_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(ImportError, match=r"pip install fastlayers\[h5\]"):
        fl.models.load_model(os.path.join(FIXTURES, "keras_sequential.keras"))
    m = fl.Sequential([fl.layers.Dense(2, input_shape=(3,))])
    with pytest.raises(ImportError, match=r"fastlayers\[h5\]"):
        m.save(tmp_path / "m.keras", format="keras")
    assert not (tmp_path / "m.keras").exists()
    m.save(tmp_path / "m.keras")  # the native format needs no h5py
    fl.models.load_model(tmp_path / "m.keras")


def _edited_fixture(tmp_path, edit, name="edited.keras"):
    import zipfile

    src = os.path.join(FIXTURES, "keras_sequential.keras")
    with zipfile.ZipFile(src) as zf:
        entries = {n: zf.read(n) for n in zf.namelist()}
    cfg = json.loads(entries["config.json"])
    edit(cfg["config"]["layers"][1]["config"])  # the Dense 'hidden'
    entries["config.json"] = json.dumps(cfg)
    with zipfile.ZipFile(tmp_path / name, "w") as zf:
        for n, d in entries.items():
            zf.writestr(n, d)
    return tmp_path / name


def test_unsupported_keras_options_are_named(tmp_path):
    path = _edited_fixture(tmp_path, lambda c: c.update(kernel_regularizer={
        "module": "keras.regularizers", "class_name": "OrthogonalRegularizer",
        "config": {"factor": 0.01, "mode": "rows"}, "registered_name": None}))
    with pytest.raises(ValueError, match="'hidden'.*kernel_regularizer.*OrthogonalRegularizer"):
        fl.models.load_model(path)
    path = _edited_fixture(tmp_path, lambda c: c.update(lora_rank=4))
    with pytest.raises(ValueError, match="'hidden'.*lora_rank=4.*does not support"):
        fl.models.load_model(path)


def test_keras_regularizers_and_constraints_load(tmp_path):
    path = _edited_fixture(tmp_path, lambda c: c.update(
        kernel_regularizer={"module": "keras.regularizers", "class_name": "L2",
                            "config": {"l2": 0.25}, "registered_name": None},
        bias_constraint={"module": "keras.constraints", "class_name": "MaxNorm",
                         "config": {"max_value": 3, "axis": 0}, "registered_name": None}))
    model = fl.models.load_model(path)
    hidden = model.get_layer("hidden")
    assert isinstance(hidden.kernel_regularizer, fl.regularizers.L2)
    assert hidden.kernel_regularizer.l2 == 0.25
    assert isinstance(hidden.bias_constraint, fl.constraints.MaxNorm)
    assert hidden.bias_constraint.max_value == 3
    penalty = 0.25 * float(np.square(hidden.kernel.numpy().astype(np.float64)).sum())
    assert sum(float(l) for l in model.losses) == pytest.approx(penalty, rel=1e-6)


# ---------------------------------------------------------------------- outside-in, with Keras
def _need_keras():
    # Not imported here: Keras would pick its default backend in this process.
    if importlib.util.find_spec("keras") is None:
        pytest.skip("keras is not installed")


def _run_keras(code, cwd):
    _need_keras()
    # jax: Keras's numpy backend cannot train, and the resumed step is part of the check.
    env = dict(os.environ, KERAS_BACKEND="jax")
    res = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout


def _models():
    x = fl.Input((4,), name="x")
    d = fl.layers.Dense(3, activation="relu", name="d")
    h = fl.layers.Add(name="sum")([d(x), d(fl.layers.Dense(4, name="pre")(x))])
    h = fl.layers.BatchNormalization(name="bn")(h)
    h = fl.layers.Dropout(0.3, name="drop")(h)
    sub = fl.Sequential([fl.layers.Dense(2, input_shape=(3,), name="sd"),
                         fl.layers.Activation("tanh", name="st")], name="sub")
    ci = fl.Input((3,))
    cont = fl.Container(ci, fl.layers.Dense(3, activation="sigmoid", name="cd")(ci), name="cont")
    out = fl.layers.Concatenate(name="cat")([sub(h), cont(h), fl.layers.Flatten(name="fl")(h)])
    func = fl.Model(x, out, name="func")
    func.get_layer("pre").trainable = False
    func.compile(fl.optimizers.Adam(0.01), "mse", metrics=["mae"])
    seq = fl.Sequential([fl.layers.Dense(3, input_shape=(4,), name="a"),
                         fl.layers.BatchNormalization(name="b"),
                         fl.layers.Dense(2, activation="softmax", name="c")], name="seq")
    seq.compile("sgd", "categorical_crossentropy")
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(6, 4)).astype(np.float32)
    ys = {"func": rng.normal(size=(6, 8)).astype(np.float32),
          "seq": np.eye(2, dtype=np.float32)[rng.integers(0, 2, 6)]}
    for m, y in ((func, ys["func"]), (seq, ys["seq"])):
        for _ in range(3):
            # The two libraries draw different dropout masks: the training steps compared
            # run without dropping (predictions compared use the real rate).
            func.get_layer("drop").rate = 0.0
            m.train_on_batch(xs, y)  # moving statistics and optimizer moments under way
    return {"func": func, "seq": seq}, xs, ys


def test_keras_both_ways_outside_in(tmp_path):
    """One Keras subprocess (its import is slow): it loads the files written here and
    writes its own, which are then loaded here."""
    _need_keras()
    models, x, ys = _models()
    np.save(tmp_path / "x.npy", x)
    mine = {}
    models["func"].get_layer("drop").rate = 0.3
    for name, m in models.items():
        m.save(tmp_path / f"{name}.keras", format="keras")
        m.save_weights(tmp_path / f"{name}.weights.h5")
        models["func"].get_layer("drop").rate = 0.0
        np.save(tmp_path / f"{name}_y.npy", m.predict(x, verbose=0))
        np.save(tmp_path / f"{name}_t.npy", ys[name])
        loss = m.train_on_batch(x, ys[name], return_dict=True)["loss"]  # Keras's next step
        mine[name] = (loss, m.predict(x, verbose=0))
    out = _run_keras("""
        import json, numpy as np, keras
        x = np.load("x.npy")
        res = {}
        for name in ("func", "seq"):
            m = keras.models.load_model(name + ".keras")
            w = keras.models.load_model(name + ".keras", compile=False)
            w.load_weights(name + ".weights.h5")
            res[name + "_weights_err"] = float(np.abs(w.predict(x, verbose=0)
                                                     - np.load(name + "_y.npy")).max())
            if name == "func":
                assert m.get_layer("drop").rate == 0.3
                m.get_layer("drop").rate = 0.0
            res[name] = {"err": float(np.abs(m.predict(x, verbose=0) - np.load(name + "_y.npy")).max()),
                         "trainable": {l.name: l.trainable for l in m.layers},
                         "optimizer": type(m.optimizer).__name__,
                         "iterations": int(m.optimizer.iterations),
                         "next_loss": float(m.train_on_batch(x, np.load(name + "_t.npy"),
                                                             return_dict=True)["loss"]),
                         "after": m.predict(x, verbose=0).tolist()}

        inp = keras.Input((5,))
        d = keras.layers.Dense(4, activation="sigmoid")
        h = keras.layers.Concatenate()([d(inp), d(keras.layers.Dense(5)(inp))])
        h = keras.layers.BatchNormalization(momentum=0.8, epsilon=1e-2)(h)
        inner = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2), keras.layers.Dropout(0.1)])
        m = keras.Model(inp, keras.layers.Activation("softmax")(inner(h)))
        m.layers[1].trainable = False
        rng = np.random.default_rng(5)
        for layer in m._flatten_layers():
            if layer.get_weights() and not isinstance(layer, keras.Model):
                layer.set_weights([np.abs(rng.normal(size=w.shape)).astype("float32") + 0.1
                                   for w in layer.get_weights()])
        m.save("k.keras")
        m.save_weights("k.weights.h5")
        kx = rng.normal(size=(3, 5)).astype("float32")
        np.save("kx.npy", kx)
        np.save("ky.npy", m.predict(kx, verbose=0))
        res["keras_flags"] = {l.name: l.trainable for l in m.layers}
        print(json.dumps(res))
    """, tmp_path)
    res = json.loads(out.strip().splitlines()[-1])
    # fastlayers -> Keras
    for name in models:
        assert res[name]["err"] < 1e-5, res
        assert res[name + "_weights_err"] < 1e-5, res
        # Keras resumes training where fastlayers stopped (optimizer state included).
        assert res[name]["iterations"] == 3
        assert res[name]["next_loss"] == pytest.approx(mine[name][0], rel=1e-5)
        # After the step: BN's moving variance differs by design (R7: unbiased here, biased
        # in Keras 3), so inference agrees to the size of that difference only.
        np.testing.assert_allclose(res[name]["after"], mine[name][1], rtol=5e-3, atol=5e-3)
    assert res["func"]["trainable"]["pre"] is False and res["func"]["trainable"]["d"] is True
    assert res["func"]["optimizer"] == "Adam" and res["seq"]["optimizer"] == "SGD"
    # Keras -> fastlayers
    m = fl.models.load_model(tmp_path / "k.keras")
    kx, ky = np.load(tmp_path / "kx.npy"), np.load(tmp_path / "ky.npy")
    np.testing.assert_allclose(m.predict(kx, verbose=0), ky, rtol=1e-5, atol=1e-6)
    assert {l.name: l.trainable for l in m.layers} == res["keras_flags"]
    other = fl.models.model_from_json(m.to_json())
    other.load_weights(tmp_path / "k.weights.h5")
    np.testing.assert_allclose(other.predict(kx, verbose=0), ky, rtol=1e-5, atol=1e-6)
