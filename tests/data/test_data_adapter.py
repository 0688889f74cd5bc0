"""fastlayers.engine.data: every accepted form of data, as (xs, ys, sample_weights)
batches, against Keras's rules (shapes, steps, shuffling, weights, validation)."""
import itertools

import numpy as np
import pytest

import fastlayers as fl
from fastlayers.engine.data import (class_weight_to_sample_weights, fit_data, get_data_adapter,
                                    should_validate)


def rows(n=10, d=3):
    return np.arange(n * d, dtype="float32").reshape(n, d)


def collect(adapter):
    return list(adapter.epoch())


# ---------------------------------------------------------------------- arrays
def test_arrays_cut_into_batches_in_order():
    x, y = rows(10), np.arange(10)
    batches = collect(get_data_adapter(x, y, batch_size=4))
    assert [len(b[0][0]) for b in batches] == [4, 4, 2]
    xs, ys, sws = batches[2]
    np.testing.assert_array_equal(xs[0], x[8:]) and np.testing.assert_array_equal(ys[0], y[8:])
    assert sws is None


def test_default_batch_size_32_and_num_batches():
    a = get_data_adapter(rows(70), np.zeros(70))
    assert a.num_batches == 3 and a.num_samples == 70


def test_predict_form_has_no_targets():
    (xs, ys, sws), = collect(get_data_adapter(rows(5), batch_size=8))
    assert ys is None and sws is None and xs[0].shape == (5, 3)


def test_several_inputs_and_outputs_as_lists_and_dicts():
    a, b = rows(6, 2), rows(6, 4)
    batches = collect(get_data_adapter([a, b], {"o2": np.ones(6), "o1": np.zeros(6)},
                                       batch_size=6, n_inputs=2, n_outputs=2,
                                       output_names=["o1", "o2"]))
    (xs, ys, _), = batches
    assert [x.shape for x in xs] == [(6, 2), (6, 4)]
    np.testing.assert_array_equal(ys[0], 0) and np.testing.assert_array_equal(ys[1], 1)
    (xs, _, _), = collect(get_data_adapter({"b": b, "a": a}, batch_size=6,
                                           input_names=["a", "b"]))
    assert xs[0].shape == (6, 2)
    with pytest.raises(ValueError, match="missing"):
        get_data_adapter({"a": a}, input_names=["a", "b"])


def test_nested_python_lists_are_one_array():
    (xs, ys, _), = collect(get_data_adapter([[1, 2], [3, 4]], [0, 1], n_inputs=1))
    assert xs[0].shape == (2, 2) and ys[0].shape == (2,)
    with pytest.raises(ValueError, match="expected 1 arrays"):
        get_data_adapter([rows(4), rows(4)], n_inputs=1)


class FakeFrame:
    """What pandas offers: to_numpy(), and no __array__ needed."""

    def __init__(self, a):
        self._a = a
        self.columns = list(range(a.shape[1])) if a.ndim > 1 else None

    def to_numpy(self):
        return self._a

    def __len__(self):
        return len(self._a)

    def __getitem__(self, key):  # column access, as DataFrame.__getitem__
        raise KeyError(key)


def test_dataframe_and_series_through_to_numpy():
    (xs, ys, _), = collect(get_data_adapter(FakeFrame(rows(4)), FakeFrame(np.arange(4)),
                                            batch_size=4))
    np.testing.assert_array_equal(xs[0], rows(4)) and np.testing.assert_array_equal(ys[0],
                                                                                      np.arange(4))


def test_length_mismatch_and_empty():
    with pytest.raises(ValueError, match="different numbers of samples"):
        get_data_adapter(rows(5), np.zeros(4))
    with pytest.raises(ValueError, match="0 samples"):
        get_data_adapter(np.zeros((0, 3)), np.zeros(0))


@pytest.mark.parametrize("bad", [object(), "text", {1, 2}, 3 + 0j if False else None])
def test_not_data_is_a_type_error_at_once(bad):
    if bad is None:
        with pytest.raises(ValueError, match="needs input data"):
            get_data_adapter(bad)
        return
    with pytest.raises(TypeError):
        get_data_adapter(bad)


class NoIndexErrorSequence:
    """Keras's docs' Sequence shape without the base class: __getitem__ never raises."""

    def __len__(self):
        return 3

    def __getitem__(self, i):
        return np.zeros((2, 3)), np.zeros(2)


def test_index_only_object_is_refused_not_iterated_forever():
    with pytest.raises(TypeError, match="PyDataset"):
        get_data_adapter(NoIndexErrorSequence())
    with pytest.raises(TypeError, match="nested list"):
        get_data_adapter([itertools.count()])


