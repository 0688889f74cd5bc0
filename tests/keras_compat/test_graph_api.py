"""The graph as Keras exposes it: layer.input/output/input_shape/output_shape and
get_*_at(i) on layers, models and Sequential; feature extractors built from a base
model's tensors share its layers with R1-R4 intact (Keras 2.2.4 semantics)."""
import warnings

import numpy as np
import pytest

import fastlayers as fl
from fastlayers.layers import BatchNormalization, Dense, Dropout


def base_model():
    x = fl.Input((6,), name="x")
    h = Dense(8, activation="relu", name="block1")(x)
    h = Dense(5, activation="relu", name="block2")(h)
    y = Dense(3, activation="softmax", name="head")(h)
    return fl.Model(x, y, name="base")


def data(n=32, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 6)).astype("float32"), rng.integers(0, 3, n)


# --------------------------------------------------------------------------- layers
def test_layer_input_output_and_shapes_of_one_call():
    a = fl.Input((4,))
    d = Dense(3)
    y = d(a)
    assert d.input is a and d.output is y
    assert d.get_input_at(0) is a and d.get_output_at(0) is y
    assert d.input_shape == (None, 4) and d.output_shape == (None, 3)
    assert d.get_input_shape_at(0) == (None, 4) and d.get_output_shape_at(0) == (None, 3)


def test_shared_layer_output_is_ill_defined_with_keras_message():
    a, b = fl.Input((4,)), fl.Input((4,))
    d = Dense(3, name="shared")
    ya, yb = d(a), d(b)
    with pytest.raises(AttributeError, match='Layer shared has multiple inbound nodes, hence the '
                                             'notion of "layer output" is ill-defined. Use '
                                             '`get_output_at\\(node_index\\)` instead.'):
        d.output
    with pytest.raises(AttributeError, match='"layer input" is ill-defined'):
        d.input
    assert d.get_output_at(0) is ya and d.get_output_at(1) is yb
    assert d.get_input_at(1) is b
    # Same shapes at every node: the shapes stay well defined (Keras 2).
    assert d.input_shape == (None, 4) and d.output_shape == (None, 3)
    with pytest.raises(ValueError, match="only 2 inbound nodes"):
        d.get_output_at(2)


def test_shared_layer_with_different_shapes_has_no_single_shape():
    from fastlayers.layers import Activation

    act = Activation("relu", name="act")
    act(fl.Input((4,)))
    act(fl.Input((7,)))
    with pytest.raises(AttributeError, match="get_input_shape_at"):
        act.input_shape
    with pytest.raises(AttributeError, match="get_output_shape_at"):
        act.output_shape
    assert act.get_input_shape_at(1) == (None, 7)
    assert act.get_output_shape_at(0) == (None, 4)


def test_uncalled_layer_errors_are_keras_s():
    d = Dense(2, name="lonely")
    with pytest.raises(AttributeError, match="Layer lonely is not connected, no input to return."):
        d.input
    with pytest.raises(AttributeError, match="Layer lonely has no inbound nodes."):
        d.output
    with pytest.raises(AttributeError, match="no defined output shape"):
        d.output_shape
    with pytest.raises(RuntimeError, match="has never been called"):
        d.get_output_at(0)


def test_multi_input_layer_gives_lists():
    from fastlayers.layers import Concatenate

    a, b = fl.Input((2,)), fl.Input((3,))
    cat = Concatenate()
    y = cat([a, b])
    assert cat.input == [a, b] and cat.output is y
    assert cat.input_shape == [(None, 2), (None, 3)] and cat.output_shape == (None, 5)


def test_input_layer_input_is_its_output():
    x = fl.Input((3,), name="inp")
    m = fl.Model(x, Dense(1)(x))
    il = m.layers[0]
    assert il.input is x and il.output is x
    assert il.input_shape == (None, 3) and il.output_shape == (None, 3)


