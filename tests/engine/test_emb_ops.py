"""Embedding, GroupNormalization, PReLU and RepeatVector as native ops of the step
program (EMBEDDING, GROUPNORM, PRELU; RepeatVector one CONCAT of its input).

Each graph trains a few steps on the compiled executor and on its NumPy twin
(engine/reference.py) from one seed, as tests/engine/test_more_ops.py does; the
programs are checked to hold the native ops, not callbacks.  The ops' outputs and
gradients are also checked against the layers' own direct ``forward``; ids that name
no row of the table are refused before anything runs.
"""
import numpy as np
import pytest

import fastlayers as fl
from fastlayers import _reference as ref
from fastlayers.engine.executor import VJPRunner
from fastlayers.engine.program import OpKind, lower
from fastlayers.engine.reference import ReferenceRunner
from fastlayers.initializers import RandomUniform
from fastlayers.layers import (Concatenate, Conv2D, Dense, Embedding, Flatten,
                               GroupNormalization, Input, PReLU, RepeatVector, Reshape)

from .test_executors import DTYPES, _pair, _team_of_two, _tol, _train_both

SPARSE = lambda: fl.losses.SparseCategoricalCrossentropy(from_logits=True)  # noqa: E731
VOCAB = 11


def _kinds(m):
    return [op["kind"] for op in m.step_program.describe()]


def _ids(rng, shape, dtype="float32", vocab=VOCAB):
    return rng.integers(0, vocab, size=shape).astype(dtype)


# ---------------------------------------------------------------- graphs
def _emb_float():
    inp = Input((5,))
    h = Embedding(VOCAB, 4, name="emb")(inp)                        # (5, 4)
    return fl.Model(inp, Dense(3)(Flatten()(Dense(6, activation="tanh")(h))))


def _emb_frozen():
    m = _emb_float()
    m.get_layer("emb").trainable = False
    return m


def _emb_int(dtype):
    def build():
        inp = Input((2, 3), dtype=dtype)
        h = Embedding(VOCAB, 5, name="emb")(Reshape((6,))(inp))     # ids through a view
        return fl.Model(inp, Dense(3)(Flatten()(h)))
    return build


def _emb_shared():
    a, b = Input((4,), dtype="int64"), Input((3,), dtype="int64")
    emb = Embedding(VOCAB, 3, name="twice")
    # One table, two uses: the second use's scatter adds into the same gradient.
    h = Concatenate(axis=1)([emb(a), emb(b)])                        # (7, 3)
    return fl.Model([a, b], Dense(3)(Flatten()(h)))


def _emb_sequential():
    return fl.Sequential([Embedding(VOCAB, 4, input_shape=(6,)), Flatten(), Dense(3)])


def _groupnorm():
    inp = Input((6, 8))
    h = Dense(8, activation="tanh")(inp)
    h = GroupNormalization(groups=4, name="gn")(h)
    h = GroupNormalization(groups=2, center=False, epsilon=0.1)(Dense(8, activation="tanh")(h))
    h = GroupNormalization(groups=8, scale=False)(Dense(8, activation="tanh")(h))
    h = GroupNormalization(groups=1)(Dense(8, activation="tanh")(h))
    return fl.Model(inp, Dense(3)(Flatten()(h)))


def _groupnorm_frozen():
    m = _groupnorm()
    m.get_layer("gn").trainable = False
    return m


def _groupnorm_images():
    inp = Input((5, 3, 6))
    h = Conv2D(6, 1, activation="tanh")(inp)
    gn = GroupNormalization(groups=3, name="twice")
    h = gn(Conv2D(6, 1, activation="tanh")(gn(h)))                 # shared: gradients add
    return fl.Model(inp, Dense(3)(Flatten()(h)))