def test_shuffle_reproducible_under_set_random_seed():
    x, y = rows(20, 1), np.arange(20)

    def order():
        fl.utils.set_random_seed(5)
        a = get_data_adapter(x, y, batch_size=6, shuffle=True)
        return [np.concatenate([b[1][0] for b in collect(a)]) for _ in range(2)]

    e1, e2 = order()
    assert sorted(e1) == list(range(20)) and not np.array_equal(e1, np.arange(20))
    assert not np.array_equal(e1, e2)  # a new order every epoch
    f1, f2 = order()
    np.testing.assert_array_equal(e1, f1) and np.testing.assert_array_equal(e2, f2)


def test_shuffle_batch_keeps_batches_shuffles_within():
    fl.utils.set_random_seed(1)
    batches = collect(get_data_adapter(rows(10, 1), np.arange(10), batch_size=4,
                                       shuffle="batch"))
    got = [sorted(b[1][0].tolist()) for b in batches]
    assert got == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert any(b[1][0].tolist() != sorted(b[1][0].tolist()) for b in batches)
    with pytest.raises(ValueError, match="shuffle"):
        get_data_adapter(rows(4), shuffle="rows")


def test_steps_fewer_than_a_pass_continue_next_epoch():
    a = get_data_adapter(rows(10, 1), np.arange(10), batch_size=3, steps=2)
    e1 = [b[1][0].tolist() for b in collect(a)]
    e2 = [b[1][0].tolist() for b in collect(a)]
    assert e1 == [[0, 1, 2], [3, 4, 5]] and e2 == [[6, 7, 8], [9]]
    assert a.num_batches == 2
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        get_data_adapter(rows(4), steps=0)


def test_steps_without_batch_size_sets_it_as_keras():
    a = get_data_adapter(rows(10, 1), np.arange(10), steps=3)  # ceil(10 / 3) = 4 rows
    assert a.batch_size == 4 and [len(b[0][0]) for b in collect(a)] == [4, 4, 2]


# ---------------------------------------------------------------------- weights
def test_sample_weight_follows_the_shuffle():
    fl.utils.set_random_seed(2)
    y = np.arange(12)
    a = get_data_adapter(rows(12, 1), y, sample_weight=y * 10.0, batch_size=5, shuffle=True)
    for xs, ys, sws in collect(a):
        np.testing.assert_array_equal(sws[0], ys[0] * 10.0)
        assert sws[0].dtype == np.float32


def test_sample_weight_column_and_shared_over_outputs():
    (_, _, sws), = collect(get_data_adapter(rows(4), [np.zeros(4), np.ones(4)],
                                            sample_weight=np.arange(4.0).reshape(4, 1),
                                            n_outputs=2))
    assert len(sws) == 2 and sws[0].shape == (4,)
    np.testing.assert_array_equal(sws[0], sws[1])
    with pytest.raises(ValueError, match="one value per sample"):
        get_data_adapter(rows(4), [np.zeros(4), np.ones(4)], sample_weight=np.ones((4, 2)),
                         n_outputs=2)


def test_class_weight_from_integer_labels_like_keras():
    y = np.array([0, 2, 1, 2, 0])
    w = class_weight_to_sample_weights(y, {0: 1.0, 2: 3.0})  # class 1 missing: weight 1
    np.testing.assert_array_equal(w, [1.0, 3.0, 1.0, 3.0, 1.0])
    np.testing.assert_array_equal(class_weight_to_sample_weights(y.reshape(-1, 1) + 0.2,
                                                                 {2: 5.0}), [1, 5, 1, 5, 1])


def test_class_weight_from_one_hot_and_binary_targets():
    onehot = fl.utils.to_categorical([1, 0, 2], 3)
    np.testing.assert_array_equal(class_weight_to_sample_weights(onehot, {0: 2.0, 1: 4.0, 2: 8.0}),
                                  [4.0, 2.0, 8.0])
    binary = np.array([[0.0], [1.0], [1.0]])
    np.testing.assert_array_equal(class_weight_to_sample_weights(binary, {0: 1.0, 1: 9.0}),
                                  [1.0, 9.0, 9.0])


