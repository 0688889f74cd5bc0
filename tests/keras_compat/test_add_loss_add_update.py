"""layer.add_loss / add_update, layer.losses / model.losses (Keras 2 semantics on NumPy
layers): added losses join the total loss fit/evaluate report; updates run after a
successful training step only."""
import gc

import numpy as np
import pytest

import fastlayers as fl
from fastlayers.layers import Dense, Layer


@pytest.fixture(autouse=True)
def _drop_layers_with_entries():
    # Layers holding added losses/updates keep later tests off the fast paths until freed.
    yield
    gc.collect()


class ActivityL2(Layer):
    """An activity regularizer written the Keras 2 way: add_loss inside the call."""

    def __init__(self, rate, **kw):
        super().__init__(**kw)
        self.rate = rate

    def compute_output_shape(self, input_shape):
        return input_shape

    def forward(self, inputs, training=False):
        self.add_loss(self.rate * float(np.sum(inputs ** 2)) / len(inputs))

        def backprop(g):
            # The layer's backprop carries its added loss's gradient (no autodiff).
            return g + 2 * self.rate * inputs / len(inputs)

        return inputs, backprop


class StepCounter(Layer):
    """Identity that counts training steps through add_update (a (weight, value) pair)."""

    def build(self, input_shape):
        self.count = self.add_weight("count", (), "zeros", trainable=False)

    def compute_output_shape(self, input_shape):
        return input_shape

    def forward(self, inputs, training=False):
        self.add_update((self.count, self.count.value + 1))
        return inputs, lambda g: (g, [None])


def regression(n=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 3)).astype("float32"), rng.normal(size=(n, 2)).astype("float32")


def linear_model(*extra_layers):
    x = fl.Input((3,))
    h = x
    for l in extra_layers:
        h = l(h)
    return fl.Model(x, Dense(2, name="out", kernel_initializer="ones")(h))


def mse(model, x, y):
    return float(np.mean((model.predict(x, verbose=0) - y) ** 2))


def test_model_add_loss_callable_joins_every_reported_loss():
    x, y = regression()
    m = linear_model()
    m.compile(fl.optimizers.SGD(0.0), "mse")
    kernel = m.get_layer("out").kernel
    m.add_loss(lambda: 0.1 * float(np.sum(kernel.value ** 2)))
    assert m.losses == [pytest.approx(0.1 * 6)]
    base = mse(m, x, y)
    assert m.train_on_batch(x, y) == pytest.approx(base + 0.6, rel=1e-5)
    assert m.test_on_batch(x, y) == pytest.approx(base + 0.6, rel=1e-5)
    assert m.evaluate(x, y, verbose=0) == pytest.approx(base + 0.6, rel=1e-5)
    h = m.fit(x, y, batch_size=16, epochs=2, verbose=0)
    np.testing.assert_allclose(h.history["loss"], [base + 0.6] * 2, rtol=1e-5)


def test_standing_loss_is_evaluated_before_the_step_moves_the_weights():
    x, y = regression()
    m = linear_model()
    m.compile(fl.optimizers.SGD(0.1), "mse")
    kernel = m.get_layer("out").kernel
    m.add_loss(lambda: float(np.sum(kernel.value)))
    before = float(np.sum(kernel.value))
    base = mse(m, x, y)
    assert m.train_on_batch(x, y) == pytest.approx(base + before, rel=1e-5)


def test_add_loss_with_a_float_is_constant():
    x, y = regression()
    m = linear_model()
    m.compile(fl.optimizers.SGD(0.0), "mse")
    m.add_loss(0.25)
    assert m.train_on_batch(x, y) == pytest.approx(mse(m, x, y) + 0.25, rel=1e-5)


def test_loss_added_in_forward_is_per_run_and_trains_through_backprop():
    x, y = regression()
    reg = ActivityL2(0.5, name="reg")
    m = linear_model(reg)
    m.compile(fl.optimizers.SGD(0.0), "mse")
    expected_reg = 0.5 * float(np.sum(x ** 2)) / len(x)
    assert m.train_on_batch(x, y) == pytest.approx(mse(m, x, y) + expected_reg, rel=1e-5)
    # One run's loss, not one per step accumulated.
    assert reg.losses == [pytest.approx(expected_reg)]
    assert m.losses == [pytest.approx(expected_reg)]
    assert m.evaluate(x[:8], y[:8], verbose=0) == pytest.approx(
        mse(m, x[:8], y[:8]) + 0.5 * float(np.sum(x[:8] ** 2)) / 8, rel=1e-5)
    assert reg.losses == [pytest.approx(0.5 * float(np.sum(x[:8] ** 2)) / 8)]


def test_added_loss_gradient_only_through_the_layer_backprop():
    """The reg layer's backprop adds its gradient; the gradient check agrees."""
    x, _ = regression(4)
    reg = ActivityL2(0.5)
    y, bp = reg.forward(x, training=True)
    np.testing.assert_allclose(bp(np.zeros_like(x)), x / len(x) * 1.0, rtol=1e-6)


def test_add_update_runs_after_each_training_step_only():
    x, y = regression()
    counter = StepCounter(name="counter")
    m = linear_model(counter)
    m.compile("sgd", "mse")
    m.fit(x, y, batch_size=4, epochs=2, verbose=0)  # 8 steps
    assert float(counter.count.value) == 8
    m.predict(x, verbose=0)
    m.evaluate(x, y, verbose=0)
    m.test_on_batch(x, y)
    assert float(counter.count.value) == 8
    m.train_on_batch(x, y)
    assert float(counter.count.value) == 9
    assert counter.updates == []  # the run's update has been applied


