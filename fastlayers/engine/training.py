"""Model: a Container with a training configuration (compile, fit, evaluate, predict).

``compile()`` takes the picture (R4, :func:`fastlayers.engine.paths.take_picture`) and
lowers the model into step programs (:mod:`fastlayers.engine.program`): one that
trains, one that evaluates.  ``fit`` and ``train_on_batch`` run the training program
until ``compile()`` is called again, and warn once per change when the current flags
would give a different set of weights.  Every call -- training, evaluation,
prediction -- runs a program on the one executor.
"""
from __future__ import annotations

import copy
import warnings
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from .. import backend
from .. import losses as _losses
from .. import metrics as _metrics
from .. import optimizers as _optimizers
from ..callbacks import Callback, CallbackList, History
from . import data as _data
from . import extras as _extras
from . import layer as _layer_mod
from . import paths
from .container import Container
from .executor import Runner
from .program import lower


class _Compiled:
    """What ``compile()`` fixed: optimizer, losses, metrics, the picture and its programs."""

    def __init__(self, optimizer, losses, loss_weights, metric_ids, picture):
        self.optimizer = optimizer
        self.losses = losses
        self.loss_weights = loss_weights
        self.metric_ids = metric_ids
        self.picture = picture
        self.weights = list(picture.weights)
        self.train_ids = picture.train_ids
        self.flags_version = -1
        self.warned: set = set()
        self.train: Optional[Runner] = None
        self.has_metrics = any(metric_ids)
        # Evaluation programs read the live flags (R4 is about training): by version.
        self._eval: Dict[int, Runner] = {}


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
        self._predict_runners: Dict[int, Runner] = {}

    # ------------------------------------------------------------------ compile
    def compile(self, optimizer: Any = "rmsprop", loss: Any = None, metrics: Optional[Sequence] = None,
                loss_weights: Any = None, weighted_metrics: Optional[Sequence] = None,
                **kwargs) -> None:
        """Configure training, take the trainable picture (R4) and lower the step program.

        ``weighted_metrics``: metrics (same forms as ``metrics``) whose epoch value is the
        mean weighted by ``sample_weight``/``class_weight``; logged as ``weighted_<name>``
        (Keras 2.2.4's names).  Plain ``metrics`` ignore the sample weights, as in Keras.
        """
        owner = f"Model {self.name!r}"
        if kwargs:
            raise TypeError(f"{owner}: compile() got unexpected keyword argument(s) "
                            f"{sorted(kwargs)}")
        self._ensure_graph("compile")
        if loss is None:
            raise ValueError(f"{owner}: compile() needs a loss, e.g. loss='mse'")
        names = self.output_names
        loss_list = [_losses.get(l) if l is not None else None
                     for l in _per_output(loss, names, "loss", owner)]
        if all(l is None for l in loss_list):
            raise ValueError(f"{owner}: every output has no loss; got {loss!r}")
        lw = [1.0 if w is None else float(w)
              for w in _per_output(loss_weights, names, "loss_weights", owner)] \
            if loss_weights is not None else [1.0] * len(names)
        metric_ids = _metric_ids_per_output(metrics, names, loss_list, self.outputs)
        weighted_ids = _metric_ids_per_output(weighted_metrics, names, loss_list, self.outputs)
        opt = _optimizers.get(optimizer)
        picture = paths.take_picture(self)
        c = _Compiled(opt, loss_list, lw, metric_ids, picture)
        _set_weighted_metrics(c, weighted_ids)
        c.flags_version = _layer_mod.FLAGS_VERSION[0]
        c.train = Runner(lower(self, training=True, picture=picture, backprop=True,
                               losses=loss_list, loss_weights=lw,
                               fuse_sgd=opt.fusable), opt, self._step_lock())
        # The fast path: one input, one built-in loss, no metrics, no callbacks.
        c.fast = (not c.has_metrics and not c.train.program.has_callbacks
                  and len(self.outputs) == 1 and not self._penalized())
        self._compiled = c
        if not picture.weights:
            warnings.warn(f"{owner} was compiled with no trainable weights: fit and "
                          f"train_on_batch will run but update nothing.", UserWarning, stacklevel=2)

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
    def step_program(self):
        """The compiled training step, as data (``None`` before ``compile()``)."""
        return self._compiled.train.program if self._compiled else None

    @property
    def output_names(self) -> List[str]:
        return [t.node.layer.name if t.node is not None else f"output_{i}"
                for i, t in enumerate(self.outputs)]

    @property
    def metrics_names(self) -> List[str]:
        """Keras's names of what ``evaluate``/``train_on_batch`` return, in order."""
        if self._compiled is None:
            return []
        return list(self._log_names(self._compiled))

    def _log_names(self, c) -> List[str]:
        names = ["loss"]
        if len(self.outputs) > 1:
            names += [f"{n}_loss" for n, l in zip(self.output_names, c.losses) if l is not None]
        names += [name for _, name, _, _ in _metric_entries(self, c)]
        return names

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

    def _step_lock(self):
        """The model's lock, shared by all its runners (created on first use)."""
        lock = self.__dict__.get("_steps_lock")
        if lock is None:
            import threading

            lock = self.__dict__.setdefault("_steps_lock", threading.RLock())
        return lock

    # ------------------------------------------------------------------ programs
    def _eval_runner(self, c: _Compiled) -> Runner:
        v = _layer_mod.FLAGS_VERSION[0]
        r = c._eval.get(v)
        if r is None:
            c._eval.clear()
            r = c._eval[v] = Runner(lower(self, training=False, losses=c.losses,
                                          loss_weights=c.loss_weights), lock=self._step_lock())
        return r

    def _predict_runner(self) -> Runner:
        v = _layer_mod.FLAGS_VERSION[0]
        r = self._predict_runners.get(v)
        if r is None:
            self._predict_runners.clear()
            r = self._predict_runners[v] = Runner(lower(self, training=False),
                                                  lock=self._step_lock())
        return r

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
        elif isinstance(x, (list, tuple)) and (len(self.inputs) > 1 or len(x) == 1):
            xs = list(x)
        else:
            xs = [x]
        if len(xs) != len(self.inputs):
            raise ValueError(f"{owner} expects {len(self.inputs)} inputs, got {len(xs)} arrays")
        out = []
        for i, (a, t) in enumerate(zip(xs, self.inputs)):
            arr = _as_array(a, owner, f"input {i}")
            if arr.dtype.kind not in "biuf":
                raise TypeError(f"{owner}: input {i} must be numeric (real numbers), got dtype {arr.dtype}")
            if arr.ndim != len(t.shape) or any(
                    e is not None and g != e for g, e in zip(arr.shape[1:], t.shape[1:])):
                raise ValueError(
                    f"{owner}: input {i} ({t.node.layer.name if t.node else '?'}) expects shape "
                    f"{t.shape}, got an array of shape {arr.shape}")
            if np.dtype(t.dtype).kind in "iu" and arr.dtype != t.dtype:
                _check_ids_fit(arr, np.dtype(t.dtype), owner, i)
            arr = np.ascontiguousarray(arr, dtype=t.dtype)
            out.append(arr)
        n = len(out[0])
        if any(len(a) != n for a in out):
            raise ValueError(f"{owner}: input arrays have different lengths "
                             f"{[len(a) for a in out]}")
        if n == 0:
            raise ValueError(f"{owner}: {what}() got empty input (0 samples)")
        return out

    def _standardize_y(self, y, n: int, c: _Compiled, what: str) -> List[Optional[np.ndarray]]:
        owner = f"Model {self.name!r}"
        if y is None:
            raise ValueError(f"{owner}: {what}() needs targets y")
        names = self.output_names
        if isinstance(y, dict):
            unknown = sorted(set(y) - set(names))
            if unknown:
                raise ValueError(f"{owner}: targets name unknown outputs {unknown}; outputs "
                                 f"are {names}")
            ys = [y.get(nm) for nm in names]
        elif isinstance(y, (list, tuple)) and (len(self.outputs) > 1 or len(y) == 1):
            ys = list(y)
        else:
            ys = [y]
        if len(ys) != len(self.outputs):
            raise ValueError(f"{owner} has {len(self.outputs)} outputs, got {len(ys)} target arrays")
        out = []
        for i, (a, t, loss) in enumerate(zip(ys, self.outputs, c.losses)):
            if loss is None:
                out.append(None)
                continue
            if a is None:
                raise ValueError(f"{owner}: output {names[i]!r} has a loss but no targets")
            arr = loss.prepare_targets(_as_array(a, owner, f"targets of {names[i]!r}"),
                                       t.shape, t.dtype)
            if len(arr) != n:
                raise ValueError(f"{owner}: x has {n} samples but y (output {i}) has {len(arr)}")
            out.append(arr)
        return out

    def _feed_targets(self, y, c: _Compiled):
        """Keras 2's feed outputs: with outputs left without a loss, targets given as one
        array or a list may cover only the outputs that have one (in order)."""
        feed = [i for i, l in enumerate(c.losses) if l is not None]
        if y is None or len(feed) == len(self.outputs) or isinstance(y, dict) or \
                not _is_arrays(y):
            return y
        if isinstance(y, (list, tuple)) and not (len(y) == len(feed) and all(
                isinstance(a, np.ndarray) or hasattr(a, "to_numpy") for a in y)):
            return y
        given = list(y) if isinstance(y, (list, tuple)) else [y]
        if len(given) != len(feed):
            return y
        full = [None] * len(self.outputs)
        for i, a in zip(feed, given):
            full[i] = a
        return full

    def _standardize_sw(self, sample_weight, n: int, what: str):
        if sample_weight is None:
            return None
        owner = f"Model {self.name!r}"
        sws = sample_weight if isinstance(sample_weight, (list, tuple)) else \
            [sample_weight] * len(self.outputs)
        if isinstance(sample_weight, dict):
            sws = [sample_weight.get(nm) for nm in self.output_names]
        out = []
        for sw in sws:
            if sw is None:
                out.append(None)
                continue
            a = np.asarray(_as_array(sw, owner, "sample_weight"), dtype=np.float64)
            if a.ndim == 2 and a.shape[1] == 1:
                a = a[:, 0]
            if a.shape != (n,):
                raise ValueError(f"{owner}: sample_weight must have shape ({n},) in {what}(), "
                                 f"got {a.shape}")
            if not np.all(np.isfinite(a)):
                raise ValueError(f"{owner}: sample_weight has NaN or infinite values")
            out.append(np.ascontiguousarray(a))
        return out

    # ------------------------------------------------------------------ steps
    def _penalized(self) -> bool:
        return any(w.regularizer is not None for w in self.weights) or bool(self._activity_ops())

    def _activity_ops(self) -> list:
        from .paths import walk

        return [u.layer._activity for u in walk(self)
                if getattr(u.layer, "_activity", None) is not None]

    def _penalty(self) -> float:
        """The weight penalties Keras reports in the loss (frozen weights' too), now."""
        if not self._penalized():
            return 0.0
        from .layer import regularization_losses

        return float(sum(regularization_losses(self)))

    def _activity_penalty(self) -> float:
        """The activity penalties the last run recorded (its outputs' regularizers)."""
        return float(sum(a._penalty for a in self._activity_ops()))

    def _train_step(self, c: _Compiled, xs, ys, sws=None, rows=None):
        penalty = self._penalty()  # of the weights this step's loss was computed with
        total, per_output, outs = self._train_step_core(c, xs, ys, sws, rows)
        if penalty or self._penalized():
            penalty += self._activity_penalty()
        return total + penalty, per_output, outs

    def _train_step_core(self, c: _Compiled, xs, ys, sws=None, rows=None):
        with backend.learning_phase_scope(1):
            if _extras.needed(c.train.program):
                return self._step_with_extras(c.train.train_step, c.picture, xs, ys, sws,
                                              self._gradient_hook(), rows)
            return c.train.train_step(xs, ys, sws, self._gradient_hook(), rows)

    def _step_with_extras(self, fn, picture, *args):
        """A step with the layers' added losses in its total and, after training (a compiled
        ``picture`` given), their updates."""
        with _extras.step(self, picture is not None) as st:
            total, per_output, outs = fn(*args)
            total = st.total(total)
            st.done(picture)
        return total, per_output, outs

    def _gradient_hook(self):
        strategy = getattr(self, "_distribute", None)
        return strategy.reduce_gradients if strategy is not None else None

    def _test_step(self, c: _Compiled, xs, ys, sws=None):
        runner = self._eval_runner(c)
        if _extras.needed(runner.program):
            total, per_output, outs = self._step_with_extras(runner.run, None, xs, ys, sws)
            return total + self._penalty(), per_output, outs
        total, per_output, outs = runner.run(xs, ys, sws)
        pen = self._penalty()
        if self._penalized():
            pen += self._activity_penalty()
        return total + pen, per_output, outs

    def _predict_arrays(self, xs, training: bool = False) -> List[np.ndarray]:
        runner = self._predict_runner()
        if _extras.needed(runner.program):
            with _extras.run([self]):
                _, _, outs = runner.run(xs)
        else:
            _, _, outs = runner.run(xs)
        return [o.copy() for o in outs]

    def _result(self, total, per_output, outs, ys, c, return_dict=False, sws=None):
        metrics = [(name, _batch_metric(metric, ys[i], outs[i], sws, i, weighted))
                   for i, name, metric, weighted in _metric_entries(self, c)]
        values = [float(total)]
        if len(self.outputs) > 1:
            values += [float(v) for v, l in zip(per_output, c.losses) if l is not None]
        values += [float(v) for _, v in metrics]
        if return_dict:
            return dict(zip(self._log_names(c), values))
        return values[0] if len(values) == 1 else values

    def _metric_name(self, name: str, i: int) -> str:
        return name if len(self.outputs) == 1 else f"{self.output_names[i]}_{name}"

    def train_on_batch(self, x, y, sample_weight=None, class_weight=None,
                       return_dict: bool = False):
        """One training step on one batch; returns the loss (or ``[loss, ...]``, see Keras)."""
        c = self._compiled
        if c is not None and c.fast and sample_weight is None and class_weight is None \
                and not return_dict and not _extras.active():
            # Data already in the program's form: one call, no conversions.
            if c.flags_version != _layer_mod.FLAGS_VERSION[0]:
                self._check_stale(c)
            total = c.train.try_fast(x, y)
            if total is not None:
                return total
        self._ensure_graph("train_on_batch", x)
        c = self._require_compiled("train_on_batch")
        xs = self._standardize_x(x, "train_on_batch")
        ys = self._standardize_y(self._feed_targets(y, c), len(xs[0]), c, "train_on_batch")
        sws = self._standardize_sw(_with_class_weight(sample_weight, class_weight, ys),
                                   len(xs[0]), "train_on_batch")
        self._check_stale(c)
        total, per_output, outs = self._train_step(c, xs, ys, sws)
        return self._result(total, per_output, outs, ys, c, return_dict, sws)

    def test_on_batch(self, x, y, sample_weight=None, return_dict: bool = False):
        """The loss (and metrics) on one batch, in inference mode."""
        self._ensure_graph("test_on_batch", x)
        c = self._require_compiled("test_on_batch")
        xs = self._standardize_x(x, "test_on_batch")
        ys = self._standardize_y(self._feed_targets(y, c), len(xs[0]), c, "test_on_batch")
        sws = self._standardize_sw(sample_weight, len(xs[0]), "test_on_batch")
        total, per_output, outs = self._test_step(c, xs, ys, sws)
        return self._result(total, per_output, outs, ys, c, return_dict, sws)

    def predict_on_batch(self, x):
        """The model's outputs on one batch, in inference mode."""
        self._ensure_graph("predict_on_batch", x)
        xs = self._standardize_x(x, "predict_on_batch")
        outs = self._predict_arrays(xs)
        return outs if self._list_outputs else outs[0]

    # ------------------------------------------------------------------ loops
    def fit(self, x=None, y=None, batch_size: Optional[int] = None, epochs: int = 1,
            verbose: Any = "auto", callbacks: Optional[Sequence[Callback]] = None,
            validation_split: float = 0.0, validation_data=None, shuffle: Any = True,
            class_weight=None, sample_weight=None, initial_epoch: int = 0,
            steps_per_epoch: Optional[int] = None, validation_steps: Optional[int] = None,
            validation_batch_size: Optional[int] = None, validation_freq: Any = 1,
            distribute: Any = None) -> History:
        """Train for ``epochs`` over arrays, a generator or a ``PyDataset``; returns a History.

        ``distribute``: a :class:`fastlayers.distribute.DataParallel` (default: the one
        :func:`fastlayers.distribute.init` set up under ``mpirun``; ``False``: none).
        ``batch_size`` is then the global batch, each rank training on its shard.
        """
        self._ensure_graph("fit", _first_array(x))
        c = self._require_compiled("fit")
        owner = f"Model {self.name!r}"
        if batch_size is not None:
            batch_size = _check_batch_size(batch_size, owner)
        verbose = _check_verbose(verbose, owner)
        epochs = _check_count(epochs, "epochs", owner)
        initial_epoch = _check_count(initial_epoch, "initial_epoch", owner)
        callbacks = _check_callbacks(callbacks, owner)
        if isinstance(validation_split, (str, bytes)):
            raise TypeError(f"{owner}: validation_split must be a number, got "
                            f"{validation_split!r}")
        y = self._feed_targets(y, c)
        if isinstance(validation_data, (list, tuple)) and len(validation_data) in (2, 3):
            validation_data = (validation_data[0], self._feed_targets(validation_data[1], c),
                               *validation_data[2:])
        data = _data.fit_data(
            x, y, sample_weight, batch_size if batch_size is not None or not _is_arrays(x)
            else (None if steps_per_epoch else 32), steps_per_epoch, shuffle, class_weight,
            validation_split, validation_data, validation_steps, validation_batch_size,
            validation_freq, **self._data_kw(), what=owner)
        self._prepare_arrays(data.train, c, "fit")
        if data.validation is not None:
            self._prepare_arrays(data.validation, c, "fit")
        from .. import distribute as _dist

        strategy = _dist.resolve(distribute)
        if strategy is not None and strategy.size == 1:
            strategy = None  # one process: plain fit, no exchange
        if strategy is not None and not strategy.is_primary:
            # Only rank 0 prints and writes files; decisions (EarlyStopping...) run everywhere.
            verbose = 0
            callbacks = [cb for cb in callbacks if not getattr(cb, "_writes_files", False)]
        cbs = CallbackList(callbacks, add_history=True, add_progbar=verbose != 0, model=self,
                           verbose=verbose, epochs=epochs, steps=data.train.num_batches)
        history = cbs.history
        self.stop_training = False
        self._check_stale(c)
        if strategy is not None:
            strategy.begin_fit(self)
        self._distribute = strategy
        try:
            return self._fit_loop(c, data, cbs, history, strategy, initial_epoch, epochs)
        finally:
            self._distribute = None

    def _fit_loop(self, c, data, cbs, history, strategy, initial_epoch, epochs):
        cbs.on_train_begin()
        # BackupAndRestore sets where a resumed fit starts (Keras's model._initial_epoch).
        initial_epoch = getattr(self, "_initial_epoch", None) or initial_epoch
        self._initial_epoch = None
        logs: Dict[str, float] = {}
        for epoch in range(initial_epoch, epochs):
            cbs.on_epoch_begin(epoch)
            tracker = _Tracker(self, c)
            step = -1
            for step, batch in enumerate(data.train.epoch()):
                cbs.on_train_batch_begin(step)
                bx, by, bsw = self._batch_in_form(batch, c, data.train, "fit")
                if strategy is None:
                    total, per_output, outs = self._train_step(c, bx, by, bsw)
                    tracker.update(total, per_output, outs, by, bsw)
                else:
                    self._distributed_step(c, strategy, tracker, bx, by, bsw)
                logs = tracker.logs()
                cbs.on_train_batch_end(step, logs)
                if self.stop_training:
                    break  # e.g. TerminateOnNaN: stop after this batch, as Keras
            data.train.on_epoch_end()
            if step < 0 and data.train.exhausted:
                break  # a generator ran dry
            logs = tracker.logs() if strategy is None else tracker.reduced_logs(strategy)
            if data.should_validate(epoch):
                # Keras 3: validation fires the on_test_* hooks too (ProgbarLogger skips them).
                vlogs = self._evaluate_adapter(c, data.validation, cbs=cbs)
                logs.update({f"val_{k}": v for k, v in vlogs.items()})
            cbs.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
        cbs.on_train_end(logs)
        self.history = history
        return history

    def _distributed_step(self, c, strategy, tracker, bx, by, bsw) -> None:
        """This rank's shard of one global batch: a step whose gradients are averaged
        across ranks at the gradients-ready point; the loss logged is the global mean."""
        n = len(bx[0])
        local = strategy.shard(np.arange(n))
        lo, hi = strategy.row_offset, strategy.row_offset + len(local)
        cut = lambda arrays: None if arrays is None else [  # noqa: E731
            None if a is None else a[lo:hi] for a in arrays]
        if hi == lo:
            raise ValueError(f"Model {self.name!r}: a global batch of {n} rows leaves rank "
                             f"{strategy.rank} no rows; use a batch_size of at least "
                             f"{strategy.size}")
        total, per_output, outs = self._train_step(c, cut(bx), cut(by), cut(bsw),
                                                   rows=(lo, n))
        sums = strategy.reduce_scalars(np.array([total] + list(per_output)) * (hi - lo))
        tracker.update(sums[0] / n, list(sums[1:] / n), outs, cut(by), cut(bsw), count=n)

    # ------------------------------------------------------------------ data plumbing
    def _data_kw(self) -> dict:
        return dict(n_inputs=len(self.inputs), n_outputs=len(self.outputs),
                    input_names=[t.name or t.node.layer.name for t in self.inputs],
                    output_names=self.output_names)

    def _prepare_arrays(self, adapter, c, what: str) -> None:
        """Array data is converted once, whole, so its batches come out in the program's form."""
        if not isinstance(adapter, _data.ArrayAdapter):
            return
        xs = self._standardize_x(adapter.xs, what)
        n = len(xs[0])
        adapter.xs = xs
        if adapter.ys is not None and c is not None:
            adapter.ys = self._standardize_y(adapter.ys, n, c, what)
        if adapter.sws is not None:
            adapter.sws = self._standardize_sw(adapter.sws, n, what)
        adapter.prepared = True

    def _batch_in_form(self, batch, c, adapter, what: str):
        xs, ys, sws = batch
        if getattr(adapter, "prepared", False):
            return xs, ys, sws
        xs = self._standardize_x(xs, what)
        n = len(xs[0])
        if ys is not None and c is not None:
            ys = self._standardize_y(ys, n, c, what)
        sws = self._standardize_sw(sws, n, what) if sws is not None else None
        return xs, ys, sws

    def _evaluate_adapter(self, c, adapter, cbs=None) -> Dict[str, float]:
        tracker = _Tracker(self, c)
        if cbs is not None:
            cbs.on_test_begin()
        for step, batch in enumerate(adapter.epoch()):
            if cbs is not None:
                cbs.on_test_batch_begin(step)
            bx, by, bsw = self._batch_in_form(batch, c, adapter, "evaluate")
            if by is None:
                raise ValueError(f"Model {self.name!r}: evaluate() needs targets y")
            total, per_output, outs = self._test_step(c, bx, by, bsw)
            tracker.update(total, per_output, outs, by, bsw)
            if cbs is not None:
                cbs.on_test_batch_end(step, tracker.logs())
        adapter.on_epoch_end()
        logs = tracker.logs()
        if cbs is not None:
            cbs.on_test_end(logs)
        return logs

    def evaluate(self, x=None, y=None, batch_size: Optional[int] = None, verbose: Any = "auto",
                 sample_weight=None, steps: Optional[int] = None, callbacks=None,
                 return_dict: bool = False):
        """Loss (and metrics) over ``(x, y)`` in inference mode, averaged over samples.

        Returns the loss, or ``[loss, <output>_loss..., metrics...]`` as Keras does
        (names in ``metrics_names``), or a dict with ``return_dict=True``.
        After ``fl.distribute.init()`` under ``mpirun``, array data is sharded over the
        ranks and the means combined (weighted by rows), the same on every rank.
        """
        self._ensure_graph("evaluate", _first_array(x))
        c = self._require_compiled("evaluate")
        owner = f"Model {self.name!r}"
        strategy = self._shard_strategy(x, steps)
        if strategy is not None:
            return self._sharded_evaluate(strategy, c, x, y, batch_size, verbose, sample_weight,
                                          callbacks, return_dict)
        if batch_size is not None:
            batch_size = _check_batch_size(batch_size, owner)
        verbose = _check_verbose(verbose, owner)
        callbacks = _check_callbacks(callbacks, owner)
        y = self._feed_targets(y, c)
        adapter = _data.get_data_adapter(
            x, y, sample_weight, batch_size if batch_size is not None or not _is_arrays(x)
            else (None if steps else 32), steps, False, **self._data_kw(), what=owner)
        if isinstance(adapter, _data.ArrayAdapter) and adapter.ys is None:
            raise ValueError(f"{owner}: evaluate() needs targets y")
        self._prepare_arrays(adapter, c, "evaluate")
        cbs = CallbackList(callbacks, add_progbar=verbose != 0, model=self, verbose=verbose,
                           epochs=1, steps=adapter.num_batches)
        logs = self._evaluate_adapter(c, adapter, cbs)
        if return_dict:
            return logs
        values = [logs[k] for k in self._log_names(c)]
        return values[0] if len(values) == 1 else values

    def predict(self, x, batch_size: Optional[int] = None, verbose: Any = "auto",
                steps: Optional[int] = None, callbacks=None):
        """The model's outputs on ``x`` in inference mode (a list for several outputs).

        After ``fl.distribute.init()`` under ``mpirun``, array data is sharded over the
        ranks and the outputs gathered in order: every rank returns all of them.
        """
        self._ensure_graph("predict", _first_array(x))
        owner = f"Model {self.name!r}"
        strategy = self._shard_strategy(x, steps)
        if strategy is not None:
            return self._sharded_predict(strategy, x, batch_size, verbose, callbacks)
        if batch_size is not None:
            batch_size = _check_batch_size(batch_size, owner)
        verbose = _check_verbose(verbose, owner)
        callbacks = _check_callbacks(callbacks, owner)
        adapter = _data.get_data_adapter(
            x, None, None, batch_size if batch_size is not None or not _is_arrays(x)
            else (None if steps else 32), steps, False, n_inputs=len(self.inputs),
            input_names=[t.name or t.node.layer.name for t in self.inputs], what=owner)
        self._prepare_arrays(adapter, None, "predict")
        cbs = CallbackList(callbacks, add_progbar=verbose != 0, model=self, verbose=verbose,
                           epochs=1, steps=adapter.num_batches)
        cbs.on_predict_begin()
        chunks: List[List[np.ndarray]] = [[] for _ in self.outputs]
        for step, batch in enumerate(adapter.epoch()):
            cbs.on_predict_batch_begin(step)
            bx, _, _ = self._batch_in_form(batch, None, adapter, "predict")
            outs = self._predict_arrays(bx)
            for i, o in enumerate(outs):
                chunks[i].append(o)
            cbs.on_predict_batch_end(step, {"outputs": outs})
        adapter.on_epoch_end()
        cbs.on_predict_end()
        if not chunks[0]:
            raise ValueError(f"{owner}: predict() got no data")
        res = [np.concatenate(ch, axis=0) for ch in chunks]
        return res if self._list_outputs else res[0]

    # ------------------------------------------------------------------ over ranks
    def _shard_strategy(self, x, steps):
        """The strategy ``evaluate``/``predict`` shard array data over: the default one
        (``fl.distribute.init()``) in a world of more than one rank, else ``None``."""
        if self.__dict__.get("_sharding") or steps is not None or not _is_arrays(x):
            return None
        from .. import distribute as _dist

        strategy = _dist.get_strategy()
        return strategy if strategy is not None and strategy.size > 1 else None

    def _run_shard(self, strategy, fn, xs, *rest):
        """``fn`` on this rank's contiguous rows of ``xs`` and of each list in ``rest``
        (the whole data on every rank when there are fewer rows than ranks)."""
        n = len(xs[0])
        if n >= strategy.size:
            local = strategy.shard(np.arange(n))
            lo, hi = strategy.row_offset, strategy.row_offset + len(local)
            cut = lambda arrays: None if arrays is None else [  # noqa: E731
                None if a is None else a[lo:hi] for a in arrays]
            xs, rest = cut(xs), [cut(r) for r in rest]
        self._sharding = True
        try:
            return fn(xs, *rest), len(xs[0]), n
        finally:
            self._sharding = False

    def _sharded_predict(self, strategy, x, batch_size, verbose, callbacks):
        xs = self._standardize_x(x, "predict")
        verbose = verbose if strategy.is_primary else 0
        res, local, n = self._run_shard(strategy, lambda a: self.predict(
            a, batch_size=batch_size, verbose=verbose, callbacks=callbacks), xs)
        outs = res if self._list_outputs else [res]
        if local == n:  # not sharded (fewer rows than ranks): every rank has every row
            return res
        outs = [strategy.allgather_rows(o) for o in outs]
        return outs if self._list_outputs else outs[0]

    def _sharded_evaluate(self, strategy, c, x, y, batch_size, verbose, sample_weight,
                          callbacks, return_dict):
        xs = self._standardize_x(x, "evaluate")
        n = len(xs[0])
        ys = self._standardize_y(self._feed_targets(y, c), n, c, "evaluate")
        sws = self._standardize_sw(sample_weight, n, "evaluate")
        verbose = verbose if strategy.is_primary else 0
        logs, local, n = self._run_shard(strategy, lambda a, b, w: self.evaluate(
            a, b, batch_size=batch_size, verbose=verbose, sample_weight=w,
            callbacks=callbacks, return_dict=True), xs, ys, sws)
        if local == n:
            return logs if return_dict else self._as_values(logs, c)
        # Each rank's means weighted by its rows: the global means (exact for the loss and
        # for sample-mean metrics such as accuracy).
        names = list(logs)
        sums = strategy.reduce_scalars(np.array([logs[k] for k in names]) * local)
        logs = {k: float(v) / n for k, v in zip(names, sums)}
        return logs if return_dict else self._as_values(logs, c)

    def _as_values(self, logs, c):
        values = [logs[k] for k in self._log_names(c)]
        return values[0] if len(values) == 1 else values

    # ------------------------------------------------------------------ asking what trains
    def summary(self, line_length: int = 90, show_trainable: bool = False, print_fn=None):
        """Print a table of layers, output shapes and parameter counts.

        Like ``fit``, it warns (once per change, R4) when the compiled picture is stale.
        """
        from ..utils.summary import print_summary

        if self._compiled is not None:
            self._check_stale(self._compiled)

        return print_summary(self, line_length=line_length, show_trainable=show_trainable,
                             print_fn=print_fn)

    def explain_trainable(self):
        """One row per weight: is it updated by ``fit`` now, after ``compile()``, and why not."""
        from ..utils.explain import explain_trainable

        return explain_trainable(self)


