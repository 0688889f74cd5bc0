"""The layer contract, checked for every built-in layer by one helper.

``run_layer_test`` plays the part of Keras's ``run_layer_test``: symbolic and eager
output shapes agree, weights have the documented names, shapes, order and creation
flags, ``get_weights``/``set_weights`` round-trip (and reject a wrong count or shape
with a ValueError naming the layer), ``count_params`` adds up, an eager call on NumPy
returns NumPy in the layer's dtype (ints and other floats are converted), a model
around the layer predicts what the eager call gives, and ``set_floatx("float64")``
makes new layers and their outputs float64.
"""
import numpy as np
import pytest

import fastlayers as fl
from fastlayers.layers import Activation, Add, BatchNormalization, Concatenate, Dense, Dropout, Flatten


def _data(shapes, batch, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((batch,) + tuple(s)).astype("float32") for s in shapes]


def _call(layer, xs, multi, **kw):
    return layer(xs if multi else xs[0], **kw)


def run_layer_test(make_layer, input_shape, expected_output_shape, expected_weights=(),
                   batch=3, stochastic=False):
    """Check the layer contract.

    ``make_layer()`` returns a fresh layer; ``input_shape`` is a shape without the batch
    axis, or a list of them for a layer taking a list; ``expected_output_shape`` has
    ``None`` for the batch axis; ``expected_weights`` lists ``(name, shape, trainable)``
    in creation order.  ``stochastic`` layers are compared in inference mode only.
    """
    multi = isinstance(input_shape, list)
    shapes = input_shape if multi else [input_shape]
    expected_output_shape = tuple(expected_output_shape)

    # ---- symbolic call: output shape and dtype; the layer gets built
    layer = make_layer()
    assert layer.built is False or not expected_weights
    inputs = [fl.Input(s) for s in shapes]
    out = _call(layer, inputs, multi)
    assert tuple(out.shape) == expected_output_shape
    assert str(out.dtype) == "float32"
    assert layer.built
    assert tuple(layer.output_shape) == expected_output_shape

    # ---- weights: names, shapes, order, creation flags, trainable split, count
    got = [(w.name, tuple(w.shape), w.trainable) for w in layer.weights]
    assert got == [(n, tuple(s), t) for n, s, t in expected_weights]
    assert [w.name for w in layer.trainable_weights] == [n for n, _, t in expected_weights if t]
    assert [w.name for w in layer.non_trainable_weights] == [n for n, _, t in expected_weights if not t]
    assert all(str(w.dtype) == "float32" for w in layer.weights)
    assert layer.count_params() == sum(int(np.prod(s)) for _, s, _ in expected_weights)
    values = layer.get_weights()
    assert len(values) == len(expected_weights)
    assert all(isinstance(v, np.ndarray) for v in values)

    # ---- eager call on NumPy: NumPy out, shape agrees with the symbolic one
    xs = _data(shapes, batch)
    for training in ((False,) if stochastic else (False, True)):
        y = _call(layer, xs, multi, training=training)
        assert isinstance(y, np.ndarray)
        assert y.dtype == np.float32
        assert y.shape == (batch,) + expected_output_shape[1:]
    if stochastic:
        assert _call(layer, xs, multi, training=True).shape == (batch,) + expected_output_shape[1:]
    y = _call(layer, xs, multi)
    # a batch of another size works too
    xs5 = _data(shapes, 5, seed=1)
    assert _call(layer, xs5, multi).shape == (5,) + expected_output_shape[1:]

    # ---- float64 and integer inputs are converted to the layer's dtype
    y64 = _call(layer, [x.astype("float64") for x in xs], multi)
    assert y64.dtype == np.float32
    np.testing.assert_array_equal(y64, y)
    xi = [np.round(x * 3).astype("int64") for x in xs]
    yi = _call(layer, xi, multi)
    assert yi.dtype == np.float32
    np.testing.assert_array_equal(yi, _call(layer, [x.astype("float32") for x in xi], multi))

    # ---- a model around the layer predicts what the eager call gives
    model = fl.Model(inputs if multi else inputs[0], out)
    p = model.predict(xs if multi else xs[0], verbose=0)
    assert isinstance(p, np.ndarray) and p.dtype == np.float32
    np.testing.assert_allclose(p, y, rtol=1e-6, atol=1e-7)
    assert model.count_params() == layer.count_params()

    # ---- get_weights returns copies; set_weights round trip
    if values:
        values[0][...] = 123.0
        assert not np.any(layer.get_weights()[0] == 123.0)
    rng = np.random.default_rng(5)
    new = [rng.uniform(0.5, 1.5, size=np.shape(v)).astype("float32") for v in values]
    layer.set_weights(new)
    for a, b in zip(layer.get_weights(), new):
        np.testing.assert_array_equal(a, b)
    # float64 values are accepted and cast
    layer.set_weights([v.astype("float64") for v in new])
    assert all(v.dtype == np.float32 for v in layer.get_weights())
    # a second layer with the same weights computes the same thing
    twin = make_layer()
    _call(twin, _data(shapes, 1), multi)  # eager call on an unbuilt layer builds it
    assert [(w.name, tuple(w.shape), w.trainable) for w in twin.weights] == got
    twin.set_weights(layer.get_weights())
    np.testing.assert_allclose(_call(twin, xs, multi), _call(layer, xs, multi), rtol=1e-6)

    # ---- set_weights: wrong count, wrong shape -> ValueError naming the layer
    with pytest.raises(ValueError, match=layer.name):
        layer.set_weights(new + [np.zeros(2, "float32")])
    if new:
        with pytest.raises(ValueError, match=layer.name):
            layer.set_weights(new[:-1])
        for i in range(len(new)):
            bad = list(new)
            bad[i] = np.zeros(np.shape(new[i]) + (2,), "float32")
            with pytest.raises(ValueError, match=layer.name):
                layer.set_weights(bad)
        # a rejected call changes nothing
        for a, b in zip(layer.get_weights(), new):
            np.testing.assert_array_equal(a, b)
    else:
        layer.set_weights([])

    # ---- float64 mode: new layers, their weights and outputs are float64
    fl.backend.set_floatx("float64")
    try:
        l64 = make_layer()
        assert l64.dtype == "float64"
        inputs64 = [fl.Input(s) for s in shapes]
        out64 = _call(l64, inputs64, multi)
        assert str(out64.dtype) == "float64"
        assert tuple(out64.shape) == expected_output_shape
        assert all(str(w.dtype) == "float64" for w in l64.weights)
        y64 = _call(l64, xs, multi)  # float32 data into a float64 layer
        assert isinstance(y64, np.ndarray) and y64.dtype == np.float64
        l64.set_weights(new)
        m64 = fl.Model(inputs64 if multi else inputs64[0], out64)
        p64 = m64.predict(xs if multi else xs[0], verbose=0)
        assert p64.dtype == np.float64
        np.testing.assert_allclose(p64, _call(layer, xs, multi), rtol=1e-5, atol=1e-6)
    finally:
        fl.backend.set_floatx("float32")
    # existing layers keep their dtype
    assert layer.dtype == "float32" and _call(layer, xs, multi).dtype == np.float32
    return layer


