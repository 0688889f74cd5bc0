"""Rules R1-R9 of DESIGN.md, each with a test that fails without it."""
import warnings

import numpy as np
import pytest

import fastlayers as fl
from fastlayers.layers import BatchNormalization, Dense, Dropout



def snapshot(model):
    return [w.copy() for w in model.get_weights()]


def changed(before, after):
    return [not np.array_equal(a, b) for a, b in zip(before, after)]


def xy(n=8, d=2, k=1, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, d)).astype("float32"), rng.random((n, k)).astype("float32")


# --------------------------------------------------------------------------- R1
def test_r1_model_flag_is_not_pushed_into_layers():
    inp = fl.Input((2,))
    d = Dense(3)
    m = fl.Model(inp, Dense(1)(d(inp)))
    m.trainable = False
    assert d.trainable is True
    assert all(l.trainable for l in m.layers)
    m.trainable = True
    d.trainable = False
    assert m.trainable is True


# --------------------------------------------------------------------------- R2
def test_r2_trainable_weights_empty_when_frozen_and_order_stable():
    inp = fl.Input((4,))
    d1, bn, d2 = Dense(3), BatchNormalization(), Dense(2)
    m = fl.Model(inp, d2(bn(d1(inp))))
    names = [w.path for w in m.weights]
    assert names == ["dense/kernel", "dense/bias", "batch_normalization/gamma",
                     "batch_normalization/beta", "batch_normalization/moving_mean",
                     "batch_normalization/moving_variance", "dense_1/kernel", "dense_1/bias"]
    assert len(m.trainable_weights) == 6
    assert [w.name for w in m.non_trainable_weights] == ["moving_mean", "moving_variance"]
    d1.trainable = False
    assert d1.trainable_weights == [] and len(d1.non_trainable_weights) == 2
    assert [w.path for w in m.weights] == names
    assert len(m.trainable_weights) == 4
    m.trainable = False
    assert m.trainable_weights == []
    assert [w.path for w in m.weights] == names
    assert len(m.get_weights()) == 8


def test_r2_shared_weights_appear_once():
    inp = fl.Input((3,))
    shared = Dense(3)
    out = shared(shared(inp))
    m = fl.Model(inp, out)
    assert len(m.weights) == 2 and len(m.trainable_weights) == 2
    assert m.count_params() == 12


# --------------------------------------------------------------------------- R3 (seed 000)
def _seed000():
    inp = fl.Input((2,))
    shared = Dense(2)
    sout = shared(inp)
    m1 = fl.Model(inp, Dense(1)(sout))
    m2 = fl.Model(inp, Dense(1)(sout))
    return shared, m1, m2