def _is_arrays(x) -> bool:
    return not (_data.is_dataset(x) or _data.is_stream(x))


def _first_array(x):
    """A sample of the input data for building an unbuilt Sequential (None for datasets)."""
    if not _is_arrays(x):
        return None
    if isinstance(x, dict):
        return next(iter(x.values()), None)
    return x


def _check_ids_fit(arr: np.ndarray, dtype: np.dtype, owner: str, i: int) -> None:
    """An integer input's data must fit its dtype (a cast must not wrap ids around)."""
    if not arr.size:
        return
    info = np.iinfo(dtype)
    lo, hi = arr.min(), arr.max()
    if arr.dtype.kind == "f" and not np.isfinite(arr).all() or lo < info.min or hi > info.max:
        raise ValueError(f"{owner}: input {i} is {dtype} (integer ids) but got values in "
                         f"[{lo}, {hi}], which {dtype} cannot hold")


def _as_array(a, owner: str, what: str) -> np.ndarray:
    """An array from what Keras accepts (pandas objects included, without importing pandas)."""
    if hasattr(a, "to_numpy") and not isinstance(a, np.ndarray):
        a = a.to_numpy()
    if isinstance(a, np.ndarray):
        arr = a
    else:
        try:
            arr = np.asarray(a)
        except Exception as exc:
            raise TypeError(f"{owner}: {what} is not array-like ({type(a).__name__}): {exc}") from None
    if arr.dtype.kind == "c":
        raise TypeError(f"{owner}: {what} is complex; the model computes in real numbers")
    if arr.dtype == object:
        raise TypeError(f"{owner}: {what} is not a numeric array (got {type(a).__name__} "
                        f"giving dtype object)")
    return arr


