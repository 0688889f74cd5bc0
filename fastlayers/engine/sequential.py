"""Sequential: a linear stack of layers, built when its input shape is known."""
from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np

from .container import Container
from .layer import Input, InputLayer, Layer, bump_flags_version
from .node import SymbolicTensor
from .training import Model


class Sequential(Model):
    """A stack of layers; ``layers`` excludes the input layer.

    The graph is built as soon as the input shape is known: from ``input_shape=``
    on the first layer, from an ``Input`` added first, from :meth:`build`, or from
    the data of the first call, ``fit`` or ``predict``.
    """

    def __init__(self, layers: Optional[Sequence[Layer]] = None, name: Optional[str] = None,
                 trainable: bool = True):
        super().__init__(name=name, trainable=trainable)
        self._stack: List[Layer] = []
        self._input: Optional[SymbolicTensor] = None
        for layer in layers or []:
            self.add(layer)

    def add(self, layer) -> None:
        """Append a layer (or set the input with an ``Input`` tensor first)."""
        if isinstance(layer, SymbolicTensor) and isinstance(getattr(layer.node, "layer", None), InputLayer):
            if self._stack or self._input is not None:
                raise ValueError(f"Sequential {self.name!r}: an Input can only be added first")
            self._input = layer
            return
        if isinstance(layer, InputLayer):
            return self.add(layer.output)
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential {self.name!r}: add() expects a Layer, got {type(layer).__name__}")
        if any(l is layer for l in self._stack):
            raise ValueError(f"Sequential {self.name!r}: layer {layer.name!r} is already in the model")
        if not self._stack and self._input is None:
            shape = layer._batch_input_shape
            if shape is None and isinstance(layer, Container) and layer.inputs:
                # A built model as the first layer gives its input shape (Keras does too).
                shape = layer.inputs[0].shape
            if shape is not None:
                self._input = Input(shape=shape[1:], dtype=layer.dtype)
        self._stack.append(layer)
        if self._input is not None:
            self._rebuild()
        bump_flags_version()

    def pop(self) -> Layer:
        """Remove and return the last layer."""
        if not self._stack:
            raise TypeError(f"Sequential {self.name!r} has no layers to pop")
        layer = self._stack.pop()
        if self._input is not None and self._stack:
            self._rebuild()
        elif not self._stack:
            self._drop_built_nodes()
            self.outputs = []
        bump_flags_version()
        return layer

    def _drop_built_nodes(self) -> None:
        """Forget the calls of the previous build, so each layer has one node (``layer.output``)."""
        for layer, node in getattr(self, "_built_nodes", ()):
            if node in layer._inbound_nodes:
                layer._inbound_nodes.remove(node)
            for t in node.inputs:
                outs = t.node.layer._outbound_nodes if t.node is not None else []
                if node in outs:
                    outs.remove(node)
        self._built_nodes = []

    def _rebuild(self) -> None:
        self._drop_built_nodes()
        x = self._input
        for layer in self._stack:
            x = layer(x)
            self._built_nodes.append((layer, layer._inbound_nodes[-1]))
            if isinstance(x, list):
                raise ValueError(f"Sequential {self.name!r}: layer {layer.name!r} has several "
                                 f"outputs; use the functional Model")
        self._init_graph(self._input, x)
        self._top_node_cache = None

    def build(self, input_shape=None) -> None:
        """Build the graph for inputs of ``input_shape`` (with the batch axis, e.g. ``(None, 784)``)."""
        if input_shape is None:
            if self._input is None:
                raise ValueError(f"Sequential {self.name!r}: build() needs an input_shape")
            return
        if self._input is None:
            dtype = self._stack[0].dtype if self._stack else self.dtype
            self._input = Input(shape=tuple(input_shape)[1:], dtype=dtype)
            if self._stack:
                self._rebuild()

    @property
    def layers(self) -> List[Layer]:
        return list(self._stack)

    @property
    def weights(self):
        if self.outputs:
            return super().weights
        return [w for layer in self._stack for w in layer.weights]

    @property
    def trainable_weights(self):
        if self.outputs:
            return super().trainable_weights
        if not self.trainable:
            return []
        return [w for layer in self._stack for w in layer.trainable_weights]

    def compile(self, *args, **kwargs):
        """Configure training; on an unbuilt model, the picture is taken when it is built.

        Keras allows compiling before the input shape is known.  The weights do not
        exist yet, so the trainable picture (R4) is taken at the first ``fit``/
        ``train_on_batch``/``evaluate``, when the data gives the shape.
        """
        if not self.outputs and self._stack:
            self._pending_compile = (args, kwargs)
            self._compiled = None
            return None
        self._pending_compile = None
        return super().compile(*args, **kwargs)

    def _ensure_graph(self, what: str, x=None) -> None:
        if not self._stack:
            raise RuntimeError(f"Sequential {self.name!r} has no layers; add() some before {what}()")
        if not self.outputs:
            if x is None:
                raise RuntimeError(
                    f"Sequential {self.name!r} is not built: give input_shape= to its first "
                    f"layer, add an Input, call build(), or call it on data before {what}()")
            arr = x[0] if isinstance(x, (list, tuple)) else x
            shape = np.shape(arr)
            if len(shape) == 0:
                raise ValueError(f"Sequential {self.name!r}: input must have a batch axis")
            self.build((None,) + tuple(shape[1:]))
        pending = getattr(self, "_pending_compile", None)
        if pending is not None:
            self._pending_compile = None
            Model.compile(self, *pending[0], **pending[1])

    def _eager_call(self, inputs, training, kwargs):
        self._ensure_graph("call", inputs)
        return super()._eager_call(inputs, training, kwargs)

    def _symbolic_call(self, inputs, training, kwargs):
        if not self.outputs:
            t = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
            self.build(t.shape)
        return super()._symbolic_call(inputs, training, kwargs)

    # ------------------------------------------------------------------ saving (fastlayers.saving)
    def get_config(self) -> dict:
        """Keras 3's Sequential config: ``name``, ``trainable``, ``layers`` (input layer first)."""
        from ..saving.serialization import sequential_config

        return sequential_config(self)

    @classmethod
    def from_config(cls, config: dict, custom_objects=None):
        from ..saving.registry import custom_object_scope
        from ..saving.serialization import sequential_from_config

        with custom_object_scope(custom_objects):
            return sequential_from_config(cls, config, custom_objects, f"{cls.__name__} config")
