"""One test per class of issue 10's "Found" list not covered elsewhere.

Threads and thread counts: tests/engine/test_threads_models.py, tests/test_threads.py;
fork: tests/test_threads.py; deepcopy/pickle: tests/saving/test_roundtrip.py.
The contract: a clear ValueError/TypeError naming the argument, and weights, optimizer
state, moving statistics and dropout counters exactly as before (or exactly one whole
step later for an interrupt).
"""
import gc
import re
import tracemalloc

import numpy as np
import pytest

import fastlayers as fl
from fastlayers.callbacks import Callback, TerminateOnNaN
from fastlayers.layers import BatchNormalization, Concatenate, Dense, Dropout, Layer


# --------------------------------------------------------------------------- helpers
def all_layers(layer):
    for sub in getattr(layer, "layers", []):
        yield sub
        yield from all_layers(sub)


def snapshot(model):
    weights = [np.array(w, copy=True) for w in model.get_weights()]
    opt = [a.copy() for a in model.optimizer.get_state(model.trainable_weights)]
    counters = [int(l._counter[0]) for l in all_layers(model) if hasattr(l, "_counter")]
    return weights, opt, counters


def assert_same(a, b):
    for x, y in zip(a[0], b[0]):
        assert x.tobytes() == y.tobytes(), "weights changed"
    assert len(a[1]) == len(b[1])
    for x, y in zip(a[1], b[1]):
        assert x.tobytes() == y.tobytes(), "optimizer state changed"
    assert a[2] == b[2], "dropout counters changed"


def bn_dropout_model(seed=0, middle=None, k=3):
    """Dense -> BatchNormalization -> Dropout -> [middle] -> Dense(k), Adam."""
    fl.utils.set_random_seed(seed)
    inp = fl.Input((4,))
    h = Dense(6, activation="relu")(inp)
    h = BatchNormalization()(h)
    h = Dropout(0.3)(h)
    if middle is not None:
        h = middle(h)
    m = fl.Model(inp, Dense(k, activation="softmax")(h))
    m.compile(fl.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    return m


def data(n=16, k=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 4)).astype("float32"), rng.integers(0, k, n)


# --------------------------------------------------------------------------- 4. state after a failure
@pytest.mark.parametrize("entry", ["train_on_batch", "fit", "evaluate", "test_on_batch"])
def test_out_of_range_labels_leave_state_untouched(entry):
    m = bn_dropout_model()
    x, y = data()
    m.train_on_batch(x, y)          # optimizer slots and moving statistics exist
    before = snapshot(m)
    bad = y.copy()
    bad[5] = 7
    with pytest.raises(ValueError, match=r"(?i)label|class|range"):
        if entry == "fit":
            m.fit(x, bad, batch_size=4, verbose=0)
        else:
            getattr(m, entry)(x, bad, **({"verbose": 0} if entry == "evaluate" else {}))
    assert_same(before, snapshot(m))


class Boom(Layer):
    """Identity that raises in forward or in backprop on its ``when``-th call."""

    def __init__(self, where, exc=RuntimeError, when=1, **kw):
        super().__init__(**kw)
        self.where, self.exc, self.when, self.calls = where, exc, when, 0

    def forward(self, x, training=False):
        if training:
            self.calls += 1
        hit = training and self.calls == self.when
        if hit and self.where == "forward":
            raise self.exc("boom in forward")

        def backprop(dy):
            if hit and self.where == "backward":
                raise self.exc("boom in backward")
            return dy, []
        return x, backprop


@pytest.mark.parametrize("where", ["forward", "backward"])
def test_custom_layer_raising_mid_graph_leaves_state_untouched(where):
    boom = Boom(where, when=2)
    m = bn_dropout_model(middle=boom)
    x, y = data()
    m.train_on_batch(x, y)
    before = snapshot(m)
    with pytest.raises(RuntimeError, match="boom"):
        m.train_on_batch(x, y)
    assert_same(before, snapshot(m))


def steps_reference(x, y, steps, bs):
    """The same model after exactly ``steps`` whole steps."""
    ref = bn_dropout_model()
    if steps:
        ref.fit(x[:steps * bs], y[:steps * bs], batch_size=bs, shuffle=False, verbose=0)
    return ref


