"""The convolutional catalogue's layers: gradients (float64 numerical check), shapes,
Keras's arguments, defaults, weight names/order, errors, and training end to end."""
import numpy as np
import pytest

import fastlayers as fl
from fastlayers import layers as L


def rand(*shape, seed=0, scale=1.0):
    return np.random.default_rng(seed).standard_normal(shape) * scale


def built(layer, shape, seed=1, scale=0.5):
    layer.build((None,) + tuple(shape[1:]))
    layer.built = True
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.standard_normal(w.shape) * scale for w in layer.weights])
    return layer


# (id, factory, input shape, expected output shape, [(weight name, shape)])
CASES = [
    ("conv2d-same-even-stride", lambda: L.Conv2D(3, (2, 4), strides=2, padding="same",
                                                 activation="gelu"),
     (2, 5, 7, 2), (2, 3, 4, 3), [("kernel", (2, 4, 2, 3)), ("bias", (3,))]),
    ("conv2d-1x1", lambda: L.Conv2D(4, 1, use_bias=False), (1, 3, 3, 2), (1, 3, 3, 4),
     [("kernel", (1, 1, 2, 4))]),
    ("conv2d-stride>kernel", lambda: L.Conv2D(2, 2, strides=3, activation="relu"),
     (2, 8, 7, 1), (2, 3, 2, 2), [("kernel", (2, 2, 1, 2)), ("bias", (2,))]),
    ("conv2d-dilated", lambda: L.Conv2D(2, 3, dilation_rate=2, padding="same",
                                        activation="mish"),
     (2, 6, 5, 2), (2, 6, 5, 2), [("kernel", (3, 3, 2, 2)), ("bias", (2,))]),
    ("conv1d", lambda: L.Conv1D(3, 3, activation="tanh"), (2, 7, 2), (2, 5, 3),
     [("kernel", (3, 2, 3)), ("bias", (3,))]),
    ("conv1d-causal", lambda: L.Conv1D(2, 3, padding="causal", dilation_rate=2), (2, 6, 2),
     (2, 6, 2), [("kernel", (3, 2, 2)), ("bias", (2,))]),
    ("conv1d-same-stride", lambda: L.Conv1D(2, 4, strides=3, padding="same"), (1, 7, 3),
     (1, 3, 2), [("kernel", (4, 3, 2)), ("bias", (2,))]),
    ("conv2d-transpose", lambda: L.Conv2DTranspose(3, (3, 2), strides=2, padding="same",
                                                   activation="silu"),
     (2, 3, 2, 2), (2, 6, 4, 3), [("kernel", (3, 2, 3, 2)), ("bias", (3,))]),
    ("conv2d-transpose-valid", lambda: L.Conv2DTranspose(2, 3, strides=(1, 2)), (1, 2, 3, 2),
     (1, 4, 7, 2), [("kernel", (3, 3, 2, 2)), ("bias", (2,))]),
    ("depthwise", lambda: L.DepthwiseConv2D(3, depth_multiplier=2, padding="same",
                                            activation="elu"),
     (2, 4, 3, 2), (2, 4, 3, 4), [("kernel", (3, 3, 2, 2)), ("bias", (4,))]),
    ("separable", lambda: L.SeparableConv2D(3, 2, depth_multiplier=2), (2, 4, 3, 2),
     (2, 3, 2, 3), [("depthwise_kernel", (2, 2, 2, 2)), ("pointwise_kernel", (1, 1, 4, 3)),
                    ("bias", (3,))]),
    ("maxpool2d", lambda: L.MaxPooling2D(), (2, 5, 4, 3), (2, 2, 2, 3), []),
    ("maxpool2d-same", lambda: L.MaxPooling2D(3, 2, "same"), (1, 5, 4, 2), (1, 3, 2, 2), []),
    ("avgpool2d-same", lambda: L.AveragePooling2D((2, 3), (1, 2), "same"), (2, 4, 5, 2),
     (2, 4, 3, 2), []),
    ("maxpool1d", lambda: L.MaxPooling1D(3, 1), (2, 6, 2), (2, 4, 2), []),
    ("avgpool1d-same", lambda: L.AveragePooling1D(2, padding="same"), (2, 5, 2), (2, 3, 2), []),
    ("gap2d", lambda: L.GlobalAveragePooling2D(), (2, 3, 4, 5), (2, 5), []),
    ("gmp2d-keepdims", lambda: L.GlobalMaxPooling2D(keepdims=True), (2, 3, 4, 5),
     (2, 1, 1, 5), []),
    ("gap1d", lambda: L.GlobalAveragePooling1D(), (2, 4, 3), (2, 3), []),
    ("gmp1d", lambda: L.GlobalMaxPooling1D(), (1, 4, 3), (1, 3), []),
    ("reshape", lambda: L.Reshape((-1, 2)), (2, 3, 4), (2, 6, 2), []),
    ("permute", lambda: L.Permute((2, 1)), (2, 3, 4), (2, 4, 3), []),
    ("repeat", lambda: L.RepeatVector(3), (2, 4), (2, 3, 4), []),
    ("zeropad", lambda: L.ZeroPadding2D(((1, 0), (2, 1))), (2, 3, 2, 2), (2, 4, 5, 2), []),
    ("crop", lambda: L.Cropping2D(((1, 0), (0, 2))), (2, 3, 4, 2), (2, 2, 2, 2), []),
    ("upsample", lambda: L.UpSampling2D((2, 3)), (2, 2, 2, 1), (2, 4, 6, 1), []),
    ("layernorm", lambda: L.LayerNormalization(), (3, 5), (3, 5),
     [("gamma", (5,)), ("beta", (5,))]),
    ("layernorm-axes", lambda: L.LayerNormalization(axis=[1, 2], center=False), (2, 3, 4, 2),
     (2, 3, 4, 2), [("gamma", (3, 4))]),
    ("groupnorm", lambda: L.GroupNormalization(2), (2, 3, 4), (2, 3, 4),
     [("gamma", (4,)), ("beta", (4,))]),
    ("relu-params", lambda: L.ReLU(max_value=1.5, negative_slope=0.1, threshold=0.5),
     (3, 5), (3, 5), []),
    ("relu6", lambda: L.ReLU(6.0), (3, 5), (3, 5), []),
    ("leaky", lambda: L.LeakyReLU(), (3, 5), (3, 5), []),
    ("elu", lambda: L.ELU(0.7), (3, 5), (3, 5), []),
    ("softmax-axis1", lambda: L.Softmax(axis=1), (2, 3, 4), (2, 3, 4), []),
    ("prelu-shared", lambda: L.PReLU(shared_axes=[1]), (2, 3, 4), (2, 3, 4),
     [("alpha", (1, 4))]),
]


