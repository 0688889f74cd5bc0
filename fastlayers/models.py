"""Keras's ``keras.models`` names."""
from .engine.container import Container
from .engine.layer import Input
from .engine.sequential import Sequential
from .engine.training import Model
from .saving import clone_model, load_model, model_from_json, save_model

__all__ = ["Model", "Sequential", "Container", "Input", "load_model", "save_model",
           "model_from_json", "clone_model"]
