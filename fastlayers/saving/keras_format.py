"""Keras 3 ``.keras`` files both ways, for the layers both libraries have.

Reading: Keras's config is translated to fastlayers' (the layouts are the same; the
per-class differences -- Keras options fastlayers lacks, accepted only at the values
that mean "not used", otherwise a clear error; regularizers and constraints -- are
the tables of ``keras_layers``), and the weights come from ``model.weights.h5``,
whose groups Keras names after the layers' classes (``layers/dense``,
``layers/dense_1``, ``layers/conv2d``... per container; functional models list their
input layers, Sequential ones do not).

Writing (``model.save(path, format="keras")``): the same translation backwards and
an HDF5 weights file in Keras's layout.  The optimizer state goes both ways too
(Keras's ``optimizer/vars``: iterations, learning rate, then each trainable
variable's slots in Keras's ``trainable_variables`` order).

One difference in meaning survives the trip: a ``training=`` pinned on a call is
recorded in both libraries' configs, and fastlayers replays it on every run (R5),
but Keras 3 lets an outer ``training`` value (which its ``fit`` always passes)
override it.  (Keras also records ``training=False`` on every call of a dropout or
noise layer, its call's default: that one is not read as a pin, so such a layer
drops in fastlayers' ``fit`` as it does in Keras's.)  Needs h5py (``pip install fastlayers[h5]``).
"""
from __future__ import annotations

import datetime
import io
import re
from typing import Dict, List, Tuple

import numpy as np

from . import files, keras_layers
from . import weights as _weights
from .compile_config import compile_from_config, compiled_state, get_compile_config
from .serialization import ConfigError, deserialize_layer, serialize_layer

KERAS_VERSION = "3.15.1"  # the Keras the written layout was checked against


def _require_h5py():
    try:
        import h5py
    except ImportError:
        raise ImportError("Reading or writing Keras 3 weights (model.weights.h5) needs h5py: "
                          "pip install fastlayers[h5]") from None
    return h5py


def _snake(name: str) -> str:
    """Keras's ``to_snake_case`` of a class name, which names its weight groups: a digit
    stays with the word before it (Conv2D -> conv2d, MaxPooling2D -> max_pooling2d)."""
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", re.sub(r"\W+", "", name))
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", s).lower()


# ---------------------------------------------------------------------- Keras -> fastlayers
def from_keras(entry, where: str):
    """fastlayers' serialized form of one Keras 3 serialized layer/model."""
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a serialized layer (a dict)")
    name = entry.get("class_name")
    cfg = dict(entry.get("config") or {})
    out = {k: v for k, v in entry.items() if k in ("name", "inbound_nodes")}
    if name in ("Functional", "Model"):
        cfg.pop("dtype", None)
        cfg["layers"] = [from_keras(e, f"{where}: layers[{i}]")
                         for i, e in enumerate(cfg.get("layers") or [])]
        out.update(class_name="Model", module="fastlayers.models", config=cfg)
    elif name == "Sequential":
        cfg.pop("dtype", None)
        cfg["layers"] = [from_keras(e, f"{where}: layers[{i}]")
                         for i, e in enumerate(cfg.get("layers") or [])]
        out.update(class_name="Sequential", module="fastlayers.models", config=cfg)
    elif name in keras_layers.KERAS_ONLY:
        cfg = keras_layers.layer_from_keras(name, cfg, where)
        out.update(class_name=name, module="fastlayers.layers", config=cfg)
        if "inbound_nodes" in out:
            out["inbound_nodes"] = keras_layers.nodes_from_keras(name, out["inbound_nodes"])
    else:
        raise ConfigError(f"{where}: the Keras layer class {name!r} has no fastlayers "
                          f"equivalent; Keras files may use {', '.join(keras_layers.LAYERS)}, "
                          f"Sequential and functional models")
    out["registered_name"] = None
    return out


