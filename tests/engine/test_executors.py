"""The compiled executor against its NumPy twin (engine/reference.py) on the same programs.

Two identical models are built from one seed: one trains with ``train_on_batch`` /
``fit`` (the compiled ``Runner``), the other runs its own compiled program on the
``ReferenceRunner``.  After several steps their losses, weights, moving statistics,
optimizer slots and iteration counts, and dropout counters must agree: float32 to
1e-5, float64 to 1e-10.
"""
import contextlib
import warnings

import numpy as np
import pytest

import fastlayers as fl
from fastlayers.engine.program import OpKind, lower
from fastlayers.engine.reference import ReferenceRunner
from fastlayers.layers import (Activation, Add, BatchNormalization, Concatenate, Dense, Dropout,
                               Flatten)

LOSSES = {
    "mse": ("mse", "linear", 3),
    "mae": ("mae", "linear", 3),
    "bce_probs": (lambda: fl.losses.BinaryCrossentropy(), "sigmoid", 3),
    "bce_logits": (lambda: fl.losses.BinaryCrossentropy(from_logits=True), "linear", 3),
    "cce_probs": (lambda: fl.losses.CategoricalCrossentropy(), "softmax", 4),
    "cce_logits": (lambda: fl.losses.CategoricalCrossentropy(from_logits=True), "linear", 4),
    "sparse_probs": (lambda: fl.losses.SparseCategoricalCrossentropy(), "softmax", 4),
    "sparse_logits": (lambda: fl.losses.SparseCategoricalCrossentropy(from_logits=True),
                      "linear", 4),
}
OPTIMIZERS = {
    "sgd": lambda: fl.optimizers.SGD(0.05),
    "momentum": lambda: fl.optimizers.SGD(0.05, momentum=0.9),
    "nesterov": lambda: fl.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
    "adam": lambda: fl.optimizers.Adam(0.01),
}
DTYPES = ["float32", "float64"]


def _tol(dtype):
    return dict(rtol=1e-10, atol=1e-12) if dtype == "float64" else dict(rtol=1e-5, atol=1e-5)


def _loss(key):
    loss = LOSSES[key][0]
    return loss() if callable(loss) else loss


def _targets(key, k, n, rng, dtype):
    if key.startswith("sparse"):
        return rng.integers(0, k, n)
    if key.startswith("cce"):
        return np.eye(k, dtype=dtype)[rng.integers(0, k, n)]
    if key.startswith("bce"):
        return (rng.random((n, k)) > 0.5).astype(dtype)
    return rng.normal(size=(n, k)).astype(dtype)


def _pair(build, optimizer, loss, dtype, seed=7, after=None, **compile_kw):
    """Two identical compiled models (built, compiled and set up from one seed)."""
    out = []
    for _ in range(2):
        fl.backend.clear_session()
        fl.backend.set_floatx(dtype)
        fl.utils.set_random_seed(seed)
        m = build()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            m.compile(OPTIMIZERS[optimizer](), loss, **compile_kw)
        if after is not None:
            after(m)
        out.append(m)
    return out


def _standardize(m, x, y, sw=None):
    xs = m._standardize_x(x, "twin")
    n = len(xs[0])
    return xs, m._standardize_y(y, n, m._compiled, "twin"), m._standardize_sw(sw, n, "twin")


def _dropout_counters(m):
    return [int(op.counter[0]) for op in m.step_program.ops if op.kind == OpKind.DROPOUT]


def _assert_same_state(a, b, tol):
    for wa, wb in zip(a.weights, b.weights):
        assert wa.path == wb.path
        np.testing.assert_allclose(wa.numpy(), wb.numpy(), err_msg=wa.path, **tol)
    oa, ob = a.optimizer, b.optimizer
    assert oa.iterations == ob.iterations
    for wa, wb in zip(a.step_program.weights, b.step_program.weights):
        for sa, sb in zip(oa.slots_for(wa), ob.slots_for(wb)):
            np.testing.assert_allclose(sa, sb, err_msg=f"slot of {wa.path}", **tol)
    assert _dropout_counters(a) == _dropout_counters(b)


def _train_both(a, b, x, y, sw=None, steps=3, dtype="float32", tol=None):
    """``steps`` train_on_batch on ``a``, the twin on ``b``; compare everything."""
    tol = tol or _tol(dtype)
    twin = ReferenceRunner(b.step_program, b.optimizer)
    for _ in range(steps):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            ra = a.train_on_batch(x, y, sample_weight=sw)
        total, per_output, outs = twin.train_step(*_standardize(b, x, y, sw))
        ra = np.atleast_1d(ra)
        named = [v for v, l in zip(per_output, b._compiled.losses) if l is not None]
        rb = [total] + (named if len(b.outputs) > 1 else [])
        np.testing.assert_allclose(ra, rb, **tol)
    _assert_same_state(a, b, tol)
    # The state the twin wrote predicts like the compiled one (both on compiled programs),
    # and the twin's forward-only run of an inference program equals predict.
    xs = b._standardize_x(x, "twin")
    pa = a.predict_on_batch(x)
    pb = ReferenceRunner(lower(b, training=False)).run(xs)[2]
    for u, v in zip(pa if isinstance(pa, list) else [pa], pb):
        np.testing.assert_allclose(u, v, **tol)
    return twin


