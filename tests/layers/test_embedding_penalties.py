"""Embedding's Keras arguments embeddings_regularizer and embeddings_constraint: the
penalty in model.losses, in the step's loss and gradient, the constraint after each
update, the frozen-weight rule, the config, and the Keras file format."""
import numpy as np
import pytest

import fastlayers as fl
from fastlayers import layers as L
from fastlayers import regularizers as R


def _model(emb, seed=0):
    inp = fl.Input((3,), dtype="int32")
    m = fl.Model(inp, L.Dense(2, name="head")(L.Flatten()(emb(inp))))
    m.compile(fl.optimizers.SGD(0.1), "mse")
    rng = np.random.default_rng(seed)
    m.set_weights([rng.standard_normal(w.shape) * 0.5 for w in m.weights])
    return m


def _data():
    rng = np.random.default_rng(1)
    return rng.integers(0, 7, (5, 3)).astype(np.int32), rng.standard_normal((5, 2))


def test_penalty_is_in_losses_loss_and_gradient(float64):
    reg = R.L1L2(l1=0.05, l2=0.1)
    emb, plain = L.Embedding(7, 4, embeddings_regularizer=reg), L.Embedding(7, 4)
    m, twin = _model(emb), _model(plain)
    assert emb.embeddings.regularizer is reg
    W0 = emb.embeddings.numpy().copy()
    assert m.losses == [pytest.approx(reg.penalty(W0))]
    x, y = _data()
    assert m.train_on_batch(x, y) == pytest.approx(twin.train_on_batch(x, y) + reg.penalty(W0),
                                                   rel=1e-12)
    # Every row moves by lr * the penalty's gradient beyond the plain twin's update.
    np.testing.assert_allclose(emb.embeddings.numpy(),
                               plain.embeddings.numpy() - 0.1 * reg.gradient(W0),
                               rtol=1e-10, atol=1e-12)


def test_constraint_projects_after_each_update(float64):
    con = fl.constraints.MaxNorm(0.2)
    emb, plain = L.Embedding(7, 4, embeddings_constraint=con), L.Embedding(7, 4)
    m, twin = _model(emb), _model(plain)
    x, y = _data()
    for _ in range(2):
        twin.set_weights(m.get_weights())
        m.train_on_batch(x, y)
        twin.train_on_batch(x, y)
        np.testing.assert_allclose(emb.embeddings.numpy(), con(plain.embeddings.numpy()),
                                   rtol=1e-12)


def test_frozen_embedding_reports_its_penalty_without_gradient_or_constraint(float64):
    reg = R.L2(0.3)
    emb = L.Embedding(7, 4, embeddings_regularizer=reg, embeddings_constraint="non_neg")
    m = _model(emb)
    emb.trainable = False
    m.compile(fl.optimizers.SGD(0.1), "mse")
    before = emb.embeddings.numpy().copy()
    assert (before < 0).any()  # the constraint would change it
    x, y = _data()
    first = m.evaluate(x, y, verbose=0)
    m.train_on_batch(x, y)
    np.testing.assert_array_equal(emb.embeddings.numpy(), before)
    assert m.losses == [pytest.approx(reg.penalty(before))]
    assert first > reg.penalty(before)


def test_config_round_trip_and_keras_names():
    emb = L.Embedding(7, 4, embeddings_regularizer="l2", embeddings_constraint="max_norm")
    cfg = emb.get_config()
    assert cfg["embeddings_regularizer"]["class_name"] == "L2"
    assert cfg["embeddings_constraint"]["class_name"] == "MaxNorm"
    again = L.Embedding.from_config(cfg)
    assert isinstance(again.embeddings_regularizer, R.L2)
    assert "embeddings_regularizer" not in L.Embedding(7, 4).get_config()


def test_keras_file_keeps_them(tmp_path):
    pytest.importorskip("h5py")
    emb = L.Embedding(7, 4, embeddings_regularizer=R.L2(0.01),
                      embeddings_constraint=fl.constraints.NonNeg(), name="emb")
    m = _model(emb)
    path = str(tmp_path / "m.keras")
    m.save(path, format="keras")
    back = fl.models.load_model(path)
    e = back.get_layer("emb")
    assert isinstance(e.embeddings_regularizer, R.L2) and e.embeddings_regularizer.l2 == 0.01
    assert isinstance(e.embeddings_constraint, fl.constraints.NonNeg)
    np.testing.assert_array_equal(e.get_weights()[0], emb.get_weights()[0])
    assert back.losses == [pytest.approx(m.losses[0])]
