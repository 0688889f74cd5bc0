"""Utilities: seeding, gradient checking, summaries."""
from .gradient_check import check_layer_gradients
from .random import set_random_seed

__all__ = ["set_random_seed", "check_layer_gradients"]