# --------------------------------------------------------------------------- models
def test_model_input_output_and_node_zero():
    m = base_model()
    assert m.input is m.inputs[0] and m.output is m.outputs[0]
    assert m.get_input_at(0) is m.input and m.get_output_at(0) is m.output
    assert m.input_shape == (None, 6) and m.output_shape == (None, 3)
    z = fl.Input((6,))
    y = m(z)
    # Keras 2: node 0 is the model's own graph, node 1 its call on z.
    assert m.get_input_at(1) is z and m.get_output_at(1) is y
    # As tf.keras and Keras 3, a model's own input/output stay defined when it is reused.
    assert m.output is m.outputs[0]
    # The inner layers are not re-called by a call of the model: one node each.
    assert m.get_layer("block2").output is m.get_layer("head").input


def test_sequential_layers_have_one_node_each_after_adds():
    m = fl.Sequential()
    m.add(Dense(4, input_shape=(3,), name="s1"))
    m.add(Dense(5, name="s2"))
    m.add(Dense(2, name="s3"))
    s1, s2, s3 = m.layers
    assert s1.output is s2.input and s2.output is s3.input
    assert s3.output is m.output and m.input is s1.input
    assert [l.output_shape for l in m.layers] == [(None, 4), (None, 5), (None, 2)]
    m.pop()
    assert m.output is s2.output
    with pytest.raises(AttributeError, match="has no inbound nodes"):
        s3.output


def test_sequential_built_from_data_exposes_the_graph():
    m = fl.Sequential([Dense(4, name="q1"), Dense(1, name="q2")])
    with pytest.raises(AttributeError):
        m.input
    m.predict(np.zeros((2, 7), "float32"), verbose=0)
    assert m.input_shape == (None, 7) and m.output_shape == (None, 1)
    assert m.layers[0].input is m.input


# --------------------------------------------------------------------------- feature extractors
def test_feature_extractor_shares_weights_with_the_base():
    base = base_model()
    feat = fl.Model(base.input, base.get_layer("block2").output, name="feat")
    assert [l.name for l in feat.layers] == ["x", "block1", "block2"]
    assert all(a is b for a, b in zip(feat.weights, base.weights[:4]))
    x, y = data()
    expected = np.maximum(np.maximum(x @ base.get_layer("block1").kernel.value
                                     + base.get_layer("block1").bias.value, 0)
                          @ base.get_layer("block2").kernel.value
                          + base.get_layer("block2").bias.value, 0)
    np.testing.assert_allclose(feat.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)
    # Training the base changes what the extractor computes (one set of weights).
    before = feat.predict(x, verbose=0)
    base.compile("sgd", "sparse_categorical_crossentropy")
    base.fit(x, y, epochs=2, verbose=0)
    assert not np.allclose(feat.predict(x, verbose=0), before)


def test_training_the_extractor_moves_the_base_and_keeps_the_head():
    base = base_model()
    feat = fl.Model(base.input, base.get_layer("block2").output)
    head = [w.numpy() for w in base.get_layer("head").weights]
    b1 = base.get_layer("block1").kernel.numpy()
    x, _ = data()
    feat.compile("sgd", "mse")
    feat.fit(x, np.ones((32, 5), "float32"), epochs=1, verbose=0)
    assert not np.array_equal(base.get_layer("block1").kernel.value, b1)
    for w, v in zip(base.get_layer("head").weights, head):
        np.testing.assert_array_equal(w.value, v)


def test_freeze_through_a_container_in_one_model_only():
    """R1/R3: the extractor wrapped in a frozen container; the base still trains it."""
    base = base_model()
    feat = fl.Model(base.input, base.get_layer("block2").output, name="feat")
    z = fl.Input((6,))
    new = fl.Model(z, Dense(2, name="new_head")(feat(z)), name="new")
    feat.trainable = False
    assert all(l.trainable for l in base.layers)  # R1: flags not pushed down
    assert [w.path for w in new.trainable_weights] == ["new_head/kernel", "new_head/bias"]
    assert len(base.trainable_weights) == 6
    x, y = data()
    new.compile("sgd", "mse")
    b1 = base.get_layer("block1").kernel.numpy()
    new.fit(x, np.ones((32, 2), "float32"), epochs=1, verbose=0)
    np.testing.assert_array_equal(base.get_layer("block1").kernel.value, b1)
    base.compile("sgd", "sparse_categorical_crossentropy")
    base.fit(x, y, epochs=1, verbose=0)
    assert not np.array_equal(base.get_layer("block1").kernel.value, b1)


