"""Functional graphs: several inputs and outputs, merges, shared layers, nested
containers and their flags, names, errors, summaries, explain_trainable, backend.function."""
import warnings

import numpy as np
import pytest

import fastlayers as fl
from fastlayers import backend as K
from fastlayers.layers import Add, BatchNormalization, Concatenate, Dense, Dropout, Layer


def values(obj):
    return {w.path: w.numpy() for w in obj.weights}


def changed_paths(before, obj):
    now = values(obj)
    return sorted(p for p in before if not np.array_equal(before[p], now[p]))


# --------------------------------------------------------------------------- multi-input/output
def two_in_two_out():
    a = fl.Input((3,), name="a")
    b = fl.Input((2,), name="b")
    h = Concatenate(name="cat")([Dense(4, name="da")(a), Dense(4, name="db")(b)])
    h = Add(name="add")([h, Dense(8, name="dh")(h)])
    model = fl.Model([a, b], [Dense(1, name="out1")(h), Dense(2, name="out2")(h)], name="mimo")
    return model


def mimo_data(n=16, seed=0, dtype="float32"):
    rng = np.random.default_rng(seed)
    return ([rng.random((n, 3)).astype(dtype), rng.random((n, 2)).astype(dtype)],
            [rng.random((n, 1)).astype(dtype), rng.random((n, 2)).astype(dtype)])


def test_multi_input_multi_output_fit_history_and_loss_weights():
    model = two_in_two_out()
    model.compile("sgd", ["mse", "mae"], loss_weights=[1.0, 0.5], metrics=["mae"])
    x, y = mimo_data()
    h = model.fit(x, y, epochs=2, batch_size=8, validation_split=0.25, verbose=0)
    assert list(h.history) == ["loss", "out1_loss", "out2_loss", "out1_mae", "out2_mae",
                               "val_loss", "val_out1_loss", "val_out2_loss", "val_out1_mae",
                               "val_out2_mae"]
    assert all(len(v) == 2 for v in h.history.values())
    for k in ("loss", "val_loss"):
        pre = "val_" if k.startswith("val") else ""
        np.testing.assert_allclose(
            h.history[k], np.add(h.history[pre + "out1_loss"], 0.5 * np.array(h.history[pre + "out2_loss"])),
            rtol=1e-5)
    logs = model.evaluate(x, y, return_dict=True, verbose=0)
    np.testing.assert_allclose(logs["loss"], logs["out1_loss"] + 0.5 * logs["out2_loss"], rtol=1e-5)
    # out2's loss is MAE: its metric "mae" equals its loss.
    np.testing.assert_allclose(logs["out2_mae"], logs["out2_loss"], rtol=1e-5)
    preds = model.predict(x, verbose=0)
    assert isinstance(preds, list) and [p.shape for p in preds] == [(16, 1), (16, 2)]
    by_name = model.predict({"a": x[0], "b": x[1]}, verbose=0)
    for p, q in zip(preds, by_name):
        np.testing.assert_array_equal(p, q)


def test_zero_loss_weight_leaves_that_head_alone():
    model = two_in_two_out()
    model.compile("sgd", {"out1": "mse", "out2": "mse"}, loss_weights={"out1": 1.0, "out2": 0.0})
    x, y = mimo_data()
    before = values(model)
    model.fit(x, {"out1": y[0], "out2": y[1]}, verbose=0)
    assert changed_paths(before, model) == ["da/bias", "da/kernel", "db/bias", "db/kernel",
                                            "dh/bias", "dh/kernel", "out1/bias", "out1/kernel"]


def test_wrong_number_of_inputs_or_targets():
    model = two_in_two_out()
    model.compile("sgd", "mse")
    x, y = mimo_data()
    with pytest.raises(ValueError, match="expected 2 arrays \\(one per input\\), got 1"):
        model.fit(x[0], y, verbose=0)
    with pytest.raises(ValueError, match="expected 2 arrays \\(one per output\\), got 1"):
        model.fit(x, y[0], verbose=0)
    with pytest.raises(ValueError, match="loss has 3 entries for 2 outputs"):
        model.compile("sgd", ["mse", "mse", "mse"])


