"""Point-wise math layers: Unary (one function of the input), Binary (two inputs, broadcasting) and
BinaryConst (the input and a stored constant), e.g. from ONNX Mul/Sub/Div/Pow/Exp/Clip/HardSwish."""
from __future__ import annotations

import numpy as np

from ..kernels.pointwise import BINARY, UNARY, broadcast_shape
from .base import Layer, register, shape_str


def _fn(layer, fn, table):
    if fn not in table:
        raise ValueError(f"{layer.describe()}: fn must be one of {sorted(table)}, got {fn!r}")
    return fn


def _number(layer, arg, v):
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not np.isfinite(v):
        raise ValueError(f"{layer.describe()}: {arg} must be a finite number, got {v!r}")
    return float(v)


@register
class Unary(Layer):
    """y = fn(x) element by element, any shape; ``alpha`` and ``beta`` are the function's parameters.

    fn: neg, abs, exp, log, sqrt, pow (x ** alpha), clip (to [alpha, beta]; ReLU6 is clip 0, 6),
    hard_sigmoid (clip(alpha * x + beta, 0, 1)), hard_swish (x * hard_sigmoid), elu (alpha), selu
    (alpha, gamma = beta), softplus, softsign, affine (alpha * x + beta), reciprocal.
    """

    def __init__(self, fn="neg", alpha=0.0, beta=0.0, name=None, trainable=True):
        super().__init__(name, trainable)
        self.fn = _fn(self, fn, UNARY)
        self.alpha, self.beta = _number(self, "alpha", alpha), _number(self, "beta", beta)
        self._x = self._y = None

    def forward(self, inputs, training):
        self._x = inputs[0]
        self._y = self.backend.unary_forward(self._x, self.fn, self.alpha, self.beta)
        return self._y

    def backward(self, dy):
        x = self._need_forward("_x")
        return [self.backend.unary_backward(dy, x, self._y, self.fn, self.alpha, self.beta)]

    def clear_cache(self):
        self._x = self._y = None


@register
class Binary(Layer):
    """y = x0 fn x1 with broadcasting between the two inputs' samples (of one rank; the batch is shared).

    fn: add, sub, mul, div, pow.  E.g. x * sigmoid(x) (SiLU) from a Sigmoid and a Binary("mul").
    """

    num_inputs = 2

    def __init__(self, fn="mul", name=None, trainable=True):
        super().__init__(name, trainable)
        self.fn = _fn(self, fn, BINARY)
        self._xs = None

    def _build(self, shapes):
        a, b = shapes
        if len(a) != len(b):
            raise ValueError(f"{self.describe()}: inputs of shapes {shape_str(a)} and {shape_str(b)} need the "
                             f"same rank (the batch axis is shared)")
        try:
            return broadcast_shape(a, b)
        except ValueError:
            raise ValueError(f"{self.describe()}: input shapes {shape_str(a)} and {shape_str(b)} do not "
                             f"broadcast") from None

    def forward(self, inputs, training):
        self._xs = list(inputs)
        return self.backend.binary_forward(inputs[0], inputs[1], self.fn)

    def backward(self, dy):
        a, b = self._need_forward("_xs")
        return list(self.backend.binary_backward(dy, a, b, self.fn))

    def clear_cache(self):
        self._xs = None


@register
class BinaryConst(Layer):
    """y = x fn c (or c fn x with ``reverse``) for a stored constant c (buffer ``constant``, not trained).

    ``shape`` is the constant's shape, aligned with the sample's trailing axes (numpy broadcasting;
    (C, 1, 1) is one value per channel of a (C, H, W) sample).  fn: add, sub, mul, div, pow.
    """

    def __init__(self, fn="mul", shape=(1,), reverse=False, name=None, trainable=True):
        super().__init__(name, trainable)
        self.fn = _fn(self, fn, BINARY)
        if (not isinstance(shape, (list, tuple)) or not shape
                or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 1 for d in shape)):
            raise ValueError(f"{self.describe()}: shape must be a non-empty list of ints >= 1, got {shape!r}")
        self.shape, self.reverse = tuple(int(d) for d in shape), bool(reverse)
        self._x = None

    def _build(self, shapes):
        s = shapes[0]
        if len(self.shape) > len(s):
            raise self.shape_error(f"the constant of shape {shape_str(self.shape)} has more axes than the sample",
                                   s)
        try:
            out = broadcast_shape(s, self.shape)
        except ValueError:
            raise self.shape_error(f"does not broadcast with the constant of shape {shape_str(self.shape)}",
                                   s) from None
        self.add_buffer("constant", self.shape, 0.0 if self.fn in ("add", "sub") else 1.0)
        return out

    def forward(self, inputs, training):
        self._x = inputs[0]
        c = self.buffers["constant"]
        a, b = (c, self._x) if self.reverse else (self._x, c)
        return self.backend.binary_forward(a, b, self.fn)

    def backward(self, dy):
        x = self._need_forward("_x")
        c = self.buffers["constant"]
        if self.reverse:
            return [self.backend.binary_backward(dy, c, x, self.fn, need_a=False)[1]]
        return [self.backend.binary_backward(dy, x, c, self.fn, need_b=False)[0]]

    def clear_cache(self):
        self._x = None
