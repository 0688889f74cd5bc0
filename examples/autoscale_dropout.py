"""AutoScaleDropout: a dropout layer whose output scale is learned (seed 004).

A user's custom layer, written against fastlayers' custom-layer contract:

* ``build(input_shape)`` creates one trainable scalar weight ``scale`` (shape ``()``,
  initialized to 1) with ``add_weight``;
* ``forward(inputs, training=False)`` returns ``(outputs, backprop)`` and
  ``backprop(dy)`` returns ``(dx, [dscale])`` -- plain NumPy, no autodiff.

Behaviour (our choice, documented here):

* training mode:  ``y = scale * x * mask / (1 - rate)``, ``mask`` ~ Bernoulli(1 - rate);
* inference mode: ``y = scale * x`` (dropout is the identity, the learned scale stays),
  so the expected training output equals the inference output, as for Dropout.

Masks come from a counter-based generator: the mask of a call is a pure function of
``(seed, counter)`` (NumPy's ``default_rng([seed, counter])``) and the counter is
incremented once per training-mode call.  So the same seed gives the same masks, and
``fastlayers.utils.check_layer_gradients`` (which rewinds ``layer._counter`` between
evaluations) sees the same mask at every evaluation.  ``mask_for(shape, counter)``
recomputes a mask, e.g. to check a gradient by hand.

``trainable`` and ``training`` are independent (the point of seed 004): with
``layer.trainable = False`` the scale is frozen (``trainable_weights == []``, ``fit``
leaves it alone) but ``layer(x, training=True)`` still drops.

Usage: ``from autoscale_dropout import AutoScaleDropout`` from a script in this
directory (Python puts the script's directory on ``sys.path``).  Run this file to
see a short demonstration.
"""
import numpy as np

from fastlayers.layers import Layer
from fastlayers.utils import random as fl_random


class AutoScaleDropout(Layer):
    """Dropout with a learned scalar output scale (see the module docstring)."""

    def __init__(self, rate, seed=None, **kwargs):
        super().__init__(**kwargs)
        rate = float(rate)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"AutoScaleDropout {self.name!r}: rate must be in [0, 1), got {rate}")
        self.rate = rate
        # Follows fastlayers.utils.set_random_seed when no seed is given.
        self.seed = fl_random.draw_seed(seed)
        self._counter = 0
        self.scale = None

    def build(self, input_shape):
        self.scale = self.add_weight("scale", shape=(), initializer="ones", trainable=True)

    def compute_output_shape(self, input_shape):
        return input_shape

    def mask_for(self, shape, counter):
        """The kept/dropped mask (1.0 / 0.0, float64) of the call numbered ``counter``."""
        rng = np.random.default_rng([self.seed, int(counter)])
        return (rng.random(shape) >= self.rate).astype(np.float64)

    def forward(self, inputs, training=False):
        x = np.asarray(inputs)
        s = self.scale.value.astype(x.dtype)
        if training and self.rate > 0.0:
            m = (self.mask_for(x.shape, self._counter) / (1.0 - self.rate)).astype(x.dtype)
            self._counter += 1
        else:
            m = None                    # inference: identity times the scale
        xm = x if m is None else x * m  # what the scale multiplies
        y = s * xm

        def backprop(dy):
            dy = np.asarray(dy)
            dx = s * dy if m is None else s * m * dy
            dscale = np.asarray(np.sum(dy * xm), dtype=self.scale.dtype)
            return dx, [dscale]

        return y, backprop

    def get_config(self):
        cfg = super().get_config()
        cfg.update(rate=self.rate, seed=self.seed)
        return cfg


if __name__ == "__main__":
    x = np.ones((2, 8), dtype="float32")
    layer = AutoScaleDropout(0.5, seed=0)
    print("training=True :", layer(x, training=True))
    print("training=False:", layer(x, training=False))
    print("trainable weights:", [w.path for w in layer.trainable_weights])