def test_concatenate_and_add_values_and_gradients(float64):
    a, b = fl.Input((2,)), fl.Input((3,))
    da, db = Dense(3, use_bias=False), Dense(3, use_bias=False)
    cat = Concatenate()([a, b])
    s = Add()([da(a), db(b)])
    model = fl.Model([a, b], [cat, s])
    rng = np.random.default_rng(0)
    xa, xb = rng.normal(size=(4, 2)), rng.normal(size=(4, 3))
    c, v = model.predict([xa, xb], verbose=0)
    np.testing.assert_array_equal(c, np.concatenate([xa, xb], axis=1))
    Wa, Wb = da.kernel.numpy(), db.kernel.numpy()
    np.testing.assert_allclose(v, xa @ Wa + xb @ Wb, rtol=1e-12)
    # Through Add the same upstream gradient reaches both branches.
    model2 = fl.Model([a, b], s)
    model2.compile(fl.optimizers.SGD(0.1), "mse")
    t = rng.normal(size=(4, 3))
    g = 2 * (xa @ Wa + xb @ Wb - t) / t.size
    model2.train_on_batch([xa, xb], t)
    np.testing.assert_allclose(da.kernel.numpy(), Wa - 0.1 * xa.T @ g, rtol=1e-12)
    np.testing.assert_allclose(db.kernel.numpy(), Wb - 0.1 * xb.T @ g, rtol=1e-12)


def test_concatenate_gradient_is_split_between_inputs(float64):
    a, b = fl.Input((2,)), fl.Input((3,))
    da, db = Dense(2, use_bias=False), Dense(3, use_bias=False)
    head = Dense(1, use_bias=False)
    model = fl.Model([a, b], head(Concatenate()([da(a), db(b)])))
    model.compile(fl.optimizers.SGD(0.1), "mse")
    rng = np.random.default_rng(1)
    xa, xb, t = rng.normal(size=(5, 2)), rng.normal(size=(5, 3)), rng.normal(size=(5, 1))
    Wa, Wb, H = da.kernel.numpy(), db.kernel.numpy(), head.kernel.numpy()
    h = np.concatenate([xa @ Wa, xb @ Wb], axis=1)
    g = 2 * (h @ H - t) / t.size
    dh = g @ H.T
    model.train_on_batch([xa, xb], t)
    np.testing.assert_allclose(da.kernel.numpy(), Wa - 0.1 * xa.T @ dh[:, :2], rtol=1e-12)
    np.testing.assert_allclose(db.kernel.numpy(), Wb - 0.1 * xb.T @ dh[:, 2:], rtol=1e-12)
    np.testing.assert_allclose(head.kernel.numpy(), H - 0.1 * h.T @ g, rtol=1e-12)


# --------------------------------------------------------------------------- sharing
def test_layer_called_in_several_models_is_one_layer_with_one_set_of_weights():
    shared = Dense(3, name="shared")
    i1, i2, i3 = fl.Input((4,)), fl.Input((4,)), fl.Input((4,))
    m1 = fl.Model(i1, shared(i1))
    m2 = fl.Model(i2, Dense(1)(shared(i2)))
    m3 = fl.Model(i3, Add()([shared(i3), shared(i3)]))
    assert m1.get_layer("shared") is m2.get_layer("shared") is m3.get_layer("shared") is shared
    assert [id(w) for w in m1.weights] == [id(w) for w in shared.weights]
    assert [id(w) for w in m2.weights[:2]] == [id(w) for w in shared.weights]
    assert len(m3.weights) == 2 and m3.count_params() == shared.count_params() == 15
    assert len(shared._inbound_nodes) == 4  # one node per call, one layer
    x = np.random.default_rng(0).random((5, 4)).astype("float32")
    p1 = m1.predict(x, verbose=0)
    np.testing.assert_allclose(m3.predict(x, verbose=0), 2 * p1, rtol=1e-6)
    m2.compile("sgd", "mse")
    m2.fit(x, np.ones((5, 1)), verbose=0)
    assert not np.allclose(p1, m1.predict(x, verbose=0))  # m1 sees m2's training


