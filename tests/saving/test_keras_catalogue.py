"""The layer catalogue through Keras 3's own ``.keras`` files, both ways, with Keras
installed (an optional peer): a file Keras writes loads here with Keras's
predictions, a file written here loads in Keras with ours, and Keras's
``get_weights()`` set layer by layer into the fastlayers twin gives the same outputs.
The same builders (``catalogue_models.py``) make both libraries' models."""
import os
import sys
import zipfile

import numpy as np
import pytest

import fastlayers as fl
from fastlayers.saving.keras_format import keras_layer_order
from fastlayers.saving.serialization import ConfigError

from .catalogue_models import GROUPS, randomize

pytest.importorskip("h5py")
if "keras" not in sys.modules:
    # jax as make_fixtures.py (no TensorFlow); if another test imported Keras first
    # (tests/layers: numpy), its backend serves too: nothing here trains in Keras.
    os.environ.setdefault("KERAS_BACKEND", "jax")
keras = pytest.importorskip("keras")

IDS = [g.__name__ for g in GROUPS]
# Keras's own variables warn about NumPy 2's __array__(copy=) on every get_weights().
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def _close(ours, theirs):
    np.testing.assert_allclose(ours, np.asarray(theirs), rtol=1e-4, atol=1e-5)


def _keras_layers(model):
    out = []
    for layer in model.layers:
        out += _keras_layers(layer) if isinstance(layer, keras.Model) else [layer]
    return out


def _config_of(obj):
    return None if obj is None else (type(obj).__name__, {
        k: pytest.approx(v) if isinstance(v, float) else v for k, v in obj.get_config().items()})


# The regularizers and constraints each group sets.
PENALTIES = {"convs": 8, "conv1d": 1, "noise": 1}
PENALTY_ATTRS = ("kernel_regularizer", "bias_regularizer", "activity_regularizer",
                 "kernel_constraint", "bias_constraint", "depthwise_regularizer",
                 "pointwise_regularizer", "depthwise_constraint", "pointwise_constraint")


def _same_penalties(fl_model, k_model):
    """Every regularizer and constraint of the Keras layers is on the twin here."""
    seen = 0
    for kl in _keras_layers(k_model):
        for attr in PENALTY_ATTRS:
            theirs = getattr(kl, attr, None)
            if theirs is None:
                continue
            seen += 1
            ours = fl_model.get_layer(kl.name)
            # fastlayers' ActivityRegularization keeps its penalty as `regularizer`
            ours = getattr(ours, "regularizer" if isinstance(
                kl, keras.layers.ActivityRegularization) else attr)
            assert _config_of(ours) == _config_of(theirs), (kl.name, attr)
    return seen


@pytest.mark.parametrize("build", GROUPS, ids=IDS)
def test_a_keras_file_loads_with_keras_predictions(build, tmp_path):
    km, x = build(keras)
    randomize(_keras_layers(km), 10)
    path = str(tmp_path / "k.keras")
    km.save(path)
    fm = fl.models.load_model(path)
    _close(fm.predict(x, verbose=0), km.predict(x, verbose=0))
    # The layers in Keras's order, which names the weight groups.
    assert [(l.name, type(l).__name__) for l in keras_layer_order(fm)] == \
        [(l.name, type(l).__name__) for l in km.layers]
    assert _same_penalties(fm, km) == PENALTIES.get(build.__name__, 0)


@pytest.mark.parametrize("build", GROUPS, ids=IDS)
def test_a_fastlayers_file_loads_in_keras_with_our_predictions(build, tmp_path):
    fm, x = build(fl)
    randomize(fm.layers, 11)
    weighted = [l for l in fm.layers if l.weights]
    if len(weighted) > 1:  # one frozen, the rest trained
        weighted[0].trainable = False
        fm.compile(fl.optimizers.Adam(0.01), "mse")
    path = str(tmp_path / "f.keras")
    fm.save(path, format="keras")
    km = keras.models.load_model(path)
    _close(fm.predict(x, verbose=0), km.predict(x, verbose=0))
    # Keras's Sequential lists no InputLayer: compare the layers it lists.
    assert {l.name: l.trainable for l in km.layers} == \
        {l.name: fm.get_layer(l.name).trainable for l in km.layers}
    if len(weighted) > 1:
        assert km.get_layer(weighted[0].name).trainable is False
        assert type(km.optimizer).__name__ == "Adam"
    assert _same_penalties(fm, km) == PENALTIES.get(build.__name__, 0)
    # ... and back again: the file Keras writes from it is the one we wrote.
    again = str(tmp_path / "k.keras")
    km.save(again)
    _close(fl.models.load_model(again).predict(x, verbose=0), fm.predict(x, verbose=0))


