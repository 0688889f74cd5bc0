"""fl.utils.to_categorical as Keras (values checked against keras.utils once, by hand)."""
import numpy as np
import pytest

import fastlayers as fl


def test_basic_and_num_classes():
    out = fl.utils.to_categorical([1, 0, 3])
    np.testing.assert_array_equal(out, [[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]])
    assert out.dtype == np.float32
    assert fl.utils.to_categorical([1, 0], num_classes=5).shape == (2, 5)
    assert fl.utils.to_categorical(np.array([2.0, 1.0]), dtype="int64").dtype == np.int64


def test_trailing_one_is_dropped_and_2d_labels_keep_their_shape():
    assert fl.utils.to_categorical(np.array([[1], [2]]), 3).shape == (2, 3)
    out = fl.utils.to_categorical(np.array([[0, 1], [2, 0]]))
    assert out.shape == (2, 2, 3) and out[1, 0, 2] == 1


def test_bad_labels():
    with pytest.raises(ValueError, match="out of range"):
        fl.utils.to_categorical([3], num_classes=3)
    with pytest.raises(ValueError, match="non-negative"):
        fl.utils.to_categorical([-1, 0])
    with pytest.raises(ValueError, match="integers"):
        fl.utils.to_categorical([0.5])
    with pytest.raises(TypeError, match="integers"):
        fl.utils.to_categorical(["a"])
