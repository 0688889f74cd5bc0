"""Model: a Container with a training configuration (compile, fit, evaluate, predict).

``compile()`` takes the picture (R4): the weights the optimizer will update -- the
set ``model.trainable_weights`` gives at that moment -- and, for every
batch-normalization layer on every path, whether it runs frozen.  ``fit`` and
``train_on_batch`` use that picture until ``compile()`` is called again, and warn
once per change when the current flags would give a different set of weights.
"""
from __future__ import annotations

import warnings
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from .. import losses as _losses
from .. import metrics as _metrics
from .. import optimizers as _optimizers
from ..callbacks import Callback, History
from ..utils import random as _random
from ..utils.progbar import Progbar
from . import layer as _layer_mod
from .container import Container
from .node import Node
from .run import GradientStore, Run


class _Compiled:
    """What ``compile()`` fixed: optimizer, losses, metrics and the picture (R4)."""

    def __init__(self, optimizer, losses, loss_weights, metric_ids, weights, frozen_bn):
        self.optimizer = optimizer
        self.losses = losses
        self.loss_weights = loss_weights
        self.metric_ids = metric_ids
        self.weights = weights
        self.train_ids = frozenset(id(w) for w in weights)
        self.frozen_bn = frozen_bn
        self.grads = GradientStore()
        self.flags_version = -1
        self.warned: set = set()
        self.run = Run(self.train_ids, self.grads, frozen_bn, backprop=bool(weights))
        # The fused step (engine/plan.py), valid for the graph it was built from.
        self.plan = None
        self.plan_nodes = None
        self.in_shape: tuple = ()
        self.has_metrics = any(metric_ids)


def _walk_frozen_bn(container, path, out: Dict[tuple, bool]) -> None:
    for layer in container.layers:
        if getattr(layer, "_frozen_means_inference", False):
            key = tuple(id(c) for c in path) + (id(layer),)
            out[key] = (not layer.trainable) or any(not c.trainable for c in path)
        if isinstance(layer, Container):
            _walk_frozen_bn(layer, path + [layer], out)


def _per_output(value, names: List[str], what: str, owner: str) -> list:
    """Spread a loss/weight spec over the outputs: one value, a list, or a dict by name."""
    if isinstance(value, dict):
        unknown = set(value) - set(names)
        if unknown:
            raise ValueError(f"{owner}: {what} names unknown outputs {sorted(unknown)}; "
                             f"outputs are {names}")
        return [value.get(n) for n in names]
    if isinstance(value, (list, tuple)):
        if len(value) != len(names):
            raise ValueError(f"{owner}: {what} has {len(value)} entries for {len(names)} outputs")
        return list(value)
    return [value] * len(names)