BN4 = [("gamma", (4,), True), ("beta", (4,), True), ("moving_mean", (4,), False),
       ("moving_variance", (4,), False)]

CASES = {
    "dense": (lambda: Dense(4), (3,), (None, 4), [("kernel", (3, 4), True), ("bias", (4,), True)]),
    "dense_nobias": (lambda: Dense(4, use_bias=False), (3,), (None, 4), [("kernel", (3, 4), True)]),
    "dense_relu_3d": (lambda: Dense(5, activation="relu"), (2, 3), (None, 2, 5),
                      [("kernel", (3, 5), True), ("bias", (5,), True)]),
    "dense_softmax_3d_nobias": (lambda: Dense(2, activation="softmax", use_bias=False), (4, 3),
                                (None, 4, 2), [("kernel", (3, 2), True)]),
    "activation": (lambda: Activation("tanh"), (3,), (None, 3), []),
    "activation_softmax_3d": (lambda: Activation("softmax"), (2, 3), (None, 2, 3), []),
    "dropout": (lambda: Dropout(0.5), (5,), (None, 5), []),
    "dropout_3d": (lambda: Dropout(0.2, seed=3), (2, 5), (None, 2, 5), []),
    "batchnorm": (lambda: BatchNormalization(), (4,), (None, 4), BN4),
    "batchnorm_3d_axis-1": (lambda: BatchNormalization(axis=-1), (2, 4), (None, 2, 4), BN4),
    "batchnorm_3d_axis1": (lambda: BatchNormalization(axis=1), (4, 2), (None, 4, 2), BN4),
    "batchnorm_nocenter": (lambda: BatchNormalization(center=False), (4,), (None, 4),
                           [BN4[0], BN4[2], BN4[3]]),
    "batchnorm_noscale": (lambda: BatchNormalization(scale=False), (4,), (None, 4),
                          [BN4[1], BN4[2], BN4[3]]),
    "batchnorm_neither": (lambda: BatchNormalization(scale=False, center=False), (4,), (None, 4),
                          [BN4[2], BN4[3]]),
    "flatten": (lambda: Flatten(), (2, 3), (None, 6), []),
    "flatten_4d": (lambda: Flatten(), (2, 3, 2), (None, 12), []),
    "flatten_2d": (lambda: Flatten(), (3,), (None, 3), []),
    "concatenate": (lambda: Concatenate(), [(2,), (3,)], (None, 5), []),
    "concatenate_three": (lambda: Concatenate(), [(2,), (1,), (3,)], (None, 6), []),
    "concatenate_axis1": (lambda: Concatenate(axis=1), [(2, 3), (1, 3)], (None, 3, 3), []),
    "add": (lambda: Add(), [(3,), (3,)], (None, 3), []),
    "add_3d_three": (lambda: Add(), [(2, 3)] * 3, (None, 2, 3), []),
}