def test_weight_reached_by_a_frozen_and_a_trainable_path_sums_both_gradients(float64):
    """DESIGN: trained if one path reaches it with every flag true; its gradient then
    sums all of its uses, frozen paths included (R8)."""
    inp = fl.Input((3,))
    shared = Dense(3, use_bias=False, name="shared")
    frozen = fl.Container(inp, shared(inp), name="frozen_path")
    frozen.trainable = False
    model = fl.Model(inp, Add()([frozen(inp), shared(inp)]))
    assert [w.path for w in model.trainable_weights] == ["shared/kernel"]
    model.compile(fl.optimizers.SGD(0.1), "mse")
    rng = np.random.default_rng(0)
    x, t = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    W = shared.kernel.numpy()
    g = 2 * (2 * x @ W - t) / t.size
    model.train_on_batch(x, t)
    np.testing.assert_allclose(shared.kernel.numpy(), W - 0.1 * 2 * x.T @ g, rtol=1e-12)


# --------------------------------------------------------------------------- nested containers
def nested():
    """top(model) -> c3 -> c2 -> c1 -> d1 ; c2 adds d2, c3 adds d3, top adds d4."""
    i0 = fl.Input((2,))
    d1 = Dense(2, name="d1")
    c1 = fl.Container(i0, d1(i0), name="c1")
    i1 = fl.Input((2,))
    d2 = Dense(2, name="d2")
    c2 = fl.Container(i1, d2(c1(i1)), name="c2")
    i2 = fl.Input((2,))
    d3 = Dense(2, name="d3")
    c3 = fl.Container(i2, d3(c2(i2)), name="c3")
    i3 = fl.Input((2,))
    d4 = Dense(1, name="d4")
    top = fl.Model(i3, d4(c3(i3)), name="top")
    return dict(d1=d1, d2=d2, d3=d3, d4=d4, c1=c1, c2=c2, c3=c3, top=top)


@pytest.mark.parametrize("frozen,trained", [
    ((), ["d1", "d2", "d3", "d4"]),
    (("c1",), ["d2", "d3", "d4"]),
    (("c2",), ["d3", "d4"]),
    (("c3",), ["d4"]),
    (("d2",), ["d1", "d3", "d4"]),
    (("d1", "d3"), ["d2", "d4"]),
    (("c1", "d4"), ["d2", "d3"]),
])
def test_nested_containers_three_deep_exactly_the_reachable_weights_change(frozen, trained):
    g = nested()
    for name in frozen:
        g[name].trainable = False
    top = g["top"]
    expect = sorted(f"{d}/{w}" for d in trained for w in ("bias", "kernel"))
    assert sorted(w.path for w in top.trainable_weights) == expect
    assert [l.trainable for l in (g["d1"], g["d2"], g["d3"], g["d4"])] == [
        n not in frozen for n in ("d1", "d2", "d3", "d4")]  # R1: flags not pushed down
    top.compile(fl.optimizers.SGD(0.1), "mse")
    before = values(top)
    rng = np.random.default_rng(0)
    top.fit(rng.random((16, 2)), rng.random((16, 1)), epochs=2, verbose=0)
    assert changed_paths(before, top) == expect


def test_nested_frozen_top_model_trains_nothing():
    g = nested()
    g["top"].trainable = False
    with pytest.warns(UserWarning, match="no trainable weights"):
        g["top"].compile("sgd", "mse")
    before = values(g["top"])
    g["top"].fit(np.ones((4, 2)), np.ones((4, 1)), verbose=0)
    assert changed_paths(before, g["top"]) == []


