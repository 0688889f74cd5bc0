"""The Layer base class: weights, the ``trainable`` flag, eager and symbolic calls.

Writing your own layer
----------------------
Create weights in ``build(input_shape)`` with :meth:`Layer.add_weight`, and give the
computation in ``forward(inputs, training=False)``, which returns
``(outputs, backprop)``.  ``backprop(grad_outputs)`` returns
``(grad_inputs, weight_grads)``: ``weight_grads`` lists one array (or ``None``) per
weight of the layer, in creation order.  All in NumPy; no autodiff is involved.
A layer that is only ever run in inference may define ``call(inputs,
training=None)`` instead.  Unless the layer defines ``compute_output_shape``, the
output shape of a symbolic call is found by one dry run on a batch of zeros in
inference mode.  Check a layer with
:func:`fastlayers.utils.check_layer_gradients`.

A layer may also :meth:`Layer.add_loss` (a number or a zero-argument callable, added
to the total loss ``fit`` and ``evaluate`` report) and :meth:`Layer.add_update` (run
after each successful training step); see :mod:`fastlayers.engine.extras`.  An added
loss is a number to the engine: it contributes **no gradient** unless the layer's
own ``backprop`` includes the gradient of that loss.

The engine never calls ``backprop`` for a call whose result needs no gradient, and
it keeps only the gradients of weights that will be updated (R9).  For a layer used
at several places of a graph, each call gets its own ``backprop`` and the gradients
of all uses are summed (R8).
"""
from __future__ import annotations

import inspect
import re
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from .. import backend
from .. import initializers as _initializers
from .node import Node, SymbolicTensor
from .weight import Weight, real_array

_NAME_COUNTS: Dict[str, int] = {}

# Bumped whenever any layer's ``trainable`` flag or any graph changes, so a
# compiled model can tell cheaply whether its picture may be stale (R4).
FLAGS_VERSION = [0]


def bump_flags_version() -> None:
    FLAGS_VERSION[0] += 1


def _snake(name: str) -> str:
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s).lower()


def unique_name(base: str) -> str:
    """``base`` the first time, then ``base_1``, ``base_2``... (Keras's scheme)."""
    n = _NAME_COUNTS.get(base, 0)
    _NAME_COUNTS[base] = n + 1
    return base if n == 0 else f"{base}_{n}"


def is_symbolic(x: Any) -> bool:
    if isinstance(x, SymbolicTensor):
        return True
    if isinstance(x, (list, tuple)):
        return any(isinstance(t, SymbolicTensor) for t in x)
    return False


def regularization_losses(layer) -> List[float]:
    """The penalty of every regularized weight of ``layer`` (a model: of all its layers)."""
    return [w.regularizer.penalty(w.value) for w in layer.weights if w.regularizer is not None]


def split_backprop_result(res, has_weights: bool):
    """``backprop``'s answer as ``(grad_inputs, weight_grads)``.

    The contract allows ``(grad_inputs, weight_grads)`` or, for a layer without
    weights, ``grad_inputs`` alone; a pair whose second item is a list is read as
    the first form either way.
    """
    if isinstance(res, tuple) and len(res) == 2 and (has_weights or
                                                      isinstance(res[1], (list, tuple))):
        return res[0], list(res[1] or [])
    return res, []


def _is_container(layer) -> bool:
    from .container import Container

    return isinstance(layer, Container)


def _flatten_inputs(inputs) -> "tuple[list, bool]":
    if isinstance(inputs, (list, tuple)):
        return list(inputs), True
    return [inputs], False


