"""The custom-layer contract (fastlayers/engine/layer.py docstring), through seed 004's
AutoScaleDropout (examples/autoscale_dropout.py, a user's layer) and small layers
written here.

``build`` creates weights with ``add_weight``; ``forward(inputs, training)`` returns
``(outputs, backprop)``; ``backprop(dy)`` returns ``(dx, [one grad per weight])``.
"""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

import fastlayers as fl
from fastlayers.layers import Add, Dense, Layer

_EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "autoscale_dropout.py"
_spec = importlib.util.spec_from_file_location("autoscale_dropout_under_test", _EXAMPLE)
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)
AutoScaleDropout = _module.AutoScaleDropout


def xy(n=32, d=8, seed=0, dtype="float32"):
    rng = np.random.default_rng(seed)
    x = rng.random((n, d)).astype(dtype)
    return x, (3.0 * x).astype(dtype)


# --------------------------------------------------------------------------- AutoScaleDropout
def test_autoscale_dropout_has_one_trainable_weight_and_learns_it():
    layer = AutoScaleDropout(0.5)
    inp = fl.Input((8,))
    model = fl.Model(inp, layer(inp))
    assert len(layer.trainable_weights) == 1 and layer.weights[0].name == "scale"
    assert layer.scale.shape == () and layer.count_params() == 1
    assert [w.path for w in model.trainable_weights] == [f"{layer.name}/scale"]
    assert layer.get_weights()[0].shape == () and layer.get_weights()[0] == 1.0
    model.compile(fl.optimizers.SGD(0.1), "mse")
    x, y = xy(n=256)
    model.fit(x, y, epochs=10, verbose=0)
    # min E[(s x m/(1-p) - 3x)^2] is at s = 3 (1 - p) = 1.5
    assert abs(float(layer.get_weights()[0]) - 1.5) < 0.1


def test_autoscale_dropout_inference_is_scale_times_identity():
    layer = AutoScaleDropout(0.5)
    x = np.random.default_rng(0).random((4, 8)).astype("float32")
    np.testing.assert_array_equal(layer(x), x)
    layer.set_weights([np.array(2.5)])
    np.testing.assert_allclose(layer(x, training=False), 2.5 * x, rtol=1e-6)
    y = layer(x, training=True)
    kept = y != 0
    assert 0 < kept.mean() < 1
    np.testing.assert_allclose(y[kept], 5.0 * x[kept], rtol=1e-6)


def test_frozen_autoscale_dropout_keeps_its_scale_and_still_drops():
    layer = AutoScaleDropout(0.5)
    layer.trainable = False
    inp = fl.Input((8,))
    probe = Recorder()
    model = fl.Model(inp, Dense(8)(probe(layer(inp, training=True))))
    assert layer.trainable_weights == [] and len(layer.non_trainable_weights) == 1
    assert len(model.trainable_weights) == 2
    model.compile(fl.optimizers.SGD(0.1), "mse")
    x, y = xy()
    model.fit(x, y, batch_size=32, epochs=3, verbose=0)
    assert layer.get_weights()[0].shape == () and layer.get_weights()[0] == 1.0
    assert [t for t, _ in probe.seen] == [True] * 3
    assert all(0.3 < z < 0.7 for _, z in probe.seen)
    probe.seen.clear()
    model.predict(x, batch_size=32, verbose=0)  # pinned training=True: drops in predict too
    assert probe.seen[0][0] is False and 0.3 < probe.seen[0][1] < 0.7
    y_eager = layer(np.ones((4, 50), "float32"), training=True)
    assert 0.3 < (y_eager == 0).mean() < 0.7


def test_autoscale_dropout_masks_follow_the_seed():
    x = np.ones((3, 40), "float32")
    a, b, c = AutoScaleDropout(0.5, seed=7), AutoScaleDropout(0.5, seed=7), AutoScaleDropout(0.5, seed=8)
    ya = [a(x, training=True) for _ in range(3)]
    yb = [b(x, training=True) for _ in range(3)]
    np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(ya[0], ya[1])
    assert not np.array_equal(ya[0], c(x, training=True))
    fl.utils.set_random_seed(3)
    d1 = AutoScaleDropout(0.5)(x, training=True)
    fl.utils.set_random_seed(3)
    np.testing.assert_array_equal(d1, AutoScaleDropout(0.5)(x, training=True))


