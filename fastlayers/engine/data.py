"""Data adapters: what ``fit``/``evaluate``/``predict`` receive, as batches per epoch.

Accepted data (Keras's forms):

* arrays -- NumPy arrays, anything with ``__array__`` or ``to_numpy()`` (pandas
  DataFrame/Series), nested Python lists of numbers; a list/tuple or dict of these
  for several inputs or outputs;
* :class:`fastlayers.utils.PyDataset` (``Sequence``) and any object with
  ``__len__``, ``__getitem__`` and ``on_epoch_end`` -- indices ``0 .. len-1`` only;
* Python generators and other iterables of batches ``x``, ``(x,)``, ``(x, y)`` or
  ``(x, y, sample_weight)``.

Every batch comes out as ``(xs, ys, sample_weights)``: ``xs`` a list of arrays (one
per input), ``ys`` a list (one per output) or ``None``, ``sample_weights`` a list
(one per output, entries may be ``None``) or ``None``.  Anything else is refused
with a ``TypeError`` at once -- never handed to ``np.asarray``, which would iterate
a generator or an ``IndexError``-less ``Sequence`` without end.

How ``fit`` uses it::

    data = fit_data(x, y, sample_weight, batch_size, steps_per_epoch, shuffle,
                    class_weight, validation_split, validation_data, validation_steps,
                    validation_batch_size, validation_freq, n_inputs=len(model.inputs),
                    n_outputs=len(model.outputs), input_names=..., output_names=...)
    steps = data.train.num_batches          # None: unknown until the first pass
    for epoch in range(initial_epoch, epochs):
        for step, (xs, ys, sws) in enumerate(data.train.epoch()):
            ...                             # one step; break on model.stop_training
        if data.train.exhausted and no step ran: stop training
        if data.should_validate(epoch):
            for xs, ys, sws in data.validation.epoch(): ...

``evaluate``/``predict`` call :func:`get_data_adapter` (``shuffle=False``; ``steps``).
Arrays come out as given (dtype and all): the model casts/validates each batch.
"""
from __future__ import annotations

import collections.abc
import inspect
import math
import warnings
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from .. import backend
from ..utils import random as _random

Batch = Tuple[List[np.ndarray], Optional[List[np.ndarray]], Optional[List[Optional[np.ndarray]]]]

_RAN_OUT = ("Your input ran out of data; interrupting training. Make sure that your dataset "
            "or generator can generate at least `steps_per_epoch * epochs` batches.")


# ---------------------------------------------------------------------- what is it?
def _is_dataframe_like(x) -> bool:
    return callable(getattr(x, "to_numpy", None)) and not isinstance(x, np.ndarray)


def _is_array_like(x) -> bool:
    """One array: an ndarray, a number, something with __array__ / to_numpy, a list."""
    if isinstance(x, (np.ndarray, np.generic, int, float, bool, complex)):
        return True
    if _is_dataframe_like(x) or hasattr(x, "__array__") or hasattr(x, "__array_interface__"):
        return True
    return isinstance(x, (list, tuple))


def is_dataset(x) -> bool:
    """A ``PyDataset`` or an object with Keras's ``Sequence`` protocol."""
    from ..utils.data_utils import PyDataset

    if isinstance(x, PyDataset):
        return True
    return (not _is_array_like(x) and not isinstance(x, (dict, str, bytes))
            and hasattr(x, "__len__") and hasattr(x, "__getitem__")
            and callable(getattr(x, "on_epoch_end", None)))


def is_stream(x) -> bool:
    """A generator, an iterator, or another iterable that is not array data."""
    if inspect.isgenerator(x) or isinstance(x, collections.abc.Iterator):
        return True
    if isinstance(x, (list, tuple, dict, set, frozenset, str, bytes, np.ndarray)) \
            or _is_array_like(x):
        return False
    return isinstance(x, collections.abc.Iterable) and not is_dataset(x)


def _kind(x) -> str:
    return f"{type(x).__module__}.{type(x).__qualname__}"


