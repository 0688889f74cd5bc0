"""Layers with Keras's names."""
from ..engine.container import Container
from ..engine.layer import Input, InputLayer, Layer
from .core import Activation, Dense, Flatten
from .dropout import Dropout
from .merge import Add, Concatenate
from .normalization import BatchNormalization

__all__ = ["Layer", "InputLayer", "Input", "Dense", "Activation", "Flatten", "Dropout",
           "BatchNormalization", "Concatenate", "Add", "Container"]
