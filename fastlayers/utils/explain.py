"""``model.explain_trainable()``: for every weight, will ``fit`` update it, and if not, why."""
from __future__ import annotations

from typing import Dict, List


class TrainableReport:
    """The answer of :meth:`Model.explain_trainable`.

    ``rows`` is a list of dicts with keys ``path``, ``shape``, ``updated_by_fit`` (under
    the current compilation; ``None`` when not compiled), ``after_compile`` (if
    ``compile()`` were called now) and ``reason`` (why not, or ``""``).
    Printing it shows a table.
    """

    def __init__(self, model_name: str, rows: List[Dict]):
        self.model_name = model_name
        self.rows = rows

    def __iter__(self):
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i):
        return self.rows[i]

    def __str__(self) -> str:
        def yn(v):
            return "-" if v is None else ("yes" if v else "no")

        header = ("weight", "shape", "fit updates", "after compile()", "why not")
        body = [(r["path"], str(r["shape"]), yn(r["updated_by_fit"]), yn(r["after_compile"]),
                 r["reason"]) for r in self.rows]
        widths = [max(len(str(x)) for x in col) for col in zip(header, *body)]
        lines = [f'Trainable weights of "{self.model_name}"']
        lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths)))
        lines.append("  ".join("-" * w for w in widths))
        for b in body:
            lines.append("  ".join(str(v).ljust(w) for v, w in zip(b, widths)))
        return "\n".join(lines)

    __repr__ = __str__


def explain_trainable(model) -> TrainableReport:
    """Build the report for ``model`` (see :class:`TrainableReport`).

    It reads the one walk over the model's paths (:func:`fastlayers.engine.paths.walk`),
    the same answer ``trainable_weights``, ``compile()`` and the step program use.
    """
    from ..engine.paths import walk

    now = {id(w) for w in model.trainable_weights}
    compiled = getattr(model, "_compiled", None)
    rows: List[Dict] = []
    seen: Dict[int, Dict] = {}
    for use in walk(model):
        names = "/".join(c.name for c in use.path)
        for w in use.layer.weights:
            path = f"{names}/{use.layer.name}/{w.name}"
            row = seen.get(id(w))
            if row is not None:
                # Reached again: show the path that trains it, if this is the one.
                if row["_frozen_path"] and use.weight_trains(w):
                    row["path"], row["_frozen_path"], row["reason"] = path, False, ""
                continue
            trains_now = id(w) in now
            row = {
                "_frozen_path": not use.weight_trains(w),
                "path": path,
                "shape": tuple(w.shape),
                "updated_by_fit": None if compiled is None else id(w) in compiled.train_ids,
                "after_compile": trains_now,
                "reason": "" if trains_now else use.reason(w),
                "weight": w,
            }
            seen[id(w)] = row
            rows.append(row)
    for row in rows:
        del row["_frozen_path"]
    return TrainableReport(model.name, rows)
