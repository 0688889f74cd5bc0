"""DepthwiseConv2D, SeparableConv2D and Conv2DTranspose as native ops of the step
program (DEPTHWISE; DEPTHWISE then a 1x1 CONV; CONV_TRANSPOSE).

Each graph trains a few steps on the compiled executor and on its NumPy twin
(engine/reference.py) from one seed, as tests/engine/test_conv_ops.py does; the
programs are checked to hold the native ops, not callbacks.  The ops' outputs and
gradients are also checked against the layers' own direct ``forward``/``backprop``
(the standalone kernels, which these layers ran as callbacks before).
"""
import numpy as np
import pytest

import fastlayers as fl
from fastlayers.engine import executor as executor_mod
from fastlayers.engine.program import OpKind, lower
from fastlayers.engine.reference import ReferenceRunner
from fastlayers.layers import (Add, Conv2D, Conv2DTranspose, Dense, DepthwiseConv2D, Flatten,
                               GlobalAveragePooling2D, Input, SeparableConv2D)

from .test_executors import (DTYPES, _check_kept_vs_chunked, _check_native_graph, _pair, _tol,
                             _train_both)

SPARSE = lambda: fl.losses.SparseCategoricalCrossentropy(from_logits=True)  # noqa: E731


def _kinds(m):
    return [op["kind"] for op in m.step_program.describe()]


# ---------------------------------------------------------------- graphs
def _depthwise():
    inp = Input((9, 7, 3))
    h = Conv2D(3, 1, activation="tanh")(inp)          # the depthwise ops all want dx
    h = DepthwiseConv2D(3, strides=(2, 1), padding="same", depth_multiplier=2,
                        activation="relu", name="dw1")(h)                       # (5, 7, 6)
    h = DepthwiseConv2D((2, 4), padding="same", activation="gelu")(h)          # even kernel
    h = DepthwiseConv2D(3, dilation_rate=2, padding="same", use_bias=False,
                        activation="tanh")(h)
    h = DepthwiseConv2D((1, 2), strides=3, depth_multiplier=2)(h)             # stride > kernel
    return fl.Model(inp, Dense(4)(Flatten()(h)))


def _depthwise_first():
    inp = Input((6, 5, 2))   # the first op: no input gradient
    h = DepthwiseConv2D(2, depth_multiplier=3, activation="silu", name="dw1")(inp)
    return fl.Model(inp, Dense(4)(GlobalAveragePooling2D()(h)))


def _separable():
    inp = Input((8, 7, 2))
    h = SeparableConv2D(4, 3, padding="same", depth_multiplier=2, activation="relu",
                        name="sep1")(inp)
    h = SeparableConv2D(3, (2, 3), strides=2, activation="mish")(h)
    h = SeparableConv2D(3, 2, dilation_rate=(1, 2), padding="same", use_bias=False)(h)
    return fl.Model(inp, Dense(4)(Flatten()(h)))


def _transpose():
    inp = Input((4, 3, 2))
    h = Conv2DTranspose(3, 3, strides=2, activation="relu", name="t1")(inp)    # (9, 7, 3)
    h = Conv2DTranspose(2, (2, 3), strides=(1, 2), padding="same",
                        activation="mish")(h)                                  # (9, 14, 2)
    h = Conv2DTranspose(3, 1)(h)                                               # 1x1: direct
    h = Conv2DTranspose(2, 3, dilation_rate=2, padding="same", use_bias=False,
                        activation="tanh")(h)
    h = Conv2DTranspose(2, (2, 2), strides=(1, 3), activation="elu")(h)       # stride > kernel
    return fl.Model(inp, Dense(4)(GlobalAveragePooling2D()(h)))


def _shared():
    inp = Input((6, 6, 3))
    dw = DepthwiseConv2D(3, padding="same", activation="relu", name="dw_twice")
    sep = SeparableConv2D(3, 3, padding="same", activation="tanh", name="sep_twice")
    ct = Conv2DTranspose(3, 3, padding="same", name="t_twice")
    h = dw(dw(inp))                       # one kernel, two uses: one summed gradient
    h = Add()([h, dw(inp), sep(sep(h)), ct(ct(h))])
    return fl.Model(inp, Dense(4)(Flatten()(h)))