@pytest.mark.parametrize("training", [True, False])
def test_autoscale_dropout_gradient_check(float64, training):
    layer = AutoScaleDropout(0.4, seed=11)
    x = np.random.default_rng(1).normal(size=(5, 6))
    layer.build((None, 6))
    layer.built = True
    layer.set_weights([np.array(1.7)])
    counter = layer._counter
    result = fl.utils.check_layer_gradients(layer, x, training=training)
    assert result.ok and set(result.weight_errors) == {"scale"}
    assert result.max_error < 1e-7
    assert layer._counter == counter  # the checker rewinds the mask counter


def test_gradient_checker_catches_a_wrong_backward(float64):
    class Wrong(AutoScaleDropout):
        def forward(self, inputs, training=False):
            y, bp = super().forward(inputs, training)

            def backprop(dy):
                dx, (ds,) = bp(dy)
                return dx, [2.0 * ds]  # wrong scale gradient

            return y, backprop

    layer = Wrong(0.5, seed=1)
    x = np.random.default_rng(0).normal(size=(4, 3))
    res = fl.utils.check_layer_gradients(layer, x, training=True, raise_on_failure=False)
    assert not res.ok and res.weight_errors["scale"] > 0.1 and res.input_errors[0] < 1e-7
    with pytest.raises(AssertionError, match="gradient check failed"):
        fl.utils.check_layer_gradients(layer, x, training=True)


def test_gradient_checker_wants_float64():
    with pytest.raises(TypeError, match="float64"):
        fl.utils.check_layer_gradients(AutoScaleDropout(0.5), np.ones((2, 3)))


def _masks(layer, shape, first_counter, n):
    return [layer.mask_for(shape, first_counter + i) / (1 - layer.rate) for i in range(n)]


def test_shared_autoscale_dropout_sums_gradients_of_both_uses_in_series(float64):
    """out = s * (s * x * m1) * m2: dL/ds sums both uses (R8) and the scale is updated once."""
    layer = AutoScaleDropout(0.5, seed=5)
    inp = fl.Input((6,))
    model = fl.Model(inp, layer(layer(inp)))
    assert len(model.trainable_weights) == 1
    model.compile(fl.optimizers.SGD(0.1), "mse")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(4, 6)), rng.normal(size=(4, 6))
    layer.set_weights([np.array(1.3)])
    s = 1.3
    m1, m2 = _masks(layer, x.shape, layer._counter, 2)
    h = s * x * m1
    out = s * h * m2
    g = 2 * (out - y) / out.size
    d_second = np.sum(g * h * m2)               # the outer use: dy * (its input * mask)
    d_first = np.sum((g * s * m2) * x * m1)     # the inner use, through the outer one
    model.train_on_batch(x, y)
    np.testing.assert_allclose(layer.get_weights()[0], s - 0.1 * (d_first + d_second),
                               rtol=1e-12)
    assert layer._counter == 2


def test_shared_autoscale_dropout_sums_gradients_of_parallel_uses(float64):
    layer = AutoScaleDropout(0.25, seed=9)
    inp = fl.Input((5,))
    pre = Dense(5, use_bias=False, name="pre")
    h = pre(inp)
    model = fl.Model(inp, Add()([layer(h), layer(h)]))
    model.compile(fl.optimizers.SGD(0.05), "mse")
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(3, 5)), rng.normal(size=(3, 5))
    W = pre.kernel.numpy()
    s = 1.0
    m1, m2 = _masks(layer, (3, 5), layer._counter, 2)
    h_ = x @ W
    out = s * h_ * m1 + s * h_ * m2
    g = 2 * (out - y) / out.size
    ds = np.sum(g * h_ * m1) + np.sum(g * h_ * m2)
    dW = x.T @ (g * s * m1 + g * s * m2)
    model.train_on_batch(x, y)
    np.testing.assert_allclose(layer.get_weights()[0], s - 0.05 * ds, rtol=1e-12)
    np.testing.assert_allclose(pre.kernel.numpy(), W - 0.05 * dW, rtol=1e-12)


def test_autoscale_dropout_in_a_frozen_container_is_not_updated():
    layer = AutoScaleDropout(0.5)
    inner_in = fl.Input((8,))
    body = fl.Container(inner_in, layer(inner_in), name="body")
    body.trainable = False
    inp = fl.Input((8,))
    model = fl.Model(inp, Dense(8)(body(inp)))
    assert layer.trainable and len(model.trainable_weights) == 2
    model.compile("sgd", "mse")
    model.fit(*xy(), verbose=0)
    assert layer.get_weights()[0].shape == () and layer.get_weights()[0] == 1.0
    rows = {r["path"]: r for r in model.explain_trainable()}
    r = rows[f"{model.name}/body/{layer.name}/scale"]
    assert r["updated_by_fit"] is False and r["reason"] == "Container 'body' has trainable=False"