def test_inner_container_frozen_in_one_outer_trainable_in_another():
    """The same inner container reached through a frozen and a trainable outer container."""
    i0 = fl.Input((2,))
    d = Dense(2, name="inner_dense")
    inner = fl.Container(i0, d(i0), name="inner")
    i1 = fl.Input((2,))
    frozen_outer = fl.Container(i1, inner(i1), name="frozen_outer")
    i2 = fl.Input((2,))
    open_outer = fl.Container(i2, inner(i2), name="open_outer")
    frozen_outer.trainable = False
    a = fl.Input((2,))
    m_frozen = fl.Model(a, Dense(1, name="h1")(frozen_outer(a)))
    b = fl.Input((2,))
    m_open = fl.Model(b, Dense(1, name="h2")(open_outer(b)))
    for m in (m_frozen, m_open):
        m.compile("sgd", "mse")
    x, y = np.random.default_rng(0).random((8, 2)), np.ones((8, 1))
    before = values(d)
    m_frozen.fit(x, y, verbose=0)
    assert changed_paths(before, d) == []
    m_open.fit(x, y, verbose=0)
    assert changed_paths(before, d) == ["inner_dense/bias", "inner_dense/kernel"]


def test_container_built_twice_over_the_same_layers_each_called_on_its_own_input():
    """Seed 003's construction: two containers over one graph, each called on the Input
    it was built from."""
    in_x = fl.Input((2,))
    d1, d2 = Dense(1), Dense(1)
    out = d2(d1(in_x))
    c_a = fl.Container(in_x, out, name="NormalContainer")
    c_b = fl.Container(in_x, out, name="FixedContainer")
    assert c_a.inputs == c_b.inputs == [in_x] and c_a.outputs == c_b.outputs == [out]
    assert c_a.layers == c_b.layers and c_a.layers[1:] == [d1, d2]
    ya, yb = c_a(in_x), c_b(in_x)
    assert ya is not yb and ya.shape == yb.shape == (None, 1)
    m_a = fl.Model(in_x, Dense(1)(ya))
    m_b = fl.Model(in_x, Dense(1)(yb))
    assert [l.name for l in m_a.layers][:2] == [in_x.node.layer.name, "NormalContainer"]
    assert [id(w) for w in m_a.weights[:4]] == [id(w) for w in m_b.weights[:4]]
    c_b.trainable = False
    assert len(m_a.trainable_weights) == 6 and len(m_b.trainable_weights) == 2
    # The containers also work on a new input, and eagerly.
    other = fl.Input((2,))
    m_c = fl.Model(other, c_b(other))
    x = np.ones((3, 2), "float32")
    np.testing.assert_array_equal(m_c.predict(x, verbose=0), c_a(x))


# --------------------------------------------------------------------------- layers, names
def test_layers_are_in_topological_order_with_input_layers_first():
    a, b = fl.Input((2,), name="a"), fl.Input((2,), name="b")
    hb = Dense(2, name="hb")(b)     # b's branch is built first
    ha = Dense(2, name="ha")(a)
    s = Add(name="s")([ha, hb])
    out = Dense(1, name="out")(s)
    model = fl.Model([a, b], out)
    names = [l.name for l in model.layers]
    assert names[:2] == ["a", "b"]
    pos = {n: i for i, n in enumerate(names)}
    assert pos["hb"] < pos["s"] and pos["ha"] < pos["s"] < pos["out"]
    assert [l.name for l in fl.Model([b, a], out).layers][:2] == ["b", "a"]
    assert model.get_layer("s").name == "s" and model.get_layer(index=-1).name == "out"
    with pytest.raises(ValueError, match="No layer named 'nope'"):
        model.get_layer("nope")


