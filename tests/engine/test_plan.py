"""The fused training step (engine/plan.py + csrc/plan.pyx) equals the layer-by-layer path."""
import numpy as np
import pytest

import fastlayers as fl
from fastlayers.layers import Activation, BatchNormalization, Dense, Dropout, Flatten

LOSSES = {
    "mse": ("mse", "linear", 3),
    "mae": ("mae", "linear", 3),
    "bce_probs": (fl.losses.BinaryCrossentropy(), "sigmoid", 3),
    "bce_logits": (fl.losses.BinaryCrossentropy(from_logits=True), "linear", 3),
    "ce_probs": (fl.losses.CategoricalCrossentropy(), "softmax", 4),
    "ce_logits": (fl.losses.CategoricalCrossentropy(from_logits=True), "linear", 4),
    "sparse_probs": (fl.losses.SparseCategoricalCrossentropy(), "softmax", 4),
    "sparse_logits": (fl.losses.SparseCategoricalCrossentropy(from_logits=True), "linear", 4),
}
OPTIMIZERS = {
    "sgd": lambda: fl.optimizers.SGD(0.05),
    "momentum": lambda: fl.optimizers.SGD(0.05, momentum=0.9),
    "nesterov": lambda: fl.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
    "adam": lambda: fl.optimizers.Adam(0.01),
}


def _data(loss_key, k, n=12, d=6, dtype="float32"):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(n, d)).astype(dtype)
    if loss_key.startswith("sparse"):
        y = rng.integers(0, k, n)
    elif loss_key.startswith("ce"):
        y = np.eye(k, dtype=dtype)[rng.integers(0, k, n)]
    elif loss_key.startswith("bce"):
        y = (rng.random((n, k)) > 0.5).astype(dtype)
    else:
        y = rng.normal(size=(n, k)).astype(dtype)
    return x, y


def _model(act, k, freeze_first=False, dropout=0.3, seed=7):
    fl.backend.clear_session()
    fl.utils.set_random_seed(seed)
    layers = [Dense(8, activation="tanh", input_shape=(6,)), Dropout(dropout, seed=1),
              Dense(8, activation="relu"), Activation("sigmoid"), Flatten(),
              Dense(k, activation=act)]
    m = fl.Sequential(layers)
    if freeze_first:
        m.layers[0].trainable = False
    return m


def _train(monkeypatch, plan: bool, loss_key, opt_key, dtype="float32", freeze_first=False, steps=4):
    monkeypatch.setenv("FASTLAYERS_NO_PLAN", "0" if plan else "1")
    fl.backend.set_floatx(dtype)
    loss, act, k = LOSSES[loss_key]
    m = _model(act, k, freeze_first)
    m.compile(OPTIMIZERS[opt_key](), loss)
    assert (m._compiled.plan is not None) == plan
    x, y = _data(loss_key, k, dtype=dtype)
    losses = [m.train_on_batch(x, y) for _ in range(steps)]
    hist = m.fit(x, y, batch_size=5, epochs=2, shuffle=False, verbose=0).history["loss"]
    return losses + hist, m.get_weights(), m.predict(x, verbose=0)