class InterruptAt(Callback):
    def __init__(self, hook, batch):
        super().__init__()
        self.hook, self.batch = hook, batch

    def on_train_batch_begin(self, batch, logs=None):
        if self.hook == "begin" and batch == self.batch:
            raise KeyboardInterrupt

    def on_train_batch_end(self, batch, logs=None):
        if self.hook == "end" and batch == self.batch:
            raise KeyboardInterrupt


@pytest.mark.parametrize("hook,done", [("begin", 2), ("end", 3)])
def test_keyboard_interrupt_in_a_callback_leaves_whole_steps(hook, done):
    x, y = data(n=24)
    m = bn_dropout_model()
    with pytest.raises(KeyboardInterrupt):
        m.fit(x, y, batch_size=4, shuffle=False, verbose=0, callbacks=[InterruptAt(hook, 2)])
    ref = steps_reference(x, y, done, 4)
    assert m.optimizer.iterations == done
    assert_same(snapshot(ref), snapshot(m))


class InterruptValidation(Callback):
    def on_test_batch_end(self, batch, logs=None):
        raise KeyboardInterrupt


class InterruptInInference(Layer):
    """Identity that raises KeyboardInterrupt when armed and run in inference mode."""
    armed = False

    def forward(self, x, training=False):
        if self.armed and not training:
            raise KeyboardInterrupt
        return x, (lambda dy: (dy, []))


def test_fit_validation_calls_the_test_hooks():
    x, y = data(n=24)
    m = bn_dropout_model()
    with pytest.raises(KeyboardInterrupt):
        m.fit(x, y, batch_size=4, shuffle=False, verbose=0, validation_data=(x, y),
              callbacks=[InterruptValidation()])


def test_keyboard_interrupt_in_validation_keeps_the_epoch_and_training_resumes():
    x, y = data(n=24)
    stop = InterruptInInference()
    m = bn_dropout_model(middle=stop)
    stop.armed = True
    with pytest.raises(KeyboardInterrupt):
        m.fit(x, y, batch_size=4, shuffle=False, verbose=0, validation_data=(x, y))
    stop.armed = False
    ref = steps_reference(x, y, 6, 4)
    assert m.optimizer.iterations == 6
    assert_same(snapshot(ref), snapshot(m))
    m.fit(x, y, batch_size=4, shuffle=False, verbose=0)
    ref.fit(x, y, batch_size=4, shuffle=False, verbose=0)
    assert_same(snapshot(ref), snapshot(m))


@pytest.mark.parametrize("where", ["forward", "backward"])
def test_keyboard_interrupt_inside_a_step_leaves_the_step_undone(where):
    x, y = data(n=24)
    m = bn_dropout_model(middle=Boom(where, exc=KeyboardInterrupt, when=3))
    with pytest.raises(KeyboardInterrupt):
        m.fit(x, y, batch_size=4, shuffle=False, verbose=0)
    ref = steps_reference(x, y, 2, 4)
    assert m.optimizer.iterations == 2
    assert_same(snapshot(ref), snapshot(m))


def test_set_weights_is_all_or_nothing():
    m = bn_dropout_model()
    before = [w.copy() for w in m.get_weights()]
    new = [w + 1 for w in before]
    new[-1] = np.zeros(new[-1].shape + (2,))
    with pytest.raises(ValueError):
        m.set_weights(new)
    for a, b in zip(before, m.get_weights()):
        assert a.tobytes() == b.tobytes()
    layer = m.layers[1]
    lw = layer.get_weights()
    with pytest.raises(ValueError):
        layer.set_weights([lw[0] + 1, np.zeros(99)])
    assert layer.get_weights()[0].tobytes() == lw[0].tobytes()