def _frozen(build, *names):
    def make():
        m = build()
        for n in names:
            m.get_layer(n).trainable = False
        return m
    return make


GRAPHS = {
    "depthwise": (_depthwise, (9, 7, 3), "depthwise"),
    "depthwise_first": (_depthwise_first, (6, 5, 2), "depthwise"),
    "separable": (_separable, (8, 7, 2), "depthwise"),
    "transpose": (_transpose, (4, 3, 2), "conv_transpose"),
    "shared": (_shared, (6, 6, 3), "conv_transpose"),
    "depthwise_frozen": (_frozen(_depthwise, "dw1"), (9, 7, 3), "depthwise"),
    "depthwise_first_frozen": (_frozen(_depthwise_first, "dw1"), (6, 5, 2), "depthwise"),
    "separable_frozen": (_frozen(_separable, "sep1"), (8, 7, 2), "depthwise"),
    "transpose_frozen": (_frozen(_transpose, "t1"), (4, 3, 2), "conv_transpose"),
    "shared_frozen": (_frozen(_shared, "dw_twice", "t_twice"), (6, 6, 3), "depthwise"),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opt", ["sgd", "adam"])
@pytest.mark.parametrize("graph", list(GRAPHS))
def test_graphs_match_the_twin(graph, opt, dtype):
    build, shape, kind = GRAPHS[graph]
    _check_native_graph(build, shape, (kind,), opt, dtype, seed=3)


def test_programs_hold_the_ops_and_their_flags():
    fl.backend.clear_session()
    m = _separable()
    m.compile("sgd", SPARSE())
    ops = [o for o in m.step_program.describe() if o["layer"].endswith("sep1")]
    # Depthwise (its kernel only, linear), then the pointwise 1x1 CONV (kernel, bias).
    assert [o["kind"] for o in ops] == ["depthwise", "conv"]
    assert ops[0]["weights"] == ["depthwise_kernel"]
    assert ops[1]["weights"] == ["pointwise_kernel", "bias"]
    assert ops[0]["want_dx"] == [False] and ops[0]["train"] == [True]
    raw = [op for op in m.step_program.ops if op.path.endswith("sep1")]
    assert raw[0].act == fl._codes.ACT_LINEAR and raw[1].act == fl._codes.ACT_RELU
    assert raw[0].acc_grad == (False,) and raw[1].acc_grad == (False, False)
    # The separable layer's mish follows its CONV op as an ACTIVATION op.
    kinds = _kinds(m)
    assert kinds.count("activation") == 1
    # Shared: R8 on every use after the first in backward order.
    fl.backend.clear_session()
    m = _shared()
    m.compile("sgd", SPARSE())
    dw = [op for op in m.step_program.ops if op.path.endswith("dw_twice")]
    assert [op.kind for op in dw] == [OpKind.DEPTHWISE] * 3
    assert sorted(op.acc_grad for op in dw) == [(False, False), (True, True), (True, True)]
    ct = [op for op in m.step_program.ops if op.path.endswith("t_twice")]
    assert [op.kind for op in ct] == [OpKind.CONV_TRANSPOSE] * 2
    sep = [op for op in m.step_program.ops if op.path.endswith("sep_twice")]
    assert [op.kind for op in sep] == [OpKind.DEPTHWISE, OpKind.CONV] * 2
    # h feeds the Add, a separable and a transposed layer: their input gradients add.
    assert (True,) in [op.acc_dx for op in sep if op.kind == OpKind.DEPTHWISE]
    assert (True,) in [op.acc_dx for op in ct]
    assert len(m.step_program.weights) == len(m.trainable_weights)


def test_frozen_layers_compute_no_gradient():
    """R9 on the program: a frozen first layer runs no backward at all."""
    fl.backend.clear_session()
    m = _frozen(_depthwise_first, "dw1")()
    m.compile("sgd", SPARSE())
    dw = [o for o in m.step_program.describe() if o["kind"] == "depthwise"]
    assert [o["backward"] for o in dw] == [False]
    fl.backend.clear_session()
    m = _frozen(_transpose, "t1")()
    m.compile("sgd", SPARSE())
    ct = [o for o in m.step_program.describe() if o["kind"] == "conv_transpose"]
    assert ct[0]["backward"] is False and ct[1]["backward"] and ct[1]["want_dx"] == [False]


# ---------------------------------------------------------------- against direct forward
def _single(make, shape):
    inp = Input(shape)
    layer = make()
    return fl.Model(inp, layer(inp)), layer


LAYERS = {
    "depthwise": (lambda: DepthwiseConv2D((3, 2), strides=2, padding="same", depth_multiplier=2,
                                          activation="relu"), (7, 6, 3)),
    "depthwise_gelu": (lambda: DepthwiseConv2D(3, dilation_rate=2, activation="gelu"),
                       (8, 7, 2)),
    "separable": (lambda: SeparableConv2D(5, (2, 3), padding="same", depth_multiplier=2,
                                          activation="sigmoid"), (6, 5, 3)),
    "separable_silu": (lambda: SeparableConv2D(2, 3, strides=2, use_bias=False,
                                               activation="silu"), (7, 7, 2)),
    "transpose": (lambda: Conv2DTranspose(4, (3, 2), strides=(2, 3), activation="tanh"),
                  (4, 3, 3)),
    "transpose_same": (lambda: Conv2DTranspose(3, 4, strides=2, padding="same",
                                               activation="gelu"), (3, 5, 2)),
    "transpose_1x1": (lambda: Conv2DTranspose(3, 1, use_bias=False), (4, 4, 2)),
    "transpose_gaps": (lambda: Conv2DTranspose(2, 1, strides=2, padding="same",
                                               activation="relu"), (3, 2, 3)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("key", list(LAYERS))
def test_outputs_and_gradients_equal_the_direct_forward(key, dtype):
    fl.backend.clear_session()
    fl.backend.set_floatx(dtype)
    try:
        make, shape = LAYERS[key]
        m, layer = _single(make, shape)
        rng = np.random.default_rng(1)
        for w in layer.weights:   # a non-zero bias too
            w.assign(rng.normal(size=w.shape).astype(dtype))
        x = rng.normal(size=(3,) + shape).astype(dtype)
        ops_kinds = [op["kind"] for op in lower(m, training=False).describe()]
        assert "callback" not in ops_kinds, ops_kinds
        want, bp = layer.forward(x, training=True)
        tol = _tol(dtype)
        np.testing.assert_allclose(m.predict_on_batch(x), want, **tol)
        # The public forward/backprop of the model is its program (the executor's ops).
        got, mbp = m.forward(x, training=True)
        np.testing.assert_allclose(got, want, **tol)
        dy = rng.normal(size=want.shape).astype(dtype)
        dx_want, g_want = bp(dy)
        dx_got, g_got = mbp(dy)
        np.testing.assert_allclose(dx_got, dx_want, **tol)
        assert len(g_got) == len(g_want) == len(layer.weights)
        for u, v in zip(g_got, g_want):
            np.testing.assert_allclose(u, v, **tol)
    finally:
        fl.backend.set_floatx("float32")


def test_read_only_and_strided_inputs_are_not_written():
    """CONV_TRANSPOSE reads its input through scratch: a read-only model input is fine."""
    fl.backend.clear_session()
    fl.backend.set_floatx("float64")
    try:
        m, layer = _single(lambda: Conv2DTranspose(2, 3, strides=2), (3, 4, 2))
        x = np.random.default_rng(0).normal(size=(2, 3, 8, 2))[:, :, ::2]
        ro = np.ascontiguousarray(x)
        ro.setflags(write=False)
        keep = ro.copy()
        want = layer.forward(np.ascontiguousarray(x))[0]
        np.testing.assert_allclose(m.predict_on_batch(ro), want, rtol=1e-12)
        np.testing.assert_allclose(m.predict_on_batch(x), want, rtol=1e-12)
        np.testing.assert_array_equal(ro, keep)
    finally:
        fl.backend.set_floatx("float32")


# ---------------------------------------------------------------- buffers and threads
@pytest.mark.parametrize("dtype", DTYPES)
def test_chunked_transpose_im2col_equals_the_kept_one(monkeypatch, dtype):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 4, 3, 2)).astype(dtype)
    y = rng.integers(0, 4, 6)
    _check_kept_vs_chunked(monkeypatch, _transpose, x, y, dtype, loss_rtol=1e-5)


def _big_depthwise():
    inp = Input((16, 16, 8))
    h = DepthwiseConv2D(3, padding="same", depth_multiplier=2, activation="relu")(inp)
    h = Conv2D(4, 1, activation="tanh")(h)
    h = DepthwiseConv2D(3, padding="same", name="dw2")(h)
    return fl.Model(inp, Dense(4)(GlobalAveragePooling2D()(h)))


def test_depthwise_with_a_team_equals_the_twin():
    """Large enough for the samples to split over a team: dX by sample, dW summed per
    thread then reduced."""
    try:
        fl.backend.set_num_threads(2)
        a, b = _pair(_big_depthwise, "sgd", SPARSE(), "float64")
        rng = np.random.default_rng(5)
        x = rng.normal(size=(32, 16, 16, 8))
        y = rng.integers(0, 4, 32)
        _train_both(a, b, x, y, steps=2, dtype="float64")
        one, _ = _pair(_big_depthwise, "sgd", SPARSE(), "float64")
        fl.backend.set_num_threads(1)
        two, _ = _pair(_big_depthwise, "sgd", SPARSE(), "float64")
        fl.backend.set_num_threads(2)
        for _ in range(2):
            one.train_on_batch(x, y)
        fl.backend.set_num_threads(1)
        for _ in range(2):
            two.train_on_batch(x, y)
        for u, v in zip(one.get_weights(), two.get_weights()):
            np.testing.assert_allclose(u, v, rtol=1e-11, atol=1e-13)
    finally:
        fl.backend.set_num_threads(None)


def test_bad_shapes_are_refused_and_change_nothing():
    fl.backend.clear_session()
    m = _separable()
    m.compile("adam", SPARSE())
    before = [w.copy() for w in m.get_weights()]
    with pytest.raises(ValueError):
        m.train_on_batch(np.zeros((4, 8, 6, 2), np.float32), np.zeros(4, np.int64))
    for u, v in zip(before, m.get_weights()):
        np.testing.assert_array_equal(u, v)
    assert m.optimizer.iterations == 0


@pytest.mark.parametrize("kind", [OpKind.DEPTHWISE, OpKind.CONV_TRANSPOSE])
def test_the_executor_refuses_a_geometry_that_does_not_match_the_slots(kind):
    fl.backend.clear_session()
    prog = lower(_shared(), training=False)
    op = next(op for op in prog.ops if op.kind == kind)
    geom = list(op.kwargs["geom"])
    for j, bad in ((3, geom[3] + 1), (2, geom[2] + 1), (5, 0), (12, -1)):
        op.kwargs["geom"] = tuple(geom[:j] + [bad] + geom[j + 1:])
        with pytest.raises(ValueError, match="set_geometry"):
            executor_mod.Runner(prog)
    op.kwargs["geom"] = tuple(geom)
    executor_mod.Runner(prog)


def test_twin_runs_the_ops_on_an_inference_program():
    fl.backend.clear_session()
    fl.backend.set_floatx("float64")
    try:
        m = _shared()
        x = np.random.default_rng(2).normal(size=(2, 6, 6, 3))
        prog = lower(m, training=False)
        assert {"depthwise", "conv_transpose", "conv"} <= {o["kind"] for o in prog.describe()}
        np.testing.assert_allclose(ReferenceRunner(prog).run([x])[2][0], m.predict_on_batch(x),
                                   rtol=1e-10, atol=1e-12)
    finally:
        fl.backend.set_floatx("float32")