@pytest.mark.parametrize("case", list(CASES))
def test_layer_contract(case):
    make, in_shape, out_shape, weights = CASES[case]
    run_layer_test(make, in_shape, out_shape, weights, stochastic=case.startswith("dropout"))


def test_initial_values_dense_and_batchnorm():
    d = Dense(3)
    d(np.zeros((1, 4)))
    k, b = d.get_weights()
    assert np.all(b == 0) and np.any(k != 0)
    bn = BatchNormalization()
    bn(np.zeros((2, 5)))
    gamma, beta, mm, mv = bn.get_weights()
    np.testing.assert_array_equal(gamma, np.ones(5))
    np.testing.assert_array_equal(beta, np.zeros(5))
    np.testing.assert_array_equal(mm, np.zeros(5))
    np.testing.assert_array_equal(mv, np.ones(5))
    assert [w.name for w in bn.weights] == ["gamma", "beta", "moving_mean", "moving_variance"]
    assert [w.trainable for w in bn.weights] == [True, True, False, False]


def test_weights_are_named_by_layer_path():
    inp = fl.Input((3,))
    d = Dense(2, name="head")
    bn = BatchNormalization(name="norm")
    fl.Model(inp, bn(d(inp)))
    assert [w.path for w in d.weights] == ["head/kernel", "head/bias"]
    assert [w.path for w in bn.weights] == ["norm/gamma", "norm/beta", "norm/moving_mean",
                                            "norm/moving_variance"]


def test_auto_names_follow_keras():
    names = [Dense(1).name, Dense(1).name, Dropout(0.1).name, BatchNormalization().name,
             Activation("relu").name, Flatten().name, Concatenate().name, Add().name]
    assert names == ["dense", "dense_1", "dropout", "batch_normalization", "activation",
                     "flatten", "concatenate", "add"]


def test_eager_call_wrong_feature_size_names_the_layer():
    d = Dense(2, name="my_dense")
    d(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="my_dense"):
        d(np.zeros((2, 4)))
    bn = BatchNormalization(name="my_bn")
    bn(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="my_bn"):
        bn(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="my_dense"):
        d(fl.Input((5,)))


def test_merge_layers_reject_mismatched_shapes():
    with pytest.raises(ValueError, match="add"):
        Add()([fl.Input((3,)), fl.Input((4,))])
    with pytest.raises(ValueError, match="add_1"):
        Add()([np.zeros((2, 3)), np.zeros((2, 4))])
    with pytest.raises(ValueError, match="concatenate"):
        Concatenate()([fl.Input((2, 3)), fl.Input((3, 3))])
    with pytest.raises(ValueError, match="concatenate_1"):
        Concatenate()([fl.Input((3,))])


def test_dropout_eager_training_flag_and_learning_phase():
    x = np.ones((50, 40), "float32")
    d = Dropout(0.5, seed=1)
    np.testing.assert_array_equal(d(x), x)  # plain call: inference
    y = d(x, training=True)
    assert set(np.unique(y)) == {0.0, 2.0}
    assert 0.35 < np.mean(y == 0) < 0.65
    fl.backend.set_learning_phase(1)
    assert np.any(d(x) == 0)
    fl.backend.set_learning_phase(0)
    np.testing.assert_array_equal(d(x), x)


def test_batchnorm_eager_training_updates_moving_stats_inference_does_not():
    bn = BatchNormalization(momentum=0.9)
    x = np.random.default_rng(0).normal(3.0, 2.0, size=(64, 2)).astype("float32")
    bn(x)
    assert np.all(bn.moving_mean.numpy() == 0)
    bn(x, training=True)
    np.testing.assert_allclose(bn.moving_mean.numpy(), 0.1 * x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), 0.9 + 0.1 * x.var(0, ddof=1), rtol=1e-5)
    bn.trainable = False  # frozen: inference even under training=True, no update (R7)
    before = bn.get_weights()
    y = bn(x, training=True)
    for a, b in zip(before, bn.get_weights()):
        np.testing.assert_array_equal(a, b)
    bn.trainable = True
    np.testing.assert_array_equal(y, bn(x, training=False))
