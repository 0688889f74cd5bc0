"""The benchmark's scenario table and loss check, imported without running anything.

``python -m bench`` is never run by the tests (no timings in tests); this only checks
that the table the bench runs from is consistent: every graph's arrays exist with the
shapes its layers need, the group names expand, the flop arithmetic counts what the
README says, a missing optimizer is reported instead of failing, and the loss check
catches a disagreement after N steps.
"""
import sys
import types
from pathlib import Path

import numpy as np
import pytest

# The bench lives beside the package in the checkout; appended (not prepended) so the
# installed fastlayers, which pytest tests, is still the one imported.
sys.path.append(str(Path(__file__).resolve().parents[1]))

from bench import graphs, runner  # noqa: E402
from bench.__main__ import parse  # noqa: E402
from bench.peers import Unavailable, keraslike  # noqa: E402
from bench.scenarios import (GROUPS, OPTIMIZERS, SCENARIOS, dense_forward_flops,  # noqa: E402
                             dense_step_flops, make_arrays)

NEW = GROUPS["graphs"]


def test_group_names_expand_and_mix_with_scenarios():
    assert set(NEW) <= set(SCENARIOS)
    assert parse(["--scenarios", "graphs"]).scenarios == list(NEW)
    assert parse(["--scenarios", "mlp,graphs,shared"]).scenarios == ["mlp"] + list(NEW)
    with pytest.raises(SystemExit, match="unknown scenario"):
        parse(["--scenarios", "graphz"])


@pytest.mark.parametrize("name", NEW)
def test_new_scenarios_have_peers_a_target_and_a_multi_step_check(name):
    sc = SCENARIOS[name]
    assert sc.kind == "step" and sc.batch == 64
    assert {"fastlayers", "torch", "jax"} <= set(sc.frameworks)
    assert sc.target == 1.5 and sc.check_steps > 1
    assert sc.optimizer in OPTIMIZERS
    assert bool(sc.graph) != bool(sc.layers)  # a graph or a chain, not both


@pytest.mark.parametrize("name", [n for n in NEW if SCENARIOS[n].graph])
def test_graph_arrays_match_the_graph(name):
    sc = SCENARIOS[name]
    g = sc.graph_spec
    a = make_arrays(sc)
    names = [d[0] for d in g.dense]
    assert len(set(names)) == len(names)
    for n, i, o, act in g.dense:
        assert a[f"W_{n}"].shape == (i, o) and a[f"W_{n}"].dtype == np.float32
        assert a[f"b_{n}"].shape == (o,)
        assert act in (None, "relu", "tanh")
    for n, width in g.bn:
        for k in ("gamma", "beta", "mean", "var"):
            assert a[f"{k}_{n}"].shape == (width,)
        assert (a[f"var_{n}"] > 0).all()
    for n, width in g.inputs:
        assert a[n].shape == (sc.batch, width) and a[n].dtype == np.float32
    assert {s[0] for s in g.step} <= set(names)
    for t, kind, out in g.targets:
        o = g.dense_spec(out)[2]
        if kind == "sce":
            assert a[t].shape == (sc.batch,) and a[t].max() < o and a[t].min() >= 0
        else:
            assert a[t].shape == (sc.batch, o) and a[t].dtype == np.float32
    assert len(g.loss_weights) == len(g.targets)
    # the same arrays every time: the .npz cache may be rebuilt in another worker
    b = make_arrays(sc)
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_flops_count_only_the_work_a_step_needs():
    mac = lambda i, o: 2.0 * 64 * i * o  # noqa: E731
    fwd = mac(784, 256) + mac(256, 256) + mac(256, 10)
    # frozen container: forward + the head's dW, no dX anywhere
    assert dense_step_flops(SCENARIOS["container"]) == fwd + mac(256, 10)
    assert dense_step_flops(SCENARIOS["bn-base"]) == fwd + mac(256, 10)
    # gan: dW for g1, g2; dX for g2 and both frozen d layers (the gradient passes through d)
    g = mac(64, 256) + mac(256, 784) + mac(784, 256) + mac(256, 1)
    assert dense_step_flops(SCENARIOS["gan"]) == (
        g + mac(64, 256) + mac(256, 784) + mac(256, 784) + mac(784, 256) + mac(256, 1))
    # shared: model2 is the mlp chain, all trainable (model1's head is not in the step)
    assert dense_step_flops(SCENARIOS["shared"]) == dense_step_flops(SCENARIOS["mlp"])
    assert graphs.forward_flops(SCENARIOS["container"].graph_spec, 64) == fwd


def test_missing_or_incomplete_optimizer_is_unavailable_not_an_error():
    class NoClip:
        def __init__(self, learning_rate, weight_decay, beta_1, beta_2, epsilon):
            pass

    class SGD:
        def __init__(self, learning_rate):
            self.learning_rate = learning_rate

    lib = types.SimpleNamespace(__name__="fakelib",
                                optimizers=types.SimpleNamespace(AdamW=NoClip, SGD=SGD))
    with pytest.raises(Unavailable, match="RMSprop is not available"):
        keraslike.optimizer(lib, SCENARIOS["rmsprop"])
    with pytest.raises(Unavailable, match="global_clipnorm"):
        keraslike.optimizer(lib, SCENARIOS["adamw-clip"])
    assert keraslike.optimizer(lib, SCENARIOS["shared"]).learning_rate == 0.01


def _fw(before, after, after_n=None):
    loss = {"before": before, "train": before, "after": after}
    if after_n is not None:
        loss.update(after_n=after_n, n=5)
    return {"status": "ok", "loss": loss}


