"""Layers with Keras's names."""
from ..engine.container import Container
from ..engine.layer import Input, InputLayer, Layer
from .core import Activation, Dense, Flatten, Lambda
from .dropout import Dropout
from .merge import (Add, Average, Concatenate, Dot, Maximum, Minimum, Multiply, Subtract, add,
                    average, concatenate, dot, maximum, minimum, multiply, subtract)
from .normalization import BatchNormalization

__all__ = ["Layer", "InputLayer", "Input", "Dense", "Lambda", "Activation", "Flatten", "Dropout",
           "BatchNormalization", "Concatenate", "Add", "Subtract", "Multiply", "Average", "Maximum",
           "Minimum", "Dot", "concatenate", "add", "subtract", "multiply", "average", "maximum",
           "minimum", "dot", "Container"]
