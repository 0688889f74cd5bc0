"""save -> load gives the same model: predictions, explain rows, flags, the next steps."""
import copy
import json
import pickle

import numpy as np
import pytest

import fastlayers as fl

from .conftest import BUILDERS, Scale, assert_same_model, build, explain_rows, flags


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_save_load_round_trip(kind, optimizer, f64, tmp_path):
    model, x, y = build(kind, optimizer)
    path = tmp_path / f"{kind}.keras"
    model.save(path)
    loaded = fl.models.load_model(path)
    assert loaded.optimizer.iterations == model.optimizer.iterations == 2
    assert type(loaded.optimizer) is type(model.optimizer)
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert_same_model(model, loaded, x, y)


@pytest.mark.parametrize("how", ["pickle", "deepcopy"])
@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_pickle_and_deepcopy_of_compiled_models(kind, how, f64):
    model, x, y = build(kind)
    other = pickle.loads(pickle.dumps(model)) if how == "pickle" else copy.deepcopy(model)
    assert other is not model and other.optimizer is not model.optimizer
    assert not {id(w) for w in other.weights} & {id(w) for w in model.weights}
    assert_same_model(model, other, x, y)


def test_float32_round_trip(tmp_path):
    model, x, y = build("sequential")
    model.save(tmp_path / "m.keras")
    loaded = fl.models.load_model(tmp_path / "m.keras")
    assert loaded.weights[0].dtype == np.float32
    assert_same_model(model, loaded, x, y, tol=0)


def test_flags_survive_and_frozen_bn_stays_frozen(f64, tmp_path):
    model, x, y = build("nested")
    model.save(tmp_path / "n.keras")
    loaded = fl.models.load_model(tmp_path / "n.keras")
    assert loaded.get_layer("block").trainable is False
    assert loaded.get_layer("block").get_layer("inner_dense").trainable is True
    before = [w.numpy() for w in loaded.get_layer("block").weights]
    loaded.train_on_batch(x, y)
    for b, w in zip(before, loaded.get_layer("block").weights):
        np.testing.assert_array_equal(b, w.value)  # frozen container: bit-identical (R7)


def test_pinned_training_survives(f64, tmp_path):
    model, x, y = build("functional")
    model.save(tmp_path / "f.keras")
    loaded = fl.models.load_model(tmp_path / "f.keras")
    node = [n for n in loaded._nodes if n.layer.name == "always_drop"][0]
    assert node.training is True
    # Pinned training=True: dropout is active even in predict.
    p1, p2 = loaded.predict(x, verbose=0), loaded.predict(x, verbose=0)
    assert not np.allclose(p1, p2)


def test_shared_layer_is_one_layer_after_load(f64, tmp_path):
    model, x, y = build("shared")
    model.save(tmp_path / "s.keras")
    loaded = fl.models.load_model(tmp_path / "s.keras")
    layer = loaded.get_layer("twice")
    assert len([n for n in loaded._nodes if n.layer is layer]) == 3
    assert len(loaded.weights) == len(model.weights)


def test_gan_parts_share_layers_after_load(f64, tmp_path):
    model, x, y = build("gan")
    model.save(tmp_path / "gan.keras")
    loaded = fl.models.load_model(tmp_path / "gan.keras")
    g, d = loaded.get_layer("generator"), loaded.get_layer("discriminator")
    assert d.trainable is False and g.trainable is True
    z = np.random.default_rng(3).normal(size=(4, 3))
    np.testing.assert_allclose(loaded.predict(z, verbose=0), d.predict(g.predict(z, verbose=0),
                                                                          verbose=0), atol=1e-12)
    # The discriminator trained on its own shares its weights with the combined model.
    d.trainable = True
    d.compile("sgd", "binary_crossentropy")
    d.train_on_batch(g.predict(z, verbose=0), np.ones((4, 1)))
    np.testing.assert_allclose(loaded.predict(z, verbose=0),
                               d.predict(g.predict(z, verbose=0), verbose=0), atol=1e-12)


def test_include_optimizer_false_and_compile_false(f64, tmp_path):
    model, x, y = build("sequential")
    model.save(tmp_path / "a.keras", include_optimizer=False)
    loaded = fl.models.load_model(tmp_path / "a.keras")
    assert loaded.optimizer is None
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=0)
    model.save(tmp_path / "b.keras")
    assert fl.models.load_model(tmp_path / "b.keras", compile=False).optimizer is None


