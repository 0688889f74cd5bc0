"""Constructor validation, initializers and seeded reproducibility."""
import math

import numpy as np
import pytest

import fastlayers as fl
from fastlayers.layers import Activation, BatchNormalization, Dense, Dropout


# --------------------------------------------------------------------------- invalid arguments
@pytest.mark.parametrize("rate", [1.0, 1.5, -0.1, -1e-9, float("nan"), float("inf")])
def test_dropout_rate_outside_0_1_raises_at_construction(rate):
    with pytest.raises(ValueError, match="rate"):
        Dropout(rate)


@pytest.mark.parametrize("rate", [0.0, 0.5, 0.999])
def test_dropout_rate_inside_is_accepted(rate):
    assert Dropout(rate).rate == rate


def test_dropout_rate_not_a_number_is_a_type_error():
    with pytest.raises(TypeError, match="rate"):
        Dropout("half")


@pytest.mark.parametrize("units", [0, -1, 2.5, True, None, "3"])
def test_dense_units_invalid_raise_at_construction(units):
    with pytest.raises(ValueError, match="units"):
        Dense(units)


def test_dense_units_numpy_integer_accepted():
    assert Dense(np.int64(3)).units == 3


@pytest.mark.parametrize("make", [
    lambda: Dense(3, activation="swish_unknown"),
    lambda: Dense(3, activation="Relu7"),
    lambda: Activation("gelu_unknown"),
    lambda: Dense(3, activation=123),
], ids=["dense", "dense_close_name", "activation", "dense_non_string"])
def test_unknown_activation_raises_at_construction(make):
    with pytest.raises(ValueError, match="activation"):
        make()


def test_activation_names_are_case_insensitive_and_none_is_linear():
    assert Dense(2, activation="ReLU").activation == "relu"
    assert Dense(2).activation == "linear"
    assert Dense(2, activation=None).activation == "linear"


@pytest.mark.parametrize("kw", [{"kernel_initializer": "glorot_unknown"},
                                {"bias_initializer": "zero_s"}])
def test_dense_unknown_initializer_raises_at_construction(kw):
    with pytest.raises(ValueError, match="initializer"):
        Dense(3, **kw)


@pytest.mark.parametrize("arg", ["gamma_initializer", "beta_initializer",
                                 "moving_mean_initializer", "moving_variance_initializer"])
def test_batchnorm_unknown_initializer_raises_at_construction(arg):
    with pytest.raises(ValueError, match="initializer"):
        BatchNormalization(**{arg: "nope"})


@pytest.mark.parametrize("kw", [{"momentum": 1.5}, {"momentum": -0.1}, {"epsilon": 0.0},
                                {"epsilon": -1e-3}])
def test_batchnorm_invalid_hyperparameters(kw):
    with pytest.raises(ValueError):
        BatchNormalization(**kw)


def test_unexpected_keyword_is_a_type_error():
    with pytest.raises(TypeError, match="units_typo"):
        Dense(3, units_typo=4)


# --------------------------------------------------------------------------- initializers
def _kernel(initializer, shape):
    d = Dense(shape[1], kernel_initializer=initializer)
    d(np.zeros((1, shape[0]), "float32"))
    return d.get_weights()[0]


def test_glorot_uniform_limits():
    fan_in, fan_out = 300, 200
    w = _kernel("glorot_uniform", (fan_in, fan_out)).astype(np.float64)
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    assert np.abs(w).max() <= limit
    assert np.abs(w).max() > 0.99 * limit
    assert abs(w.mean()) < 0.01 * limit
    np.testing.assert_allclose(w.std(), limit / math.sqrt(3), rtol=0.01)
    # roughly uniform: a quarter of the values in each quarter of the range
    hist, _ = np.histogram(w, bins=4, range=(-limit, limit))
    np.testing.assert_allclose(hist / w.size, 0.25, atol=0.01)


def test_glorot_uniform_is_the_dense_default():
    w = _kernel("glorot_uniform", (10, 30))
    fl.utils.set_random_seed(1234)
    fl.backend.clear_session()
    d = Dense(30)
    d(np.zeros((1, 10)))
    assert np.abs(d.get_weights()[0]).max() <= math.sqrt(6 / 40)
    assert w.shape == (10, 30)