class Layer:
    """Base class of all layers (Keras names throughout).

    ``trainable`` is the layer's own flag (R1): it decides whether the layer's
    weights are in ``trainable_weights`` and never changes other layers' flags.
    ``training``, the call argument, is independent of it (R5).
    """

    _dtypes = ("float32", "float64")  # an Input may also hold integer ids

    def __init__(self, trainable: bool = True, name: Optional[str] = None,
                 dtype: Optional[str] = None, input_shape: Optional[Sequence[int]] = None,
                 input_dim: Optional[int] = None, batch_size: Optional[int] = None, **kwargs):
        if kwargs:
            raise TypeError(
                f"{type(self).__name__}: unexpected keyword argument(s) {sorted(kwargs)}")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"{type(self).__name__}: name must be a string, got {name!r}")
        self.name = name or unique_name(_snake(type(self).__name__))
        self.trainable = bool(trainable)
        self.dtype = str(np.dtype(dtype)) if dtype is not None else backend.floatx()
        if self.dtype not in self._dtypes:
            raise ValueError(f"Layer {self.name!r}: dtype must be "
                             f"{' or '.join(self._dtypes)}, got {dtype!r}")
        self.built = False
        self._weights: List[Weight] = []
        self._inbound_nodes: List[Node] = []
        self._outbound_nodes: List[Node] = []
        if input_dim is not None and input_shape is None:
            input_shape = (input_dim,)
        self._batch_input_shape = (None,) + tuple(input_shape) if input_shape is not None else None

    @property
    def trainable(self) -> bool:
        """Whether training updates this layer's weights (its own flag only, R1)."""
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        self._trainable = bool(value)
        bump_flags_version()

    # ------------------------------------------------------------------ weights
    def build(self, input_shape) -> None:
        """Create the layer's weights for inputs of ``input_shape`` (batch axis ``None``)."""
        self.built = True

    def add_weight(self, name: Optional[str] = None, shape: Sequence[int] = (),
                   initializer: Any = "glorot_uniform", trainable: bool = True,
                   dtype: Optional[str] = None, regularizer: Any = None,
                   constraint: Any = None) -> Weight:
        """Create a weight owned by this layer and return it.

        ``trainable=False`` creates state (e.g. moving statistics): never updated by
        an optimizer, whatever the layer's flag.
        """
        if self.built:
            raise RuntimeError(
                f"Layer {self.name!r} is already built; create its weights in build()")
        if isinstance(shape, int):
            shape = (shape,)
        shape = tuple(int(s) for s in shape)
        if any(s < 0 for s in shape):
            raise ValueError(f"Layer {self.name!r}: weight {name!r} has a negative dimension {shape}")
        name = name or f"weight_{len(self._weights)}"
        if any(w.name == name for w in self._weights):
            raise ValueError(f"Layer {self.name!r} already has a weight named {name!r}")
        init = _initializers.get(initializer)
        dt = dtype or self.dtype
        value = np.asarray(init(shape, dt), dtype=dt)
        if value.shape != shape:
            raise ValueError(
                f"Layer {self.name!r}: initializer for {name!r} returned shape {value.shape}, "
                f"expected {shape}")
        from .. import constraints as _constraints
        from .. import regularizers as _regularizers

        w = Weight(name, np.array(value, dtype=dt, order="C"), trainable, layer=self,
                   regularizer=_regularizers.get(regularizer),
                   constraint=_constraints.get(constraint))
        self._weights.append(w)
        return w

    @property
    def weights(self) -> List[Weight]:
        """Every weight, in one order that never depends on the flags (R2)."""
        return list(self._weights)

    @property
    def trainable_weights(self) -> List[Weight]:
        """``[]`` when ``trainable`` is false; else the weights created trainable (R2)."""
        if not self.trainable:
            return []
        return [w for w in self._weights if w.trainable]

    @property
    def non_trainable_weights(self) -> List[Weight]:
        """The weights not in ``trainable_weights``, in ``weights`` order."""
        ids = {id(w) for w in self.trainable_weights}
        return [w for w in self.weights if id(w) not in ids]

    # Keras 3's names for the same lists.
    @property
    def variables(self) -> List[Weight]:
        return self.weights

    @property
    def trainable_variables(self) -> List[Weight]:
        return self.trainable_weights

    @property
    def non_trainable_variables(self) -> List[Weight]:
        return self.non_trainable_weights

    def get_weights(self) -> List[np.ndarray]:
        """Copies of the weights' values, in ``weights`` order."""
        return [w.numpy() for w in self.weights]

    def set_weights(self, weights: Sequence[Any]) -> None:
        """Set the values of ``weights`` (same count, order and shapes as ``get_weights``)."""
        own = self.weights
        weights = list(weights)
        if len(weights) != len(own):
            raise ValueError(
                f"Layer {self.name!r} expects {len(own)} weight arrays in set_weights, "
                f"got {len(weights)}")
        arrays = []
        for w, v in zip(own, weights):
            v = real_array(v, f"Layer {self.name!r}: set_weights for weight {w.name!r}")
            if v.shape != w.shape:
                raise ValueError(
                    f"Layer {self.name!r}: weight {w.name!r} has shape {w.shape}, "
                    f"set_weights got shape {v.shape}")
            arrays.append(v)
        for w, v in zip(own, arrays):
            w.assign(v)

    def count_params(self) -> int:
        """The number of scalars in the layer's weights."""
        return int(sum(int(np.prod(w.shape)) for w in self.weights))

    # ------------------------------------------------------------------ shapes
    def compute_output_shape(self, input_shape):
        """The output shape for ``input_shape`` (batch axis included and kept).

        The base class returns ``input_shape`` unchanged, as Keras 2 does.  A layer
        that does not override this method gets the shape of its symbolic calls
        from one dry run instead (:meth:`_dry_run_output_shape`).
        """
        return input_shape

    def _dry_run_output_shape(self, input_shape):
        """The output shape found by running ``call`` once on zeros (batch size 1)."""
        from . import extras

        def zeros(s):
            return np.zeros((1,) + tuple(s[1:]), dtype=self.dtype)

        def batch(s):
            return s[0][0] if isinstance(s, list) else s[0]

        x = [zeros(s) for s in input_shape] if isinstance(input_shape, list) else zeros(input_shape)
        with extras.run([self], discard=True):
            y = self.call(x, training=False) if self._takes_training("call") else self.call(x)
        b = batch(input_shape)
        if isinstance(y, (list, tuple)):
            return [(b,) + tuple(np.shape(v)[1:]) for v in y]
        return (b,) + tuple(np.shape(y)[1:])

    # ------------------------------------------------------------------ calls
    def call(self, inputs, training=None):
        """Run the layer on arrays; by default ``forward(inputs, training)[0]``."""
        if hasattr(self, "_lower"):
            return self._eager_call(inputs, training, {})
        if type(self).forward is Layer.forward:
            raise NotImplementedError(
                f"Layer {self.name!r} ({type(self).__name__}) defines neither call() nor forward()")
        return self.forward(inputs, training=bool(training))[0]

    def forward(self, inputs, training=False):
        """Return ``(outputs, backprop)``; see the module docstring.

        Built-in layers answer through the engine: the same op the step program
        runs, with ``backprop(grad) -> (grad_inputs, weight_grads)``.
        """
        if not hasattr(self, "_lower"):
            raise NotImplementedError(
                f"Layer {self.name!r} ({type(self).__name__}) defines no forward(); to train "
                f"through it, define forward(inputs, training) returning (outputs, backprop)")
        from . import eager

        xs, as_list = _flatten_inputs(inputs)
        xs = [self._as_input_array(x, i) for i, x in enumerate(xs)]
        shapes = [(None,) + x.shape[1:] for x in xs]
        self._maybe_build(shapes if as_list else shapes[0])
        return eager.forward(self, xs, bool(training), {}, as_list)

    def __call__(self, inputs, training: Optional[bool] = None, **kwargs):
        """Eager on arrays (returns arrays), symbolic on tensors (adds a node)."""
        if training is not None and not isinstance(training, (bool, np.bool_, int)):
            raise TypeError(f"Layer {self.name!r}: training must be a bool or None, got {training!r}")
        if training is not None:
            training = bool(training)
        if is_symbolic(inputs):
            return self._symbolic_call(inputs, training, kwargs)
        from . import extras

        with extras.run([self]):
            return self._eager_call(inputs, training, kwargs)

    def _symbolic_call(self, inputs, training, kwargs):
        xs, as_list = _flatten_inputs(inputs)
        for t in xs:
            if not isinstance(t, SymbolicTensor):
                raise TypeError(
                    f"Layer {self.name!r}: cannot mix symbolic tensors and arrays in one call")
        shapes = [t.shape for t in xs]
        self._maybe_build(shapes if as_list else shapes[0])
        given = shapes if as_list else shapes[0]
        if type(self).compute_output_shape is Layer.compute_output_shape:
            out_shape = self._dry_run_output_shape(given)
        else:
            out_shape = self.compute_output_shape(given)
        node = Node(self, xs, training, as_list, kwargs)
        multi = isinstance(out_shape, list)
        out_shapes = out_shape if multi else [out_shape]
        node.outputs = [SymbolicTensor(s, self._output_dtype(), node, i)
                        for i, s in enumerate(out_shapes)]
        self._inbound_nodes.append(node)
        for t in xs:
            if t.node is not None:
                t.node.layer._outbound_nodes.append(node)
        return list(node.outputs) if multi else node.outputs[0]

    def _output_dtype(self):
        return self.dtype

    def _eager_call(self, inputs, training, kwargs):
        xs, as_list = _flatten_inputs(inputs)
        xs = [self._as_input_array(x, i) for i, x in enumerate(xs)]
        shapes = [(None,) + x.shape[1:] for x in xs]
        self._maybe_build(shapes if as_list else shapes[0])
        if training is None:
            training = backend.default_training()
        if not hasattr(self, "_lower") and not _is_container(self):
            # A custom layer on arrays: its own code, as the program's callback op runs it.
            from .executor import _call_inference

            x = xs if as_list else xs[0]
            return _call_inference(self, x, bool(training), kwargs)
        from . import eager

        ys = eager.call(self, xs, bool(training), kwargs, as_list)
        return ys if len(ys) > 1 or self._returns_list() else ys[0]

    def _returns_list(self) -> bool:
        return False

    def _as_input_array(self, x, index: int = 0, dtype=None) -> np.ndarray:
        """Convert an eager input to this layer's dtype, or ``dtype`` (ints and other
        floats are cast)."""
        dtype = dtype or self.dtype
        try:
            a = np.asarray(x)
        except Exception as exc:  # pragma: no cover - numpy's own message is kept
            raise TypeError(f"Layer {self.name!r}: input {index} is not array-like: {exc}") from None
        if a.dtype.kind not in "biuf":
            raise TypeError(
                f"Layer {self.name!r}: input {index} must be numeric, got dtype {a.dtype}")
        if a.ndim == 0:
            raise ValueError(f"Layer {self.name!r}: input {index} must have a batch axis, got a scalar")
        if a.dtype != dtype:
            a = a.astype(dtype)
        return a

    def _maybe_build(self, input_shape) -> None:
        if not self.built:
            self.build(input_shape)
            self.built = True

    def _takes_training(self, method: str) -> bool:
        cache = type(self).__dict__.get("_training_arg_cache")
        if cache is None:
            cache = {}
            type(self)._training_arg_cache = cache
        if method not in cache:
            sig = inspect.signature(getattr(self, method))
            cache[method] = "training" in sig.parameters or any(
                p.kind == p.VAR_KEYWORD for p in sig.parameters.values())
        return cache[method]

    def _as_output_list(self, y) -> List[np.ndarray]:
        if isinstance(y, (list, tuple)):
            return [np.asarray(v) for v in y]
        return [np.asarray(y)]

    # ------------------------------------------------------------------ the graph (Keras 2)
    def _graph_nodes(self) -> List[Node]:
        """The nodes ``get_*_at(i)`` index: one per symbolic call of the layer."""
        return self._inbound_nodes

    def _node_attribute(self, index: int, attr: str, what: str):
        nodes = self._graph_nodes()
        if not nodes:
            raise RuntimeError(f"The layer {self.name!r} has never been called and thus has no "
                               f"defined {what}.")
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or \
                not 0 <= index < len(nodes):
            raise ValueError(f"Asked to get {what} at node {index}, but the layer "
                             f"{self.name!r} has only {len(nodes)} inbound nodes.")
        node = nodes[index]
        if attr == "input_shapes":
            values = [t.shape for t in node.inputs]
        elif attr == "output_shapes":
            values = [t.shape for t in node.outputs]
        else:
            values = list(getattr(node, attr))
        return values[0] if len(values) == 1 else values

    def _node_index(self, node: Node) -> int:
        """The index ``get_*_at`` gives ``node`` (a call of this layer)."""
        for i, n in enumerate(self._inbound_nodes):
            if n is node:
                return i + (len(self._graph_nodes()) - len(self._inbound_nodes))
        return 0  # a container's own graph node

    def compute_mask(self, inputs, mask=None):
        """Masks are not supported: ``None`` (Keras 2's answer without masking)."""
        if mask is not None and any(m is not None for m in
                                    (mask if isinstance(mask, list) else [mask])):
            raise TypeError(f"Layer {self.name} does not support masking, but was passed an "
                            f"input_mask: {mask}")
        return None

    @property
    def input_mask(self):
        """Always ``None``: fastlayers has no masking."""
        return None

    @property
    def output_mask(self):
        """Always ``None``: fastlayers has no masking."""
        return None

    def get_input_mask_at(self, node_index: int):
        """``None`` (no masking) for an existing node."""
        self._node_attribute(node_index, "inputs", "input mask")
        return None

    def get_output_mask_at(self, node_index: int):
        """``None`` (no masking) for an existing node."""
        self._node_attribute(node_index, "outputs", "output mask")
        return None

    def get_input_at(self, node_index: int):
        """The input tensor(s) of the layer's ``node_index``-th call."""
        return self._node_attribute(node_index, "inputs", "input")

    def get_output_at(self, node_index: int):
        """The output tensor(s) of the layer's ``node_index``-th call."""
        return self._node_attribute(node_index, "outputs", "output")

    def get_input_shape_at(self, node_index: int):
        """The input shape(s) of the layer's ``node_index``-th call (batch axis ``None``)."""
        return self._node_attribute(node_index, "input_shapes", "input shape")

    def get_output_shape_at(self, node_index: int):
        """The output shape(s) of the layer's ``node_index``-th call (batch axis ``None``)."""
        return self._node_attribute(node_index, "output_shapes", "output shape")

    @property
    def input(self):
        """The input tensor of the layer's one call (Keras 2: ill-defined when shared)."""
        nodes = self._graph_nodes()
        if len(nodes) > 1:
            raise AttributeError(f"Layer {self.name} has multiple inbound nodes, hence the notion "
                                 f"of \"layer input\" is ill-defined. Use "
                                 f"`get_input_at(node_index)` instead.")
        if not nodes:
            raise AttributeError(f"Layer {self.name} is not connected, no input to return.")
        return self.get_input_at(0)

    @property
    def output(self):
        """The output tensor of the layer's one call (Keras 2: ill-defined when shared)."""
        nodes = self._graph_nodes()
        if not nodes:
            raise AttributeError(f"Layer {self.name} has no inbound nodes.")
        if len(nodes) > 1:
            raise AttributeError(f"Layer {self.name} has multiple inbound nodes, hence the notion "
                                 f"of \"layer output\" is ill-defined. Use "
                                 f"`get_output_at(node_index)` instead.")
        return self.get_output_at(0)

    def _common_shape(self, attr: str, what: str, getter: str):
        nodes = self._graph_nodes()
        shapes = [self._node_attribute(i, attr, what) for i in range(len(nodes))]
        if all(s == shapes[0] for s in shapes):
            return shapes[0]
        raise AttributeError(f"The layer \"{self.name} has multiple inbound nodes, with different "
                             f"{what}s. Hence the notion of \"{what}\" is ill-defined for the "
                             f"layer. Use `{getter}(node_index)` instead.")

    @property
    def input_shape(self):
        """The input shape (batch axis ``None``), the same for every call of the layer."""
        if self._graph_nodes():
            return self._common_shape("input_shapes", "input shape", "get_input_shape_at")
        if self._batch_input_shape is not None:
            return self._batch_input_shape
        raise AttributeError("The layer has never been called and thus has no defined input shape.")

    @property
    def output_shape(self):
        """The output shape (batch axis ``None``), the same for every call of the layer."""
        if self._graph_nodes():
            return self._common_shape("output_shapes", "output shape", "get_output_shape_at")
        raise AttributeError("The layer has never been called and thus has no defined output "
                             "shape.")

    # ------------------------------------------------------------------ added losses and updates
    def add_loss(self, losses, inputs=None) -> None:
        """Add a loss term (a number, or a zero-argument callable evaluated at each step).

        ``fit``/``evaluate``/``train_on_batch``/``test_on_batch`` add every added loss of
        the layers a model reaches to the total loss they report (Keras 2).  A loss
        added while the layer runs (inside its ``call``/``forward``) belongs to that run
        and is replaced by the next run's; one added outside a run stays.  The layers
        are NumPy code, so an added loss contributes **no gradient** unless the layer's
        own ``backprop`` includes its gradient.
        """
        from . import extras

        extras.add(self, "losses", losses, inputs)

    def add_update(self, updates, inputs=None) -> None:
        """Add an update run after each successful training step (never in inference).

        An update is a zero-argument callable, or a pair ``(weight, new_value)`` where
        ``new_value`` is an array or a zero-argument callable giving one.  Updates added
        inside the layer's ``call``/``forward`` during a training step run once, after
        that step's weight updates; updates added outside a run run after every step.
        As in Keras 2, a layer with ``trainable=False`` (or reached through a frozen
        container) has no updates: they do not run.
        """
        from . import extras

        extras.add(self, "updates", updates, inputs)

    def get_losses_for(self, inputs) -> list:
        """The losses added with ``inputs=inputs`` (``None``: the unconditional ones), as given."""
        from . import extras

        return extras.get_for(self, "losses", inputs)

    def get_updates_for(self, inputs) -> list:
        """The updates added with ``inputs=inputs`` (``None``: the unconditional ones)."""
        from . import extras

        return extras.get_for(self, "updates", inputs)

    @property
    def losses(self) -> List[float]:
        """The current values of the added losses (of this layer and, for a model, its layers)."""
        from . import extras

        # Weight penalties first (every regularized weight reached, frozen ones too: Keras
        # reports them), then the losses layers added.
        return regularization_losses(self) + extras.loss_values(self)

    @property
    def updates(self) -> list:
        """The added updates (of this layer and, for a model, its layers)."""
        from . import extras

        return extras.collect(self, "updates")

    # ------------------------------------------------------------------ misc
    def get_config(self) -> dict:
        """The constructor arguments, JSON-ready; ``type(layer).from_config(cfg)`` rebuilds it."""
        return {"name": self.name, "trainable": self.trainable, "dtype": self.dtype}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r} trainable={self.trainable}>"

    # ------------------------------------------------------------------ saving (fastlayers.saving)
    @classmethod
    def from_config(cls, config: dict) -> "Layer":
        """A new, unbuilt layer from :meth:`get_config`'s output."""
        return cls(**config)