def test_compile_config_round_trips(f64, tmp_path):
    x = fl.Input((3,), name="x")
    a = fl.layers.Dense(2, name="a")(x)
    b = fl.layers.Dense(1, activation="sigmoid", name="b")(x)
    m = fl.Model(x, [a, b])
    m.compile(fl.optimizers.SGD(0.1), loss=["mse", fl.losses.BinaryCrossentropy(from_logits=False)],
              loss_weights=[0.5, 2.0], metrics={"b": ["accuracy"]})
    m.save(tmp_path / "m.keras")
    loaded = fl.models.load_model(tmp_path / "m.keras")
    c, c2 = m._compiled, loaded._compiled
    assert c2.loss_weights == [0.5, 2.0]
    assert [type(l) for l in c2.losses] == [type(l) for l in c.losses]
    assert [list(map(str, ids)) for ids in c2.metric_ids] == [[], ["accuracy"]]
    logits = fl.losses.CategoricalCrossentropy(from_logits=True)
    assert fl.losses.CategoricalCrossentropy.from_config(logits.get_config()).from_logits is True


def test_custom_layer_needs_registration_or_custom_objects(f64, tmp_path):
    class Local(Scale):  # same behaviour, not registered
        pass

    x = fl.Input((3,))
    m = fl.Model(x, Local(3.0, name="local")(x))
    m.save(tmp_path / "c.keras", include_optimizer=False)
    with pytest.raises(ValueError, match="unknown layer class 'Local'.*register_serializable"):
        fl.models.load_model(tmp_path / "c.keras")
    loaded = fl.models.load_model(tmp_path / "c.keras", custom_objects={"Local": Local})
    assert isinstance(loaded.get_layer("local"), Local) and loaded.get_layer("local").factor == 3.0
    xs = np.ones((2, 3))
    np.testing.assert_allclose(loaded.predict(xs, verbose=0), m.predict(xs, verbose=0), atol=0)
    # Registered classes are written by their registered name.
    cfg = json.loads(build("custom")[0].to_json())
    entry = [e for e in cfg["config"]["layers"] if e["name"] == "scale"][0]
    assert entry["registered_name"] == "SavingTests>Scale"
    assert fl.utils.register_keras_serializable is fl.utils.register_serializable


def test_to_json_and_model_from_json(f64):
    model, x, y = build("nested")
    text = model.to_json()
    again = fl.models.model_from_json(text)
    assert json.loads(again.to_json()) == json.loads(text)
    assert flags(again) == flags(model)
    # Architecture only: weights are new.
    assert not np.allclose(again.get_layer("stem").kernel.value, model.get_layer("stem").kernel.value)
    with pytest.raises(ValueError, match="not valid JSON"):
        fl.models.model_from_json("{nope")


def test_clone_model(f64):
    model, x, y = build("shared")
    clone = fl.models.clone_model(model)
    assert not {id(l) for l in clone.layers} & {id(l) for l in model.layers}
    assert json.loads(clone.to_json()) == json.loads(model.to_json())
    twice = clone.get_layer("twice")
    assert len([n for n in clone._nodes if n.layer is twice]) == 3
    assert not np.allclose(twice.kernel.value, model.get_layer("twice").kernel.value)
    seen = []

    def fn(layer):
        seen.append(layer.name)
        return layer.__class__.from_config(layer.get_config())

    fl.models.clone_model(model, clone_function=fn)
    assert sorted(seen) == sorted(l.name for l in model.layers[1:])
    seq, _, _ = BUILDERS["sequential"]()
    c = fl.models.clone_model(seq, input_tensors=fl.Input((5,)))
    assert [type(l) for l in c.layers] == [type(l) for l in seq.layers]


@pytest.mark.parametrize("layer", [
    fl.layers.Dense(3, activation="tanh", use_bias=False, kernel_initializer="he_normal",
                    bias_initializer=fl.initializers.Constant(0.5), name="d", trainable=False,
                    dtype="float64"),
    fl.layers.Dropout(0.3, seed=12, name="drop"),
    fl.layers.Activation("softmax", name="act"),
    fl.layers.BatchNormalization(axis=-1, momentum=0.9, epsilon=1e-4, center=False, scale=True,
                                 beta_initializer="ones", gamma_initializer="random_uniform",
                                 moving_mean_initializer=fl.initializers.RandomNormal(0, 2, seed=3),
                                 moving_variance_initializer="ones", name="bn"),
    fl.layers.Flatten(name="flat", trainable=False),
    fl.layers.Concatenate(axis=1, name="cat"),
    fl.layers.Add(name="add", dtype="float64"),
    fl.layers.InputLayer(shape=(3, 2), name="inp", dtype="float64"),
])
def test_layer_config_round_trip(layer):
    cfg = layer.get_config()
    json.dumps(cfg)
    again = type(layer).from_config(cfg)
    assert again.get_config() == cfg
    assert again.trainable == layer.trainable and again.dtype == layer.dtype