@pytest.mark.parametrize("build", GROUPS, ids=IDS)
def test_keras_get_weights_set_into_the_twin_layers(build):
    km, x = build(keras)
    fm, _ = build(fl)
    randomize(_keras_layers(km), 12)
    moved = 0
    for kl in _keras_layers(km):
        if not kl.weights:
            continue
        ours = fm.get_layer(kl.name)
        # Keras's weight names, shapes and order are ours.
        assert [w.name for w in ours.weights] == [v.name for v in kl.weights]
        assert [tuple(w.shape) for w in ours.weights] == [tuple(v.shape) for v in kl.weights]
        ours.set_weights(kl.get_weights())
        moved += 1
    assert moved or not fm.weights
    _close(fm.predict(x, verbose=0), km.predict(x, verbose=0))


def test_every_exported_class_with_a_keras_twin_is_translated():
    from fastlayers.saving import keras_layers

    exported = {cls.__name__ for cls in (getattr(fl.layers, n) for n in fl.layers.__all__)
                if isinstance(cls, type) and issubclass(cls, fl.layers.Layer)}
    twins = {n for n in exported if hasattr(keras.layers, n)} - {"Layer", "Lambda"}
    assert twins - set(keras_layers.LAYERS) == set()
    built = {type(l).__name__ for g in GROUPS for l in _keras_layers(g(keras)[0])}
    # Every translated class is in a model above (InputLayer: Keras lists it in
    # functional models only).
    assert set(keras_layers.LAYERS) - built == set()


@pytest.mark.parametrize("kwargs,option", [
    (dict(data_format="channels_first"), "data_format='channels_first'"),
    (dict(groups=2), "groups=2"),
])
def test_a_keras_option_fastlayers_lacks_is_named(kwargs, option, tmp_path):
    inp = keras.Input((6, 6, 4))
    out = keras.layers.Conv2D(4, 3, name="conv_x", **kwargs)(inp)
    path = str(tmp_path / "opt.keras")
    keras.Model(inp, keras.layers.Dense(2, name="after")(out)).save(path)
    with pytest.raises(ConfigError, match=rf"'conv_x' \(Conv2D\) uses the Keras option "
                                          rf"{option}"):
        fl.models.load_model(path)


def test_keras_layer_or_activation_fastlayers_lacks_is_named(tmp_path):
    inp = keras.Input((6,))
    path = str(tmp_path / "act.keras")
    keras.Model(inp, keras.layers.Dense(2, activation="hard_silu", name="d")(inp)).save(path)
    with pytest.raises(ConfigError, match="hard_silu"):
        fl.models.load_model(path)
    path = str(tmp_path / "cls.keras")
    keras.Model(inp, keras.layers.UnitNormalization(name="u")(inp)).save(path)
    with pytest.raises(ConfigError, match="'UnitNormalization' has no fastlayers equivalent"):
        fl.models.load_model(path)
    with zipfile.ZipFile(path) as zf:
        assert "model.weights.h5" in zf.namelist()


def test_dropout_calls_are_not_pinned_unless_keras_says_true(tmp_path):
    """Keras writes training=False on every call of a dropout or noise layer (its
    call's default, overridden by fit); only an explicit training=True is a pin."""
    inp = keras.Input((50,))
    x = keras.layers.GaussianNoise(1.0, name="noise")(inp)
    x = keras.layers.Dropout(0.5, name="free")(x)
    x = keras.layers.Dropout(0.5, name="mc")(x, training=True)
    path = str(tmp_path / "drop.keras")
    keras.Model(inp, x).save(path)
    model = fl.models.load_model(path)
    pins = {n.layer.name: n.training for n in model._nodes}
    assert (pins["noise"], pins["free"], pins["mc"]) == (None, None, True)
    x = np.ones((4, 50), np.float32)
    assert np.count_nonzero(np.asarray(model(x, training=True)) == 0) > 0
    assert not np.array_equal(np.asarray(model(x)), x)  # "mc" drops even in inference
