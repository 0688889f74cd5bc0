"""Every example runs as a user would run it (subprocess, any directory, < 10 s) and
prints the behaviour its seed describes (asserted on the RESULT lines)."""
import ast
import re

import pytest

from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SEED_EXAMPLES = ["seed000_shared_layer", "seed002_dropout_frozen", "seed003_containers",
                 "seed004_training_vs_trainable", "autoscale_dropout"]


@pytest.mark.parametrize("name", SEED_EXAMPLES)
def test_example_has_no_sys_path_hack(name):
    text = (EXAMPLES / f"{name}.py").read_text()
    assert not re.search(r"sys\.path\.(insert|append|extend)|sys\.path\s*\+?=|os\.chdir", text)


def test_seed000_shared_layer(run_example):
    run = run_example("seed000_shared_layer")
    q = run.result("question")
    assert run.field(q, "model.trainable", "layer_flags") is False
    assert run.field(q, "layer_flags", "model_trainable_weights") == [True, True, True]
    assert run.field(q, "model_trainable_weights") == 0

    shared = ["shared_layer/bias", "shared_layer/kernel"]
    head1 = ["model1_head/bias", "model1_head/kernel"]
    head2 = ["model2_head/bias", "model2_head/kernel"]

    def changed(scenario, model):
        line = run.result(f"{scenario} fit={model} ")
        return sorted(run.field(line, "changed", "unchanged"))

    # model1.trainable = False: model1.fit changes nothing; model2 trains the shared layer.
    assert changed("model1.trainable=False", "model1") == []
    assert changed("model1.trainable=False", "model2") == sorted(head2 + shared)
    # model1.layers[1].trainable = False: shared layer frozen for both models.
    assert changed("model1.layers[1].trainable=False", "model1") == head1
    assert changed("model1.layers[1].trainable=False", "model2") == head2


def test_seed002_dropout_frozen(run_example):
    run = run_example("seed002_dropout_frozen")
    lines = run.stdout.splitlines()
    # The seed's two prints: a dropped-and-scaled row, then an all-ones row.
    phase1 = ast.literal_eval(lines[0].replace("array(", "").replace(", dtype=float32)", ""))
    phase0 = ast.literal_eval(lines[1].replace("array(", "").replace(", dtype=float32)", ""))
    assert set(phase1[0][0]) <= {0.0, 2.0} and 0.0 in phase1[0][0] and len(phase1[0][0]) == 10
    assert phase0[0][0] == [1.0] * 10
    assert "dtype=float32" in lines[0]
    r1 = run.result("phase1 ")
    assert run.field(r1, "dropped", "values") > 0 and run.field(r1, "values") == [0.0, 2.0]
    r0 = run.result("phase0 ")
    assert run.field(r0, "dropped", "values") == 0 and run.field(r0, "values") == [1.0]

    a = run.result("model_A ")
    assert "differs_from_phase0=True" in a and "two_phase1_calls_differ=True" in a
    ab = run.result("model_AB training")
    assert run.field(ab, "dropout_active") is True
    fit = run.result("model_AB fit")
    assert run.field(fit, "changed", "unchanged") == ["new_dense/bias", "new_dense/kernel"]
    unchanged = run.field(fit, "unchanged")
    assert len(unchanged) == 8 and all(p.startswith(("model_A_", "model_B_")) for p in unchanged)
    # explain_trainable names the frozen containers.
    assert "Model 'model_A' has trainable=False" in run.stdout


def _weights_blocks(stdout):
    """{case: [(label, Model-Normal weights, Model-Fixed weights) x 3]} from the seed's prints."""
    cases = {}
    case = None
    label = None
    for line in stdout.splitlines():
        m = re.match(r"=== Case (\d) ===", line)
        if m:
            case = int(m.group(1))
            cases[case] = []
        elif line in ("Initial Weights", "after training Model-Normal", "after training Model-Fixed"):
            label = line
        elif line.startswith("Model-Normal: "):
            normal = ast.literal_eval(line[len("Model-Normal: "):])
        elif line.startswith("Model-Fixed : "):
            cases[case].append((label, normal, ast.literal_eval(line[len("Model-Fixed : "):])))
    return cases