def test_initializer_and_optimizer_configs():
    for name in fl.initializers._BY_NAME:
        init = fl.initializers.get(name)
        ser = fl.initializers.serialize(init)
        again = fl.initializers.get(json.loads(json.dumps(ser)))
        assert type(again) is type(init) and again.get_config() == init.get_config()
    vs = fl.initializers.VarianceScaling(2.0, "fan_out", "uniform", seed=4)
    again = fl.initializers.get(fl.initializers.serialize(vs))
    np.testing.assert_array_equal(again((3, 4)), vs((3, 4)))
    for opt in (fl.optimizers.SGD(0.2, momentum=0.5, nesterov=True),
                fl.optimizers.Adam(0.003, beta_1=0.8, beta_2=0.99, epsilon=1e-5)):
        again = type(opt).from_config(opt.get_config())
        assert again.get_config() == opt.get_config()
        assert fl.optimizers.get(fl.optimizers.serialize(opt)).get_config() == opt.get_config()
    for loss in (fl.losses.MeanSquaredError(), fl.losses.MeanAbsoluteError(),
                 fl.losses.BinaryCrossentropy(from_logits=True),
                 fl.losses.CategoricalCrossentropy(from_logits=True),
                 fl.losses.SparseCategoricalCrossentropy(from_logits=False)):
        again = fl.losses.get(json.loads(json.dumps(fl.losses.serialize(loss))))
        assert type(again) is type(loss) and again.get_config() == loss.get_config()
    assert isinstance(fl.losses.get({"class_name": "function", "config": "mse"}),
                      fl.losses.MeanSquaredError)
    for name in ("accuracy", "mae", "sparse_categorical_accuracy"):
        m = fl.metrics.get(name)
        assert fl.metrics.Metric.from_config(m.get_config()).fn is m.fn


def test_optimizer_state_is_all_or_nothing(f64):
    model, x, y = build("sequential")
    opt, ws = model.optimizer, model._compiled.weights
    state = opt.get_state(ws)
    assert state[0].dtype == np.int64 and state[0].shape == () and int(state[0]) == 2
    assert len(state) == 1 + 2 * len(ws)
    bad = list(state)
    bad[-1] = np.zeros((99,))
    with pytest.raises(ValueError, match="slot (1|velocity)"):
        opt.set_state(ws, [np.array(7, dtype=np.int64)] + bad[1:])
    assert opt.iterations == 2
    for a, b in zip(opt.get_state(ws), state):
        np.testing.assert_array_equal(a, b)


def test_save_weights_and_load_weights_npz(f64, tmp_path):
    model, x, y = build("nested")
    model.save_weights(tmp_path / "w.weights.npz")
    other = fl.models.model_from_json(model.to_json())
    other.load_weights(tmp_path / "w.weights.npz")
    np.testing.assert_allclose(other.predict(x, verbose=0), model.predict(x, verbose=0), atol=0)
    other.load_weights(tmp_path / "w.weights.npz")  # idempotent
    with pytest.raises(ValueError, match=r"\.weights\.npz"):
        model.save_weights(tmp_path / "w.npz")


def test_load_weights_from_keras_archive(f64, tmp_path):
    model, x, y = build("functional")
    model.save(tmp_path / "f.keras")
    other = fl.models.model_from_json(model.to_json())
    other.load_weights(tmp_path / "f.keras")
    np.testing.assert_allclose(other.get_layer("out").kernel.value,
                               model.get_layer("out").kernel.value, atol=0)