def test_he_normal_std():
    fan_in, fan_out = 400, 500
    w = _kernel("he_normal", (fan_in, fan_out)).astype(np.float64)
    std = math.sqrt(2.0 / fan_in)
    np.testing.assert_allclose(w.std(), std, rtol=0.01)
    assert abs(w.mean()) < 0.01 * std
    # Keras's he_normal is a normal truncated at two of its own standard deviations
    assert np.abs(w).max() <= 2 * std / 0.87962566103423978 + 1e-6


@pytest.mark.parametrize("name,value", [("zeros", 0.0), ("ones", 1.0)])
def test_zeros_and_ones(name, value):
    d = Dense(4, kernel_initializer=name, bias_initializer=name)
    d(np.zeros((1, 3)))
    k, b = d.get_weights()
    assert np.all(k == value) and np.all(b == value)
    assert k.dtype == np.float32


def test_initializer_objects_and_callables():
    d = Dense(2, kernel_initializer=fl.initializers.Ones(),
              bias_initializer=lambda shape, dtype: np.full(shape, 0.5, dtype=dtype))
    d(np.zeros((1, 3)))
    np.testing.assert_array_equal(d.get_weights()[1], [0.5, 0.5])
    np.testing.assert_array_equal(d.get_weights()[0], np.ones((3, 2)))


def test_initializers_in_float64_mode(float64):
    d = Dense(3, kernel_initializer="he_normal")
    d(np.zeros((1, 2)))
    assert all(v.dtype == np.float64 for v in d.get_weights())


# --------------------------------------------------------------------------- seeds
def _fresh_weights():
    d1, d2 = Dense(5), Dense(3, kernel_initializer="he_normal")
    inp = fl.Input((4,))
    fl.Model(inp, d2(d1(inp)))
    return d1.get_weights() + d2.get_weights()


def test_same_seed_same_initial_weights():
    fl.utils.set_random_seed(7)
    a = _fresh_weights()
    fl.utils.set_random_seed(7)
    b = _fresh_weights()
    fl.utils.set_random_seed(8)
    c = _fresh_weights()
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[0], c[0])
    # without reseeding the stream moves on
    d = _fresh_weights()
    assert not np.array_equal(c[0], d[0])


def _masks(layer, n=3):
    x = np.ones((8, 16), "float32")
    return [layer(x, training=True) != 0 for _ in range(n)]


def test_same_global_seed_same_dropout_masks():
    fl.utils.set_random_seed(3)
    a = _masks(Dropout(0.5))
    fl.utils.set_random_seed(3)
    b = _masks(Dropout(0.5))
    fl.utils.set_random_seed(4)
    c = _masks(Dropout(0.5))
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[0], c[0])
    # successive calls draw new masks
    assert not np.array_equal(a[0], a[1])


def test_explicit_dropout_seed_ignores_global_seed():
    fl.utils.set_random_seed(1)
    a = _masks(Dropout(0.5, seed=99))
    fl.utils.set_random_seed(2)
    b = _masks(Dropout(0.5, seed=99))
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


def test_same_seed_same_training_run():
    """Weights, dropout masks and fit's shuffling all follow set_random_seed."""
    def train(seed):
        fl.utils.set_random_seed(seed)
        fl.backend.clear_session()
        m = fl.Sequential([Dense(8, activation="relu", input_shape=(4,)), Dropout(0.3), Dense(1)])
        m.compile(fl.optimizers.SGD(0.05), "mse")
        rng = np.random.default_rng(0)
        x, y = rng.random((40, 4)), rng.random((40, 1))
        h = m.fit(x, y, batch_size=8, epochs=2, verbose=0)  # shuffled
        return m.get_weights(), h.history["loss"]

    w1, l1 = train(5)
    w2, l2 = train(5)
    w3, _ = train(6)
    assert l1 == l2
    for a, b in zip(w1, w2):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(w1[0], w3[0])
