"""Pictures: the model graph as Graphviz DOT (``plot_model``) and training curves.

The DOT text is built here (no pydot); ``plot_model`` renders it through Graphviz's
``dot`` program when it is on ``PATH`` (Debian/Ubuntu: ``apt-get install graphviz``)
and otherwise writes the ``.dot`` file and says how to render it.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import warnings
from typing import Dict, List, Optional, Sequence, Set, Tuple

_FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf", ".jpg": "jpg", ".jpeg": "jpg",
            ".gif": "gif", ".ps": "ps"}

# Frozen by its own flag: grey and dashed; frozen through a container: light grey.
_STYLE_OWN_FROZEN = 'style="filled,dashed", fillcolor="grey75"'
_STYLE_PATH_FROZEN = 'style="filled", fillcolor="grey90"'
_STYLE_TRAINABLE = 'style="filled", fillcolor="white"'
_STALE_TRAINS = 'color="red", penwidth=2'        # compiled set trains it, flags say frozen
_STALE_FROZEN = 'color="darkorange", penwidth=2'  # flags say trainable, compiled set does not


def _q(text: str) -> str:
    """A DOT double-quoted string."""
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _shape_text(shapes) -> str:
    shapes = [tuple(s) for s in shapes]
    if not shapes:
        return "?"
    return str(shapes[0]) if len(shapes) == 1 else "[" + ", ".join(map(str, shapes)) + "]"


class _DotBuilder:
    def __init__(self, model, show_shapes, show_dtype, show_layer_names, show_trainable,
                 expand_nested, rankdir, dpi):
        from ..engine.container import Container

        self._Container = Container
        self.model = model
        self.show_shapes = show_shapes
        self.show_dtype = show_dtype
        self.show_layer_names = show_layer_names
        self.show_trainable = show_trainable
        self.expand_nested = expand_nested
        self.rankdir = rankdir
        self.dpi = dpi
        self.lines: List[str] = []
        self.ids: Dict[Tuple, str] = {}
        self.edges: List[Tuple[str, str]] = []
        self.now: Set[int] = {id(w) for w in model.trainable_weights}
        compiled = getattr(model, "_compiled", None)
        self.compiled: Optional[Set[int]] = None
        if compiled is not None:
            self.compiled = {id(w) for w in model.compiled_trainable_weights}
        self.stale = self.compiled is not None and self.compiled != self.now

    # ------------------------------------------------------------------ boxes
    def _id(self, key: Tuple) -> str:
        if key not in self.ids:
            self.ids[key] = f"n{len(self.ids)}"
        return self.ids[key]

    def _stale_marks(self, layer) -> Tuple[str, str]:
        """(extra style, label line) for a layer whose compiled status differs from now."""
        if not self.stale:
            return "", ""
        ws = [id(w) for w in layer.weights]
        trains = [w for w in ws if w in self.compiled and w not in self.now]
        waits = [w for w in ws if w in self.now and w not in self.compiled]
        if trains:
            return _STALE_TRAINS, "fit still trains it (compiled before freezing)"
        if waits:
            return _STALE_FROZEN, "not trained until compile()"
        return "", ""

    def _box(self, key, layer, ins, outs, path_frozen: bool, indent: str,
             container: bool = False):
        nid = self._id(key)
        kind = type(layer).__name__
        lines = [f"{layer.name} ({kind})" if self.show_layer_names else kind]
        if self.show_dtype:
            lines.append(f"dtype: {getattr(layer, 'dtype', '?')}")
        if self.show_shapes:
            lines.append(f"input: {_shape_text(ins)}")
            lines.append(f"output: {_shape_text(outs)}")
        own_frozen = not layer.trainable
        frozen = own_frozen or path_frozen
        if self.show_trainable:
            lines.append(f"Trainable: {'N' if frozen else 'Y'}")
        style = (_STYLE_OWN_FROZEN if own_frozen else
                 _STYLE_PATH_FROZEN if frozen else _STYLE_TRAINABLE)
        extra, note = self._stale_marks(layer)
        if note:
            lines.append(note)
        attrs = [f"label={_q(chr(10).join(lines))}", "shape=box3d" if container else "shape=box",
                 style]
        if extra:
            attrs.append(extra)
        self.lines.append(f"{indent}{nid} [{', '.join(attrs)}];")
        return nid

    # ------------------------------------------------------------------ graph
    def _entry(self, container, i: int, prefix: Tuple) -> str:
        """Where an edge into input ``i`` of an expanded container lands."""
        t = container.inputs[i]
        return self._id(prefix + (id(container), "in", id(t.node.layer)))

    def _exit(self, layer, index: int, prefix: Tuple) -> str:
        """The box an output of ``layer`` (maybe an expanded container) leaves from."""
        if self._expands(layer):
            inner = prefix + (id(layer),)
            t = layer.outputs[index]
            if t.node is not None and not self._is_input_node(t.node):
                return self._exit(t.node.layer, t.index, inner)
            return self._id(inner + ("in", id(t.node.layer)))
        return self._id(prefix + ("layer", id(layer)))

    def _expands(self, layer) -> bool:
        return self.expand_nested and isinstance(layer, self._Container)

    @staticmethod
    def _is_input_node(node) -> bool:
        from ..engine.layer import InputLayer

        return isinstance(node.layer, InputLayer)

    def _source(self, t, prefix: Tuple, container) -> str:
        node = t.node
        if node is None or self._is_input_node(node):
            return self._id(prefix + ("in", id(node.layer if node else t)))
        return self._exit(node.layer, t.index, prefix)

    def container(self, c, prefix: Tuple, path_frozen: bool, indent: str) -> None:
        for t in c.inputs:
            layer = t.node.layer
            self._box(prefix + ("in", id(layer)), layer, [t.shape], [t.shape], path_frozen,
                      indent)
        drawn: Set[int] = set()
        for node in c._nodes:
            layer = node.layer
            if self._is_input_node(node):
                continue
            if self._expands(layer):
                if id(layer) not in drawn:
                    drawn.add(id(layer))
                    self.cluster(layer, prefix, path_frozen, indent)
                for i, t in enumerate(node.inputs):
                    self.edges.append((self._source(t, prefix, c),
                                       self._entry(layer, i, prefix)))
                continue
            if id(layer) not in drawn:
                drawn.add(id(layer))
                self._box(prefix + ("layer", id(layer)), layer,
                          [t.shape for t in node.inputs], [t.shape for t in node.outputs],
                          path_frozen, indent, container=isinstance(layer, self._Container))
            target = self._id(prefix + ("layer", id(layer)))
            for t in node.inputs:
                self.edges.append((self._source(t, prefix, c), target))

    def cluster(self, c, prefix: Tuple, path_frozen: bool, indent: str) -> None:
        own_frozen = not c.trainable
        frozen = own_frozen or path_frozen
        label = f"{c.name} ({type(c).__name__})" if self.show_layer_names else type(c).__name__
        if self.show_trainable:
            label += f"\nTrainable: {'N' if frozen else 'Y'}"
        if own_frozen:
            label += "\n(frozen: trainable=False)"
        cid = f"cluster_{len(self.ids)}_{len(self.lines)}"
        self.lines.append(f"{indent}subgraph {cid} {{")
        inner = indent + "  "
        self.lines.append(f"{inner}label={_q(label)};")
        if own_frozen:
            self.lines.append(f'{inner}style="filled,dashed"; fillcolor="grey92"; color="grey40";')
        elif frozen:
            self.lines.append(f'{inner}style="filled"; fillcolor="grey96";')
        else:
            self.lines.append(f'{inner}style="rounded"; color="black";')
        self.container(c, prefix + (id(c),), frozen, inner)
        self.lines.append(f"{indent}}}")

    def build(self) -> str:
        m = self.model
        self.lines.append(f"digraph {_q(m.name)} {{")
        graph_label = f"{m.name} ({type(m).__name__})"
        if self.stale:
            graph_label += ("\ncompile() is stale (trainable flags changed since):\n"
                            "red = fit still trains it, orange = not trained until compile()")
        self.lines.append(f"  graph [rankdir={self.rankdir}, dpi={int(self.dpi)}, "
                          f"label={_q(graph_label)}, labelloc=t, fontname=Helvetica];")
        self.lines.append('  node [fontname=Helvetica, fontsize=11];')
        self.container(m, (), not m.trainable, "  ")
        seen = set()
        for a, b in self.edges:
            if (a, b) not in seen:
                seen.add((a, b))
                self.lines.append(f"  {a} -> {b};")
        self.lines.append("}")
        return "\n".join(self.lines) + "\n"


def model_to_dot(model, show_shapes: bool = False, show_dtype: bool = False,
                 show_layer_names: bool = True, rankdir: str = "TB", expand_nested: bool = False,
                 dpi: int = 96, show_trainable: bool = False, **kwargs) -> str:
    """The model's graph as Graphviz DOT text (Keras's ``model_to_dot`` arguments).

    Frozen layers are grey with a dashed border (by their own flag) or light grey
    (frozen through a container); with ``expand_nested`` nested models are
    clusters, a frozen one dashed and labelled.  When the trainable flags changed
    since ``compile()``, the weights ``fit`` still trains are outlined red and those
    that wait for a new ``compile()`` orange.
    """
    if kwargs:
        raise TypeError(f"model_to_dot: unexpected arguments {sorted(kwargs)}")
    if rankdir not in ("TB", "LR", "BT", "RL"):
        raise ValueError(f"model_to_dot: rankdir must be 'TB', 'LR', 'BT' or 'RL', got {rankdir!r}")
    if not getattr(model, "outputs", None):
        raise ValueError(f"model_to_dot: model {getattr(model, 'name', model)!r} has no graph yet "
                         f"(build it or call it on data first)")
    return _DotBuilder(model, show_shapes, show_dtype, show_layer_names, show_trainable,
                       expand_nested, rankdir, dpi).build()


def plot_model(model, to_file: str = "model.png", show_shapes: bool = False,
               show_dtype: bool = False, show_layer_names: bool = True, rankdir: str = "TB",
               expand_nested: bool = False, dpi: int = 96, show_trainable: bool = False,
               **kwargs) -> str:
    """Draw the model graph to ``to_file`` (``.png``, ``.svg``, ``.pdf``... or ``.dot``).

    Renders with Graphviz's ``dot`` when it is on ``PATH``; otherwise writes the DOT
    text next to ``to_file`` (suffix ``.dot``) and warns how to render it.
    Returns the path written.  See :func:`model_to_dot` for the marks.
    """
    dot_text = model_to_dot(model, show_shapes=show_shapes, show_dtype=show_dtype,
                            show_layer_names=show_layer_names, rankdir=rankdir,
                            expand_nested=expand_nested, dpi=dpi,
                            show_trainable=show_trainable, **kwargs)
    to_file = os.fspath(to_file)
    root, ext = os.path.splitext(to_file)
    ext = ext.lower()
    if ext == ".dot" or ext == ".gv":
        _write_text(to_file, dot_text)
        return to_file
    fmt = _FORMATS.get(ext)
    if fmt is None:
        raise ValueError(f"plot_model: cannot tell the format from {to_file!r}; use a name "
                         f"ending in {', '.join(sorted(_FORMATS))} or .dot")
    dot = shutil.which("dot")
    if dot is not None:
        directory = os.path.dirname(to_file)
        if directory:
            os.makedirs(directory, exist_ok=True)
        proc = subprocess.run([dot, f"-T{fmt}", "-o", to_file], input=dot_text.encode("utf-8"),
                              capture_output=True)
        if proc.returncode == 0:
            return to_file
        err = proc.stderr.decode(errors="replace").strip()
        warnings.warn(f"plot_model: Graphviz 'dot' failed ({err}); writing the DOT text instead",
                      RuntimeWarning, stacklevel=2)
    dot_file = root + ".dot"
    _write_text(dot_file, dot_text)
    warnings.warn(f"plot_model: Graphviz's 'dot' program was not found, so {to_file!r} was not "
                  f"drawn; the graph was written to {dot_file!r}. Install Graphviz (Debian/"
                  f"Ubuntu: apt-get install graphviz) and render it with: "
                  f"dot -T{fmt} {dot_file} -o {to_file}", UserWarning, stacklevel=2)
    return dot_file


def _write_text(path: str, text: str) -> None:
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


# ---------------------------------------------------------------------- history
def _history_dict(history) -> Tuple[Dict[str, list], List[int]]:
    if hasattr(history, "history") and isinstance(history.history, dict):
        data = history.history
        epochs = list(getattr(history, "epoch", []) or [])
    elif isinstance(history, dict):
        data, epochs = history, []
    else:
        raise TypeError(f"plot_history: expected a History (what fit returns) or a dict of "
                        f"lists, got {type(history).__name__}")
    if not data:
        raise ValueError("plot_history: the history is empty (did fit run any epoch?)")
    n = max(len(v) for v in data.values())
    if len(epochs) != n:
        epochs = list(range(n))
    return data, epochs


def plot_history(history, to_file: Optional[str] = None, metrics: Optional[Sequence[str]] = None,
                 dpi: int = 96):
    """Loss and metrics per epoch, training against validation (needs matplotlib).

    ``history`` is what ``fit`` returns (or its ``.history`` dict); one panel per
    quantity (``metrics`` picks which; default all), the ``val_`` series drawn
    with the training one.  With ``to_file`` the figure is saved there.  Returns
    the matplotlib ``Figure``.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("plot_history needs matplotlib, an optional extra: "
                          "pip install 'fastlayers[plot]' (or pip install matplotlib)") from None
    data, epochs = _history_dict(history)
    names = [k for k in data if not k.startswith("val_")]
    names += [k[4:] for k in data if k.startswith("val_") and k[4:] not in data]
    if metrics is not None:
        unknown = [m for m in metrics if m not in names]
        if unknown:
            raise ValueError(f"plot_history: {unknown} not in the history; it has {names}")
        names = list(metrics)
    fig = Figure(figsize=(4.5 * len(names), 3.6), dpi=dpi)
    x = [e + 1 for e in epochs]
    for i, name in enumerate(names):
        ax = fig.add_subplot(1, len(names), i + 1)
        for key, label, style in ((name, "training", "-o"), (f"val_{name}", "validation", "--s")):
            values = data.get(key)
            if values:
                ax.plot(x[:len(values)], values, style, markersize=3, label=label)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.tight_layout()
    if to_file is not None:
        to_file = os.fspath(to_file)
        directory = os.path.dirname(to_file)
        if directory:
            os.makedirs(directory, exist_ok=True)
        fig.savefig(to_file)
    return fig
