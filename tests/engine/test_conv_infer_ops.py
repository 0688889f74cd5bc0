"""Convolutions without a backward pass: the 2x2/2 pooling fused into the CONV op
(program._fuse_pooling) and Winograd F(2x2, 3x3) (csrc/_conv_infer.pxd).

Frozen bases under trained heads and inference programs run these paths; each graph
trains on the compiled executor and on the NumPy twin (which computes the direct
convolution and the pooling separately) from one seed, and its predictions are
compared too (_train_both)."""
import numpy as np
import pytest

import fastlayers as fl
from fastlayers import _codes
from fastlayers.engine import executor as executor_mod
from fastlayers.engine.program import lower
from fastlayers.engine.reference import ReferenceRunner
from fastlayers.layers import (AveragePooling2D, Concatenate, Conv2D, Dense, Flatten,
                               GlobalAveragePooling2D, Input, MaxPooling2D)

from .test_executors import DTYPES, _check_native_graph, _pair, _team_of_two

SPARSE = lambda: fl.losses.SparseCategoricalCrossentropy(from_logits=True)  # noqa: E731


def _frozen(*names):
    def after(build):
        def built():
            m = build()
            for n in names:
                m.get_layer(n).trainable = False
            return m
        return built
    return after


def _winograd_base():
    """Channels enough for Winograd in c2 and c3; odd sizes and "same" padding."""
    inp = Input((13, 11, 3))
    h = Conv2D(8, 3, padding="same", activation="relu", name="c1")(inp)   # direct, pooled
    h = MaxPooling2D()(h)                                                # 13x11 -> 6x5
    h = Conv2D(9, 3, padding="same", activation="elu", name="c2")(h)     # Winograd, pooled
    h = AveragePooling2D()(h)                                            # 6x5 -> 3x2
    h = Conv2D(4, 3, padding="same", activation="linear", name="c3")(h)  # Winograd alone
    return fl.Model(inp, Dense(4, name="head")(Flatten()(h)))


def _unfusable():
    """Poolings that must stay ops: the conv's output read twice, a 3x3 window,
    stride 1, "same" padding on odd sizes."""
    inp = Input((19, 17, 8))
    a = Conv2D(8, 3, activation="relu", name="c1")(inp)   # 17x15
    p = MaxPooling2D()(a)                                 # 8x7
    g = GlobalAveragePooling2D()(a)                       # a second reader of c1's output
    b = Conv2D(8, 3, padding="same", name="c2")(p)
    q = MaxPooling2D(3, strides=2)(b)                     # 3x3
    c = Conv2D(8, 3, padding="same", name="c3")(q)
    r = MaxPooling2D(padding="same")(c)                   # odd size: 3x3 -> 2x2, padded
    d = Conv2D(8, 3, padding="same", name="c4")(r)
    s = MaxPooling2D(2, strides=1)(d)                     # 2x2 -> 1x1
    return fl.Model(inp, Dense(4, name="head")(Concatenate()([Flatten()(s), g])))


def _pools_of(m):
    return [o["pool"] for o in m.step_program.describe() if o["kind"] == "conv"]


