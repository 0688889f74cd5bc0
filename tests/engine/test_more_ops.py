"""LayerNormalization, ZeroPadding2D/Cropping2D and nearest UpSampling2D as native ops
of the step program (LAYERNORM, PAD2D, UPSAMPLE2D).

Each graph trains a few steps on the compiled executor and on its NumPy twin
(engine/reference.py) from one seed, as tests/engine/test_conv_ops.py does; the
programs are checked to hold the native ops, not callbacks.  The ops' outputs and
gradients are also checked against the layers' own direct ``forward`` (NumPy) and
against the kernel twins of fastlayers/_reference.py.
"""
import numpy as np
import pytest

import fastlayers as fl
from fastlayers import _reference as ref
from fastlayers.engine.program import OpKind, lower
from fastlayers.engine.reference import ReferenceRunner
from fastlayers.layers import (Add, Conv2D, Cropping2D, Dense, Flatten, GlobalAveragePooling2D,
                               Input, LayerNormalization, UpSampling2D, ZeroPadding2D)

from .test_executors import DTYPES, _check_native_graph, _pair, _team_of_two, _tol, _train_both

SPARSE = lambda: fl.losses.SparseCategoricalCrossentropy(from_logits=True)  # noqa: E731


def _kinds(m):
    return [op["kind"] for op in m.step_program.describe()]


# ---------------------------------------------------------------- graphs
def _ln_sequence():
    inp = Input((5, 7))
    h = Dense(6, activation="tanh")(inp)
    h = LayerNormalization(name="ln")(h)
    h = LayerNormalization(center=False, epsilon=0.1)(Dense(3)(h))   # gamma only
    h = LayerNormalization(scale=False)(h)                            # beta only
    return fl.Model(inp, Dense(4)(Flatten()(h)))


def _ln_frozen():
    m = _ln_sequence()
    m.get_layer("ln").trainable = False
    return m


def _ln_shared():
    inp = Input((6,))
    h = Dense(5, activation="relu")(inp)
    ln = LayerNormalization(name="twice")
    # One gamma/beta, two uses (their gradients add); h feeds both ln and the Dense
    # (its gradient adds too).
    h = Add()([ln(h), ln(Dense(5)(h))])
    return fl.Model(inp, Dense(4)(h))


def _ln_axes():
    inp = Input((4, 5, 3))
    # tanh between them: a parameter straight under a normalization it commutes
    # with has no gradient (and Adam would compare rounding noise).
    h = Conv2D(3, 1, activation="tanh")(inp)
    h = LayerNormalization(axis=1)(h)           # one other axis: moved last and back
    h = Dense(3, activation="tanh")(h)
    h = LayerNormalization(axis=[2, 3])(h)      # the trailing axes: rows of 15
    h = Conv2D(3, 1, activation="tanh")(h)
    h = LayerNormalization(axis=(-2,))(h)       # moved again
    return fl.Model(inp, Dense(4)(Flatten()(h)))


def _images():
    inp = Input((7, 5, 3))
    h = ZeroPadding2D(((1, 2), (0, 3)))(inp)                  # first op: no input gradient
    h = Conv2D(4, 3, activation="relu")(h)                    # (8, 6, 4)
    h = Cropping2D(((1, 0), (2, 1)))(h)                       # (7, 3, 4)
    h = UpSampling2D((2, 3))(h)                               # (14, 9, 4)
    h = Conv2D(3, 3, strides=2)(h)                            # (6, 4, 3)
    h = UpSampling2D(1)(ZeroPadding2D(2)(h))                  # size 1: a plain copy
    h = Cropping2D(((0, 3), 1))(h)
    return fl.Model(inp, Dense(4)(GlobalAveragePooling2D()(h)))


def _images_shared():
    inp = Input((5, 4, 2))
    h = Conv2D(3, 1)(inp)
    pad, up, crop = ZeroPadding2D(1), UpSampling2D(2), Cropping2D(((2, 7), (1, 7)))
    a = crop(up(pad(h)))                                      # back to (5, 4, 3)
    # h's gradient from three consumers, the shared layers' second uses among them.
    b = Cropping2D(1)(pad(h))
    c = crop(up(Cropping2D(((0, 2), (0, 2)))(pad(pad(h)))))
    d = Cropping2D(((0, 5), (0, 4)))(up(h))
    h = Add()([a, b, c, d, h])
    h = LayerNormalization()(h)
    return fl.Model(inp, Dense(4)(Flatten()(h)))