# ---------------------------------------------------------------------- arrays
def to_array(a, what: str) -> np.ndarray:
    """One array from array-like data; a clear TypeError for anything else."""
    if isinstance(a, np.ndarray):
        return a
    if _is_dataframe_like(a):
        return np.asarray(a.to_numpy())
    if is_dataset(a) or is_stream(a) or isinstance(a, (dict, str, bytes)) or not _is_array_like(a):
        hint = ""
        if hasattr(a, "__getitem__") and hasattr(a, "__len__"):
            hint = ("; for batches by index, subclass fastlayers.utils.PyDataset (or define "
                    "on_epoch_end)")
        elif is_dataset(a) or is_stream(a):
            hint = "; a dataset or generator must be passed as x itself, not inside a structure"
        raise TypeError(f"{what}: expected an array (NumPy array, list of numbers, pandas "
                        f"DataFrame/Series), got {_kind(a)}{hint}")
    if isinstance(a, (list, tuple)):
        # Refuse generators and datasets nested in a list before NumPy iterates them.
        stack = [a]
        while stack:
            for e in stack.pop():
                if isinstance(e, (list, tuple)):
                    stack.append(e)
                elif not isinstance(e, (np.ndarray, np.generic, int, float, bool, complex)) \
                        and not hasattr(e, "__array__"):
                    raise TypeError(f"{what}: expected numbers in a nested list, found "
                                    f"{_kind(e)}")
    try:
        arr = np.asarray(a)
    except ValueError as exc:  # ragged nested lists
        raise ValueError(f"{what}: cannot make one array of it: {exc}") from None
    if arr.dtype == object:
        raise TypeError(f"{what}: the data is not numeric (NumPy made an object array; "
                        f"ragged lists?)")
    return arr


def _several(x, n: Optional[int]) -> bool:
    """Is a list/tuple ``x`` several arrays (one per input/output) or one array?"""
    if not isinstance(x, (list, tuple)):
        return False
    if len(x) > 0 and all(isinstance(e, np.ndarray) or _is_dataframe_like(e) for e in x):
        return True
    # A list of numbers or of lists is one array, unless the model has several inputs.
    return n is not None and n > 1


def flatten_structure(x, n: Optional[int], names: Optional[Sequence[str]], what: str,
                      optional: bool = False) -> List[Optional[np.ndarray]]:
    """Arrays for ``n`` inputs/outputs from one array, a list/tuple or a dict by name.

    ``optional`` (targets): a dict may leave names out and a list may hold ``None``;
    those entries are ``None`` (outputs compiled without a loss need no targets; the
    model refuses a missing target of an output that has a loss).
    """
    def conv(v, label):
        return None if optional and v is None else to_array(v, label)

    if isinstance(x, dict):
        if names is not None:
            missing = [] if optional else [k for k in names if k not in x]
            unknown = sorted(set(x) - set(names))
            if missing or unknown:
                raise ValueError(f"{what}: dict keys {sorted(x)} do not match the names "
                                 f"{list(names)} (missing {missing}, unknown {unknown})")
            items = [x.get(k) for k in names]
        else:
            items = list(x.values())
        out = [conv(v, f"{what}[{k!r}]") for k, v in zip(names or list(x), items)]
    elif _several(x, n):
        out = [conv(v, f"{what}[{i}]") for i, v in enumerate(x)]
    else:
        out = [to_array(x, what)]
    if n is not None and len(out) != n:
        role = "input" if what.endswith("x") else "output"
        hint = (f"; if they are samples of one {role}, stack them with np.stack"
                if n == 1 and len(out) > 1 else "")
        raise ValueError(f"{what}: expected {n} arrays (one per {role}), got {len(out)}{hint}")
    return out