def _compile_from_keras(cc: dict, where: str) -> dict:
    out = {"loss_weights": cc.get("loss_weights"), "metrics": cc.get("metrics"),
           "weighted_metrics": cc.get("weighted_metrics")}
    opt = cc.get("optimizer")
    if isinstance(opt, dict):
        ocfg = dict(opt.get("config") or {})
        keep = {"SGD": ("learning_rate", "momentum", "nesterov", "name"),
                "Adam": ("learning_rate", "beta_1", "beta_2", "epsilon", "name")}
        cls = opt.get("class_name")
        if cls not in keep:
            raise ConfigError(f"{where}: optimizer {cls!r} has no fastlayers equivalent "
                              f"(SGD, Adam)")
        for k, ok in (("weight_decay", (None, 0, 0.0)), ("clipnorm", (None,)),
                      ("global_clipnorm", (None,)), ("clipvalue", (None,)),
                      ("use_ema", (False,)), ("amsgrad", (False,)),
                      ("gradient_accumulation_steps", (None,)), ("loss_scale_factor", (None,))):
            if ocfg.get(k, ok[0]) not in ok:
                raise ConfigError(f"{where}: optimizer option {k}={ocfg[k]!r} is not supported")
        if isinstance(ocfg.get("learning_rate"), dict):
            raise ConfigError(f"{where}: learning-rate schedules from Keras are not supported")
        out["optimizer"] = {"class_name": cls,
                            "config": {k: v for k, v in ocfg.items() if k in keep[cls]}}
    elif isinstance(opt, str):
        out["optimizer"] = opt
    loss = cc.get("loss")

    def one(l):
        if isinstance(l, dict) and "class_name" in l:
            lcfg = dict(l.get("config") or {})
            for k, ok in (("reduction", ("sum_over_batch_size", "auto", None)),
                          ("label_smoothing", (0, 0.0, None)), ("axis", (-1, None)),
                          ("ignore_class", (None,)), ("dtype", None)):
                if k in lcfg:
                    v = lcfg.pop(k)
                    if ok is not None and v not in ok:
                        raise ConfigError(f"{where}: loss option {k}={v!r} is not supported")
            return {"class_name": l["class_name"], "config": lcfg, "registered_name": None}
        return l

    if isinstance(loss, list):
        out["loss"] = [one(l) for l in loss]
    elif isinstance(loss, dict) and "class_name" not in loss:
        out["loss"] = {k: one(v) for k, v in loss.items()}
    else:
        out["loss"] = one(loss)
    return out


# ---------------------------------------------------------------------- weights paths
def _keras_class(layer) -> str:
    from ..engine.container import Container
    from ..engine.sequential import Sequential

    if isinstance(layer, Sequential):
        return "Sequential"
    if isinstance(layer, Container):
        return "Functional"
    return type(layer).__name__


def keras_layer_order(container) -> list:
    """The layers in the order Keras 3 lists them (``model.layers``), which names the
    weight groups: deepest first (distance to the outputs), ties by first visit of a
    depth-first walk from the outputs (Keras's ``map_graph``)."""
    from ..engine.layer import InputLayer
    from ..engine.sequential import Sequential

    if isinstance(container, Sequential):
        return container.layers
    input_ids = {id(t) for t in container.inputs}
    finished = set()
    order = []
    first_seen: Dict[int, int] = {}
    layer_of: Dict[int, object] = {}

    def visit(t):
        node = t.node
        if node is None or id(node) in finished:
            return
        is_input = isinstance(node.layer, InputLayer)
        if not is_input and id(t) in input_ids:
            finished.add(id(node))
            return
        first_seen.setdefault(id(node.layer), len(first_seen))
        layer_of[id(node.layer)] = node.layer
        if not is_input:
            for parent in node.inputs:
                visit(parent)
        finished.add(id(node))
        order.append(node)

    for t in container.outputs:
        visit(t)
    in_graph = {id(n) for n in order}
    node_depth: Dict[int, int] = {}
    layer_depth: Dict[int, int] = {}
    for node in reversed(order):
        depth = max(node_depth.setdefault(id(node), 0), layer_depth.get(id(node.layer), 0))
        layer_depth[id(node.layer)] = depth
        node_depth[id(node)] = depth
        for t in node.inputs:
            parent = t.node
            if parent is not None and id(parent) in in_graph:
                node_depth[id(parent)] = max(depth + 1, node_depth.get(id(parent), 0))
    for t in container.inputs:
        layer = t.node.layer if t.node is not None else None
        if isinstance(layer, InputLayer) and id(layer) not in layer_depth:
            layer_depth[id(layer)] = 0
            first_seen[id(layer)] = -1
            layer_of[id(layer)] = layer
    keys = sorted(layer_depth, key=lambda k: (-layer_depth[k], first_seen[k]))
    return [layer_of[k] for k in keys]


