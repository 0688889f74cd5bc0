"""fastlayers' ``.keras`` archive: Keras 3's layout with the weights as ``.npz``.

Entries (zip, deflated):

- ``metadata.json``: ``{"fastlayers_version", "date_saved", "weights_format": "npz"}``
- ``config.json``: the serialized model (Keras 3's layout, see ``serialization``) with
  ``compile_config`` (optimizer, loss, loss_weights, metrics) beside ``config`` when
  the model was compiled and saved with ``include_optimizer=True``.
- ``model.weights.npz``: ``layers/.../vars/<i>``, ``layers/.../state/<key>``, and with
  the compile config ``optimizer/keys`` (the updated weights' entry names, in order)
  and ``optimizer/vars/<i>`` (``optimizer.get_state``: iterations, then slots).
"""
from __future__ import annotations

import datetime
import json
from typing import Optional


from . import files
from . import weights as _weights
from .compile_config import compile_from_config, get_compile_config
from .optimizer_state import optimizer_arrays, plan_restore
from .serialization import deserialize_layer, serialize_layer

WEIGHTS_NPZ = "model.weights.npz"
WEIGHTS_H5 = "model.weights.h5"
_ALLOWED = ("metadata.json", "config.json", WEIGHTS_NPZ, WEIGHTS_H5)


def _version() -> str:
    from .. import __version__

    return __version__


def archive_entries(model, include_optimizer: bool = True) -> list:
    """``[(entry name, bytes)]`` of the archive for ``model``."""
    entry = serialize_layer(model)
    arrays = _weights.weight_arrays(model)
    compile_cfg = get_compile_config(model) if include_optimizer else None
    if compile_cfg is not None:
        entry["compile_config"] = compile_cfg
        arrays.update(optimizer_arrays(model))
    meta = {"fastlayers_version": _version(),
            "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
            "weights_format": "npz"}
    return [("metadata.json", files.to_json(meta).encode()),
            ("config.json", files.to_json(entry, indent=1).encode()),
            (WEIGHTS_NPZ, _weights.npz_bytes(arrays))]


def archive_bytes(model, include_optimizer: bool = True) -> bytes:
    return files.zip_bytes(archive_entries(model, include_optimizer))


def parse_json(data: bytes, where: str):
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{where}: not valid JSON ({exc})") from None


def read_archive(source) -> dict:
    name = files.describe(source)
    entries = files.read_zip(files.as_source(source), name, lambda n: n in _ALLOWED)
    for required in ("config.json",):
        if required not in entries:
            raise ValueError(f"{name}: entry {required!r} is missing; this is not a .keras file")
    if WEIGHTS_NPZ not in entries and WEIGHTS_H5 not in entries:
        raise ValueError(f"{name}: neither {WEIGHTS_NPZ!r} nor {WEIGHTS_H5!r} is in the archive")
    return entries


def load_archive(source, custom_objects: Optional[dict] = None, compile: bool = True):
    """A new model from an archive (path or bytes): fastlayers' own or Keras 3's."""
    name = files.describe(source)
    entries = read_archive(source)
    config = parse_json(entries["config.json"], f"{name}: entry 'config.json'")
    if "metadata.json" in entries:
        parse_json(entries["metadata.json"], f"{name}: entry 'metadata.json'")
    if WEIGHTS_NPZ not in entries:
        from . import keras_format

        return keras_format.load_keras_archive(entries, config, name, custom_objects, compile)
    if not isinstance(config, dict):
        raise ValueError(f"{name}: entry 'config.json' must hold a JSON object")
    arrays = _weights.read_npz(entries[WEIGHTS_NPZ], f"{name}: entry {WEIGHTS_NPZ!r}")
    model = deserialize_layer(config, custom_objects, f"{name}: entry 'config.json'")
    plan = _weights.plan_assignment(model, arrays, f"{name}: entry {WEIGHTS_NPZ!r}")
    _weights.apply_assignment(plan)
    cc = config.get("compile_config")
    if compile and cc:
        compile_from_config(model, cc, custom_objects,
                            f"{name}: entry 'config.json' (compile_config)")
        restore = plan_restore(model, arrays, f"{name}: entry {WEIGHTS_NPZ!r}")
        if restore is not None:
            restore()
    return model
