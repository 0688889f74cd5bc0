"""Bad input gets a clear error naming the layer, model or argument; convertible input is
converted, not rejected."""
import re

import numpy as np
import pytest

import fastlayers as fl
from fastlayers.layers import Dense

# Every test here runs on the fused training step and on the layer-by-layer path
# (tests/training/conftest.py); train_on_batch without metrics is the fused step's
# fastest entry, which checks its input in C.
pytestmark = pytest.mark.usefixtures("engine_path")


def make_model(name="net", k=3, act="softmax"):
    fl.utils.set_random_seed(0)
    inp = fl.Input((4,), name="features")
    h = Dense(6, activation="tanh", name="hidden")(inp)
    return fl.Model(inp, Dense(k, activation=act, name="head")(h), name=name)


def xy(n=10, k=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 4)).astype("float32"), rng.integers(0, k, n)


def compiled(metrics=None, **kw):
    m = make_model(**kw)
    m.compile(fl.optimizers.SGD(0.1), "sparse_categorical_crossentropy", metrics=metrics)
    return m


def unchanged(model, before):
    return all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


# --------------------------------------------------------------------------- wrong feature size
ENTRY_POINTS = {
    "fit": lambda m, x, y: m.fit(x, y, verbose=0, shuffle=False),
    "train_on_batch": lambda m, x, y: m.train_on_batch(x, y),
    "evaluate": lambda m, x, y: m.evaluate(x, y, verbose=0),
    "test_on_batch": lambda m, x, y: m.test_on_batch(x, y),
    "predict": lambda m, x, y: m.predict(x, verbose=0),
    "predict_on_batch": lambda m, x, y: m.predict_on_batch(x),
}


@pytest.mark.parametrize("metrics", [None, ["accuracy"]], ids=["nometrics", "metrics"])
@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
@pytest.mark.parametrize("shape", [(10, 5), (10, 3), (10, 4, 1), (10,)])
def test_wrong_feature_size_is_a_value_error_naming_the_model_and_shape(entry, shape, metrics):
    m = compiled(metrics)
    _, y = xy()
    before = m.get_weights()
    with pytest.raises(ValueError) as e:
        ENTRY_POINTS[entry](m, np.zeros(shape, "float32"), y)
    msg = str(e.value)
    assert "net" in msg or "features" in msg
    assert re.escape(str(shape)) and str(shape) in msg
    assert unchanged(m, before)


def test_wrong_feature_size_in_a_plain_call_names_the_model():
    m = make_model()
    with pytest.raises(ValueError, match="net"):
        m(np.zeros((2, 5), "float32"))


def test_wrong_feature_size_in_sequential_names_the_layer():
    s = fl.Sequential([Dense(3, input_shape=(4,), name="first")], name="seq")
    s.compile("sgd", "mse")
    with pytest.raises(ValueError, match="seq|first"):
        s.fit(np.zeros((4, 7)), np.zeros((4, 3)), verbose=0)


# --------------------------------------------------------------------------- x / y mismatch
@pytest.mark.parametrize("metrics", [None, ["accuracy"]], ids=["nometrics", "metrics"])
@pytest.mark.parametrize("entry", ["fit", "train_on_batch", "evaluate", "test_on_batch"])
def test_x_y_length_mismatch(entry, metrics):
    m = compiled(metrics)
    x, y = xy(10)
    before = m.get_weights()
    with pytest.raises(ValueError, match=r"10.*9|9.*10"):
        ENTRY_POINTS[entry](m, x, y[:9])
    assert unchanged(m, before)


@pytest.mark.parametrize("entry", ["fit", "train_on_batch", "evaluate", "test_on_batch"])
def test_target_shape_mismatch(entry):
    m = make_model(act="linear")
    m.compile("sgd", "mse")
    x, _ = xy()
    with pytest.raises(ValueError, match="shape"):
        ENTRY_POINTS[entry](m, x, np.zeros((10, 4)))