def _with_class_weight(sample_weight, class_weight, ys):
    """Keras's class_weight: each sample weighted by its class's weight."""
    if class_weight is None:
        return sample_weight
    if not isinstance(class_weight, dict):
        raise TypeError(f"class_weight must be a dict {{class: weight}}, got {class_weight!r}")
    y = next(a for a in ys if a is not None)
    labels = y if y.ndim == 1 else (np.argmax(y, axis=-1) if y.shape[-1] > 1 else
                                   np.round(y[..., 0]).astype(np.int64))
    labels = labels.reshape(len(labels), -1)[:, 0]
    cw = np.array([float(class_weight.get(int(k), 1.0)) for k in labels], dtype=np.float64)
    if sample_weight is not None:
        cw = cw * np.asarray(sample_weight, dtype=np.float64).reshape(-1)
    return cw


def _check_batch_size(batch_size, owner: str) -> int:
    if batch_size is None:
        return 32
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer, float)) or \
            not np.isfinite(batch_size) or int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"{owner}: batch_size must be a positive integer, got {batch_size!r}")
    return int(batch_size)


def _check_count(value, what: str, owner: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer, float)) or \
            not np.isfinite(value) or int(value) != value or value < 0:
        raise ValueError(f"{owner}: {what} must be a non-negative integer, got {value!r}")
    return int(value)