class InputLayer(Layer):
    """The layer behind :func:`Input`: holds the input's shape, has no weights.

    ``dtype`` is float32/float64, or int32/int64 for integer ids that feed
    Embedding layers (Keras's ``Input(shape, dtype="int32")``).
    """

    _dtypes = ("float32", "float64", "int32", "int64")

    def __init__(self, shape=None, dtype=None, name=None, batch_size=None, input_shape=None, **kwargs):
        if shape is None:
            shape = input_shape
        if shape is None:
            raise ValueError("InputLayer: shape is required")
        super().__init__(name=name or unique_name("input_layer"), dtype=dtype, **kwargs)
        if isinstance(shape, int):
            shape = (shape,)
        shape = tuple(None if s is None else int(s) for s in shape)
        self.built = True
        self._batch_input_shape = (batch_size,) + shape
        node = Node(self, [], None, False)
        node.outputs = [SymbolicTensor((None,) + shape, self.dtype, node, 0, name=self.name)]
        self._inbound_nodes.append(node)

    def compute_output_shape(self, input_shape):
        return input_shape

    def _node_attribute(self, index: int, attr: str, what: str):
        # Keras: an input layer's node has its tensor as both input and output.
        attr = {"inputs": "outputs", "input_shapes": "output_shapes"}.get(attr, attr)
        return super()._node_attribute(index, attr, what)

    def _lower(self, ctx):
        return ctx.alias()

    def get_config(self) -> dict:
        """Keras 3's InputLayer config: ``batch_shape``, ``dtype``, ``name``."""
        return {"batch_shape": list(self._batch_input_shape), "dtype": self.dtype,
                "name": self.name}

    @classmethod
    def from_config(cls, config: dict) -> "InputLayer":
        config = dict(config)
        batch_shape = config.pop("batch_shape", None)
        if batch_shape is not None:
            config["shape"] = tuple(batch_shape[1:])
            config["batch_size"] = batch_shape[0]
        return cls(**config)


def Input(shape=None, dtype=None, name=None, batch_size=None) -> SymbolicTensor:
    """A symbolic input of ``shape`` (without the batch axis)."""
    if shape is None:
        raise ValueError("Input: shape is required, e.g. Input(shape=(784,))")
    return InputLayer(shape=shape, dtype=dtype, name=name, batch_size=batch_size)._inbound_nodes[0].outputs[0]
