"""The convolutional catalogue's committed Keras 3 files (``fixtures/keras_cnn.keras``,
``keras_text.keras``, written by ``make_fixtures.py``), with no Keras installed: they
load with Keras's predictions (also ``test_keras_files.py``'s fixture test), their
weights load into a fastlayers twin, what fastlayers writes has Keras's weight
layout and config keys, and an option fastlayers lacks is refused by name with
nothing loaded."""
import io
import json
import os
import zipfile

import numpy as np
import pytest

import fastlayers as fl
from fastlayers.saving.serialization import ConfigError

from .catalogue_models import cnn, embedding

h5py = pytest.importorskip("h5py")

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
EXPECTED = json.load(open(os.path.join(FIXTURES, "expected.json")))
CASES = {"keras_cnn": cnn, "keras_text": embedding}


def _x(name):
    e = EXPECTED[name]
    return np.array(e["x"], dtype=e.get("x_dtype", "float32")), np.array(e["y"])


def _entries(path):
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def _write(path, entries):
    with zipfile.ZipFile(path, "w") as zf:
        for n, d in entries.items():
            zf.writestr(n, d)
    return path


def _h5_layout(data):
    """{dataset path: shape} under layers/ of a model.weights.h5."""
    out = {}
    with h5py.File(io.BytesIO(data), "r") as f:
        f["layers"].visititems(lambda n, o: out.__setitem__(n, o.shape)
                               if isinstance(o, h5py.Dataset) else None)
    return out