GRAPHS = {
    "frozen-winograd-base": (_frozen("c1", "c2", "c3")(_winograd_base), (13, 11, 3)),
    "first-two-frozen": (_frozen("c1", "c2")(_winograd_base), (13, 11, 3)),
    "frozen-unfusable": (_frozen("c1", "c2", "c3", "c4")(_unfusable), (19, 17, 8)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opt", ["sgd", "adam"])
@pytest.mark.parametrize("name", list(GRAPHS))
def test_forward_only_convolutions_match_the_twin(name, opt, dtype):
    build, shape = GRAPHS[name]
    _check_native_graph(build, shape, ["conv"], opt, dtype, seed=3)


def test_what_is_fused():
    fl.backend.clear_session()
    m = GRAPHS["frozen-winograd-base"][0]()
    m.compile("sgd", SPARSE())
    assert _pools_of(m) == [_codes.POOL_MAX, _codes.POOL_AVERAGE, -1]
    assert "pool" not in [o["kind"] for o in m.step_program.describe()]
    # c3 trains but needs no input gradient: c2 and its pooling stay fused.
    fl.backend.clear_session()
    m = GRAPHS["first-two-frozen"][0]()
    m.compile("sgd", SPARSE())
    assert _pools_of(m) == [_codes.POOL_MAX, _codes.POOL_AVERAGE, -1]
    # c2 trains: its pooling runs backward (c3 passes it a gradient), c1's is fused.
    fl.backend.clear_session()
    m = GRAPHS["first-two-frozen"][0]()
    m.get_layer("c2").trainable = True
    m.compile("sgd", SPARSE())
    assert _pools_of(m) == [_codes.POOL_MAX, -1, -1]
    fl.backend.clear_session()
    m = GRAPHS["frozen-unfusable"][0]()
    m.compile("sgd", SPARSE())
    assert _pools_of(m) == [-1, -1, -1, -1]
    # Inference programs fuse whatever trains.
    fl.backend.clear_session()
    m = _winograd_base()
    m.compile("sgd", SPARSE())
    assert [op.pool for op in lower(m, training=False).ops if op.kind == 8] == [0, 1, -1]
    assert [op.pool for op in m.step_program.ops if op.kind == 8] == [-1, -1, -1]


def test_a_model_output_or_an_intermediate_output_is_not_fused():
    fl.backend.clear_session()
    inp = Input((8, 8, 8))
    c = Conv2D(8, 3, name="c")(inp)
    m = fl.Model(inp, [MaxPooling2D()(c), c])
    prog = lower(m, training=False)
    assert [op.pool for op in prog.ops if op.kind == 8] == [-1]
    x = np.random.default_rng(0).normal(size=(3, 8, 8, 8)).astype(np.float32)
    pooled, full = m.predict(x, verbose=0)
    np.testing.assert_allclose(pooled, full.reshape(3, 3, 2, 3, 2, 8).max(axis=(2, 4)),
                               rtol=1e-6)


def test_the_fused_convolution_output_gets_no_buffer():
    fl.backend.clear_session()
    m = _winograd_base()
    prog = lower(m, training=False)
    runner = executor_mod.Runner(prog)
    values = runner._bind(4)[0]
    read_or_written = {s for op in prog.ops for s in op.inputs + op.outputs}
    unused = [s.index for s in prog.slots if s.index not in read_or_written
              and s.alias_of is None and s.index not in prog.outputs]
    assert len(unused) == 2                      # c1's and c2's full outputs
    assert all(values[s] is None for s in unused)


@pytest.mark.parametrize("channels,pooled,expect", [
    (3, True, False), (8, True, True), (8, False, False), (16, False, True), (32, True, True)])
def test_winograd_is_chosen_from_enough_channels(channels, pooled, expect):
    """The thresholds of ops._winograd_pays, read by the runner."""
    fl.backend.clear_session()
    inp = Input((10, 10, channels))
    h = Conv2D(4, 3)(inp)
    m = fl.Model(inp, MaxPooling2D()(h) if pooled else h)
    op = lower(m, training=False).ops[0]
    assert op.pool == (0 if pooled else -1)
    plan = executor_mod._infer_plan(op)
    assert (plan is not None and plan[1]) == expect
    x = np.random.default_rng(1).normal(size=(2, 10, 10, channels)).astype(np.float32)
    twin = ReferenceRunner(lower(m, training=False)).run([x])[2][0]
    np.testing.assert_allclose(m.predict_on_batch(x), twin, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
def test_two_threads_and_batch_one(dtype):
    """The units split over a team of two, and a batch of one (fewer samples than
    threads) split by tile rows; both equal the twin."""
    with _team_of_two():
        _check_native_graph(GRAPHS["frozen-winograd-base"][0], (13, 11, 3), ["conv"], "sgd",
                            dtype, seed=5)
        fl.backend.clear_session()
        fl.backend.set_floatx(dtype)
        inp = Input((40, 40, 16))
        h = MaxPooling2D()(Conv2D(32, 3, padding="same", activation="relu")(inp))
        m = fl.Model(inp, h)
        x = np.random.default_rng(2).normal(size=(1, 40, 40, 16)).astype(dtype)
        twin = ReferenceRunner(lower(m, training=False)).run([x])[2][0]
        tol = dict(rtol=1e-10, atol=1e-12) if dtype == "float64" else dict(rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(m.predict_on_batch(x), twin, **tol)
    fl.backend.set_floatx("float32")


def test_a_too_small_work_buffer_is_refused():
    fl.backend.clear_session()
    m = _winograd_base()
    runner = executor_mod.Runner(lower(m, training=False))
    values, grads, aux, scratch = runner._bind(2)
    bad = list(aux)
    i = next(k for k, a in enumerate(aux) if a is not None)
    bad[i] = aux[i][:1]
    with pytest.raises(ValueError, match="work buffer is too small"):
        runner._ex.bind(2, values, grads, bad, scratch)


def test_frozen_base_weights_stay_bit_identical_and_the_head_learns():
    fl.backend.clear_session()
    a, _ = _pair(GRAPHS["frozen-winograd-base"][0], "adam", SPARSE(), "float32")
    before = [w.copy() for w in a.get_weights()[:6]]
    rng = np.random.default_rng(4)
    x = rng.normal(size=(16, 13, 11, 3)).astype(np.float32)
    y = rng.integers(0, 4, 16)
    first = a.train_on_batch(x, y)
    for _ in range(30):
        last = a.train_on_batch(x, y)
    assert last < first
    for u, v in zip(before, a.get_weights()[:6]):
        np.testing.assert_array_equal(u, v)