def _sample_weights(sw, ys: Optional[List[np.ndarray]], n_out: Optional[int],
                    names: Optional[Sequence[str]], what: str) -> Optional[List[Optional[np.ndarray]]]:
    """One weight array (or None) per output; one array for several outputs is shared."""
    if sw is None:
        return None
    k = len(ys) if ys is not None else (n_out or 1)
    if isinstance(sw, dict):
        keys = list(names) if names is not None else list(sw)
        unknown = sorted(set(sw) - set(keys))
        if unknown:
            raise ValueError(f"{what}: unknown outputs {unknown} in sample_weight; "
                             f"outputs are {keys}")
        raw = [sw.get(kk) for kk in keys]
    elif isinstance(sw, (list, tuple)) and (k > 1 or (
            len(sw) == 1 and (sw[0] is None or isinstance(sw[0], np.ndarray)))):
        raw = list(sw)
    else:
        arr = to_array(sw, what)
        if k > 1 and not (arr.ndim == 1 or (arr.ndim == 2 and arr.shape[1] == 1)):
            raise ValueError(f"{what}: for a model with several outputs, a single sample_weight "
                             f"array must have one value per sample, got shape {arr.shape}")
        raw = [arr] * k
    if len(raw) != k:
        raise ValueError(f"{what}: {len(raw)} sample_weight arrays for {k} outputs")
    out: List[Optional[np.ndarray]] = []
    for i, w in enumerate(raw):
        if w is None:
            out.append(None)
            continue
        arr = to_array(w, f"{what}[{i}]")
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"{what}: sample weights must be numeric, got dtype {arr.dtype}")
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim == 0:
            raise ValueError(f"{what}: sample weights need one value per sample, got a scalar")
        out.append(arr.astype(backend.floatx(), copy=False))
    return out


def class_weight_to_sample_weights(y, class_weight: Dict[int, float]) -> np.ndarray:
    """Per-sample weights from a ``{class: weight}`` dict, as Keras computes them.

    Integer labels ``(n,)``/``(n, 1)`` (rounded) index the dict directly; one-hot or
    probability targets ``(n, k)`` use their arg-max.  Missing classes weigh 1.
    """
    y = np.asarray(y)
    if y.ndim > 1:
        y = np.argmax(y, axis=-1) if y.shape[-1] != 1 else y[..., 0]
    if y.ndim != 1:
        raise ValueError(f"class_weight needs one label per sample; targets reduce to shape "
                         f"{y.shape}")
    labels = np.round(y).astype(np.int64)
    table = {int(k): float(v) for k, v in class_weight.items()}
    weights = np.ones(len(labels), dtype=backend.floatx())
    for cls, w in table.items():
        weights[labels == cls] = w
    return weights


def _check_class_weight(class_weight, n_out: Optional[int], what: str) -> None:
    if class_weight is None:
        return
    if not isinstance(class_weight, dict):
        raise TypeError(f"{what}: class_weight must be a dict {{class index: weight}}, got "
                        f"{_kind(class_weight)}")
    if n_out is not None and n_out > 1:
        raise ValueError(f"{what}: `class_weight` is only supported for Models with a single "
                         f"output.")
    for k, v in class_weight.items():
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise TypeError(f"{what}: class_weight keys must be integer class indices, got {k!r}")
        try:
            finite = math.isfinite(float(v))
        except (TypeError, ValueError):
            raise TypeError(f"{what}: class_weight[{k}] must be a number, got {v!r}") from None
        if not finite:
            raise ValueError(f"{what}: class_weight[{k}] must be finite, got {v!r}")


def _check_positive(value, name: str, what: str, allow_none: bool = True) -> Optional[int]:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{what}: {name} must be a positive integer, got {value!r}")
    return int(value)


# ---------------------------------------------------------------------- adapters
class DataAdapter:
    """Batches for one of ``fit``/``evaluate``/``predict``; see :func:`get_data_adapter`.

    ``epoch()`` yields the batches of one epoch (a ``PyDataset``'s ``on_epoch_end``
    runs when they are all served); ``num_batches`` is the number of
    steps per epoch when known (``None`` for a stream without ``steps``);
    ``exhausted`` turns true when a stream ran out of data.
    """

    num_batches: Optional[int] = None
    exhausted: bool = False
    num_samples: Optional[int] = None

    def epoch(self) -> Iterator[Batch]:
        raise NotImplementedError

    def on_epoch_end(self) -> None:
        """Tell the data an epoch is over (``PyDataset.on_epoch_end``)."""