def _paths(container, kprefix: str, nprefix: str, out: List[Tuple], groups: List[Tuple]) -> None:
    """``(h5 group of a layer's vars, native entry prefix, layer)`` for every layer."""
    from ..engine.container import Container

    used: Dict[str, int] = {}
    for layer in keras_layer_order(container):
        base = _snake(_keras_class(layer))
        if base in used:
            used[base] += 1
            kname = f"{base}_{used[base]}"
        else:
            used[base] = 0
            kname = base
        kp = f"{kprefix}layers/{kname}/"
        np_ = f"{nprefix}layers/{layer.name}/"
        groups.append((kp + "vars", layer.name))
        if isinstance(layer, Container):
            _paths(layer, kp, np_, out, groups)
        else:
            out.append((kp + "vars", np_, layer))


def keras_trainable_order(model) -> list:
    """The weights in Keras's ``model.trainable_variables`` order (its optimizer's order)."""
    from ..engine.container import Container

    out, seen = [], set()

    def walk(c):
        if not c.trainable:
            return
        for layer in keras_layer_order(c):
            if isinstance(layer, Container):
                walk(layer)
                continue
            for w in layer.trainable_weights:
                if id(w) not in seen:
                    seen.add(id(w))
                    out.append(w)

    walk(model)
    return out


