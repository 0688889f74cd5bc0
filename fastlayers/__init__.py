"""fastlayers: Keras-style neural networks on Cython kernels.

``trainable`` (are a layer's weights updated?) and ``training`` (does it behave as
in training or inference?) are independent switches, with the semantics written
in rules R1-R9 of DESIGN.md.
"""
# The kernels own their threading (an OpenMP team, single-threaded BLAS per slice):
# _threads is imported first so that OpenMP's wait policy is in place when the
# first kernel loads it, and so that every kernel module can bind to its team.
from . import _threads as _threads_mod

with _threads_mod.runtime_environment():
    from ._kernels import dense as _dense  # noqa: F401  (loads the OpenMP runtime)
from . import (backend, callbacks, constraints, distribute, initializers, layers, losses, metrics,
               models, optimizers, regularizers, saving, utils)
from .engine.container import Container
from .engine.layer import Input, Layer
from .engine.sequential import Sequential
from .engine.training import Model

__version__ = "0.1.0"

del _threads_mod, _dense

__all__ = ["Input", "Layer", "Container", "Model", "Sequential", "backend", "layers", "losses",
           "metrics", "models", "optimizers", "initializers", "callbacks", "saving", "utils",
           "distribute", "regularizers", "constraints"]
