"""Utilities: seeding, gradient checking, summaries, serialization registry."""
from ..saving.registry import custom_object_scope, get_registered_object, register_serializable
from .gradient_check import check_layer_gradients
from .random import set_random_seed

# Keras 3's name for the same decorator.
register_keras_serializable = register_serializable

__all__ = ["set_random_seed", "check_layer_gradients", "register_serializable",
           "register_keras_serializable", "custom_object_scope", "get_registered_object"]
