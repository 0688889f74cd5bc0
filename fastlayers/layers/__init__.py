"""Layers with Keras's names."""
from ..engine.container import Container
from ..engine.layer import Input, InputLayer, Layer
from .core import Activation, ActivityRegularization, Dense, Flatten, Lambda
from .dropout import Dropout
from .merge import (Add, Average, Concatenate, Dot, Maximum, Minimum, Multiply, Subtract, add,
                    average, concatenate, dot, maximum, minimum, multiply, subtract)
from .normalization import BatchNormalization, GroupNormalization, LayerNormalization
from .activation_layers import ELU, LeakyReLU, PReLU, ReLU, Softmax
from .convolutional import Conv1D, Conv2D, Conv2DTranspose, DepthwiseConv2D, SeparableConv2D
from .embedding import Embedding
from .noise import (AlphaDropout, GaussianDropout, GaussianNoise, SpatialDropout1D,
                    SpatialDropout2D)
from .pooling import (AveragePooling1D, AveragePooling2D, GlobalAveragePooling1D,
                      GlobalAveragePooling2D, GlobalMaxPooling1D, GlobalMaxPooling2D,
                      MaxPooling1D, MaxPooling2D)
from .reshaping import Cropping2D, Permute, RepeatVector, Reshape, UpSampling2D, ZeroPadding2D

# Keras's aliases.
Convolution1D, Convolution2D = Conv1D, Conv2D
Convolution2DTranspose = Conv2DTranspose
SeparableConvolution2D = SeparableConv2D
MaxPool1D, MaxPool2D, AvgPool1D, AvgPool2D = MaxPooling1D, MaxPooling2D, AveragePooling1D, \
    AveragePooling2D
GlobalAvgPool1D, GlobalAvgPool2D = GlobalAveragePooling1D, GlobalAveragePooling2D
GlobalMaxPool1D, GlobalMaxPool2D = GlobalMaxPooling1D, GlobalMaxPooling2D

__all__ = ["Layer", "InputLayer", "Input", "Dense", "Lambda", "ActivityRegularization", "Activation", "Flatten", "Dropout",
           "BatchNormalization", "Concatenate", "Add", "Subtract", "Multiply", "Average", "Maximum",
           "Minimum", "Dot", "concatenate", "add", "subtract", "multiply", "average", "maximum",
           "minimum", "dot", "Container",
           "LayerNormalization", "GroupNormalization",
           "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax",
           "Conv1D", "Conv2D", "Conv2DTranspose", "DepthwiseConv2D", "SeparableConv2D",
           "Convolution1D", "Convolution2D", "Convolution2DTranspose", "SeparableConvolution2D",
           "Embedding",
           "GaussianNoise", "GaussianDropout", "AlphaDropout", "SpatialDropout1D",
           "SpatialDropout2D",
           "MaxPooling1D", "MaxPooling2D", "AveragePooling1D", "AveragePooling2D",
           "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalMaxPooling1D",
           "GlobalMaxPooling2D", "MaxPool1D", "MaxPool2D", "AvgPool1D", "AvgPool2D",
           "GlobalAvgPool1D", "GlobalAvgPool2D", "GlobalMaxPool1D", "GlobalMaxPool2D",
           "Reshape", "Permute", "RepeatVector", "ZeroPadding2D", "UpSampling2D", "Cropping2D"]
