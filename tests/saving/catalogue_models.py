"""Models covering the layer catalogue, built by one function for either library.

Each builder takes ``K`` -- the ``keras`` module or ``fastlayers`` (both have
``Input``, ``Model``, ``Sequential``, ``layers``, ``regularizers`` and
``constraints`` with the same names and arguments) -- and returns ``(model, x)``,
``x`` the same inputs for both.  Every layer with weights is named, so the twins'
layers can be matched.  Used by ``test_keras_catalogue.py`` (with Keras) and by
``make_fixtures.py`` (the committed CNN and text fixtures).
"""
import numpy as np


def _rng(seed):
    return np.random.default_rng(seed)


def convs(K):
    """Functional, every convolution, a shared layer, regularizers and constraints."""
    L = K.layers
    inp = K.Input((9, 9, 3), name="image")
    a = L.Conv2D(4, 3, padding="same", activation="relu",
                 kernel_regularizer=K.regularizers.L2(0.02),
                 bias_constraint=K.constraints.MaxNorm(2.0), name="conv_a")(inp)
    b = L.Conv2D(4, (2, 3), strides=2, use_bias=False, activation="tanh", name="conv_b")(inp)
    a = L.SeparableConv2D(5, 3, depth_multiplier=2, padding="same", activation="gelu",
                          depthwise_regularizer=K.regularizers.L1(0.01),
                          pointwise_constraint=K.constraints.UnitNorm(axis=0),
                          activity_regularizer=K.regularizers.L2(0.001), name="sep")(a)
    a = L.DepthwiseConv2D(3, strides=2, depth_multiplier=2, activation="silu",
                          depthwise_constraint=K.constraints.NonNeg(), name="dw")(a)
    a = L.Conv2D(4, 1, bias_regularizer=K.regularizers.L1L2(0.01, 0.02), name="proj")(a)
    shared = L.Conv2D(4, 3, padding="same", dilation_rate=2, activation="elu", name="shared")
    s = L.Add(name="add")([shared(a), shared(b)])
    t = L.Conv2DTranspose(3, 3, strides=2, padding="same", activation="leaky_relu",
                          kernel_constraint=K.constraints.MinMaxNorm(0.5, 1.5, 0.5),
                          name="deconv")(s)
    u = L.Conv2DTranspose(2, (2, 3), name="deconv_valid")(t)
    out = L.GlobalAveragePooling2D(name="gap")(u)
    return K.Model(inp, out, name="convs"), _rng(1).normal(size=(3, 9, 9, 3)).astype("float32")


def cnn(K):
    """A small image model through the convolutional catalogue (a committed fixture)."""
    L = K.layers
    inp = K.Input((8, 8, 1), name="digits")
    x = L.ZeroPadding2D(1, name="pad")(inp)
    x = L.Conv2D(4, 3, name="conv")(x)
    x = L.BatchNormalization(name="bn")(x)
    x = L.LeakyReLU(0.1, name="leaky")(x)
    x = L.MaxPooling2D(name="pool")(x)
    x = L.SeparableConv2D(4, 3, padding="same", name="sep")(x)
    x = L.GroupNormalization(2, name="gn")(x)
    x = L.PReLU(shared_axes=[1, 2], name="prelu")(x)
    x = L.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = L.Conv2DTranspose(2, 3, strides=2, padding="same", name="deconv")(x)
    x = L.Cropping2D(((1, 1), (2, 2)), name="crop")(x)
    x = L.UpSampling2D((1, 2), name="up")(x)
    x = L.LayerNormalization(name="ln")(x)
    x = L.AveragePooling2D(2, name="avg")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    out = L.Dense(3, activation="softmax", name="probs")(x)
    return K.Model(inp, out, name="cnn"), _rng(10).random((4, 8, 8, 1)).astype("float32")


