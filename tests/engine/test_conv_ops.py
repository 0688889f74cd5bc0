"""Convolution and pooling as native ops of the step program (CONV, POOL).

Each graph trains a few steps on the compiled executor and on its NumPy twin
(engine/reference.py) from one seed, as tests/engine/test_executors.py does for the
dense ops; the programs are checked to hold CONV/POOL ops, not callbacks.
"""
import numpy as np
import pytest

import fastlayers as fl
from fastlayers.engine import executor as executor_mod
from fastlayers.layers import (Add, AveragePooling1D, AveragePooling2D, BatchNormalization,
                               Conv1D, Conv2D, Dense, Flatten, GlobalAveragePooling1D,
                               GlobalAveragePooling2D, GlobalMaxPooling1D, GlobalMaxPooling2D,
                               Input, MaxPooling1D, MaxPooling2D)

from .test_executors import (DTYPES, _check_kept_vs_chunked, _check_native_graph, _pair,
                             _team_of_two, _train_both)

SPARSE = lambda: fl.losses.SparseCategoricalCrossentropy(from_logits=True)  # noqa: E731


def _kinds(m):
    return [op["kind"] for op in m.step_program.describe()]


def _mnist_like():
    inp = Input((12, 12, 2))
    h = Conv2D(6, 3, activation="relu", name="c1")(inp)
    h = MaxPooling2D()(h)
    h = Conv2D(5, 3, activation="tanh", name="c2")(h)
    h = MaxPooling2D()(h)
    return fl.Model(inp, Dense(4, name="head")(Flatten()(h)))


def _odd_geometry():
    inp = Input((9, 7, 3))
    h = Conv2D(4, (2, 4), padding="same", strides=(2, 1), activation="gelu")(inp)  # even kernel
    h = Conv2D(3, 1)(h)                                                           # 1x1: direct
    h = Conv2D(5, 3, dilation_rate=2, padding="same", activation="elu")(h)
    h = Conv2D(4, 1, strides=3, use_bias=False)(h)                                # stride > kernel
    h = AveragePooling2D(3, strides=2, padding="same")(h)
    h = MaxPooling2D((1, 2), strides=(2, 1), padding="same")(h)
    return fl.Model(inp, Dense(4)(GlobalMaxPooling2D()(h)))


def _shared_conv_and_merge():
    inp = Input((8, 8, 2))
    conv = Conv2D(2, 3, padding="same", activation="relu", name="twice")
    h = conv(conv(inp))                         # one kernel, two uses: one summed gradient
    h = Add()([h, conv(inp)])                   # and a third use beside them
    h = BatchNormalization()(h)
    h = GlobalAveragePooling2D()(h)
    return fl.Model(inp, Dense(4)(h))


def _sequences():
    inp = Input((11, 3))
    h = Conv1D(4, 3, padding="causal", dilation_rate=2, activation="relu")(inp)
    h = Conv1D(4, 2, padding="same", strides=2)(h)
    h = MaxPooling1D(2, padding="same")(h)
    a = GlobalAveragePooling1D()(h)
    b = GlobalMaxPooling1D()(AveragePooling1D(2)(h))
    return fl.Model(inp, Dense(4)(fl.layers.Concatenate()([a, b])))


def _frozen_base():
    m = _mnist_like()
    m.get_layer("c1").trainable = False
    m.get_layer("c2").trainable = False
    return m


def _frozen_first():
    m = _mnist_like()
    m.get_layer("c1").trainable = False
    return m