def test_update_is_not_applied_when_the_step_fails():
    x, _ = regression()
    counter = StepCounter()
    xin = fl.Input((3,))
    m = fl.Model(xin, Dense(3, activation="softmax")(counter(xin)))
    m.compile("sgd", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="labels"):
        m.train_on_batch(x, np.full(16, 7))
    assert float(counter.count.value) == 0


def test_standing_update_callable_on_a_model():
    x, y = regression()
    m = linear_model()
    m.compile("sgd", "mse")
    calls = []
    m.add_update(lambda: calls.append(1))
    assert len(m.updates) == 1
    m.train_on_batch(x, y)  # the fast path steps aside for added updates
    m.fit(x, y, batch_size=8, epochs=1, verbose=0)
    m.predict(x, verbose=0)
    m.evaluate(x, y, verbose=0)
    assert len(calls) == 3


def test_standing_weight_update_with_a_callable_value():
    x, y = regression()
    m = linear_model()
    d = m.get_layer("out")
    m.compile(fl.optimizers.SGD(0.0), "mse")
    d.add_update((d.bias, lambda: d.bias.value + 1.0))
    m.train_on_batch(x, y)
    m.train_on_batch(x, y)
    np.testing.assert_allclose(d.bias.value, [2.0, 2.0])


def test_model_losses_gathers_nested_layers_once():
    inner_dense = Dense(2, name="inner_d")
    xi = fl.Input((3,))
    inner = fl.Model(xi, inner_dense(xi), name="inner")
    inner_dense.add_loss(1.0)
    inner.add_loss(lambda: 2.0)
    z = fl.Input((3,))
    outer = fl.Model(z, inner(z), name="outer")
    outer.add_loss(0.5)
    assert sorted(outer.losses) == [0.5, 1.0, 2.0]
    assert sorted(inner.losses) == [1.0, 2.0]
    assert inner_dense.losses == [1.0]


def test_eager_call_replaces_the_run_losses():
    reg = ActivityL2(1.0)
    reg(np.ones((2, 3), "float32"))
    reg(np.ones((2, 3), "float32") * 2)
    assert reg.losses == [pytest.approx(12.0)]


def test_bad_arguments_are_refused():
    d = Dense(1)
    with pytest.raises(TypeError, match="add_loss"):
        d.add_loss("big")
    with pytest.raises(TypeError, match="add_loss"):
        d.add_loss(np.ones(3))
    with pytest.raises(TypeError, match="add_update"):
        d.add_update(("w", 3.0))
    d.build((None, 2))
    with pytest.raises(ValueError, match="shape"):
        d.add_update((d.kernel, np.zeros(5)))
    assert d.losses == [] and d.updates == []


def test_frozen_layers_and_containers_run_no_updates():
    """Keras 2: ``updates`` is [] for a layer or model with trainable=False."""
    x, y = regression()
    counter = StepCounter(name="counter")
    xi = fl.Input((3,))
    inner = fl.Model(xi, counter(xi), name="inner")
    z = fl.Input((3,))
    m = fl.Model(z, Dense(2)(inner(z)))
    m.compile("sgd", "mse")
    m.train_on_batch(x, y)
    assert float(counter.count.value) == 1
    inner.trainable = False
    assert inner.updates == [] and m.updates == []
    m.compile("sgd", "mse")
    m.train_on_batch(x, y)
    assert float(counter.count.value) == 1
    inner.trainable = True
    counter.trainable = False
    m.compile("sgd", "mse")
    m.train_on_batch(x, y)
    assert float(counter.count.value) == 1
    counter.trainable = True
    m.compile("sgd", "mse")
    m.train_on_batch(x, y)
    assert float(counter.count.value) == 2


def test_update_freezing_follows_the_compiled_picture():
    """R4: freezing after compile() changes nothing in fit until compile() again."""
    x, y = regression()
    counter = StepCounter(name="counter")
    m = linear_model(counter)
    m.compile("sgd", "mse")
    counter.trainable = False  # (no trainable weights change: no R4 warning here)
    m.train_on_batch(x, y)
    assert float(counter.count.value) == 1  # compiled while trainable: still updates
    m.compile("sgd", "mse")
    m.train_on_batch(x, y)
    assert float(counter.count.value) == 1


def test_get_updates_for_as_keras_2_test_topology():
    a = fl.Input(shape=(2,))
    dense_layer = Dense(1)
    dense_layer.add_update(0, inputs=a)
    dense_layer.add_update(1, inputs=None)
    assert dense_layer.get_updates_for(a) == [0]
    assert dense_layer.get_updates_for(None) == [1]


def test_get_losses_for_as_keras_2_test_topology():
    a = fl.Input(shape=(2,))
    dense_layer = Dense(1)
    dense_layer.add_loss(0, inputs=a)
    dense_layer.add_loss(1, inputs=None)
    assert dense_layer.get_losses_for(a) == [0]
    assert dense_layer.get_losses_for(None) == [1]


def test_an_update_that_cannot_run_fails_the_step_clearly():
    x, y = regression()
    m = linear_model()
    m.compile("sgd", "mse")
    m.get_layer("out").add_update(0)
    before = [w.numpy() for w in m.weights]
    with pytest.raises(TypeError, match="cannot run in a training step"):
        m.train_on_batch(x, y)
    for w, v in zip(m.weights, before):  # refused before the step moved anything
        np.testing.assert_array_equal(w.value, v)