def test_the_fixtures_hold_the_catalogue():
    classes = set()
    for name in CASES:
        cfg = json.loads(_entries(os.path.join(FIXTURES, f"{name}.keras"))["config.json"])
        classes |= {l["class_name"] for l in cfg["config"]["layers"]}
    assert classes >= {"Conv2D", "BatchNormalization", "MaxPooling2D", "AveragePooling2D",
                       "SeparableConv2D", "DepthwiseConv2D", "Conv2DTranspose", "UpSampling2D",
                       "ZeroPadding2D", "Cropping2D", "LayerNormalization",
                       "GroupNormalization", "PReLU", "LeakyReLU", "GlobalAveragePooling2D",
                       "Embedding", "Conv1D", "GlobalMaxPooling1D", "Dense"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_fixture_weights_load_into_the_fastlayers_twin(name):
    twin, _ = CASES[name](fl)
    twin.load_weights(os.path.join(FIXTURES, f"{name}.keras"))
    x, y = _x(name)
    np.testing.assert_allclose(twin.predict(x, verbose=0), y, rtol=1e-5, atol=1e-6)
    # Layer by layer too: the loaded model's get_weights() set into a fresh twin.
    loaded = fl.models.load_model(os.path.join(FIXTURES, f"{name}.keras"))
    fresh, _ = CASES[name](fl)
    for layer in fresh.layers:
        layer.set_weights(loaded.get_layer(layer.name).get_weights())
    np.testing.assert_allclose(fresh.predict(x, verbose=0), y, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(CASES))
def test_what_we_write_has_keras_layout(name, tmp_path):
    src = os.path.join(FIXTURES, f"{name}.keras")
    model = fl.models.load_model(src)
    out = tmp_path / "ours.keras"
    model.save(out, format="keras")
    theirs, ours = _entries(src), _entries(out)
    # The same weight groups, datasets and shapes as the file Keras wrote.
    assert _h5_layout(ours["model.weights.h5"]) == _h5_layout(theirs["model.weights.h5"])
    # Every config key we write is one Keras writes for that layer (Keras's
    # from_config refuses unknown arguments), and the values agree on the keys
    # both hold, initializers and dtype policies aside.
    k_layers = {l["name"]: l for l in json.loads(theirs["config.json"])["config"]["layers"]}
    for layer in json.loads(ours["config.json"])["config"]["layers"]:
        k = k_layers[layer["name"]]
        assert layer["class_name"] == k["class_name"]
        assert set(layer["config"]) <= set(k["config"]), layer["name"]
        for key, v in layer["config"].items():
            if key.endswith("_initializer") or key == "dtype":
                continue
            kv = k["config"][key]
            assert json.loads(json.dumps(v)) == kv, (layer["name"], key, v, kv)
    again = fl.models.load_model(out)
    x, y = _x(name)
    np.testing.assert_allclose(again.predict(x, verbose=0), y, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("option,value", [("data_format", "channels_first"), ("groups", 2)])
def test_a_conv_option_fastlayers_lacks_is_named_and_nothing_loads(option, value, tmp_path):
    src = os.path.join(FIXTURES, "keras_cnn.keras")
    entries = _entries(src)
    cfg = json.loads(entries["config.json"])
    conv = [l for l in cfg["config"]["layers"] if l["name"] == "conv"][0]
    conv["config"][option] = value
    entries["config.json"] = json.dumps(cfg)
    path = _write(tmp_path / "bad.keras", entries)
    with pytest.raises(ConfigError, match=rf"'conv' \(Conv2D\) uses the Keras option "
                                          rf"{option}={value!r}, which fastlayers does not"):
        fl.models.load_model(path)
    # At its neutral value the option is accepted.
    conv["config"][option] = {"data_format": "channels_last", "groups": 1}[option]
    entries["config.json"] = json.dumps(cfg)
    model = fl.models.load_model(_write(tmp_path / "ok.keras", entries))
    x, y = _x("keras_cnn")
    np.testing.assert_allclose(model.predict(x, verbose=0), y, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("edit,message", [
    (lambda c: c.update(dtype={"module": "keras", "class_name": "DTypePolicy",
                               "config": {"name": "mixed_float16"}, "registered_name": None}),
     r"'conv' \(Conv2D\) uses the Keras dtype policy 'mixed_float16'"),
    (lambda c: c.update(activation="hard_silu"), r"'conv'.*unknown activation 'hard_silu'"),
    (lambda c: c.update(kernel_constraint={"module": "keras.constraints",
                                           "class_name": "Clip", "config": {}}),
     r"'conv' \(Conv2D\) has the Keras constraint kernel_constraint='Clip'"),
])
def test_other_keras_settings_fastlayers_lacks_are_named(edit, message, tmp_path):
    entries = _entries(os.path.join(FIXTURES, "keras_cnn.keras"))
    cfg = json.loads(entries["config.json"])
    edit([l for l in cfg["config"]["layers"] if l["name"] == "conv"][0]["config"])
    entries["config.json"] = json.dumps(cfg)
    with pytest.raises(ConfigError, match=message):
        fl.models.load_model(_write(tmp_path / "bad.keras", entries))


def test_weights_that_do_not_fit_leave_the_model_untouched(tmp_path):
    """A file with one array of another shape: the load is refused before any weight
    is assigned."""
    twin, _ = cnn(fl)
    before = [w.copy() for w in twin.get_weights()]
    entries = _entries(os.path.join(FIXTURES, "keras_cnn.keras"))
    buf = io.BytesIO()
    with h5py.File(io.BytesIO(entries["model.weights.h5"]), "r") as f, \
            h5py.File(buf, "w") as g:
        for key in f:
            f.copy(key, g)
        del g["layers/dense/vars/0"]
        g["layers/dense/vars/0"] = np.zeros((5, 3), np.float32)  # the kernel is (2, 3)
    entries["model.weights.h5"] = buf.getvalue()
    path = _write(tmp_path / "bad_weights.keras", entries)
    with pytest.raises(ValueError, match=r"'probs/kernel' has shape \(2, 3\)"):
        twin.load_weights(path)
    for a, b in zip(twin.get_weights(), before):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=r"'probs/kernel' has shape \(2, 3\)"):
        fl.models.load_model(path)