@pytest.mark.parametrize("bad", ["complex", "object", "string"])
def test_set_weights_refuses_non_real_arrays_all_or_nothing(bad):
    m = bn_dropout_model()
    before = [w.copy() for w in m.get_weights()]
    new = [w + 1 for w in before]
    last = new[-1]
    new[-1] = {"complex": last + 1j, "object": last.astype(object),
               "string": last.astype(str)}[bad]
    with pytest.raises(TypeError, match="set_weights"):
        m.set_weights(new)
    for a, b in zip(before, m.get_weights()):
        assert a.tobytes() == b.tobytes()
    with pytest.raises(TypeError, match="real"):
        m.weights[0].assign(before[0] + 1j)
    assert m.get_weights()[0].tobytes() == before[0].tobytes()


# --------------------------------------------------------------------------- 5. values never checked
@pytest.mark.parametrize("entry,which", [(e, w) for e in ["fit", "train_on_batch", "evaluate"]
                                          for w in ["x", "y"]] + [("predict", "x")])
def test_complex_arrays_are_refused(entry, which):
    fl.utils.set_random_seed(0)
    inp = fl.Input((4,))
    m = fl.Model(inp, Dense(2)(inp))
    m.compile(fl.optimizers.SGD(0.1), "mse")
    x, y = np.ones((5, 4)), np.ones((5, 2))
    if which == "x":
        x = x + 1j
    else:
        y = y + 1j
    before = snapshot(m)
    with pytest.raises(TypeError, match="(?i)complex"):
        if entry == "predict":
            m.predict(x, verbose=0)
        elif entry == "train_on_batch":
            m.train_on_batch(x, y)
        else:
            getattr(m, entry)(x, y, verbose=0)
    assert_same(before, snapshot(m))


@pytest.mark.parametrize("axis", [2, 3, -3])
def test_concatenate_axis_out_of_range_is_refused(axis):
    a, b = fl.Input((3,)), fl.Input((4,))
    with pytest.raises(ValueError, match="axis"):
        Concatenate(axis=axis)([a, b])


def test_input_shape_mismatch_is_refused_on_every_entry():
    fl.utils.set_random_seed(0)
    inp = fl.Input((4, 5))
    m = fl.Model(inp, Dense(2)(fl.layers.Flatten()(inp)))
    m.compile(fl.optimizers.SGD(0.1), "mse")
    before = snapshot(m)
    x, y = np.ones((6, 20), "float32"), np.ones((6, 2), "float32")
    for call in (lambda: m.train_on_batch(x, y), lambda: m.predict(x, verbose=0),
                 lambda: m.fit(x, y, verbose=0), lambda: m.test_on_batch(x, y)):
        with pytest.raises(ValueError):
            call()
    assert_same(before, snapshot(m))


def test_zero_sized_input_is_refused_clearly(run_snippet):
    run_snippet("""
        import numpy as np, fastlayers as fl
        try:
            inp = fl.Input((0,))
            m = fl.Model(inp, fl.layers.Dense(2)(inp))
            m.compile("sgd", "mse")
            m.train_on_batch(np.zeros((3, 0), "float32"), np.zeros((3, 2), "float32"))
        except ValueError as e:
            assert "0" in str(e), e
        else:
            raise SystemExit("Input((0,)) trained")
    """, timeout=60)


def test_sample_weights_in_validation_data_are_honoured():
    fl.utils.set_random_seed(0)
    inp = fl.Input((4,))
    m = fl.Model(inp, Dense(1)(inp))
    m.compile(fl.optimizers.SGD(0.0), "mse")
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((8, 4)), rng.standard_normal((8, 1))
    sw = np.array([1, 0, 0, 0, 2, 0, 0, 3], "float64")
    h = m.fit(x, y, validation_data=(x, y, sw), epochs=1, verbose=0)
    want = m.evaluate(x, y, sample_weight=sw, verbose=0)
    plain = m.evaluate(x, y, verbose=0)
    assert abs(want - plain) > 1e-3
    np.testing.assert_allclose(h.history["val_loss"][0], want, rtol=1e-5)


