"""Weightless layers lowered natively: Reshape is a view, a block-swap Permute a
TRANSPOSE op, the activation layers whose arguments name a kernel activation an
ACTIVATION op, the noise layers no op at all in inference (R6).

Each is checked against the same model with the layer forced to the callback op
(its own ``forward``, the behaviour before it was lowered): the same outputs, and
the same losses and weights over a few training steps, in float32 and float64.
Dropout's ``noise_shape`` (a broadcast mask, drawn by its forward) is tested here too.
"""
import numpy as np
import pytest

import fastlayers as fl
from fastlayers import _act_codes
from fastlayers import layers as L
from fastlayers.engine.program import OpKind, lower
from fastlayers.engine.reference import ReferenceRunner

CODE = _act_codes.ACTIVATION_CODES


@pytest.fixture(params=["float32", "float64"])
def floatx(request):
    fl.backend.set_floatx(request.param)
    yield np.dtype(request.param)
    fl.backend.set_floatx("float32")


def _model(make, in_shape, force_callback=False):
    """Input -> Dense over the last axis -> the layer -> Flatten -> Dense(3): trained
    weights on both sides, so gradients flow through the layer."""
    layer = make()
    if force_callback:
        layer._lower = lambda ctx: NotImplemented
    inp = fl.Input(in_shape)
    h = L.Dense(in_shape[-1], name="below")(inp)
    h = layer(h)
    out = L.Dense(3, name="above")(L.Flatten()(h))
    m = fl.Model(inp, out)
    m.compile(fl.optimizers.SGD(0.1), "mse")
    return m, layer


def _ops_of(program, layer):
    return [op for op in program.ops if op.layer is layer]


def _data(in_shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((6,) + tuple(in_shape)).astype(dtype)
    y = rng.standard_normal((6, 3)).astype(dtype)
    return x, y


def _assert_same_as_callback(make, in_shape, dtype, steps=3):
    native, layer = _model(make, in_shape)
    twin, twin_layer = _model(make, in_shape, force_callback=True)
    assert [op.kind for op in _ops_of(twin.step_program, twin_layer)] == [OpKind.CALLBACK]
    twin.set_weights(native.get_weights())
    x, y = _data(in_shape, dtype)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)
    want = twin.predict(x, verbose=0)
    np.testing.assert_allclose(native.predict(x, verbose=0), want, **tol)
    # The NumPy twin executor runs the same native program to the same values.
    ref = ReferenceRunner(lower(native, training=False)).run([x])[2][0]
    np.testing.assert_allclose(ref, want, **tol)
    for _ in range(steps):
        np.testing.assert_allclose(native.train_on_batch(x, y), twin.train_on_batch(x, y),
                                   **tol)
    for a, b in zip(native.get_weights(), twin.get_weights()):
        assert a.dtype == dtype
        np.testing.assert_allclose(a, b, **tol)
    return native, layer