class ArrayAdapter(DataAdapter):
    """In-memory arrays, cut into ``batch_size`` rows; shuffled per epoch."""

    def __init__(self, xs: List[np.ndarray], ys: Optional[List[np.ndarray]],
                 sws: Optional[List[Optional[np.ndarray]]], batch_size: int,
                 steps: Optional[int] = None, shuffle: Union[bool, str] = False):
        self.xs, self.ys, self.sws = xs, ys, sws
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.num_samples = n = len(xs[0])
        full = max(1, math.ceil(n / batch_size))
        self.steps = steps
        self.num_batches = full if steps is None else steps
        self._full = full
        self._pos = 0          # batches served of the current pass (for steps < full)
        self._order = None

    def _new_order(self):
        n = self.num_samples
        if self.shuffle == "batch":
            # Keras's "batch" shuffle: batches keep their rows, rows shuffle within.
            order = np.arange(n)
            rng = _random.generator()
            for lo in range(0, n, self.batch_size):
                hi = min(n, lo + self.batch_size)
                order[lo:hi] = lo + rng.permutation(hi - lo)
            return order
        if self.shuffle:
            return _random.generator().permutation(n)
        return None

    def _take(self, a: Optional[np.ndarray], idx, lo: int, hi: int):
        if a is None:
            return None
        return a[lo:hi] if idx is None else np.take(a, idx, axis=0)

    def _batch(self, i: int) -> Batch:
        lo, hi = i * self.batch_size, min(self.num_samples, (i + 1) * self.batch_size)
        idx = None if self._order is None else self._order[lo:hi]
        xs = [self._take(a, idx, lo, hi) for a in self.xs]
        ys = None if self.ys is None else [self._take(a, idx, lo, hi) for a in self.ys]
        sws = None if self.sws is None else [self._take(a, idx, lo, hi) for a in self.sws]
        return xs, ys, sws

    def epoch(self) -> Iterator[Batch]:
        todo = self.num_batches
        while todo > 0:
            if self._pos == 0:
                self._order = self._new_order()
            yield self._batch(self._pos)
            todo -= 1
            self._pos = (self._pos + 1) % self._full


class _BatchStandardizer:
    """Turns a user batch into ``(xs, ys, sws)``, adding class weights."""

    def __init__(self, n_inputs, n_outputs, input_names, output_names, class_weight, what):
        self.n_inputs, self.n_outputs = n_inputs, n_outputs
        self.input_names, self.output_names = input_names, output_names
        self.class_weight = class_weight
        self.what = what

    def __call__(self, batch, index: int) -> Batch:
        what = f"{self.what}: batch {index}"
        if isinstance(batch, dict) or isinstance(batch, np.ndarray) or _is_dataframe_like(batch):
            batch = (batch,)
        elif isinstance(batch, list):
            batch = tuple(batch)
        if not isinstance(batch, tuple) or len(batch) not in (1, 2, 3):
            raise ValueError(f"{what}: a batch must be x, (x,), (x, y) or (x, y, sample_weight); "
                             f"got {_kind(batch)}"
                             + (f" of length {len(batch)}" if isinstance(batch, tuple) else ""))
        xs = flatten_structure(batch[0], self.n_inputs, self.input_names, f"{what} x")
        ys = sws = None
        if len(batch) >= 2 and batch[1] is not None:
            ys = flatten_structure(batch[1], self.n_outputs, self.output_names, f"{what} y",
                                   optional=True)
        if len(batch) == 3 and batch[2] is not None:
            if self.class_weight is not None:
                raise ValueError(f"{what}: You cannot specify `class_weight` and "
                                 f"`sample_weight` at the same time.")
            sws = _sample_weights(batch[2], ys, self.n_outputs, self.output_names,
                                  f"{what} sample_weight")
        elif self.class_weight is not None and ys is not None:
            sws = [class_weight_to_sample_weights(ys[0], self.class_weight)]
        _check_lengths(xs, ys, sws, what)
        return xs, ys, sws


