"""Names for user classes and functions, so configs can refer to them (Keras's registry).

A registered object is written as ``"package>name"`` (Keras's ``registered_name``);
loading looks a name up in the ``custom_objects`` given to the call, then in any
enclosing :class:`custom_object_scope`, then in the global registry.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Dict, Optional

_REGISTRY: Dict[str, Any] = {}
_NAMES: Dict[int, str] = {}
_SCOPE = threading.local()


def register_serializable(package: str = "Custom", name: Optional[str] = None) -> Callable:
    """Decorator registering a class or function under ``"package>name"``.

    ``name`` defaults to the object's ``__name__``.  Classes must define
    ``get_config()`` returning their constructor arguments (layers inherit one).
    """
    if not isinstance(package, str) or ">" in package:
        raise ValueError(f"register_serializable: package must be a string without '>', "
                         f"got {package!r}")

    def decorator(obj):
        key = f"{package}>{name or obj.__name__}"
        if isinstance(obj, type) and not callable(getattr(obj, "get_config", None)):
            raise ValueError(f"register_serializable: {obj.__name__} must define get_config()")
        old = _REGISTRY.get(key)
        if old is not None and old is not obj:
            _NAMES.pop(id(old), None)
        _REGISTRY[key] = obj
        _NAMES[id(obj)] = key
        return obj

    return decorator


def registered_name_of(obj: Any) -> Optional[str]:
    """``"package>name"`` for a registered object (or its class), else ``None``."""
    key = _NAMES.get(id(obj))
    if key is None and not isinstance(obj, type):
        key = _NAMES.get(id(type(obj)))
    return key


def get_registered_object(name: str, custom_objects: Optional[dict] = None) -> Any:
    """The object registered (or passed in ``custom_objects``) as ``name``, or ``None``."""
    return resolve(name, custom_objects)


def resolve(name: Optional[str], custom_objects: Optional[dict] = None) -> Any:
    if not isinstance(name, str):
        return None
    short = name.split(">", 1)[-1]
    for table in [custom_objects or {}] + list(reversed(getattr(_SCOPE, "stack", []))):
        if name in table:
            return table[name]
        if short in table:
            return table[short]
    return _REGISTRY.get(name)


class custom_object_scope:
    """``with custom_object_scope({"MyLayer": MyLayer}): ...`` makes the names resolvable."""

    def __init__(self, custom_objects: Optional[dict]):
        if custom_objects is not None and not isinstance(custom_objects, dict):
            raise TypeError(f"custom_objects must be a dict of name -> class or function, "
                            f"got {type(custom_objects).__name__}")
        self.custom_objects = dict(custom_objects or {})

    def __enter__(self):
        if not hasattr(_SCOPE, "stack"):
            _SCOPE.stack = []
        _SCOPE.stack.append(self.custom_objects)
        return self

    def __exit__(self, *exc):
        _SCOPE.stack.pop()
        return False
