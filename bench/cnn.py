"""The convolutional scenarios (issue 11, "Performance"), described once for every framework.

A CNN scenario names one entry of ``CNNS``: an input image ``(h, w, c)`` (channels_last)
and a chain of layers, each a tuple

- ``("conv", name, filters, kernel, padding, activation)`` -- Conv2D, stride 1;
- ``("pool",)`` -- MaxPooling2D(2) (stride 2, "valid");
- ``("gap",)`` -- GlobalAveragePooling2D; ``("flatten",)`` -- Flatten;
- ``("dense", name, units, activation)``.

Each peer builds the chain its own way (``bench/peers/*_cnn.py``, ``keraslike.build_cnn``)
from the arrays of ``make_arrays``: ``W_<name>``/``b_<name>`` in Keras's layout (a conv
kernel ``(kh, kw, in, out)``, a Dense kernel ``(in, out)`` whose rows follow Keras's
flattening order ``(h, w, c)``), and the batch ``x`` ``(batch, h, w, c)`` / ``y``
(integer labels). ``frozen`` names the layers with ``trainable=False``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CNN:
    name: str
    input: tuple  # (h, w, c)
    layers: tuple
    frozen: tuple = ()  # names of the layers with trainable=False

    def weighted(self):
        """[(layer tuple, input shape (h, w, c) or (n,), output shape)] for conv and dense."""
        out = []
        shape = tuple(self.input)
        for spec in self.layers:
            kind = spec[0]
            if kind == "conv":
                _, _, f, k, pad, _ = spec
                h, w, _ = shape
                new = (h, w, f) if pad == "same" else (h - k + 1, w - k + 1, f)
                out.append((spec, shape, new))
                shape = new
            elif kind == "pool":
                shape = (shape[0] // 2, shape[1] // 2, shape[2])
            elif kind == "gap":
                shape = (shape[2],)
            elif kind == "flatten":
                shape = (int(np.prod(shape)),)
            elif kind == "dense":
                new = (spec[2],)
                out.append((spec, shape, new))
                shape = new
            else:
                raise ValueError(f"{self.name}: unknown layer {spec!r}")
        return out

    @property
    def classes(self):
        return self.layers[-1][2]


_SMALL = (("conv", "conv1", 16, 3, "same", "relu"), ("pool",),
          ("conv", "conv2", 32, 3, "same", "relu"), ("gap",), ("dense", "head", 10, None))
_MNIST = (("conv", "conv1", 32, 3, "valid", "relu"), ("pool",),
          ("conv", "conv2", 64, 3, "valid", "relu"), ("pool",), ("flatten",),
          ("dense", "head", 10, None))

CNNS = {c.name: c for c in (
    CNN("cnn-small", (8, 8, 1), _SMALL),
    CNN("cnn-mnist", (28, 28, 1), _MNIST),
    CNN("cnn-frozen", (28, 28, 1), _MNIST, frozen=("conv1", "conv2")),
)}


def _macs(spec, shape_in, shape_out):
    """Multiply-adds of one image through a conv (as its im2col GEMM) or a dense layer."""
    if spec[0] == "conv":
        k = spec[3]
        return shape_out[0] * shape_out[1] * k * k * shape_in[2] * shape_out[2]
    return shape_in[0] * shape_out[0]


def step_flops(c: CNN, batch: int) -> float:
    """GEMM-equivalent flops (2 per MAC) of a step: forward for every layer, dW for the
    trainable ones, dX only where a trainable layer lies below (as for the graphs)."""
    total, trainable_below = 0.0, False
    for spec, s_in, s_out in c.weighted():
        mac = 2.0 * batch * _macs(spec, s_in, s_out)
        trains = spec[1] not in c.frozen
        total += mac * (1 + trains + trainable_below)
        trainable_below = trainable_below or trains
    return total


def forward_flops(c: CNN, batch: int) -> float:
    return sum(2.0 * batch * _macs(*w) for w in c.weighted())


def make_arrays(c: CNN, batch: int, rng) -> dict:
    """Glorot-uniform kernels (Keras's fans: receptive field × channels), small non-zero
    biases, an image batch in [0, 1) and labels from a random linear teacher."""
    out = {}
    for spec, s_in, s_out in c.weighted():
        name = spec[1]
        if spec[0] == "conv":
            k = spec[3]
            shape = (k, k, s_in[2], s_out[2])
            fan_in, fan_out = k * k * s_in[2], k * k * s_out[2]
        else:
            shape = (s_in[0], s_out[0])
            fan_in, fan_out = shape
        lim = np.sqrt(6.0 / (fan_in + fan_out))
        out[f"W_{name}"] = rng.uniform(-lim, lim, size=shape).astype(np.float32)
        out[f"b_{name}"] = rng.uniform(-0.1, 0.1, size=(shape[-1],)).astype(np.float32)
    x = rng.random((batch, *c.input), dtype=np.float32)
    teacher = rng.standard_normal((int(np.prod(c.input)), c.classes)).astype(np.float32)
    out["x"] = x
    out["y"] = np.argmax((x.reshape(batch, -1) - 0.5) @ teacher, axis=1).astype(np.int64)
    return out
