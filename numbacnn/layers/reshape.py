"""Reshape: a per-sample view change, e.g. (F,) <-> (C, 1, 1) around an imported ONNX head."""
from __future__ import annotations

import numpy as np

from .base import Layer, register, shape_str


@register
class Reshape(Layer):
    """(N, *in_shape) -> (N, *target_shape) by ``.reshape`` (a view); sizes must match.

    ``target_shape`` excludes the batch dimension and holds ints >= 1 (no -1).
    """

    reshapes_only = True

    def __init__(self, target_shape=(1,), name=None, trainable=True):
        super().__init__(name, trainable)
        if (not isinstance(target_shape, (list, tuple)) or not target_shape
                or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 1
                           for d in target_shape)):
            raise ValueError(f"{self.describe()}: target_shape must be a non-empty list of ints >= 1, "
                             f"got {target_shape!r}")
        self.target_shape = tuple(int(d) for d in target_shape)
        self._x_shape = None

    def _build(self, shapes):
        s = shapes[0]
        if int(np.prod(s, dtype=np.int64)) != int(np.prod(self.target_shape, dtype=np.int64)):
            raise self.shape_error(f"cannot reshape to {shape_str(self.target_shape)}", s,
                                   f"{int(np.prod(self.target_shape, dtype=np.int64))} values per sample")
        return self.target_shape

    def flops(self):
        return 0

    def forward(self, inputs, training):
        x = inputs[0]
        self._x_shape = tuple(int(d) for d in x.shape)
        return x.reshape(self._x_shape[0], *self.target_shape)

    def backward(self, dy):
        return [dy.reshape(*self._need_forward("_x_shape"))]

    def clear_cache(self):
        self._x_shape = None
