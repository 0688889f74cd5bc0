"""One layer's config between Keras 3's serialized form and fastlayers', per class.

Every Keras 3 layer class listed in :data:`KERAS_ONLY` has a fastlayers twin of the
same name, the same arguments and defaults, and the same weights in the same order;
what differs is kept in three tables:

- :data:`KERAS_ONLY`: the Keras options fastlayers does not have, each with the
  values that mean "not used" (``None``: any value, dropped).  A file that uses
  one of them otherwise is refused with a :class:`ConfigError` naming the layer
  and the option, before any layer is built.
- :data:`PENALTIES`: the regularizer and constraint arguments a class has in both
  libraries, translated between Keras's ``{"module": "keras.regularizers", ...}``
  and fastlayers' ``{"class_name", "config"}`` (:mod:`fastlayers.regularizers`,
  :mod:`fastlayers.constraints`); on the other classes Keras's
  ``activity_regularizer`` must be None.
- :data:`SEEDED`: the training-only layers (dropout and noise), whose ``seed`` is
  written 31-bit (Keras's seeds are 32-bit ints; the random streams of the two
  libraries differ anyway), and whose calls' ``training=False`` in a Keras file is
  Keras's default, recorded on every call, not a pin (:func:`nodes_from_keras`).

Activations travel as Keras's strings (Keras 3 writes ``"swish"`` as ``"silu"``,
which fastlayers also knows).
"""
from __future__ import annotations

from .serialization import ConfigError

_DF = {"data_format": (None, "channels_last")}
_NORM_PENALTIES = {"beta_regularizer": (None,), "gamma_regularizer": (None,),
                   "beta_constraint": (None,), "gamma_constraint": (None,)}

KERAS_ONLY = {
    "InputLayer": {"sparse": (False,), "ragged": (False,), "optional": (False,),
                   "batch_size": (None,)},
    # core
    "Dense": {}, "Activation": {}, "Flatten": dict(_DF), "Dropout": {},
    "ActivityRegularization": {},
    # normalization
    "BatchNormalization": {**_NORM_PENALTIES, "renorm": (False,), "renorm_clipping": (None,),
                           "renorm_momentum": None},
    "LayerNormalization": {**_NORM_PENALTIES, "rms_scaling": (False,)},
    "GroupNormalization": dict(_NORM_PENALTIES),
    # convolution
    "Conv1D": {**_DF, "groups": (1,)}, "Conv2D": {**_DF, "groups": (1,)},
    "Conv2DTranspose": {**_DF, "output_padding": (None,)},
    "DepthwiseConv2D": dict(_DF), "SeparableConv2D": dict(_DF),
    # pooling
    "MaxPooling1D": dict(_DF), "MaxPooling2D": dict(_DF), "AveragePooling1D": dict(_DF),
    "AveragePooling2D": dict(_DF), "GlobalAveragePooling1D": dict(_DF),
    "GlobalAveragePooling2D": dict(_DF), "GlobalMaxPooling1D": dict(_DF),
    "GlobalMaxPooling2D": dict(_DF),
    # reshaping
    "Reshape": {}, "Permute": {}, "RepeatVector": {}, "ZeroPadding2D": dict(_DF),
    "Cropping2D": dict(_DF), "UpSampling2D": {**_DF, "interpolation": ("nearest",)},
    # embedding
    "Embedding": {"mask_zero": (False,), "sparse": (False,), "input_length": None},
    # noise
    "SpatialDropout1D": {}, "SpatialDropout2D": dict(_DF), "GaussianNoise": {},
    "GaussianDropout": {}, "AlphaDropout": {},
    # activation layers
    "ReLU": {}, "LeakyReLU": {}, "ELU": {}, "Softmax": {},
    "PReLU": {"alpha_regularizer": (None,), "alpha_constraint": (None,)},
    # merging
    "Add": {}, "Subtract": {}, "Multiply": {}, "Average": {}, "Maximum": {}, "Minimum": {},
    "Concatenate": {}, "Dot": {},
}
# Options of every Keras layer (the base class's, Keras 2 leftovers, quantization),
# except where a class has an argument of that name (OWN).
COMMON = {"activity_regularizer": (None,), "autocast": (True,), "input_dim": None,
          "batch_input_shape": None, "quantization_config": (None,), "lora_rank": (None,),
          "lora_alpha": (None,)}
