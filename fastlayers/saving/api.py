"""The public entry points: save/load whole models, weights, JSON, clones, pickles."""
from __future__ import annotations

import json
import os
from typing import Callable, Optional

from . import files, native
from .optimizer_state import optimizer_arrays, plan_restore
from . import weights as _weights
from .serialization import deserialize_layer, serialize_layer

_FORMATS = ("fastlayers", "keras")


def save_model(model, filepath, include_optimizer: bool = True, format: str = "fastlayers") -> None:
    """Write ``model`` to one ``.keras`` zip file, atomically.

    ``format="fastlayers"`` (default) stores the weights as ``model.weights.npz``;
    ``format="keras"`` writes a file Keras 3 loads (``model.weights.h5``, needs h5py;
    built-in layers only, no optimizer state).
    """
    path = os.fspath(filepath)
    if not path.endswith(".keras"):
        raise ValueError(f"save: the file name must end in '.keras', got {path!r}; for weights "
                         f"only use save_weights('....weights.npz')")
    if format not in _FORMATS:
        raise ValueError(f"save: format must be one of {_FORMATS}, got {format!r}")
    if format == "keras":
        from . import keras_format

        files.atomic_write(path, lambda: keras_format.keras_archive_bytes(model,
                                                                          include_optimizer))
    else:
        files.atomic_write(path, lambda: native.archive_bytes(model, include_optimizer))


def load_model(filepath, custom_objects: Optional[dict] = None, compile: bool = True):
    """A model from a ``.keras`` file written by fastlayers or by Keras 3.

    With ``compile=True`` a saved compile configuration is applied and the optimizer
    state restored, so training resumes where it stopped.
    """
    path = os.fspath(filepath)
    if not os.path.exists(path):
        raise FileNotFoundError(f"load_model: no such file {path!r}")
    return native.load_archive(path, custom_objects, compile)


def model_to_json(model, **kwargs) -> str:
    """The model's architecture (no weights) as a JSON string."""
    return files.to_json(serialize_layer(model), **kwargs)


def model_from_json(json_string: str, custom_objects: Optional[dict] = None):
    """A new model (fresh weights) from :meth:`Model.to_json`'s output."""
    try:
        config = json.loads(json_string)
    except (TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"model_from_json: not valid JSON ({exc})") from None
    return deserialize_layer(config, custom_objects, "model_from_json")


def save_weights(model, filepath, overwrite: bool = True) -> None:
    """Write the weights to ``*.weights.npz`` (fastlayers) or ``*.weights.h5`` (Keras 3).

    As in Keras, a compiled model's optimizer state is written too, and
    :func:`load_weights` restores it into a model compiled for the same weights.
    """
    path = os.fspath(filepath)
    if not overwrite and os.path.exists(path):
        raise FileExistsError(f"save_weights: {path!r} exists and overwrite=False")
    if path.endswith(".weights.npz"):
        def produce():
            arrays = _weights.weight_arrays(model)
            arrays.update(optimizer_arrays(model))
            return _weights.npz_bytes(arrays)

        files.atomic_write(path, produce)
    elif path.endswith(".weights.h5"):
        from . import keras_format

        files.atomic_write(path, lambda: keras_format.h5_weights_bytes(model, True))
    else:
        raise ValueError(f"save_weights: the file name must end in '.weights.npz' or "
                         f"'.weights.h5', got {path!r}")


def load_weights(model, filepath, skip_mismatch: bool = False) -> None:
    """Load weights saved by :func:`save_weights` (or a ``.keras`` file's) into ``model``.

    Every entry is checked before any is assigned: on an error the model is unchanged.
    A saved optimizer state is restored when ``model`` is compiled for the same weights.
    """
    path = os.fspath(filepath)
    name = files.describe(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"load_weights: no such file {path!r}")
    h5 = None
    if path.endswith(".keras"):
        entries = native.read_archive(path)
        if native.WEIGHTS_NPZ in entries:
            where = f"{name}: entry {native.WEIGHTS_NPZ!r}"
            arrays = _weights.read_npz(entries[native.WEIGHTS_NPZ], where)
        else:
            where, h5 = f"{name}: entry {native.WEIGHTS_H5!r}", entries[native.WEIGHTS_H5]
    elif path.endswith(".weights.npz"):
        with open(path, "rb") as f:
            arrays = _weights.read_npz(f.read(), name)
        where = name
    elif path.endswith(".weights.h5"):
        with open(path, "rb") as f:
            where, h5 = name, f.read()
    else:
        raise ValueError(f"load_weights: the file name must end in '.weights.npz', "
                         f"'.weights.h5' or '.keras', got {path!r}")
    if h5 is not None:
        from . import keras_format

        arrays = keras_format.h5_to_arrays(model, h5, where, skip_mismatch)
        plan = _weights.plan_assignment(model, arrays, where, skip_mismatch)
        restore = None if skip_mismatch else keras_format.plan_restore_h5(model, h5, where)
    else:
        plan = _weights.plan_assignment(model, arrays, where, skip_mismatch)
        restore = None if skip_mismatch else plan_restore(model, arrays, where)
    _weights.apply_assignment(plan)
    if restore is not None:
        restore()


