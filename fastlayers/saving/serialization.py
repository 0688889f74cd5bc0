"""Layers and models to JSON-ready configs and back, in Keras 3's layout.

A serialized object is ``{"module", "class_name", "config", "registered_name"}``.
A functional model's config lists its layers, each with its ``inbound_nodes``: one
entry per call of the layer *inside this model* (a shared layer has several), each
naming its input tensors as ``[layer_name, node_index, tensor_index]`` and keeping
the call's pinned ``training=`` in ``kwargs`` (R5).  Nested containers and models
carry their own graph config.
"""
from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Tuple

from .registry import registered_name_of, resolve


class ConfigError(ValueError):
    """A config that cannot be turned back into a model (names the entry)."""


def _builtin_classes() -> Dict[str, type]:
    from .. import layers as L
    from ..engine.container import Container
    from ..engine.layer import InputLayer
    from ..engine.sequential import Sequential
    from ..engine.training import Model

    from ..engine.layer import Layer

    # Every layer class fastlayers.layers exports (the conv catalogue included), by its
    # own class name: Keras's aliases (Conv2D/Convolution2D) share one class and one entry.
    # Lambda wraps a Python function, which a config cannot carry: not a built-in here.
    out = {cls.__name__: cls for cls in (getattr(L, n) for n in L.__all__)
           if isinstance(cls, type) and issubclass(cls, Layer) and cls not in (Layer, L.Lambda)
           and cls.__module__.startswith("fastlayers.layers")}
    out.update({"InputLayer": InputLayer, "Container": Container, "Model": Model,
                "Functional": Model, "Sequential": Sequential})
    return out


def _module_of(cls) -> str:
    mod = cls.__module__
    if mod.startswith("fastlayers.engine."):
        return "fastlayers.models" if cls.__name__ != "InputLayer" else "fastlayers.layers"
    if mod.startswith("fastlayers.layers"):
        return "fastlayers.layers"
    return mod


# ---------------------------------------------------------------------- layers
def serialize_layer(layer) -> dict:
    """``{"module", "class_name", "config", "registered_name"}`` for any layer or model."""
    cls = type(layer)
    builtin = _builtin_classes().get(cls.__name__) is cls
    registered = None if builtin else registered_name_of(cls)
    config = layer.get_config()
    if not isinstance(config, dict):
        raise ConfigError(f"Layer {layer.name!r} ({cls.__name__}): get_config() must return a "
                          f"dict, got {type(config).__name__}")
    return {"module": _module_of(cls), "class_name": cls.__name__, "config": config,
            "registered_name": registered}


def _lookup_class(entry: dict, custom_objects, where: str):
    name = entry.get("class_name")
    reg = entry.get("registered_name")
    if not isinstance(name, str):
        raise ConfigError(f"{where}: 'class_name' must be a string, got {name!r}")
    cls = resolve(reg, custom_objects) if reg else None
    if cls is None:
        cls = resolve(name, custom_objects)
    if cls is None:
        cls = _builtin_classes().get(name)
    if cls is None:
        known = ", ".join(sorted(_builtin_classes()))
        raise ConfigError(
            f"{where}: unknown layer class {reg or name!r}. Built-in classes are {known}; for "
            f"your own layer, decorate it with @fastlayers.utils.register_serializable() or "
            f"pass custom_objects={{{name!r}: {name}}}")
    if not isinstance(cls, type):
        raise ConfigError(f"{where}: {name!r} resolves to {cls!r}, which is not a class")
    return cls


def deserialize_layer(entry: Any, custom_objects: Optional[dict] = None, where: str = "config"):
    """A new layer (or model) from :func:`serialize_layer`'s output."""
    from ..engine.container import Container
    from ..engine.layer import Layer
    from ..engine.sequential import Sequential

    if not isinstance(entry, dict) or "config" not in entry:
        raise ConfigError(f"{where}: expected a dict with 'class_name' and 'config', got "
                          f"{type(entry).__name__}")
    cls = _lookup_class(entry, custom_objects, where)
    config = entry["config"]
    if not isinstance(config, dict):
        raise ConfigError(f"{where}: 'config' must be a dict")
    if not issubclass(cls, Layer):
        raise ConfigError(f"{where}: class {cls.__name__!r} is not a fastlayers Layer")
    from .registry import custom_object_scope

    with custom_object_scope(custom_objects):
        try:
            if issubclass(cls, Sequential):
                layer = sequential_from_config(cls, config, custom_objects, where)
            elif issubclass(cls, Container) and "layers" in config:
                layer = functional_from_config(cls, config, custom_objects, where)
            else:
                layer = cls.from_config(dict(config))
            _reserve_name(layer.name)
            return layer
        except ConfigError:
            raise
        except (TypeError, ValueError, KeyError) as exc:
            raise ConfigError(f"{where}: cannot rebuild {cls.__name__} "
                              f"{config.get('name', '')!r} from its config: {exc}") from None