def _prelu():
    inp = Input((4, 5, 3))
    h = Conv2D(3, 1)(inp)
    init = RandomUniform(-0.5, 0.5)
    h = PReLU(init, shared_axes=[1, 2], name="pr")(h)               # one slope per channel
    h = PReLU(init)(Conv2D(3, 1)(h))                                # one per value
    h = PReLU(init, shared_axes=[3])(Conv2D(3, 1)(h))               # one per pixel
    h = PReLU(init, shared_axes=(1, 2, 3))(Conv2D(3, 1)(h))         # one slope
    return fl.Model(inp, Dense(3)(Flatten()(h)))


def _prelu_shared():
    inp = Input((7,))
    pr = PReLU(RandomUniform(-0.5, 0.5), name="twice")
    h = pr(Dense(7)(pr(Dense(7)(inp))))
    return fl.Model(inp, Dense(3)(h))


def _prelu_frozen():
    m = _prelu()
    m.get_layer("pr").trainable = False
    return m


def _repeat():
    inp = Input((5,))
    h = RepeatVector(3)(inp)                                         # on the input: no dX
    h = Dense(4, activation="tanh")(h)                               # (3, 4)
    rv = RepeatVector(2, name="twice")
    g = Dense(4, activation="tanh")(Flatten()(h))
    h = Concatenate(axis=1)([rv(g), rv(Dense(4)(g))])                # (4, 4)
    return fl.Model(inp, Dense(3)(Flatten()(h)))


def _float_x(rng, n, shape):
    return rng.standard_normal((n,) + shape)


GRAPHS = {
    # name: (build, x maker, native kinds expected)
    "emb_float": (_emb_float, lambda r, n: _ids(r, (n, 5)), "embedding"),
    "emb_frozen": (_emb_frozen, lambda r, n: _ids(r, (n, 5)), "embedding"),
    "emb_int32": (_emb_int("int32"), lambda r, n: _ids(r, (n, 2, 3), "int32"), "embedding"),
    "emb_int64": (_emb_int("int64"), lambda r, n: _ids(r, (n, 2, 3), "int64"), "embedding"),
    "emb_shared": (_emb_shared, lambda r, n: [_ids(r, (n, 4), "int64"),
                                              _ids(r, (n, 3), "int64")], "embedding"),
    "emb_sequential": (_emb_sequential, lambda r, n: _ids(r, (n, 6)), "embedding"),
    "groupnorm": (_groupnorm, lambda r, n: _float_x(r, n, (6, 8)), "groupnorm"),
    "groupnorm_frozen": (_groupnorm_frozen, lambda r, n: _float_x(r, n, (6, 8)), "groupnorm"),
    "groupnorm_images": (_groupnorm_images, lambda r, n: _float_x(r, n, (5, 3, 6)), "groupnorm"),
    "prelu": (_prelu, lambda r, n: _float_x(r, n, (4, 5, 3)), "prelu"),
    "prelu_shared": (_prelu_shared, lambda r, n: _float_x(r, n, (7,)), "prelu"),
    "prelu_frozen": (_prelu_frozen, lambda r, n: _float_x(r, n, (4, 5, 3)), "prelu"),
    "repeat": (_repeat, lambda r, n: _float_x(r, n, (5,)), "concat"),
}


@pytest.mark.parametrize("name", list(GRAPHS))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 7])
def test_compiled_equals_twin(name, dtype, n):
    build, make_x, kind = GRAPHS[name]
    a, b = _pair(build, "adam", SPARSE(), dtype)
    rng = np.random.default_rng(3)
    x = make_x(rng, n)
    y = rng.integers(0, 3, size=n)
    kinds = _kinds(a)
    assert kind in kinds and "callback" not in kinds, kinds
    # sgd and adam both run the same ops; adam compares the moments too.
    _train_both(a, b, x, y, steps=3, dtype=dtype)


