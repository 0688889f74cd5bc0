"""A Keras-style progress bar for fit/evaluate/predict."""
from __future__ import annotations

import sys
import time
from typing import Dict, Optional


class Progbar:
    """``verbose=1``: a bar redrawn in place; ``verbose=2``: one line at the end."""

    def __init__(self, target: int, verbose: int = 1, width: int = 30):
        self.target = target
        self.verbose = verbose
        self.width = width
        self._start = time.perf_counter()
        self._last_draw = 0.0
        self._dynamic = hasattr(sys.stdout, "isatty") and sys.stdout.isatty()

    def _values(self, logs: Optional[Dict[str, float]]) -> str:
        return "".join(f" - {k}: {v:.4f}" for k, v in (logs or {}).items())

    def update(self, current: int, logs: Optional[Dict[str, float]] = None, final: bool = False) -> None:
        if self.verbose != 1:
            if final and self.verbose == 2:
                elapsed = time.perf_counter() - self._start
                sys.stdout.write(f"{self.target}/{self.target} - {elapsed:.0f}s{self._values(logs)}\n")
                sys.stdout.flush()
            return
        now = time.perf_counter()
        if not final and (now - self._last_draw < 0.1 or not self._dynamic):
            return
        self._last_draw = now
        filled = int(self.width * current / max(1, self.target))
        bar = "=" * max(0, filled - 1) + (">" if filled < self.width else "=") + "." * (self.width - filled)
        elapsed = now - self._start
        line = f"{current}/{self.target} [{bar}] - {elapsed:.0f}s{self._values(logs)}"
        sys.stdout.write(("\r" if self._dynamic else "") + line + ("\n" if final else ""))
        sys.stdout.flush()