def conv1d(K):
    """Sequential Conv1D in its three paddings."""
    L = K.layers
    m = K.Sequential([
        K.Input((10, 3)),
        L.Conv1D(4, 3, padding="causal", dilation_rate=2, activation="softplus", name="c1"),
        L.Conv1D(3, 2, strides=2, padding="same", activation="selu", name="c2"),
        L.Conv1D(2, 3, activation="mish", kernel_constraint=K.constraints.NonNeg(), name="c3"),
        L.Flatten(name="flat")], name="conv1d")
    return m, _rng(2).normal(size=(4, 10, 3)).astype("float32")


def poolings(K):
    """Two inputs: the 2-D and the 1-D poolings, local and global."""
    L = K.layers
    img = K.Input((8, 9, 2), name="img")
    seq = K.Input((11, 3), name="seq")
    m = L.MaxPooling2D(name="max2")(img)
    a = L.AveragePooling2D(3, strides=1, padding="same", name="avg2")(img)
    a = L.MaxPooling2D((2, 3), strides=(1, 2), padding="same", name="max2b")(a)
    a = L.AveragePooling2D((3, 2), name="avg2b")(a)
    s = L.MaxPooling1D(2, name="max1")(seq)
    s = L.AveragePooling1D(3, strides=1, padding="same", name="avg1")(s)
    t = L.AveragePooling1D(2, strides=3, name="avg1b")(seq)
    parts = [L.GlobalAveragePooling2D(name="gap2")(m), L.GlobalMaxPooling2D(name="gmp2")(a),
             L.GlobalAveragePooling1D(name="gap1")(s),
             L.Flatten(name="flat")(L.GlobalMaxPooling1D(keepdims=True, name="gmp1")(t))]
    out = L.Concatenate(name="cat")(parts)
    rng = _rng(3)
    x = [rng.normal(size=(3, 8, 9, 2)).astype("float32"),
         rng.normal(size=(3, 11, 3)).astype("float32")]
    return K.Model([img, seq], out, name="poolings"), x


def reshapes(K):
    """Sequential through every reshaping layer."""
    L = K.layers
    m = K.Sequential([
        K.Input((12,)), L.Reshape((3, 4), name="r1"), L.Permute((2, 1), name="perm"),
        L.Flatten(name="f1"), L.RepeatVector(2, name="rep"), L.Reshape((4, 6, 1), name="r2"),
        L.ZeroPadding2D(((1, 0), (2, 1)), name="pad"), L.UpSampling2D((2, 1), name="up"),
        L.Cropping2D(((1, 1), (0, 2)), name="crop"), L.Conv2D(2, 2, name="conv"),
        L.Flatten(name="f2"), L.Dense(3, name="out")], name="reshapes")
    return m, _rng(4).normal(size=(2, 12)).astype("float32")


def norms(K):
    """Batch, layer and group normalization, their options."""
    L = K.layers
    inp = K.Input((6, 5, 4))
    x = L.BatchNormalization(momentum=0.9, epsilon=1e-2, name="bn")(inp)
    x = L.LayerNormalization(name="ln")(x)
    x = L.GroupNormalization(groups=2, epsilon=1e-4, name="gn")(x)
    x = L.LayerNormalization(axis=[1, 2], center=False, name="ln2")(x)
    x = L.BatchNormalization(axis=1, scale=False, name="bn2")(x)
    x = L.GroupNormalization(groups=4, scale=False, name="gn2")(x)
    out = L.Dense(3, name="out")(L.Flatten(name="flat")(x))
    return K.Model(inp, out, name="norms"), _rng(5).normal(size=(3, 6, 5, 4)).astype("float32")


def embedding(K):
    """Integer ids: Embedding, Conv1D, GlobalMaxPooling1D (a small text classifier)."""
    L = K.layers
    ids = K.Input((7,), dtype="int32", name="ids")
    x = L.Embedding(20, 6, name="emb")(ids)
    x = L.Conv1D(4, 3, activation="relu", name="conv")(x)
    x = L.GlobalMaxPooling1D(name="pool")(x)
    out = L.Dense(3, activation="softmax", name="probs")(x)
    x = _rng(6).integers(0, 20, size=(5, 7)).astype("int32")
    return K.Model(ids, out, name="text"), x


