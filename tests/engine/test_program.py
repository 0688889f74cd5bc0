"""The rules asserted on the compiled step program as data (``model.step_program``).

Every decision R3-R9 is a field of an op, taken once at ``compile()``: ``train``
(R3/R4), ``training`` and ``batch_stats``/``update_stats`` (R5/R7), a Dropout op only
where it drops and an alias slot otherwise (R6), ``acc_grad``/``acc_dx`` (R8),
``want_dx``/``backward`` (R9).  The graphs are the seeds' (examples/seed*.py).
"""
import json
import warnings

import numpy as np
import pytest

import fastlayers as fl
from fastlayers.engine.program import OpKind, lower
from fastlayers.layers import (Activation, Add, BatchNormalization, Concatenate, Dense, Dropout,
                               Flatten)


def _ops(prog, name, kind=None):
    """The ops of layer ``name`` (by the last part of their path), in program order."""
    return [op for op in prog.ops if op.path.split("/")[-1] == name
            and (kind is None or op.kind == kind)]


def _op(prog, name, kind=None):
    ops = _ops(prog, name, kind)
    assert len(ops) == 1, [op.path for op in ops]
    return ops[0]


def _compile(m, opt="sgd", loss="mse", **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        m.compile(opt, loss, **kw)
    return m.step_program


def _paths(weights):
    return sorted(w.path for w in weights)


# ---------------------------------------------------------------- seed 000 (R3)
def _seed000():
    inp = fl.Input((4,))
    shared = Dense(3, name="shared_layer")
    sout = shared(inp)
    model1 = fl.Model(inp, Dense(1, name="model1_head")(sout), name="model1")
    model2 = fl.Model(inp, Dense(1, name="model2_head")(sout), name="model2")
    return shared, model1, model2


def test_seed000_shared_layer_frozen_in_model1_trained_in_model2():
    shared, model1, model2 = _seed000()
    model1.trainable = False
    p1, p2 = _compile(model1), _compile(model2)
    # model1 trains nothing: no op trains, none runs backward (R9: frozen costs nothing).
    assert p1.weights == []
    assert not any(any(op.train) or op.backward for op in p1.ops)
    # model2 trains the shared layer through its own path.
    s2 = _op(p2, "shared_layer")
    assert s2.train == (True, True) and s2.backward and s2.want_dx == (False,)
    h2 = _op(p2, "model2_head")
    assert h2.train == (True, True) and h2.want_dx == (True,)
    assert _paths(p2.weights) == ["model2_head/bias", "model2_head/kernel",
                                  "shared_layer/bias", "shared_layer/kernel"]


def test_seed000_shared_layer_frozen_itself_is_frozen_for_both():
    shared, model1, model2 = _seed000()
    model1.layers[1].trainable = False
    assert model1.layers[1] is shared
    for prog, head in ((_compile(model1), "model1_head"), (_compile(model2), "model2_head")):
        s = _op(prog, "shared_layer")
        assert s.train == (False, False) and not s.backward
        # R9: nothing below the head trains, so the head computes no input gradient.
        assert _op(prog, head).want_dx == (False,)
        assert _paths(prog.weights) == [f"{head}/bias", f"{head}/kernel"]


# ---------------------------------------------------------------- seed 002 (R3, R6, R9)
def _seed002(rate=0.5):
    subs = []
    for name in ("model_A", "model_B"):
        i = fl.Input((10,))
        h = Dropout(rate, name=f"{name}_dropout")(Dense(32, activation="relu",
                                                         name=f"{name}_dense")(i))
        subs.append(fl.Model(i, Dense(4, name=f"{name}_out")(h), name=name))
    for s in subs:
        s.trainable = False
    inp = fl.Input((10,))
    merged = Concatenate(name="merge")([s(inp) for s in subs])
    return fl.Model(inp, Dense(1, name="new_dense")(merged), name="model_AB")


def test_seed002_frozen_submodels_merged_train_only_the_new_dense_and_still_drop():
    m = _seed002()
    prog = _compile(m)
    assert _paths(prog.weights) == ["new_dense/bias", "new_dense/kernel"]
    for name in ("model_A", "model_B"):
        d = _op(prog, f"{name}_dropout")
        # R6: frozen, yet in the training program the dropout is an op that drops,
        # with its own seed and counter.
        assert d.kind == OpKind.DROPOUT and d.training and d.rate == 0.5
        assert d.counter is not None and d.counter.dtype == np.uint64
        assert d.path == f"model_AB/{name}/{name}_dropout"
        # R9: nothing in the frozen sub-models needs a gradient.
        for op in _ops(prog, f"{name}_dense") + _ops(prog, f"{name}_out") + [d]:
            assert not any(op.train) and not op.backward
    assert not _op(prog, "merge").backward
    head = _op(prog, "new_dense")
    assert head.train == (True, True) and head.want_dx == (False,) and head.backward
    assert prog.fused == [True, True]          # plain SGD, single use: one-GEMM update
    # Inference: the dropouts are not ops; their outputs are their inputs (R6).
    infer = lower(m, training=False)
    assert not any(op.kind == OpKind.DROPOUT for op in infer.ops)


def test_r6_inference_dropout_is_an_alias_not_an_op():
    inp = fl.Input((6,))
    h = Dense(5, name="before")(inp)
    out = Dense(2, name="after")(Dropout(0.5, name="drop")(h))
    m = fl.Model(inp, out)
    train = _compile(m)
    assert _op(train, "drop").kind == OpKind.DROPOUT
    infer = lower(m, training=False)
    assert not _ops(infer, "drop")
    assert _op(infer, "after").inputs == _op(infer, "before").outputs   # the same slot


# ---------------------------------------------------------------- seed 003 (R3, R4)
def _seed003():
    in_x = fl.Input((2,))
    x = Dense(1, name="c1")(in_x)
    x = Dense(1, name="c2")(x)
    normal = fl.models.Container(in_x, x, name="NormalContainer")
    fixed = fl.models.Container(in_x, x, name="FixedContainer")
    model_normal = fl.Model(in_x, Dense(1, name="normal_head")(normal(in_x)), name="normal")
    model_fixed = fl.Model(in_x, Dense(1, name="fixed_head")(fixed(in_x)), name="fixed")
    return normal, fixed, model_normal, model_fixed


def test_seed003_case1_frozen_container_before_compile():
    normal, fixed, model_normal, model_fixed = _seed003()
    fixed.trainable = False
    pn, pf = _compile(model_normal), _compile(model_fixed)
    for name in ("c1", "c2"):
        assert _op(pn, name).train == (True, True)
        op = _op(pf, name)
        assert op.train == (False, False) and not op.backward
        assert op.path == f"fixed/FixedContainer/{name}"
    assert _paths(pf.weights) == ["fixed_head/bias", "fixed_head/kernel"]
    assert _op(pf, "fixed_head").want_dx == (False,)


def test_seed003_case2_frozen_after_compile_keeps_the_compiled_picture():
    normal, fixed, model_normal, model_fixed = _seed003()
    pf = _compile(model_fixed)
    fixed.trainable = False                      # after compile(): R4
    assert model_fixed.step_program is pf
    assert _op(pf, "c1").train == (True, True) and _op(pf, "c2").train == (True, True)
    with pytest.warns(UserWarning, match="compile"):
        model_fixed.train_on_batch(np.ones((2, 2), "float32"), np.ones((2, 1), "float32"))
    again = _compile(model_fixed)                # the new picture freezes the container
    assert _op(again, "c1").train == (False, False)


# ---------------------------------------------------------------- GAN idiom (R4, R9)
def test_gan_program_trains_only_g_and_gradients_flow_through_frozen_d():
    z = fl.Input((3,))
    g = fl.Sequential([Dense(5, activation="relu", input_shape=(3,), name="g1"),
                       Dense(4, activation="tanh", name="g2")], name="g")
    d = fl.Sequential([Dense(6, activation="relu", input_shape=(4,), name="d1"),
                       Dense(1, name="d2")], name="d")
    loss = fl.losses.BinaryCrossentropy(from_logits=True)
    pd = _compile(d, "sgd", loss)
    d.trainable = False
    gan = fl.Model(z, d(g(z)), name="gan")
    pg = _compile(gan, "sgd", loss)
    # d's own program (compiled before the freeze) trains d.
    assert _op(pd, "d1").train == (True, True) and _op(pd, "d1").want_dx == (False,)
    # gan's: only g trains; d's ops run backward for their input gradients only.
    assert _paths(pg.weights) == ["g1/bias", "g1/kernel", "g2/bias", "g2/kernel"]
    for name in ("d1", "d2"):
        op = _op(pg, name)
        assert op.train == (False, False)
        assert op.want_dx == (True,) and op.backward
        assert op.path == f"gan/d/{name}"
    assert _op(pg, "g2").train == (True, True) and _op(pg, "g2").want_dx == (True,)
    assert _op(pg, "g1").want_dx == (False,)      # the model input needs no gradient
    assert pg.losses[0].from_logits and pg.losses[0].slot == pg.outputs[0]
    # d's weights are the same objects in both programs: one set of weights.
    assert _op(pg, "d1").weights[0] is _op(pd, "d1").weights[0]


# ---------------------------------------------------------------- seed 004 (R5, R7)
def _frozen_bn_base(pin=None):
    base = fl.Sequential([Dense(6, activation="relu", input_shape=(5,), name="b_dense"),
                          BatchNormalization(name="bn")], name="base")
    base.trainable = False
    inp = fl.Input((5,))
    h = base(inp) if pin is None else base(inp, training=pin)
    return fl.Model(inp, Dense(3, name="head")(h), name="model")


@pytest.mark.parametrize("pin", [None, True])
def test_seed004_frozen_bn_base_runs_in_inference_mode_even_with_training_true(pin):
    prog = _compile(_frozen_bn_base(pin))
    bn = _op(prog, "bn")
    assert bn.training                          # the mode is training (fit, or pinned)...
    assert not bn.batch_stats and not bn.update_stats   # ...but frozen on this path (R7)
    assert bn.train == (False, False) and not bn.backward
    assert _paths(prog.weights) == ["head/bias", "head/kernel"]


def test_r7_trainable_bn_batch_stats_in_training_programs_only():
    inp = fl.Input((5,))
    m = fl.Model(inp, Dense(2)(BatchNormalization(name="bn")(Dense(4)(inp))))
    bn = _op(_compile(m), "bn")
    assert bn.batch_stats and bn.update_stats and bn.train == (True, True)
    ev = _op(lower(m, training=False), "bn")
    assert not ev.training and not ev.batch_stats and not ev.update_stats


def test_r7_frozen_bn_layer_and_one_path_frozen_of_two():
    inp = fl.Input((4,))
    bn = BatchNormalization(name="bn")
    box_in = fl.Input((4,))
    box = fl.Model(box_in, bn(box_in), name="box")
    box.trainable = False
    out = Add()([box(inp), bn(inp)])     # bn reached frozen (through box) and directly
    m = fl.Model(inp, Dense(2, name="head")(out))
    prog = _compile(m)
    via_box, direct = _ops(prog, "bn")
    assert via_box.path.endswith("/box/bn") and not via_box.batch_stats
    assert direct.batch_stats and direct.update_stats
    # One path reaches gamma/beta with every flag true: both uses train, summed (R8).
    assert via_box.train == direct.train == (True, True)
    assert [w.path for w in prog.weights].count("bn/gamma") == 1
    assert sorted([via_box.acc_grad, direct.acc_grad]) == [(False, False), (True, True)]


def test_r7_bn_frozen_after_compile_keeps_batch_stats_until_recompiled():
    m = fl.Sequential([Dense(4, input_shape=(3,)), BatchNormalization(name="bn"), Dense(2)])
    prog = _compile(m)
    m.get_layer("bn").trainable = False
    assert _op(m.step_program, "bn").batch_stats          # the stale picture (R4)
    assert _op(prog, "bn").train == (True, True)
    assert not _op(_compile(m), "bn").batch_stats


def test_r5_pinned_training_on_dropout_and_bn():
    inp = fl.Input((6,))
    h = Dropout(0.5, name="pinned_on")(inp, training=True)
    h = Dropout(0.5, name="pinned_off")(h, training=False)
    h = BatchNormalization(name="bn_on")(Dense(4)(h), training=True)
    h = BatchNormalization(name="bn_off")(h, training=False)
    m = fl.Model(inp, Dense(2)(Dropout(0.3, name="free")(h)))
    train = _compile(m)
    infer = lower(m, training=False)
    # Dropout pinned True drops in both programs; pinned False in neither (an alias).
    assert _op(train, "pinned_on").training and _op(infer, "pinned_on").training
    assert not _ops(train, "pinned_off") and not _ops(infer, "pinned_off")
    assert _ops(train, "free") and not _ops(infer, "free")
    # BN pinned True uses batch statistics at inference but never updates state there.
    on_t, on_i = _op(train, "bn_on"), _op(infer, "bn_on")
    assert on_t.batch_stats and on_t.update_stats
    assert on_i.training and on_i.batch_stats and not on_i.update_stats
    off_t = _op(train, "bn_off")
    assert not off_t.training and not off_t.batch_stats and not off_t.update_stats
    assert off_t.train == (True, True)           # inference mode, still trained (R5)


def test_r5_outer_training_reaches_inside_and_pins_the_call():
    inner_in = fl.Input((4,))
    inner = fl.Model(inner_in, Dropout(0.5, name="inner_drop")(inner_in), name="inner")
    inp = fl.Input((4,))
    m = fl.Model(inp, Dense(2)(Dropout(0.5, name="sibling")(inner(inp, training=True))))
    infer = lower(m, training=False)
    assert _op(infer, "inner_drop").training     # the call's value reaches inside
    assert not _ops(infer, "sibling")           # and does not leak to siblings


# ---------------------------------------------------------------- R8, R9 flags
def test_r8_shared_layer_accumulates_and_is_updated_once():
    inp = fl.Input((4,))
    d = Dense(4, activation="tanh", name="twice")
    m = fl.Model(inp, Dense(1, name="head")(d(d(inp))))
    prog = _compile(m)
    first, second = _ops(prog, "twice")
    # Backward runs in reverse: the second use writes the buffer, the first adds.
    assert second.acc_grad == (False, False) and first.acc_grad == (True, True)
    assert first.weights[0] is second.weights[0]
    assert [w.path for w in prog.weights].count("twice/kernel") == 1
    fused = dict(zip((w.path for w in prog.weights), prog.fused))
    assert not fused["twice/kernel"] and fused["head/kernel"]
    assert first.want_dx == (False,) and second.want_dx == (True,)


def test_r8_a_tensor_used_twice_accumulates_its_input_gradient():
    inp = fl.Input((4,))
    h = Dense(4, name="h")(inp)
    s = Add(name="add")([Dense(4, name="left")(h), Dense(4, name="right")(h), h])
    prog = _compile(fl.Model(inp, Dense(1)(s)))
    left, right, add = _op(prog, "left"), _op(prog, "right"), _op(prog, "add")
    assert add.want_dx == (True, True, True)
    # Consumers of h in backward order: add writes first, then right and left add in.
    assert add.acc_dx == (False, False, False)
    assert right.acc_dx == (True,) and left.acc_dx == (True,)


def test_r9_backprop_stops_below_the_lowest_trained_layer():
    m = fl.Sequential([Dense(4, input_shape=(3,), name="l1"), Dense(4, name="l2"),
                       Activation("relu", name="act"), Dense(2, name="l3")])
    m.get_layer("l1").trainable = False
    m.get_layer("l3").trainable = False
    prog = _compile(m)
    l1, l2, act, l3 = (_op(prog, n) for n in ("l1", "l2", "act", "l3"))
    assert not l1.backward and l1.train == (False, False)
    assert l2.train == (True, True) and l2.want_dx == (False,)
    assert act.backward and act.want_dx == (True,)
    assert l3.train == (False, False) and l3.backward and l3.want_dx == (True,)


def test_r9_frozen_custom_layer_still_passes_gradients():
    class Twice(fl.layers.Layer):
        def build(self, input_shape):
            self.w = self.add_weight("w", (input_shape[-1],), initializer="ones")

        def compute_output_shape(self, input_shape):
            return input_shape

        def forward(self, x, training=False):
            return 2 * x, lambda dy: (2 * dy, [np.zeros(x.shape[1:])])
    inp = fl.Input((3,))
    t = Twice(name="twice")
    t.trainable = False
    prog = _compile(fl.Model(inp, Dense(1, name="head")(t(Dense(3, name="low")(inp)))))
    op = _op(prog, "twice")
    assert op.kind == OpKind.CALLBACK and op.train == (False,)
    assert op.backward and op.want_dx == (True,)
    assert not any(prog.fused)                  # a callback could fail mid-step


def test_an_output_without_loss_gets_no_gradient():
    inp = fl.Input((4,))
    h = Dense(5, name="trunk")(inp)
    m = fl.Model(inp, [Dense(2, name="a")(h), Dense(3, name="b")(h)])
    prog = _compile(m, loss={"a": "mse", "b": None}, loss_weights={"a": 2.0})
    assert [(t.output, t.weight) for t in prog.losses] == [(0, 2.0)]
    b = _op(prog, "b")
    assert not b.backward and b.train == (False, False)
    assert _paths(prog.weights) == ["a/bias", "a/kernel", "trunk/bias", "trunk/kernel"]


# ---------------------------------------------------------------- lowering details
def test_bn_on_axis_1_is_lowered_as_transposes_around_the_op():
    inp = fl.Input((3, 4))
    m = fl.Model(inp, Dense(2)(Flatten()(BatchNormalization(axis=1, name="bn")(inp))))
    prog = _compile(m)
    ops = _ops(prog, "bn")
    assert [op.kind for op in ops] == [OpKind.TRANSPOSE, OpKind.BATCHNORM, OpKind.TRANSPOSE]
    assert ops[0].kwargs["dims"] == (3, 4) and ops[2].kwargs["dims"] == (4, 3)
    assert prog.slots[ops[1].inputs[0]].shape == (4, 3)      # channels last
    assert prog.slots[ops[2].outputs[0]].shape == (3, 4)
    assert ops[0].want_dx == (False,)            # the model input needs no gradient
    flat = prog.slots[_ops(prog, "dense")[0].inputs[0]]
    assert flat.alias_of == ops[2].outputs[0] and flat.shape == (12,)   # Flatten: an alias


def test_concat_axis_and_flatten_alias():
    inp = fl.Input((2, 3))
    a = Dense(4, name="a")(inp)
    c = Concatenate(axis=1, name="cat")([a, a])
    m = fl.Model(inp, Dense(1)(Flatten(name="flat")(c)))
    prog = _compile(m)
    cat = _op(prog, "cat")
    assert cat.axis == 0 and prog.slots[cat.outputs[0]].shape == (4, 4)
    assert cat.acc_dx == (False, True)           # the same slot twice: the second adds
    assert not _ops(prog, "flat")


def test_describe_is_plain_data():
    prog = _compile(_seed002())
    rows = prog.describe()
    json.dumps(rows)
    assert len(rows) == len(prog.ops)
    head = [r for r in rows if r["layer"].endswith("/new_dense")][0]
    assert head == {"kind": "dense", "layer": "model_AB/new_dense", "inputs": head["inputs"],
                    "outputs": head["outputs"], "training": True,
                    "weights": ["kernel", "bias"], "train": [True, True], "want_dx": [False],
                    "backward": True, "batch_stats": False, "update_stats": False,
                    "pool": -1}


def test_fused_sgd_only_for_plain_sgd_without_callbacks():
    def build():
        return fl.Sequential([Dense(4, input_shape=(3,)), Dense(2)])
    assert all(_compile(build(), fl.optimizers.SGD(0.1)).fused)
    assert not any(_compile(build(), fl.optimizers.SGD(0.1, momentum=0.9)).fused)
    assert not any(_compile(build(), "adam").fused)