def _check_case(blocks, case):
    (_, n0, f0), (_, n1, f1), (_, n2, f2) = blocks
    assert [len(n0), len(f0)] == [6, 6]
    # The container's 4 arrays are shared by both models, at every point.
    for n, f in ((n0, f0), (n1, f1), (n2, f2)):
        assert n[:4] == f[:4]
    # model_normal.fit: container and its own Dense change; model_fixed's Dense does not.
    assert all(a != b for a, b in zip(n0, n1))
    assert f1[4:] == f0[4:]
    # model_fixed.fit: its own Dense changes; model_normal's Dense does not.
    assert all(a != b for a, b in zip(f1[4:], f2[4:]))
    assert n2[4:] == n1[4:]
    container_changed = any(a != b for a, b in zip(f1[:4], f2[:4]))
    assert container_changed == (case == 2)


def test_seed003_containers(run_example):
    run = run_example("seed003_containers")
    _check_seed003_output(run, [1, 2])


def test_seed003_case_selected_on_the_command_line(load_example, run_example, capsys):
    """``python seed003_containers.py 1`` runs Case 1 only (in-process: same main())."""
    ex = load_example("seed003_containers")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Case 1 alone warns about nothing
        ex.main(["1"])
    _check_seed003_output(run_example.parse(capsys.readouterr().out), [1])
    with pytest.raises(SystemExit, match="usage"):
        ex.main(["3"])


def _check_seed003_output(run, cases):
    blocks = _weights_blocks(run.stdout)
    assert sorted(blocks) == cases
    for case in cases:
        assert [b[0] for b in blocks[case]] == [
            "Initial Weights", "after training Model-Normal", "after training Model-Fixed"]
        _check_case(blocks[case], case)
        normal = run.result(f"case={case} fit=model_normal ")
        fixed = run.result(f"case={case} fit=model_fixed ")
        assert run.field(normal, "container", "other") == "Change"
        assert run.field(normal, "other") == "Change"
        expected = "It does not change" if case == 1 else "Change"
        assert run.field(fixed, "container", "other") == expected
        assert run.field(fixed, "other") == "Change"
    # Case 2 warns once, naming the model and asking for compile() again.
    warns = [l for l in run.stderr.splitlines() if "UserWarning" in l]
    assert len(warns) == (1 if 2 in cases else 0), run.stderr
    if warns:
        assert "compile() again" in warns[0] and "Model 'model_1'" in warns[0]
    # Printed like the seed: plain floats, no np.float32(...) reprs.
    assert "np.float32" not in run.stdout


def test_seed004_training_vs_trainable(run_example):
    run = run_example("seed004_training_vs_trainable")
    p = run.result("pinned_dropout")
    assert run.field(p, "predict_zeros", "call_training_false_zeros") > 0
    assert run.field(p, "values") == [0.0, 2.0]
    assert int(re.search(r"call_training_false_zeros=(\d+)", p).group(1)) > 0

    b = run.result("frozen_base")
    assert "base_trainable_weights=0 " in b and "model_trainable_weights=2 " in b
    assert "base_changed=False" in b and "dense_changed=True" in b

    t = run.result("autoscale_trainable")
    assert "trainable_weights=1 " in t and "scale_changed=True" in t
    assert abs(float(re.search(r"scale_after=([\d.]+)", t).group(1)) - 1.5) < 0.1
    assert int(re.search(r"dropout_zeros_in_predict=(\d+)", t).group(1)) > 0
    assert int(re.search(r"dropout_zeros_in_call=(\d+)", t).group(1)) > 0
    f = run.result("autoscale_frozen")
    assert "trainable_weights=0 " in f and "scale_changed=False" in f
    assert "scale_after=1.0000" in f
    assert int(re.search(r"dropout_zeros_in_predict=(\d+)", f).group(1)) > 0
    assert int(re.search(r"dropout_zeros_in_call=(\d+)", f).group(1)) > 0
    assert "no trainable weights" in f

    bn = run.result("batchnorm_frozen")
    assert run.field(bn, "changed", "training_true_equals_inference") == {
        "gamma": False, "beta": False, "moving_mean": False, "moving_variance": False}
    assert run.field(bn, "training_true_equals_inference") is True
    bt = run.result("batchnorm_trainable")
    assert run.field(bt, "changed", "training_true_equals_inference") == {
        "gamma": True, "beta": True, "moving_mean": True, "moving_variance": True}
    assert run.field(bt, "training_true_equals_inference") is False


def test_autoscale_dropout_script(run_example):
    run = run_example("autoscale_dropout")
    assert "trainable weights: ['auto_scale_dropout/scale']" in run.stdout
    train_line = run.stdout.split("training=False")[0]
    assert "0." in train_line and "2." in train_line
