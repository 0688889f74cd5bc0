"""NumPy-backed keras.backend helpers, utils.normalize and summary()'s stale warning."""
import warnings

import numpy as np
import pytest

import fastlayers as fl
from fastlayers import _codes
from fastlayers import backend as K
from fastlayers.layers import Dense


@pytest.fixture
def restore_backend():
    eps, fmt = K.epsilon(), K.image_data_format()
    yield
    K.set_epsilon(eps)
    K.set_image_data_format(fmt)


def built_dense():
    x = fl.Input((3,))
    d = Dense(2, name="d")
    return fl.Model(x, d(x)), d, x


# --------------------------------------------------------------------------- values
def test_get_value_set_value_on_weights():
    m, d, _ = built_dense()
    k = K.get_value(d.kernel)
    assert isinstance(k, np.ndarray) and k.shape == (3, 2)
    k[...] = 5  # a copy
    assert not np.all(d.kernel.value == 5)
    K.set_value(d.kernel, np.full((3, 2), 2.0))
    np.testing.assert_array_equal(d.kernel.value, 2.0)
    assert d.kernel.dtype == np.float32
    np.testing.assert_array_equal(K.eval(d.bias), np.zeros(2))
    with pytest.raises(ValueError, match="shape"):
        K.set_value(d.kernel, np.zeros((2, 3)))
    with pytest.raises(TypeError, match="learning_rate"):
        K.set_value(0.01, 0.1)


def test_batch_get_and_set_value_check_everything_first():
    m, d, _ = built_dense()
    K.batch_set_value([(d.kernel, np.ones((3, 2))), (d.bias, [1.0, 2.0])])
    k, b = K.batch_get_value(d.weights)
    np.testing.assert_array_equal(k, 1.0)
    np.testing.assert_array_equal(b, [1.0, 2.0])
    with pytest.raises(ValueError):
        K.batch_set_value([(d.kernel, np.zeros((3, 2))), (d.bias, np.zeros(5))])
    np.testing.assert_array_equal(d.kernel.value, 1.0)  # untouched: the second pair was bad


def test_int_shape_and_dtype():
    m, d, x = built_dense()
    assert K.int_shape(x) == (None, 3)
    assert K.int_shape(d.kernel) == (3, 2)
    assert K.int_shape(np.zeros((4, 5))) == (4, 5)
    assert K.dtype(x) == "float32" and K.dtype(d.kernel) == "float32"
    assert K.dtype(np.zeros(2)) == "float64"


def test_symbolic_tensors_have_no_value():
    _, _, x = built_dense()
    with pytest.raises(TypeError, match="backend.function"):
        K.eval(x)
    with pytest.raises(TypeError, match="backend.function"):
        K.get_value(x)


def test_is_keras_tensor_as_keras_2():
    m, d, x = built_dense()
    assert K.is_keras_tensor(x) and K.is_keras_tensor(m.output)
    assert not K.is_keras_tensor(d.kernel)
    with pytest.raises(ValueError, match="Expected a symbolic tensor instance"):
        K.is_keras_tensor(np.zeros(3))


# --------------------------------------------------------------------------- settings
def test_epsilon_matches_the_losses_clip(restore_backend):
    from fastlayers._kernels import losses as kernel_losses

    assert K.epsilon() == _codes.EPSILON == kernel_losses.EPSILON == 1e-7
    K.set_epsilon(1e-5)
    assert K.epsilon() == 1e-5
    # The compiled losses keep Keras's default clip (documented in set_epsilon).
    assert _codes.EPSILON == 1e-7
    with pytest.raises(ValueError):
        K.set_epsilon(-1.0)
    with pytest.raises(TypeError):
        K.set_epsilon("small")


def test_image_data_format(restore_backend):
    assert K.image_data_format() == "channels_last"
    K.set_image_data_format("channels_first")
    assert K.image_data_format() == "channels_first"
    with pytest.raises(ValueError, match="channels_last"):
        K.set_image_data_format("nhwc")


def test_clear_session_resets_names_and_phase_only(restore_backend):
    Dense(1)
    assert Dense(1).name == "dense_1"
    K.set_learning_phase(1)
    K.set_epsilon(1e-4)
    K.clear_session()
    assert Dense(1).name == "dense"
    assert int(K.learning_phase()) == 0
    assert K.epsilon() == 1e-4 and K.floatx() == "float32"


@pytest.mark.parametrize("name, hint", [
    ("placeholder", "fl.Input"), ("variable", "add_weight"), ("gradients", "backprop"),
    ("update", "add_update"), ("get_session", "no session"),
])
def test_graph_only_names_say_what_to_use(name, hint):
    with pytest.raises(AttributeError, match=hint):
        getattr(K, name)


def test_unknown_backend_name_is_a_helpful_attribute_error():
    assert not hasattr(K, "square")
    with pytest.raises(AttributeError, match="np.square"):
        K.square


# --------------------------------------------------------------------------- utils
def test_normalize_as_keras():
    x = np.array([[3.0, 4.0], [0.0, 0.0], [1.0, 0.0]])
    np.testing.assert_allclose(fl.utils.normalize(x), [[0.6, 0.8], [0, 0], [1, 0]])
    np.testing.assert_allclose(fl.utils.normalize(x, axis=0),
                               x / np.linalg.norm(x, axis=0, keepdims=True))
    np.testing.assert_allclose(fl.utils.normalize(x, order=1), [[3 / 7, 4 / 7], [0, 0], [1, 0]])
    # Keras keeps a unit axis for 1-D input: (2,) gives (1, 2).
    np.testing.assert_allclose(fl.utils.normalize(np.array([3.0, 4.0])), [[0.6, 0.8]])
    assert fl.utils.normalize(x.astype("float32")).dtype == np.float32
    with pytest.raises(ValueError, match="axis"):
        fl.utils.normalize(x, axis=2)


# --------------------------------------------------------------------------- summary
def test_summary_warns_about_a_stale_compile_once_per_change_shared_with_fit():
    m, d, _ = built_dense()
    m.compile("sgd", "mse")
    lines = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.summary(print_fn=lines.append)
    d.trainable = False
    with pytest.warns(UserWarning, match="call compile\\(\\) again|Call compile\\(\\) again"):
        m.summary(print_fn=lines.append)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.summary(print_fn=lines.append)  # same change: no second warning
        m.train_on_batch(np.zeros((2, 3), "float32"), np.zeros((2, 2), "float32"))
    d.trainable = True
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.summary(print_fn=lines.append)  # back to the compiled picture: nothing stale
    d.trainable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.fit(np.zeros((2, 3), "float32"), np.zeros((2, 2), "float32"), verbose=0)  # warned


def test_fit_warning_then_summary_stays_quiet():
    m, d, _ = built_dense()
    m.compile("sgd", "mse")
    d.trainable = False
    with pytest.warns(UserWarning, match="Model 'model'"):
        m.train_on_batch(np.zeros((2, 3), "float32"), np.zeros((2, 2), "float32"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.summary(print_fn=lambda s: None)


def test_summary_says_multiple_for_a_layer_called_on_different_shapes():
    from fastlayers.layers import Activation, Concatenate

    act = Activation("relu", name="act")
    a, b = fl.Input((2,)), fl.Input((3,))
    m = fl.Model([a, b], Concatenate()([act(a), act(b)]))
    lines = []
    m.summary(print_fn=lines.append)
    row = next(l for l in lines if l.startswith("act (Activation)"))
    assert "multiple" in row
