"""``backend.function``: a callable over part of a graph, with an optional phase input."""
from __future__ import annotations

from typing import List

import numpy as np

from .. import backend
from .container import Container


class BackendFunction:
    """Maps a list of input arrays to a list of output arrays (Keras's ``K.function``).

    When ``learning_phase()`` is among the inputs, the value fed at its position is
    the ``training`` value of the run (seed 002); otherwise the run uses the value
    set with ``backend.set_learning_phase`` (default: inference).
    """

    def __init__(self, inputs, outputs):
        inputs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        phase = backend.learning_phase()
        self._phase_index = next((i for i, t in enumerate(inputs) if t is phase), None)
        tensors = [t for t in inputs if t is not phase]
        self._single_output = not isinstance(outputs, (list, tuple))
        outs = [outputs] if self._single_output else list(outputs)
        self._graph = Container(tensors, outs, name="function")
        self._n_inputs = len(inputs)

    def __call__(self, values) -> List[np.ndarray]:
        values = list(values) if isinstance(values, (list, tuple)) else [values]
        if len(values) != self._n_inputs:
            raise ValueError(f"backend.function expects {self._n_inputs} inputs, got {len(values)}")
        if self._phase_index is not None:
            training = bool(int(np.asarray(values[self._phase_index])))
            arrays = [v for i, v in enumerate(values) if i != self._phase_index]
        else:
            training = backend.default_training()
            arrays = values
        out = self._graph(arrays if len(arrays) > 1 else arrays[0], training=training)
        return out if isinstance(out, list) else [out]
