"""CUDA constant 2-D padding (and cropping), NCHW float32: the twin of ``kernels/cpu/pad.py``.

One thread per output cell (grid-stride): it copies its input cell when that
cell exists and writes ``value`` otherwise.  A negative pad crops, so
``pad2d_backward`` is the forward with the pads negated and value 0.
"""
from __future__ import annotations

import numpy as np
from numba import cuda

from ._common import empty, grid_1d

__all__ = ["pad2d_forward", "pad2d_backward"]


@cuda.jit
def pad2d_kernel(x, t, l, value, y):
    """y[p, i, j] = x[p, i - t, j - l] where that cell exists, else value.

    x : (P, H, W) float32, y : (P, OH, OW) float32, t, l : int (top and left pads, negative crops),
    value : float32.
    """
    P, H, W = x.shape
    OH, OW = y.shape[1], y.shape[2]
    for k in range(cuda.grid(1), P * OH * OW, cuda.gridsize(1)):
        p, r = k // (OH * OW), k % (OH * OW)
        i, j = r // OW - t, r % OW - l
        if 0 <= i < H and 0 <= j < W:
            y[p, r // OW, r % OW] = x[p, i, j]
        else:
            y[p, r // OW, r % OW] = value


def pad2d_forward(x, pads=(0, 0, 0, 0), value=0.0):
    """x : (N, C, H, W) float32 device array, pads = (top, bottom, left, right) (negative crops)
    -> y : (N, C, H + top + bottom, W + left + right) float32 device array."""
    t, b, l, r = (int(p) for p in pads)
    N, C, H, W = x.shape
    OH, OW = H + t + b, W + l + r
    y = empty((N, C, OH, OW), np.float32)
    if y.size:
        pad2d_kernel[grid_1d(y.size)](x.reshape(N * C, H, W), t, l, np.float32(value), y.reshape(N * C, OH, OW))
    return y


def pad2d_backward(dy, pads=(0, 0, 0, 0)):
    """dy : (N, C, H + top + bottom, W + left + right) float32 -> dx : (N, C, H, W) float32 (device arrays)."""
    t, b, l, r = (int(p) for p in pads)
    return pad2d_forward(dy, (-t, -b, -l, -r), 0.0)
