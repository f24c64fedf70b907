"""CUDA pooling: max (with argmax), average, global average.  NCHW float32.

Forward kernels run one thread per output cell.  Backward:

* max pooling scatters dy to the argmax cells with ``cuda.atomic.add``: the
  backward API gets no window geometry to gather with, and overlapping windows
  (stride < kernel) may pick the same cell, so atomics are what makes the sum
  correct (only the order of additions to one cell may vary);
* average pooling gathers: one thread per dx cell sums the windows covering it;
* global average pooling is elementwise.
"""
from __future__ import annotations

import math

import numpy as np
from numba import cuda, float32, int64

from ._common import channel_sum, empty, grid_1d
from ..geometry import out_size
from .elementwise import zeros


@cuda.jit
def max_pool2d_forward_kernel(x, KH, KW, sh, sw, ph, pw, y, argmax):
    """Max over each window (padding counts as -inf; ties go to the first cell in row-major order).

    x : (N, C, H, W) float32, y : (N, C, OH, OW) float32,
    argmax : (N, C, OH, OW) int64, the flat index ``h * W + w`` within the (n, c) plane.
    """
    N, C, H, W = x.shape
    OH, OW = y.shape[2], y.shape[3]
    for idx in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        ow = idx % OW
        oh = (idx // OW) % OH
        c = (idx // (OW * OH)) % C
        n = idx // (OW * OH * C)
        best = float32(-math.inf)
        arg = int64(0)
        for i in range(KH):
            ih = oh * sh - ph + i
            if 0 <= ih < H:
                for j in range(KW):
                    iw = ow * sw - pw + j
                    if 0 <= iw < W and x[n, c, ih, iw] > best:
                        best = x[n, c, ih, iw]
                        arg = ih * W + iw
        y[n, c, oh, ow] = best
        argmax[n, c, oh, ow] = arg


@cuda.jit
def max_pool2d_backward_kernel(dy, argmax, dx):
    """dx[nc, argmax] += dy, by atomics (windows may overlap).

    dy : (NC, OHW) float32, argmax : (NC, OHW) int64, dx : (NC, HW) float32, zeroed.
    """
    NC, OHW = dy.shape
    for idx in range(cuda.grid(1), NC * OHW, cuda.gridsize(1)):
        nc = idx // OHW
        o = idx % OHW
        cuda.atomic.add(dx, (nc, argmax[nc, o]), dy[nc, o])


@cuda.jit(device=True)
def _avg_divisor(oh, ow, H, W, KH, KW, sh, sw, ph, pw, count_include_pad):
    """Divisor of output cell (oh, ow) as float32."""
    if count_include_pad:
        return float32(KH * KW)
    h0, w0 = oh * sh - ph, ow * sw - pw
    hc = min(h0 + KH, H) - max(h0, 0)
    wc = min(w0 + KW, W) - max(w0, 0)
    return float32(hc * wc)


@cuda.jit
def avg_pool2d_forward_kernel(x, KH, KW, sh, sw, ph, pw, count_include_pad, y):
    """Mean over each window.  x : (N, C, H, W) float32, y : (N, C, OH, OW) float32."""
    N, C, H, W = x.shape
    OH, OW = y.shape[2], y.shape[3]
    for idx in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        ow = idx % OW
        oh = (idx // OW) % OH
        c = (idx // (OW * OH)) % C
        n = idx // (OW * OH * C)
        acc = float32(0)
        for i in range(KH):
            ih = oh * sh - ph + i
            if 0 <= ih < H:
                for j in range(KW):
                    iw = ow * sw - pw + j
                    if 0 <= iw < W:
                        acc += x[n, c, ih, iw]
        y[n, c, oh, ow] = acc / _avg_divisor(oh, ow, H, W, KH, KW, sh, sw, ph, pw, count_include_pad)


@cuda.jit
def avg_pool2d_backward_kernel(dy, KH, KW, sh, sw, ph, pw, count_include_pad, dx):
    """dx for average pooling; one thread per dx cell gathers the windows covering it.

    dy : (N, C, OH, OW) float32, dx : (N, C, H, W) float32.
    """
    N, C, H, W = dx.shape
    OH, OW = dy.shape[2], dy.shape[3]
    for idx in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        iw = idx % W
        ih = (idx // W) % H
        c = (idx // (W * H)) % C
        n = idx // (W * H * C)
        acc = float32(0)
        for i in range(KH):
            th = ih + ph - i
            if th >= 0 and th % sh == 0 and th // sh < OH:
                oh = th // sh
                for j in range(KW):
                    tw = iw + pw - j
                    if tw >= 0 and tw % sw == 0 and tw // sw < OW:
                        ow = tw // sw
                        acc += dy[n, c, oh, ow] / _avg_divisor(oh, ow, H, W, KH, KW, sh, sw, ph, pw,
                                                               count_include_pad)
        dx[n, c, ih, iw] = acc


@cuda.jit
def global_avg_pool2d_backward_kernel(dy, hw, dx):
    """dx[nc, s] = dy[nc] / hw.  dy : (NC,) float32, hw : float32 (= H * W), dx : (NC, HW) float32."""
    NC, HW = dx.shape
    for idx in range(cuda.grid(1), NC * HW, cuda.gridsize(1)):
        dx[idx // HW, idx % HW] = dy[idx // HW] / hw


def max_pool2d_forward(x, kernel=(2, 2), stride=(2, 2), padding=(0, 0)):
    """x : (N, C, H, W) -> (y (N, C, OH, OW) float32, argmax (N, C, OH, OW) int64); device arrays."""
    N, C, H, W = x.shape
    OH = out_size(H, kernel[0], stride[0], padding[0])
    OW = out_size(W, kernel[1], stride[1], padding[1])
    y = empty((N, C, OH, OW), np.float32)
    argmax = empty((N, C, OH, OW), np.int64)
    max_pool2d_forward_kernel[grid_1d(y.size)](x, kernel[0], kernel[1], stride[0], stride[1], padding[0],
                                               padding[1], y, argmax)
    return y, argmax


def max_pool2d_backward(dy, argmax, x_shape):
    """dy, argmax : (N, C, OH, OW) -> dx : x_shape; device arrays."""
    N, C, H, W = (int(s) for s in x_shape)
    dx = zeros((N, C, H, W))
    OHW = dy.shape[2] * dy.shape[3]
    max_pool2d_backward_kernel[grid_1d(dy.size)](dy.reshape(N * C, OHW), argmax.reshape(N * C, OHW),
                                                 dx.reshape(N * C, H * W))
    return dx


def avg_pool2d_forward(x, kernel=(2, 2), stride=(2, 2), padding=(0, 0), count_include_pad=True):
    """x : (N, C, H, W) -> y : (N, C, OH, OW); device float32."""
    N, C, H, W = x.shape
    OH = out_size(H, kernel[0], stride[0], padding[0])
    OW = out_size(W, kernel[1], stride[1], padding[1])
    y = empty((N, C, OH, OW), np.float32)
    avg_pool2d_forward_kernel[grid_1d(y.size)](x, kernel[0], kernel[1], stride[0], stride[1], padding[0],
                                               padding[1], bool(count_include_pad), y)
    return y


def avg_pool2d_backward(dy, x_shape, kernel=(2, 2), stride=(2, 2), padding=(0, 0), count_include_pad=True):
    """dy : (N, C, OH, OW) -> dx : x_shape; device float32."""
    dx = empty(tuple(int(s) for s in x_shape), np.float32)
    avg_pool2d_backward_kernel[grid_1d(dx.size)](dy, kernel[0], kernel[1], stride[0], stride[1], padding[0],
                                                 padding[1], bool(count_include_pad), dx)
    return dx


def global_avg_pool2d_forward(x):
    """x : (N, C, H, W) -> y : (N, C, 1, 1), one block per (n, c) plane reduces it."""
    N, C, H, W = x.shape
    y = channel_sum(x.reshape(1, N * C, H * W), H * W)
    return y.reshape(N, C, 1, 1)


def global_avg_pool2d_backward(dy, x_shape):
    """dy : (N, C, 1, 1) -> dx : x_shape = (N, C, H, W), dy / (H * W) everywhere."""
    N, C, H, W = (int(s) for s in x_shape)
    dx = empty((N, C, H, W), np.float32)
    global_avg_pool2d_backward_kernel[grid_1d(dx.size)](dy.reshape(N * C), np.float32(H * W),
                                                        dx.reshape(N * C, H * W))
    return dx


__all__ = ["max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward", "avg_pool2d_backward",
           "global_avg_pool2d_forward", "global_avg_pool2d_backward"]