OWN = {"Embedding": ("input_dim",)}
# fastlayers options a Keras class does not take (dropped when writing).
FASTLAYERS_ONLY = {"SpatialDropout1D": ("trainable",), "SpatialDropout2D": ("trainable",)}
_INIT_ONLY = {"input_axes": (None,), "output_axes": (None,)}

_KB = ("kernel_regularizer", "bias_regularizer", "activity_regularizer", "kernel_constraint",
       "bias_constraint")
PENALTIES = {
    "Dense": _KB, "Conv1D": _KB, "Conv2D": _KB, "Conv2DTranspose": _KB,
    "DepthwiseConv2D": ("depthwise_regularizer", "bias_regularizer", "activity_regularizer",
                        "depthwise_constraint", "bias_constraint"),
    "SeparableConv2D": ("depthwise_regularizer", "pointwise_regularizer", "bias_regularizer",
                        "activity_regularizer", "depthwise_constraint",
                        "pointwise_constraint", "bias_constraint"),
    "Embedding": ("embeddings_regularizer", "embeddings_constraint"),
}
# The classes of each kind both libraries have, with the same config keys.
REGULARIZERS = ("L1", "L2", "L1L2")
CONSTRAINTS = ("MaxNorm", "NonNeg", "UnitNorm", "MinMaxNorm")
# The training-only layers: their seed is written 31-bit, and Keras records its call's
# default training=False on every call of one (node kwargs), which is no pin: an outer
# training value overrides it in Keras (fit drops), so it is not read as one (R5).
SEEDED = frozenset({"Dropout", "GaussianNoise", "GaussianDropout", "AlphaDropout",
                    "SpatialDropout1D", "SpatialDropout2D"})

LAYERS = tuple(KERAS_ONLY)


def strip(options: dict, cfg: dict, where: str, what: str) -> None:
    """Pop each of ``options`` from ``cfg``; a value that is not "not used" is an error."""
    for key, ok in options.items():
        if key in cfg:
            value = cfg.pop(key)
            if ok is not None and value not in ok:
                raise ConfigError(f"{where}: {what} uses the Keras option {key}={value!r}, "
                                  f"which fastlayers does not support")


_DTYPES = (None, "float32", "float64", "int32", "int64")


def _dtype_name(d, where, what):
    """The dtype of Keras's ``DTypePolicy`` (or a plain name); mixed-precision and
    quantized policies have no fastlayers equivalent."""
    name = (d.get("config") or {}).get("name") if isinstance(d, dict) else d
    if name not in _DTYPES or (isinstance(d, dict) and d.get("class_name") not in (
            "DTypePolicy", "FloatDTypePolicy")):
        raise ConfigError(f"{where}: {what} uses the Keras dtype policy {name!r}, which "
                          f"fastlayers does not support (its layers compute in float32 or "
                          f"float64)")
    return name


def _init_from_keras(v, where):
    if isinstance(v, dict) and "class_name" in v:
        cfg = dict(v.get("config") or {})
        strip(_INIT_ONLY, cfg, where, f"initializer {v['class_name']}")
        return {"module": "fastlayers.initializers", "class_name": v["class_name"],
                "config": cfg, "registered_name": None}
    return v


def _init_to_keras(v, where):
    if isinstance(v, str):
        return v
    if isinstance(v, dict) and v.get("registered_name") is None:
        return {"module": "keras.initializers", "class_name": v["class_name"],
                "config": dict(v.get("config") or {}), "registered_name": None}
    raise ConfigError(f"{where}: initializer {v!r} has no Keras equivalent")


