"""Symbolic tensors and nodes.

A :class:`Node` is one *call* of a layer on symbolic tensors, not the layer: a
layer called three times has three nodes and one set of weights (R8).  The node
keeps the ``training=`` given at that call, so a value pinned while the graph was
built is replayed on every run (R5).
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np


class SymbolicTensor:
    """The output of a layer call while a graph is being built (Keras's KerasTensor).

    ``shape`` includes the batch axis as ``None``.
    """

    __slots__ = ("shape", "dtype", "node", "index", "name")

    def __init__(self, shape: Tuple[Optional[int], ...], dtype, node: Optional["Node"] = None,
                 index: int = 0, name: Optional[str] = None):
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.node = node
        self.index = index
        self.name = name

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def _keras_shape(self) -> Tuple[Optional[int], ...]:
        """Keras 2's name for ``shape``."""
        return self.shape

    @property
    def _keras_history(self):
        """Keras 2's ``(layer, node_index, tensor_index)`` of the call that made this tensor."""
        if self.node is None:
            return None
        layer = self.node.layer
        return layer, layer._node_index(self.node), self.index

    def __repr__(self) -> str:
        src = self.node.layer.name if self.node is not None else "?"
        return f"<SymbolicTensor shape={self.shape} dtype={self.dtype} from {src!r}>"

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other) -> bool:
        return self is other


class Node:
    """One call of ``layer`` on ``inputs`` producing ``outputs``.

    ``training`` is the value given at this call (``None`` when not given);
    ``list_input`` records whether the layer was called on a list.
    """

    __slots__ = ("layer", "inputs", "outputs", "training", "list_input", "kwargs")

    def __init__(self, layer, inputs: List[SymbolicTensor], training: Optional[bool],
                 list_input: bool, kwargs: Optional[dict] = None):
        self.layer = layer
        self.inputs = list(inputs)
        self.outputs: List[SymbolicTensor] = []
        self.training = training
        self.list_input = list_input
        self.kwargs = kwargs or {}

    # Keras 2's names for a node's parts (tests and tools read them).
    @property
    def outbound_layer(self):
        """The layer this node is a call of."""
        return self.layer

    @property
    def inbound_layers(self) -> list:
        """The layers whose outputs this call takes."""
        return [t.node.layer for t in self.inputs if t.node is not None]

    @property
    def node_indices(self) -> List[int]:
        """Which call of each inbound layer produced this node's inputs."""
        return [t._keras_history[1] for t in self.inputs if t.node is not None]

    @property
    def tensor_indices(self) -> List[int]:
        """Which output of its call each input tensor is."""
        return [t.index for t in self.inputs]

    @property
    def input_tensors(self) -> List[SymbolicTensor]:
        """The tensors this call took (an input layer's node: its own tensor, as Keras 2)."""
        return list(self.inputs) if self.inputs else list(self.outputs)

    @property
    def output_tensors(self) -> List[SymbolicTensor]:
        """The tensors this call produced."""
        return list(self.outputs)

    @property
    def input_shapes(self) -> list:
        """Shapes of ``input_tensors`` (batch axis ``None``)."""
        return [t.shape for t in self.input_tensors]

    @property
    def output_shapes(self) -> list:
        """Shapes of ``output_tensors`` (batch axis ``None``)."""
        return [t.shape for t in self.outputs]

    @property
    def input_masks(self) -> list:
        """Always ``None`` per input: fastlayers has no masking."""
        return [None for _ in self.input_tensors]

    @property
    def output_masks(self) -> list:
        """Always ``None`` per output: fastlayers has no masking."""
        return [None for _ in self.outputs]

    def __repr__(self) -> str:
        return f"<Node {self.layer.name} training={self.training}>"
