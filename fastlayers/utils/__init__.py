"""Utilities: seeding, gradient checking, progress bars, datasets, pictures, serialization."""
from ..saving.registry import custom_object_scope, get_registered_object, register_serializable
from .data_utils import PyDataset, Sequence, normalize, to_categorical
from .gradient_check import check_layer_gradients
from .layer_utils import get_source_inputs
from .plot import model_to_dot, plot_history, plot_model
from .progbar import Progbar
from .random import set_random_seed

# Keras 3's name for the same decorator.
register_keras_serializable = register_serializable

__all__ = ["set_random_seed", "check_layer_gradients", "Progbar", "PyDataset", "Sequence",
           "to_categorical", "normalize", "get_source_inputs", "plot_model", "model_to_dot",
           "plot_history", "register_serializable", "register_keras_serializable",
           "custom_object_scope", "get_registered_object"]
