"""compile(weighted_metrics=...): Keras 2.2.4's names (``weighted_<name>``), each sample's
value weighted by its sample (or class) weight over the epoch, ``sum(v * w) / sum(w)``, the
same in evaluate, test_on_batch, train_on_batch and fit's validation; plain metrics ignore
the weights.  The expected numbers were checked against Keras 3 (jax backend)."""
import numpy as np
import pytest

import fastlayers as fl
from fastlayers.layers import Dense, Input
from fastlayers.models import Model

# Every prediction is 3 (ones @ ones, no bias); the targets 0..3 give |errors| 3, 2, 1, 0.
XS = np.ones((4, 3), "float32")
Y = np.arange(4, dtype="float32").reshape(4, 1)
SW = np.array([2.0, 0.0, 0.0, 1.0])
WEIGHTED_MAE = (3 * 2 + 0 * 1) / 3  # 2.0: Keras 3 gives it for any batch size
PLAIN_MAE = 1.5


def fixed_model(metrics=("mae",), weighted=("mae",)):
    x = Input((3,))
    m = Model(x, Dense(1, kernel_initializer="ones", use_bias=False)(x))
    # learning_rate 0: fit's weights (and so every value) stay put.
    m.compile(fl.optimizers.SGD(learning_rate=0.0), "mse", metrics=list(metrics),
              weighted_metrics=list(weighted))
    return m


def two_outputs():
    x = Input((3,), name="x")
    return Model(x, [Dense(1, kernel_initializer="ones", use_bias=False, name="a")(x),
                     Dense(1, kernel_initializer="ones", use_bias=False, name="b")(x)])


def test_names_follow_keras_2_2_4_with_and_without_a_clash():
    assert fixed_model().metrics_names == ["loss", "mae", "weighted_mae"]
    assert fixed_model(metrics=()).metrics_names == ["loss", "weighted_mae"]
    assert fixed_model(metrics=("mse",), weighted=("mae", "acc")).metrics_names == \
        ["loss", "mse", "weighted_mae", "weighted_acc"]


def test_several_outputs_name_them_output_weighted_name():
    m = two_outputs()
    m.compile("sgd", "mse", metrics=["mae"], weighted_metrics=["mae"])
    assert m.metrics_names == ["loss", "a_loss", "b_loss", "a_mae", "a_weighted_mae",
                               "b_mae", "b_weighted_mae"]


@pytest.mark.parametrize("batch_size", [1, 2, 3, 4])
def test_evaluate_is_the_weighted_mean_over_the_epoch(batch_size):
    got = fixed_model().evaluate(XS, Y, sample_weight=SW, batch_size=batch_size, verbose=0,
                                 return_dict=True)
    assert got["mae"] == pytest.approx(PLAIN_MAE)  # plain metrics ignore sample weights
    assert got["weighted_mae"] == pytest.approx(WEIGHTED_MAE)


def test_without_sample_weights_weighted_equals_plain():
    got = fixed_model().evaluate(XS, Y, batch_size=3, verbose=0, return_dict=True)
    assert got["weighted_mae"] == pytest.approx(got["mae"]) == pytest.approx(PLAIN_MAE)


def test_list_return_value_is_in_metrics_names_order():
    m = fixed_model()
    loss, mae, wmae = m.evaluate(XS, Y, sample_weight=SW, verbose=0)
    assert (mae, wmae) == pytest.approx((PLAIN_MAE, WEIGHTED_MAE))


def test_test_on_batch_and_train_on_batch_agree_with_evaluate():
    m = fixed_model()
    assert m.test_on_batch(XS, Y, sample_weight=SW, return_dict=True)["weighted_mae"] == \
        pytest.approx(WEIGHTED_MAE)
    _, mae, wmae = m.train_on_batch(XS, Y, sample_weight=SW)
    assert (mae, wmae) == pytest.approx((PLAIN_MAE, WEIGHTED_MAE))


def test_fit_logs_weighted_metrics_for_training_and_3_tuple_validation():
    m = fixed_model()
    h = m.fit(XS, Y, sample_weight=SW, batch_size=2, epochs=2, verbose=0,
              validation_data=(XS, Y, SW))
    for key in ("weighted_mae", "val_weighted_mae"):
        assert h.history[key] == pytest.approx([WEIGHTED_MAE] * 2)
    for key in ("mae", "val_mae"):
        assert h.history[key] == pytest.approx([PLAIN_MAE] * 2)
    # A 2-tuple: no validation weights, the weighted value is the plain one.
    h = m.fit(XS, Y, sample_weight=SW, batch_size=2, verbose=0, validation_data=(XS, Y))
    assert h.history["val_weighted_mae"] == pytest.approx([PLAIN_MAE])