def test_loss_check_uses_a_peer_as_reference_and_checks_after_n_steps():
    sc = SCENARIOS["container"]
    fws = {"fastlayers": _fw(2.0, 1.9, 1.5), "torch": _fw(2.0, 1.9, 1.6),
           "jax": _fw(2.0, 1.9, 1.6)}
    check = runner.loss_check(sc, fws)
    assert check["reference"] == "torch" and check["steps"] == 5
    assert fws["fastlayers"]["check"] == "MISMATCH: after 5 steps"
    assert fws["jax"]["check"] == "ok"


def test_loss_check_tolerances_per_scenario():
    # adamw-clip tolerates 1 % after 5 steps (Keras's eps placement vs torch/optax)
    fws = {"fastlayers": _fw(2.4, 2.127, 1.429), "torch": _fw(2.4, 2.127, 1.4255)}
    runner.loss_check(SCENARIOS["adamw-clip"], fws)
    assert fws["fastlayers"]["check"] == "ok"
    # merged (dropout masks differ): within 10 %
    fws = {"fastlayers": _fw(2.4861, 2.47, 2.41), "torch": _fw(2.4861, 2.46, 2.42)}
    runner.loss_check(SCENARIOS["merged"], fws)
    assert fws["fastlayers"]["check"] == "ok (close)"
    fws["fastlayers"] = _fw(2.4861, 2.47, 3.0)
    runner.loss_check(SCENARIOS["merged"], fws)
    assert fws["fastlayers"]["check"].startswith("MISMATCH")


# -- issue 11's CNN scenarios ---------------------------------------------------------------
CNN_GROUP = GROUPS["cnn"]


def test_cnn_group_expands_with_its_targets():
    assert parse(["--scenarios", "cnn"]).scenarios == ["cnn-small", "cnn-mnist", "cnn-frozen"]
    targets = {n: SCENARIOS[n].target for n in CNN_GROUP}
    assert targets == {"cnn-small": 1.5, "cnn-mnist": 1.0, "cnn-frozen": 1.2}
    for n in CNN_GROUP:
        sc = SCENARIOS[n]
        assert sc.kind == "step" and sc.batch == 64 and sc.loss == "sce" and sc.cnn == n
        assert {"fastlayers", "torch", "jax"} <= set(sc.frameworks) and sc.check_steps > 1
        assert not sc.layers and not sc.graph
    assert SCENARIOS["cnn-frozen"].frozen == 2  # also times a forward-only pass
    assert SCENARIOS["cnn-frozen"].cnn_spec.frozen == ("conv1", "conv2")


@pytest.mark.parametrize("name", CNN_GROUP)
def test_cnn_arrays_are_in_keras_layout(name):
    sc = SCENARIOS[name]
    a = make_arrays(sc)
    h = {"cnn-small": 8}.get(name, 28)
    assert a["x"].shape == (64, h, h, 1) and a["x"].dtype == np.float32
    assert a["y"].shape == (64,) and 0 <= a["y"].min() and a["y"].max() < 10
    assert a["W_conv1"].shape == (3, 3, 1, 32 if h == 28 else 16)
    assert a["W_conv2"].shape == ((3, 3, 32, 64) if h == 28 else (3, 3, 16, 32))
    # cnn-mnist: 28 -> conv 26 -> pool 13 -> conv 11 -> pool 5: 5*5*64 flattened features
    assert a["W_head"].shape == ((5 * 5 * 64, 10) if h == 28 else (32, 10))
    assert all(a[f"b_{n}"].shape == (a[f"W_{n}"].shape[-1],) for n in ("conv1", "conv2", "head"))
    b = make_arrays(sc)
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_cnn_flops_count_the_im2col_gemms_a_step_needs():
    c1 = 2.0 * 64 * 26 * 26 * 9 * 1 * 32  # conv1 forward over the batch
    c2 = 2.0 * 64 * 11 * 11 * 9 * 32 * 64
    d = 2.0 * 64 * 1600 * 10
    # all trainable: forward + dW everywhere, dX for conv2 and the head (conv1 has no
    # trainable layer below it)
    assert dense_step_flops(SCENARIOS["cnn-mnist"]) == 2 * (c1 + c2 + d) + c2 + d
    # both convolutions frozen: forward + the head's dW, no dX anywhere
    assert dense_step_flops(SCENARIOS["cnn-frozen"]) == c1 + c2 + 2 * d
    small = 2.0 * 64 * (8 * 8 * 9 * 16 + 4 * 4 * 9 * 16 * 32 + 32 * 10)
    assert dense_forward_flops(SCENARIOS["cnn-small"]) == small


@pytest.mark.parametrize("name", ["cnn-small", "cnn-mnist"])
def test_cnn_torch_and_fastlayers_peers_do_the_same_work(name):
    """The kernel permutations (conv (kh, kw, in, out) -> (out, in, kh, kw), the Dense
    after Flatten from (h, w, c) rows to (c, h, w)) give torch the same model."""
    pytest.importorskip("torch")
    from bench.peers import fastlayers_peer, torch_peer

    sc = SCENARIOS[name]
    a = make_arrays(sc)
    runs = []
    for peer in (fastlayers_peer, torch_peer):
        r = peer.build(sc, a)
        before = r.eval_loss()
        r.train(2)
        runs.append((before, r.eval_loss()))
    (fb, fa), (tb, ta) = runs
    assert fb == pytest.approx(tb, rel=1e-5) and fa == pytest.approx(ta, rel=1e-5)
    assert abs(fa - fb) > 1e-4  # the steps moved the loss: the comparison means something