def test_freezing_a_shared_layer_freezes_it_for_both_and_r4_warns():
    base = base_model()
    feat = fl.Model(base.input, base.get_layer("block2").output, name="feat")
    base.compile("sgd", "sparse_categorical_crossentropy")
    feat.compile("sgd", "mse")
    base.get_layer("block1").trainable = False
    assert "block1/kernel" not in [w.path for w in feat.trainable_weights]
    assert "block1/kernel" not in [w.path for w in base.trainable_weights]
    x, y = data()
    b1 = base.get_layer("block1").kernel.numpy()
    # R4: the compiled pictures still train block1, each model warns once.
    with pytest.warns(UserWarning, match="Model 'feat'"):
        feat.train_on_batch(x, np.ones((32, 5), "float32"))
    assert not np.array_equal(base.get_layer("block1").kernel.value, b1)
    feat.compile("sgd", "mse")
    b1 = base.get_layer("block1").kernel.numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        feat.train_on_batch(x, np.ones((32, 5), "float32"))
    np.testing.assert_array_equal(base.get_layer("block1").kernel.value, b1)


def test_extractor_of_a_model_with_batchnorm_keeps_r7():
    x = fl.Input((4,))
    h = Dense(6, name="d")(x)
    bn = BatchNormalization(name="bn")
    h = bn(h)
    out = Dense(1, name="o")(Dropout(0.5, name="drop")(h))
    base = fl.Model(x, out)
    feat = fl.Model(base.input, bn.output, name="bnfeat")
    feat.trainable = False
    z = fl.Input((4,))
    m = fl.Model(z, Dense(1, name="top")(feat(z)))
    m.compile("sgd", "mse")
    mm = bn.moving_mean.numpy()
    m.fit(np.random.default_rng(0).normal(size=(16, 4)).astype("float32"),
          np.zeros((16, 1), "float32"), epochs=1, verbose=0)
    np.testing.assert_array_equal(bn.moving_mean.value, mm)  # frozen BN: inference mode
    base.compile("sgd", "mse")
    base.fit(np.random.default_rng(0).normal(size=(16, 4)).astype("float32"),
             np.zeros((16, 1), "float32"), epochs=1, verbose=0)
    assert not np.array_equal(bn.moving_mean.value, mm)


def test_transfer_learning_idiom_from_the_keras_2_examples():
    """mnist_transfer_cnn's pattern: layers of one model reused in a new model."""
    feature_layers = [Dense(8, activation="relu", input_shape=(6,)), Dense(5, activation="relu")]
    classification_layers = [Dense(3, activation="softmax")]
    model = fl.Sequential(feature_layers + classification_layers)
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = data()
    model.fit(x, y, epochs=1, verbose=0)
    for l in feature_layers:
        l.trainable = False
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    frozen = [w.numpy() for l in feature_layers for w in l.weights]
    model.fit(x, y, epochs=1, verbose=0)
    for w, v in zip([w for l in feature_layers for w in l.weights], frozen):
        np.testing.assert_array_equal(w.value, v)
    assert model.layers[0].output_shape == (None, 8)
    assert model.layers[-1].input is model.layers[1].output