def test_class_weight_weights_them_too():
    cw = {0: 2.0, 1: 0.0, 2: 0.0, 3: 1.0}  # the labels 0..3 get SW's weights
    m = fixed_model()
    h = m.fit(XS, Y, class_weight=cw, batch_size=3, verbose=0)
    assert h.history["weighted_mae"] == pytest.approx([WEIGHTED_MAE])
    assert h.history["mae"] == pytest.approx([PLAIN_MAE])
    _, mae, wmae = m.train_on_batch(XS, Y, class_weight=cw)
    assert (mae, wmae) == pytest.approx((PLAIN_MAE, WEIGHTED_MAE))


def test_zero_total_weight_gives_zero_as_keras_mean():
    got = fixed_model().evaluate(XS, Y, sample_weight=np.zeros(4), verbose=0,
                                 return_dict=True)
    assert got["weighted_mae"] == 0.0


def test_accuracy_is_weighted_per_sample():
    x = Input((2,))
    m = Model(x, Dense(2, activation="softmax", use_bias=False)(x))
    m.set_weights([np.eye(2, dtype="float32")])  # predicts the class of the hot input
    m.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"],
              weighted_metrics=["accuracy"])
    xs = np.array([[1, 0], [0, 1], [1, 0], [0, 1]], "float32")
    labels = np.array([0, 1, 1, 0])  # the first two right, the last two wrong
    got = m.evaluate(xs, labels, sample_weight=np.array([3.0, 1.0, 1.0, 1.0]), verbose=0,
                     return_dict=True)
    assert got["accuracy"] == pytest.approx(0.5)
    assert got["weighted_accuracy"] == pytest.approx(4 / 6)


def test_per_output_sample_weights_weight_only_their_output():
    m = two_outputs()
    m.compile("sgd", "mse", weighted_metrics=["mae"])
    got = m.evaluate(XS, [Y, Y], sample_weight={"a": SW}, verbose=0, return_dict=True)
    assert got["a_weighted_mae"] == pytest.approx(WEIGHTED_MAE)
    assert got["b_weighted_mae"] == pytest.approx(PLAIN_MAE)


def test_one_metric_object_compiled_plain_and_weighted_keeps_two_values():
    mae = fl.metrics.get("mae")
    got = fixed_model(metrics=(mae,), weighted=(mae,)).evaluate(
        XS, Y, sample_weight=SW, batch_size=2, verbose=0, return_dict=True)
    assert (got["mae"], got["weighted_mae"]) == pytest.approx((PLAIN_MAE, WEIGHTED_MAE))


def test_user_functions_per_sample_or_per_batch():
    def abs_err(y_true, y_pred):  # Keras's convention: one value per sample
        return np.abs(y_pred - y_true).mean(axis=-1)

    def batch_abs_err(y_true, y_pred):  # only the batch's value: weighted by batch weight
        return float(np.abs(y_pred - y_true).mean())

    m = fixed_model(metrics=(), weighted=(abs_err, batch_abs_err))
    got = m.evaluate(XS, Y, sample_weight=SW, batch_size=2, verbose=0, return_dict=True)
    assert got["weighted_abs_err"] == pytest.approx(WEIGHTED_MAE)
    # Batches [3, 2] (weight 2) and [1, 0] (weight 1): (2.5 * 2 + 0.5 * 1) / 3.
    assert got["weighted_batch_abs_err"] == pytest.approx(5.5 / 3)


def test_unknown_weighted_metric_fails_in_compile():
    x = Input((3,))
    m = Model(x, Dense(1)(x))
    with pytest.raises(ValueError, match="Unknown metric 'maee'"):
        m.compile("sgd", "mse", weighted_metrics=["maee"])


@pytest.mark.parametrize("fmt", ["fastlayers", "keras"])
def test_weighted_metrics_survive_save_and_load(tmp_path, fmt):
    if fmt == "keras":
        pytest.importorskip("h5py")  # Keras files keep their weights in HDF5
    m = fixed_model()
    m.save(tmp_path / "m.keras", format=fmt)
    loaded = fl.models.load_model(tmp_path / "m.keras")
    assert loaded.metrics_names == ["loss", "mae", "weighted_mae"]
    got = loaded.evaluate(XS, Y, sample_weight=SW, verbose=0, return_dict=True)
    assert (got["mae"], got["weighted_mae"]) == pytest.approx((PLAIN_MAE, WEIGHTED_MAE))