def _reserve_name(name: str) -> None:
    """Advance the automatic-name counter past a loaded name, so a layer created after
    ``load_model`` in a fresh process is not called ``dense`` next to a loaded ``dense``."""
    from ..engine import layer as _layer

    m = re.fullmatch(r"(.+?)(?:_(\d+))?", name)
    base, n = m.group(1), int(m.group(2)) + 1 if m.group(2) else 1
    if _layer._NAME_COUNTS.get(base, 0) < n:
        _layer._NAME_COUNTS[base] = n


# ---------------------------------------------------------------------- functional graphs
def _nodes_by_layer(container) -> Dict[int, List]:
    """For each layer, its calls inside ``container``, in call order (Keras's node indices)."""
    from ..engine.layer import InputLayer

    inside = {id(n) for n in container._nodes}
    out: Dict[int, List] = {}
    for layer in container._layers:
        if isinstance(layer, InputLayer):
            out[id(layer)] = layer._inbound_nodes[:1]
        else:
            out[id(layer)] = [n for n in layer._inbound_nodes if id(n) in inside]
    return out


def _history(t, index_of: Dict[int, Tuple[str, int]]) -> list:
    name, k = index_of[id(t.node)]
    return [name, k, t.index]


def _tensor_config(t, index_of) -> dict:
    return {"class_name": "__keras_tensor__",
            "config": {"shape": list(t.shape), "dtype": str(t.dtype),
                       "keras_history": _history(t, index_of)}}


def functional_config(container) -> dict:
    """Keras 3's functional config: ``layers`` with ``inbound_nodes``, input/output layers."""
    from . import files

    nodes = _nodes_by_layer(container)
    index_of: Dict[int, Tuple[str, int]] = {}
    for layer in container._layers:
        for k, n in enumerate(nodes[id(layer)]):
            index_of[id(n)] = (layer.name, k)
    entries = []
    for layer in container._layers:
        entry = serialize_layer(layer)
        entry["name"] = layer.name
        inbound = []
        for n in nodes[id(layer)]:
            if not n.inputs:
                continue
            ts = [_tensor_config(t, index_of) for t in n.inputs]
            kwargs = dict(n.kwargs)
            if n.training is not None:
                kwargs["training"] = bool(n.training)
            try:
                files.to_json(kwargs)
            except TypeError:
                raise ConfigError(f"Layer {layer.name!r}: call arguments {sorted(n.kwargs)} "
                                  f"cannot be written to JSON") from None
            inbound.append({"args": [ts if n.list_input else ts[0]], "kwargs": kwargs})
        entry["inbound_nodes"] = inbound
        entries.append(entry)

    def ends(tensors, as_list):
        hs = [_history(t, index_of) for t in tensors]
        return hs if as_list else hs[0]

    return {"name": container.name, "trainable": container.trainable, "layers": entries,
            "input_layers": ends(container.inputs, container._list_inputs),
            "output_layers": ends(container.outputs, container._list_outputs)}


def _as_history_list(value, what: str, where: str) -> Tuple[List[list], bool]:
    if (isinstance(value, list) and len(value) == 3 and isinstance(value[0], str)):
        return [value], False
    if isinstance(value, list) and value and all(isinstance(v, list) and len(v) == 3 for v in value):
        return value, True
    raise ConfigError(f"{where}: {what} must be [layer_name, node_index, tensor_index] or a "
                      f"list of them, got {value!r}")


