"""Pad2D: constant padding (or cropping) of H and W, e.g. asymmetric or ceil-mode padding from ONNX."""
from __future__ import annotations

import math

import numpy as np

from .base import Layer, register


@register
class Pad2D(Layer):
    """y = x with ``pads = (top, bottom, left, right)`` rows/columns of ``value`` around H and W.

    (N, C, H, W) -> (N, C, H + top + bottom, W + left + right).  A negative pad
    crops.  ``value`` is a number; ``-inf`` in front of a MaxPool2D reproduces
    max pooling's padding (configs store it as ``-Infinity``, which Python's
    ``json`` reads back).
    """

    def __init__(self, pads=(0, 0, 0, 0), value=0.0, name=None, trainable=True):
        super().__init__(name, trainable)
        if (not isinstance(pads, (list, tuple)) or len(pads) != 4
                or not all(isinstance(p, (int, np.integer)) and not isinstance(p, bool) for p in pads)):
            raise ValueError(f"{self.describe()}: pads must be 4 ints (top, bottom, left, right), got {pads!r}")
        if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value):
            raise ValueError(f"{self.describe()}: value must be a number, got {value!r}")
        self.pads = tuple(int(p) for p in pads)
        self.value = float(value)

    def _build(self, shapes):
        s = shapes[0]
        if len(s) != 3:
            raise self.shape_error("needs a (C, H, W) input", s, "(C, H, W)")
        t, b, l, r = self.pads
        C, H, W = s
        if H + t + b < 1 or W + l + r < 1:
            raise self.shape_error(f"pads {self.pads} crop the whole image", s)
        return C, H + t + b, W + l + r

    def flops(self):
        return 0

    def forward(self, inputs, training):
        return self.backend.pad2d_forward(inputs[0], self.pads, self.value)

    def backward(self, dy):
        return [self.backend.pad2d_backward(dy, self.pads)]