# ---------------------------------------------------------------- optimizers x losses
def _chain(act, k, freeze_first):
    def build():
        m = fl.Sequential([Dense(8, activation="tanh", input_shape=(6,)), Dropout(0.3),
                           Dense(8, activation="relu"), Activation("sigmoid"), Flatten(),
                           Dense(k, activation=act)])
        if freeze_first:
            m.layers[0].trainable = False
        return m
    return build


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opt", list(OPTIMIZERS))
@pytest.mark.parametrize("loss_key", list(LOSSES))
def test_every_optimizer_and_loss(loss_key, opt, dtype):
    _, act, k = LOSSES[loss_key]
    a, b = _pair(_chain(act, k, freeze_first=False), opt, _loss(loss_key), dtype)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(12, 6)).astype(dtype)
    _train_both(a, b, x, _targets(loss_key, k, 12, rng, dtype), steps=4, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opt", ["sgd", "adam"])
@pytest.mark.parametrize("loss_key", ["mse", "sparse_logits", "cce_probs"])
def test_frozen_first_layer(loss_key, opt, dtype):
    _, act, k = LOSSES[loss_key]
    a, b = _pair(_chain(act, k, freeze_first=True), opt, _loss(loss_key), dtype)
    w0 = b.layers[0].kernel.numpy()
    rng = np.random.default_rng(4)
    x = rng.normal(size=(10, 6)).astype(dtype)
    _train_both(a, b, x, _targets(loss_key, k, 10, rng, dtype), dtype=dtype)
    np.testing.assert_array_equal(b.layers[0].kernel.numpy(), w0)


# ---------------------------------------------------------------- graphs
class Scale(fl.layers.Layer):
    """A custom layer with one weight: y = x * s (per feature), written to the contract."""

    def build(self, input_shape):
        self.s = self.add_weight("s", (input_shape[-1],), initializer="ones")

    def compute_output_shape(self, input_shape):
        return input_shape

    def forward(self, x, training=False):
        s = self.s.numpy() + 0.5

        def backprop(dy):
            return dy * s, [(dy * x).sum(axis=0)]
        return x * s, backprop


def _shared():
    inp = fl.Input((5,))
    d = Dense(5, activation="tanh", name="twice")
    h = d(d(inp))                      # one layer, two uses in sequence (R8)
    side = Dense(5, name="side")
    out = Dense(2)(Add()([side(h), side(inp)]))   # and in two branches
    return fl.Model(inp, out)


def _pinned_dropout():
    inp = fl.Input((6,))
    h = Dense(8, activation="relu")(inp)
    h = Dropout(0.5, seed=3)(h, training=True)
    h = Dropout(0.5, seed=4)(h, training=False)   # R6: an alias, no op
    return fl.Model(inp, Dense(2)(Dropout(0.25, seed=5)(h)))


def _nested():
    inner = fl.Sequential([Dense(6, activation="relu", input_shape=(5,)), Dropout(0.2)],
                          name="inner")
    i1 = fl.Input((5,))
    mid = fl.Model(i1, Dense(4, activation="tanh", use_bias=False)(inner(i1)), name="mid")
    inp = fl.Input((5,))
    return fl.Model(inp, Dense(2)(mid(inp)))


def _custom_in_the_middle():
    inp = fl.Input((5,))
    h = Dense(4, activation="tanh")(inp)
    h = Scale(name="scale")(h)
    frozen = Dense(4, activation="relu", name="frozen_after")
    frozen.trainable = False
    return fl.Model(inp, Dense(2)(frozen(h)))


def _merges():
    inp = fl.Input((5,))
    a = Dense(3, activation="relu")(inp)
    b = Dense(4, activation="sigmoid")(inp)
    c = Concatenate()([a, b, inp])
    s = Add()([Dense(4)(c), b, b])             # the same tensor twice: dx adds
    return fl.Model(inp, Dense(2)(s))


def _frozen_container_merge():
    """Seed 002: two frozen sub-models with dropout, concatenated, a new head."""
    subs = []
    for name in ("model_A", "model_B"):
        i = fl.Input((6,))
        h = Dropout(0.5)(Dense(7, activation="relu")(i))
        subs.append(fl.Model(i, Dense(3, activation="relu")(h), name=name))
        subs[-1].trainable = False
    inp = fl.Input((6,))
    return fl.Model(inp, Dense(2)(Concatenate()([s(inp) for s in subs])))


def _bn_axis1():
    inp = fl.Input((3, 4))
    h = BatchNormalization(axis=1)(inp)        # lowered as transpose, BN, transpose
    h = Dense(5, activation="tanh")(h)         # Dense on the last axis of a 3-D tensor
    return fl.Model(inp, Dense(2)(Flatten()(h)))


def _bn_pinned_off_and_shared_input():
    inp = fl.Input((3, 4))
    h = Dense(4, activation="tanh")(inp)
    bn = BatchNormalization(axis=1, name="bn")(h, training=False)   # inference mode, trained
    cat = Concatenate(axis=1)([bn, h, h])      # h feeds the transpose and the concat twice
    return fl.Model(inp, Dense(2)(Flatten()(cat)))


def _hidden_output_also_feeds():
    inp = fl.Input((5,))
    h = Dense(4, activation="sigmoid", name="h")(inp)
    return fl.Model(inp, [h, Dense(2, name="o")(h)])


def _fan_out_elementwise():
    inp = fl.Input((5,))
    h = Dense(6, name="h")(inp)
    parts = [Dropout(0.4)(h, training=True), Activation("sigmoid")(h), Activation("softmax")(h)]
    return fl.Model(inp, Dense(2)(Add()(parts)))


GRAPHS = {
    "shared": (_shared, (5,)),
    "pinned_dropout": (_pinned_dropout, (6,)),
    "nested": (_nested, (5,)),
    "custom": (_custom_in_the_middle, (5,)),
    "merges": (_merges, (5,)),
    "frozen_merge": (_frozen_container_merge, (6,)),
    "bn_axis1": (_bn_axis1, (3, 4)),
    "bn_pinned_off_shared_input": (_bn_pinned_off_and_shared_input, (3, 4)),
    "fan_out_elementwise": (_fan_out_elementwise, (5,)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opt", ["sgd", "nesterov", "adam"])
@pytest.mark.parametrize("graph", list(GRAPHS))
def test_graphs(graph, opt, dtype):
    build, shape = GRAPHS[graph]
    a, b = _pair(build, opt, "mse", dtype)
    rng = np.random.default_rng(5)
    x = rng.normal(1, 2, size=(9,) + shape).astype(dtype)
    y = rng.normal(size=(9, 2)).astype(dtype)
    _train_both(a, b, x, y, steps=4, dtype=dtype)


def test_shared_layer_gradient_is_summed_once():
    _, b = _pair(_shared, "sgd", "mse", "float64")
    prog = b.step_program
    twice = [op for op in prog.ops if op.path.endswith("/twice")]
    assert len(twice) == 2 and [w.path for w in prog.weights].count("twice/kernel") == 1
    # Several uses: summed into one buffer, then one update (never fused into backward).
    fused = {w.path: f for w, f in zip(prog.weights, prog.fused)}
    assert not any(f for p, f in fused.items() if p.startswith(("twice/", "side/")))
    assert any(fused.values())   # the single-use head keeps its one-GEMM update


def _bn_model(center=True, scale=True):
    def build():
        return fl.Sequential([Dense(7, activation="relu", input_shape=(5,)),
                              BatchNormalization(momentum=0.9, name="bn"),
                              # a nonlinearity, so bn's beta is not absorbed by bn2 (its
                              # gradient would be rounding noise that Adam amplifies)
                              Activation("tanh"),
                              BatchNormalization(center=center, scale=scale, name="bn2"),
                              Dense(3)])
    return build


def _bn_frozen_base():
    """Seed 004: a frozen base with BN inside a Sequential, a new head."""
    base = fl.Sequential([Dense(6, activation="relu", input_shape=(5,)),
                          BatchNormalization(name="bn")], name="base")
    base.trainable = False
    return fl.Sequential([base, Dense(3)])


def _bn_frozen_base_pinned():
    """A frozen base called with training=True: the BN still runs frozen (R7)."""
    base = fl.Sequential([Dense(6, activation="relu", input_shape=(5,)),
                          BatchNormalization(name="bn")], name="base")
    base.trainable = False
    inp = fl.Input((5,))
    return fl.Model(inp, Dense(3)(base(inp, training=True)))


def _bn_shared_no_scale():
    inp = fl.Input((5,))
    bn = BatchNormalization(scale=False, name="bn")   # beta only, used twice
    h = Dense(5, activation="relu")(inp)
    return fl.Model(inp, Dense(3)(bn(Dense(5, activation="tanh")(bn(h)))))


def _set_bn_frozen(m):
    m.get_layer("bn").trainable = False


BN_CASES = {
    "trainable": (_bn_model(), None, None),
    "no_center_scale": (_bn_model(False, False), None, None),
    "frozen": (_bn_model(), _set_bn_frozen, None),
    "frozen_after_compile": (_bn_model(), None, _set_bn_frozen),   # stale picture (R4)
    "frozen_base": (_bn_frozen_base, None, None),
    "frozen_base_pinned": (_bn_frozen_base_pinned, None, None),
    "shared_no_scale": (_bn_shared_no_scale, None, None),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opt", ["sgd", "momentum", "adam"])
@pytest.mark.parametrize("case", list(BN_CASES))
def test_batchnorm(case, opt, dtype):
    build, before, after = BN_CASES[case]

    def full_build():
        m = build()
        if before is not None:
            before(m)
        return m
    a, b = _pair(full_build, opt, _loss("sparse_logits"), dtype, after=after)
    rng = np.random.default_rng(1)
    x = rng.normal(2, 3, (16, 5)).astype(dtype)
    y = rng.integers(0, 3, 16)
    _train_both(a, b, x, y, steps=4, dtype=dtype)
    if case == "frozen_after_compile":
        # The compiled picture still trains the BN in batch mode: its statistics move.
        bn = b.get_layer("bn")
        assert not np.allclose(bn.moving_mean.numpy(), 0)


# ---------------------------------------------------------------- multi-output
def _multi():
    i1, i2 = fl.Input((4,), name="in1"), fl.Input((3,), name="in2")
    h = Concatenate()([Dense(5, activation="relu")(i1), i2])
    a = Dense(2, name="a")(h)
    b = Dense(3, activation="softmax", name="b")(h)
    c = Dense(1, activation="sigmoid", name="c")(Dropout(0.3)(h))
    return fl.Model([i1, i2], [a, b, c])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opt", ["sgd", "momentum", "adam"])
@pytest.mark.parametrize("with_sw", [False, True])
def test_multi_output_loss_weights_and_sample_weights(with_sw, opt, dtype):
    loss = {"a": "mae", "b": "sparse_categorical_crossentropy", "c": "binary_crossentropy"}
    a, b = _pair(_multi, opt, loss, dtype, loss_weights={"a": 0.5, "b": 2.0, "c": 1.5})
    rng = np.random.default_rng(2)
    n = 11
    x = [rng.normal(size=(n, 4)).astype(dtype), rng.normal(size=(n, 3)).astype(dtype)]
    y = [rng.normal(size=(n, 2)).astype(dtype), rng.integers(0, 3, n),
         (rng.random((n, 1)) > 0.5).astype(dtype)]
    sw = [rng.random(n), rng.random(n) * 2, rng.random(n)] if with_sw else None
    _train_both(a, b, x, y, sw=sw, steps=3, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_an_output_without_loss(dtype):
    def build():
        inp = fl.Input((4,))
        h = Dense(5, activation="tanh")(inp)
        return fl.Model(inp, [Dense(2, name="a")(h), Dense(3, name="b")(h)])
    a, b = _pair(build, "momentum", {"a": "mse", "b": None}, dtype)
    assert [t.output for t in b.step_program.losses] == [0]
    rng = np.random.default_rng(6)
    x = rng.normal(size=(7, 4)).astype(dtype)
    _train_both(a, b, x, {"a": rng.normal(size=(7, 2)).astype(dtype)}, dtype=dtype)
    # The loss-less head gets no gradient: it is not in the compiled set.
    assert all(not w.path.startswith("b/") for w in b.step_program.weights)


@pytest.mark.parametrize("dtype", DTYPES)
def test_two_losses_on_one_output_add_their_gradients(dtype):
    # The same output tensor twice: both losses write the gradient of one slot.
    def build():
        inp = fl.Input((4,))
        h = Dense(3, name="h")(inp)
        return fl.Model(inp, [h, h])
    a, b = _pair(build, "sgd", ["mse", "mae"], dtype, loss_weights=[1.0, 0.5])
    rng = np.random.default_rng(8)
    x, y = rng.normal(size=(6, 4)).astype(dtype), rng.normal(size=(6, 3)).astype(dtype)
    _train_both(a, b, x, [y, y[::-1].copy()], dtype=dtype)


# ---------------------------------------------------------------- fit on both executors
def _fit(m, x, y, twin: bool, seed=5, **kw):
    if twin:
        m._compiled.train = ReferenceRunner(m.step_program, m.optimizer)
    fl.utils.set_random_seed(seed)
    return m.fit(x, y, verbose=0, **kw).history


@pytest.mark.parametrize("loss_key", ["mse", "sparse_logits"])
def test_shuffled_fit_equals_the_twin_and_manual_batches(loss_key):
    _, act, k = LOSSES[loss_key]
    build = _chain(act, k, freeze_first=False)
    a, b = _pair(build, "momentum", _loss(loss_key), "float64")
    c, _ = _pair(build, "momentum", _loss(loss_key), "float64")
    rng = np.random.default_rng(9)
    n = 23
    x, y = rng.normal(size=(n, 6)), _targets(loss_key, k, n, rng, "float64")
    ha = _fit(a, x, y, False, batch_size=4, epochs=3, shuffle=True)
    hb = _fit(b, x, y, True, batch_size=4, epochs=3, shuffle=True)
    np.testing.assert_allclose(ha["loss"], hb["loss"], **_tol("float64"))
    _assert_same_state(a, b, _tol("float64"))
    # Manual batches in fit's order (the seeded generator's permutation per epoch).
    fl.utils.set_random_seed(5)
    orders = [fl.utils.random.generator().permutation(n) for _ in range(3)]
    twin = ReferenceRunner(c.step_program, c.optimizer)
    losses = []
    for order in orders:
        tot, count = 0.0, 0
        for lo in range(0, n, 4):
            idx = order[lo:lo + 4]
            total = twin.train_step(*_standardize(c, x[idx], y[idx]))[0]
            tot, count = tot + total * len(idx), count + len(idx)
        losses.append(tot / count)
    np.testing.assert_allclose(ha["loss"], losses, **_tol("float64"))
    _assert_same_state(a, c, _tol("float64"))


def test_image_batches_through_a_leading_flatten():
    def build():
        return fl.Sequential([Flatten(input_shape=(4, 5)), Dense(6, activation="relu"),
                              Dense(3)])
    a, b = _pair(build, "adam", _loss("sparse_logits"), "float32", seed=2)
    rng = np.random.default_rng(0)
    x, y = rng.random((10, 4, 5)).astype("float32"), rng.integers(0, 3, 10)
    _train_both(a, b, x, y, steps=3)
    ha = _fit(a, x, y, False, seed=3, batch_size=4, epochs=2)
    hb = _fit(b, x, y, True, seed=3, batch_size=4, epochs=2)
    np.testing.assert_allclose(ha["loss"], hb["loss"], rtol=1e-5)
    _assert_same_state(a, b, _tol("float32"))


# ---------------------------------------------------------------- steady state
def test_steady_state_steps_allocate_nothing():
    import tracemalloc

    m = fl.Sequential([Dense(32, activation="relu", input_shape=(16,)), Dropout(0.5),
                       BatchNormalization(), Dense(4)])
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
    assert peak - base < 8192     # nothing but one step's small temporaries in flight


# ---------------------------------------------------------------- refusals
def _snapshot(m):
    return ([w.numpy().copy() for w in m.weights], _dropout_counters(m), m.optimizer.iterations,
            [s.copy() for w in m.step_program.weights for s in m.optimizer.slots_for(w)])


def _assert_untouched(m, snap):
    weights, counters, iterations, slots = snap
    for w, v in zip(m.weights, weights):
        np.testing.assert_array_equal(w.numpy(), v, err_msg=w.path)
    assert _dropout_counters(m) == counters
    assert m.optimizer.iterations == iterations
    now = [s for w in m.step_program.weights for s in m.optimizer.slots_for(w)]
    for s, v in zip(now, slots):
        np.testing.assert_array_equal(s, v)


def _bn_dropout_sparse():
    inp = fl.Input((4,))
    h = BatchNormalization()(Dropout(0.3)(Dense(6, activation="relu")(inp)))
    return fl.Model(inp, [Dense(3, name="a")(h), Dense(5, name="b")(h)])


@pytest.mark.parametrize("runner", ["compiled", "twin"])
def test_bad_labels_raise_and_change_nothing(runner):
    loss = [fl.losses.SparseCategoricalCrossentropy(from_logits=True),
            fl.losses.SparseCategoricalCrossentropy()]
    m, _ = _pair(_bn_dropout_sparse, "adam", loss, "float32")
    x = np.ones((4, 4), "float32")
    good = [np.array([0, 1, 2, 0]), np.array([4, 3, 2, 1])]
    m.train_on_batch(x, good)   # make the optimizer's slots and move the counters once
    snap = _snapshot(m)
    bad = [np.array([0, 1, 2, 0]), np.array([4, 3, 5, 1])]   # 5 >= 5: out of range
    with pytest.raises(ValueError, match="labels"):
        m.train_on_batch(x, bad)
    _assert_untouched(m, snap)
    # Below the model's own check: the runners refuse too, before any work.
    xs = m._standardize_x(x, "t")
    ys = [good[0], np.array([4, 3, 9, 1])]
    r = m._compiled.train if runner == "compiled" else ReferenceRunner(m.step_program,
                                                                       m.optimizer)
    with pytest.raises(ValueError, match="labels"):
        r.train_step(xs, ys)
    _assert_untouched(m, snap)


def test_refusals_of_wrong_shapes_change_nothing():
    m, _ = _pair(lambda: fl.Sequential([Flatten(input_shape=(4, 5)), Dropout(0.2), Dense(3)]),
                 "momentum", "mse", "float32")
    x, y = np.ones((2, 4, 5), "float32"), np.zeros((2, 3), "float32")
    m.train_on_batch(x, y)
    snap = _snapshot(m)
    with pytest.raises(ValueError, match="shape"):
        m.train_on_batch(np.ones((2, 5, 4), "float32"), y)       # a transposed image batch
    with pytest.raises(ValueError, match="shape"):
        m.train_on_batch(np.ones((2, 20), "float32"), y)         # flat rows for an image input
    with pytest.raises(ValueError, match="samples"):
        m.train_on_batch(x, np.zeros((3, 3), "float32"))         # more targets than inputs
    with pytest.raises(ValueError, match="shape"):
        m.train_on_batch(x, np.zeros((2, 4), "float32"))         # wrong target width
    with pytest.raises(ValueError, match="shape"):
        m.predict(np.ones((2, 4, 6), "float32"), verbose=0)
    _assert_untouched(m, snap)
    twin = ReferenceRunner(m.step_program, m.optimizer)
    with pytest.raises(ValueError, match="shape"):
        twin.train_step([np.ones((2, 5, 4), "float32")], [y])
    _assert_untouched(m, snap)


# ---------------------------------------------------------------- more programs
class Pair(fl.layers.Layer):
    """A custom layer with a list input and two outputs: (a * b, a + b)."""

    def compute_output_shape(self, input_shape):
        return [input_shape[0], input_shape[0]]

    def forward(self, inputs, training=False):
        a, b = inputs

        def backprop(gs):
            g1, g2 = gs
            return [g1 * b + g2, g1 * a + g2], []
        return [a * b, a + b], backprop


class Cubed(fl.losses.Loss):
    """A user's loss (not built in): runs as a callback of the executor."""

    name = "cubed"

    def loss_and_grad(self, y_true, y_pred, want_grad=True):
        d = y_pred - y_true
        g = 3 * d * np.abs(d) / d.size if want_grad else None
        return float(np.mean(np.abs(d) ** 3)), g


def _custom_pair_frozen_container():
    inp = fl.Input((4,))
    body_in = fl.Input((4,))
    frozen_scale = Scale(name="frozen_scale")
    body = fl.Model(body_in, Dense(4, activation="tanh")(frozen_scale(body_in)), name="body")
    body.trainable = False             # the custom layer's weight is not trained...
    h = body(Dense(4, name="first")(inp))   # ...but the gradient flows through it (R9)
    p, q = Pair(name="pair")([h, Dense(4, activation="sigmoid")(inp)])
    return fl.Model(inp, Dense(2)(Add()([p, q])))


def _sequence_outputs():
    inp = fl.Input((3, 4))
    h = Dense(5, activation="relu")(Dropout(0.2)(inp))     # dropout and dense on 3-D
    return fl.Model(inp, Dense(4, name="tok")(h))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_custom_layers_with_lists_in_a_frozen_container_and_a_custom_loss(opt, dtype):
    a, b = _pair(_custom_pair_frozen_container, opt, Cubed(), dtype)
    assert b.step_program.has_callbacks and not any(b.step_program.fused)
    assert all(not w.path.startswith("frozen_scale") for w in b.step_program.weights)
    rng = np.random.default_rng(10)
    x, y = rng.normal(size=(6, 4)).astype(dtype), rng.normal(size=(6, 2)).astype(dtype)
    _train_both(a, b, x, y, steps=3, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_sw", [False, True])
@pytest.mark.parametrize("loss_key", ["sparse_logits", "cce_probs", "mse", "bce_logits"])
def test_per_position_losses_on_sequence_outputs(loss_key, with_sw, dtype):
    def build():
        m = _sequence_outputs()
        if loss_key == "cce_probs":
            return fl.Model(m.inputs, Activation("softmax")(m.outputs[0]))
        return m
    a, b = _pair(build, "momentum", _loss(loss_key), dtype)
    rng = np.random.default_rng(11)
    n = 7
    x = rng.normal(size=(n, 3, 4)).astype(dtype)
    if loss_key.startswith("sparse"):
        y = rng.integers(0, 4, (n, 3))
    elif loss_key.startswith("cce"):
        y = np.eye(4, dtype=dtype)[rng.integers(0, 4, (n, 3))]
    elif loss_key.startswith("bce"):
        y = (rng.random((n, 3, 4)) > 0.5).astype(dtype)
    else:
        y = rng.normal(size=(n, 3, 4)).astype(dtype)
    _train_both(a, b, x, y, sw=rng.random(n) if with_sw else None, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_sizes_change_between_steps(dtype):
    """Buffers are kept per batch size: nothing from another size's step leaks in."""
    def build():
        # tanh, not relu, before the batch norm: a dead unit on a batch of 2 rows has
        # zero variance, and its rounding-noise gradient would be amplified by Adam.
        return fl.Sequential([Dense(7, activation="tanh", input_shape=(5,)), Dropout(0.3),
                              BatchNormalization(momentum=0.9), Dense(3)])
    a, b = _pair(build, "adam", _loss("sparse_logits"), dtype)
    twin = ReferenceRunner(b.step_program, b.optimizer)
    rng = np.random.default_rng(12)
    for n in (5, 3, 5, 8, 4, 3, 2, 6, 7, 5):   # more sizes than the runner caches
        x, y = rng.normal(size=(n, 5)).astype(dtype), rng.integers(0, 3, n)
        ra = a.train_on_batch(x, y)
        rb = twin.train_step(*_standardize(b, x, y))[0]
        np.testing.assert_allclose(ra, rb, **_tol(dtype))
    _assert_same_state(a, b, _tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_gradient_hook_sees_complete_gradients_before_any_update(dtype):
    """The point between gradients and updates, on both executors (data parallel)."""
    a, b = _pair(_shared, "momentum", "mse", dtype)
    rng = np.random.default_rng(13)
    x, y = rng.normal(size=(6, 5)).astype(dtype), rng.normal(size=(6, 2)).astype(dtype)
    seen = {}

    def hook(which, model):
        def scale(grads):
            seen[which] = ([g.copy() for g in grads],
                           [w.numpy().copy() for w in model.step_program.weights])
            for g in grads:
                g *= 0.5
        return scale
    w0 = [w.numpy().copy() for w in a.step_program.weights]
    ta = a._compiled.train.train_step(*_standardize(a, x, y), gradient_hook=hook("a", a))[0]
    twin = ReferenceRunner(b.step_program, b.optimizer)
    tb = twin.train_step(*_standardize(b, x, y), gradient_hook=hook("b", b))[0]
    np.testing.assert_allclose(ta, tb, **_tol(dtype))
    for ga, gb in zip(seen["a"][0], seen["b"][0]):
        np.testing.assert_allclose(ga, gb, **_tol(dtype))
    for before, now in zip(w0, seen["a"][1]):
        np.testing.assert_array_equal(before, now)      # nothing moved yet
    _assert_same_state(a, b, _tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_evaluation_programs_and_pinned_modes_at_inference(dtype):
    """test_on_batch and predict run inference programs; the twin runs them too."""
    def build():
        inp = fl.Input((5,))
        h = Dense(6, activation="relu")(inp)
        h = BatchNormalization(name="bn")(h, training=True)    # batch statistics at inference
        h = Dropout(0.5, seed=2)(h, training=True)             # drops at inference (R5)
        return fl.Model(inp, Dense(3)(h))
    a, b = _pair(build, "sgd", "mse", dtype)
    rng = np.random.default_rng(14)
    x, y = rng.normal(size=(8, 5)).astype(dtype), rng.normal(size=(8, 3)).astype(dtype)
    sw = rng.random(8)
    prog = lower(b, training=False, losses=b._compiled.losses,
                 loss_weights=b._compiled.loss_weights)
    twin = ReferenceRunner(prog)
    for _ in range(2):
        la = a.test_on_batch(x, y, sample_weight=sw)
        lb = twin.run(*_standardize(b, x, y, sw))[0]
        np.testing.assert_allclose(la, lb, **_tol(dtype))
    pa = a.predict_on_batch(x)
    pb = ReferenceRunner(lower(b, training=False)).run([x])[2][0]
    np.testing.assert_allclose(pa, pb, **_tol(dtype))
    # Inference programs never update moving statistics; the dropout counters move.
    for m in (a, b):
        assert np.all(m.get_layer("bn").moving_mean.numpy() == 0)
    _train_both(a, b, x, y, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_an_output_that_also_feeds_another_output(opt, dtype):
    # The loss writes h's gradient first; the consumer's input gradient adds to it.
    a, b = _pair(_hidden_output_also_feeds, opt, ["mse", "mae"], dtype, loss_weights=[0.7, 1.0])
    rng = np.random.default_rng(15)
    x = rng.normal(size=(6, 5)).astype(dtype)
    y = [rng.random((6, 4)).astype(dtype), rng.normal(size=(6, 2)).astype(dtype)]
    _train_both(a, b, x, y, sw=[rng.random(6), None], dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_batch_of_one_row_through_batch_norm(dtype):
    # One row: the batch variance is 0 and fed to the moving average unchanged (no n/(n-1)).
    def build():
        return fl.Sequential([Dense(4, activation="tanh", input_shape=(3,)),
                              BatchNormalization(momentum=0.5, name="bn"), Dense(2)])
    a, b = _pair(build, "momentum", "mse", dtype)
    rng = np.random.default_rng(16)
    x, y = rng.normal(size=(1, 3)).astype(dtype), rng.normal(size=(1, 2)).astype(dtype)
    _train_both(a, b, x, y, steps=2, dtype=dtype)
    np.testing.assert_allclose(b.get_layer("bn").moving_variance.numpy(), 0.25, **_tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_global_norm_clipping_between_gradients_and_updates(dtype):
    OPTIMIZERS["clipped"] = lambda: fl.optimizers.SGD(0.1, momentum=0.5, global_clipnorm=0.05)
    try:
        a, b = _pair(_shared, "clipped", "mse", dtype)
    finally:
        del OPTIMIZERS["clipped"]
    assert not any(b.step_program.fused)
    rng = np.random.default_rng(17)
    x, y = rng.normal(size=(6, 5)).astype(dtype), 10 * rng.normal(size=(6, 2)).astype(dtype)
    _train_both(a, b, x, y, steps=3, dtype=dtype)
    # The clip was active (the twin saw a scale below one) and both agreed on it.
    from fastlayers import _codes
    twin, seen = ReferenceRunner(b.step_program, b.optimizer), []
    real = twin.update
    twin.update = lambda hyper: (seen.append(hyper[_codes.H_GSCALE]), real(hyper))
    twin.train_step(*_standardize(b, x, y))
    assert 0 < seen[0] < 1


# ---------------------------------------------------------------- optimizer changed after compile
@pytest.mark.parametrize("change", [(0.5, 0.9, True), (0.0, 0.9, False), (0.9, 0.0, False)])
def test_optimizer_settings_changed_after_compile_apply_from_the_next_step(change):
    """Learning rate, momentum and Nesterov set after compile() act like a fresh optimizer
    with the same slots; the twin (which reads the optimizer every step) agrees."""
    m0, m1, nesterov = change

    def build():
        return fl.Sequential([Dense(4, activation="tanh", input_shape=(3,)), Dense(2)])
    OPTIMIZERS["start"] = lambda: fl.optimizers.SGD(0.1, momentum=m0)
    try:
        a, b = _pair(build, "start", "mse", "float64")
    finally:
        del OPTIMIZERS["start"]
    rng = np.random.default_rng(0)
    x, y = rng.random((8, 3)), rng.random((8, 2))
    _train_both(a, b, x, y, steps=1, dtype="float64")
    for m in (a, b):
        m.optimizer.momentum, m.optimizer.nesterov, m.optimizer.learning_rate = m1, nesterov, 0.05
    twin = _train_both(a, b, x, y, steps=3, dtype="float64")
    assert twin.program.fused == a.step_program.fused
    if m1:
        assert not any(a.step_program.fused)    # momentum: no SGD inside backward any more
    # Against a model recompiled with those settings (same start, same slots).
    fl.backend.clear_session()
    fl.utils.set_random_seed(7)
    c = build()
    opt = fl.optimizers.SGD(0.1, momentum=m0)
    c.compile(opt, "mse")
    c.train_on_batch(x, y)
    fresh = fl.optimizers.SGD(0.05, momentum=m1, nesterov=nesterov)
    fresh._slots, fresh.iterations = opt._slots, opt.iterations
    c.compile(fresh, "mse")
    for _ in range(3):
        c.train_on_batch(x, y)
    for u, v in zip(a.get_weights(), c.get_weights()):
        np.testing.assert_allclose(u, v, **_tol("float64"))


# ---------------------------------------------------------------- products split over threads
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opt", ["sgd", "momentum", "adam"])
def test_products_large_enough_to_split_over_threads(opt, dtype):
    """Batch 64 through 128 -> 256 -> 256: every product splits (gemm_split's sliced
    branches for Y, dX, dW and the fused SGD update), a shared layer accumulates."""
    def build():
        inp = fl.Input((128,))
        h = Dense(256, activation="relu", name="wide")(inp)
        shared = Dense(256, activation="tanh", name="shared")
        h = shared(Dropout(0.25)(shared(h)))
        return fl.Model(inp, Dense(10, name="head")(h))
    old = fl.backend.get_num_threads()
    fl.backend.set_num_threads(2)
    try:
        a, b = _pair(build, opt, _loss("sparse_logits"), dtype)
        rng = np.random.default_rng(18)
        x, y = rng.normal(size=(64, 128)).astype(dtype), rng.integers(0, 10, 64)
        # float32 Adam: a gradient that is rounding noise (BLAS blocks its 64-row sums
        # differently from NumPy) still moves its weight by about lr; float64 shows the
        # products agree to 1e-10.
        tol = dict(rtol=1e-5, atol=2e-5) if (opt, dtype) == ("adam", "float32") else None
        _train_both(a, b, x, y, steps=2, dtype=dtype, tol=tol)
    finally:
        fl.backend.set_num_threads(old)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("losses", [("cubed", "cubed"), ("mse", "cubed"), ("cubed", "mse")])
def test_losses_on_two_views_of_one_buffer_add_their_gradients(losses, dtype):
    # h and Flatten(h) are one buffer (an alias slot): the second loss adds to the first.
    def build():
        inp = fl.Input((2, 3))
        h = Dense(3, activation="tanh", name="h")(inp)
        return fl.Model(inp, [h, Flatten(name="flat")(h)])
    loss = [Cubed() if l == "cubed" else l for l in losses]
    a, b = _pair(build, "sgd", loss, dtype, loss_weights=[0.5, 2.0])
    prog = b.step_program
    assert prog.slots[prog.outputs[1]].alias_of == prog.outputs[0]
    rng = np.random.default_rng(19)
    x = rng.normal(size=(5, 2, 3)).astype(dtype)
    y = [rng.normal(size=(5, 2, 3)).astype(dtype), rng.normal(size=(5, 6)).astype(dtype)]
    _train_both(a, b, x, y, dtype=dtype)


# ---------------------------------------------------------------- the public contract
VJP_GRAPHS = ["shared", "nested", "custom", "merges", "frozen_merge", "bn_axis1",
              "bn_pinned_off_shared_input"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("graph", VJP_GRAPHS)
def test_container_forward_contract_matches_the_twin(graph, dtype):
    """``model.forward(x, training=True)`` runs a vjp program on the executor: its outputs,
    input and weight gradients, and the state it commits equal the twin's."""
    build, shape = GRAPHS[graph]
    tol = _tol(dtype)
    models = []
    for _ in range(2):
        fl.backend.clear_session()
        fl.backend.set_floatx(dtype)
        fl.utils.set_random_seed(3)
        models.append(build())
    a, b = models
    twin = ReferenceRunner(lower(b, training=True, vjp=True, updates_state=True))
    rng = np.random.default_rng(20)
    for _ in range(2):   # twice: dropout counters and moving statistics move in between
        x = rng.normal(1, 2, size=(7,) + shape).astype(dtype)
        g = rng.normal(size=(7, 2)).astype(dtype)
        y, backprop = a.forward(x, training=True)
        dx, dws = backprop(g)
        outs, dxs, twin_dws = twin.vjp([x], [g])
        np.testing.assert_allclose(y, outs[0], **tol)
        np.testing.assert_allclose(dx, dxs[0], **tol)
        for w, wb, dw in zip(a.weights, b.weights, dws):
            if dw is None:
                assert id(wb) not in twin_dws
            else:
                np.testing.assert_allclose(dw, twin_dws[id(wb)], err_msg=w.path, **tol)
    for wa, wb in zip(a.weights, b.weights):
        np.testing.assert_allclose(wa.numpy(), wb.numpy(), err_msg=wa.path, **tol)
    from fastlayers.engine.paths import walk

    def counters(m):
        return [int(u.layer._counter[0]) for u in walk(m) if isinstance(u.layer, Dropout)]
    assert counters(a) == counters(b)


class _Fails(fl.layers.Layer):
    """Identity forward; its backprop raises (a user's bug in the middle of a step)."""

    def compute_output_shape(self, input_shape):
        return input_shape

    def forward(self, x, training=False):
        def backprop(dy):
            raise ArithmeticError("user backprop failed")
        return x, backprop


@pytest.mark.parametrize("runner", ["compiled", "twin"])
def test_a_step_failing_in_a_callback_changes_nothing(runner):
    def build():
        inp = fl.Input((4,))
        h = Dropout(0.3)(BatchNormalization(name="bn")(Dense(5, activation="relu")(inp)))
        return fl.Model(inp, Dense(2)(_Fails(name="fails")(Dense(3)(h))))
    m, _ = _pair(build, "adam", "mse", "float32")
    assert not any(m.step_program.fused)     # a callback: no update inside backward
    x, y = np.ones((4, 4), "float32"), np.zeros((4, 2), "float32")
    snap = _snapshot(m)
    r = m._compiled.train if runner == "compiled" else ReferenceRunner(m.step_program,
                                                                       m.optimizer)
    with pytest.raises(ArithmeticError, match="user backprop"):
        r.train_step(*_standardize(m, x, y))
    _assert_untouched(m, snap)
    assert np.all(m.get_layer("bn").moving_mean.numpy() == 0)


def test_a_nan_loss_with_valid_labels_is_a_loss_not_a_label_error():
    """The fast path's NaN means 'labels out of range, nothing done' only when the
    labels are: a diverged step reports its NaN loss and counts as a step."""
    fl.backend.clear_session()
    m = fl.Sequential([Dense(3, input_shape=(4,))])
    m.compile("sgd", fl.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.ones((5, 4), np.float32)
    y = np.zeros(5, np.int64)
    m.train_on_batch(x, y)
    x[0, 0] = np.nan
    for _ in range(2):  # the second call takes the one-C-call path
        assert np.isnan(m.train_on_batch(x, y))
    assert m.optimizer.iterations == 3
    with pytest.raises(ValueError, match="labels"):
        m.train_on_batch(np.ones((5, 4), np.float32), np.full(5, 7))
    assert m.optimizer.iterations == 3


# ---------------------------------------------------------------- helpers of the op tests
def _check_native_graph(build, shape, kinds, opt, dtype, seed, loss=None):
    """``build``'s program holds every op kind in ``kinds`` and no callback, and the
    compiled executor equals the twin over 3 steps at batch 5, then batch 1."""
    loss = loss or fl.losses.SparseCategoricalCrossentropy(from_logits=True)
    a, b = _pair(build, opt, loss, dtype)
    # A pooling fused into the convolution it reads (no backward) counts as a pool op.
    have = [k for op in a.step_program.describe()
            for k in ([op["kind"]] + (["pool"] if op["pool"] >= 0 else []))]
    assert "callback" not in have and set(kinds) <= set(have), have
    rng = np.random.default_rng(seed)
    for n in (5, 1):
        x = rng.normal(size=(n,) + shape).astype(dtype)
        _train_both(a, b, x, rng.integers(0, 4, n), steps=3, dtype=dtype)


def _check_kept_vs_chunked(monkeypatch, build, x, y, dtype, loss_rtol=1e-6):
    """``build`` steps alike whether its convolutions keep the batch's im2col from the
    forward pass or run it again in one-sample chunks, and equals the twin.

    A runner sizes its buffers at its first step: each model takes one under its own
    setting, and its aux buffers show which it got."""
    from fastlayers.engine import executor as executor_mod

    loss = fl.losses.SparseCategoricalCrossentropy(from_logits=True)
    monkeypatch.setattr(executor_mod, "COLS_KEEP_BYTES", 64 << 20)
    kept, _ = _pair(build, "adam", loss, dtype)
    first = [kept.train_on_batch(x, y)]
    monkeypatch.setattr(executor_mod, "COLS_KEEP_BYTES", 0)
    monkeypatch.setattr(fl.ops, "_COLS_ELEMENTS", 1)  # one sample per chunk
    chunked, _ = _pair(build, "adam", loss, dtype)
    first.append(chunked.train_on_batch(x, y))
    np.testing.assert_allclose(*first, rtol=1e-6 if dtype == "float32" else 1e-12)
    rows = [[a.shape[0] for a in m._compiled.train._bindings[len(x)][2]
             if a is not None and a.ndim == 2] for m in (kept, chunked)]
    assert rows[0] and len(rows[0]) == len(rows[1]) and all(a > b for a, b in zip(*rows)), rows
    for _ in range(2):
        la, lb = kept.train_on_batch(x, y), chunked.train_on_batch(x, y)
        np.testing.assert_allclose(la, lb, rtol=loss_rtol if dtype == "float32" else 1e-12)
    for u, v in zip(kept.get_weights(), chunked.get_weights()):
        np.testing.assert_allclose(u, v, rtol=1e-5 if dtype == "float32" else 1e-12,
                                   atol=1e-6 if dtype == "float32" else 1e-13)
    _train_both(*_pair(build, "adam", loss, dtype), x, y, steps=2, dtype=dtype)


@contextlib.contextmanager
def _team_of_two():
    """Kernels run with a team of 2 threads inside the block (their threaded branches)."""
    old = fl.backend.get_num_threads()
    fl.backend.set_num_threads(2)
    try:
        yield
    finally:
        fl.backend.set_num_threads(old)
