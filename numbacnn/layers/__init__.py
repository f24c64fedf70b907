"""Layers: config + parameters, registered by class name (see ``layers.base``).

Importing this package imports every family module, whose ``@register``
classes land in ``LAYERS``; every registered class is exported from here by
its name, so a new layer in a family module needs no line in this file.
"""
from . import (activations, conv, conv_transpose, core, layout, merge, norm, pad, pointwise,  # noqa: F401
               pooling, reshape)  # (they register layers)
from .base import LAYERS, Layer, layer_from_config, register

globals().update(LAYERS)

#: Keras' names for the same layers (``numbacnn.layers.MaxPooling2D(2)`` is a MaxPool2D), and its Activation
KERAS_NAMES = {"MaxPooling2D": "MaxPool2D", "AveragePooling2D": "AvgPool2D",
               "GlobalAveragePooling2D": "GlobalAvgPool2D", "BatchNormalization": "BatchNorm",
               "LayerNormalization": "LayerNorm"}
globals().update({alias: LAYERS[name] for alias, name in KERAS_NAMES.items()})
Activation = activations.Activation

__all__ = ["LAYERS", "Layer", "layer_from_config", "register", "Activation", *sorted(LAYERS), *KERAS_NAMES]