def test_load_weights_skip_mismatch(f64, tmp_path):
    a = fl.Sequential([fl.layers.Dense(4, input_shape=(3,), name="h"), fl.layers.Dense(2, name="o")])
    b = fl.Sequential([fl.layers.Dense(4, input_shape=(3,), name="h"), fl.layers.Dense(5, name="o")])
    a.save_weights(tmp_path / "a.weights.npz")
    before = b.get_weights()
    with pytest.raises(ValueError, match="layers/o/vars/0.*shape"):
        b.load_weights(tmp_path / "a.weights.npz")
    for u, v in zip(before, b.get_weights()):
        np.testing.assert_array_equal(u, v)
    with pytest.warns(UserWarning, match="skipped 2 mismatched"):
        b.load_weights(tmp_path / "a.weights.npz", skip_mismatch=True)
    np.testing.assert_array_equal(b.get_layer("h").kernel.value, a.get_layer("h").kernel.value)
    np.testing.assert_array_equal(b.get_layer("o").kernel.value, before[2])


def test_save_keras_format_loads_back_here(f64, tmp_path):
    pytest.importorskip("h5py")
    model, x, y = build("nested")
    model.save(tmp_path / "k.keras", format="keras")
    loaded = fl.models.load_model(tmp_path / "k.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-12)
    assert flags(loaded) == flags(model)
    model.save_weights(tmp_path / "k.weights.h5")
    other = fl.models.model_from_json(model.to_json())
    other.load_weights(tmp_path / "k.weights.h5")
    np.testing.assert_allclose(other.predict(x, verbose=0), model.predict(x, verbose=0), atol=0)


def test_keras_format_refuses_custom_layers(tmp_path):
    pytest.importorskip("h5py")
    model = build("custom")[0]
    with pytest.raises(ValueError, match="no Keras equivalent"):
        model.save(tmp_path / "c.keras", format="keras")
    assert not (tmp_path / "c.keras").exists()


def test_bad_arguments(tmp_path):
    model = build("sequential")[0]
    with pytest.raises(ValueError, match="must end in '.keras'"):
        model.save(tmp_path / "m.h5")
    with pytest.raises(ValueError, match="format must be one of"):
        model.save(tmp_path / "m.keras", format="tf")
    with pytest.raises(FileNotFoundError):
        fl.models.load_model(tmp_path / "missing.keras")
    model.save(tmp_path / "m.keras")
    with pytest.raises(FileExistsError):
        model.save(tmp_path / "m.keras", overwrite=False)


def test_deepcopy_of_unregistered_custom_layer_model(f64):
    class Unregistered(Scale):
        pass

    x = fl.Input((3,))
    m = fl.Model(x, fl.layers.Dense(2)(Unregistered(1.5, name="u")(x)))
    m.compile("adam", "mse")
    xs, ys = np.ones((4, 3)), np.zeros((4, 2))
    m.train_on_batch(xs, ys)
    c = copy.deepcopy(m)
    assert type(c.get_layer("u")) is Unregistered
    assert_same_model(m, c, xs, ys)
    holder = copy.deepcopy({"a": m, "b": m})
    assert holder["a"] is holder["b"]


def test_stale_compile_is_saved_without_optimizer_state(f64, tmp_path):
    model, x, y = build("sequential")
    model.layers[0].trainable = False  # after compile: the compiled set is now stale (R4)
    with pytest.warns(UserWarning):
        model.train_on_batch(x, y)
    model.save(tmp_path / "s.keras")
    with pytest.warns(UserWarning, match="optimizer state is not restored"):
        loaded = fl.models.load_model(tmp_path / "s.keras")
    assert loaded.layers[0].trainable is False
    assert loaded.optimizer.iterations == 0
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=0)


def test_uncompiled_and_unbuilt_models_round_trip(tmp_path):
    seq = fl.Sequential([fl.layers.Dense(3), fl.layers.Dense(1)], name="later")
    again = pickle.loads(pickle.dumps(seq))
    assert [type(l) for l in again.layers] == [type(l) for l in seq.layers]
    assert again.weights == []
    again.build((None, 4))
    assert len(again.weights) == 4
    model = build("functional")[0]
    model._compiled = None
    model.save(tmp_path / "u.keras")
    assert fl.models.load_model(tmp_path / "u.keras").optimizer is None


def test_new_layers_after_load_get_fresh_names(tmp_path):
    model = fl.Sequential([fl.layers.Dense(3, input_shape=(4,)), fl.layers.Dense(2)])
    model.save(tmp_path / "m.keras")
    fl.backend.clear_session()  # as in a fresh process
    base = fl.models.load_model(tmp_path / "m.keras")
    head = fl.layers.Dense(5)
    assert head.name not in {l.name for l in base.layers}
    fl.Model(base.inputs[0], head(base.outputs[0]))  # no duplicate-name error