def noise(K):
    """Every training-only layer (the identity in the predictions compared)."""
    L = K.layers
    m = K.Sequential([
        K.Input((5, 5, 3)), L.GaussianNoise(0.3, name="gn"), L.GaussianDropout(0.2, name="gd"),
        L.AlphaDropout(0.1, name="ad"), L.SpatialDropout2D(0.2, name="sd2"),
        L.Reshape((25, 3), name="r"), L.SpatialDropout1D(0.1, name="sd1"),
        L.Dropout(0.3, noise_shape=(None, 1, 3), seed=3, name="drop"),
        L.ActivityRegularization(l1=0.01, l2=0.001, name="act_reg"),
        L.Flatten(name="flat"), L.Dense(2, name="out")], name="noise")
    return m, _rng(7).normal(size=(2, 5, 5, 3)).astype("float32")


def activations(K):
    """The activation layers and the activation names (fused into Dense)."""
    L = K.layers
    inp = K.Input((6,))
    x = L.ReLU(max_value=2.0, negative_slope=0.1, threshold=0.3, name="relu_p")(
        L.Dense(8, name="d0")(inp))
    x = L.LeakyReLU(0.2, name="leaky")(L.Dense(8, name="d1")(x))
    x = L.PReLU(name="prelu")(L.Dense(8, name="d2")(x))
    x = L.ELU(0.7, name="elu")(L.Dense(8, name="d3")(x))
    x = L.ReLU(name="relu")(L.Dense(8, activation="relu6", name="d4")(x))
    x = L.Reshape((2, 4), name="r")(L.Dense(8, activation="softsign", name="d5")(x))
    x = L.Flatten(name="f")(L.PReLU(shared_axes=[1], name="prelu_shared")(x))
    for i, act in enumerate(("hard_sigmoid", "selu", "swish", "mish", "exponential",
                             "sigmoid", "tanh", "softplus", "elu", "gelu", "leaky_relu",
                             "log_softmax")):
        x = L.Dense(6, activation=act, name=f"a{i}")(x)
    x = L.Activation("gelu", name="act_gelu")(x)
    x = L.Softmax(name="softmax")(L.Dense(5, name="logits")(x))
    return K.Model(inp, x, name="activations"), _rng(8).normal(size=(4, 6)).astype("float32")


def merges(K):
    """Every merge layer, on two inputs (Maximum on three)."""
    L = K.layers
    a, b = K.Input((4,), name="a"), K.Input((4,), name="b")
    da, db = L.Dense(4, name="da")(a), L.Dense(4, name="db")(b)
    outs = [L.Add(name="add")([da, db]), L.Subtract(name="sub")([da, db]),
            L.Multiply(name="mul")([da, db]), L.Average(name="avg")([da, db]),
            L.Maximum(name="max")([da, db, a]), L.Minimum(name="min")([da, db]),
            L.Dot(axes=1, normalize=True, name="cos")([da, db]),
            L.Dot(axes=1, name="dot")([a, db])]
    out = L.Concatenate(name="cat")(outs)
    rng = _rng(9)
    return K.Model([a, b], out, name="merges"), [rng.normal(size=(3, 4)).astype("float32")
                                                  for _ in range(2)]


GROUPS = (cnn, convs, conv1d, poolings, reshapes, norms, embedding, noise, activations, merges)


def randomize(layers, seed):
    """Seeded random values for every weight of ``layers`` (positive variances)."""
    rng = _rng(seed)
    for layer in layers:
        ws = layer.get_weights()
        if not ws:
            continue
        new = []
        for i, w in enumerate(ws):
            if type(layer).__name__ == "BatchNormalization" and i == len(ws) - 1:
                new.append(rng.uniform(0.5, 2.0, w.shape).astype(w.dtype))
            else:
                new.append(rng.normal(0, 0.5, w.shape).astype(w.dtype))
        layer.set_weights(new)