class DatasetAdapter(DataAdapter):
    """A ``PyDataset``/``Sequence``: indices ``0 .. len-1`` (shuffled if asked)."""

    def __init__(self, dataset, standardize: _BatchStandardizer, steps: Optional[int],
                 shuffle: Union[bool, str]):
        self.dataset = dataset
        self.standardize = standardize
        self.shuffle = bool(shuffle)
        n = getattr(dataset, "num_batches", None) if hasattr(type(dataset), "num_batches") \
            else len(dataset)
        if n is not None:
            n = int(n)
        if n is None and steps is None:
            raise ValueError(f"{standardize.what}: the dataset is endless (num_batches is None); "
                             f"give steps_per_epoch / steps")
        self._len = n
        self.num_batches = steps if steps is not None else n
        self._order: Optional[List[int]] = None
        self._pos = 0

    def epoch(self) -> Iterator[Batch]:
        begin = getattr(self.dataset, "on_epoch_begin", None)
        if callable(begin):
            begin()
        todo = self.num_batches
        while todo > 0:
            if self._len is None:
                i = self._pos
            else:
                if self._pos == 0:
                    order = list(range(self._len))
                    if self.shuffle:
                        order = [int(j) for j in _random.generator().permutation(self._len)]
                    self._order = order
                i = self._order[self._pos]
            yield self.standardize(self.dataset[i], i)
            todo -= 1
            self._pos += 1
            if self._len is not None and self._pos >= self._len:
                self._pos = 0
        # As Keras: the dataset hears of the epoch's end when its batches are done.
        self.on_epoch_end()

    def on_epoch_end(self) -> None:
        end = getattr(self.dataset, "on_epoch_end", None)
        if callable(end):
            end()


class StreamAdapter(DataAdapter):
    """A generator or iterable of batches; with ``steps`` the stream goes on across epochs."""

    def __init__(self, source, standardize: _BatchStandardizer, steps: Optional[int]):
        self.source = source
        self.standardize = standardize
        self.steps = steps
        self.num_batches = steps
        self.one_shot = inspect.isgenerator(source) or isinstance(source, collections.abc.Iterator)
        self._it = None
        self._started = False
        self._index = 0

    def epoch(self) -> Iterator[Batch]:
        if self.steps is None and not self.one_shot:
            self._it = None  # a re-iterable source restarts every epoch
        done = 0
        ran_out = False
        while self.steps is None or done < self.steps:
            if self._it is None:
                if self.one_shot and self._started:
                    ran_out = True  # a generator cannot start again
                    break
                self._it = iter(self.source)
                self._started = True
            try:
                batch = next(self._it)
            except StopIteration:
                self._it = None
                ran_out = self.steps is not None or done == 0
                break
            yield self.standardize(batch, self._index)
            self._index += 1
            done += 1
        if ran_out:
            self.exhausted = True
            warnings.warn(_RAN_OUT, UserWarning, stacklevel=2)
        elif self.steps is None and done:
            self.num_batches = done  # learnt from the first full pass


def _check_lengths(xs, ys, sws, what: str) -> None:
    n = len(xs[0]) if xs[0].ndim else None
    if n is None:
        raise ValueError(f"{what}: x must have a batch axis, got a scalar")
    lengths = [len(a) for a in xs] + [len(a) for a in (ys or []) if a is not None] + \
        [len(a) for a in (sws or []) if a is not None]
    if any(m != n for m in lengths):
        raise ValueError(f"{what}: x, y and sample_weight have different numbers of samples "
                         f"{lengths}")
    if n == 0:
        raise ValueError(f"{what}: got empty data (0 samples)")