# (id, factory, input shape without batch, kinds of the layer's ops in the training
# program, the same in the inference program); [] = an alias, no op.
NATIVE = [
    ("reshape", lambda: L.Reshape((-1, 2)), (3, 4), [], []),
    ("reshape-flat", lambda: L.Reshape((12,)), (3, 4), [], []),
    ("reshape-3d", lambda: L.Reshape((2, -1, 3)), (3, 4), [], []),
    ("permute-21", lambda: L.Permute((2, 1)), (3, 4), ["transpose"], ["transpose"]),
    ("permute-312", lambda: L.Permute((3, 1, 2)), (2, 3, 4), ["transpose"], ["transpose"]),
    ("permute-231", lambda: L.Permute((2, 3, 1)), (2, 3, 4), ["transpose"], ["transpose"]),
    ("permute-132", lambda: L.Permute((1, 3, 2)), (2, 3, 4), ["transpose"], ["transpose"]),
    ("permute-1423", lambda: L.Permute((1, 4, 2, 3)), (2, 3, 2, 3), ["transpose"],
     ["transpose"]),
    ("permute-identity", lambda: L.Permute((1, 2)), (3, 4), [], []),
    ("permute-213", lambda: L.Permute((2, 1, 3)), (2, 3, 4), ["callback"], ["callback"]),
    ("relu", lambda: L.ReLU(), (5,), ["activation"], ["activation"]),
    ("relu6", lambda: L.ReLU(max_value=6), (5,), ["activation"], ["activation"]),
    ("relu-leaky", lambda: L.ReLU(negative_slope=0.2), (5,), ["activation"], ["activation"]),
    ("relu-threshold", lambda: L.ReLU(threshold=0.5), (5,), ["callback"], ["callback"]),
    ("relu-max1", lambda: L.ReLU(max_value=1.0), (5,), ["callback"], ["callback"]),
    ("relu-6-slope", lambda: L.ReLU(max_value=6, negative_slope=0.1), (5,), ["callback"],
     ["callback"]),
    ("leaky-0.2", lambda: L.LeakyReLU(negative_slope=_act_codes.LEAKY_RELU_SLOPE), (2, 5),
     ["activation"], ["activation"]),
    ("leaky-default", lambda: L.LeakyReLU(), (5,), ["callback"], ["callback"]),
    ("elu", lambda: L.ELU(), (2, 5), ["activation"], ["activation"]),
    ("elu-0.7", lambda: L.ELU(0.7), (5,), ["callback"], ["callback"]),
    ("softmax", lambda: L.Softmax(), (2, 5), ["activation"], ["activation"]),
    ("softmax-last-positive", lambda: L.Softmax(axis=2), (2, 5), ["activation"],
     ["activation"]),
    ("softmax-axis1", lambda: L.Softmax(axis=1), (3, 4, 2),
     ["transpose", "activation", "transpose"], ["transpose", "activation", "transpose"]),
    ("softmax-axis-2", lambda: L.Softmax(axis=-2), (3, 4),
     ["transpose", "activation", "transpose"], ["transpose", "activation", "transpose"]),
    ("softmax-two-axes", lambda: L.Softmax(axis=(1, 2)), (3, 4), ["callback"], ["callback"]),
    ("gaussian-noise", lambda: L.GaussianNoise(0.5, seed=3), (4,), ["callback"], []),
    ("gaussian-dropout", lambda: L.GaussianDropout(0.3, seed=3), (4,), ["callback"], []),
    ("alpha-dropout", lambda: L.AlphaDropout(0.3, seed=3), (2, 4), ["callback"], []),
    ("alpha-dropout-shape", lambda: L.AlphaDropout(0.3, noise_shape=(None, 1, 4), seed=3),
     (2, 4), ["callback"], []),
    ("spatial1d", lambda: L.SpatialDropout1D(0.5, seed=3), (3, 4), ["callback"], []),
    ("spatial2d", lambda: L.SpatialDropout2D(0.5, seed=3), (2, 3, 4), ["callback"], []),
    ("dropout-noise-shape", lambda: L.Dropout(0.4, noise_shape=(None, 1, 4), seed=3), (3, 4),
     ["callback"], []),
]


@pytest.mark.parametrize("make,in_shape,train_kinds,infer_kinds",
                         [pytest.param(*c[1:], id=c[0]) for c in NATIVE])
def test_lowered_ops_match_the_callback(floatx, make, in_shape, train_kinds, infer_kinds):
    native, layer = _assert_same_as_callback(make, in_shape, floatx)
    assert [op.kind.name.lower() for op in _ops_of(native.step_program, layer)] == train_kinds
    assert [d["kind"] for d in native.step_program.describe()
            if d["layer"].endswith("/" + layer.name)] == train_kinds
    assert [op.kind.name.lower()
            for op in _ops_of(lower(native, training=False), layer)] == infer_kinds


@pytest.mark.parametrize("make,code", [
    (lambda: L.ReLU(), "relu"), (lambda: L.ReLU(6.0), "relu6"),
    (lambda: L.ReLU(negative_slope=0.2), "leaky_relu"), (lambda: L.LeakyReLU(0.2), "leaky_relu"),
    (lambda: L.ELU(1.0), "elu"), (lambda: L.Softmax(), "softmax"),
    (lambda: L.Softmax(axis=(-1,)), "softmax")])
def test_activation_layers_emit_the_named_code(make, code):
    layer = make()
    inp = fl.Input((4,))
    prog = lower(fl.Model(inp, layer(inp)), training=True)
    (op,) = prog.ops
    assert op.kind == OpKind.ACTIVATION and op.act == CODE[code]


def test_native_activation_layers_equal_their_forward_exactly(floatx):
    x = np.random.default_rng(5).standard_normal((4, 7)).astype(floatx) * 3
    g = np.random.default_rng(6).standard_normal((4, 7)).astype(floatx)
    for make in (L.ReLU, lambda: L.ReLU(6.0), lambda: L.LeakyReLU(0.2), L.ELU, L.Softmax):
        layer = make()
        y, bp = layer.forward(x)  # the layer's own kernel call (the callback's)
        inp = fl.Input((7,))
        m = fl.Model(inp, layer(inp))
        assert m(x).dtype == floatx
        np.testing.assert_array_equal(m(x), y)
        ym, bpm = m.forward(x)   # the native ACTIVATION op's vjp program
        np.testing.assert_array_equal(ym, y)
        np.testing.assert_array_equal(bpm(g), bp(g)[0])


