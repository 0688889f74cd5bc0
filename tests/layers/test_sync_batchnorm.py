"""BatchNormalization(synchronized=True) on one process: the plain layer, whichever way
it is lowered (the native op outside an MPI launcher, the NumPy callback op inside one)."""
import numpy as np
import pytest

import fastlayers as fl
import fastlayers.layers.normalization as normalization
from fastlayers.layers import BatchNormalization, Dense, Flatten


def test_synchronized_argument_default_and_config():
    assert BatchNormalization().synchronized is False
    bn = BatchNormalization(synchronized=True)
    assert bn.get_config()["synchronized"] is True
    assert BatchNormalization.from_config(bn.get_config()).synchronized is True
    with pytest.raises(TypeError, match="synchronized must be a bool"):
        BatchNormalization(synchronized="yes")


def _fit(monkeypatch, callback, axis, shape, dtype):
    monkeypatch.setattr(normalization, "_may_synchronize", lambda: callback)
    fl.backend.set_floatx(dtype)
    fl.utils.set_random_seed(3)
    inp = fl.Input(shape)
    h = Dense(8, activation="tanh")(inp) if len(shape) == 1 else inp
    h = BatchNormalization(axis=axis, synchronized=True, momentum=0.8, name="bn")(h)
    if len(shape) > 1:
        h = Flatten()(h)
    m = fl.Model(inp, Dense(3)(h))
    m.compile(fl.optimizers.Adam(0.01),
              fl.losses.SparseCategoricalCrossentropy(from_logits=True))
    kinds = {op.kind.name for op in m.step_program.ops if op.layer.name == "bn"}
    assert ("CALLBACK" in kinds) == callback
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40,) + shape).astype(dtype)
    y = rng.integers(0, 3, 40)
    fl.utils.set_random_seed(9)
    m.fit(x, y, batch_size=16, epochs=2, verbose=0)
    return m.get_weights() + [m.predict(x, verbose=0), m(x[:7], training=True)]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("axis,shape", [(-1, (6,)), (1, (3, 4))])
def test_callback_path_equals_native_op(monkeypatch, dtype, axis, shape):
    try:
        native = _fit(monkeypatch, False, axis, shape, dtype)
        numpy = _fit(monkeypatch, True, axis, shape, dtype)
    finally:
        fl.backend.set_floatx("float32")
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == "float64" else dict(rtol=2e-4, atol=2e-5)
    for a, b in zip(numpy, native):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), **tol)


def test_frozen_synchronized_bn_is_the_native_inference_op(monkeypatch):
    monkeypatch.setattr(normalization, "_may_synchronize", lambda: True)
    inp = fl.Input((4,))
    bn = BatchNormalization(synchronized=True)
    m = fl.Model(inp, Dense(2)(bn(inp)))
    bn.trainable = False
    m.compile("sgd", "mse")
    ops = [op for op in m.step_program.ops if op.layer is bn]
    assert [op.kind.name for op in ops] == ["BATCHNORM"] and not ops[0].batch_stats
