"""Saving and loading: configs, the ``.keras`` archive, weights files, Keras 3 interop.

Only JSON and ``np.load(..., allow_pickle=False)`` are ever read (HDF5 through h5py
for Keras files), every write is atomic, and every file is checked in full before
anything in a model is changed.
"""
from .api import (clone_model, load_model, load_weights, model_from_json, model_to_json,
                  save_model, save_weights)
from .registry import custom_object_scope, get_registered_object, register_serializable
from .serialization import ConfigError, deserialize_layer, serialize_layer

# Keras 3's names.
register_keras_serializable = register_serializable
serialize_keras_object = serialize_layer
deserialize_keras_object = deserialize_layer

__all__ = ["save_model", "load_model", "save_weights", "load_weights", "model_to_json",
           "model_from_json", "clone_model", "register_serializable",
           "register_keras_serializable", "custom_object_scope", "get_registered_object",
           "serialize_layer", "deserialize_layer", "ConfigError"]