# --------------------------------------------------------------------------- 6. memory
def test_buffer_cache_stays_bounded_over_many_batch_sizes():
    from fastlayers.engine.executor import BUFFER_CACHE_SIZES, Runner
    fl.utils.set_random_seed(0)
    inp = fl.Input((32,))
    m = fl.Model(inp, Dense(1)(Dense(256, activation="relu")(inp)))
    m.compile(fl.optimizers.SGD(0.01), "mse")
    rng = np.random.default_rng(0)
    big_x, big_y = rng.standard_normal((400, 32)).astype("float32"), np.ones((400, 1), "float32")

    def sweep(sizes):
        for n in sizes:
            m.train_on_batch(big_x[:n], big_y[:n])
            m.predict(big_x[:n], batch_size=n, verbose=0)

    sweep(range(300, 310))
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    sweep(range(200, 300))
    grown = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    # Unbounded, 100 sizes x (256 + 33 floats) x ~250 rows x values+grads would be ~50 MB.
    assert grown < 8e6, f"{grown / 1e6:.1f} MB kept after 100 batch sizes"
    runners = [o for o in gc.get_objects() if isinstance(o, Runner)]
    assert runners
    assert all(len(r._bindings) <= BUFFER_CACHE_SIZES for r in runners)


# --------------------------------------------------------------------------- 7. unclear errors
BAD_FIT_ARGS = [
    ("batch_size", float("nan")), ("batch_size", float("inf")), ("batch_size", 2.5),
    ("epochs", float("nan")), ("epochs", float("inf")), ("epochs", None),
    ("verbose", None), ("initial_epoch", 1.5), ("validation_split", "0.2"),
    ("callbacks", [1]), ("steps_per_epoch", float("nan")), ("steps_per_epoch", 0),
    ("validation_steps", float("nan")), ("class_weight", {0: 1.0, 1: "a"}),
    ("class_weight", {0: None}),
]


@pytest.mark.parametrize("arg,value", BAD_FIT_ARGS, ids=[f"{a}={v!r}" for a, v in BAD_FIT_ARGS])
def test_bad_fit_arguments_are_named(arg, value):
    m = bn_dropout_model()
    x, y = data()
    before = snapshot(m)
    with pytest.raises((ValueError, TypeError), match=re.escape(arg)):
        m.fit(x, y, verbose=0, **{arg: value})
    assert_same(before, snapshot(m))


@pytest.mark.parametrize("entry", ["evaluate", "predict"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), 0, -1])
def test_bad_batch_size_elsewhere_is_named(entry, value):
    m = bn_dropout_model()
    x, y = data()
    args = (x,) if entry == "predict" else (x, y)
    with pytest.raises((ValueError, TypeError), match="batch_size"):
        getattr(m, entry)(*args, batch_size=value, verbose=0)


def test_target_dict_with_a_wrong_key_names_the_key_and_the_outputs():
    fl.utils.set_random_seed(0)
    inp = fl.Input((4,))
    m = fl.Model(inp, [Dense(1, name="left")(inp), Dense(1, name="right")(inp)])
    m.compile(fl.optimizers.SGD(0.1), "mse")
    x, y = np.ones((4, 4)), np.ones((4, 1))
    before = snapshot(m)
    with pytest.raises(ValueError, match="lefty") as e:
        m.fit(x, {"lefty": y, "right": y}, verbose=0)
    assert "left" in str(e.value).replace("lefty", "")
    assert_same(before, snapshot(m))


def test_float32_layer_reused_under_float64_input_names_the_layer():
    shared = Dense(2, name="shared_dense", dtype="float32")
    shared(fl.Input((3,), dtype="float32"))
    b = fl.Input((3,), dtype="float64")
    m = fl.Model(b, shared(b))
    with pytest.raises(TypeError, match="shared_dense"):
        m.compile(fl.optimizers.SGD(0.1), "mse")
        m.fit(np.ones((4, 3)), np.ones((4, 2)), verbose=0)


# --------------------------------------------------------------------------- 8. NaN
def test_nan_data_stops_with_terminate_on_nan_and_the_bar_shows_nan(capsys):
    m = bn_dropout_model()
    x, y = data(n=32)
    x[8:] = np.nan
    m.compile(fl.optimizers.SGD(0.1), "mse")
    yy = np.ones((32, 3), "float32")
    h = m.fit(x, yy, batch_size=8, epochs=3, shuffle=False, verbose=1,
              callbacks=[TerminateOnNaN()])
    out = capsys.readouterr().out
    assert len(h.history["loss"]) == 1
    assert re.search(r"(?i)nan", out), out
