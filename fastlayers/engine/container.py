"""Container: a graph of layers that is itself a layer.

A container owns no weights of its own; its weights are its layers'.  Its
``trainable`` flag is a gate read along the path (R1-R3): it is never pushed into
the layers, so the same layers can sit in a frozen container and a trainable one
at the same time (seed 003).
"""
from __future__ import annotations

from typing import List, Optional

import numpy as np

from .. import backend
from .layer import InputLayer, Layer, unique_name
from .node import Node, SymbolicTensor
from . import paths
from .weight import Weight


def _as_tensor_list(x, what: str, owner: str) -> "tuple[list, bool]":
    seq = list(x) if isinstance(x, (list, tuple)) else [x]
    if not seq:
        raise ValueError(f"{owner}: {what} must not be empty")
    for t in seq:
        if not isinstance(t, SymbolicTensor):
            raise TypeError(
                f"{owner}: {what} must be symbolic tensors (from fl.Input or a layer call), "
                f"got {type(t).__name__}")
    return seq, isinstance(x, (list, tuple))


def _dedup(weights) -> List[Weight]:
    seen, out = set(), []
    for w in weights:
        if id(w) not in seen:
            seen.add(id(w))
            out.append(w)
    return out


class Container(Layer):
    """A graph from ``inputs`` to ``outputs`` usable as a layer (no training configuration)."""

    def __init__(self, inputs=None, outputs=None, name: Optional[str] = None, trainable: bool = True):
        super().__init__(trainable=trainable,
                         name=name or unique_name(_default_name(type(self))))
        self._layers: List[Layer] = []
        self._nodes: List[Node] = []
        self.inputs: List[SymbolicTensor] = []
        self.outputs: List[SymbolicTensor] = []
        self._list_inputs = False
        self._list_outputs = False
        if inputs is not None or outputs is not None:
            if inputs is None or outputs is None:
                raise ValueError(f"{type(self).__name__} {self.name!r}: give both inputs and outputs")
            self._init_graph(inputs, outputs)

    # ------------------------------------------------------------------ graph
    def _init_graph(self, inputs, outputs) -> None:
        owner = f"{type(self).__name__} {self.name!r}"
        self.inputs, self._list_inputs = _as_tensor_list(inputs, "inputs", owner)
        self.outputs, self._list_outputs = _as_tensor_list(outputs, "outputs", owner)
        if len({id(t) for t in self.inputs}) != len(self.inputs):
            raise ValueError(f"{owner}: the same tensor is given twice in inputs")
        input_ids = {id(t) for t in self.inputs}
        nodes: List[Node] = []
        seen_nodes = set()

        def visit(t: SymbolicTensor, stack: set):
            if id(t) in input_ids:
                return
            node = t.node
            if node is None or isinstance(node.layer, InputLayer):
                given = ", ".join(repr(i.name or i) for i in self.inputs)
                src = node.layer.name if node is not None else "?"
                raise ValueError(
                    f"{owner}: graph disconnected: cannot obtain the value of tensor {t} "
                    f"(from {src!r}); the inputs given were: {given}")
            if id(node) in seen_nodes:
                return
            if id(node) in stack:
                raise ValueError(f"{owner}: the graph has a cycle at layer {node.layer.name!r}")
            stack.add(id(node))
            for parent in node.inputs:
                visit(parent, stack)
            stack.discard(id(node))
            seen_nodes.add(id(node))
            nodes.append(node)

        for t in self.outputs:
            visit(t, set())
        self._nodes = nodes
        layers: List[Layer] = []
        seen = set()
        for t in self.inputs:
            if t.node is not None and isinstance(t.node.layer, InputLayer) and id(t.node.layer) not in seen:
                seen.add(id(t.node.layer))
                layers.append(t.node.layer)
        for node in nodes:
            if id(node.layer) not in seen:
                seen.add(id(node.layer))
                layers.append(node.layer)
        if any(layer is self for layer in layers):
            raise ValueError(f"{owner}: a container cannot contain itself")
        names = [layer.name for layer in layers]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"{owner}: layer names must be unique within a model; "
                             f"{dupes} appear more than once")
        self._layers = layers
        # The compute dtype: the first float input's (an integer input holds ids).
        floats = [str(t.dtype) for t in list(self.inputs) + list(self.outputs)
                  if np.dtype(t.dtype).kind == "f"]
        self.dtype = floats[0] if floats else backend.floatx()
        self.built = True

    @property
    def layers(self) -> List[Layer]:
        """The layers, in topological order (input layers first for functional graphs)."""
        return list(self._layers)

    def get_layer(self, name: Optional[str] = None, index: Optional[int] = None) -> Layer:
        """The layer called ``name`` (or at ``index`` in ``layers``)."""
        if index is not None:
            if name is not None:
                raise ValueError("get_layer: give either name or index, not both")
            layers = self.layers
            if not -len(layers) <= index < len(layers):
                raise ValueError(f"get_layer: index {index} out of range ({len(layers)} layers)")
            return layers[index]
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(
            f"No layer named {name!r} in {self.name!r}; layers are {[l.name for l in self.layers]}")

    @property
    def input(self):
        """The container's own input(s), whatever other calls it has (tf.keras, Keras 3)."""
        if not self.inputs:
            raise AttributeError(f"Layer {self.name} is not connected, no input to return.")
        return self.inputs if self._list_inputs else self.inputs[0]

    @property
    def output(self):
        """The container's own output(s), whatever other calls it has (tf.keras, Keras 3)."""
        if not self.outputs:
            raise AttributeError(f"Layer {self.name} has no inbound nodes.")
        return self.outputs if self._list_outputs else self.outputs[0]

    @property
    def _input_layers(self) -> List[Layer]:
        """The input layers, in ``inputs`` order (Keras 2)."""
        return [t.node.layer for t in self.inputs]

    @property
    def _output_layers(self) -> List[Layer]:
        """The layers producing ``outputs``, in order (Keras 2)."""
        return [t.node.layer for t in self.outputs]

    @property
    def input_names(self) -> List[str]:
        """The names of the input layers, in ``inputs`` order."""
        return [t.node.layer.name for t in self.inputs]

    @property
    def output_names(self) -> List[str]:
        """The names of the layers producing ``outputs``, in order."""
        return [t.node.layer.name for t in self.outputs]

    def compute_mask(self, inputs, mask=None):
        """No masking: ``None`` per output."""
        return [None] * len(self.outputs) if self._list_outputs else None

    def _graph_nodes(self) -> List[Node]:
        """Node 0 is the container's own graph (Keras 2); then one per call of it."""
        if not self.outputs:
            return list(self._inbound_nodes)
        own = Node(self, self.inputs, None, self._list_inputs)
        own.outputs = list(self.outputs)
        return [own] + list(self._inbound_nodes)

    # ------------------------------------------------------------------ weights (R2)
    @property
    def weights(self) -> List[Weight]:
        return _dedup(w for layer in self._layers for w in layer.weights)

    @property
    def trainable_weights(self) -> List[Weight]:
        """R2/R3, read from the one walk over the paths (fastlayers.engine.paths)."""
        return paths.trainable_weights(self)

    def add_weight(self, *args, **kwargs):
        raise RuntimeError(
            f"{type(self).__name__} {self.name!r} owns no weights; they belong to its layers")

    # ------------------------------------------------------------------ calls
    def compute_output_shape(self, input_shape):
        shapes = input_shape if isinstance(input_shape, list) else [input_shape]
        if len(shapes) != len(self.inputs):
            raise ValueError(
                f"{type(self).__name__} {self.name!r} expects {len(self.inputs)} inputs, "
                f"got {len(shapes)}")
        for i, (s, t) in enumerate(zip(shapes, self.inputs)):
            _check_shape(self, i, s, t.shape)
        # The batch dimension given is kept (Keras: compute_output_shape((10, 32)) -> (10, ...)).
        batch = shapes[0][0] if shapes and len(shapes[0]) else None
        outs = [(batch,) + tuple(t.shape[1:]) for t in self.outputs]
        return outs if self._list_outputs else outs[0]

    def _output_dtype(self):
        return self.outputs[0].dtype

    def _returns_list(self) -> bool:
        return self._list_outputs

    def _as_input_array(self, x, index: int = 0, dtype=None) -> np.ndarray:
        if index < len(self.inputs):
            dtype = self.inputs[index].dtype
        a = super()._as_input_array(x, index, dtype)
        if index < len(self.inputs):
            _check_shape(self, index, (None,) + a.shape[1:], self.inputs[index].shape)
        return a

    def _eager_call(self, inputs, training, kwargs):
        xs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        if len(xs) != len(self.inputs):
            raise ValueError(
                f"{type(self).__name__} {self.name!r} expects {len(self.inputs)} input arrays, "
                f"got {len(xs)}")
        return super()._eager_call(inputs, training, kwargs)

    def call(self, inputs, training=None):
        """Run the graph on arrays; returns an array (a list for several outputs)."""
        return self._eager_call(inputs, training, {})

    def forward(self, inputs, training=False):
        """The public contract: ``(outputs, backprop)``, run by the engine."""
        from . import eager

        xs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        if len(xs) != len(self.inputs):
            raise ValueError(f"{type(self).__name__} {self.name!r} expects {len(self.inputs)} "
                             f"input arrays, got {len(xs)}")
        xs = [self._as_input_array(x, i) for i, x in enumerate(xs)]
        return eager.forward(self, xs, bool(training), {}, self._list_inputs)

    def summary(self, *args, **kwargs):
        from ..utils.summary import print_summary

        return print_summary(self, *args, **kwargs)

    # ------------------------------------------------------------------ saving (fastlayers.saving)
    def get_config(self) -> dict:
        """Keras 3's functional config: layers with their calls, input and output layers."""
        from ..saving.serialization import functional_config

        return functional_config(self)

    @classmethod
    def from_config(cls, config: dict, custom_objects=None):
        """A new graph (fresh weights) from :meth:`get_config`'s output."""
        from ..saving.registry import custom_object_scope
        from ..saving.serialization import functional_from_config

        with custom_object_scope(custom_objects):
            return functional_from_config(cls, config, custom_objects, f"{cls.__name__} config")

    def save(self, filepath, overwrite: bool = True, include_optimizer: bool = True,
             format: str = "fastlayers") -> None:
        """Write the model to one ``.keras`` file (see :func:`fastlayers.saving.save_model`)."""
        import os

        from ..saving import save_model

        if not overwrite and os.path.exists(os.fspath(filepath)):
            raise FileExistsError(f"save: {os.fspath(filepath)!r} exists and overwrite=False")
        save_model(self, filepath, include_optimizer=include_optimizer, format=format)

    def save_weights(self, filepath, overwrite: bool = True) -> None:
        """Write the weights to ``*.weights.npz`` (or ``*.weights.h5`` for Keras 3)."""
        from ..saving import save_weights

        save_weights(self, filepath, overwrite=overwrite)

    def load_weights(self, filepath, skip_mismatch: bool = False) -> None:
        """Load weights; every entry is checked first, so an error changes nothing."""
        from ..saving import load_weights

        load_weights(self, filepath, skip_mismatch=skip_mismatch)

    def to_json(self, **kwargs) -> str:
        """The architecture as JSON; :func:`fastlayers.models.model_from_json` rebuilds it."""
        from ..saving import model_to_json

        return model_to_json(self, **kwargs)

    def __reduce__(self):
        # Through the saved archive: a compiled model's engine state is rebuilt by compile().
        from ..saving.api import reduce_model

        return reduce_model(self)

    def __deepcopy__(self, memo):
        from ..saving.api import deepcopy_model

        return deepcopy_model(self, memo)


def _check_shape(layer, index: int, got, expected) -> None:
    got, expected = tuple(got), tuple(expected)
    ok = len(got) == len(expected) and all(
        e is None or g is None or e == g for g, e in zip(got[1:], expected[1:]))
    if not ok:
        raise ValueError(
            f"{type(layer).__name__} {layer.name!r}: input {index} has shape {got}, "
            f"expected {expected}")


def _default_name(cls) -> str:
    from .layer import _snake

    return _snake(cls.__name__)