def test_auto_generated_names_are_unique_and_reset_by_clear_session():
    names = [Dense(1).name for _ in range(3)]
    assert names == ["dense", "dense_1", "dense_2"]
    assert [Dropout(0.1).name, Dropout(0.1).name] == ["dropout", "dropout_1"]
    assert BatchNormalization().name == "batch_normalization"
    i = fl.Input((2,))
    assert i.node.layer.name == "input_layer"
    c = fl.Container(i, Dense(1, name="explicit")(i))
    m1, m2 = fl.Model(i, c(i)), fl.Model(i, c(i))
    s = fl.Sequential()
    assert (c.name, m1.name, m2.name, s.name) == ("container", "model", "model_1", "sequential")
    layers = [Dense(1) for _ in range(20)]
    assert len({l.name for l in layers}) == 20
    K.clear_session()
    assert Dense(1).name == "dense"


def test_graph_disconnected_error_names_the_missing_input():
    a, b = fl.Input((2,), name="in_a"), fl.Input((2,), name="in_b")
    out = Add()([Dense(2)(a), Dense(2)(b)])
    with pytest.raises(ValueError, match="graph disconnected.*in_b.*inputs given were: 'in_a'"):
        fl.Model(a, out)
    with pytest.raises(ValueError, match="graph disconnected"):
        fl.Container(b, out)
    fl.Model([a, b], out)  # fine with both


# --------------------------------------------------------------------------- summary/explain
def test_summary_show_trainable_and_the_stale_compiled_count():
    g = nested()
    top = g["top"]
    top.compile("sgd", "mse")
    lines = []
    top.summary(show_trainable=True, print_fn=lines.append)
    assert any(l.split()[:1] == ["Layer"] and "Trainable" in l for l in lines)
    assert "Trainable params: 21" in lines and "Non-trainable params: 0" in lines
    g["c3"].trainable = False
    lines.clear()
    top.summary(show_trainable=True, print_fn=lines.append)
    row = next(l for l in lines if l.startswith("c3 "))
    assert row.split()[-1] == "N" and row.split()[-2] == "18"
    assert ("Trainable params: 3 (compiled: 21; fit updates the compiled set until compile() "
            "is called again)") in lines
    assert "Non-trainable params: 18" in lines
    top.compile("sgd", "mse")
    lines.clear()
    top.summary(print_fn=lines.append)
    assert "Trainable params: 3" in lines and not any("compiled" in l for l in lines)


def test_explain_trainable_paths_flags_and_reasons():
    in_x = fl.Input((2,))
    d, d_1 = Dense(1), Dense(1)
    fixed = fl.Container(in_x, d_1(d(in_x)), name="FixedContainer")
    bn = BatchNormalization(name="bn")
    head = Dense(1, name="head")
    model = fl.Model(in_x, head(bn(fixed(in_x))), name="model_fixed")
    report = model.explain_trainable()
    assert all(r["updated_by_fit"] is None for r in report)  # not compiled yet
    model.compile("sgd", "mse")
    fixed.trainable = False
    head.trainable = False
    report = model.explain_trainable()
    rows = {r["path"]: r for r in report}
    assert list(rows) == [
        "model_fixed/FixedContainer/dense/kernel", "model_fixed/FixedContainer/dense/bias",
        "model_fixed/FixedContainer/dense_1/kernel", "model_fixed/FixedContainer/dense_1/bias",
        "model_fixed/bn/gamma", "model_fixed/bn/beta", "model_fixed/bn/moving_mean",
        "model_fixed/bn/moving_variance", "model_fixed/head/kernel", "model_fixed/head/bias"]
    r = rows["model_fixed/FixedContainer/dense_1/kernel"]
    assert (r["updated_by_fit"], r["after_compile"]) == (True, False)
    assert r["reason"] == "Container 'FixedContainer' has trainable=False"
    assert r["shape"] == (1, 1) and r["weight"] is d_1.kernel
    assert rows["model_fixed/head/bias"]["reason"] == "layer 'head' has trainable=False"
    for s in ("moving_mean", "moving_variance"):
        r = rows[f"model_fixed/bn/{s}"]
        assert (r["updated_by_fit"], r["after_compile"]) == (False, False)
        assert r["reason"] == "state, created non-trainable"
    for s in ("gamma", "beta"):
        assert rows[f"model_fixed/bn/{s}"]["after_compile"] is True
        assert rows[f"model_fixed/bn/{s}"]["reason"] == ""
    text = str(report)
    assert text.splitlines()[0] == 'Trainable weights of "model_fixed"'
    assert "model_fixed/FixedContainer/dense_1/kernel" in text and "state, created non-trainable" in text
    assert "after compile()" in text and "why not" in text
    model.compile("sgd", "mse")
    assert [r["updated_by_fit"] for r in model.explain_trainable()] == [
        False, False, False, False, True, True, False, False, False, False]


