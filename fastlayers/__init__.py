"""fastlayers: Keras-style neural networks on Cython kernels.

``trainable`` (are a layer's weights updated?) and ``training`` (does it behave as
in training or inference?) are independent switches, with the semantics written
in rules R1-R9 of DESIGN.md.
"""
from . import (backend, callbacks, distribute, initializers, layers, losses, metrics, models,
               optimizers, saving, utils)
from .engine.container import Container
from .engine.layer import Input, Layer
from .engine.sequential import Sequential
from .engine.training import Model

__version__ = "0.1.0"

# The kernels own their threading: an OpenMP team, single-threaded BLAS per slice.
from . import _threads as _threads_mod

_threads_mod.apply(backend._NUM_THREADS)
del _threads_mod

__all__ = ["Input", "Layer", "Container", "Model", "Sequential", "backend", "layers", "losses",
           "metrics", "models", "optimizers", "initializers", "callbacks", "saving", "utils", "distribute"]