def test_reshape_keeps_keras_minus_one_rule():
    r = L.Reshape((-1, 2))
    assert r.compute_output_shape((None, 3, 4)) == (None, 6, 2)
    assert r.compute_output_shape((None, None, 4)) == (None, None, 2)
    with pytest.raises(ValueError, match="cannot reshape"):
        L.Reshape((-1, 5)).compute_output_shape((None, 3, 4))
    with pytest.raises(ValueError, match="cannot reshape"):
        L.Reshape((5, 2))(fl.Input((3, 4)))
    inp = fl.Input((3, 4))
    out = L.Reshape((-1, 2))(inp)
    assert tuple(out.shape) == (None, 6, 2)
    prog = lower(fl.Model(inp, out), training=False)
    assert prog.ops == [] and prog.slots[prog.outputs[0]].alias_of == prog.inputs[0]
    assert prog.slots[prog.outputs[0]].shape == (6, 2)


def test_reshape_on_the_model_input_trains_as_the_callback(floatx):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((8, 12)).astype(floatx)
    y = rng.standard_normal((8, 2)).astype(floatx)
    models = []
    for force in (False, True):
        r = L.Reshape((3, 4))
        if force:
            r._lower = lambda ctx: NotImplemented
        inp = fl.Input((12,))
        m = fl.Model(inp, L.Dense(2)(L.Flatten()(L.Dense(5)(r(inp)))))
        m.compile(fl.optimizers.SGD(0.05), "mse")
        models.append(m)
    native, twin = models
    twin.set_weights(native.get_weights())
    assert not native.step_program.has_callbacks and twin.step_program.has_callbacks
    tol = 1e-5 if floatx == np.float32 else 1e-12
    for _ in range(3):
        assert native.train_on_batch(x, y) == pytest.approx(twin.train_on_batch(x, y), rel=tol)
    native.fit(x, y, batch_size=3, epochs=2, verbose=0, shuffle=False)
    twin.fit(x, y, batch_size=3, epochs=2, verbose=0, shuffle=False)
    for a, b in zip(native.get_weights(), twin.get_weights()):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


def test_permute_moves_the_axes_as_numpy(floatx):
    x = np.random.default_rng(8).standard_normal((2, 2, 3, 4)).astype(floatx)
    for dims in [(3, 1, 2), (2, 3, 1), (1, 3, 2), (2, 1, 3), (3, 2, 1)]:
        inp = fl.Input((2, 3, 4))
        m = fl.Model(inp, L.Permute(dims)(inp))
        np.testing.assert_array_equal(m.predict(x, verbose=0), x.transpose((0,) + dims))
        np.testing.assert_array_equal(L.Permute(dims)(x), x.transpose((0,) + dims))


def test_noise_layer_pinned_to_inference_is_no_op_in_a_training_program():
    """R5: a call with training=False is the identity even in the training step."""
    noise = L.GaussianNoise(1.0, seed=2)
    spatial = L.SpatialDropout1D(0.5, seed=2)
    inp = fl.Input((3, 4))
    h = noise(L.Dense(4)(inp), training=False)
    h = spatial(h, training=False)
    m = fl.Model(inp, L.Dense(1)(L.Flatten()(h)))
    m.compile("sgd", "mse")
    assert _ops_of(m.step_program, noise) == [] and _ops_of(m.step_program, spatial) == []
    assert not m.step_program.has_callbacks
    m.train_on_batch(np.ones((2, 3, 4), np.float32), np.ones((2, 1), np.float32))
    assert noise._counter[0] == 0 and spatial._counter[0] == 0  # nothing drawn


def test_noise_layers_still_draw_their_streams_in_training():
    """Training mode is the callback, as before: the same seeded draws, the counter
    advanced, whatever trainable (R6)."""
    x = np.ones((4, 3, 5), np.float32)
    for make in (lambda: L.GaussianNoise(0.5, seed=9), lambda: L.GaussianDropout(0.4, seed=9),
                 lambda: L.AlphaDropout(0.3, seed=9), lambda: L.SpatialDropout1D(0.5, seed=9)):
        layer = make()
        layer.trainable = False
        y, _ = make().forward(x, training=True)
        inp = fl.Input((3, 5))
        m = fl.Model(inp, layer(inp))
        np.testing.assert_array_equal(m(x, training=True), y)
        assert layer._counter[0] > 0
        np.testing.assert_array_equal(m.predict(x, verbose=0), x)
        np.testing.assert_array_equal(layer(x, training=False), x)


def test_spatial_dropout_refuses_a_wrong_rank_in_a_model():
    with pytest.raises(ValueError, match="expects 4-D inputs"):
        L.SpatialDropout2D(0.5)(fl.Input((3, 4)))
    with pytest.raises(ValueError, match="expects 3-D inputs"):
        L.SpatialDropout1D(0.5)(fl.Input((3, 4, 2)))