GRAPHS = {
    "mnist_like": (_mnist_like, (12, 12, 2)),
    "odd_geometry": (_odd_geometry, (9, 7, 3)),
    "shared_conv_and_merge": (_shared_conv_and_merge, (8, 8, 2)),
    "sequences": (_sequences, (11, 3)),
    "frozen_base": (_frozen_base, (12, 12, 2)),
    "frozen_first": (_frozen_first, (12, 12, 2)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opt", ["sgd", "adam"])
@pytest.mark.parametrize("graph", list(GRAPHS))
def test_conv_graphs_match_the_twin(graph, opt, dtype):
    build, shape = GRAPHS[graph]
    _check_native_graph(build, shape, ("conv", "pool"), opt, dtype, seed=3)


@pytest.mark.parametrize("dtype", DTYPES)
def test_chunked_im2col_equals_the_kept_one(monkeypatch, dtype):
    """A trained kernel keeps the batch's im2col for dW when it fits; in chunks (the
    im2col run again in backward) the step is the same."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 12, 12, 2)).astype(dtype)
    y = rng.integers(0, 4, 6)
    _check_kept_vs_chunked(monkeypatch, _mnist_like, x, y, dtype)


def test_frozen_convolutions_compute_no_gradient():
    """R9 on the program: nothing runs backward below the lowest trained op."""
    fl.backend.clear_session()
    m = _frozen_base()
    m.compile("sgd", SPARSE())
    ops = m.step_program.describe()
    assert [o["backward"] for o in ops if o["kind"] in ("conv", "pool")] == [False] * 2
    # Neither runs backward, so each max pooling is fused into its convolution.
    assert [o["pool"] for o in ops if o["kind"] == "conv"] == [fl._codes.POOL_MAX] * 2
    assert "pool" not in [o["kind"] for o in ops]
    m = _frozen_first()
    m.compile("sgd", SPARSE())
    c1 = [o for o in m.step_program.describe() if o["kind"] == "conv"][0]
    assert c1["backward"] is False
    c2 = [o for o in m.step_program.describe() if o["kind"] == "conv"][1]
    assert c2["backward"] and c2["want_dx"] == [False]


def test_max_pool_gradient_goes_to_the_first_maximum_and_nan_propagates():
    """Ties and NaN as the argmax kernel records them (the executor finds them again)."""
    fl.backend.clear_session()
    fl.backend.set_floatx("float64")
    inp = Input((2, 4, 1))
    m = fl.Model(inp, MaxPooling2D(2)(inp))
    x = np.array([[[[1.0], [1.0], [2.0], [np.nan]], [[0.0], [1.0], [np.nan], [5.0]]]])
    y, bp = m.forward(x, training=True)
    np.testing.assert_array_equal(y.reshape(-1), [1.0, np.nan])
    dx = np.asarray(bp(np.array([[[[3.0], [7.0]]]]))).reshape(2, 4)
    np.testing.assert_array_equal(dx, [[3.0, 0, 0, 7.0], [0, 0, 0, 0]])
    # The argmax kernel (a direct call of the layer) agrees.
    arg = fl.ops.max_pool2d_forward(x, 2)[1]
    np.testing.assert_array_equal(
        fl.ops.max_pool2d_backward(np.array([[[[3.0], [7.0]]]]), arg, x.shape).reshape(2, 4), dx)
    fl.backend.set_floatx("float32")


def test_bad_image_shapes_are_refused_and_change_nothing():
    fl.backend.clear_session()
    m = _mnist_like()
    m.compile("adam", SPARSE())
    before = [w.copy() for w in m.get_weights()]
    with pytest.raises(ValueError):
        m.train_on_batch(np.zeros((4, 12, 11, 2), np.float32), np.zeros(4, np.int64))
    with pytest.raises(ValueError):
        m.train_on_batch(np.zeros((4, 12, 12, 2), np.float32), np.full(4, 9))
    for u, v in zip(before, m.get_weights()):
        np.testing.assert_array_equal(u, v)
    assert m.optimizer.iterations == 0


@pytest.mark.parametrize("n", [1, 3])
def test_a_large_image_splits_each_product_when_samples_are_fewer_than_threads(n):
    """Batch 1 (or fewer samples than threads): the split path equals the twin."""
    def build():
        inp = Input((40, 40, 8))
        h = Conv2D(16, 3, padding="same", activation="relu", name="c1")(inp)
        h = Conv2D(16, 3, name="c2")(h)
        return fl.Model(inp, Dense(4)(GlobalAveragePooling2D()(h)))

    fl.backend.clear_session()
    a, b = _pair(build, "sgd", SPARSE(), "float64")
    rng = np.random.default_rng(1)
    x = rng.normal(size=(n, 40, 40, 8))
    _train_both(a, b, x, rng.integers(0, 4, n), steps=2, dtype="float64")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("parts", [True, False], ids=["thread-sums", "split-products"])
def test_backward_per_thread_or_split_equals_the_twin(monkeypatch, dtype, parts):
    """With room for the second thread's partial dW/db, each thread runs its samples'
    backward end to end; without it (a runner sized for one core) the products are
    split over the team.  Both equal the twin, shared kernels (R8) included."""
    if not parts:
        monkeypatch.setattr(executor_mod, "_partial_sum_threads", lambda: 0)
    with _team_of_two():
        for build, shape in ((_wide, (18, 18, 8)), (_shared_conv_and_merge, (8, 8, 2))):
            _check_native_graph(build, shape, ["conv"], "adam", dtype, seed=11)


def _wide():
    """Convolutions big enough for a team (above SPLIT_MIN_MADDS at batch 5), one shared."""
    inp = Input((18, 18, 8))
    h = Conv2D(16, 3, activation="relu", name="c1")(inp)
    h = MaxPooling2D()(h)
    shared = Conv2D(16, 3, padding="same", name="twice")
    h = shared(shared(h))
    return fl.Model(inp, Dense(4)(GlobalAveragePooling2D()(h)))