def test_validation_data_is_checked_too():
    m = compiled()
    x, y = xy()
    with pytest.raises(ValueError):
        m.fit(x, y, validation_data=(np.zeros((3, 5)), y[:3]), verbose=0)
    with pytest.raises(ValueError):
        m.fit(x, y, validation_data=(x[:3], y[:2]), verbose=0)
    with pytest.raises(ValueError, match="validation_data"):
        m.fit(x, y, validation_data=x, verbose=0)


# --------------------------------------------------------------------------- not compiled
@pytest.mark.parametrize("entry", ["fit", "train_on_batch", "evaluate", "test_on_batch"])
def test_training_entry_points_before_compile_raise_runtime_error(entry):
    m = make_model()
    x, y = xy()
    with pytest.raises(RuntimeError, match="compile"):
        ENTRY_POINTS[entry](m, x, y)


def test_predict_needs_no_compile():
    m = make_model()
    x, _ = xy()
    assert m.predict(x, verbose=0).shape == (10, 3)


# --------------------------------------------------------------------------- compile arguments
def test_unknown_loss_name():
    with pytest.raises(ValueError, match="mean_squarred_error"):
        make_model().compile("sgd", "mean_squarred_error")


def test_unknown_optimizer_name():
    with pytest.raises(ValueError, match="adamw_unknown"):
        make_model().compile("adamw_unknown", "mse")


def test_unknown_metric_name():
    with pytest.raises(ValueError, match="precission"):
        make_model().compile("sgd", "mse", metrics=["precission"])


def test_missing_loss():
    with pytest.raises(ValueError, match="loss"):
        make_model().compile("sgd")


def test_loss_and_optimizer_of_the_wrong_type():
    with pytest.raises(TypeError):
        make_model().compile("sgd", 3.5)
    with pytest.raises(TypeError):
        make_model().compile(0.1, "mse")


def test_loss_dict_with_unknown_output_name():
    with pytest.raises(ValueError, match="nothead"):
        make_model().compile("sgd", {"nothead": "mse"})


# --------------------------------------------------------------------------- optimizer hyperparameters
@pytest.mark.parametrize("lr", [float("nan"), float("inf"), -0.1])
@pytest.mark.parametrize("cls", [fl.optimizers.SGD, fl.optimizers.Adam])
def test_invalid_learning_rate(cls, lr):
    with pytest.raises(ValueError, match="learning_rate"):
        cls(learning_rate=lr)
    opt = cls(learning_rate=0.01)
    with pytest.raises(ValueError, match="learning_rate"):
        opt.learning_rate = lr
    assert opt.learning_rate == 0.01


def test_invalid_learning_rate_type():
    with pytest.raises(TypeError, match="learning_rate"):
        fl.optimizers.SGD(learning_rate="fast")


@pytest.mark.parametrize("kw", [{"momentum": float("nan")}, {"momentum": -0.5}, {"momentum": 1.5}])
def test_invalid_momentum(kw):
    with pytest.raises(ValueError, match="momentum"):
        fl.optimizers.SGD(0.1, **kw)


@pytest.mark.parametrize("kw", [{"beta_1": 1.0}, {"beta_2": float("nan")}, {"epsilon": -1.0},
                                {"beta_1": -0.1}])
def test_invalid_adam_hyperparameters(kw):
    with pytest.raises(ValueError, match=next(iter(kw))):
        fl.optimizers.Adam(**kw)


# --------------------------------------------------------------------------- fit arguments
@pytest.mark.parametrize("kw,word", [({"batch_size": 0}, "batch_size"), ({"batch_size": -3}, "batch_size"),
                                     ({"epochs": -1}, "epochs"),
                                     ({"validation_split": 1.0}, "validation_split"),
                                     ({"validation_split": -0.2}, "validation_split")])
def test_invalid_fit_arguments(kw, word):
    m = compiled()
    x, y = xy()
    with pytest.raises(ValueError, match=word):
        m.fit(x, y, verbose=0, **kw)


