"""Constant 2-D padding (and cropping) on the CPU, NCHW float32.

``pad2d_forward`` writes each output plane whole: rows above and below the
copied block and the columns left and right of it get ``value``, the block in
between is one contiguous row copy per input row.  A negative pad crops, so
``pad2d_backward`` is the forward with the pads negated and value 0.
``prange`` runs over the ``N * C`` independent planes.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["pad2d_forward", "pad2d_backward"]


@njit(cache=True, parallel=True)
def _pad_planes(x, t, l, value, y):
    """y[p, i, j] = x[p, i - t, j - l] where that cell exists, else value.

    x : (P, H, W) float32, y : (P, OH, OW) float32 (OH = H + t + b, OW = W + l + r).
    """
    P, H, W = x.shape
    OH, OW = y.shape[1], y.shape[2]
    i0, i1 = max(t, 0), min(OH, H + t)          # output rows holding input rows
    j0, j1 = max(l, 0), min(OW, W + l)          # output columns holding input columns
    for p in prange(P):
        for i in range(OH):
            if i < i0 or i >= i1:
                y[p, i, :] = value
                continue
            y[p, i, :j0] = value
            y[p, i, j0:j1] = x[p, i - t, j0 - l:j1 - l]
            y[p, i, j1:] = value


def pad2d_forward(x, pads=(0, 0, 0, 0), value=0.0):
    """x : (N, C, H, W) float32, pads = (top, bottom, left, right) (negative crops)
    -> y : (N, C, H + top + bottom, W + left + right) float32."""
    t, b, l, r = (int(p) for p in pads)
    N, C, H, W = x.shape
    x = np.ascontiguousarray(x)
    y = np.empty((N, C, H + t + b, W + l + r), dtype=x.dtype)
    _pad_planes(x.reshape(N * C, H, W), t, l, np.float32(value), y.reshape(N * C, H + t + b, W + l + r))
    return y


def pad2d_backward(dy, pads=(0, 0, 0, 0)):
    """dy : (N, C, H + top + bottom, W + left + right) float32 -> dx : (N, C, H, W) float32."""
    t, b, l, r = (int(p) for p in pads)
    return pad2d_forward(dy, (-t, -b, -l, -r), 0.0)
