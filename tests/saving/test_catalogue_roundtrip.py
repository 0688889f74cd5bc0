"""Every layer class fastlayers.layers exports loads back from a saved model by name
(the conv catalogue was missing from the loader's built-ins), with the same predictions."""
import numpy as np
import pytest

import fastlayers as fl
from fastlayers.saving.serialization import ConfigError, _builtin_classes


def test_every_exported_layer_class_is_a_builtin_of_the_loader():
    L = fl.layers
    builtin = _builtin_classes()
    for name in ("Conv1D", "Conv2D", "Conv2DTranspose", "DepthwiseConv2D", "SeparableConv2D",
                 "MaxPooling2D", "GlobalAveragePooling2D", "ReLU", "LeakyReLU", "PReLU",
                 "Embedding", "LayerNormalization", "GroupNormalization", "Reshape",
                 "ZeroPadding2D", "GaussianNoise", "SpatialDropout2D", "Softmax"):
        assert builtin[name] is getattr(L, name)
    assert builtin["Conv2D"] is L.Convolution2D  # an alias shares its class's entry
    assert "Lambda" not in builtin  # a Python function cannot travel in a config


def test_cnn_saves_and_loads_with_the_same_predictions(tmp_path):
    L = fl.layers
    model = fl.Sequential([
        fl.Input((8, 8, 1)), L.Conv2D(4, 3, padding="same", name="c1"),
        L.BatchNormalization(name="bn"), L.ReLU(), L.MaxPooling2D(),
        L.DepthwiseConv2D(3, padding="same", depth_multiplier=2), L.LeakyReLU(0.1),
        L.SeparableConv2D(5, 3, padding="same", activation="relu"),
        L.GlobalAveragePooling2D(), L.Dense(3)])
    model.compile("sgd", fl.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.default_rng(0).random((5, 8, 8, 1), dtype=np.float32)
    model.train_on_batch(x, np.array([0, 1, 2, 0, 1]))  # moving statistics move off 0 / 1
    path = str(tmp_path / "cnn.keras")
    model.save(path)
    loaded = fl.models.load_model(path)
    assert [type(l).__name__ for l in loaded.layers] == [type(l).__name__ for l in model.layers]
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_unknown_class_still_names_the_entry(tmp_path):
    from fastlayers.saving.serialization import deserialize_layer

    with pytest.raises(ConfigError, match="unknown layer class 'NoSuchLayer'"):
        deserialize_layer({"class_name": "NoSuchLayer", "config": {}})


L = fl.layers
CONFIG_CASES = [
    (L.Conv1D, (2, 3)), (L.Conv2D, (2, 3)), (L.Conv2DTranspose, (2, 3)),
    (L.DepthwiseConv2D, (3,)), (L.SeparableConv2D, (4, 3)), (L.MaxPooling1D, ()),
    (L.AveragePooling2D, ()), (L.GlobalMaxPooling1D, ()), (L.Reshape, ((4, 2),)),
    (L.Permute, ((2, 1),)), (L.RepeatVector, (3,)), (L.ZeroPadding2D, ()),
    (L.UpSampling2D, ()), (L.Cropping2D, ()), (L.LayerNormalization, ()),
    (L.GroupNormalization, ()), (L.Embedding, (10, 4)), (L.PReLU, ()), (L.ELU, ()),
    (L.Softmax, ()), (L.LeakyReLU, ()), (L.GaussianNoise, (0.1,)), (L.GaussianDropout, (0.1,)),
    (L.AlphaDropout, (0.1,)), (L.SpatialDropout1D, (0.1,)), (L.SpatialDropout2D, (0.1,)),
]


@pytest.mark.parametrize("cls,args", CONFIG_CASES, ids=[c.__name__ for c, _ in CONFIG_CASES])
def test_config_rebuilds_the_layer(cls, args):
    layer = cls(*args)
    again = cls.from_config(layer.get_config())
    assert again.get_config() == layer.get_config()