def _kind(key: str):
    return ("constraint", CONSTRAINTS) if key.endswith("_constraint") else \
        ("regularizer", REGULARIZERS)


def _penalty_from_keras(key, v, where, what):
    if v is None or isinstance(v, str):
        return v  # a name: fastlayers' get() knows Keras's ("l2", "max_norm", ...)
    kind, known = _kind(key)
    cls = v.get("class_name") if isinstance(v, dict) else None
    if cls not in known or (v.get("registered_name") not in (None, cls)):
        raise ConfigError(f"{where}: {what} has the Keras {kind} {key}={cls or v!r}, which "
                          f"fastlayers does not have (it has {', '.join(known)})")
    return {"class_name": cls, "config": dict(v.get("config") or {})}


def _penalty_to_keras(key, v, where):
    if v is None:
        return None
    kind, known = _kind(key)
    cls = v.get("class_name") if isinstance(v, dict) else None
    if cls not in known:
        raise ConfigError(f"{where}: {key}={cls or v!r} has no Keras equivalent (Keras files "
                          f"may use the {kind}s {', '.join(known)})")
    return {"module": f"keras.{kind}s", "class_name": cls,
            "config": dict(v.get("config") or {}), "registered_name": None}


def layer_from_keras(name: str, cfg: dict, where: str) -> dict:
    """fastlayers' config of a Keras layer of class ``name`` (``cfg`` is a copy)."""
    what = f"layer {cfg.get('name')!r} ({name})"
    penalties = PENALTIES.get(name, ())
    own = penalties + OWN.get(name, ())
    strip(KERAS_ONLY[name], cfg, where, what)
    strip({k: ok for k, ok in COMMON.items() if k not in own}, cfg, where, what)
    if "dtype" in cfg:
        cfg["dtype"] = _dtype_name(cfg["dtype"], where, what)
    for k in list(cfg):
        if k.endswith("_initializer"):
            cfg[k] = _init_from_keras(cfg[k], f"{where}: {what}")
    for k in penalties:
        if k in cfg:
            cfg[k] = _penalty_from_keras(k, cfg[k], where, what)
    if isinstance(cfg.get("activation"), dict):
        from ..layers.core import ACTIVATIONS

        raise ConfigError(f"{where}: {what} has a custom activation "
                          f"{cfg['activation'].get('class_name')!r}; fastlayers has "
                          f"{', '.join(ACTIVATIONS)}")
    return cfg


def nodes_from_keras(name: str, nodes):
    """A Keras layer's ``inbound_nodes`` as fastlayers reads them: a training-only
    layer's recorded ``training=False`` dropped (see :data:`SEEDED`); an explicit
    ``training=True`` stays a pin."""
    if name not in SEEDED or not isinstance(nodes, list):
        return nodes
    out = []
    for node in nodes:
        kwargs = node.get("kwargs") if isinstance(node, dict) else None
        if isinstance(kwargs, dict) and kwargs.get("training") is False:
            node = dict(node, kwargs={k: v for k, v in kwargs.items() if k != "training"})
        out.append(node)
    return out


def layer_to_keras(name: str, cfg: dict, where: str) -> dict:
    """Keras's config of a fastlayers layer of class ``name`` (``cfg`` is a copy)."""
    for k in FASTLAYERS_ONLY.get(name, ()):
        cfg.pop(k, None)
    for k in list(cfg):
        if k.endswith("_initializer"):
            cfg[k] = _init_to_keras(cfg[k], where)
        elif k.endswith(("_regularizer", "_constraint")):
            cfg[k] = _penalty_to_keras(k, cfg[k], where)
    if name in SEEDED and cfg.get("seed") is not None:
        cfg["seed"] = int(cfg["seed"]) % (2 ** 31)
    return cfg
