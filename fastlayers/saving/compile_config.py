"""The compile configuration (optimizer, losses, loss weights, metrics, weighted metrics)
as JSON."""
from __future__ import annotations

from typing import Any, Optional

from .registry import registered_name_of, resolve


def _loss_dict(loss) -> dict:
    from .. import losses as _losses

    cls = type(loss)
    builtin = getattr(_losses, cls.__name__, None) is cls
    reg = None if builtin else registered_name_of(cls)
    if not builtin and reg is None:
        raise ValueError(f"Cannot save loss {loss!r}: register its class with "
                         f"fastlayers.utils.register_serializable() or save with "
                         f"include_optimizer=False")
    return {"module": "fastlayers.losses" if builtin else cls.__module__,
            "class_name": cls.__name__, "config": loss.get_config(), "registered_name": reg}


def _metric_id(m) -> Any:
    from .. import metrics as _metrics

    if isinstance(m, str):
        return m
    if isinstance(m, _metrics.Metric):
        return m.name if m.name.lower() in _metrics._BY_NAME or m.name in ("accuracy", "acc") \
            else _metric_id(m.fn)
    reg = registered_name_of(m)
    if reg is None:
        raise ValueError(f"Cannot save metric {m!r}: give it by name or register the function "
                         f"with fastlayers.utils.register_serializable()")
    return reg


def optimizer_dict(optimizer) -> dict:
    """Keras's layout for an optimizer, through ``get_config()`` only."""
    cls = type(optimizer)
    reg = registered_name_of(cls)
    return {"module": cls.__module__ if reg else "fastlayers.optimizers",
            "class_name": cls.__name__, "config": optimizer.get_config(), "registered_name": reg}


def optimizer_from(entry, custom_objects=None):
    """An optimizer from a name or :func:`optimizer_dict`'s output (``from_config``)."""
    from .. import optimizers as _optimizers

    if not isinstance(entry, dict):
        return _optimizers.get(entry)
    name = entry.get("class_name")
    cls = resolve(entry.get("registered_name"), custom_objects) or resolve(name, custom_objects)
    if cls is None:
        cls = getattr(_optimizers, str(name), None)
        if not (isinstance(cls, type) and issubclass(cls, _optimizers.Optimizer)):
            cls = type(_optimizers.get(str(name)))  # Keras's lower-case names too
    return cls.from_config(dict(entry.get("config") or {}))


def compiled_state(model):
    """``(optimizer, compiled trainable weights)`` of a compiled model, else ``None``.

    Public properties only: the engine's compiled object is its own business.
    """
    opt = getattr(model, "optimizer", None)
    if opt is None:
        return None
    return opt, list(model.compiled_trainable_weights)


def get_compile_config(model) -> Optional[dict]:
    """Keras 3's ``compile_config`` of a compiled model, or ``None``."""
    c = getattr(model, "_compiled", None)
    if c is None:
        return _pending_compile_config(model)
    single = len(c.losses) == 1
    losses = [_loss_dict(l) for l in c.losses]
    lw = None if all(w == 1.0 for w in c.loss_weights) else list(c.loss_weights)
    out = {"optimizer": optimizer_dict(c.optimizer),
           "loss": losses[0] if single else losses, "loss_weights": lw,
           "metrics": _metrics_entry(model, c.metric_ids)}
    weighted = getattr(c, "weighted_metric_ids", None)
    if weighted and any(weighted):
        out["weighted_metrics"] = _metrics_entry(model, weighted)
    return out


def _metrics_entry(model, ids_per_output):
    """One list for all outputs, or a dict by output name; ``None`` when empty."""
    metric_ids = [[_metric_id(m) for m in ids] for ids in ids_per_output]
    if len(metric_ids) == 1 or all(ids == metric_ids[0] for ids in metric_ids):
        return metric_ids[0] or None
    return {n: ids for n, ids in zip(model.output_names, metric_ids) if ids}


def _pending_compile_config(model) -> Optional[dict]:
    """A Sequential compiled before its input shape was known keeps the call's arguments."""
    from .. import losses as _losses
    from .. import optimizers as _optimizers

    pending = getattr(model, "_pending_compile", None)
    if not pending:
        return None
    args, kwargs = pending
    bound = dict(zip(("optimizer", "loss", "metrics", "loss_weights", "weighted_metrics"),
                     args))
    bound.update(kwargs)
    lw = bound.get("loss_weights")
    out = {"optimizer": optimizer_dict(_optimizers.get(bound.get("optimizer", "sgd"))),
           "loss": _loss_dict(_losses.get(bound.get("loss"))),
           "loss_weights": list(lw) if isinstance(lw, (list, tuple)) else lw,
           "metrics": [_metric_id(m) for m in bound.get("metrics") or []] or None}
    if bound.get("weighted_metrics"):
        out["weighted_metrics"] = [_metric_id(m) for m in bound["weighted_metrics"]]
    return out


def _loss_from(entry, custom_objects, where: str):
    from .. import losses as _losses

    if isinstance(entry, str):
        return _losses.get(entry)
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: a loss must be a name or a dict, got {entry!r}")
    name = entry.get("class_name")
    if name == "function":  # Keras's form for a loss given as a function
        fn = resolve(entry.get("config"), custom_objects)
        return fn if fn is not None else _losses.get(entry.get("config"))
    cls = resolve(entry.get("registered_name"), custom_objects) or resolve(name, custom_objects)
    if cls is None:
        cls = getattr(_losses, str(name), None)
        if not (isinstance(cls, type) and issubclass(cls, _losses.Loss)):
            raise ValueError(f"{where}: unknown loss class {name!r}; pass it in custom_objects")
    cfg = entry.get("config") or {}
    return cls.from_config(dict(cfg)) if hasattr(cls, "from_config") else cls(**cfg)


def _metric_from(m, custom_objects):
    if isinstance(m, str) and ">" in m:
        fn = resolve(m, custom_objects)
        if fn is None:
            raise ValueError(f"Unknown metric {m!r}: register it or pass it in custom_objects")
        return fn
    return resolve(m, custom_objects) if isinstance(m, str) and resolve(m, custom_objects) else m


def _metrics_from(metrics, custom_objects):
    if isinstance(metrics, dict):
        return {k: [_metric_from(m, custom_objects) for m in v] for k, v in metrics.items()}
    if metrics is not None:
        return [_metric_from(m, custom_objects) for m in metrics]
    return None


def compile_from_config(model, config: dict, custom_objects=None, where: str = "compile_config"):
    """Call ``model.compile`` with a saved compile configuration."""
    if not isinstance(config, dict):
        raise ValueError(f"{where}: must be a dict")
    try:
        optimizer = optimizer_from(config.get("optimizer", "sgd"), custom_objects)
        loss = config.get("loss")
        if isinstance(loss, list):
            loss = [_loss_from(l, custom_objects, where) for l in loss]
        elif isinstance(loss, dict) and "class_name" not in loss:
            loss = {k: _loss_from(v, custom_objects, where) for k, v in loss.items()}
        else:
            loss = _loss_from(loss, custom_objects, where)
        model.compile(optimizer=optimizer, loss=loss,
                      metrics=_metrics_from(config.get("metrics"), custom_objects),
                      loss_weights=config.get("loss_weights"),
                      weighted_metrics=_metrics_from(config.get("weighted_metrics"),
                                                     custom_objects))
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"{where}: cannot compile the loaded model: {exc}; load it with "
                         f"compile=False to skip") from None