def get_data_adapter(x, y=None, sample_weight=None, batch_size: Optional[int] = None,
                     steps: Optional[int] = None, shuffle: Union[bool, str] = False,
                     class_weight: Optional[Dict[int, float]] = None,
                     n_inputs: Optional[int] = None, n_outputs: Optional[int] = None,
                     input_names: Optional[Sequence[str]] = None,
                     output_names: Optional[Sequence[str]] = None,
                     what: str = "fit") -> DataAdapter:
    """The adapter for ``x`` (and ``y``/``sample_weight`` for array data).

    ``batch_size`` defaults to 32 for arrays (``ceil(n / steps)`` when only ``steps``
    is given, as Keras) and must be ``None`` for datasets and generators (their
    batches are already made); ``steps`` is the number of batches per epoch
    (``steps_per_epoch``/``validation_steps``/``steps``; for arrays, later epochs
    continue where the last stopped and wrap around to a new pass);
    ``shuffle`` is ``True``, ``False`` or ``"batch"``.  ``n_inputs``/``n_outputs``
    and the names tell lists and dicts apart from single arrays.
    """
    steps = _check_positive(steps, "steps", what)
    if shuffle not in (True, False, "batch") and not isinstance(shuffle, (bool, np.bool_)):
        raise ValueError(f"{what}: shuffle must be True, False or 'batch', got {shuffle!r}")
    _check_class_weight(class_weight, n_outputs, what)
    if x is None:
        raise ValueError(f"{what}() needs input data x")
    if is_dataset(x) or is_stream(x):
        kind = "a PyDataset" if is_dataset(x) else "a generator/iterable"
        for name, value in (("y", y), ("sample_weight", sample_weight)):
            if value is not None:
                raise ValueError(f"{what}: `{name}` must not be given when x is {kind}; "
                                 f"yield (x, y, sample_weight) batches instead")
        if batch_size is not None:
            raise ValueError(f"{what}: `batch_size` must not be given when x is {kind} "
                             f"(it yields whole batches)")
        std = _BatchStandardizer(n_inputs, n_outputs, input_names, output_names, class_weight,
                                 what)
        if is_dataset(x):
            return DatasetAdapter(x, std, steps, shuffle)
        return StreamAdapter(x, std, steps)
    batch_size = _check_positive(batch_size, "batch_size", what)
    xs = flatten_structure(x, n_inputs, input_names, f"{what}: x")
    ys = None if y is None else flatten_structure(y, n_outputs, output_names, f"{what}: y",
                                                   optional=True)
    sws = _sample_weights(sample_weight, ys, n_outputs, output_names, f"{what}: sample_weight")
    if class_weight is not None:
        if sws is not None:
            raise ValueError(f"{what}: You cannot `class_weight` and `sample_weight` at the "
                             f"same time.")
        if ys is None:
            raise ValueError(f"{what}: class_weight needs targets y")
        if len(ys) > 1:
            raise ValueError(f"{what}: `class_weight` is only supported for Models with a "
                             f"single output.")
        sws = [class_weight_to_sample_weights(ys[0], class_weight)]
    _check_lengths(xs, ys, sws, what)
    if batch_size is None:
        # Keras: with only ``steps`` given, one pass over the data takes ``steps`` batches.
        batch_size = 32 if steps is None else int(math.ceil(len(xs[0]) / steps))
    return ArrayAdapter(xs, ys, sws, batch_size, steps, shuffle)


# ---------------------------------------------------------------------- fit
class FitData:
    """The training adapter and the validation adapter (or ``None``) of one ``fit``."""

    def __init__(self, train: DataAdapter, validation: Optional[DataAdapter],
                 validation_freq: Union[int, Sequence[int]]):
        self.train = train
        self.validation = validation
        self.validation_freq = validation_freq

    def should_validate(self, epoch: int) -> bool:
        """Whether to validate after ``epoch`` (0-based), following ``validation_freq``."""
        return self.validation is not None and should_validate(epoch, self.validation_freq)


def should_validate(epoch: int, validation_freq: Union[int, Sequence[int]] = 1) -> bool:
    """Keras's rule: an int validates every ``validation_freq`` epochs (1-based count),
    a list/tuple/set names the 1-based epochs."""
    if isinstance(validation_freq, bool):
        raise ValueError(f"validation_freq must be an int or a list, got {validation_freq!r}")
    if isinstance(validation_freq, (int, np.integer)):
        if validation_freq < 1:
            raise ValueError(f"validation_freq must be >= 1, got {validation_freq}")
        return (epoch + 1) % int(validation_freq) == 0
    if isinstance(validation_freq, (list, tuple, set, frozenset, range)):
        return (epoch + 1) in validation_freq
    raise ValueError(f"Expected `validation_freq` to be a list or int. Received: "
                     f"validation_freq={validation_freq!r} of the type {type(validation_freq)}.")


def _split_arrays(arrays: Optional[list], split_at: int):
    if arrays is None:
        return None, None
    return ([None if a is None else a[:split_at] for a in arrays],
            [None if a is None else a[split_at:] for a in arrays])