def test_load_weights_into_a_compiled_fused_model_updates_in_place(tmp_path):
    # The compiled fused step keeps pointers to the weight arrays: loading must copy into them.
    a, x, y = build("sequential")
    a.save_weights(tmp_path / "a.weights.npz")
    b = fl.models.clone_model(a)
    b.compile(fl.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    assert b.step_program is not None
    b.predict(x, verbose=0)
    b.load_weights(tmp_path / "a.weights.npz")
    np.testing.assert_array_equal(b.predict(x, verbose=0), a.predict(x, verbose=0))


def test_sequential_compiled_before_it_was_built(tmp_path):
    seq = fl.Sequential([fl.layers.Dense(3), fl.layers.Dense(1)])
    seq.compile(fl.optimizers.SGD(0.3), "mae", metrics=["mse"])
    seq.save(tmp_path / "s.keras")
    again = fl.models.load_model(tmp_path / "s.keras")
    x, y = np.ones((4, 2)), np.zeros((4, 1))
    loss, mse = again.train_on_batch(x, y)  # compiles when the data gives the shape
    assert np.isfinite(loss) and np.isfinite(mse)
    assert isinstance(again.optimizer, fl.optimizers.SGD) and again.optimizer.learning_rate == 0.3
    assert isinstance(again.loss, fl.losses.MeanAbsoluteError)


def test_layer_shared_with_a_nested_container_loads(f64, tmp_path):
    d = fl.layers.Dense(3, name="both")
    ci = fl.Input((3,))
    inner = fl.Container(ci, d(ci), name="inner")
    x = fl.Input((3,), name="x")
    m = fl.Model(x, inner(d(x)), name="outer")
    xs = np.random.default_rng(0).normal(size=(4, 3))
    m.save(tmp_path / "m.keras")
    loaded = fl.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(loaded.predict(xs, verbose=0), m.predict(xs, verbose=0), atol=0)
    m.load_weights(tmp_path / "m.keras")  # and back into the model with the shared layer
    np.testing.assert_allclose(loaded.predict(xs, verbose=0), m.predict(xs, verbose=0), atol=0)
    pytest.importorskip("h5py")
    m.save(tmp_path / "k.keras", format="keras")
    np.testing.assert_allclose(fl.models.load_model(tmp_path / "k.keras").predict(xs, verbose=0),
                               m.predict(xs, verbose=0), atol=0)
    m.load_weights(tmp_path / "k.keras")


@pytest.mark.parametrize("suffix", [".weights.npz", ".weights.h5"])
def test_weights_files_carry_the_optimizer_state(suffix, f64, tmp_path):
    """As Keras: resume by building and compiling the model, then load_weights."""
    if suffix.endswith("h5"):
        pytest.importorskip("h5py")
    model, x, y = build("gan")
    model.save_weights(tmp_path / f"w{suffix}")
    p0 = model.predict(x, verbose=0)
    again = fl.models.model_from_json(model.to_json())
    again.compile(fl.optimizers.Adam(0.01), "binary_crossentropy")
    again.load_weights(tmp_path / f"w{suffix}")
    assert again.optimizer.iterations == 2
    assert_same_model(model, again, x, y)
    plain = fl.models.model_from_json(model.to_json())
    plain.load_weights(tmp_path / f"w{suffix}")  # not compiled: weights only
    assert plain.optimizer is None
    np.testing.assert_allclose(plain.predict(x, verbose=0), p0, atol=0)


def test_bad_optimizer_state_in_weights_file_changes_nothing(f64, tmp_path):
    import io

    model, x, y = build("sequential")
    model.save_weights(tmp_path / "w.weights.npz")
    with np.load(tmp_path / "w.weights.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["optimizer/vars/3"] = np.zeros((1, 2, 3))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    (tmp_path / "bad.weights.npz").write_bytes(buf.getvalue())
    model.train_on_batch(x, y)
    before = [w.numpy() for w in model.weights]
    state = model.optimizer.get_state(model.compiled_trainable_weights)
    with pytest.raises(ValueError, match="optimizer/vars/3"):
        model.load_weights(tmp_path / "bad.weights.npz")
    for a, w in zip(before, model.weights):
        np.testing.assert_array_equal(a, w.value)
    for a, b in zip(state, model.optimizer.get_state(model.compiled_trainable_weights)):
        np.testing.assert_array_equal(a, b)