def test_class_weight_in_batches_and_its_rules():
    y = np.array([0, 1, 1, 0, 1])
    (_, _, sws), = collect(get_data_adapter(rows(5), y, class_weight={1: 2.0}, batch_size=5))
    np.testing.assert_array_equal(sws[0], [1, 2, 2, 1, 2])
    with pytest.raises(ValueError, match="at the same time"):
        get_data_adapter(rows(5), y, sample_weight=np.ones(5), class_weight={1: 2.0})
    with pytest.raises(ValueError, match="single output"):
        get_data_adapter(rows(5), [y, y], class_weight={1: 2.0}, n_outputs=2)
    with pytest.raises(TypeError, match="dict"):
        get_data_adapter(rows(5), y, class_weight=[1.0, 2.0])


# ---------------------------------------------------------------------- generators
def gen(n_batches, size=4, weights=False):
    for i in range(n_batches):
        x = np.full((size, 3), float(i), "float32")
        y = np.full((size,), float(i), "float32")
        yield (x, y, np.full(size, i + 1.0)) if weights else (x, y)


def test_generator_batches_and_their_third_element():
    a = get_data_adapter(gen(3, weights=True))
    batches = collect(a)
    assert len(batches) == 3 and a.num_batches == 3
    xs, ys, sws = batches[1]
    assert xs[0].shape == (4, 3) and ys[0][0] == 1.0 and sws[0][0] == 2.0


def test_generator_forms_x_only_and_one_tuple():
    def g():
        yield np.zeros((2, 3))
        yield (np.ones((2, 3)),)
        yield [np.ones((2, 3)), np.zeros(2)]  # a list is (x, y), as Keras

    b = collect(get_data_adapter(g()))
    assert b[0][1] is None and b[1][1] is None and b[2][1][0].shape == (2,)


def test_bad_batches_are_named():
    def g():
        yield (np.zeros((2, 3)),) * 4

    with pytest.raises(ValueError, match="batch 0"):
        collect(get_data_adapter(g()))

    def h():
        yield "nonsense"

    with pytest.raises(ValueError, match="batch 0"):
        collect(get_data_adapter(h()))


def test_generator_with_steps_goes_on_across_epochs_then_runs_out():
    a = get_data_adapter(gen(5), steps=2)
    assert [b[1][0][0] for b in collect(a)] == [0, 1]
    assert [b[1][0][0] for b in collect(a)] == [2, 3]
    with pytest.warns(UserWarning, match="ran out of data"):
        assert [b[1][0][0] for b in collect(a)] == [4]
    assert a.exhausted


def test_one_pass_generator_warns_on_the_second_epoch():
    a = get_data_adapter(gen(2))
    assert len(collect(a)) == 2 and not a.exhausted
    with pytest.warns(UserWarning, match="ran out"):
        assert collect(a) == []
    assert a.exhausted


def test_reiterable_iterable_restarts_each_epoch():
    class Batches:
        def __iter__(self):
            return gen(2)

    a = get_data_adapter(Batches())
    assert len(collect(a)) == 2 and len(collect(a)) == 2 and not a.exhausted


def test_generator_rejects_y_and_batch_size():
    with pytest.raises(ValueError, match="`y` must not be given"):
        get_data_adapter(gen(1), np.zeros(4))
    with pytest.raises(ValueError, match="batch_size"):
        get_data_adapter(gen(1), batch_size=4)


def test_class_weight_per_generator_batch():
    (_, _, sws), = collect(get_data_adapter(gen(1), class_weight={0: 3.0}))
    np.testing.assert_array_equal(sws[0], [3.0] * 4)

    def weighted():
        yield np.zeros((2, 3)), np.zeros(2), np.ones(2)

    with pytest.raises(ValueError, match="at the same time"):
        collect(get_data_adapter(weighted(), class_weight={0: 3.0}))


# ---------------------------------------------------------------------- PyDataset
class Squares(fl.utils.PyDataset):
    """Keras docs' shape: no IndexError past the end, on_epoch_end counts epochs."""

    def __init__(self, n_batches=3, **kw):
        super().__init__(**kw)
        self.n = n_batches
        self.asked = []
        self.epochs_ended = 0

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        self.asked.append(i)
        x = np.full((2, 3), float(i), "float32")
        return x, np.full(2, float(i) ** 2, "float32")

    def on_epoch_end(self):
        self.epochs_ended += 1


def test_pydataset_follows_len_and_calls_on_epoch_end():
    ds = Squares()
    a = get_data_adapter(ds)
    assert a.num_batches == 3
    assert [b[1][0][0] for b in collect(a)] == [0, 1, 4]
    assert ds.asked == [0, 1, 2] and ds.epochs_ended == 1
    assert [b[1][0][0] for b in collect(a)] == [0, 1, 4] and ds.epochs_ended == 2
    assert len(list(ds)) == 3  # plain iteration also stops at len()
    assert fl.utils.Sequence is fl.utils.PyDataset


