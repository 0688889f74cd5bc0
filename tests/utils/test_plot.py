"""plot_model / model_to_dot (DOT text, frozen marks, clusters, stale compile,
rendering or .dot fallback) and plot_history."""
import re
import shutil

import numpy as np
import pytest

import fastlayers as fl
from fastlayers.utils import plot as plot_mod


def transfer_model():
    inp = fl.Input((4,), name="pixels")
    base = fl.Sequential([fl.layers.Dense(8, activation="relu", input_shape=(4,), name="d1"),
                          fl.layers.BatchNormalization(name="bn")], name="base")
    h = base(inp)
    out = fl.layers.Dense(3, name="head")(h)
    return fl.Model(inp, out, name="tl"), base


def box(dot, name):
    m = re.search(r"(n\d+) \[label=\"" + re.escape(name) + r"[^\n]*", dot)
    assert m, f"no box for {name}"
    return m.group(1), m.group(0)


def test_boxes_edges_and_labels():
    model, _ = transfer_model()
    dot = fl.utils.model_to_dot(model)
    assert dot.startswith('digraph "tl" {') and dot.rstrip().endswith("}")
    inp, _ = box(dot, "pixels (InputLayer)")
    base, base_line = box(dot, "base (Sequential)")
    head, _ = box(dot, "head (Dense)")
    assert "box3d" in base_line  # a collapsed container
    assert f"{inp} -> {base};" in dot and f"{base} -> {head};" in dot
    assert "d1" not in dot  # not expanded


def test_show_shapes_dtype_and_no_names():
    model, _ = transfer_model()
    dot = fl.utils.model_to_dot(model, show_shapes=True, show_dtype=True)
    _, line = box(dot, "head (Dense)")
    assert "input: (None, 8)" in line and "output: (None, 3)" in line and "dtype: float32" in line
    dot = fl.utils.model_to_dot(model, show_layer_names=False)
    assert "head" not in dot and '"Dense' in dot


def test_expand_nested_draws_clusters_and_edges_through():
    model, _ = transfer_model()
    dot = fl.utils.model_to_dot(model, expand_nested=True, rankdir="LR")
    assert "rankdir=LR" in dot and "subgraph cluster_" in dot
    d1, _ = box(dot, "d1 (Dense)")
    bn, _ = box(dot, "bn (BatchNormalization)")
    head, _ = box(dot, "head (Dense)")
    assert f"{d1} -> {bn};" in dot and f"{bn} -> {head};" in dot


def test_frozen_layers_and_containers_are_marked():
    model, base = transfer_model()
    base.trainable = False
    model.compile("sgd", "mse")
    dot = fl.utils.model_to_dot(model, expand_nested=True, show_trainable=True)
    _, d1 = box(dot, "d1 (Dense)")
    _, head = box(dot, "head (Dense)")
    assert "Trainable: N" in d1 and "grey90" in d1      # frozen through its container
    assert "Trainable: Y" in head and 'fillcolor="white"' in head
    cluster = dot[dot.index("subgraph"):]
    assert "(frozen: trainable=False)" in cluster and 'style="filled,dashed"' in cluster
    # a layer frozen by its own flag: dashed grey
    model.get_layer("head").trainable = False
    dot = fl.utils.model_to_dot(model)
    _, head = box(dot, "head (Dense)")
    assert "dashed" in head and "grey75" in head
    _, base_line = box(dot, "base (Sequential)")
    assert "dashed" in base_line


def test_stale_compile_is_shown():
    model, base = transfer_model()
    model.compile("sgd", "mse")
    assert "stale" not in fl.utils.model_to_dot(model)
    base.trainable = False   # compiled set still trains base
    dot = fl.utils.model_to_dot(model, expand_nested=True)
    assert "compile() is stale" in dot
    _, d1 = box(dot, "d1 (Dense)")
    assert 'color="red"' in d1 and "fit still trains it" in d1
    _, head = box(dot, "head (Dense)")
    assert "red" not in head
    model.compile("sgd", "mse")
    base.trainable = True    # now trainable, not compiled
    dot = fl.utils.model_to_dot(model, expand_nested=True)
    _, d1 = box(dot, "d1 (Dense)")
    assert "darkorange" in d1 and "until compile()" in d1


