"""Element-wise activations and Softmax (any input shape; Softmax over the last axis)."""
from __future__ import annotations

import numpy as np

from .base import Layer, register


class _Elementwise(Layer):
    """y = f(x) element by element; the backward uses x or y (``uses_output``)."""

    uses_output = False

    def __init__(self, name=None, trainable=True):
        super().__init__(name, trainable)
        self._saved = None

    def forward(self, inputs, training):
        y = self._f(inputs[0])
        self._saved = y if self.uses_output else inputs[0]
        return y

    def backward(self, dy):
        return [self._df(dy, self._need_forward("_saved"))]

    def clear_cache(self):
        self._saved = None


@register
class ReLU(_Elementwise):
    """y = max(x, 0).  A graph lets the layer before apply it where that one can (``fusable_as``)."""

    fusable_as = "relu"

    def _f(self, x):
        return self.backend.relu_forward(x)

    def _df(self, dy, x):
        return self.backend.relu_backward(dy, x)


@register
class LeakyReLU(_Elementwise):
    """y = x if x > 0 else negative_slope * x."""

    def __init__(self, negative_slope=0.01, name=None, trainable=True):
        super().__init__(name, trainable)
        if not isinstance(negative_slope, (int, float)) or isinstance(negative_slope, bool):
            raise ValueError(f"{self.describe()}: negative_slope must be a number, got {negative_slope!r}")
        self.negative_slope = float(negative_slope)

    def _f(self, x):
        return self.backend.leaky_relu_forward(x, self.negative_slope)

    def _df(self, dy, x):
        return self.backend.leaky_relu_backward(dy, x, self.negative_slope)


@register
class Sigmoid(_Elementwise):
    """y = 1 / (1 + exp(-x))."""

    uses_output = True

    def _f(self, x):
        return self.backend.sigmoid_forward(x)

    def _df(self, dy, y):
        return self.backend.sigmoid_backward(dy, y)


@register
class Tanh(_Elementwise):
    """y = tanh(x)."""

    uses_output = True

    def _f(self, x):
        return self.backend.tanh_forward(x)

    def _df(self, dy, y):
        return self.backend.tanh_backward(dy, y)


@register
class Softmax(_Elementwise):
    """Softmax over the last axis of the sample: the features of a flat (F,) input, each row of W values of a
    (C, H, W) one.  Any shape -> the same shape.

    A graph that ends in Softmax is trained and evaluated with the cross-entropy on
    the Softmax's input (``Model.logits_node``); ``predict`` shows its output as is.
    """

    uses_output = True
    outputs_probabilities = True

    def flops(self):
        return 4 * int(np.prod(self.output_shape, dtype=np.int64))

    @staticmethod
    def _rows(a):
        last = a.shape[len(a.shape) - 1]      # (the CUDA simulator's shapes take no negative index)
        return a if len(a.shape) == 2 else a.reshape(a.size // last, last)

    def _f(self, x):
        return self.backend.softmax_forward(self._rows(x)).reshape(x.shape)

    def _df(self, dy, y):
        return self.backend.softmax_backward(self._rows(dy), self._rows(y)).reshape(y.shape)


#: activation names (Keras' ``activation=`` argument, ``Activation(name)``) -> layer class
ACTIVATIONS = {"relu": ReLU, "leaky_relu": LeakyReLU, "sigmoid": Sigmoid, "tanh": Tanh, "softmax": Softmax}


def Activation(activation, name=None):  # noqa: N802  (Keras' name for a layer factory)
    """Keras' ``layers.Activation("relu")``: the layer of that activation."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"Activation: unknown activation {activation!r}; known: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[activation](name=name)