# --------------------------------------------------------------------------- backend.function
def test_backend_function_with_and_without_learning_phase_input():
    inp = fl.Input((60,))
    y = Dropout(0.5)(inp)
    x = np.ones((2, 60))
    with_phase = K.function([inp, K.learning_phase()], [y])
    without = K.function([inp], [y])
    train = with_phase([x, 1])
    assert isinstance(train, list) and len(train) == 1
    assert 0.3 < (train[0] == 0).mean() < 0.7
    np.testing.assert_array_equal(with_phase([x, 0])[0], x)
    np.testing.assert_array_equal(without([x])[0], x)  # default: inference
    K.set_learning_phase(1)
    assert 0.3 < (without([x])[0] == 0).mean() < 0.7
    np.testing.assert_array_equal(with_phase([x, 0])[0], x)  # the fed phase wins
    K.set_learning_phase(None)
    np.testing.assert_array_equal(without([x])[0], x)
    with pytest.raises(ValueError, match="expects 2 inputs"):
        with_phase([x])


def test_backend_function_over_a_middle_tensor_and_several_outputs():
    inp = fl.Input((3,))
    d1, d2 = Dense(4), Dense(2)
    h = d1(inp)
    out = d2(h)
    f = K.function([inp], [h, out])
    x = np.random.default_rng(0).random((5, 3)).astype("float32")
    hv, ov = f([x])
    np.testing.assert_allclose(hv, d1(x), rtol=1e-6)
    np.testing.assert_allclose(ov, d2(d1(x)), rtol=1e-6)


def test_set_learning_phase_affects_plain_calls_not_predict_or_fit():
    seen = []

    class Probe(Layer):
        def compute_output_shape(self, s):
            return s

        def forward(self, x, training=False):
            seen.append(training)
            return x, lambda dy: dy

    inp = fl.Input((3,))
    model = fl.Model(inp, Dense(1)(Probe()(inp)))
    model.compile("sgd", "mse")
    x = np.ones((4, 3))
    K.set_learning_phase(1)
    assert int(K.learning_phase()) == 1
    model(x)
    model.predict(x, verbose=0)
    model.evaluate(x, np.ones((4, 1)), verbose=0)
    model(x, training=False)
    K.set_learning_phase(0)
    model.fit(x, np.ones((4, 1)), verbose=0)
    model(x)
    K.set_learning_phase(None)
    model(x)
    assert seen == [True, False, False, False, True, False, False]
    with pytest.raises(ValueError):
        K.set_learning_phase(2)


# --------------------------------------------------------------------------- known bugs
def test_batch_methods_report_the_same_keys_as_evaluate_for_several_outputs():
    model = two_in_two_out()
    model.compile("sgd", ["mse", "mse"])
    x, y = mimo_data()
    keys = set(model.evaluate(x, y, return_dict=True, verbose=0, batch_size=16))
    assert keys == {"loss", "out1_loss", "out2_loss"}
    assert set(model.test_on_batch(x, y, return_dict=True)) == keys
    assert set(model.train_on_batch(x, y, return_dict=True)) == keys



def test_compiled_model_of_inactive_dropout_trains_and_predicts():
    inp = fl.Input((4,))
    model = fl.Model(inp, Dropout(0.5)(inp, training=False))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.compile("sgd", "mse")
    x = np.ones((2, 4), "float32")
    assert model.train_on_batch(x, x) == 0.0
    np.testing.assert_array_equal(model.predict(x, verbose=0), x)