def test_shared_layer_is_one_box_with_two_edges():
    a, b = fl.Input((3,), name="a"), fl.Input((3,), name="b")
    shared = fl.layers.Dense(2, name="shared")
    out = fl.layers.Add(name="add")([shared(a), shared(b)])
    dot = fl.utils.model_to_dot(fl.Model([a, b], out))
    s, _ = box(dot, "shared (Dense)")
    assert dot.count('label="shared (Dense)') == 1
    na, _ = box(dot, "a (InputLayer)")
    nb, _ = box(dot, "b (InputLayer)")
    assert f"{na} -> {s};" in dot and f"{nb} -> {s};" in dot


def test_bad_arguments():
    model, _ = transfer_model()
    with pytest.raises(ValueError, match="rankdir"):
        fl.utils.model_to_dot(model, rankdir="sideways")
    with pytest.raises(ValueError, match="no graph"):
        fl.utils.model_to_dot(fl.Sequential())
    with pytest.raises(ValueError, match="format"):
        fl.utils.plot_model(model, to_file="model.bmpx")


def test_dot_file_written_directly(tmp_path):
    model, _ = transfer_model()
    path = fl.utils.plot_model(model, to_file=str(tmp_path / "m.dot"))
    assert open(path).read() == fl.utils.model_to_dot(model)


def test_without_graphviz_writes_dot_and_says_how(tmp_path, monkeypatch):
    monkeypatch.setattr(plot_mod.shutil, "which", lambda name: None)
    model, _ = transfer_model()
    with pytest.warns(UserWarning, match=r"apt-get install graphviz.*dot -Tpng"):
        path = fl.utils.plot_model(model, to_file=str(tmp_path / "m.png"))
    assert path == str(tmp_path / "m.dot") and not (tmp_path / "m.png").exists()
    assert open(path).read().startswith("digraph")


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz 'dot' not installed")
@pytest.mark.parametrize("ext,magic", [(".png", b"\x89PNG"), (".svg", b"<?xml"),
                                       (".pdf", b"%PDF")])
def test_renders_with_graphviz(tmp_path, ext, magic):
    model, base = transfer_model()
    base.trainable = False
    path = fl.utils.plot_model(model, to_file=str(tmp_path / ("m" + ext)), show_shapes=True,
                               show_trainable=True, expand_nested=True, dpi=50)
    assert open(path, "rb").read(len(magic)) == magic


def test_plot_history(tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    model = fl.Sequential([fl.layers.Dense(1, input_shape=(2,))])
    model.compile("sgd", "mse", metrics=["mae"])
    x = np.ones((10, 2), "float32")
    hist = model.fit(x, np.zeros((10, 1), "float32"), epochs=3, verbose=0, validation_split=0.2)
    fig = fl.utils.plot_history(hist, to_file=str(tmp_path / "h.png"))
    assert open(tmp_path / "h.png", "rb").read(4) == b"\x89PNG"
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["loss", "mae"]
    lines = fig.axes[0].get_lines()
    assert [l.get_label() for l in lines] == ["training", "validation"]
    np.testing.assert_allclose(lines[1].get_ydata(), hist.history["val_loss"])
    np.testing.assert_array_equal(lines[0].get_xdata(), [1, 2, 3])
    fig = fl.utils.plot_history(hist.history, metrics=["mae"])
    assert len(fig.axes) == 1
    with pytest.raises(ValueError, match="not in the history"):
        fl.utils.plot_history(hist, metrics=["accuracy"])
    with pytest.raises(TypeError, match="History"):
        fl.utils.plot_history([1, 2])


def test_plot_history_without_matplotlib(monkeypatch):
    import builtins

    real = builtins.__import__

    def fake(name, *a, **k):
        if name.startswith("matplotlib"):
            raise ImportError("no matplotlib")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(ImportError, match=r"fastlayers\[plot\]"):
        fl.utils.plot_history({"loss": [1.0]})