def clone_model(model, input_tensors=None, clone_function: Optional[Callable] = None):
    """A new model with the same graph and new layers (weights initialized afresh, as Keras).

    ``clone_function(layer)`` makes each new layer (default: from its config); a
    layer shared by several calls is cloned once and shared in the clone too.
    """
    from ..engine.container import Container
    from ..engine.layer import Input, InputLayer
    from ..engine.sequential import Sequential

    def default(layer):
        return deserialize_layer(serialize_layer(layer), None, f"clone_model: {layer.name!r}")

    fn = clone_function or default
    memo = {}

    def clone(layer):
        if id(layer) not in memo:
            new = fn(layer)
            if new is layer or not hasattr(new, "__call__"):
                raise ValueError(f"clone_model: clone_function must return a new layer for "
                                 f"{layer.name!r}")
            memo[id(layer)] = new
        return memo[id(layer)]

    if isinstance(model, Sequential):
        new = Sequential(name=model.name, trainable=model.trainable)
        if input_tensors is not None:
            new.add(input_tensors[0] if isinstance(input_tensors, (list, tuple)) else input_tensors)
        elif model._input is not None:
            t = model._input
            new.add(Input(shape=t.shape[1:], dtype=str(t.dtype), name=t.node.layer.name))
        for layer in model.layers:
            new.add(clone(layer))
        return new
    if not isinstance(model, Container):
        raise TypeError(f"clone_model expects a Model or Sequential, got {type(model).__name__}")
    if input_tensors is not None:
        given = list(input_tensors) if isinstance(input_tensors, (list, tuple)) else [input_tensors]
        if len(given) != len(model.inputs):
            raise ValueError(f"clone_model: model has {len(model.inputs)} inputs, "
                             f"input_tensors gives {len(given)}")
    else:
        given = [Input(shape=t.shape[1:], dtype=str(t.dtype), name=t.node.layer.name)
                 for t in model.inputs]
    values = {id(t): g for t, g in zip(model.inputs, given)}
    for node in model._nodes:
        if isinstance(node.layer, InputLayer):
            continue
        ins = [values[id(t)] for t in node.inputs]
        out = clone(node.layer)(ins if node.list_input else ins[0], training=node.training,
                                **node.kwargs)
        outs = out if isinstance(out, list) else [out]
        for t, o in zip(node.outputs, outs):
            values[id(t)] = o
    ins = [values[id(t)] for t in model.inputs]
    outs = [values[id(t)] for t in model.outputs]
    return type(model)(ins if model._list_inputs else ins[0],
                       outs if model._list_outputs else outs[0],
                       name=model.name, trainable=model.trainable)


def _from_archive_bytes(data: bytes, custom_objects: Optional[dict] = None):
    """Unpickling target: rebuild a model from its in-memory archive."""
    return native.load_archive(data, custom_objects, True)


def _custom_classes(model) -> dict:
    """The model's non-built-in layer classes by name (pickled by reference, not by value)."""
    from ..engine.container import Container
    from .registry import registered_name_of
    from .serialization import _builtin_classes

    builtin = set(_builtin_classes().values())
    out = {}

    def walk(c):
        for layer in c.layers:
            cls = type(layer)
            if cls not in builtin and registered_name_of(cls) is None:
                out[cls.__name__] = cls
            if isinstance(layer, Container):
                walk(layer)

    if type(model) not in builtin and registered_name_of(type(model)) is None:
        out[type(model).__name__] = type(model)
    walk(model)
    return out


def reduce_model(model):
    """``__reduce__`` for containers: the in-memory archive, never the engine's objects."""
    return (_from_archive_bytes, (native.archive_bytes(model, True), _custom_classes(model)))


def deepcopy_model(model, memo=None):
    new = native.load_archive(native.archive_bytes(model, True), _custom_classes(model), True)
    if memo is not None:
        memo[id(model)] = new
    return new