def fit_data(x=None, y=None, sample_weight=None, batch_size: Optional[int] = None,
             steps_per_epoch: Optional[int] = None, shuffle: Union[bool, str] = True,
             class_weight: Optional[Dict[int, float]] = None, validation_split: float = 0.0,
             validation_data=None, validation_steps: Optional[int] = None,
             validation_batch_size: Optional[int] = None,
             validation_freq: Union[int, Sequence[int]] = 1,
             n_inputs: Optional[int] = None, n_outputs: Optional[int] = None,
             input_names: Optional[Sequence[str]] = None,
             output_names: Optional[Sequence[str]] = None, what: str = "fit") -> FitData:
    """Both adapters of ``fit`` from its arguments (Keras's meanings and checks).

    ``validation_split`` takes the last fraction of array data (before shuffling,
    sample weights split alike; class weights apply to the training part only);
    ``validation_data`` is ``(x, y)``, ``(x, y, sample_weight)`` or a dataset/
    generator; ``validation_batch_size`` defaults to ``batch_size``.
    """
    should_validate(0, validation_freq)  # type check now, not after the first epoch
    # Checked here under fit's own names (the adapters call both of them "steps").
    _check_positive(steps_per_epoch, "steps_per_epoch", what)
    _check_positive(validation_steps, "validation_steps", what)
    kw = dict(n_inputs=n_inputs, n_outputs=n_outputs, input_names=input_names,
              output_names=output_names)
    if isinstance(validation_split, bool) or not 0.0 <= float(validation_split) < 1.0:
        raise ValueError(f"{what}: validation_split must be in [0, 1), got {validation_split!r}")
    if validation_split and validation_data is None:
        if is_dataset(x) or is_stream(x):
            raise ValueError(f"{what}: `validation_split` is only supported for array data; "
                             f"pass validation_data for a {_kind(x)}")
        xs = flatten_structure(x, n_inputs, input_names, f"{what}: x")
        ys = None if y is None else flatten_structure(y, n_outputs, output_names, f"{what}: y",
                                                   optional=True)
        sws = _sample_weights(sample_weight, ys, n_outputs, output_names,
                              f"{what}: sample_weight")
        _check_lengths(xs, ys, sws, f"{what}")
        n = len(xs[0])
        split_at = int(math.floor(n * (1.0 - float(validation_split))))
        if split_at == 0 or split_at == n:
            raise ValueError(f"{what}: training data contains {n} samples, which is not "
                             f"sufficient to split it into a validation and training set as "
                             f"specified by `validation_split={validation_split}`.")
        (tx, vx), (ty, vy), (tw, vw) = (_split_arrays(xs, split_at), _split_arrays(ys, split_at),
                                        _split_arrays(sws, split_at))
        train = get_data_adapter(tx, ty, tw, batch_size, steps_per_epoch, shuffle,
                                 class_weight, what=what, **_as_lists(kw, tx, ty))
        val = get_data_adapter(vx, vy, vw, validation_batch_size or batch_size,
                               validation_steps, False, what=f"{what}: validation", 
                               **_as_lists(kw, vx, vy))
        return FitData(train, val, validation_freq)
    train = get_data_adapter(x, y, sample_weight, batch_size, steps_per_epoch, shuffle,
                             class_weight, what=what, **kw)
    val = None
    if validation_data is not None:
        vwhat = f"{what}: validation_data"
        if is_dataset(validation_data) or is_stream(validation_data):
            val = get_data_adapter(validation_data, batch_size=validation_batch_size,
                                   steps=validation_steps, what=vwhat, **kw)
        else:
            if not isinstance(validation_data, (list, tuple)) or len(validation_data) not in (2, 3):
                raise ValueError(f"{vwhat} must be a tuple (x_val, y_val) or (x_val, y_val, "
                                 f"val_sample_weight), or a dataset/generator; got "
                                 f"{_kind(validation_data)}"
                                 + (f" of length {len(validation_data)}"
                                    if isinstance(validation_data, (list, tuple)) else ""))
            vx, vy = validation_data[0], validation_data[1]
            vw = validation_data[2] if len(validation_data) == 3 else None
            vbs = validation_batch_size if validation_batch_size is not None else batch_size
            val = get_data_adapter(vx, vy, vw, vbs, validation_steps, False, what=vwhat, **kw)
    return FitData(train, val, validation_freq)


def _as_lists(kw: dict, xs, ys) -> dict:
    # After splitting, the data are lists of arrays already: say so explicitly.
    out = dict(kw)
    out["n_inputs"] = len(xs)
    out["n_outputs"] = None if ys is None else len(ys)
    out["input_names"] = None
    out["output_names"] = None
    return out
