"""A Keras-style progress bar: steps done, ETA, time per step and running values."""
from __future__ import annotations

import math
import sys
import time
from typing import Dict, Iterable, Optional, Sequence, Tuple, Union

import numpy as np

Values = Union[Dict[str, float], Sequence[Tuple[str, float]], None]


def _clock() -> float:
    # One indirection so tests can drive the bar with a fake clock.
    return time.time()


def format_time_per_unit(seconds: float, unit_name: str = "step") -> str:
    """``" 12ms/step"``, ``" 3s/step"``, ``" 250us/step"`` (Keras's format)."""
    if seconds >= 1 or seconds == 0:
        return f" {seconds:.0f}s/{unit_name}"
    if seconds >= 1e-3:
        return f" {seconds * 1e3:.0f}ms/{unit_name}"
    return f" {seconds * 1e6:.0f}us/{unit_name}"


def format_eta(seconds: float) -> str:
    """``"1:02:03"``, ``"2:05"`` or ``"42s"`` (Keras's format)."""
    if seconds > 3600:
        return "%d:%02d:%02d" % (seconds // 3600, (seconds % 3600) // 60, seconds % 60)
    if seconds > 60:
        return "%d:%02d" % (seconds // 60, seconds % 60)
    return "%ds" % seconds


def format_value(v) -> str:
    """A logged number as Keras shows it; NaN and infinities stand out as ``NaN``/``inf``."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return f"{v}"
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "inf" if f > 0 else "-inf"
    return f"{f:.4f}" if abs(f) > 1e-3 else f"{f:.4e}"


class Progbar:
    """Keras's ``Progbar``.

    ``update(current, values)`` with ``values`` a list of ``(name, value)``: names in
    ``stateful_metrics`` are shown as given, the others as their mean over the
    steps seen (weighted by steps).  ``verbose=1`` redraws one line at most every
    ``interval`` seconds on a terminal (elsewhere it writes only the finished
    line), showing the ETA while running; ``verbose=2`` prints one line when
    finished, ``verbose=0`` nothing.  A ``dict`` of values is taken as already
    averaged (shown as given).  ``target=None`` means an unknown number of steps.
    """

    def __init__(self, target: Optional[int], width: int = 30, verbose: int = 1,
                 interval: float = 0.05, stateful_metrics: Optional[Iterable[str]] = None,
                 unit_name: str = "step", file=None):
        self.target = target
        self.width = int(width)
        self.verbose = verbose
        self.interval = float(interval)
        self.unit_name = unit_name
        if stateful_metrics is None:
            self.stateful_metrics = set()
        elif hasattr(stateful_metrics, "__iter__"):
            self.stateful_metrics = set(stateful_metrics)
        else:
            self.stateful_metrics = stateful_metrics  # anything with __contains__
        self._file = file
        out = file or sys.stdout
        self._dynamic = hasattr(out, "isatty") and out.isatty()
        self._seen_so_far = 0
        self._values: Dict[str, list] = {}
        self._values_order: list = []
        self._start = _clock()
        self._last_update = 0.0
        self._time_after_first_step: Optional[float] = None
        self._prev_total_width = 0

    @property
    def _out(self):
        return self._file or sys.stdout

    def update(self, current: int, values: Values = None, finalize: Optional[bool] = None,
               final: Optional[bool] = None) -> None:
        """Move the bar to step ``current`` (``final`` is the old name of ``finalize``)."""
        if finalize is None:
            finalize = final
        if finalize is None:
            finalize = self.target is not None and current >= self.target
        as_given = isinstance(values, dict)
        items = list(values.items()) if as_given else list(values or [])
        for k, v in items:
            if k not in self._values_order:
                self._values_order.append(k)
            if as_given or k in self.stateful_metrics or finalize:
                # The last value of a running quantity is its mean already.
                self._values[k] = [v, 1]
            else:
                base = max(current - self._seen_so_far, 1)
                if k not in self._values:
                    self._values[k] = [v * base, base]
                else:
                    self._values[k][0] += v * base
                    self._values[k][1] += base
        self._seen_so_far = current
        now = _clock()
        per_unit = self._step_duration(current, now)
        if self.verbose == 1:
            if now - self._last_update < self.interval and not finalize:
                return
            self._draw(current, now, per_unit, finalize)
        elif self.verbose == 2 and finalize:
            self._write(self._summary_line(current, now, per_unit) + "\n")
        self._last_update = now

    def add(self, n: int, values: Values = None) -> None:
        """Advance by ``n`` steps."""
        self.update(self._seen_so_far + n, values)

    # ------------------------------------------------------------------ drawing
    def _mean(self, k) -> float:
        total, count = self._values[k]
        if not isinstance(total, float):
            total = float(np.mean(total))
        return total / max(1, count)

    def _values_text(self) -> str:
        return "".join(f" - {k}: {format_value(self._mean(k))}" for k in self._values_order)

    def _counter(self, current: int) -> str:
        digits = int(math.log10(self.target)) + 1
        return f"%{digits}d/%d" % (current, self.target)

    def _draw(self, current: int, now: float, per_unit: float, finalize: bool) -> None:
        known = self.target is not None and self.target > 0
        if known:
            done = min(1.0, current / self.target)
            filled = int(self.width * done)
            bar = "=" * max(0, filled - 1)
            if 0 < filled:
                bar += ">" if current < self.target else "="
            bar += "." * (self.width - filled)
            text = f"{self._counter(current)} [{bar}]"
        else:
            text = "%7d/Unknown" % current
        if known and not finalize:
            info = f" - ETA: {format_eta(per_unit * (self.target - current))}"
        else:
            info = f" - {now - self._start:.0f}s"
        info += format_time_per_unit(per_unit, self.unit_name) + self._values_text()
        line = text + info
        width = len(line)
        if self._dynamic:
            msg = "\r" + line + " " * max(0, self._prev_total_width - width)
        elif finalize:
            msg = line
        else:
            # Not a terminal (a log file, CI): no redraws, only the finished line.
            return
        if finalize:
            msg += "\n"
        self._prev_total_width = width
        self._write(msg)

    def _summary_line(self, current: int, now: float, per_unit: float) -> str:
        count = self._counter(current) if self.target else f"{current}"
        return (f"{count} - {now - self._start:.0f}s -"
                f"{format_time_per_unit(per_unit, self.unit_name)}{self._values_text()}")

    def _write(self, msg: str) -> None:
        self._out.write(msg)
        self._out.flush()

    def _step_duration(self, current: int, now: float) -> float:
        # The first step (compilation, warm caches) is left out of the estimate once
        # there are more steps, as Keras does.
        if not current:
            return 0.0
        if self._time_after_first_step is not None and current > 1:
            per_unit = (now - self._time_after_first_step) / (current - 1)
        else:
            per_unit = (now - self._start) / current
        if current == 1:
            self._time_after_first_step = now
        return per_unit
