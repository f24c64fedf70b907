"""Layers that move values: Transpose (permute the sample's axes), Take (pick slices along an axis:
slicing, tiling, nearest resizing, reflect/edge padding) and Reduce (mean, sum or max over axes).

Axes count the batch as axis 0, as in ONNX; none of these layers moves or mixes the batch.
"""
from __future__ import annotations

import numpy as np

from .base import Layer, register


def _ints(layer, arg, v, minimum=None):
    if (not isinstance(v, (list, tuple)) or not v
            or not all(isinstance(a, (int, np.integer)) and not isinstance(a, bool) for a in v)
            or (minimum is not None and min(v) < minimum)):
        low = "" if minimum is None else f" >= {minimum}"
        raise ValueError(f"{layer.describe()}: {arg} must be a non-empty list of ints{low}, got {v!r}")
    return tuple(int(a) for a in v)


@register
class Transpose(Layer):
    """y = x.transpose(perm); ``perm`` permutes the axes of the batched tensor and keeps the batch first
    (perm[0] == 0): (N, g, C/g, H, W) with perm (0, 2, 1, 3, 4) is ShuffleNet's channel shuffle."""

    def __init__(self, perm=(0, 1), name=None, trainable=True):
        super().__init__(name, trainable)
        self.perm = _ints(self, "perm", perm)
        if sorted(self.perm) != list(range(len(self.perm))) or self.perm[0] != 0:
            raise ValueError(f"{self.describe()}: perm must be a permutation of 0..{len(self.perm) - 1} keeping "
                             f"the batch axis 0 first, got {perm!r}")

    def _build(self, shapes):
        s = shapes[0]
        if len(s) + 1 != len(self.perm):
            raise self.shape_error(f"perm {self.perm} needs a sample of {len(self.perm) - 1} axes", s)
        return tuple(s[p - 1] for p in self.perm[1:])

    def flops(self):
        return 0

    def forward(self, inputs, training):
        return self.backend.transpose_forward(inputs[0], self.perm)

    def backward(self, dy):
        return [self.backend.transpose_backward(dy, self.perm)]


@register
class Take(Layer):
    """y = the slices ``indices`` of x along ``axis`` (>= 1; repeats allowed), numpy's take: slicing with
    any step, tiling, nearest-neighbour resizing and reflect or edge padding are all one Take per axis."""

    def __init__(self, axis=1, indices=(0,), name=None, trainable=True):
        super().__init__(name, trainable)
        if not isinstance(axis, int) or isinstance(axis, bool) or axis < 1:
            raise ValueError(f"{self.describe()}: axis must be an int >= 1 (axis 0 is the batch), got {axis!r}")
        self.axis, self.indices = axis, _ints(self, "indices", indices, 0)

    def _build(self, shapes):
        s = shapes[0]
        if self.axis > len(s):
            raise self.shape_error(f"axis {self.axis} is not an axis of the sample", s)
        size = s[self.axis - 1]
        if max(self.indices) >= size:
            raise self.shape_error(f"index {max(self.indices)} is out of range along axis {self.axis}", s)
        return s[:self.axis - 1] + (len(self.indices),) + s[self.axis:]

    def flops(self):
        return 0

    def forward(self, inputs, training):
        return self.backend.take_forward(inputs[0], self.indices, self.axis)

    def backward(self, dy):
        return [self.backend.take_backward(dy, self.indices, self.axis, self.input_shapes[0][self.axis - 1])]


@register
class Reduce(Layer):
    """The mean, sum or max of x over ``axes`` (>= 1), kept as size-1 axes when ``keepdims``.

    Runs on the backend's transpose, global average pooling and max pooling (the reduced axes moved
    last and seen as one pooling window), so it needs no kernel of its own.
    """

    def __init__(self, fn="mean", axes=(2, 3), keepdims=True, name=None, trainable=True):
        super().__init__(name, trainable)
        if fn not in ("mean", "sum", "max"):
            raise ValueError(f"{self.describe()}: fn must be 'mean', 'sum' or 'max', got {fn!r}")
        self.fn, self.axes, self.keepdims = fn, tuple(sorted(set(_ints(self, "axes", axes, 1)))), bool(keepdims)
        self._x_shape = None

    def _build(self, shapes):
        s = shapes[0]
        if max(self.axes) > len(s):
            raise self.shape_error(f"axes {self.axes} are not axes of the sample", s)
        if self.keepdims:
            return tuple(1 if i + 1 in self.axes else d for i, d in enumerate(s))
        out = tuple(d for i, d in enumerate(s) if i + 1 not in self.axes)
        if not out:
            raise self.shape_error("reducing every axis of the sample needs keepdims=True", s)
        return out

    def _plan(self, x_shape):
        """(perm moving the reduced axes last, rows M, reduced count R) for a batch of shape x_shape."""
        kept = [i for i in range(1, len(x_shape)) if i not in self.axes]
        perm = (0, *kept, *self.axes)
        R = int(np.prod([x_shape[a] for a in self.axes], dtype=np.int64))
        return perm, int(np.prod(x_shape, dtype=np.int64)) // R, R

    def forward(self, inputs, training):
        x, be = inputs[0], self.backend
        self._x_shape = tuple(int(d) for d in x.shape)
        perm, M, R = self._plan(self._x_shape)
        if perm != tuple(range(len(perm))):
            x = be.transpose_forward(x, perm)
        x4 = x.reshape(1, M, R, 1)
        if self.fn == "max":
            y, self._argmax = be.max_pool2d_forward(x4, (R, 1), (R, 1), (0, 0))
        else:
            y = be.global_avg_pool2d_forward(x4)
            if self.fn == "sum":
                y = be.unary_forward(y, "affine", float(R), 0.0)
        return y.reshape(self._x_shape[0], *self.output_shape)

    def backward(self, dy):
        be = self.backend
        perm, M, R = self._plan(self._need_forward("_x_shape"))
        dy = dy.reshape(1, M, 1, 1)
        if self.fn == "max":
            dx = be.max_pool2d_backward(dy, self._argmax, (1, M, R, 1))
        else:
            if self.fn == "sum":
                dy = be.unary_forward(dy, "affine", float(R), 0.0)
            dx = be.global_avg_pool2d_backward(dy, (1, M, R, 1))
        dx = dx.reshape(*(self._x_shape[p] for p in perm))
        return [dx if perm == tuple(range(len(perm))) else be.transpose_backward(dx, perm)]

    def clear_cache(self):
        self._x_shape = None