GRAPHS = {
    "ln_sequence": (_ln_sequence, (5, 7), "layernorm"),
    "ln_frozen": (_ln_frozen, (5, 7), "layernorm"),
    "ln_shared": (_ln_shared, (6,), "layernorm"),
    "ln_axes": (_ln_axes, (4, 5, 3), "layernorm"),
    "images": (_images, (7, 5, 3), "pad2d"),
    "images_shared": (_images_shared, (5, 4, 2), "upsample2d"),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opt", ["sgd", "adam"])
@pytest.mark.parametrize("graph", list(GRAPHS))
def test_graphs_match_the_twin(graph, opt, dtype):
    build, shape, kind = GRAPHS[graph]
    _check_native_graph(build, shape, (kind,), opt, dtype, seed=5)


def test_the_programs_hold_each_op_and_its_flags():
    fl.backend.clear_session()
    m = _images()
    m.compile("sgd", SPARSE())
    ops = m.step_program.describe()
    assert [o["kind"] for o in ops if o["kind"] in ("pad2d", "upsample2d")] == \
        ["pad2d", "pad2d", "upsample2d", "pad2d", "upsample2d", "pad2d"]
    assert ops[0]["kind"] == "pad2d" and ops[0]["backward"] is False  # on the model input
    m = _ln_frozen()
    m.compile("sgd", SPARSE())
    ln = [o for o in m.step_program.describe() if o["kind"] == "layernorm"]
    assert [o["train"] for o in ln] == [[False, False], [True], [True]]
    assert ln[0]["backward"] and ln[0]["want_dx"] == [True]  # the Dense below trains
    m = _ln_shared()
    m.compile("sgd", SPARSE())
    ln = [op for op in m.step_program.ops if op.kind == OpKind.LAYERNORM]
    assert len(ln) == 2 and sorted(op.acc_grad for op in ln) == [(False, False), (True, True)]


def _ln_two_other_axes():
    inp = Input((3, 4, 5))
    return fl.Model(inp, Dense(2)(Flatten()(LayerNormalization(axis=[1, 3])(inp))))


@pytest.mark.parametrize("dtype", DTYPES)
def test_layernorm_over_several_other_axes_stays_a_callback(dtype):
    a, b = _pair(_ln_two_other_axes, "adam", "mse", dtype)
    assert "callback" in _kinds(a) and "layernorm" not in _kinds(a)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 3, 4, 5)).astype(dtype)
    _train_both(a, b, x, rng.normal(size=(4, 2)).astype(dtype), dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_large_layernorm_splits_over_threads(dtype):
    """Rows enough for the threaded branches of _layernorm.pxd (rows, and the dgamma
    column blocks of a width over 64), a shared use adding into gamma's gradient."""
    def build():
        inp = Input((40, 150))
        ln = LayerNormalization(name="wide")
        h = Dense(150, activation="tanh")(ln(inp))
        return fl.Model(inp, Dense(4)(Flatten()(ln(h))))
    with _team_of_two():
        a, b = _pair(build, "sgd", SPARSE(), dtype)
        assert "callback" not in _kinds(a)
        rng = np.random.default_rng(8)
        x = rng.normal(size=(8, 40, 150)).astype(dtype)   # 48000 values per op
        _train_both(a, b, x, rng.integers(0, 4, 8), steps=2, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_non_contiguous_and_read_only_inputs(dtype):
    a, _ = _pair(_images, "adam", SPARSE(), dtype)
    rng = np.random.default_rng(9)
    base = rng.normal(size=(4, 7, 10, 3)).astype(dtype)
    x = base[:, :, ::2]                       # a strided view
    x.flags.writeable = False
    want = a.predict_on_batch(np.ascontiguousarray(x))
    np.testing.assert_array_equal(a.predict_on_batch(x), want)
    a.train_on_batch(x, np.arange(4) % 4)
    assert not np.array_equal(a.predict_on_batch(x), want)


# ---------------------------------------------------------------- against the layers
LAYERS = {
    "ln_last": (lambda: LayerNormalization(epsilon=0.01), (3, 7)),
    "ln_trailing": (lambda: LayerNormalization(axis=[-2, -1], center=False), (3, 4, 2)),
    "ln_moved": (lambda: LayerNormalization(axis=1, scale=False), (3, 4, 2)),
    "pad": (lambda: ZeroPadding2D(((2, 0), (1, 3))), (3, 4, 2)),
    "crop": (lambda: Cropping2D(((1, 0), (0, 2))), (3, 5, 2)),
    "up": (lambda: UpSampling2D((3, 2)), (3, 4, 2)),
}


def _layer_model(key, dtype):
    fl.backend.clear_session()
    fl.backend.set_floatx(dtype)
    fl.utils.set_random_seed(1)
    make, shape = LAYERS[key]
    layer = make()
    inp = Input(shape)
    m = fl.Model(inp, layer(inp))
    # Non-trivial gamma/beta, so a swapped or skipped parameter shows.
    rng = np.random.default_rng(2)
    for w in layer.weights:
        w.assign(rng.normal(size=w.shape).astype(dtype))
    return m, layer, shape


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("key", list(LAYERS))
def test_native_ops_equal_the_layers_direct_forward(key, dtype):
    m, layer, shape = _layer_model(key, dtype)
    kinds = [op.kind for op in lower(m, training=True).ops]
    assert OpKind.CALLBACK not in kinds, kinds
    tol = _tol(dtype)
    rng = np.random.default_rng(3)
    for n in (4, 1):
        x = rng.normal(size=(n,) + shape).astype(dtype)
        want, bp = layer.forward(x, training=True)    # the layer's own NumPy code
        np.testing.assert_allclose(m.predict_on_batch(x), want, **tol)
        np.testing.assert_allclose(layer(x), want, **tol)  # an eager call: the native op
        g = rng.normal(size=want.shape).astype(dtype)
        y, mbp = m.forward(x, training=True)              # the vjp program: native ops
        np.testing.assert_allclose(y, want, **tol)
        got, want_g = mbp(g), bp(g)
        dx, dws = (got if layer.weights else (got, []))
        wdx, wdws = want_g
        np.testing.assert_allclose(dx, wdx, **tol)
        assert len(dws) == len(wdws) == len(layer.weights)
        for u, v in zip(dws, wdws):
            np.testing.assert_allclose(u, v, **tol)
    fl.backend.set_floatx("float32")


@pytest.mark.parametrize("dtype", DTYPES)
def test_image_ops_equal_the_kernel_twins(dtype):
    """The compiled ops against pad2d_/upsample2d_ twins called directly, forward and
    backward (odd sizes, a crop wider on one side, a batch of one)."""
    rng = np.random.default_rng(4)
    cases = [(lambda: ZeroPadding2D(((0, 3), (2, 1))), (5, 3, 3)),
             (lambda: Cropping2D(((2, 1), (0, 3))), (5, 7, 1)),
             (lambda: UpSampling2D((1, 3)), (5, 3, 3)),
             (lambda: UpSampling2D((4, 1)), (1, 1, 2))]
    for make, shape in cases:
        fl.backend.clear_session()
        fl.backend.set_floatx(dtype)
        layer = make()
        inp = Input(shape)
        m = fl.Model(inp, layer(inp))
        op = lower(m, training=False).ops[0]
        geom = op.kwargs["geom"]
        for n in (3, 1):
            x = rng.normal(size=(n,) + shape).astype(dtype)
            y, bp = m.forward(x, training=True)
            want = np.empty(y.shape, dtype)
            g = rng.normal(size=y.shape).astype(dtype)
            dx_want = np.full(x.shape, np.nan, dtype)
            if op.kind == OpKind.PAD2D:
                ref.pad2d_forward(x, want, geom[5], geom[6])
                ref.pad2d_backward(g, dx_want, geom[5], geom[6])
            else:
                ref.upsample2d_forward(x, want, geom[3], geom[4])
                ref.upsample2d_backward(g, dx_want, geom[3], geom[4])
            np.testing.assert_array_equal(y, want)
            np.testing.assert_allclose(bp(g), dx_want, **_tol(dtype))
    fl.backend.set_floatx("float32")


@pytest.mark.parametrize("dtype", DTYPES)
def test_layernorm_op_equals_the_kernel_twins(dtype):
    """The compiled LAYERNORM op's output and every gradient against layernorm_forward/
    layernorm_backward of fastlayers/_reference.py on the same rows."""
    m, layer, shape = _layer_model("ln_trailing", dtype)
    rng = np.random.default_rng(6)
    x = (rng.normal(size=(3,) + shape) * 4 + 1).astype(dtype)
    y, bp = m.forward(x, training=True)
    X = x.reshape(-1, 8)
    gamma = layer.gamma.numpy().reshape(-1)
    Y, mean, inv = np.empty_like(X), np.empty(len(X), dtype), np.empty(len(X), dtype)
    ref.layernorm_forward(X, gamma, None, layer.epsilon, Y, mean, inv)
    tol = _tol(dtype)
    np.testing.assert_allclose(y.reshape(-1, 8), Y, **tol)
    g = rng.normal(size=y.shape).astype(dtype)
    dx, (dgamma,) = bp(g)
    dX, dg = np.empty_like(X), np.empty(8, dtype)
    ref.layernorm_backward(X, g.reshape(-1, 8), gamma, mean, inv, dX, dg, None, False)
    np.testing.assert_allclose(dx.reshape(-1, 8), dX, **tol)
    np.testing.assert_allclose(dgamma.reshape(-1), dg, **tol)
    fl.backend.set_floatx("float32")


# ---------------------------------------------------------------- refusals
def test_a_layernorm_called_on_another_width_is_refused():
    fl.backend.clear_session()
    ln = LayerNormalization()
    ln(np.zeros((2, 5), np.float32))
    with pytest.raises(ValueError, match="LayerNormalization"):
        ln(np.zeros((2, 6), np.float32))
    inp = Input((6,))
    with pytest.raises(ValueError, match="LayerNormalization"):
        m = fl.Model(inp, ln(inp))
        m.predict_on_batch(np.zeros((2, 6), np.float32))


def test_executor_setters_refuse_geometries_that_do_not_fit():
    from fastlayers._kernels.executor import Executor

    ex = Executor(True, 2, np.array([12, 30], np.intp), 2, 0, 0)
    i32 = lambda *v: np.array(v, np.intc)  # noqa: E731
    u8 = lambda *v: np.array(v, np.uint8)  # noqa: E731
    ex.set_op(0, int(OpKind.PAD2D), 0, i32(0), i32(1), u8(0), u8(0), False, 0, 3, 0)
    ex.set_op(1, int(OpKind.LAYERNORM), 0, i32(0), i32(1), u8(0), u8(0), False, 0, 7, 1)
    ex.set_geometry(0, np.array([2, 2, 3, 2, 5, 0, 1], np.intp))  # fits: 12 -> 30
    for bad in ([2, 2, 3, 3, 5, 0, 1], [2, 2, 3, 2, 5, 0], [0, 2, 3, 2, 5, 0, 1]):
        with pytest.raises(ValueError, match="set_geometry"):
            ex.set_geometry(0, np.array(bad, np.intp))
    with pytest.raises(ValueError, match="set_geometry"):
        ex.set_geometry(1, np.array([2, 2, 3, 2, 5, 0, 1], np.intp))
    with pytest.raises(ValueError, match="set_layernorm"):
        ex.set_layernorm(1, 1e-3)   # rows of 7 in 30 values, and 12 in, 30 out
    with pytest.raises(ValueError, match="set_layernorm"):
        ex.set_layernorm(0, 1e-3)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_layernorm_of_a_nan_row_is_nan_and_raises_nothing(dtype, monkeypatch):
    """A NaN row normalizes to NaN (its neighbours untouched) in the op and the kernel,
    with no error swallowed inside the nogil loop (a power of a NaN went complex)."""
    import sys

    seen = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: seen.append(u))
    fl.backend.clear_session()
    inp = fl.layers.Input((3, 4), dtype=dtype)
    m = fl.Model(inp, fl.layers.LayerNormalization(dtype=dtype)(inp))
    x = np.arange(24, dtype=dtype).reshape(2, 3, 4)
    x[0, 1, 2] = np.nan
    y = m.predict_on_batch(x)
    assert np.isnan(y[0, 1]).all() and np.isfinite(np.delete(y.reshape(6, 4), 1, 0)).all()
    ref = fl.ops.layernorm_forward(x.reshape(6, 4), None, None, 1e-3)[0]
    np.testing.assert_array_equal(np.isnan(ref), np.isnan(y.reshape(6, 4)))
    assert seen == []