def test_shared_and_frozen_flags():
    fl.backend.clear_session()
    m = _emb_shared()
    m.compile("adam", SPARSE())
    embs = [op for op in m.step_program.ops if op.kind == OpKind.EMBEDDING]
    assert len(embs) == 2 and all(op.train == (True,) for op in embs)
    assert sorted(op.acc_grad for op in embs) == [(False,), (True,)]    # R8
    assert not any(op.want_dx[0] for op in embs)                        # ids: no gradient
    m = _emb_frozen()
    m.compile("adam", SPARSE())
    op = next(op for op in m.step_program.ops if op.kind == OpKind.EMBEDDING)
    assert op.train == (False,) and not op.backward
    assert m.step_program.describe()[0]["kind"] == "embedding"


# ---------------------------------------------------------------- against direct forward
def _single(layer, shape, dtype, in_dtype=None):
    inp = Input(shape, dtype=in_dtype or dtype)
    return fl.Model(inp, layer(inp))


CASES = {
    "embedding": (lambda: Embedding(VOCAB, 4), (3, 2), lambda r, n, dt: _ids(r, (n, 3, 2), dt)),
    "groupnorm": (lambda: GroupNormalization(groups=3, epsilon=0.01), (4, 5, 6),
                  lambda r, n, dt: r.standard_normal((n, 4, 5, 6)).astype(dt) * 3 + 1),
    "groupnorm_flat": (lambda: GroupNormalization(groups=2), (6,),
                       lambda r, n, dt: r.standard_normal((n, 6)).astype(dt)),
    "prelu": (lambda: PReLU(RandomUniform(-1, 1), shared_axes=[2]), (3, 4, 5),
              lambda r, n, dt: r.standard_normal((n, 3, 4, 5)).astype(dt)),
    "repeat": (lambda: RepeatVector(4), (5,),
               lambda r, n, dt: r.standard_normal((n, 5)).astype(dt)),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("dtype", DTYPES)
def test_outputs_and_gradients_equal_direct_forward(case, dtype):
    make, shape, make_x = CASES[case]
    fl.backend.clear_session()
    fl.backend.set_floatx(dtype)
    fl.utils.set_random_seed(5)
    layer = make()
    m = _single(layer, shape, dtype)
    prog = lower(m, training=True, vjp=True)
    assert "callback" not in [op["kind"] for op in prog.describe()]
    rng = np.random.default_rng(1)
    n = 5
    x = make_x(rng, n, dtype)
    tol = _tol(dtype)
    y, bp = layer.forward(x, training=True)
    np.testing.assert_allclose(m.predict_on_batch(x), y, **tol)
    g = rng.standard_normal(y.shape).astype(dtype)
    res = bp(g)
    dx_direct, dws_direct = res if isinstance(res, tuple) else (res, [])
    r = VJPRunner(prog)
    np.testing.assert_allclose(r.forward([x])[0], y, **tol)
    dxs, dws = r.backward([g])
    np.testing.assert_allclose(dxs[0], dx_direct, **tol)
    for w, d in zip(layer.weights, dws_direct):
        np.testing.assert_allclose(dws[id(w)], d, err_msg=w.name, **tol)
    # The twin on the same program.
    outs, dxs2, dws2 = ReferenceRunner(prog).vjp([x], [g])
    np.testing.assert_allclose(outs[0], y, **tol)
    np.testing.assert_allclose(dxs2[0], dx_direct, **tol)
    for w, d in zip(layer.weights, dws_direct):
        np.testing.assert_allclose(dws2[id(w)], d, err_msg=w.name, **tol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_float_ids_round_as_forward(dtype):
    fl.backend.clear_session()
    fl.backend.set_floatx(dtype)
    layer = Embedding(VOCAB, 3)
    m = _single(layer, (4,), dtype)
    x = np.array([[0.4, 1.6, 2.5, 10.49], [3.5, -0.3, 9.0, 7.2]], dtype)
    np.testing.assert_array_equal(m.predict_on_batch(x), layer.forward(x)[0])


def test_groupnorm_twin_against_layer_kernel_path():
    # The new twin of fastlayers/_reference.py against the layer-norm route of forward.
    rng = np.random.default_rng(0)
    X = rng.standard_normal((3, 7, 6))
    gamma, beta = rng.standard_normal(6), rng.standard_normal(6)
    Y = np.empty_like(X)
    mean, inv = np.empty(9), np.empty(9)
    ref.groupnorm_forward(X, 3, gamma, beta, 1e-3, Y, mean, inv)
    grouped = X.reshape(3, 7, 3, 2).transpose(0, 2, 1, 3).reshape(9, -1)
    m = grouped.mean(axis=1)
    xhat = (grouped - m[:, None]) / np.sqrt(grouped.var(axis=1)[:, None] + 1e-3)
    want = xhat.reshape(3, 3, 7, 2).transpose(0, 2, 1, 3).reshape(3, 7, 6) * gamma + beta
    np.testing.assert_allclose(Y, want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(mean, m, rtol=1e-12)


# ---------------------------------------------------------------- bad ids
def _state(m):
    return [w.numpy().copy() for w in m.weights], m.optimizer.iterations


def _same_state(m, before):
    ws, it = before
    for w, v in zip(m.weights, ws):
        np.testing.assert_array_equal(w.numpy(), v)
    assert m.optimizer.iterations == it


@pytest.mark.parametrize("in_dtype", ["float32", "int32", "int64"])
@pytest.mark.parametrize("bad", [VOCAB, -1, "nan"])
def test_bad_ids_refused_and_nothing_changes(in_dtype, bad):
    if bad == "nan" and in_dtype != "float32":
        pytest.skip("integer inputs cannot hold NaN")
    fl.backend.clear_session()
    fl.backend.set_floatx("float32")
    inp = Input((5,), dtype=in_dtype)
    m = fl.Model(inp, Dense(3)(Flatten()(Embedding(VOCAB, 4, name="lookup")(inp))))
    m.compile(fl.optimizers.Adam(0.01), SPARSE())
    rng = np.random.default_rng(0)
    x = _ids(rng, (6, 5), in_dtype)
    y = rng.integers(0, 3, size=6).astype(np.int64)
    m.train_on_batch(x, y)
    # Integer (or float) ids already in the program's form take the one-call path.
    assert m._compiled.train.fast_form(x, y)
    assert m._compiled.train.try_fast(x, y) is not None
    xb = x.copy()
    xb[2, 3] = np.nan if bad == "nan" else bad
    before = _state(m)
    for call in (lambda: m.train_on_batch(xb, y),                # fast path (x in form)
                 lambda: m.train_on_batch(xb.tolist(), y),       # converted first
                 lambda: m.train_on_batch(xb, y, sample_weight=np.ones(6)),
                 lambda: m.fit(xb, y, batch_size=3, epochs=1, verbose=0),
                 lambda: m.predict_on_batch(xb),
                 lambda: m.evaluate(xb, y, verbose=0)):
        with pytest.raises(ValueError, match="lookup.*Embedding.*0, 11"):
            call()
        _same_state(m, before)
    twin = ReferenceRunner(m.step_program, m.optimizer)
    with pytest.raises(ValueError, match="lookup"):
        twin.train_step(m._standardize_x(xb, "t"), [y])
    _same_state(m, before)
    # A good batch still trains.
    m.train_on_batch(x, y)
    assert m.optimizer.iterations == before[1] + 1


def test_bad_ids_refused_in_eager_calls():
    fl.backend.clear_session()
    layer = Embedding(VOCAB, 2, name="lookup")
    inp = Input((3,), dtype="int64")
    m = fl.Model(inp, layer(inp))
    with pytest.raises(ValueError):
        layer.forward(np.array([[VOCAB]]))
    with pytest.raises(ValueError, match="lookup"):
        layer(np.array([[VOCAB]]))      # an eager call of the layer: a one-op program
    with pytest.raises(ValueError, match="lookup"):
        m(np.array([[1, 2, VOCAB]]))
    np.testing.assert_array_equal(m(np.array([[1, 2, 3]])),
                                  layer.embeddings.numpy()[[[1, 2, 3]]])


# ---------------------------------------------------------------- integer inputs
def test_integer_input_feeds_only_embeddings():
    fl.backend.clear_session()
    inp = Input((4,), dtype="int32")
    m = fl.Model(inp, Dense(2)(inp))
    with pytest.raises(TypeError, match="integer input"):
        m.predict(np.zeros((2, 4), np.int32), verbose=0)
    with pytest.raises(ValueError, match="dtype must be"):
        Input((4,), dtype="int16")
    with pytest.raises(ValueError, match="dtype must be"):
        Dense(2, dtype="int32")


def test_integer_input_data_must_fit():
    fl.backend.clear_session()
    inp = Input((2,), dtype="int32")
    m = fl.Model(inp, Embedding(VOCAB, 2)(inp))
    assert m.dtype == fl.backend.floatx()
    with pytest.raises(ValueError, match="int32"):
        m.predict(np.array([[1, 2**33 + 1]], np.int64), verbose=0)
    # Float ids into an integer input are cast as Keras does.
    np.testing.assert_array_equal(m.predict(np.array([[1.0, 2.0]]), verbose=0),
                                  m.predict(np.array([[1, 2]], np.int32), verbose=0))


def test_integer_input_config_round_trip():
    fl.backend.clear_session()
    inp = Input((3,), dtype="int64", name="ids")
    m = fl.Model(inp, Dense(2)(Flatten()(Embedding(VOCAB, 2)(inp))))
    m2 = fl.Model.from_config(m.get_config())
    assert str(m2.inputs[0].dtype) == "int64"
    m2.set_weights(m.get_weights())
    x = np.array([[1, 2, 3], [4, 5, 6]])
    np.testing.assert_allclose(m2.predict(x, verbose=0), m.predict(x, verbose=0))


def test_computed_ids_run_as_callback():
    # Ids made by another op (a concatenation) are not there before the step: the
    # layer's own forward runs (and checks them) as a callback.
    fl.backend.clear_session()
    a, b = Input((2,)), Input((3,))
    m = fl.Model([a, b], Flatten()(Embedding(VOCAB, 2, name="late")(Concatenate()([a, b]))))
    m.compile("sgd", "mse")
    assert "callback" in _kinds(m)
    x = [np.array([[1.0, 2.0]]), np.array([[3.0, 4.0, 5.0]])]
    np.testing.assert_array_equal(m.predict_on_batch(x),
                                  m.get_layer("late").embeddings.numpy()[[1, 2, 3, 4, 5]]
                                  .reshape(1, -1))
    with pytest.raises(ValueError):
        m.predict_on_batch([x[0], np.array([[3.0, 4.0, 50.0]])])


def test_eager_call_keeps_integer_ids_exact():
    fl.backend.clear_session()
    fl.backend.set_floatx("float32")
    vocab = 2**24 + 3                     # float32 cannot tell 2**24 + 1 from 2**24
    layer = Embedding(vocab, 1, embeddings_initializer="zeros")
    layer.build((None, 1))
    layer.embeddings.value[2**24 + 1] = 1.0
    for ids in (np.array([[2**24 + 1]]), np.array([[2**24 + 1]], np.uint32)):
        assert layer(ids)[0, 0, 0] == 1.0
    assert layer(np.array([[2.0]]))[0, 0, 0] == 0.0


@pytest.mark.parametrize("in_dtype", ["float32", "int32"])
def test_strided_and_read_only_ids(in_dtype):
    fl.backend.clear_session()
    fl.backend.set_floatx("float32")
    inp = Input((3,), dtype=in_dtype)
    layer = Embedding(VOCAB, 2)
    m = fl.Model(inp, layer(inp))
    big = _ids(np.random.default_rng(2), (8, 6), in_dtype)
    x = big[::2, ::2]                     # strided
    x.flags.writeable = False
    np.testing.assert_array_equal(m.predict_on_batch(x), layer.forward(x)[0])
    m.compile("sgd", "mse")
    m.train_on_batch(x, np.zeros((4, 3, 2), np.float32))


def _one_op(kind, in_size, out_size, d_out):
    from fastlayers._kernels.executor import Executor

    ex = Executor(True, 2, np.array([in_size, out_size], np.intp), 1, 0, 0)
    flags = np.zeros(1, np.uint8)
    ex.set_op(0, int(kind), 0, np.array([0], np.intc), np.array([1], np.intc), flags, flags,
              False, 0, d_out, 0)
    return ex


def test_executor_setters_refuse_mismatched_ops():
    ex = _one_op(OpKind.PRELU, 6, 6, 3)
    with pytest.raises(ValueError, match="slope index"):
        ex.set_prelu(0, np.array([0, 1, 2, 0, 1, 5], np.intp), 3)
    with pytest.raises(ValueError, match="one slope index"):
        ex.set_prelu(0, np.array([0, 1, 2], np.intp), 3)
    with pytest.raises(ValueError, match="not a GROUPNORM"):
        ex.set_groupnorm(0, 1, 1e-3)
    with pytest.raises(ValueError, match="not an EMBEDDING"):
        ex.set_embedding(0, 4, 0)
    ex = _one_op(OpKind.GROUPNORM, 6, 6, 3)
    with pytest.raises(ValueError, match="groups"):
        ex.set_groupnorm(0, 2, 1e-3)
    with pytest.raises(ValueError, match="epsilon"):
        ex.set_groupnorm(0, 3, -1.0)
    ex = _one_op(OpKind.EMBEDDING, 3, 12, 4)
    with pytest.raises(ValueError, match="ids kind"):
        ex.set_embedding(0, 5, 9)
    with pytest.raises(ValueError, match="table"):
        _one_op(OpKind.EMBEDDING, 3, 10, 4).set_embedding(0, 5, 0)
    ex.set_embedding(0, 5, 3)


@pytest.mark.parametrize("dtype", DTYPES)
def test_table_shared_by_a_native_and_a_callback_use(dtype):
    # One Embedding on a model input (EMBEDDING op) and on computed ids (a callback):
    # one gradient buffer, whichever runs first in backward writes it, the other adds.
    def build():
        a, b = Input((2,)), Input((3,))
        emb = Embedding(VOCAB, 3, name="twice")
        h = Concatenate(axis=1)([emb(a), emb(Concatenate()([a, b]))])   # (7, 3)
        return fl.Model([a, b], Dense(3)(Flatten()(h)))

    m1, m2 = _pair(build, "adam", SPARSE(), dtype)
    assert {"embedding", "callback"} <= set(_kinds(m1))
    rng = np.random.default_rng(4)
    x = [_ids(rng, (6, 2), dtype), _ids(rng, (6, 3), dtype)]
    _train_both(m1, m2, x, rng.integers(0, 3, size=6), steps=3, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_large_groupnorm_splits_over_threads(dtype):
    """Values enough for the threaded branches of _groupnorm.pxd (samples, and the
    dgamma channel blocks of over 64 channels), a shared use adding into gamma's
    gradient; the result does not depend on the team."""
    def build():
        inp = Input((40, 130))
        gn = GroupNormalization(groups=13, name="wide")
        h = Dense(130, activation="tanh")(gn(inp))
        return fl.Model(inp, Dense(4)(Flatten()(gn(h))))
    with _team_of_two():
        a, b = _pair(build, "sgd", SPARSE(), dtype)
        assert "callback" not in _kinds(a)
        rng = np.random.default_rng(8)
        x = rng.normal(size=(8, 40, 130)).astype(dtype)   # 41600 values per op
        _train_both(a, b, x, rng.integers(0, 4, 8), steps=2, dtype=dtype)