def _check_verbose(verbose, owner: str) -> int:
    if verbose == "auto":
        return 1
    if not isinstance(verbose, (int, np.integer)) or verbose not in (0, 1, 2):
        raise ValueError(f"{owner}: verbose must be 0, 1, 2 or 'auto', got {verbose!r}")
    return int(verbose)


def _check_callbacks(callbacks, owner: str) -> list:
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback):
        callbacks = [callbacks]
    callbacks = list(callbacks)
    for cb in callbacks:
        if not isinstance(cb, Callback):
            raise TypeError(f"{owner}: callbacks must be fastlayers.callbacks.Callback "
                            f"instances, got {cb!r}")
    return callbacks


class _Tracker:
    """Running, sample-weighted means of the loss and metrics over an epoch."""

    def __init__(self, model: Model, c: _Compiled):
        self.model = model
        self.metrics = _metric_entries(model, c)  # (output, name, Metric, weighted)
        self.losses = c.losses
        self.n = 0
        self.loss = 0.0
        self.per_output = [0.0] * len(model.outputs)

    def update(self, total, per_output, outs, ys, sws=None, count=None) -> None:
        b = len(outs[0]) if count is None else count
        self.n += b
        self.loss += total * b
        for i, v in enumerate(per_output):
            if i < len(self.per_output):
                self.per_output[i] += v * b
        for i, _, metric, weighted in self.metrics:
            metric.update_state(ys[i], outs[i], _output_weights(sws, i) if weighted else None)

    def reduced_logs(self, strategy) -> Dict[str, float]:
        """The epoch's logs, metrics averaged over ranks (the loss is already global)."""
        logs = self.logs()
        names = [name for _, name, _, _ in self.metrics]
        if names:
            vals = strategy.reduce_scalars(np.array([logs[k] for k in names]), op="mean")
            logs.update(zip(names, (float(v) for v in vals)))
        return logs

    def logs(self) -> Dict[str, float]:
        n = max(1, self.n)
        logs = {"loss": self.loss / n}
        if len(self.per_output) > 1:
            for name, v, l in zip(self.model.output_names, self.per_output, self.losses):
                if l is not None:
                    logs[f"{name}_loss"] = v / n
        for _, name, metric, _ in self.metrics:
            logs[name] = metric.result()
        return logs