@pytest.mark.parametrize("make,in_shape,out_shape,weights",
                         [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_layer_gradients_and_shapes(float64, make, in_shape, out_shape, weights):
    layer = built(make(), in_shape)
    assert [(w.name, tuple(w.shape)) for w in layer.weights] == weights
    x = rand(*in_shape, scale=2.0)
    res = fl.utils.check_layer_gradients(layer, x, training=True)
    assert res.ok and res.max_error < 1e-6
    y = layer(x)
    assert y.shape == out_shape and y.dtype == np.float64
    assert layer.compute_output_shape((None,) + in_shape[1:]) == (None,) + out_shape[1:]
    # Symbolically, in a model, the same values.
    inp = fl.Input(in_shape[1:])
    out = layer(inp)
    assert tuple(out.shape) == (None,) + out_shape[1:]
    np.testing.assert_allclose(fl.Model(inp, out).predict(x, verbose=0), y, rtol=1e-12,
                               atol=1e-12)


def test_embedding_gradient_scatters_into_used_rows(float64):
    layer = L.Embedding(7, 3)
    ids = np.array([[1, 1, 4], [6, 0, 1]], dtype=float)
    res = fl.utils.check_layer_gradients(layer, ids)
    assert res.ok
    assert [(w.name, w.shape) for w in layer.weights] == [("embeddings", (7, 3))]
    y, bp = layer.forward(ids)
    assert y.shape == (2, 3, 3)
    np.testing.assert_array_equal(y[0, 0], layer.get_weights()[0][1])
    dx, (dW,) = bp(np.ones((2, 3, 3)))
    np.testing.assert_array_equal(dW[:, 0], [1, 3, 0, 0, 1, 0, 1])
    np.testing.assert_array_equal(dx, 0)


@pytest.mark.parametrize("make,shape", [
    (lambda: L.GaussianNoise(0.5, seed=3), (3, 4)),
    (lambda: L.GaussianDropout(0.4, seed=3), (3, 4)),
    (lambda: L.AlphaDropout(0.3, seed=3), (3, 4)),
    (lambda: L.AlphaDropout(0.3, noise_shape=(None, 1, 4), seed=3), (3, 2, 4)),
    (lambda: L.SpatialDropout1D(0.5, seed=3), (3, 4, 5)),
    (lambda: L.SpatialDropout2D(0.5, seed=3), (2, 3, 4, 5)),
], ids=["gaussian_noise", "gaussian_dropout", "alpha_dropout", "alpha_dropout_shape",
        "spatial1d", "spatial2d"])
def test_noise_layers(float64, make, shape):
    layer = make()
    x = rand(*shape)
    for training in (True, False):
        assert fl.utils.check_layer_gradients(layer, x, training=training).ok
    np.testing.assert_array_equal(layer(x, training=False), x)
    # R6: noise in training mode whatever the layer's trainable.
    layer.trainable = False
    y1, y2 = layer(x, training=True), layer(x, training=True)
    assert not np.array_equal(y1, x) and not np.array_equal(y1, y2)
    # Seeded: a second layer with the same seed draws the same noise.
    other = make()
    np.testing.assert_array_equal(other(x, training=True), make()(x, training=True))


def test_noise_statistics_follow_keras():
    x = np.ones((400, 250))
    y = L.GaussianNoise(2.0, seed=5)(x, training=True)
    assert abs(y.mean() - 1) < 0.02 and abs(y.std() - 2) < 0.02
    y = L.GaussianDropout(0.5, seed=5)(x, training=True)
    assert abs(y.mean() - 1) < 0.01 and abs(y.std() - 1) < 0.01
    z = np.random.default_rng(0).standard_normal((400, 250))
    y = L.AlphaDropout(0.2, seed=5)(z, training=True)  # keeps mean 0 / variance 1
    assert abs(y.mean()) < 0.01 and abs(y.std() - 1) < 0.01
    y = L.SpatialDropout2D(0.5, seed=1)(np.ones((50, 3, 3, 40)), training=True)
    per_channel = y.reshape(50, 9, 40)
    assert np.all(per_channel.min(axis=1) == per_channel.max(axis=1))  # whole channels
    assert set(np.unique(y)) == {0.0, 2.0}


def test_defaults_and_names_are_keras():
    c = L.Conv2D(8, 3)
    assert (c.strides, c.padding, c.dilation_rate, c.activation, c.use_bias) == \
        ((1, 1), "valid", (1, 1), "linear", True)
    assert c.name.startswith("conv2d")
    assert L.MaxPooling2D().pool_size == (2, 2) and L.MaxPooling2D().strides == (2, 2)
    assert L.MaxPooling2D((3, 3)).strides == (3, 3)
    assert L.MaxPooling1D().pool_size == (2,)
    assert L.LeakyReLU().negative_slope == 0.3
    assert L.LayerNormalization().epsilon == 1e-3
    assert L.GroupNormalization().groups == 32
    assert L.MaxPool2D is L.MaxPooling2D and L.Convolution2D is L.Conv2D
    assert L.MaxPooling2D().name.startswith("max_pooling2d")


def test_set_weights_takes_keras_layouts():
    layer = L.Conv2D(4, (3, 2))
    layer(np.zeros((1, 5, 5, 3), np.float32))
    k, b = np.arange(3 * 2 * 3 * 4, dtype=np.float32).reshape(3, 2, 3, 4), np.ones(4)
    layer.set_weights([k, b])
    x = np.random.default_rng(0).standard_normal((1, 5, 5, 3)).astype(np.float32)
    y = layer(x)
    # Output (0, 0, f) = sum over the window of x * kernel + bias.
    np.testing.assert_allclose(y[0, 0, 0], np.einsum("ijc,ijcf->f", x[0, :3, :2], k) + 1,
                               rtol=1e-5)
    with pytest.raises(ValueError, match="weight 'kernel' has shape"):
        layer.set_weights([k.transpose(3, 2, 0, 1), b])


@pytest.mark.parametrize("make, message", [
    (lambda: L.Conv2D(0, 3), "filters must be a positive integer"),
    (lambda: L.Conv2D(2, (3, 3, 3)), "kernel_size must be"),
    (lambda: L.Conv2D(2, 3, padding="full"), "padding must be one of"),
    (lambda: L.Conv2D(2, 3, padding="causal"), "padding must be one of"),
    (lambda: L.Conv2D(2, 3, strides=2, dilation_rate=2), "not compatible with dilation"),
    (lambda: L.Conv2D(2, 3, data_format="channels_first"), "channels_last"),
    (lambda: L.Conv2D(2, 3, groups=2), "groups=1"),
    (lambda: L.Conv2D(2, 3, activation="swishy"), "unknown activation"),
    (lambda: L.Conv2D(2, 3, kernel_initializer="nope"), "Unknown initializer"),
    (lambda: L.Conv2DTranspose(2, 3, output_padding=1), "output_padding"),
    (lambda: L.MaxPooling2D(0), "pool_size must be"),
    (lambda: L.AveragePooling1D(2, padding="causal"), "padding must be one of"),
    (lambda: L.Reshape((0, 2)), "target_shape"),
    (lambda: L.Permute((1, 3)), "permutation"),
    (lambda: L.RepeatVector(0), "positive integer"),
    (lambda: L.UpSampling2D(interpolation="bilinear"), "nearest"),
    (lambda: L.LayerNormalization(epsilon=-1), "epsilon"),
    (lambda: L.GroupNormalization(groups=0), "groups must be"),
    (lambda: L.GroupNormalization(axis=1), "axis=-1"),
    (lambda: L.Embedding(0, 3), "input_dim must be"),
    (lambda: L.Embedding(5, 3, mask_zero=True), "mask_zero"),
    (lambda: L.ReLU(negative_slope=-1), "negative_slope must be >= 0"),
    (lambda: L.GaussianNoise(-1.0), "stddev"),
    (lambda: L.GaussianDropout(1.0), "rate must be"),
    (lambda: L.SpatialDropout2D(0.5, data_format="channels_first"), "channels_last"),
])
def test_bad_arguments_raise_at_construction(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("make, x, message", [
    (lambda: L.Conv2D(2, 3), np.zeros((1, 5, 5)), "expects 4-D inputs"),
    (lambda: L.Conv1D(2, 3), np.zeros((1, 5, 5, 1)), "expects 3-D inputs"),
    (lambda: L.MaxPooling2D(), np.zeros((2, 4)), "expects 4-D inputs"),
    (lambda: L.Reshape((4, 4)), np.zeros((2, 3, 5)), "cannot reshape"),
    (lambda: L.Cropping2D(((2, 2), (0, 0))), np.zeros((1, 4, 4, 1)), "leaves no rows"),
    (lambda: L.GroupNormalization(3), np.zeros((2, 4)), "must divide"),
    (lambda: L.Conv2D(2, 5), np.zeros((1, 4, 6, 1)), "does not fit an input of length 4"),
    (lambda: L.MaxPooling2D(3), np.zeros((1, 2, 6, 1)), "does not fit input shape"),
    (lambda: L.Embedding(4, 2), np.array([[0, 4]]), r"ids must be in \[0, 4\)"),
])
def test_bad_inputs_raise_clear_errors(make, x, message):
    with pytest.raises(ValueError, match=message):
        make()(x)


def test_conv_layer_rejects_a_different_channel_count_after_build():
    layer = L.Conv2D(2, 3)
    layer(np.zeros((1, 5, 5, 3), np.float32))
    with pytest.raises(ValueError, match="expects 3 channels"):
        layer(np.zeros((1, 5, 5, 4), np.float32))


def test_dense_with_new_activations_trains(monkeypatch):
    # The fused plan (engine/plan.py) still knows codes 0-4 only: run the layer path.
    monkeypatch.setenv("FASTLAYERS_NO_PLAN", "1")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 4)).astype(np.float32)
    y = (x[:, :1] * x[:, 1:2] > 0).astype(np.float32)
    model = fl.Sequential([fl.Input((4,)), L.Dense(16, activation="gelu"),
                           L.Dense(16, activation="leaky_relu"), L.Dense(1, activation="sigmoid")])
    model.compile(fl.optimizers.Adam(0.02), "binary_crossentropy")
    h = model.fit(x, y, epochs=60, batch_size=64, verbose=0)
    assert h.history["loss"][-1] < 0.5 * h.history["loss"][0]


@pytest.fixture
def one_thread():
    # A learning test, not a threading one: on a busy shared machine every
    # OpenMP region of a 2-thread team waits for a time slice.
    before = fl.backend.get_num_threads()
    fl.backend.set_num_threads(1)
    yield
    fl.backend.set_num_threads(before)


def test_small_cnn_learns_digits(one_thread):
    datasets = pytest.importorskip("sklearn.datasets")
    d = datasets.load_digits()
    X = (d.images / 16.0).astype("float32")[..., None]
    y = d.target
    inp = fl.Input((8, 8, 1))
    h = L.Conv2D(16, 3, padding="same", activation="relu")(inp)
    h = L.MaxPooling2D()(h)
    h = L.Conv2D(32, 3, padding="same", activation="relu")(h)
    h = L.GlobalAveragePooling2D()(h)
    model = fl.Model(inp, L.Dense(10, activation="softmax")(h))
    model.compile(fl.optimizers.Adam(0.01), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(X[:1400], y[:1400], epochs=15, batch_size=64, verbose=0)
    _, acc = model.evaluate(X[1400:], y[1400:], verbose=0)
    assert acc > 0.85


def test_frozen_conv_base_keeps_its_weights():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((32, 6, 6, 1)).astype("float32"), rng.integers(0, 3, 32)
    base = L.Conv2D(4, 3, activation="relu")
    inp = fl.Input((6, 6, 1))
    model = fl.Model(inp, L.Dense(3)(L.Flatten()(base(inp))))
    base.trainable = False
    before = [w.copy() for w in base.get_weights()]
    model.compile(fl.optimizers.SGD(0.1), fl.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=2, verbose=0)
    for a, b in zip(before, base.get_weights()):
        np.testing.assert_array_equal(a, b)


CONTRACT = [
    ("conv2d", lambda: L.Conv2D(3, 2, padding="same"), (5, 4, 2), (None, 5, 4, 3),
     [("kernel", (2, 2, 2, 3), True), ("bias", (3,), True)], False),
    ("conv1d", lambda: L.Conv1D(2, 3), (6, 2), (None, 4, 2),
     [("kernel", (3, 2, 2), True), ("bias", (2,), True)], False),
    ("conv2d_transpose", lambda: L.Conv2DTranspose(2, 3, strides=2), (3, 3, 1),
     (None, 7, 7, 2), [("kernel", (3, 3, 2, 1), True), ("bias", (2,), True)], False),
    ("separable", lambda: L.SeparableConv2D(2, 3), (5, 5, 2), (None, 3, 3, 2),
     [("depthwise_kernel", (3, 3, 2, 1), True), ("pointwise_kernel", (1, 1, 2, 2), True),
      ("bias", (2,), True)], False),
    ("maxpool", lambda: L.MaxPooling2D(), (4, 5, 2), (None, 2, 2, 2), [], False),
    ("gap1d", lambda: L.GlobalAveragePooling1D(), (4, 3), (None, 3), [], False),
    ("zeropad", lambda: L.ZeroPadding2D(1), (2, 3, 1), (None, 4, 5, 1), [], False),
    ("layernorm", lambda: L.LayerNormalization(), (3, 4), (None, 3, 4),
     [("gamma", (4,), True), ("beta", (4,), True)], False),
    ("groupnorm", lambda: L.GroupNormalization(2), (3, 4), (None, 3, 4),
     [("gamma", (4,), True), ("beta", (4,), True)], False),
    ("prelu", lambda: L.PReLU(), (3,), (None, 3), [("alpha", (3,), True)], False),
    ("spatial_dropout", lambda: L.SpatialDropout1D(0.5), (3, 4), (None, 3, 4), [], True),
    ("gaussian_noise", lambda: L.GaussianNoise(0.1), (3,), (None, 3), [], True),
]


@pytest.mark.parametrize("make,shape,out,weights,stochastic",
                         [pytest.param(*c[1:], id=c[0]) for c in CONTRACT])
def test_layer_contract(make, shape, out, weights, stochastic):
    import importlib.util
    from pathlib import Path

    # The shared contract helper (tests run with --import-mode=importlib).
    path = Path(__file__).with_name("test_layer_contract.py")
    spec = importlib.util.spec_from_file_location("layer_contract_helper", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.run_layer_test(make, shape, out, weights, stochastic=stochastic)


def test_sequence_model_with_embedding_trains(one_thread):
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 20, (256, 6))
    y = (ids == 3).any(axis=1).astype("float32")[:, None]
    inp = fl.Input((6,))
    h = L.Embedding(20, 8)(inp)
    h = L.Conv1D(8, 3, padding="same", activation="relu")(h)
    h = L.LayerNormalization()(L.GlobalMaxPooling1D()(h))
    model = fl.Model(inp, L.Dense(1, activation="sigmoid")(h))
    model.compile(fl.optimizers.Adam(0.03), "binary_crossentropy", metrics=["accuracy"])
    hist = model.fit(ids.astype("float32"), y, epochs=30, batch_size=32, verbose=0)
    assert hist.history["accuracy"][-1] > 0.95


def test_decoder_style_graph_trains(one_thread):
    rng = np.random.default_rng(1)
    z = fl.Input((4,))
    h = L.Reshape((2, 2, 8))(L.Dense(32)(z))
    h = L.UpSampling2D()(h)
    h = L.Conv2DTranspose(4, 3, strides=2, padding="same", activation="leaky_relu")(h)
    h = L.Cropping2D(1)(L.ZeroPadding2D(1)(h))
    h = L.SeparableConv2D(3, 3, padding="same")(h)
    h = L.GroupNormalization(3)(L.PReLU()(h))
    model = fl.Model(z, L.Dense(1)(L.Flatten()(h)))
    assert tuple(model.outputs[0].shape) == (None, 1)
    model.compile("adam", "mse")
    x, t = rng.standard_normal((64, 4)).astype("float32"), rng.standard_normal((64, 1))
    hist = model.fit(x, t.astype("float32"), epochs=5, verbose=0)
    assert hist.history["loss"][-1] < hist.history["loss"][0]
