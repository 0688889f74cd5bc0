"""fastlayers.ops rejects bad input with errors that name the function and argument."""
import numpy as np
import pytest

from fastlayers import ops
from fastlayers._codes import HYPER_LEN, OPT_ADAM, OPT_MOMENTUM, OPT_SGD

f32, f64 = np.float32, np.float64
HYPER = np.zeros(HYPER_LEN)


def arr(*shape, dtype=f32):
    return np.ones(shape, dtype)


def test_backend_name():
    assert ops.BACKEND == "cython"


@pytest.mark.parametrize("call, message", [
    (lambda: ops.dense_forward(arr(2, 3), arr(3, 4, dtype=f64)),
     "dense_forward: W has dtype float64 but X has float32"),
    (lambda: ops.dense_forward(arr(2, 3), arr(3, 4), arr(4, dtype=f64)),
     "dense_forward: b has dtype float64 but X has float32"),
    (lambda: ops.dense_forward(arr(2, 3, dtype=np.int64), arr(3, 4)),
     "dense_forward: X has dtype int64; expected float32 or float64"),
    (lambda: ops.dense_backward(arr(2, 3), arr(3, 4), None, arr(2, 4, dtype=f64)),
     "dense_backward: W has dtype float32 but dY has float64"),
    (lambda: ops.dense_forward(arr(2, 3), arr(3, 4), out=arr(2, 4, dtype=f64)),
     "dense_forward: out has dtype float64 but X has float32"),
    (lambda: ops.activation_forward(arr(2, 3, dtype=np.float16), "relu"),
     "activation_forward: X has dtype float16"),
    (lambda: ops.batchnorm_forward_train(arr(2, 3), arr(3, dtype=f64), None, 1e-3),
     "batchnorm_forward_train: gamma has dtype float64 but X has float32"),
    (lambda: ops.mse(arr(2, 3), arr(2, 3, dtype=f64)),
     "mse: y_true has dtype float64 but y_pred has float32"),
    (lambda: ops.optimizer_update(OPT_SGD, HYPER, [arr(3), arr(2, dtype=f64)],
                                  [arr(3), arr(2, dtype=f64)], []),
     r"optimizer_update: params\[1\] has dtype float64 but params\[0\] has float32"),
    (lambda: ops.optimizer_update(OPT_ADAM, HYPER, [arr(3)], [arr(3, dtype=f64)],
                                  [[arr(3)], [arr(3)]]),
     r"optimizer_update: grads\[0\] has dtype float64"),
    (lambda: ops.dropout_forward(arr(3), 0.5, 0, 0, mask=arr(3)),
     "dropout_forward: mask must be a uint8"),
])
def test_dtype_errors_are_type_errors(call, message):
    with pytest.raises(TypeError, match=message):
        call()


@pytest.mark.parametrize("call, message", [
    (lambda: ops.dense_forward(arr(2, 3), arr(4, 5)), "dense_forward: X has 3 features"),
    (lambda: ops.dense_forward(arr(3), arr(3, 4)), "dense_forward: X must have at least 2"),
    (lambda: ops.dense_forward(arr(2, 3), arr(3, 4), arr(5)), "dense_forward: b has shape"),
    (lambda: ops.dense_forward(arr(2, 3), arr(3, 4), out=arr(2, 5)),
     "dense_forward: out has shape"),
    (lambda: ops.dense_forward(arr(2, 3), arr(3, 4), out=arr(4, 2).T),
     "dense_forward: out must be C-contiguous"),
    (lambda: ops.dense_backward(arr(2, 3), arr(3, 4), arr(2, 4), arr(2, 5), "relu"),
     "dense_backward: dY has 5 units"),
    (lambda: ops.dense_backward(None, arr(3, 4), None, arr(2, 4)),
     "dense_backward: X is required to compute dW"),
    (lambda: ops.dense_backward(arr(2, 3), arr(3, 4), None, arr(2, 4), "tanh"),
     "dense_backward: Y is required"),
    (lambda: ops.dense_backward(arr(2, 3), arr(3, 4), None, arr(2, 4), accumulate=True),
     "dense_backward: accumulate=True needs"),
    (lambda: ops.dense_backward(arr(2, 3), arr(3, 4), None, arr(2, 4), want_dX=False,
                                dX=arr(2, 3)), "want_dX is False"),
    (lambda: ops.activation_backward(arr(2, 3), arr(2, 4), "relu"),
     "activation_backward: dY has shape"),
    (lambda: ops.dropout_backward(arr(2, 3), np.ones((3, 2), np.uint8), 0.5),
     "dropout_backward: mask has shape"),
    (lambda: ops.batchnorm_forward_train(arr(2, 3), arr(4), None, 1e-3),
     "batchnorm_forward_train: gamma has shape"),
    (lambda: ops.batchnorm_forward_train(arr(0, 3), None, None, 1e-3),
     "batchnorm_forward_train: an empty batch"),
    (lambda: ops.batchnorm_update_moving(arr(3), arr(3), arr(4), arr(3), 0.9),
     "batchnorm_update_moving: mean has shape"),
    (lambda: ops.mse(arr(2, 3), arr(3, 2)), "mse: y_true has shape"),
    (lambda: ops.categorical_crossentropy(arr(2, 3), arr(2, 4)),
     "categorical_crossentropy: y_true has shape"),
    (lambda: ops.optimizer_update(OPT_SGD, HYPER, [arr(3)], [arr(4)], []),
     r"optimizer_update: grads\[0\] has shape"),
    (lambda: ops.optimizer_update(OPT_MOMENTUM, HYPER, [arr(3)], [arr(3)], [[arr(3), arr(3)]]),
     r"optimizer_update: 1 params but 2 slots\[0\]"),
    (lambda: ops.optimizer_update(OPT_MOMENTUM, HYPER, [arr(3)], [arr(3)], []),
     "OPT_MOMENTUM takes 1 slot lists"),
    (lambda: ops.optimizer_update(99, HYPER, [arr(3)], [arr(3)], []), "kind must be an OPT_"),
    (lambda: ops.optimizer_update(OPT_SGD, np.zeros(3), [arr(3)], [arr(3)], []),
     "hyper must be float64 of shape"),
])
def test_shape_errors_are_value_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("name", ["hard_swish", "Relu", "", 3])
def test_unknown_activation_lists_valid_names(name):
    with pytest.raises(ValueError, match=r"unknown activation .*linear.*relu.*sigmoid"):
        ops.dense_forward(arr(2, 3), arr(3, 4), activation=name)
    with pytest.raises(ValueError, match="activation_forward: unknown activation"):
        ops.activation_forward(arr(2, 3), name)