# --------------------------------------------------------------------------- the contract
class Recorder(Layer):
    """Identity recording (training, fraction of zeros) per run; counts backprops."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.seen = []
        self.backprops = 0

    def compute_output_shape(self, input_shape):
        return input_shape

    def forward(self, x, training=False):
        self.seen.append((training, float(np.mean(x == 0))))

        def backprop(dy):
            self.backprops += 1
            return dy

        return x, backprop


class Scale(Layer):
    """y = x * w (per feature); no compute_output_shape: the engine does a dry run."""

    def __init__(self, grads="ok", **kw):
        super().__init__(**kw)
        self.mode = grads
        self.backprops = 0

    def build(self, input_shape):
        self.w = self.add_weight("w", (input_shape[-1],), "ones")
        self.b = self.add_weight("b", (input_shape[-1],), "zeros")

    def forward(self, x, training=False):
        w, b = self.w.value, self.b.value

        def backprop(dy):
            self.backprops += 1
            dw, db = np.sum(dy * x, axis=0), np.sum(dy, axis=0)
            return {
                "ok": lambda: (dy * w, [dw, db]),
                "none_for_b": lambda: (dy * w, [dw, None]),
                "one": lambda: (dy * w, [dw]),
                "three": lambda: (dy * w, [dw, db, db]),
                "shape": lambda: (dy * w, [dw[:1], db]),
                "empty": lambda: (dy * w, []),
                "bare": lambda: dy * w,
            }[self.mode]()

        return x * w + b, backprop


def scale_model(layer, d=3):
    inp = fl.Input((d,))
    return fl.Model(inp, layer(inp))


def test_custom_layer_trains_and_output_shape_comes_from_a_dry_run(float64):
    layer = Scale()
    inp = fl.Input((3,))
    out = layer(inp)
    assert out.shape == (None, 3) and layer.output_shape == (None, 3)
    assert [w.name for w in layer.weights] == ["w", "b"] and layer.count_params() == 6
    model = fl.Model(inp, out)
    model.compile(fl.optimizers.SGD(0.5), "mse")
    x = np.random.default_rng(0).random((8, 3))
    y = 2 * x + 1
    model.fit(x, y, epochs=200, batch_size=8, verbose=0)
    np.testing.assert_allclose(layer.w.numpy(), 2.0, atol=0.05)
    np.testing.assert_allclose(layer.b.numpy(), 1.0, atol=0.05)
    fl.utils.check_layer_gradients(layer, x)


def test_none_gradient_leaves_that_weight_alone():
    layer = Scale(grads="none_for_b")
    model = scale_model(layer)
    model.compile("sgd", "mse")
    b0, w0 = layer.b.numpy(), layer.w.numpy()
    model.fit(*xy(d=3), verbose=0)
    np.testing.assert_array_equal(layer.b.numpy(), b0)
    assert not np.array_equal(layer.w.numpy(), w0)


@pytest.mark.parametrize("mode,match", [
    ("one", "backprop returned 1 weight gradients, the layer has 2 weights"),
    ("three", "backprop returned 3 weight gradients, the layer has 2 weights"),
    ("shape", "gradient for 'w' has shape \\(1,\\), expected \\(3,\\)"),
])
def test_wrong_weight_gradients_are_reported(mode, match):
    layer = Scale(grads=mode, name="scale_layer")
    model = scale_model(layer)
    model.compile("sgd", "mse")
    with pytest.raises(ValueError, match="Layer 'scale_layer': " + match):
        model.train_on_batch(*xy(d=3))


@pytest.mark.parametrize("mode", ["empty", "bare"])
def test_missing_weight_gradients_are_reported(mode):
    layer = Scale(grads=mode, name="scale_layer")
    model = scale_model(layer)
    model.compile("sgd", "mse")
    with pytest.raises(ValueError, match="scale_layer"):
        model.train_on_batch(*xy(d=3))


def test_missing_weight_gradients_are_fine_when_the_layer_is_frozen():
    layer = Scale(grads="bare")
    layer.trainable = False
    inp = fl.Input((3,))
    model = fl.Model(inp, Dense(1)(layer(Dense(3)(inp))))
    model.compile("sgd", "mse")
    model.train_on_batch(*xy(d=3)[:1], np.ones((32, 1)))
    assert layer.backprops == 1  # dx was needed for the Dense below


class CallOnly(Layer):
    def build(self, input_shape):
        self.w = self.add_weight("w", (input_shape[-1],), "ones")

    def call(self, inputs, training=None):
        return inputs * self.w.value


def test_call_only_layer_runs_in_inference_but_cannot_be_trained_through():
    layer = CallOnly(name="call_only")
    inp = fl.Input((3,))
    model = fl.Model(inp, Dense(1)(layer(inp)))
    x = np.ones((2, 3), "float32")
    assert model.predict(x, verbose=0).shape == (2, 1)
    np.testing.assert_array_equal(layer(x), x)
    model.compile("sgd", "mse")
    with pytest.raises(NotImplementedError,
                       match="Layer 'call_only' \\(CallOnly\\) defines call\\(\\) but no forward\\(\\)"):
        model.fit(x, np.ones((2, 1)), verbose=0)
    # Frozen at the bottom, nothing needs its gradient: it trains around it (R9).
    layer.trainable = False
    model.compile("sgd", "mse")
    model.fit(x, np.ones((2, 1)), verbose=0)
    # Frozen in the middle, the layer below needs dx through it: still an error.
    inp2 = fl.Input((3,))
    mid = CallOnly(name="call_only_mid")
    mid.trainable = False
    model2 = fl.Model(inp2, Dense(1)(mid(Dense(3)(inp2))))
    model2.compile("sgd", "mse")
    with pytest.raises(NotImplementedError, match="call_only_mid"):
        model2.train_on_batch(x, np.ones((2, 1)))


def test_layer_with_neither_call_nor_forward():
    class Nothing(Layer):
        def compute_output_shape(self, input_shape):
            return input_shape

    with pytest.raises(NotImplementedError, match="Layer 'nothing' \\(Nothing\\) defines no forward"):
        Nothing()(np.ones((2, 3)))


def test_backprop_is_not_called_when_nothing_needs_it():
    rec = Recorder()
    inp = fl.Input((3,))
    bottom = Dense(3)
    model = fl.Model(inp, Dense(1)(rec(bottom(inp))))
    model.compile("sgd", "mse")
    x, y = np.ones((4, 3)), np.ones((4, 1))
    model.train_on_batch(x, y)
    assert rec.backprops == 1
    bottom.trainable = False
    model.compile("sgd", "mse")
    model.train_on_batch(x, y)
    assert rec.backprops == 1  # nothing below the recorder trains (R9)
    model.predict(x, verbose=0)
    assert rec.backprops == 1 and [t for t, _ in rec.seen] == [True, True, False]


def test_add_weight_after_build_is_an_error():
    layer = Scale()
    layer(np.ones((2, 3), "float32"))
    with pytest.raises(RuntimeError, match="already built"):
        layer.add_weight("late", (1,))


def test_custom_layer_with_two_inputs_and_a_weight(float64):
    class Mix(Layer):
        def build(self, input_shape):
            self.a = self.add_weight("a", (1,), "ones")

        def compute_output_shape(self, input_shape):
            return input_shape[0]

        def forward(self, inputs, training=False):
            x1, x2 = inputs
            a = self.a.value

            def backprop(dy):
                return [dy * a, dy * (1 - a)], [np.array([np.sum(dy * (x1 - x2))])]

            return a * x1 + (1 - a) * x2, backprop

    layer = Mix()
    rng = np.random.default_rng(0)
    x1, x2 = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    layer([x1, x2])
    layer.set_weights([np.array([0.3])])
    fl.utils.check_layer_gradients(layer, [x1, x2])
    i1, i2 = fl.Input((4,)), fl.Input((4,))
    model = fl.Model([i1, i2], layer([Dense(4)(i1), i2]))
    model.compile("sgd", "mse")
    h = model.fit([x1, x2], x1, epochs=2, verbose=0)
    assert len(h.history["loss"]) == 2 and layer.a.numpy()[0] != 0.3


def test_scalar_weight_keeps_shape_and_trains():
    class ScalarScale(Layer):
        def build(self, input_shape):
            self.s = self.add_weight("s", (), "ones")

        def compute_output_shape(self, input_shape):
            return input_shape

        def forward(self, x, training=False):
            s = self.s.value
            return s * x, lambda dy: (s * dy, [np.sum(dy * x)])

    layer = ScalarScale()
    model = scale_model(layer)
    assert layer.s.shape == () and layer.get_weights()[0].shape == ()
    model.compile("sgd", "mse")
    model.train_on_batch(*xy(d=3))
    assert layer.s.numpy() != 1.0
