"""Layers: config + parameters, registered by class name (see ``layers.base``).

Importing this package imports every family module, whose ``@register``
classes land in ``LAYERS``; every registered class is exported from here by
its name, so a new layer in a family module needs no line in this file.
"""
from . import (activations, conv, conv_transpose, core, layout, merge, norm, pad, pointwise,  # noqa: F401
               pooling, reshape)  # (they register layers)
from .base import LAYERS, Layer, layer_from_config, register

globals().update(LAYERS)

__all__ = ["LAYERS", "Layer", "layer_from_config", "register", *sorted(LAYERS)]
