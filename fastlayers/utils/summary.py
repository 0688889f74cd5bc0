"""``model.summary()``: layers, output shapes, parameter counts, what trains."""
from __future__ import annotations

from typing import Callable, List, Optional

import numpy as np


def _count(weights) -> int:
    return int(sum(int(np.prod(w.shape)) for w in weights))


def _shape_of(layer) -> str:
    try:
        return str(layer.output_shape)
    except AttributeError:
        return "multiple"  # Keras's word for a layer called on different shapes


def print_summary(model, line_length: int = 90, show_trainable: bool = False,
                  print_fn: Optional[Callable[[str], None]] = None) -> None:
    """Print the table; ``show_trainable`` adds each layer's own ``trainable`` flag."""
    out: List[str] = []
    cols = [("Layer (type)", 0.40), ("Output Shape", 0.28), ("Param #", 0.14)]
    if show_trainable:
        cols.append(("Trainable", 0.18))
    widths = [max(10, int(line_length * f)) for _, f in cols]

    def row(values):
        return "".join(str(v)[: w - 1].ljust(w) for v, w in zip(values, widths))

    kind = type(model).__name__
    out.append(f'{kind}: "{model.name}"')
    out.append("_" * sum(widths))
    out.append(row([c for c, _ in cols]))
    out.append("=" * sum(widths))
    for layer in model.layers:
        vals = [f"{layer.name} ({type(layer).__name__})", _shape_of(layer), layer.count_params()]
        if show_trainable:
            vals.append("Y" if layer.trainable else "N")
        out.append(row(vals))
    out.append("=" * sum(widths))
    weights = model.weights
    trainable = model.trainable_weights
    total = _count(weights)
    n_tr = _count(trainable)
    out.append(f"Total params: {total:,}")
    compiled = getattr(model, "_compiled", None)
    if compiled is not None and compiled.train_ids != frozenset(id(w) for w in trainable):
        n_c = _count(compiled.weights)
        out.append(f"Trainable params: {n_tr:,} (compiled: {n_c:,}; fit updates the compiled "
                   f"set until compile() is called again)")
    else:
        out.append(f"Trainable params: {n_tr:,}")
    out.append(f"Non-trainable params: {total - n_tr:,}")
    out.append("_" * sum(widths))
    emit = print_fn or print
    for line in out:
        emit(line)
