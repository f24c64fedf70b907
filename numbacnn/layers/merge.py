"""Layers that join or widen branches: Add, Concatenate (ResNet, Inception) and ChannelPad."""
from __future__ import annotations

import numpy as np

from .base import Layer, register, shape_str


@register
class Add(Layer):
    """y = x0 + x1 + ...; every input has the same shape.  A ReLU after it is fused in (``absorbs``)."""

    num_inputs = None
    absorbs = ("relu",)

    def __init__(self, name=None, trainable=True):
        super().__init__(name, trainable)
        self._n = self._y = None

    def _build(self, shapes):
        for i, s in enumerate(shapes[1:], 1):
            if s != shapes[0]:
                raise ValueError(f"{self.describe()}: input {i} shape {shape_str(s)} does not match "
                                 f"input 0 shape {shape_str(shapes[0])}")
        return shapes[0]

    def flops(self):
        return (len(self.input_shapes) - 1) * int(np.prod(self.output_shape, dtype=np.int64))

    def forward(self, inputs, training):
        self._n = len(inputs)
        if self.fused_activation == "relu":
            self._y = self.backend.add_relu_forward(list(inputs))
            return self._y
        self._y = None
        return self.backend.add_forward(list(inputs))

    def backward(self, dy):
        # every input's gradient is dy itself, not a copy (two fresh 8 MB arrays per ResNet block);
        # Model.backward copies an aliased gradient before it sums another one into it
        n = self._need_forward("_n")
        if self._y is None or self.relu_grad_done:
            return [dy] * n
        return self.backend.add_relu_backward(dy, self._y, n)

    def clear_cache(self):
        self._n = self._y = None


@register
class Concatenate(Layer):
    """Join inputs along the channel axis (axis 1 of the batch): (C_i, H, W) -> (sum C_i, H, W).

    Works for flat (F_i,) inputs too.  All other dimensions must match.
    """

    num_inputs = None

    def __init__(self, name=None, trainable=True):
        super().__init__(name, trainable)
        self._sizes = None

    def _build(self, shapes):
        for i, s in enumerate(shapes[1:], 1):
            if len(s) != len(shapes[0]) or s[1:] != shapes[0][1:]:
                raise ValueError(f"{self.describe()}: input {i} shape {shape_str(s)} does not match input 0 "
                                 f"shape {shape_str(shapes[0])} outside the channel axis")
        self._sizes = [s[0] for s in shapes]
        return (sum(self._sizes),) + shapes[0][1:]

    def flops(self):
        return 0

    def forward(self, inputs, training):
        self._sizes = [int(x.shape[1]) for x in inputs]
        return self.backend.concat_forward(list(inputs))

    def backward(self, dy):
        return list(self.backend.concat_backward(dy, self._need_forward("_sizes")))


@register
class ChannelPad(Layer):
    """Zero channels around the input: (C, H, W) -> (before + C + after, H, W).

    With a stride-2 ``AvgPool2D(pool_size=1)`` in front this is ResNet's
    "option A" parameter-free shortcut.  One ``pad2d`` of the (N, 1, C, H * W) view (a single launch
    each way on a GPU; no zero arrays, no concatenation).
    """

    def __init__(self, before=0, after=0, name=None, trainable=True):
        super().__init__(name, trainable)
        for arg, v in (("before", before), ("after", after)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"{self.describe()}: {arg} must be an int >= 0, got {v!r}")
        self.before, self.after = before, after
        self._c = None

    def _build(self, shapes):
        return (self.before + shapes[0][0] + self.after,) + shapes[0][1:]

    def flops(self):
        return 0

    @staticmethod
    def _planes(a):
        """The (N, 1, C, rest) view that pads channels as rows of one plane."""
        n, c = int(a.shape[0]), int(a.shape[1])
        return a.reshape(n, 1, c, a.size // max(1, n * c))

    def forward(self, inputs, training):
        x = inputs[0]
        self._c = int(x.shape[1])
        if not (self.before or self.after):
            return self.backend.copy(x)
        y = self.backend.pad2d_forward(self._planes(x), (self.before, self.after, 0, 0))
        return y.reshape(x.shape[0], *self.output_shape)

    def backward(self, dy):
        c = self._need_forward("_c")
        if not (self.before or self.after):
            return [self.backend.copy(dy)]
        dx = self.backend.pad2d_backward(self._planes(dy), (self.before, self.after, 0, 0))
        return [dx.reshape(dy.shape[0], c, *self.output_shape[1:])]