@pytest.mark.parametrize("opt_key", list(OPTIMIZERS))
@pytest.mark.parametrize("loss_key", list(LOSSES))
def test_fused_step_matches_layer_path_float32(monkeypatch, loss_key, opt_key):
    la, wa, pa = _train(monkeypatch, True, loss_key, opt_key)
    lb, wb, pb = _train(monkeypatch, False, loss_key, opt_key)
    np.testing.assert_allclose(la, lb, rtol=2e-5, atol=1e-6)
    for a, b in zip(wa, wb):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(pa, pb, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("opt_key", ["sgd", "adam"])
@pytest.mark.parametrize("loss_key", ["mse", "sparse_logits", "ce_probs"])
def test_fused_step_matches_layer_path_float64_frozen(monkeypatch, loss_key, opt_key):
    la, wa, _ = _train(monkeypatch, True, loss_key, opt_key, "float64", freeze_first=True)
    lb, wb, _ = _train(monkeypatch, False, loss_key, opt_key, "float64", freeze_first=True)
    np.testing.assert_allclose(la, lb, rtol=1e-12)
    for a, b in zip(wa, wb):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_pinned_dropout_in_the_fused_step():
    inp = fl.Input((40,))
    h = Dropout(0.5, seed=3)(inp, training=True)
    out = Dense(2)(Dropout(0.5, seed=4)(h, training=False))
    m = fl.Model(inp, out)
    m.compile("sgd", "mse")
    assert m._compiled.plan is not None
    x = np.ones((3, 40), "float32")
    a, b = m.predict(x, verbose=0), m.predict(x, verbose=0)
    assert not np.array_equal(a, b)  # the pinned-True dropout drops at inference
    m.train_on_batch(x, np.zeros((3, 2), "float32"))


@pytest.mark.parametrize("build", ["shared", "bn_pinned", "custom", "two_outputs", "nested"])
def test_graphs_outside_the_fused_step_use_the_layer_path(build):
    inp = fl.Input((4,))
    if build == "shared":
        d = Dense(4)
        m = fl.Model(inp, Dense(1)(d(d(inp))))
    elif build == "bn_pinned":
        m = fl.Model(inp, Dense(1)(BatchNormalization()(inp, training=True)))
    elif build == "custom":
        class Twice(fl.layers.Layer):
            def forward(self, x, training=False):
                return 2 * x, lambda dy: 2 * dy
        m = fl.Model(inp, Dense(1)(Twice()(inp)))
    elif build == "two_outputs":
        m = fl.Model(inp, [Dense(1)(inp), Dense(1)(inp)])
    else:
        inner = fl.Sequential([Dense(3, input_shape=(4,))])
        m = fl.Model(inp, Dense(1)(inner(inp)))
    m.compile("sgd", "mse")
    assert m._compiled.plan is None
    y = [np.zeros((2, 1))] * 2 if build == "two_outputs" else np.zeros((2, 1))
    m.train_on_batch(np.ones((2, 4)), y)


def test_bad_labels_in_the_fused_step_raise():
    m = fl.Sequential([Dense(3, input_shape=(2,))])
    m.compile("sgd", fl.losses.SparseCategoricalCrossentropy(from_logits=True))
    w = m.get_weights()
    with pytest.raises(ValueError, match="labels"):
        m.train_on_batch(np.ones((2, 2), "float32"), np.array([0, 7]))
    with pytest.raises(ValueError, match="labels"):
        m._plan_step(m._compiled, np.ones((2, 2), "float32"), np.array([0, 7]))
    for a, b in zip(w, m.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_graph_change_after_compile_leaves_the_fused_step():
    m = fl.Sequential([Dense(3, input_shape=(2,))])
    m.compile("sgd", "mse")
    m.add(Dense(1))
    with pytest.warns(UserWarning):
        m.train_on_batch(np.ones((2, 2), "float32"), np.zeros((2, 1), "float32"))


def test_steady_state_steps_allocate_nothing():
    import tracemalloc

    m = fl.Sequential([Dense(32, activation="relu", input_shape=(16,)), Dropout(0.5),
                       Dense(4)])
    m.compile(fl.optimizers.Adam(), fl.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x = rng.random((8, 16)).astype("float32")
    y = rng.integers(0, 4, 8)
    for _ in range(5):
        m.train_on_batch(x, y)
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    for _ in range(500):
        m.train_on_batch(x, y)
    now, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert now - base < 1024      # nothing kept
    assert peak - base < 4096     # nothing but the returned float in flight


@pytest.mark.parametrize("loss_key", ["mse", "sparse_logits"])
def test_shuffled_fit_gathers_rows_like_the_layer_path(monkeypatch, loss_key):
    def run(plan):
        monkeypatch.setenv("FASTLAYERS_NO_PLAN", "0" if plan else "1")
        loss, act, k = LOSSES[loss_key]
        m = _model(act, k)
        m.compile(OPTIMIZERS["momentum"](), loss, metrics=["mae"] if loss_key == "mse" else
                  ["accuracy"])
        x, y = _data(loss_key, k, n=23)
        fl.utils.set_random_seed(5)
        h = m.fit(x, y, batch_size=4, epochs=3, shuffle=True, verbose=0)
        return h.history, m.get_weights()

    ha, wa = run(True)
    hb, wb = run(False)
    assert ha.keys() == hb.keys()
    for key in ha:
        np.testing.assert_allclose(ha[key], hb[key], rtol=2e-5, atol=1e-6)
    for a, b in zip(wa, wb):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)


def test_leading_flatten_takes_image_batches_in_the_fused_step(monkeypatch):
    def run(plan):
        monkeypatch.setenv("FASTLAYERS_NO_PLAN", "0" if plan else "1")
        fl.backend.clear_session()
        fl.utils.set_random_seed(2)
        m = fl.Sequential([Flatten(input_shape=(4, 5)), Dense(6, activation="relu"), Dense(3)])
        m.compile(OPTIMIZERS["adam"](), LOSSES["sparse_logits"][0])
        assert (m._compiled.plan is not None) == plan
        rng = np.random.default_rng(0)
        x, y = rng.random((10, 4, 5)).astype("float32"), rng.integers(0, 3, 10)
        losses = [m.train_on_batch(x, y) for _ in range(3)]
        fl.utils.set_random_seed(3)
        losses += m.fit(x, y, batch_size=4, epochs=2, verbose=0).history["loss"]
        return losses, m.get_weights(), m.predict(x, verbose=0)

    la, wa, pa = run(True)
    lb, wb, pb = run(False)
    np.testing.assert_allclose(la, lb, rtol=2e-5)
    for a, b in zip(wa + [pa], wb + [pb]):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)


def test_fused_step_rejects_a_transposed_image_batch():
    m = fl.Sequential([Flatten(input_shape=(4, 5)), Dense(3)])
    m.compile("sgd", "mse")
    with pytest.raises(ValueError, match="shape"):
        m.train_on_batch(np.ones((2, 5, 4), "float32"), np.zeros((2, 3), "float32"))


def test_plan_entry_points_refuse_wrong_shapes_instead_of_reading_out_of_bounds():
    m = fl.Sequential([Dense(3, input_shape=(4,)), Dense(2)])
    m.compile("sgd", "mse")
    plan, opt = m._compiled.plan, m._compiled.optimizer
    with pytest.raises(ValueError, match="shape"):
        plan.forward(np.ones((2, 5), "float32"))
    assert plan.try_step(np.ones((2, 5), "float32"), np.ones((2, 2), "float32"), opt) is None
    assert plan.try_step(np.ones((2, 4), "float32"), np.ones((3, 2), "float32"), opt) is None
    assert plan.try_step(np.ones((2, 4), "float64"), np.ones((2, 2), "float32"), opt) is None
    assert plan.try_step(np.ones((4, 2), "float32").T, np.ones((2, 2), "float32"), opt) is None
    order = np.array([0, 9], dtype=np.int64)
    with pytest.raises(ValueError, match="range"):
        plan.try_step_rows(np.ones((3, 4), "float32"), np.ones((3, 2), "float32"), order, 0, 2,
                           opt)
    assert opt.iterations == 0



@pytest.mark.parametrize("freeze", ["none", "bn", "bn_after_compile", "body"])
@pytest.mark.parametrize("opt_key", ["sgd", "momentum", "adam"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_batchnorm_in_the_fused_step_matches_the_layer_path(monkeypatch, freeze, opt_key, dtype):
    def run(plan):
        monkeypatch.setenv("FASTLAYERS_NO_PLAN", "0" if plan else "1")
        fl.backend.clear_session()
        fl.backend.set_floatx(dtype)
        fl.utils.set_random_seed(4)
        bn = BatchNormalization(momentum=0.9)
        m = fl.Sequential([Dense(7, activation="relu", input_shape=(5,)), bn,
                           BatchNormalization(center=False, scale=False), Dense(3)])
        if freeze == "bn":
            bn.trainable = False
        elif freeze == "body":
            m.layers[0].trainable = False
        m.compile(OPTIMIZERS[opt_key](), LOSSES["sparse_logits"][0])
        assert (m._compiled.plan is not None) == plan
        if freeze == "bn_after_compile":
            bn.trainable = False  # the compiled picture still trains it, in batch mode (R4)
        rng = np.random.default_rng(1)
        x, y = rng.normal(2, 3, (16, 5)).astype(dtype), rng.integers(0, 3, 16)
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            losses = [m.train_on_batch(x, y) for _ in range(3)]
            losses += m.fit(x, y, batch_size=6, epochs=2, verbose=0).history["loss"]
        return losses, m.get_weights(), m.predict(x, verbose=0)

    la, wa, pa = run(True)
    lb, wb, pb = run(False)
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == "float64" else dict(rtol=5e-5, atol=5e-6)
    np.testing.assert_allclose(la, lb, **tol)
    for a, b in zip(wa + [pa], wb + [pb]):
        np.testing.assert_allclose(a, b, **tol)


def test_optimizer_settings_changed_after_compile_apply_on_both_paths(monkeypatch):
    def run(plan):
        monkeypatch.setenv("FASTLAYERS_NO_PLAN", "0" if plan else "1")
        fl.backend.clear_session()
        fl.utils.set_random_seed(6)
        m = fl.Sequential([Dense(4, activation="tanh", input_shape=(3,)), Dense(2)])
        opt = fl.optimizers.SGD(0.1, momentum=0.5)
        m.compile(opt, "mse")
        rng = np.random.default_rng(0)
        x, y = rng.random((8, 3)).astype("float32"), rng.random((8, 2)).astype("float32")
        m.train_on_batch(x, y)
        opt.momentum, opt.nesterov, opt.learning_rate = 0.9, True, 0.05
        m.train_on_batch(x, y)
        m.fit(x, y, batch_size=3, epochs=1, verbose=0)
        return m.get_weights()

    for a, b in zip(run(True), run(False)):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)


def test_momentum_switched_on_after_compile_falls_back_to_the_layer_path():
    m = fl.Sequential([Dense(2, input_shape=(3,))])
    opt = fl.optimizers.SGD(0.1)
    m.compile(opt, "mse")
    x, y = np.ones((4, 3), "float32"), np.zeros((4, 2), "float32")
    m.train_on_batch(x, y)
    opt.momentum = 0.9
    w0 = m.get_weights()[0].copy()
    m.train_on_batch(x, y)
    m.fit(x, y, batch_size=2, epochs=1, verbose=0)
    assert not np.array_equal(w0, m.get_weights()[0])
    assert opt._slots  # the layer path made velocities