def _state_layout(opt, weights) -> Tuple[List[np.ndarray], int]:
    """``(head, slots per weight)`` of ``opt.get_state(weights)``, through that contract only:
    the head is ``[iterations, optimizer-level state...]``."""
    head = opt.get_state([])
    body = len(opt.get_state(weights)) - len(head)
    return head, (body // len(weights) if weights else 0)


def optimizer_state_from_h5(model, data: bytes, where: str):
    """Keras's optimizer variables as fastlayers ``get_state`` arrays for the compiled
    weights, or ``None`` when the file has none (never stepped) or they do not fit."""
    h5py = _require_h5py()
    opt, compiled = compiled_state(model)
    order = keras_trainable_order(model)
    if {id(w) for w in order} != {id(w) for w in compiled} or len(order) != len(compiled):
        return None
    head, n = _state_layout(opt, compiled)
    with h5py.File(io.BytesIO(data), "r") as f:
        if "optimizer/vars" not in f:
            return None
        g = f["optimizer/vars"]
        keys = sorted((k for k in g.keys() if k.isdigit()), key=int)
        if len(keys) != 2 + n * len(order):
            return None
        arrays = [np.array(g[k][()]) for k in keys]
    slots = {}
    for i, w in enumerate(order):
        slots[id(w)] = [a.astype(w.dtype) for a in arrays[2 + n * i: 2 + n * (i + 1)]]
    state = [np.array(int(arrays[0]), dtype=np.int64)] + head[1:]
    for w in compiled:
        state += slots[id(w)]
    return state


def plan_restore_h5(model, data: bytes, where: str):
    """Check a Keras optimizer state against the compiled ``model``; the step that sets it,
    or ``None`` (not compiled, never stepped, or for other weights)."""
    if compiled_state(model) is None:
        return None
    try:
        state = optimizer_state_from_h5(model, data, where)
    except (KeyError, OSError, TypeError) as exc:
        raise ValueError(f"{where}: unreadable optimizer state ({exc})") from None
    if state is None:
        return None
    opt, compiled = compiled_state(model)
    current = opt.get_state(compiled)
    for i, (a, b) in enumerate(zip(state, current)):
        if a.shape != np.shape(b):
            raise ValueError(f"{where}: optimizer variable {i} has shape {a.shape}, expected "
                             f"{np.shape(b)}")
    return lambda: opt.set_state(compiled, state)


def _optimizer_state_to_h5(f, model) -> None:
    cs = compiled_state(model)
    if cs is None:
        return
    opt, compiled = cs
    order = keras_trainable_order(model)
    if {id(w) for w in order} != {id(w) for w in compiled}:
        return  # a stale compile has no Keras equivalent; Keras starts its optimizer afresh
    head, n = _state_layout(opt, compiled)
    if len(head) != 1:
        return  # optimizer-level state Keras has no place for
    state = opt.get_state(compiled)
    slots = {id(w): state[1 + n * i: 1 + n * (i + 1)] for i, w in enumerate(compiled)}
    g = f.require_group("optimizer/vars")
    g.attrs["name"] = type(opt).__name__.lower()
    values = [np.array(int(state[0]), dtype=np.int64),
              np.array(opt.learning_rate, dtype=np.float32)]
    for w in order:
        values += slots[id(w)]
    for i, v in enumerate(values):
        g.create_dataset(str(i), data=v)


def h5_to_arrays(model, data: bytes, where: str, skip_mismatch: bool = False) -> Dict[str, np.ndarray]:
    """The weights in a Keras ``model.weights.h5`` as native entries of ``model``."""
    h5py = _require_h5py()
    out: Dict[str, np.ndarray] = {}
    paths: List[Tuple] = []
    _paths(model, "", "", paths, [])
    try:
        with h5py.File(io.BytesIO(data), "r") as f:
            for kpath, nprefix, layer in paths:
                n = len(layer.weights)
                if kpath not in f:
                    if n == 0:
                        continue
                    if skip_mismatch:
                        continue
                    raise ValueError(f"{where}: group {kpath!r} (layer {layer.name!r}) is missing")
                grp = f[kpath]
                keys = sorted((k for k in grp.keys()), key=lambda k: int(k) if k.isdigit() else -1)
                if len(keys) != n and not skip_mismatch:
                    raise ValueError(f"{where}: group {kpath!r} holds {len(keys)} arrays, layer "
                                     f"{layer.name!r} has {n} weights")
                for i, k in enumerate(keys[:n]):
                    ds = grp[k]
                    if not isinstance(ds, h5py.Dataset) or ds.dtype.kind not in "fiub":
                        raise ValueError(f"{where}: entry {kpath}/{k} is not a numeric array")
                    out[f"{nprefix}vars/{i}"] = np.array(ds[()])
    except ValueError:
        raise
    except (OSError, KeyError, RuntimeError) as exc:
        raise ValueError(f"{where}: not a readable HDF5 weights file ({exc})") from None
    return out


def h5_weights_bytes(model, include_optimizer: bool = False) -> bytes:
    """A ``model.weights.h5`` in Keras 3's layout for ``model`` (and its optimizer state)."""
    h5py = _require_h5py()
    paths: List[Tuple] = []
    groups: List[Tuple] = []
    _paths(model, "", "", paths, groups)
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        f.create_group("layers")
        for kpath, lname in groups:
            g = f.require_group(kpath)
            g.attrs["name"] = lname
        for kpath, _, layer in paths:
            g = f[kpath]
            for i, w in enumerate(layer.weights):
                g.create_dataset(str(i), data=w.numpy())
        f.require_group("vars").attrs["name"] = model.name
        if include_optimizer:
            _optimizer_state_to_h5(f, model)
    return buf.getvalue()


# ---------------------------------------------------------------------- fastlayers -> Keras
def to_keras(entry: dict, layer=None, where: str = "model") -> dict:
    """Keras 3's serialized form of one fastlayers serialized layer/model."""
    name = entry["class_name"]
    cfg = dict(entry["config"])
    out = {k: v for k, v in entry.items() if k in ("name", "inbound_nodes")}
    if name in ("Model", "Container"):
        cfg["layers"] = [to_keras(e, None, f"{where}/{e.get('name')}") for e in cfg["layers"]]
        out.update(module="keras.src.models.functional", class_name="Functional", config=cfg,
                   registered_name="Functional", build_config={"input_shape": None})
        return out
    if name == "Sequential":
        cfg["layers"] = [to_keras(e, None, where) for e in cfg["layers"]]
        out.update(module="keras", class_name="Sequential", config=cfg, registered_name=None)
        if cfg.get("build_input_shape") is not None:
            out["build_config"] = {"input_shape": cfg["build_input_shape"]}
        return out
    if name not in keras_layers.KERAS_ONLY or entry.get("registered_name"):
        raise ConfigError(f"format='keras': layer {cfg.get('name')!r} ({name}) has no Keras "
                          f"equivalent; Keras files may hold {', '.join(keras_layers.LAYERS)}, "
                          f"Sequential and functional models (save with the default format "
                          f"instead)")
    cfg = keras_layers.layer_to_keras(name, cfg, f"format='keras': layer {cfg.get('name')!r}")
    out.update(module="keras.layers", class_name=name, config=cfg, registered_name=None)
    return out


def _compile_to_keras(cc: dict) -> dict:
    opt = cc["optimizer"]
    ocfg = dict(opt["config"])
    ocfg["name"] = opt["class_name"].lower()

    def loss(l):
        return {"module": "keras.losses", "class_name": l["class_name"],
                "config": dict(l["config"]), "registered_name": None}

    ls = cc["loss"]
    return {"optimizer": {"module": "keras.optimizers", "class_name": opt["class_name"],
                          "config": ocfg, "registered_name": None},
            "loss": [loss(l) for l in ls] if isinstance(ls, list) else loss(ls),
            "loss_weights": cc.get("loss_weights"), "metrics": cc.get("metrics"),
            "weighted_metrics": cc.get("weighted_metrics"), "run_eagerly": False, "steps_per_execution": 1,
            "jit_compile": False}


def keras_archive_bytes(model, include_optimizer: bool = True) -> bytes:
    """A ``.keras`` file Keras 3 loads (config, metadata, HDF5 weights)."""
    entry = to_keras(serialize_layer(model), model)
    cc = get_compile_config(model) if include_optimizer else None
    if cc is not None:
        entry["compile_config"] = _compile_to_keras(cc)
    meta = {"keras_version": KERAS_VERSION,
            "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S")}
    return files.zip_bytes([("metadata.json", files.to_json(meta).encode()),
                            ("config.json", files.to_json(entry).encode()),
                            ("model.weights.h5", h5_weights_bytes(model, cc is not None))])


def load_keras_archive(entries: dict, config, name: str, custom_objects, compile: bool):
    """A fastlayers model from the entries of a Keras 3 ``.keras`` file."""
    where = f"{name}: entry 'config.json'"
    model = deserialize_layer(from_keras(config, where), custom_objects, where)
    wwhere = f"{name}: entry 'model.weights.h5'"
    arrays = h5_to_arrays(model, entries["model.weights.h5"], wwhere)
    # Keras stores float32 weights for float32 layers; cast only between float kinds.
    table, _ = _weights.tables(model)
    for k, w in table:
        a = arrays.get(k)
        if a is not None and a.dtype != w.dtype and a.dtype.kind == "f" and w.dtype.kind == "f":
            arrays[k] = a.astype(w.dtype)
    plan = _weights.plan_assignment(model, arrays, wwhere)
    _weights.apply_assignment(plan)
    cc = config.get("compile_config") if isinstance(config, dict) else None
    if compile and cc:
        compile_from_config(model, _compile_from_keras(cc, f"{where} (compile_config)"),
                            custom_objects, f"{where} (compile_config)")
        restore = plan_restore_h5(model, entries["model.weights.h5"], wwhere)
        if restore is not None:
            restore()
    return model
