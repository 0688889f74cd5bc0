"""The one walk: every layer a model reaches, along which path, and what freezes it.

Rules R2, R3 and R7 are all questions about the path of containers through which a
model reaches a layer: "is this weight trained?" (every flag on the path, the
layer's own and the weight's creation flag are true) and "does this batch norm run
frozen?" (some flag on the path, or its own, is false).  :func:`walk` answers them
once; ``trainable_weights``, ``compile()`` (the R4 picture), ``summary()``,
``explain_trainable()``, the stale check and the step program all read its rows.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, FrozenSet, List, Optional, Tuple


@dataclass(frozen=True)
class LayerUse:
    """One layer as a model reaches it.

    ``path`` holds the containers from the model (first) to the layer's own
    container (last); ``blocked_by`` is the first of them, or the layer itself,
    whose ``trainable`` is false (``None`` when every flag on the way is true).
    """

    path: Tuple[object, ...]
    layer: object
    blocked_by: Optional[object]

    @property
    def key(self) -> Tuple[int, ...]:
        """Identifies the path: ids of its containers and of the layer."""
        return tuple(id(c) for c in self.path) + (id(self.layer),)

    @property
    def frozen(self) -> bool:
        """Frozen along this path (R7): some container or the layer has trainable=False."""
        return self.blocked_by is not None

    def weight_trains(self, weight) -> bool:
        """Whether ``fit`` would train ``weight`` through this use (R3)."""
        return weight.trainable and self.blocked_by is None

    def reason(self, weight) -> str:
        """Why ``weight`` is not trained through this use ("" when it is)."""
        if not weight.trainable:
            return "state, created non-trainable"
        b = self.blocked_by
        if b is None:
            return ""
        if b is self.layer:
            return f"layer {b.name!r} has trainable=False"
        return f"{type(b).__name__} {b.name!r} has trainable=False"


def walk(container) -> List[LayerUse]:
    """Every (path, layer) the container reaches, depth first in ``layers`` order.

    Containers themselves are not listed, only the layers inside them (each nested
    container is entered and its layers listed with the longer path).
    """
    from .container import Container

    out: List[LayerUse] = []

    def visit(c, path, blocked):
        path = path + (c,)
        if blocked is None and not c.trainable:
            blocked = c
        for layer in c.layers:
            if isinstance(layer, Container):
                visit(layer, path, blocked)
            else:
                b = blocked if blocked is not None else (None if layer.trainable else layer)
                out.append(LayerUse(path, layer, b))

    visit(container, (), None)
    return out


def trainable_weights(container) -> list:
    """R2/R3: weights created trainable, reached with every flag on the path true (once each)."""
    seen, out = set(), []
    for use in walk(container):
        for w in use.layer.weights:
            if id(w) not in seen and use.weight_trains(w):
                seen.add(id(w))
                out.append(w)
    return out


@dataclass(frozen=True)
class Picture:
    """What ``compile()`` fixes (R4): the weights to train, and which layers run frozen."""

    train_ids: FrozenSet[int]
    weights: tuple
    frozen: Dict[Tuple[int, ...], bool]

    def layer_frozen(self, key: Tuple[int, ...], default: bool) -> bool:
        return self.frozen.get(key, default)


def take_picture(model) -> Picture:
    """The R4 snapshot of ``model``: its trainable set and every path's frozen state."""
    uses = walk(model)
    weights = trainable_weights(model)
    return Picture(frozenset(id(w) for w in weights), tuple(weights),
                   {u.key: u.frozen for u in uses})
