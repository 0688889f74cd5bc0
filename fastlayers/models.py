"""Keras's ``keras.models`` names."""
from .engine.container import Container
from .engine.layer import Input
from .engine.sequential import Sequential
from .engine.training import Model

__all__ = ["Model", "Sequential", "Container", "Input"]
