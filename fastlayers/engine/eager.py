"""Eager calls on arrays run programs too: a layer or container called on NumPy data.

``layer(x)`` lowers a one-call program (a container: its whole graph) with the live
flags and runs it on the executor; ``layer.forward(x, training)`` -- the public
contract every layer follows -- runs a ``vjp`` program whose ``backprop`` returns
the input and weight gradients.  Programs are cached per layer by input shapes,
mode and the flags' version, a few at a time.
"""
from __future__ import annotations

import weakref
from collections import OrderedDict
from typing import List

import numpy as np

from . import layer as _layer_mod
from .executor import Runner, VJPRunner
from .node import Node, SymbolicTensor
from .program import lower

_CACHE_SIZE = 4


class _OneCall:
    """A one-node graph around a layer, shaped like a container for lowering."""

    def __init__(self, layer, xs: List[np.ndarray], training, kwargs, as_list: bool):
        self.name = layer.name
        self.trainable = True
        self.dtype = layer.dtype
        self.inputs = [SymbolicTensor((None,) + x.shape[1:], x.dtype) for x in xs]
        shapes = [t.shape for t in self.inputs]
        out = layer.compute_output_shape(shapes if as_list else shapes[0])
        outs = out if isinstance(out, list) else [out]
        node = Node(layer, self.inputs, training, as_list, kwargs)
        node.outputs = [SymbolicTensor((None,) + tuple(s[1:]), layer._output_dtype(), node, i)
                        for i, s in enumerate(outs)]
        self._nodes = [node]
        self.outputs = node.outputs
        self.layers = [layer]
        self.multi = isinstance(out, list)


def _key(xs, training, kwargs, vjp):
    return (tuple((x.shape[1:], x.dtype.str) for x in xs), training, vjp,
            _layer_mod.FLAGS_VERSION[0], tuple(sorted(kwargs.items())) if kwargs else ())


def _runner(obj, graph_fn, xs, training, kwargs, vjp: bool):
    cache = obj.__dict__.setdefault("_eager_programs", OrderedDict())
    key = _key(xs, training, kwargs, vjp)
    pool = cache.get(key)
    if pool is None:
        pool = cache[key] = []
        while len(cache) > _CACHE_SIZE:
            cache.popitem(last=False)
    else:
        cache.move_to_end(key)
    for r in pool:
        if not r.busy:
            return r
    graph = graph_fn()
    prog = lower(graph, training=training, vjp=vjp, updates_state=bool(training))
    r = (VJPRunner if vjp else Runner)(prog)
    r.multi = getattr(graph, "multi", getattr(graph, "_list_outputs", False))
    pool.append(r)
    return r


def _graph_of(obj, xs, training, kwargs, as_list):
    from .container import Container

    if isinstance(obj, Container):
        return lambda: obj
    return lambda: _OneCall(obj, xs, training, kwargs, as_list)


def _ready(xs) -> List[np.ndarray]:
    return [np.ascontiguousarray(x) for x in xs]


def call(obj, xs: List[np.ndarray], training: bool, kwargs: dict, as_list: bool):
    """Run ``obj`` (a layer or container) on arrays; a list of output arrays."""
    xs = _ready(xs)
    if len(xs[0]) == 0:
        raise ValueError(f"Layer {obj.name!r}: got an empty batch (0 samples)")
    r = _runner(obj, _graph_of(obj, xs, training, kwargs, as_list), xs, training, kwargs, False)
    _, _, outs = r.run(xs)
    return [o.copy() for o in outs]


def forward(obj, xs: List[np.ndarray], training: bool, kwargs: dict, as_list: bool):
    """The public contract: ``(outputs, backprop)`` with ``backprop(g) -> (dx, dws)``."""
    xs = _ready(xs)
    r = _runner(obj, _graph_of(obj, xs, training, kwargs, as_list), xs, training, kwargs, True)
    outs = r.forward(xs)
    r.busy = True
    weights = list(obj.weights)

    def backprop(g):
        gs = list(g) if isinstance(g, (list, tuple)) else [g]
        dxs, dws = r.backward(gs)
        dx = dxs if as_list else dxs[0]
        grads = [dws.get(id(w)) for w in weights]
        return (dx, grads) if weights else dx

    # The runner's buffers belong to this call until its backprop is dropped.
    weakref.finalize(backprop, _release, r)
    y = outs if (r.multi or len(outs) > 1) else outs[0]
    return y, backprop


def _release(r) -> None:
    r.busy = False