def test_pydataset_shuffled_order_is_reproducible():
    def order():
        fl.utils.set_random_seed(11)
        ds = Squares(8)
        collect(get_data_adapter(ds, shuffle=True))
        return ds.asked

    o = order()
    assert sorted(o) == list(range(8)) and o != list(range(8)) and o == order()


def test_pydataset_with_steps_and_duck_typed_sequence():
    ds = Squares(3)
    a = get_data_adapter(ds, steps=2)
    collect(a), collect(a)
    assert ds.asked == [0, 1, 2, 0]

    class Duck(NoIndexErrorSequence):
        def on_epoch_end(self):
            pass

    assert len(collect(get_data_adapter(Duck()))) == 3


def test_endless_pydataset_needs_steps():
    class Endless(Squares):
        @property
        def num_batches(self):
            return None

    with pytest.raises(ValueError, match="endless"):
        get_data_adapter(Endless())
    ds = Endless()
    assert len(collect(get_data_adapter(ds, steps=5))) == 5 and ds.asked == [0, 1, 2, 3, 4]


# ---------------------------------------------------------------------- fit's data
def test_validation_split_takes_the_last_part_before_shuffling():
    x, y, w = rows(10, 1), np.arange(10), np.arange(10) * 2.0
    fd = fit_data(x, y, sample_weight=w, batch_size=4, shuffle=True, validation_split=0.2)
    train = np.concatenate([b[1][0] for b in collect(fd.train)])
    (vx, vy, vw), = collect(fd.validation)
    assert sorted(train.tolist()) == list(range(8))  # floor(10 * 0.8) = 8
    assert vy[0].tolist() == [8, 9] and vw[0].tolist() == [16.0, 18.0]
    with pytest.raises(ValueError, match="not sufficient"):
        fit_data(rows(1), np.zeros(1), validation_split=0.1)
    with pytest.raises(ValueError, match="only supported for array"):
        fit_data(gen(2), validation_split=0.5)


def test_validation_split_class_weight_only_on_training():
    y = np.array([0, 1] * 5)
    fd = fit_data(rows(10), y, class_weight={1: 4.0}, validation_split=0.2, shuffle=False)
    (_, ty, tw), = collect(fd.train)
    (_, _, vw), = collect(fd.validation)
    np.testing.assert_array_equal(tw[0], np.where(ty[0] == 1, 4.0, 1.0))
    assert vw is None


def test_validation_data_keeps_its_third_element_and_batch_size():
    fd = fit_data(rows(10), np.zeros(10), batch_size=4,
                  validation_data=(rows(6), np.ones(6), np.arange(6.0)),
                  validation_batch_size=5)
    vb = collect(fd.validation)
    assert [len(b[0][0]) for b in vb] == [5, 1]
    np.testing.assert_array_equal(np.concatenate([b[2][0] for b in vb]), np.arange(6.0))
    fd = fit_data(rows(10), np.zeros(10), batch_size=4, validation_data=[rows(6), np.ones(6)])
    assert [len(b[0][0]) for b in collect(fd.validation)] == [4, 2]


def test_validation_data_as_generator_with_steps():
    fd = fit_data(rows(8), np.zeros(8), validation_data=gen(10), validation_steps=3)
    assert len(collect(fd.validation)) == 3 and fd.validation.num_batches == 3
    assert len(collect(fd.validation)) == 3


def test_bad_validation_data():
    with pytest.raises(ValueError, match="validation_data must be a tuple"):
        fit_data(rows(4), np.zeros(4), validation_data=(rows(4),))
    with pytest.raises(TypeError):
        fit_data(rows(4), np.zeros(4), validation_data=(object(), np.zeros(4)))


def test_validation_freq():
    assert [should_validate(e, 1) for e in range(3)] == [True] * 3
    assert [should_validate(e, 2) for e in range(4)] == [False, True, False, True]
    assert [should_validate(e, [1, 3]) for e in range(4)] == [True, False, True, False]
    with pytest.raises(ValueError, match="list or int"):
        fit_data(rows(4), np.zeros(4), validation_freq="often")
    fd = fit_data(rows(4), np.zeros(4), validation_data=(rows(2), np.zeros(2)),
                  validation_freq=2)
    assert not fd.should_validate(0) and fd.should_validate(1)
    assert not fit_data(rows(4), np.zeros(4)).should_validate(1)


def test_fit_data_with_a_pydataset_and_generator_validation():
    fd = fit_data(Squares(4), validation_data=Squares(2), shuffle=False)
    assert fd.train.num_batches == 4 and len(collect(fd.validation)) == 2
