"""Layers: config + parameters, registered by class name (see ``layers.base``)."""
from .base import LAYERS, Layer, layer_from_config, register
from .activations import LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from .conv import Conv2D
from .core import Dense, Dropout, Flatten
from .merge import Add, ChannelPad, Concatenate
from .norm import LRN, BatchNorm
from .pad import Pad2D
from .pooling import AvgPool2D, GlobalAvgPool2D, MaxPool2D
from .reshape import Reshape

__all__ = ["LAYERS", "Layer", "layer_from_config", "register", "Conv2D", "Dense", "Flatten", "Dropout",
           "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Softmax", "BatchNorm", "LRN", "MaxPool2D", "AvgPool2D",
           "GlobalAvgPool2D", "Add", "Concatenate", "ChannelPad", "Pad2D", "Reshape"]