# ---------------------------------------------------------------------- weighted_metrics
def _metric_ids_per_output(metrics, names, losses, outputs) -> List[list]:
    """``metrics`` (or ``weighted_metrics``) spread over the outputs: one list for all, a
    list of lists, or a dict by output name; checked by name here, not in ``fit``."""
    if metrics is None:
        ids_list = [[] for _ in names]
    elif isinstance(metrics, dict):
        ids_list = [list(np.atleast_1d(metrics.get(n, []))) for n in names]
    elif isinstance(metrics, (list, tuple)) and len(metrics) == len(names) > 1 and all(
            isinstance(m, (list, tuple)) for m in metrics):
        ids_list = [list(m) for m in metrics]
    else:
        ids_list = [list(metrics) for _ in names]
    # An output without a loss has no targets: no metrics either (Keras 2 skips it).
    ids_list = [ids if l is not None else [] for ids, l in zip(ids_list, losses)]
    for ids, l, t in zip(ids_list, losses, outputs):
        for m in ids:
            _metrics.get(m, l, t.shape)  # unknown names fail here, not in fit
    return ids_list


def _set_weighted_metrics(c: _Compiled, weighted_ids: List[list]) -> None:
    """Record ``compile(weighted_metrics=...)``: per output, the metrics weighted by the
    sample weights (class weights included).  They leave the fast path, as metrics do."""
    c.weighted_metric_ids = weighted_ids
    c.has_metrics = c.has_metrics or any(weighted_ids)


