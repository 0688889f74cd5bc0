"""Seed 003: a Container's ``trainable`` and when ``compile()`` takes the picture.

The seed's table, Case 1 (trainable=False before compile):

    model_normal.fit   container: change        other: change
    model_fixed.fit    container: no change     other: change

Case 2 (trainable=False after compile): model_fixed.fit DOES change the container
weights, and fastlayers warns once that compile() should be called again.
"""
import warnings

import numpy as np
import pytest

from fastlayers.layers import Dense
from fastlayers.models import Container, Input, Model


class Seed003:
    """The seed's graph: two containers over the same two Dense layers."""

    def __init__(self, case):
        x = in_x = Input((2,))
        self.d1, self.d2 = Dense(1), Dense(1)
        x = self.d2(self.d1(x))
        self.fc_all = Container(in_x, x, name="NormalContainer")
        self.fc_fixed = Container(in_x, x, name="FixedContainer")
        self.head_normal, self.head_fixed = Dense(1), Dense(1)
        self.model_normal = Model(in_x, self.head_normal(self.fc_all(in_x)))
        self.model_fixed = Model(in_x, self.head_fixed(self.fc_fixed(in_x)))
        self.in_x = in_x
        if case == 1:
            self.fc_fixed.trainable = False
        self.model_normal.compile(optimizer="sgd", loss="mse")
        self.model_fixed.compile(optimizer="sgd", loss="mse")
        if case == 2:
            self.fc_fixed.trainable = False

    def container(self):
        return [w.numpy() for w in self.fc_all.weights]

    def fit(self, model):
        rng = np.random.default_rng(len(model.name))
        model.fit(rng.random((5, 2)), rng.random((5, 1)), verbose=False)


def changed(before, after):
    return any(not np.array_equal(a, b) for a, b in zip(before, after))


def heads(s):
    return [w.numpy() for w in s.head_normal.weights], [w.numpy() for w in s.head_fixed.weights]


def test_the_two_containers_share_layers_and_weights():
    s = Seed003(case=None)
    assert s.fc_all.layers == s.fc_fixed.layers
    assert [id(w) for w in s.fc_all.weights] == [id(w) for w in s.fc_fixed.weights]
    assert [l.name for l in s.model_normal.layers] == ["input_layer", "NormalContainer", "dense_2"]
    assert [l.name for l in s.model_fixed.layers] == ["input_layer", "FixedContainer", "dense_3"]
    # 6 arrays, as the seed prints: container (kernel, bias) x 2, then the head.
    assert [w.shape for w in s.model_fixed.get_weights()] == [(2, 1), (1,), (1, 1), (1,), (1, 1), (1,)]
    x = np.ones((3, 2), "float32")
    np.testing.assert_array_equal(s.fc_all(x), s.fc_fixed(x))


def test_case1_fixed_container_is_not_updated():
    s = Seed003(case=1)
    assert s.fc_fixed.trainable_weights == [] and s.d1.trainable and s.d2.trainable
    assert len(s.model_fixed.trainable_weights) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing stale: no warning at all
        c0, (hn0, hf0) = s.container(), heads(s)
        s.fit(s.model_normal)
        c1, (hn1, hf1) = s.container(), heads(s)
        assert changed(c0, c1) and changed(hn0, hn1) and not changed(hf0, hf1)
        s.fit(s.model_fixed)
        c2, (hn2, hf2) = s.container(), heads(s)
        assert not changed(c1, c2) and changed(hf1, hf2) and not changed(hn1, hn2)


def test_case2_compiled_picture_still_updates_the_container_and_warns_once():
    s = Seed003(case=2)
    assert s.fc_fixed.trainable_weights == []
    assert len(s.model_fixed.trainable_weights) == 2
    assert len(s.model_fixed.compiled_trainable_weights) == 6
    c0, (hn0, hf0) = s.container(), heads(s)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # model_normal's set did not change
        s.fit(s.model_normal)
    c1, (hn1, hf1) = s.container(), heads(s)
    assert changed(c0, c1) and changed(hn0, hn1) and not changed(hf0, hf1)
    with pytest.warns(UserWarning) as rec:
        s.fit(s.model_fixed)
    assert len(rec) == 1
    msg = str(rec[0].message)
    assert repr(s.model_fixed.name) in msg and "compile() again" in msg
    c2, (hn2, hf2) = s.container(), heads(s)
    assert changed(c1, c2) and changed(hf1, hf2) and not changed(hn1, hn2)
    # Once per change: fit and train_on_batch again do not repeat it.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s.fit(s.model_fixed)
        s.model_fixed.train_on_batch(np.ones((2, 2)), np.ones((2, 1)))
    assert changed(c2, s.container())


def test_case2_compile_again_applies_the_flag():
    s = Seed003(case=2)
    s.model_fixed.compile(optimizer="sgd", loss="mse")
    c0, (_, hf0) = s.container(), heads(s)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s.fit(s.model_fixed)
    assert not changed(c0, s.container()) and changed(hf0, heads(s)[1])


def test_case2_summary_and_explain_show_the_stale_picture():
    s = Seed003(case=2)
    lines = []
    s.model_fixed.summary(show_trainable=True, print_fn=lines.append)
    text = "\n".join(lines)
    assert "Trainable params: 2 (compiled: 7" in text
    row = next(l for l in lines if l.startswith("FixedContainer"))
    assert row.split()[-1] == "N"
    rows = s.model_fixed.explain_trainable().rows
    name = s.model_fixed.name
    assert [r["path"] for r in rows] == [
        f"{name}/FixedContainer/dense/kernel", f"{name}/FixedContainer/dense/bias",
        f"{name}/FixedContainer/dense_1/kernel", f"{name}/FixedContainer/dense_1/bias",
        f"{name}/dense_3/kernel", f"{name}/dense_3/bias"]
    for r in rows[:4]:
        assert r["updated_by_fit"] is True and r["after_compile"] is False
        assert r["reason"] == "Container 'FixedContainer' has trainable=False"
    for r in rows[4:]:
        assert r["updated_by_fit"] is True and r["after_compile"] is True and r["reason"] == ""
    s.model_fixed.compile("sgd", "mse")
    assert [r["updated_by_fit"] for r in s.model_fixed.explain_trainable()] == [False] * 4 + [True] * 2
    lines.clear()
    s.model_fixed.summary(print_fn=lines.append)
    assert "Trainable params: 2" in lines and not any("compiled" in l for l in lines)


@pytest.mark.parametrize("case,fixed_container", [(1, "It does not change"), (2, "Change")])
def test_example_reproduces_the_table(load_example, case, fixed_container):
    ex = load_example("seed003_containers")
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        r = ex.run_case(case)
    assert r["table"] == {
        "model_normal": {"container": "Change", "other": "Change"},
        "model_fixed": {"container": fixed_container, "other": "Change"},
    }
    stale = [w for w in rec if "compile() again" in str(w.message)]
    assert len(stale) == (1 if case == 2 else 0)