class Model(Container):
    """A graph of layers that can be compiled and trained (Keras's functional Model)."""

    def __init__(self, inputs=None, outputs=None, name: Optional[str] = None, trainable: bool = True):
        super().__init__(inputs, outputs, name=name, trainable=trainable)
        self._compiled: Optional[_Compiled] = None
        self.history: Optional[History] = None
        self.stop_training = False

    # ------------------------------------------------------------------ compile
    def compile(self, optimizer: Any = "sgd", loss: Any = None, metrics: Optional[Sequence] = None,
                loss_weights: Any = None) -> None:
        """Configure training and take the trainable picture (R4)."""
        self._ensure_graph("compile")
        owner = f"Model {self.name!r}"
        if loss is None:
            raise ValueError(f"{owner}: compile() needs a loss, e.g. loss='mse'")
        names = self.output_names
        loss_list = [_losses.get(l) if l is not None else None
                     for l in _per_output(loss, names, "loss", owner)]
        if any(l is None for l in loss_list):
            raise ValueError(f"{owner}: every output needs a loss; got {loss!r}")
        lw = [1.0 if w is None else float(w)
              for w in _per_output(loss_weights, names, "loss_weights", owner)] \
            if loss_weights is not None else [1.0] * len(names)
        if metrics is None:
            metric_ids = [[] for _ in names]
        elif isinstance(metrics, dict):
            metric_ids = [list(np.atleast_1d(metrics.get(n, []))) for n in names]
        else:
            metric_ids = [list(metrics) for _ in names]
        for ids, l, t in zip(metric_ids, loss_list, self.outputs):
            for m in ids:
                _metrics.get(m, l, t.shape)  # unknown names fail here, not in fit
        weights = self.trainable_weights
        frozen: Dict[tuple, bool] = {}
        _walk_frozen_bn(self, [self], frozen)
        self._compiled = _Compiled(_optimizers.get(optimizer), loss_list, lw, metric_ids,
                                   weights, frozen)
        self._compiled.flags_version = _layer_mod.FLAGS_VERSION[0]
        self._attach_plan(self._compiled)
        if not weights:
            warnings.warn(f"{owner} was compiled with no trainable weights: fit and "
                          f"train_on_batch will run but update nothing.", UserWarning, stacklevel=2)

    def _attach_plan(self, c: _Compiled) -> None:
        from .plan import build_plan

        c.plan = build_plan(self, c)
        c.plan_nodes = self._nodes
        # The plan reads rows: N-D batches (through a leading Flatten) are reshaped.
        c.in_shape = tuple(self.inputs[0].shape[1:])

    @staticmethod
    def _plan_rows(c: _Compiled, x):
        """The batch as the plan reads it: (n, features) rows (a view when contiguous)."""
        if len(c.in_shape) > 1 and type(x) is np.ndarray and x.shape[1:] == c.in_shape:
            return x.reshape(x.shape[0], -1)
        return x

    def _plan_step_rows(self, c: _Compiled, x, y, order, lo: int, hi: int) -> Optional[float]:
        x = self._plan_rows(c, x)
        try:
            loss = c.plan.try_step_rows(x, y, order, lo, hi, c.optimizer)
        except ValueError as exc:
            raise ValueError(f"Model {self.name!r}: {exc}") from None
        return loss

    def _plan_step(self, c: _Compiled, x: np.ndarray, y: np.ndarray) -> Optional[float]:
        """A fused step, or None when the plan cannot take it (the layer path then runs)."""
        x = self._plan_rows(c, x)
        try:
            loss = c.plan.try_step(x, y, c.optimizer)
        except ValueError as exc:
            raise ValueError(f"Model {self.name!r}: {exc}") from None
        return loss

    @property
    def optimizer(self):
        return self._compiled.optimizer if self._compiled else None

    @property
    def loss(self):
        if not self._compiled:
            return None
        ls = self._compiled.losses
        return ls[0] if len(ls) == 1 else ls

    @property
    def compiled_trainable_weights(self) -> List:
        """The weights ``fit`` updates under the current compilation (R4)."""
        return list(self._compiled.weights) if self._compiled else []

    @property
    def output_names(self) -> List[str]:
        return [t.node.layer.name if t.node is not None else f"output_{i}"
                for i, t in enumerate(self.outputs)]

    def _require_compiled(self, what: str) -> _Compiled:
        if self._compiled is None:
            raise RuntimeError(f"Model {self.name!r} must be compiled before {what}(); "
                               f"call model.compile(optimizer, loss)")
        return self._compiled

    def _ensure_graph(self, what: str, x=None) -> None:
        if not self.outputs:
            raise RuntimeError(f"Model {self.name!r} has no graph yet; cannot {what}()")

    def _check_stale(self, c: _Compiled) -> None:
        version = _layer_mod.FLAGS_VERSION[0]
        if c.flags_version == version:
            return
        c.flags_version = version
        now = frozenset(id(w) for w in self.trainable_weights)
        if now != c.train_ids and now not in c.warned:
            c.warned.add(now)
            warnings.warn(
                f"Model {self.name!r}: trainable weights changed since compile() "
                f"({len(c.train_ids)} weights compiled, {len(now)} trainable now); fit and "
                f"train_on_batch keep updating the compiled set. Call compile() again to "
                f"apply the change.", UserWarning, stacklevel=3)

    # ------------------------------------------------------------------ data
    def _standardize_x(self, x, what: str) -> List[np.ndarray]:
        owner = f"Model {self.name!r}"
        if x is None:
            raise ValueError(f"{owner}: {what}() needs input data x")
        if isinstance(x, dict):
            names = [t.name or t.node.layer.name for t in self.inputs]
            missing = [n for n in names if n not in x]
            if missing:
                raise ValueError(f"{owner}: input dict lacks {missing}")
            xs = [x[n] for n in names]
        elif isinstance(x, (list, tuple)) and len(self.inputs) > 1:
            xs = list(x)
        else:
            xs = [x]
        if len(xs) != len(self.inputs):
            raise ValueError(f"{owner} expects {len(self.inputs)} inputs, got {len(xs)} arrays")
        out = []
        for i, (a, t) in enumerate(zip(xs, self.inputs)):
            arr = np.asarray(a)
            if arr.dtype.kind not in "biuf":
                raise TypeError(f"{owner}: input {i} must be numeric, got dtype {arr.dtype}")
            if arr.ndim != len(t.shape) or any(
                    e is not None and g != e for g, e in zip(arr.shape[1:], t.shape[1:])):
                raise ValueError(
                    f"{owner}: input {i} ({t.node.layer.name if t.node else '?'}) expects shape "
                    f"{t.shape}, got an array of shape {arr.shape}")
            arr = np.ascontiguousarray(arr, dtype=t.dtype)
            out.append(arr)
        n = len(out[0])
        if any(len(a) != n for a in out):
            raise ValueError(f"{owner}: input arrays have different lengths "
                             f"{[len(a) for a in out]}")
        if n == 0:
            raise ValueError(f"{owner}: {what}() got empty input (0 samples)")
        return out

    def _standardize_y(self, y, n: int, c: _Compiled, what: str) -> List[np.ndarray]:
        owner = f"Model {self.name!r}"
        if y is None:
            raise ValueError(f"{owner}: {what}() needs targets y")
        if isinstance(y, dict):
            ys = [y[nm] for nm in self.output_names]
        elif isinstance(y, (list, tuple)) and len(self.outputs) > 1:
            ys = list(y)
        else:
            ys = [y]
        if len(ys) != len(self.outputs):
            raise ValueError(f"{owner} has {len(self.outputs)} outputs, got {len(ys)} target arrays")
        out = []
        for i, (a, t, loss) in enumerate(zip(ys, self.outputs, c.losses)):
            arr = loss.prepare_targets(a, t.shape, t.dtype)
            if len(arr) != n:
                raise ValueError(f"{owner}: x has {n} samples but y (output {i}) has {len(arr)}")
            out.append(arr)
        return out

    # ------------------------------------------------------------------ steps
    def _top_node(self) -> Node:
        node = getattr(self, "_top_node_cache", None)
        if node is None:
            node = self._top_node_cache = Node(self, [], None, self._list_inputs)
        return node

    def _train_step(self, c: _Compiled, xs, ys):
        if c.plan is not None and c.plan_nodes is self._nodes:
            loss = self._plan_step(c, xs[0], ys[0])
            if loss is not None:
                return loss, [loss], [c.plan.last_output(len(xs[0]))]
        run = c.run
        run.path.clear()
        c.grads.reset()
        outs, bp = self._forward(xs, True, run, [False] * len(xs), self._top_node())
        total = 0.0
        per_output = []
        grads = []
        for out, y, loss, w in zip(outs, ys, c.losses, c.loss_weights):
            value, g = loss.loss_and_grad(y, out, want_grad=bp is not None)
            per_output.append(value)
            total += w * value
            grads.append(g if (g is None or w == 1.0) else g * w)
        if bp is not None:
            bp(grads)
            ws = [w for w in c.weights if c.grads.get(w) is not None]
            c.optimizer.apply(ws, [c.grads.get(w) for w in ws])
        return total, per_output, outs

    def _test_step(self, c: _Compiled, xs, ys):
        outs = self._predict_arrays(xs, training=False)
        total = 0.0
        per_output = []
        for out, y, loss, w in zip(outs, ys, c.losses, c.loss_weights):
            value, _ = loss.loss_and_grad(y, out, want_grad=False)
            per_output.append(value)
            total += w * value
        return total, per_output, outs

    def _predict_arrays(self, xs, training: bool = False) -> List[np.ndarray]:
        c = self._compiled
        if c is not None and c.plan is not None and c.plan_nodes is self._nodes:
            return [c.plan.forward(self._plan_rows(c, xs[0]), training).copy()]
        outs, _ = self._forward(xs, training, Run(), [False] * len(xs), self._top_node())
        return outs

    def _result(self, total, per_output, outs, ys, c, return_dict=False):
        metrics = []
        for i, (ids, loss, t) in enumerate(zip(c.metric_ids, c.losses, self.outputs)):
            for m in ids:
                metric = _metrics.get(m, loss, t.shape)
                metrics.append((self._metric_name(metric.name, i), metric.fn(ys[i], outs[i])))
        if return_dict:
            d = {"loss": total}
            if len(self.outputs) > 1:
                d.update((f"{n}_loss", v) for n, v in zip(self.output_names, per_output))
            d.update(metrics)
            return d
        return total if not metrics else [total] + [v for _, v in metrics]

    def _metric_name(self, name: str, i: int) -> str:
        return name if len(self.outputs) == 1 else f"{self.output_names[i]}_{name}"

    def train_on_batch(self, x, y, return_dict: bool = False):
        """One training step on one batch; returns the loss (or ``[loss, *metrics]``)."""
        c = self._compiled
        if (c is not None and c.plan is not None and not return_dict and not c.has_metrics
                and c.plan_nodes is self._nodes):
            # The fast path: data already in the model's form is trained on in one call.
            if c.flags_version != _layer_mod.FLAGS_VERSION[0]:
                self._check_stale(c)
            try:
                loss = c.plan.try_step(self._plan_rows(c, x), y, c.optimizer)
            except ValueError as exc:
                raise ValueError(f"Model {self.name!r}: {exc}") from None
            if loss is not None:
                return loss
        self._ensure_graph("train_on_batch", x)
        c = self._require_compiled("train_on_batch")
        xs = self._standardize_x(x, "train_on_batch")
        ys = self._standardize_y(y, len(xs[0]), c, "train_on_batch")
        self._check_stale(c)
        total, per_output, outs = self._train_step(c, xs, ys)
        return self._result(total, per_output, outs, ys, c, return_dict)

    def test_on_batch(self, x, y, return_dict: bool = False):
        """The loss (and metrics) on one batch, in inference mode."""
        self._ensure_graph("test_on_batch", x)
        c = self._require_compiled("test_on_batch")
        xs = self._standardize_x(x, "test_on_batch")
        ys = self._standardize_y(y, len(xs[0]), c, "test_on_batch")
        total, per_output, outs = self._test_step(c, xs, ys)
        return self._result(total, per_output, outs, ys, c, return_dict)

    def predict_on_batch(self, x):
        """The model's outputs on one batch, in inference mode."""
        self._ensure_graph("predict_on_batch", x)
        xs = self._standardize_x(x, "predict_on_batch")
        outs = self._predict_arrays(xs)
        return outs if self._list_outputs else outs[0]

    # ------------------------------------------------------------------ loops
    def fit(self, x=None, y=None, batch_size: Optional[int] = None, epochs: int = 1,
            verbose: Any = "auto", callbacks: Optional[Sequence[Callback]] = None,
            validation_split: float = 0.0, validation_data=None, shuffle: bool = True,
            initial_epoch: int = 0) -> History:
        """Train for ``epochs`` over ``(x, y)``; returns a :class:`History`."""
        self._ensure_graph("fit", x)
        c = self._require_compiled("fit")
        owner = f"Model {self.name!r}"
        batch_size = _check_batch_size(batch_size, owner)
        verbose = 1 if verbose == "auto" else int(verbose)
        if isinstance(epochs, bool) or int(epochs) != epochs or epochs < 0:
            raise ValueError(f"{owner}: epochs must be a non-negative integer, got {epochs!r}")
        xs = self._standardize_x(x, "fit")
        n = len(xs[0])
        ys = self._standardize_y(y, n, c, "fit")
        if not 0.0 <= float(validation_split) < 1.0:
            raise ValueError(f"{owner}: validation_split must be in [0, 1), got {validation_split}")
        val = None
        if validation_data is not None:
            if not isinstance(validation_data, (list, tuple)) or len(validation_data) not in (2, 3):
                raise ValueError(f"{owner}: validation_data must be a tuple (x_val, y_val)")
            vx = self._standardize_x(validation_data[0], "fit")
            val = (vx, self._standardize_y(validation_data[1], len(vx[0]), c, "fit"))
        elif validation_split:
            split = int(n * (1.0 - validation_split))
            if split == 0 or split == n:
                raise ValueError(f"{owner}: validation_split={validation_split} leaves an empty "
                                 f"training or validation set for {n} samples")
            val = ([a[split:] for a in xs], [a[split:] for a in ys])
            xs = [a[:split] for a in xs]
            ys = [a[:split] for a in ys]
            n = split
        history = History()
        # History last, as Keras: it records what the other callbacks add to the logs.
        cbs = list(callbacks or []) + [history]
        steps = (n + batch_size - 1) // batch_size
        for cb in cbs:
            cb.set_model(self)
            cb.set_params({"epochs": epochs, "steps": steps, "verbose": verbose})
            cb.on_train_begin()
        batcher = _Batcher(xs + ys)
        self.stop_training = False
        self._check_stale(c)
        # BackupAndRestore sets where a resumed fit starts (Keras's model._initial_epoch).
        initial_epoch = getattr(self, "_initial_epoch", None) or initial_epoch
        self._initial_epoch = None
        for epoch in range(initial_epoch, epochs):
            for cb in cbs:
                cb.on_epoch_begin(epoch)
            if verbose in (1, 2):
                print(f"Epoch {epoch + 1}/{epochs}")
            bar = Progbar(steps, verbose=verbose)
            order = _random.generator().permutation(n) if shuffle else None
            tracker = _Tracker(self, c)
            fused = (c.plan is not None and c.plan_nodes is self._nodes and order is not None)
            for step in range(steps):
                lo, hi = step * batch_size, min(n, (step + 1) * batch_size)
                for cb in cbs:
                    cb.on_train_batch_begin(step)
                total = None
                if fused:
                    # The fused step gathers the shuffled rows itself.
                    by = [ys[0][order[lo:hi]]] if tracker.metrics else ys
                    total = self._plan_step_rows(c, xs[0], ys[0], order, lo, hi)
                    if total is not None:
                        per_output, outs = [total], [c.plan.last_output(hi - lo)]
                if total is None:
                    batch = batcher.take(order, lo, hi)
                    bx, by = batch[:len(xs)], batch[len(xs):]
                    total, per_output, outs = self._train_step(c, bx, by)
                tracker.update(total, per_output, outs, by)
                logs = tracker.logs()
                for cb in cbs:
                    cb.on_train_batch_end(step, logs)
                bar.update(step + 1, logs, final=False)
                if self.stop_training:
                    break  # e.g. TerminateOnNaN: stop after this batch, as Keras
            logs = tracker.logs()
            if val is not None:
                vlogs = self._evaluate_arrays(c, val[0], val[1], batch_size)
                logs.update({f"val_{k}": v for k, v in vlogs.items()})
            bar.update(steps, logs, final=True)
            for cb in cbs:
                cb.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
        for cb in cbs:
            cb.on_train_end()
        self.history = history
        return history

    def _evaluate_arrays(self, c, xs, ys, batch_size, verbose: int = 0) -> Dict[str, float]:
        n = len(xs[0])
        steps = (n + batch_size - 1) // batch_size
        tracker = _Tracker(self, c)
        bar = Progbar(steps, verbose=verbose)
        for step in range(steps):
            lo, hi = step * batch_size, min(n, (step + 1) * batch_size)
            bx = [a[lo:hi] for a in xs]
            by = [a[lo:hi] for a in ys]
            total, per_output, outs = self._test_step(c, bx, by)
            tracker.update(total, per_output, outs, by)
            bar.update(step + 1, tracker.logs(), final=step == steps - 1)
        return tracker.logs()

    def evaluate(self, x=None, y=None, batch_size: Optional[int] = None, verbose: Any = "auto",
                 return_dict: bool = False):
        """Loss (and metrics) over ``(x, y)`` in inference mode, averaged over samples."""
        self._ensure_graph("evaluate", x)
        c = self._require_compiled("evaluate")
        batch_size = _check_batch_size(batch_size, f"Model {self.name!r}")
        verbose = 1 if verbose == "auto" else int(verbose)
        xs = self._standardize_x(x, "evaluate")
        ys = self._standardize_y(y, len(xs[0]), c, "evaluate")
        logs = self._evaluate_arrays(c, xs, ys, batch_size, verbose)
        if return_dict:
            return logs
        values = list(logs.values())
        keep = [v for k, v in logs.items() if not (k.endswith("_loss") and len(self.outputs) > 1)]
        values = keep
        return values[0] if len(values) == 1 else values

    def predict(self, x, batch_size: Optional[int] = None, verbose: Any = "auto"):
        """The model's outputs on ``x`` in inference mode (a list for several outputs)."""
        self._ensure_graph("predict", x)
        batch_size = _check_batch_size(batch_size, f"Model {self.name!r}")
        verbose = 1 if verbose == "auto" else int(verbose)
        xs = self._standardize_x(x, "predict")
        n = len(xs[0])
        steps = (n + batch_size - 1) // batch_size
        bar = Progbar(steps, verbose=verbose)
        chunks: List[List[np.ndarray]] = [[] for _ in self.outputs]
        for step in range(steps):
            lo, hi = step * batch_size, min(n, (step + 1) * batch_size)
            outs = self._predict_arrays([a[lo:hi] for a in xs])
            for i, o in enumerate(outs):
                chunks[i].append(o)
            bar.update(step + 1, None, final=step == steps - 1)
        res = [np.concatenate(ch, axis=0) for ch in chunks]
        return res if self._list_outputs else res[0]

    # ------------------------------------------------------------------ asking what trains
    def summary(self, line_length: int = 90, show_trainable: bool = False, print_fn=None):
        """Print a table of layers, output shapes and parameter counts."""
        from ..utils.summary import print_summary

        return print_summary(self, line_length=line_length, show_trainable=show_trainable,
                             print_fn=print_fn)

    def explain_trainable(self):
        """One row per weight: is it updated by ``fit`` now, after ``compile()``, and why not."""
        from ..utils.explain import explain_trainable

        return explain_trainable(self)