def test_r3_frozen_model_leaves_shared_layer_to_the_other_model():
    shared, m1, m2 = _seed000()
    assert m1.layers[1] is shared
    m1.trainable = False
    m1.compile("sgd", "mse")
    m2.compile("sgd", "mse")
    x, y = xy()
    b1 = snapshot(m1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m1.fit(x, y, epochs=2, verbose=0)
    assert not any(changed(b1, snapshot(m1)))
    b2 = snapshot(m2)
    m2.fit(x, y, epochs=2, verbose=0)
    assert all(changed(b2, snapshot(m2)))  # shared kernel/bias and m2's head


def test_r3_frozen_shared_layer_is_frozen_for_both():
    shared, m1, m2 = _seed000()
    m1.layers[1].trainable = False
    m1.compile("sgd", "mse")
    m2.compile("sgd", "mse")
    x, y = xy()
    s = shared.get_weights()
    m1.fit(x, y, verbose=0)
    m2.fit(x, y, verbose=0)
    assert not any(changed(s, shared.get_weights()))
    assert len(m1.trainable_weights) == 2 and len(m2.trainable_weights) == 2


def test_r3_weight_reached_by_a_trainable_path_trains():
    inp = fl.Input((2,))
    shared = Dense(2)
    frozen = fl.Container(inp, shared(inp), name="frozen_path")
    frozen.trainable = False
    a = frozen(inp)
    b = shared(inp)
    m = fl.Model(inp, Dense(1)(fl.layers.Add()([a, b])))
    assert shared.kernel in m.trainable_weights
    m.compile("sgd", "mse")
    k0 = shared.kernel.numpy()
    m.train_on_batch(*xy())
    assert not np.array_equal(k0, shared.kernel.numpy())


# --------------------------------------------------------------------------- R4
def test_r4_change_after_compile_has_no_effect_and_warns_once():
    inp = fl.Input((2,))
    d1, d2 = Dense(2), Dense(1)
    m = fl.Model(inp, d2(d1(inp)))
    m.compile("sgd", "mse")
    d1.trainable = False
    x, y = xy()
    k0 = d1.kernel.numpy()
    with pytest.warns(UserWarning, match="compile"):
        m.train_on_batch(x, y)
    assert not np.array_equal(k0, d1.kernel.numpy())  # still in the compiled set
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.train_on_batch(x, y)
        m.fit(x, y, verbose=0)
    m.compile("sgd", "mse")
    k1 = d1.kernel.numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.train_on_batch(x, y)
    assert np.array_equal(k1, d1.kernel.numpy())


def test_r4_sets_are_compared_not_counts():
    inp = fl.Input((2,))
    a, b = Dense(2), Dense(2)
    m = fl.Model(inp, b(a(inp)))
    b.trainable = False
    m.compile("sgd", "mse")
    a.trainable, b.trainable = False, True   # same count, other weights
    with pytest.warns(UserWarning, match=repr(m.name)):
        m.train_on_batch(*xy(k=2))


def test_r4_gan_idiom():
    z = fl.Input((3,))
    g = fl.Sequential([Dense(4, input_shape=(3,)), Dense(2)], name="g")
    d = fl.Sequential([Dense(4, input_shape=(2,)), Dense(1)], name="d")
    d.compile("sgd", "mse")
    d.trainable = False
    gan = fl.Model(z, d(g(z)))
    gan.compile("sgd", "mse")
    rng = np.random.default_rng(0)
    zs, ones = rng.random((8, 3)), np.ones((8, 1))
    dw, gw = snapshot(d), snapshot(g)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d.train_on_batch(rng.random((8, 2)), ones)
    assert all(changed(dw, snapshot(d)))
    dw = snapshot(d)
    gan.train_on_batch(zs, ones)
    assert not any(changed(dw, snapshot(d)))
    assert all(changed(gw, snapshot(g)))


def test_r4_nothing_to_train_warns_at_compile_and_runs():
    m = fl.Sequential([Dense(1, input_shape=(2,))])
    m.trainable = False
    with pytest.warns(UserWarning, match="no trainable weights"):
        m.compile("sgd", "mse")
    w = snapshot(m)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss = m.train_on_batch(*xy())
    assert np.isfinite(loss) and not any(changed(w, snapshot(m)))


# --------------------------------------------------------------------------- R5
class Probe(fl.layers.Layer):
    """Identity that records the training value of each call."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.seen = []

    def compute_output_shape(self, input_shape):
        return input_shape

    def forward(self, x, training=False):
        self.seen.append(training)
        return x, lambda dy: dy


def test_r5_defaults_of_fit_predict_and_plain_calls():
    p = Probe()
    m = fl.Sequential([Dense(1, input_shape=(2,)), p])
    m.compile("sgd", "mse")
    x, y = xy()
    m.fit(x, y, batch_size=8, verbose=0)
    assert p.seen == [True]
    m.predict(x, verbose=0)
    m.evaluate(x, y, verbose=0)
    m.test_on_batch(x, y)
    m(x)
    assert p.seen == [True, False, False, False, False]
    fl.backend.set_learning_phase(1)
    m(x)
    m.predict(x, verbose=0)
    assert p.seen[-2:] == [True, False]
    fl.backend.set_learning_phase(None)
    m(x)
    assert p.seen[-1] is False


def test_r5_pinned_training_survives_predict_and_outer_false():
    inp = fl.Input((50,))
    out = Dropout(0.5)(inp, training=True)
    m = fl.Model(inp, out)
    m.compile("sgd", "mse")
    x = np.ones((4, 50), "float32")
    for y in (m.predict(x, verbose=0), m(x, training=False), m.predict_on_batch(x)):
        assert (y == 0).any() and set(np.unique(y)) <= {0.0, 2.0}


def test_r5_outer_training_reaches_inside_and_does_not_leak():
    inner_probe, sibling = Probe(), Probe()
    inp = fl.Input((2,))
    inner = fl.Model(inp, inner_probe(inp))
    pinned_probe = Probe()
    outer_in = fl.Input((2,))
    outer = fl.Model(outer_in, pinned_probe(inner(outer_in), training=False))
    x = np.ones((1, 2), "float32")
    outer(x, training=True)
    assert inner_probe.seen == [True] and pinned_probe.seen == [False]
    sibling(x)
    assert sibling.seen == [False]


# --------------------------------------------------------------------------- R6 (seed 002)
def test_r6_dropout_drops_in_frozen_model_under_fit():
    inp = fl.Input((100,))
    drop = Dropout(0.5)
    h = drop(inp)
    inner = fl.Model(inp, h)
    inner.trainable = False
    drop.trainable = False
    x = np.ones((4, 100), "float32")
    y = inner(x, training=True)
    assert (y == 0).mean() > 0.3 and set(np.unique(y)) <= {0.0, 2.0}
    np.testing.assert_array_equal(inner(x, training=False), x)


# --------------------------------------------------------------------------- R7 (seed 004)
def _bn_model(freeze):
    inp = fl.Input((3,))
    bn = BatchNormalization()
    body = fl.Model(inp, bn(inp), name="body")
    outer_in = fl.Input((3,))
    m = fl.Model(outer_in, Dense(1)(body(outer_in)))
    if freeze == "layer":
        bn.trainable = False
    elif freeze == "container":
        body.trainable = False
    return bn, body, m


@pytest.mark.parametrize("freeze", ["layer", "container"])
def test_r7_frozen_bn_runs_in_inference_mode_under_fit(freeze):
    bn, body, m = _bn_model(freeze)
    bn.moving_mean.assign([1.0, 2.0, 3.0])
    m.compile("sgd", "mse")
    x = np.random.default_rng(0).normal(5, 2, (16, 3)).astype("float32")
    y = np.zeros((16, 1), "float32")
    mm, mv = bn.moving_mean.numpy(), bn.moving_variance.numpy()
    g0 = bn.gamma.numpy()
    m.fit(x, y, epochs=2, verbose=0)
    np.testing.assert_array_equal(mm, bn.moving_mean.numpy())
    np.testing.assert_array_equal(mv, bn.moving_variance.numpy())
    np.testing.assert_array_equal(g0, bn.gamma.numpy())
    out = bn(x, training=True) if freeze == "layer" else body(x, training=True)
    expect = (x - mm) / np.sqrt(mv + 1e-3)
    np.testing.assert_allclose(out, expect, rtol=1e-5, atol=1e-5)


def test_r7_trainable_bn_uses_batch_stats_and_updates():
    bn, body, m = _bn_model(None)
    m.compile("sgd", "mse")
    x = np.random.default_rng(0).normal(5, 2, (16, 3)).astype("float32")
    m.train_on_batch(x, np.zeros((16, 1)))
    np.testing.assert_allclose(bn.moving_mean.numpy(), 0.01 * x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), 0.99 + 0.01 * x.var(0, ddof=1), rtol=1e-5)


def test_r7_frozen_state_is_taken_at_compile():
    bn, body, m = _bn_model(None)
    m.compile("sgd", "mse")
    body.trainable = False  # after compile: fit still runs the compiled picture
    x = np.random.default_rng(0).normal(5, 2, (16, 3)).astype("float32")
    with pytest.warns(UserWarning):
        m.train_on_batch(x, np.zeros((16, 1)))
    assert np.abs(bn.moving_mean.numpy()).sum() > 0  # updated: BN was trainable at compile
    m.compile("sgd", "mse")
    mm = bn.moving_mean.numpy()
    m.train_on_batch(x, np.zeros((16, 1)))
    np.testing.assert_array_equal(mm, bn.moving_mean.numpy())


def test_r7_eager_bn_training_updates_moving_stats():
    bn = BatchNormalization()
    x = np.random.default_rng(0).normal(3, 1, (10, 4)).astype("float32")
    bn(x, training=True)
    assert np.abs(bn.moving_mean.numpy()).sum() > 0
    bn.trainable = False
    mm = bn.moving_mean.numpy()
    bn(x, training=True)
    np.testing.assert_array_equal(mm, bn.moving_mean.numpy())


# --------------------------------------------------------------------------- R8
def test_r8_shared_layer_gradients_summed_one_update(float64):
    inp = fl.Input((3,))
    shared = Dense(3, use_bias=False)
    m = fl.Model(inp, shared(shared(inp)))
    m.compile(fl.optimizers.SGD(0.1), "mse")
    rng = np.random.default_rng(0)
    x, y = rng.random((5, 3)), rng.random((5, 3))
    W = shared.kernel.numpy()
    h = x @ W
    out = h @ W
    g = 2 * (out - y) / out.size
    dW = h.T @ g + x.T @ (g @ W.T)
    m.train_on_batch(x, y)
    np.testing.assert_allclose(shared.kernel.numpy(), W - 0.1 * dW, rtol=1e-12)


# --------------------------------------------------------------------------- R9
def test_r9_no_gradients_for_frozen_and_below_lowest_trainable(monkeypatch):
    m = fl.Sequential([Dense(5, input_shape=(2,)), Dense(4), Dense(3), Dense(1)])
    m.layers[0].trainable = False
    m.layers[2].trainable = False
    m.compile("sgd", "mse")
    # layer 3 (head): dW and dX; layer 2 (frozen): dX only; layer 1: dW, no dX;
    # layer 0: not visited by the backward pass at all.
    ops = m.step_program.ops
    assert [(any(op.train), op.want_dx[0], op.backward) for op in ops] == [
        (False, False, False), (True, False, True), (False, True, True), (True, True, True)]
    w0 = m.layers[0].get_weights()
    w2 = m.layers[2].get_weights()
    m.train_on_batch(*xy())
    assert not any(changed(w0, m.layers[0].get_weights()))
    assert not any(changed(w2, m.layers[2].get_weights()))
    m.trainable = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m.compile("sgd", "mse")
    assert not any(op.backward for op in m.step_program.ops)