def _metric_entries(model: Model, c: _Compiled) -> list:
    """``(output index, log name, fresh Metric, weighted)`` for every compiled metric, in
    Keras 2.2.4's order: per output, the plain metrics, then the weighted ones.

    Names follow Keras 2.2.4: a weighted metric is always ``weighted_<name>`` (for several
    outputs ``<output>_weighted_<name>``).  tf-keras and Keras 3 add the prefix only when
    the plain name is taken; Keras 2 programs read ``history["weighted_acc"]``, so the
    prefix is kept even without a clash.  Plain metrics ignore the sample weights (Keras).
    """
    entries = []
    weighted_ids = getattr(c, "weighted_metric_ids", None) or [[] for _ in c.metric_ids]
    for i, (ids, wids, loss, t) in enumerate(zip(c.metric_ids, weighted_ids, c.losses,
                                                model.outputs)):
        for m in ids:
            metric = _metrics.get(m, loss, t.shape)
            entries.append((i, model._metric_name(metric.name, i), metric, False))
        for m in wids:
            # A copy: the same Metric object may be compiled both plain and weighted.
            metric = copy.copy(_metrics.get(m, loss, t.shape))
            metric.reset_state()
            entries.append((i, model._metric_name("weighted_" + metric.name, i), metric, True))
    return entries


def _output_weights(sws, i: int):
    """Output ``i``'s sample weights (``None``: every sample counts once)."""
    return None if sws is None or i >= len(sws) else sws[i]


def _batch_metric(metric, y, out, sws, i: int, weighted: bool) -> float:
    """One batch's metric value (``train_on_batch``/``test_on_batch``)."""
    if not weighted:
        return metric.fn(y, out)
    m = copy.copy(metric)
    m.reset_state()
    m.update_state(y, out, _output_weights(sws, i))
    return m.result()