def functional_from_config(cls, config: dict, custom_objects, where: str):
    """Rebuild a Container/Model: create the layers, then replay every call in order."""
    from ..engine.layer import InputLayer

    entries = config.get("layers")
    if not isinstance(entries, list):
        raise ConfigError(f"{where}: 'layers' must be a list")
    layers: Dict[str, Any] = {}
    order: List[str] = []
    pending: Dict[str, List[dict]] = {}
    made: Dict[Tuple[str, int], list] = {}
    for i, entry in enumerate(entries):
        name = entry.get("name") if isinstance(entry, dict) else None
        if name is None and isinstance(entry, dict):
            name = (entry.get("config") or {}).get("name")
        lwhere = f"{where}: layers[{i}] ({name!r})"
        if not isinstance(name, str) or name in layers:
            raise ConfigError(f"{lwhere}: every layer needs a unique string name")
        layer = deserialize_layer(entry, custom_objects, lwhere)
        layers[name] = layer
        order.append(name)
        nodes = entry.get("inbound_nodes", [])
        if not isinstance(nodes, list):
            raise ConfigError(f"{lwhere}: 'inbound_nodes' must be a list")
        pending[name] = list(nodes)
        if isinstance(layer, InputLayer):
            made[(name, 0)] = [layer.output]
    done = {name: (1 if (name, 0) in made else 0) for name in order}

    def tensor(h, lwhere):
        if isinstance(h, dict):
            h = (h.get("config") or {}).get("keras_history")
        if not (isinstance(h, list) and len(h) == 3):
            raise ConfigError(f"{lwhere}: bad tensor reference {h!r}")
        outs = made.get((h[0], h[1]))
        if outs is None:
            return None
        if not isinstance(h[2], int) or not 0 <= h[2] < len(outs):
            raise ConfigError(f"{lwhere}: tensor index {h[2]!r} out of range for {h[0]!r}")
        return outs[h[2]]

    progress = True
    while progress:
        progress = False
        for name in order:
            lwhere = f"{where}: layer {name!r}"
            while pending[name]:
                node = pending[name][0]
                if not isinstance(node, dict) or not isinstance(node.get("args"), list) \
                        or len(node["args"]) != 1:
                    raise ConfigError(f"{lwhere}: each inbound node must be "
                                      f"{{'args': [tensor or list], 'kwargs': {{...}}}}")
                arg = node["args"][0]
                refs = arg if isinstance(arg, list) and not _is_history(arg) else [arg]
                ts = [tensor(r, lwhere) for r in refs]
                if any(t is None for t in ts):
                    break
                kwargs = dict(node.get("kwargs") or {})
                training = kwargs.pop("training", None)
                if kwargs.get("mask", 0) is None:
                    kwargs.pop("mask")
                x = ts if refs is arg else ts[0]
                out = layers[name](x, training=training, **kwargs)
                made[(name, done[name])] = list(out) if isinstance(out, list) else [out]
                done[name] += 1
                pending[name].pop(0)
                progress = True
    stuck = [n for n in order if pending[n]]
    if stuck:
        raise ConfigError(f"{where}: the calls of {stuck} refer to tensors no layer produces")

    def ends(key):
        hs, as_list = _as_history_list(config.get(key), key, where)
        ts = [tensor(h, f"{where}: {key}") for h in hs]
        if any(t is None for t in ts):
            raise ConfigError(f"{where}: {key} refers to an unknown layer call {hs}")
        return ts if as_list else ts[0]

    return cls(ends("input_layers"), ends("output_layers"), name=config.get("name"),
               trainable=config.get("trainable", True))


def _is_history(v) -> bool:
    return isinstance(v, list) and len(v) == 3 and isinstance(v[0], str)


# ---------------------------------------------------------------------- Sequential
def sequential_config(model) -> dict:
    entries = []
    if model._input is not None:
        entries.append(serialize_layer(model._input.node.layer))
    entries += [serialize_layer(layer) for layer in model.layers]
    cfg = {"name": model.name, "trainable": model.trainable, "layers": entries}
    if model._input is not None:
        cfg["build_input_shape"] = list(model._input.shape)
    return cfg


def sequential_from_config(cls, config: dict, custom_objects, where: str):
    entries = config.get("layers")
    if not isinstance(entries, list):
        raise ConfigError(f"{where}: 'layers' must be a list")
    model = cls(name=config.get("name"), trainable=config.get("trainable", True))
    for i, entry in enumerate(entries):
        name = (entry.get("config") or {}).get("name") if isinstance(entry, dict) else None
        model.add(deserialize_layer(entry, custom_objects, f"{where}: layers[{i}] ({name!r})"))
    shape = config.get("build_input_shape")
    if model._input is None and model.layers and isinstance(shape, list):
        model.build(tuple(shape))
    return model