@pytest.mark.parametrize("labels, message", [
    (np.array([0, 3]), r"labels must be in \[0, 3\)"),
    (np.array([-1, 0]), r"labels must be in \[0, 3\)"),
    (np.array([0.5, 1.0]), "labels must be integer"),
    (np.array(["a", "b"]), "labels must be integer"),
    (np.array([0, 1, 2]), "labels have shape"),
])
def test_sparse_labels_are_checked(labels, message):
    with pytest.raises(ValueError, match=message):
        ops.sparse_categorical_crossentropy(arr(2, 3), labels)


def test_integral_float_and_unsigned_labels_are_accepted():
    a = ops.sparse_categorical_crossentropy(arr(2, 3), np.array([0.0, 2.0]))[0]
    b = ops.sparse_categorical_crossentropy(arr(2, 3), np.array([0, 2], np.uint8))[0]
    assert a == b


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5, "0.5", None, True])
def test_dropout_rate_must_be_in_unit_interval(rate):
    with pytest.raises(ValueError, match="rate must be a number in"):
        ops.dropout_forward(arr(2, 3), rate, 0, 0)


@pytest.mark.parametrize("seed", [-1, 2 ** 64, 1.5])
def test_dropout_seed_must_be_uint64(seed):
    with pytest.raises(ValueError, match="seed must be an integer"):
        ops.dropout_forward(arr(2, 3), 0.5, seed, 0)


def test_in_place_arguments_must_be_usable_as_given():
    # An update of a contiguous copy would silently change nothing.
    w = arr(4, 3).T
    with pytest.raises(ValueError, match=r"optimizer_update: params\[0\] must be C-contiguous"):
        ops.optimizer_update(OPT_SGD, HYPER, [w], [arr(3, 4)], [])
    ro = arr(3)
    ro.setflags(write=False)
    with pytest.raises(ValueError, match=r"params\[0\] is read-only"):
        ops.optimizer_update(OPT_SGD, HYPER, [ro], [arr(3)], [])
    with pytest.raises(ValueError, match=r"slots\[0\]\[0\] must be C-contiguous"):
        ops.optimizer_update(OPT_MOMENTUM, HYPER, [arr(3)], [arr(3)], [[arr(6)[::2]]])
    with pytest.raises(ValueError, match=r"slots\[0\]\[0\] is read-only"):
        ops.optimizer_update(OPT_ADAM, HYPER, [arr(3)], [arr(3)], [[ro], [arr(3)]])
    with pytest.raises(TypeError, match=r"params\[0\] must be a numpy array"):
        ops.optimizer_update(OPT_SGD, HYPER, [[1.0, 2.0]], [arr(2)], [])
    with pytest.raises(TypeError, match="params must be a list"):
        ops.optimizer_update(OPT_SGD, HYPER, arr(3), [arr(3)], [])
    with pytest.raises(ValueError, match="appears twice"):
        p = arr(3)
        ops.optimizer_update(OPT_SGD, HYPER, [p, p], [arr(3), arr(3)], [])
    with pytest.raises(ValueError, match=r"slots\[1\]\[0\] is also a param"):
        p = arr(3)
        ops.optimizer_update(OPT_ADAM, HYPER, [p], [arr(3)], [[arr(3)], [p]])
    with pytest.raises(ValueError, match="moving_var must be C-contiguous"):
        ops.batchnorm_update_moving(arr(3), arr(6)[::2], arr(3), arr(3), 0.9)


def test_outputs_must_not_overlap_gemm_inputs():
    X = arr(3, 3)
    with pytest.raises(ValueError, match="out overlaps X"):
        ops.dense_forward(X, arr(3, 3), out=X)