def test_dropout_noise_shape_shares_the_mask_along_its_unit_axes():
    x = np.ones((40, 3, 50), np.float32)
    d = L.Dropout(0.4, noise_shape=(None, 1, 50), seed=4)
    y = d(x, training=True)
    assert np.all(y.min(axis=1) == y.max(axis=1))  # one keep/drop per (sample, feature)
    np.testing.assert_allclose(np.unique(y), [0.0, 1 / 0.6], rtol=1e-6)
    assert abs((y[:, 0] == 0).mean() - 0.4) < 0.05
    assert d._counter[0] == 40 * 50
    assert not np.array_equal(d(x, training=True), y)  # the counter moved on
    np.testing.assert_array_equal(
        L.Dropout(0.4, noise_shape=(None, 1, 50), seed=4)(x, training=True), y)
    np.testing.assert_array_equal(d(x, training=False), x)
    # An explicit 1 on the batch axis: one mask for the whole batch, as Keras.
    y = L.Dropout(0.5, noise_shape=(1, None, 1), seed=2)(x, training=True)
    assert np.all(y == y[:1, :, :1])
    # R6: it drops in training mode whatever its trainable.
    d.trainable = False
    assert (d(x, training=True) == 0).any()


def test_dropout_noise_shape_gradients_and_rate_zero(float64):
    x = np.random.default_rng(3).standard_normal((3, 2, 4))
    d = L.Dropout(0.5, noise_shape=(None, 2, 1), seed=1)
    for training in (True, False):
        assert fl.utils.check_layer_gradients(d, x, training=training).ok
    y, bp = d.forward(x, training=True)
    dx, _ = bp(np.ones_like(x))
    np.testing.assert_array_equal(dx, y / x)  # the same factor forward applied
    d.rate = 0.0
    np.testing.assert_array_equal(d(x, training=True), x)


def test_dropout_noise_shape_errors_and_config():
    with pytest.raises(ValueError, match="noise_shape must be"):
        L.Dropout(0.5, noise_shape=(None, 0))
    with pytest.raises(ValueError, match="noise_shape must be"):
        L.Dropout(0.5, noise_shape=3)
    with pytest.raises(ValueError, match="does not broadcast"):
        L.Dropout(0.5, noise_shape=(None, 1))(fl.Input((3, 4)))
    with pytest.raises(ValueError, match="does not broadcast"):
        L.Dropout(0.5, noise_shape=(None, 2, 1))(fl.Input((3, 4)))
    d = L.Dropout(0.3, noise_shape=[None, 1, 4], seed=5)
    cfg = d.get_config()
    assert cfg["noise_shape"] == (None, 1, 4)
    again = L.Dropout.from_config(cfg)
    assert again.noise_shape == (None, 1, 4) and again.seed == 5
    assert "noise_shape" not in L.Dropout(0.3).get_config()


def test_dropout_noise_shape_survives_the_keras_format(tmp_path):
    pytest.importorskip("h5py")
    inp = fl.Input((3, 4))
    out = L.Dense(2)(L.Flatten()(L.Dropout(0.3, noise_shape=(None, 1, 4), name="d")(inp)))
    m = fl.Model(inp, out)
    m.save(tmp_path / "m.keras", format="keras")
    loaded = fl.models.load_model(tmp_path / "m.keras")
    assert loaded.get_layer("d").noise_shape == (None, 1, 4)
    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), m.predict(x, verbose=0))


def test_a_chain_of_views_and_moves_on_the_model_input(floatx):
    """Reshape (a view of the input slot) -> Permute (a transpose reading that view) ->
    Softmax over axis 1 (transposes around the op), trained through, against NumPy."""
    x = np.random.default_rng(9).standard_normal((5, 12)).astype(floatx)
    inp = fl.Input((12,))
    h = L.Softmax(axis=1)(L.Permute((2, 1))(L.Reshape((4, 3))(inp)))
    m = fl.Model(inp, h)
    assert [d["kind"] for d in lower(m, training=False).describe()] == \
        ["transpose", "transpose", "activation", "transpose"]
    e = np.exp(x.reshape(5, 4, 3).transpose(0, 2, 1))
    want = e / e.sum(axis=1, keepdims=True)
    tol = 1e-6 if floatx == np.float32 else 1e-14
    np.testing.assert_allclose(m.predict(x, verbose=0), want, rtol=tol, atol=tol)
    g = np.random.default_rng(10).standard_normal(want.shape).astype(floatx)
    y, bp = m.forward(x)
    dx = bp(g)
    # Softmax's vjp over axis 1, moved back through the transpose and the reshape.
    ds = want * (g - (g * want).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(dx, ds.transpose(0, 2, 1).reshape(5, 12), rtol=tol * 10,
                               atol=tol * 10)
