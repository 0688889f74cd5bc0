"""Graph helpers with Keras's names."""
from __future__ import annotations

from typing import List


def get_source_inputs(tensor) -> list:
    """The ``Input`` tensors that ``tensor`` is computed from, in first-reached order."""
    from ..engine.layer import InputLayer
    from ..engine.node import SymbolicTensor

    if not isinstance(tensor, SymbolicTensor):
        raise TypeError(f"get_source_inputs: expected a symbolic tensor, got "
                        f"{type(tensor).__name__}")
    out: List[SymbolicTensor] = []
    seen_nodes, stack = set(), [tensor]
    while stack:
        t = stack.pop()
        node = t.node
        if node is None or isinstance(node.layer, InputLayer):
            if not any(o is t for o in out):
                out.append(t)
            continue
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        stack.extend(reversed(node.inputs))
    return out