def test_validation_split_leaving_nothing_to_validate():
    m = compiled()
    x, y = xy(1)
    with pytest.raises(ValueError, match="validation_split"):
        m.fit(x, y, validation_split=0.5, verbose=0)


# --------------------------------------------------------------------------- set_weights
def test_model_set_weights_wrong_count():
    m = make_model()
    w = m.get_weights()
    with pytest.raises(ValueError, match="net") as e:
        m.set_weights(w[:-1])
    assert "4" in str(e.value) and "3" in str(e.value)
    with pytest.raises(ValueError, match="net"):
        m.set_weights(w + [w[0]])


def test_model_set_weights_wrong_shape_names_the_weight():
    m = make_model()
    w = m.get_weights()
    bad = list(w)
    bad[2] = np.zeros((3, 6), "float32")  # head/kernel is (6, 3)
    before = m.get_weights()
    with pytest.raises(ValueError, match="kernel") as e:
        m.set_weights(bad)
    assert "(6, 3)" in str(e.value) and "(3, 6)" in str(e.value)
    assert unchanged(m, before)  # all or nothing


def test_layer_set_weights_wrong_shape_names_the_layer():
    m = make_model()
    layer = m.get_layer("head")
    with pytest.raises(ValueError, match="head"):
        layer.set_weights([np.zeros((6, 3)), np.zeros(4)])
    with pytest.raises(ValueError, match="head"):
        layer.set_weights([np.zeros((6, 3))])


# --------------------------------------------------------------------------- empty input
@pytest.mark.parametrize("metrics", [None, ["accuracy"]], ids=["nometrics", "metrics"])
@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_empty_input(entry, metrics):
    m = compiled(metrics)
    with pytest.raises(ValueError, match="empty|0 samples"):
        ENTRY_POINTS[entry](m, np.zeros((0, 4), "float32"), np.zeros((0,), "int64"))