def test_feature_extractor_from_a_sequential_base():
    base = fl.Sequential([Dense(8, activation="relu", input_shape=(6,), name="b1"),
                          Dense(5, name="b2"), Dense(3, name="b3")])
    feat = fl.Model(inputs=base.input, outputs=base.get_layer("b2").output)
    assert [l.name for l in feat.layers][1:] == ["b1", "b2"]
    x, _ = data()
    h = np.maximum(x @ base.layers[0].kernel.value + base.layers[0].bias.value, 0)
    np.testing.assert_allclose(feat.predict(x, verbose=0),
                               h @ base.layers[1].kernel.value + base.layers[1].bias.value,
                               rtol=1e-5, atol=1e-6)
    # Several outputs at once, as the keras-io feature-extraction guide does.
    multi = fl.Model(base.input, [l.output for l in base.layers])
    outs = multi.predict(x, verbose=0)
    assert [o.shape for o in outs] == [(32, 8), (32, 5), (32, 3)]
    np.testing.assert_allclose(outs[-1], base.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_nested_sequential_layers_keep_one_node():
    inner = fl.Sequential([Dense(4, name="i1"), Dense(4, name="i2")])
    outer = fl.Sequential([Dense(4, input_shape=(3,), name="o1"), inner, Dense(1, name="o2")])
    assert inner.layers[0].output is inner.layers[1].input
    assert outer.layers[1].get_output_at(1) is outer.layers[2].input
    assert outer.output_shape == (None, 1)


# --------------------------------------------------------------------------- Keras 2.2.4's tests
def test_node_construction_as_keras_2_test_topology():
    """Keras 2.2.4 tests/keras/engine/test_topology.py::test_node_construction, ported."""
    a = fl.Input(shape=(32,), name="input_a")
    b = fl.Input(shape=(32,), name="input_b")
    assert a._keras_shape == (None, 32)
    a_layer, a_node_index, a_tensor_index = a._keras_history
    b_layer, b_node_index, b_tensor_index = b._keras_history
    assert len(a_layer._inbound_nodes) == 1
    assert a_tensor_index == 0
    node = a_layer._inbound_nodes[a_node_index]
    assert node.outbound_layer == a_layer
    assert isinstance(node.inbound_layers, list) and node.inbound_layers == []
    assert isinstance(node.input_tensors, list) and node.input_tensors == [a]
    assert node.input_masks == [None]
    assert node.input_shapes == [(None, 32)] and node.output_shapes == [(None, 32)]

    dense = Dense(16, name="dense_1")
    a_2 = dense(a)
    b_2 = dense(b)
    assert len(dense._inbound_nodes) == 2
    assert len(dense._outbound_nodes) == 0
    assert dense._inbound_nodes[0].inbound_layers == [a_layer]
    assert dense._inbound_nodes[0].outbound_layer == dense
    assert dense._inbound_nodes[1].inbound_layers == [b_layer]
    assert dense._inbound_nodes[1].outbound_layer == dense
    assert dense._inbound_nodes[0].input_tensors == [a]
    assert dense._inbound_nodes[1].input_tensors == [b]
    assert len(a_layer._outbound_nodes) == 1
    assert dense.get_input_at(0) is a and dense.get_input_at(1) is b
    assert dense.get_output_at(0) is a_2 and dense.get_output_at(1) is b_2
    assert dense.get_input_shape_at(0) == (None, 32)
    assert dense.get_input_shape_at(1) == (None, 32)
    assert dense.get_output_shape_at(0) == (None, 16)
    assert dense.get_output_shape_at(1) == (None, 16)
    assert dense.get_input_mask_at(0) is None and dense.get_output_mask_at(1) is None
    assert b_2._keras_history == (dense, 1, 0)


def test_multi_input_layer_as_keras_2_test_topology():
    """Keras 2.2.4 test_topology.py::test_multi_input_layer (without serialization)."""
    from fastlayers.layers import concatenate

    a = fl.Input(shape=(32,), name="input_a")
    b = fl.Input(shape=(32,), name="input_b")
    dense = Dense(16, name="dense_1")
    a_2, b_2 = dense(a), dense(b)
    merged = concatenate([a_2, b_2], name="merge")
    assert merged._keras_shape == (None, 16 * 2)
    merge_layer, merge_node_index, merge_tensor_index = merged._keras_history
    assert merge_node_index == 0 and merge_tensor_index == 0
    assert len(merge_layer._inbound_nodes) == 1
    assert len(merge_layer._outbound_nodes) == 0
    assert len(merge_layer._inbound_nodes[0].input_tensors) == 2
    assert len(merge_layer._inbound_nodes[0].inbound_layers) == 2
    c = Dense(64, name="dense_2")(merged)
    d = Dense(5, name="dense_3")(c)
    model = fl.Model(inputs=[a, b], outputs=[c, d], name="model")
    assert len(model.layers) == 6
    assert model.compute_output_shape([(None, 32), (None, 32)]) == [(None, 64), (None, 5)]
    assert model.compute_mask([a, b], [None, None]) == [None, None]
    assert [l.name for l in model.layers][2:] == ["dense_1", "merge", "dense_2", "dense_3"]
    assert [l.name for l in model._input_layers] == ["input_a", "input_b"]
    assert [l.name for l in model._output_layers] == ["dense_2", "dense_3"]
    fn = fl.backend.function(model.inputs, model.outputs)
    outs = fn([np.random.random((10, 32)), np.random.random((10, 32))])
    assert [x.shape for x in outs] == [(10, 64), (10, 5)]
    assert fl.utils.get_source_inputs(c) == [a, b]
    assert fl.utils.get_source_inputs(a) == [a]


def test_sequential_rebuilds_leave_no_stale_outbound_nodes():
    m = fl.Sequential([Dense(3, input_shape=(2,), name="r1"), Dense(2, name="r2"),
                       Dense(1, name="r3")])
    assert len(m.layers[0]._outbound_nodes) == 1
    assert len(m.layers[1]._outbound_nodes) == 1
    assert len(m.layers[2]._outbound_nodes) == 0


def test_recursion_as_keras_2_test_topology():
    """Keras 2.2.4 test_topology.py::test_recursion (without serialization and tf tensors)."""
    from fastlayers.layers import add, concatenate

    a = fl.Input(shape=(32,), name="input_a")
    b = fl.Input(shape=(32,), name="input_b")
    dense = Dense(16, name="dense_1")
    merged = concatenate([dense(a), dense(b)], name="merge")
    c = Dense(64, name="dense_2")(merged)
    d = Dense(5, name="dense_3")(c)
    model = fl.Model(inputs=[a, b], outputs=[c, d], name="model")
    e = fl.Input(shape=(32,), name="input_e")
    f = fl.Input(shape=(32,), name="input_f")
    g, h = model([e, f])
    assert g._keras_shape == c._keras_shape and h._keras_shape == d._keras_shape
    i = Dense(7, name="dense_4")(h)
    final_model = fl.Model(inputs=[e, f], outputs=[i, g], name="final")
    assert len(final_model.inputs) == 2 and len(final_model.outputs) == 2
    assert len(final_model.layers) == 4
    assert [layer.name for layer in final_model.layers][2:] == ["model", "dense_4"]
    assert model.compute_mask([e, f], [None, None]) == [None, None]
    assert final_model.compute_output_shape([(10, 32), (10, 32)]) == [(10, 7), (10, 64)]
    fn = fl.backend.function(final_model.inputs, final_model.outputs)
    outs = fn([np.random.random((10, 32)), np.random.random((10, 32))])
    assert [x.shape for x in outs] == [(10, 7), (10, 64)]
    j, k = fl.Input(shape=(32,), name="input_j"), fl.Input(shape=(32,), name="input_k")
    m, n = model([j, k])
    tf_model = fl.Model([j, k], [m, n])
    j_tf, k_tf = fl.Input(shape=(32,)), fl.Input(shape=(32,))
    m_tf, n_tf = tf_model([j_tf, k_tf])
    assert m_tf._keras_shape == (None, 64) and n_tf._keras_shape == (None, 5)
    concatenate([j_tf, k_tf], axis=1)
    add([j_tf, k_tf])
    # Node bookkeeping of the shared model: its graph, then its two calls.
    assert model.get_output_at(1) == [g, h] and model.get_output_at(2) == [m, n]
    assert model.get_input_shape_at(2) == [(None, 32), (None, 32)]
    with pytest.raises(ValueError, match="only 3 inbound nodes"):
        model.get_input_at(3)
