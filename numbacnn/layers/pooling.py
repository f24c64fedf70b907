"""Pooling layers: MaxPool2D, AvgPool2D, GlobalAvgPool2D (floor mode, PyTorch semantics)."""
from __future__ import annotations

from .base import Layer, as_pair, as_padding, out_size, register


class _Pool2D(Layer):
    """Shared geometry: ``pool_size``, ``strides`` (None = pool_size), ``padding``.

    ``padding`` is an int, a pair or a symmetric 4-list (top, bottom, left,
    right), at most half the window (as in PyTorch).  The normalised pairs are
    public: ``kernel_hw``, ``stride_hw``, ``padding_hw``.
    """

    def __init__(self, pool_size=2, strides=None, padding=0, name=None, trainable=True):
        super().__init__(name, trainable)
        self.pool_size, self.strides, self.padding = pool_size, strides, padding
        self.kernel_hw = as_pair(self, "pool_size", pool_size, 1)
        self.stride_hw = self.kernel_hw if strides is None else as_pair(self, "strides", strides, 1)
        self.padding_hw = as_padding(self, padding)
        if self.padding_hw[0] > self.kernel_hw[0] // 2 or self.padding_hw[1] > self.kernel_hw[1] // 2:
            raise ValueError(f"{self.describe()}: padding {self.padding_hw} must be at most half the window "
                             f"{self.kernel_hw}")
        self._x_shape = None

    def _build(self, shapes):
        s = shapes[0]
        if len(s) != 3:
            raise self.shape_error("needs a (C, H, W) input", s, "(C, H, W)")
        C, H, W = s
        k, st, p = self.kernel_hw, self.stride_hw, self.padding_hw
        OH, OW = out_size(H, k[0], st[0], p[0]), out_size(W, k[1], st[1], p[1])
        if OH < 1 or OW < 1:
            raise self.shape_error(f"window {k} with padding {p} does not fit", s,
                                   f"H >= {k[0] - 2 * p[0]} and W >= {k[1] - 2 * p[1]}")
        return C, OH, OW

    def flops(self):
        C, OH, OW = self.output_shape
        return C * OH * OW * self.kernel_hw[0] * self.kernel_hw[1]

    def clear_cache(self):
        self._x_shape = None


@register
class MaxPool2D(_Pool2D):
    """y[n, c, i, j] = max of the window; padded cells are -inf.  (N, C, H, W) -> (N, C, OH, OW)."""

    def forward(self, inputs, training):
        x = inputs[0]
        y, self._argmax = self.backend.max_pool2d_forward(x, self.kernel_hw, self.stride_hw, self.padding_hw)
        self._x_shape = tuple(x.shape)
        return y

    def backward(self, dy):
        x_shape = self._need_forward("_x_shape")
        return [self.backend.max_pool2d_backward(dy, self._argmax, x_shape)]

    def clear_cache(self):
        self._x_shape = self._argmax = None


@register
class AvgPool2D(_Pool2D):
    """Window mean; ``count_include_pad`` counts padded cells in the divisor (PyTorch's default)."""

    def __init__(self, pool_size=2, strides=None, padding=0, count_include_pad=True, name=None, trainable=True):
        super().__init__(pool_size, strides, padding, name, trainable)
        self.count_include_pad = bool(count_include_pad)

    def forward(self, inputs, training):
        x = inputs[0]
        self._x_shape = tuple(x.shape)
        return self.backend.avg_pool2d_forward(x, self.kernel_hw, self.stride_hw, self.padding_hw,
                                               self.count_include_pad)

    def backward(self, dy):
        x_shape = self._need_forward("_x_shape")
        return [self.backend.avg_pool2d_backward(dy, x_shape, self.kernel_hw, self.stride_hw, self.padding_hw,
                                                 self.count_include_pad)]


@register
class GlobalAvgPool2D(Layer):
    """Mean over H and W.  (N, C, H, W) -> (N, C, 1, 1) (follow with Flatten before Dense)."""

    def __init__(self, name=None, trainable=True):
        super().__init__(name, trainable)
        self._x_shape = None

    def _build(self, shapes):
        s = shapes[0]
        if len(s) != 3:
            raise self.shape_error("needs a (C, H, W) input", s, "(C, H, W)")
        return s[0], 1, 1

    def flops(self):
        return int(self.input_shapes[0][0] * self.input_shapes[0][1] * self.input_shapes[0][2])

    def forward(self, inputs, training):
        x = inputs[0]
        self._x_shape = tuple(x.shape)
        return self.backend.global_avg_pool2d_forward(x)

    def backward(self, dy):
        return [self.backend.global_avg_pool2d_backward(dy, self._need_forward("_x_shape"))]

    def clear_cache(self):
        self._x_shape = None