# --------------------------------------------------------------------------- sparse labels
@pytest.mark.parametrize("metrics", [None, ["accuracy"]], ids=["nometrics", "metrics"])
@pytest.mark.parametrize("entry", ["fit", "train_on_batch", "evaluate", "test_on_batch"])
@pytest.mark.parametrize("bad", [3, -1, 100])
@pytest.mark.parametrize("opt", ["momentum", "adam"])
def test_sparse_labels_out_of_range(entry, bad, metrics, opt):
    """Rejected, naming the range; no step taken: the weights, the optimizer state and
    its step count are as if the bad batch had never been given."""
    def model():
        m = make_model()
        o = fl.optimizers.SGD(0.1, momentum=0.9) if opt == "momentum" else fl.optimizers.Adam(0.01)
        m.compile(o, "sparse_categorical_crossentropy", metrics=metrics)
        return m

    m, ref = model(), model()
    x, y = xy()
    m.train_on_batch(x, y)
    ref.train_on_batch(x, y)
    bad_y = y.copy()
    bad_y[4] = bad
    before = m.get_weights()
    with pytest.raises(ValueError, match=r"\[0, 3\)") as e:
        ENTRY_POINTS[entry](m, x, bad_y)
    assert "sparse_categorical_crossentropy" in str(e.value) or "net" in str(e.value)
    assert unchanged(m, before)
    assert m.optimizer.iterations == 1
    assert m.train_on_batch(x, y) == ref.train_on_batch(x, y)
    for a, b in zip(m.get_weights(), ref.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_sparse_labels_out_of_range_in_validation_data():
    m = compiled()
    x, y = xy()
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        m.fit(x, y, validation_data=(x, y + 3), verbose=0)


@pytest.mark.parametrize("entry", ["fit", "evaluate"])
def test_sparse_labels_not_integers(entry):
    m = compiled()
    x, y = xy()
    with pytest.raises(ValueError, match="integer"):
        ENTRY_POINTS[entry](m, x, y + 0.5)


def test_sparse_labels_as_float_integers_and_column_are_accepted():
    m1, m2 = compiled(), compiled()
    x, y = xy()
    a = m1.train_on_batch(x, y)
    b = m2.train_on_batch(x, y.astype("float32").reshape(-1, 1))
    assert a == b


# --------------------------------------------------------------------------- non-numeric input
def test_string_input_is_a_type_error():
    m = compiled()
    _, y = xy()
    with pytest.raises(TypeError, match="numeric"):
        m.fit(np.array([["a"] * 4] * 10), y, verbose=0)
    with pytest.raises(TypeError):
        m.predict(np.array([["a"] * 4] * 10), verbose=0)


# --------------------------------------------------------------------------- conversion
def test_integer_and_float64_input_is_converted_for_predict():
    m = make_model()
    xi = np.random.default_rng(0).integers(-3, 4, size=(10, 4))
    ref = m.predict(xi.astype("float32"), verbose=0)
    for x in (xi, xi.astype("float64"), xi.astype("int32"), xi.tolist()):
        out = m.predict(x, verbose=0)
        assert out.dtype == np.float32
        np.testing.assert_array_equal(out, ref)
        np.testing.assert_array_equal(m.predict_on_batch(x), ref)
        np.testing.assert_array_equal(m(np.asarray(x)), ref)


@pytest.mark.parametrize("entry", ["fit", "train_on_batch"])
def test_float64_and_integer_input_train_like_float32(entry):
    rng = np.random.default_rng(1)
    x64 = rng.standard_normal((10, 4))
    xi = rng.integers(-2, 3, size=(10, 4))
    y = rng.integers(0, 3, 10)
    for x in (x64, xi):
        ref, m = compiled(), compiled()
        r_ref = ENTRY_POINTS[entry](ref, x.astype("float32"), y)
        r = ENTRY_POINTS[entry](m, x, y)
        if entry == "fit":
            assert r.history == r_ref.history
        else:
            assert r == r_ref
        for a, b in zip(m.get_weights(), ref.get_weights()):
            assert a.dtype == np.float32
            np.testing.assert_array_equal(a, b)
        assert m.evaluate(x, y, verbose=0) == ref.evaluate(x.astype("float32"), y, verbose=0)


def test_integer_and_float64_targets_are_converted():
    m1, m2, m3 = (make_model(act="linear") for _ in range(3))
    for m in (m1, m2, m3):
        m.compile(fl.optimizers.SGD(0.1), "mse")
    x, _ = xy()
    yi = np.random.default_rng(2).integers(0, 3, size=(10, 3))
    a = m1.train_on_batch(x, yi.astype("float32"))
    assert m2.train_on_batch(x, yi) == a
    assert m3.train_on_batch(x, yi.astype("float64")) == a
    for u, v in zip(m1.get_weights(), m2.get_weights()):
        np.testing.assert_array_equal(u, v)


def test_float32_input_to_a_float64_model():
    fl.backend.set_floatx("float64")
    m = make_model()
    fl.backend.set_floatx("float32")
    x, _ = xy()
    out = m.predict(x, verbose=0)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, m.predict(x.astype("float64"), verbose=0))


@pytest.mark.parametrize("case", ["float64_true", "int_true", "lists"])
def test_loss_objects_called_directly_convert_y_true(case):
    p = np.array([[0.7, 0.3], [0.2, 0.8]], "float32")
    t = np.array([[1, 0], [0, 1]])
    expected = fl.losses.MeanSquaredError()(t.astype("float32"), p)
    if case == "float64_true":
        got = fl.losses.MeanSquaredError()(t.astype("float64"), p)
    elif case == "int_true":
        got = fl.losses.MeanSquaredError()(t, p)
    else:
        got = fl.losses.MeanSquaredError()(t.tolist(), p.tolist())
    assert got == pytest.approx(expected, rel=1e-6)