def _check_batch_size(batch_size, owner: str) -> int:
    if batch_size is None:
        return 32
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"{owner}: batch_size must be a positive integer, got {batch_size!r}")
    return int(batch_size)


class _Batcher:
    """Gathers shuffled batches into buffers allocated once per batch size."""

    def __init__(self, arrays: List[np.ndarray]):
        self.arrays = arrays
        self._buffers: Dict[int, List[np.ndarray]] = {}

    def take(self, order, lo: int, hi: int) -> List[np.ndarray]:
        if order is None:
            return [a[lo:hi] for a in self.arrays]
        size = hi - lo
        bufs = self._buffers.get(size)
        if bufs is None:
            bufs = [np.empty((size,) + a.shape[1:], dtype=a.dtype) for a in self.arrays]
            self._buffers[size] = bufs
        idx = order[lo:hi]
        for a, b in zip(self.arrays, bufs):
            np.take(a, idx, axis=0, out=b)
        return bufs


class _Tracker:
    """Running, sample-weighted means of the loss and metrics over an epoch."""

    def __init__(self, model: Model, c: _Compiled):
        self.model = model
        self.metrics = []
        for i, (ids, loss, t) in enumerate(zip(c.metric_ids, c.losses, model.outputs)):
            for m in ids:
                metric = _metrics.get(m, loss, t.shape)
                self.metrics.append((i, model._metric_name(metric.name, i), metric))
        self.n = 0
        self.loss = 0.0
        self.per_output = [0.0] * len(model.outputs)

    def update(self, total, per_output, outs, ys) -> None:
        b = len(outs[0])
        self.n += b
        self.loss += total * b
        for i, v in enumerate(per_output):
            self.per_output[i] += v * b
        for i, _, metric in self.metrics:
            metric.update_state(ys[i], outs[i])

    def logs(self) -> Dict[str, float]:
        n = max(1, self.n)
        logs = {"loss": self.loss / n}
        if len(self.per_output) > 1:
            for name, v in zip(self.model.output_names, self.per_output):
                logs[f"{name}_loss"] = v / n
        for _, name, metric in self.metrics:
            logs[name] = metric.result()
        return logs
