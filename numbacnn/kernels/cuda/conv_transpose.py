"""CUDA transposed 2-D convolution, NCHW float32: the twin of ``kernels/cpu/conv_transpose.py``.

Weights are (C, K // groups, KH, KW).  The forward and the input gradient give
each output cell one thread, which gathers: output cell (oh, ow) of channel k
receives input cell (i, j) through tap (kh, kw) when oh + padding - kh * dilation
= i * stride.  The weight gradient gives each weight one block, whose threads
sum strided slices of the batch and input grid in registers, combined by
``block_sum`` (no atomics, deterministic); the bias gradient is
``channel_sum``.
"""
from __future__ import annotations

import numpy as np
from numba import cuda, float32

from ._common import MAX_BLOCKS, RED_TPB, as3d, block_sum, channel_sum, dummy_f32, empty, grid_1d, reduce_tpb, stream

__all__ = ["conv_transpose2d_forward", "conv_transpose2d_backward"]


@cuda.jit
def conv_transpose2d_forward_kernel(x, w, b, has_bias, sh, sw, ph, pw, dh, dw, groups, y):
    """y[n, k, oh, ow] = b[k] + sum over c of the group, kh, kw of x[n, c, i, j] * w[c, k % Kg, kh, kw]
    where oh = i * sh + kh * dh - ph, ow = j * sw + kw * dw - pw.
    x : (N, C, H, W), w : (C, Kg, KH, KW), b : (K,), y : (N, K, OH, OW) float32; the rest int64 / bool."""
    N, C, H, W = x.shape
    Kg, KH, KW = w.shape[1], w.shape[2], w.shape[3]
    K, OH, OW = y.shape[1], y.shape[2], y.shape[3]
    Cg = C // groups
    for t in range(cuda.grid(1), N * K * OH * OW, cuda.gridsize(1)):
        n, r = t // (K * OH * OW), t % (K * OH * OW)
        k, r = r // (OH * OW), r % (OH * OW)
        oh, ow = r // OW, r % OW
        g, o = k // Kg, k % Kg
        acc = b[k] if has_bias else float32(0)
        for kh in range(KH):
            u = oh + ph - kh * dh
            if u < 0 or u % sh != 0 or u // sh >= H:
                continue
            for kw in range(KW):
                v = ow + pw - kw * dw
                if v < 0 or v % sw != 0 or v // sw >= W:
                    continue
                for c in range(g * Cg, (g + 1) * Cg):
                    acc += x[n, c, u // sh, v // sw] * w[c, o, kh, kw]
        y[n, k, oh, ow] = acc


@cuda.jit
def conv_transpose2d_backward_input_kernel(dy, w, sh, sw, ph, pw, dh, dw, groups, dx):
    """dx[n, c, i, j] = sum over k of the group, kh, kw of dy[n, k, i * sh + kh * dh - ph, j * sw + kw * dw - pw]
    * w[c, k % Kg, kh, kw] (cells inside dy).  dy : (N, K, OH, OW), w : (C, Kg, KH, KW), dx : (N, C, H, W)."""
    N, C, H, W = dx.shape
    Kg, KH, KW = w.shape[1], w.shape[2], w.shape[3]
    OH, OW = dy.shape[2], dy.shape[3]
    Cg = C // groups
    for t in range(cuda.grid(1), N * C * H * W, cuda.gridsize(1)):
        n, r = t // (C * H * W), t % (C * H * W)
        c, r = r // (H * W), r % (H * W)
        i, j = r // W, r % W
        g = c // Cg
        acc = float32(0)
        for kh in range(KH):
            oh = i * sh + kh * dh - ph
            if oh < 0 or oh >= OH:
                continue
            for kw in range(KW):
                ow = j * sw + kw * dw - pw
                if ow < 0 or ow >= OW:
                    continue
                for o in range(Kg):
                    acc += dy[n, g * Kg + o, oh, ow] * w[c, o, kh, kw]
        dx[n, c, i, j] = acc


@cuda.jit
def conv_transpose2d_backward_weight_kernel(dy, x, sh, sw, ph, pw, dh, dw, groups, dwt):
    """One block per weight (c, o, kh, kw): the sum over n, i, j of x[n, c, i, j] * dy[n, k, oh, ow] where the
    cell landed.  dy : (N, K, OH, OW), x : (N, C, H, W), dwt : (C, Kg, KH, KW) float32."""
    buf = cuda.shared.array(RED_TPB, float32)
    N, C, H, W = x.shape
    Kg, KH, KW = dwt.shape[1], dwt.shape[2], dwt.shape[3]
    OH, OW = dy.shape[2], dy.shape[3]
    Cg = C // groups
    for q in range(cuda.blockIdx.x, C * Kg * KH * KW, cuda.gridDim.x):
        c, r = q // (Kg * KH * KW), q % (Kg * KH * KW)
        o, r = r // (KH * KW), r % (KH * KW)
        kh, kw = r // KW, r % KW
        k = (c // Cg) * Kg + o
        acc = float32(0)
        for m in range(cuda.threadIdx.x, N * H * W, cuda.blockDim.x):
            n, s = m // (H * W), m % (H * W)
            i, j = s // W, s % W
            oh, ow = i * sh + kh * dh - ph, j * sw + kw * dw - pw
            if 0 <= oh < OH and 0 <= ow < OW:
                acc += x[n, c, i, j] * dy[n, k, oh, ow]
        total = block_sum(buf, acc)
        if cuda.threadIdx.x == 0:
            dwt[c, o, kh, kw] = total


def conv_transpose2d_forward(x, w, b=None, stride=(1, 1), padding=(0, 0), output_padding=(0, 0), dilation=(1, 1),
                             groups=1):
    """x : (N, C, H, W), w : (C, K // groups, KH, KW), b : (K,) or None (device float32)
    -> y : (N, K, OH, OW) device float32, OH = (H - 1) * stride - 2 * padding + dilation * (KH - 1)
    + output_padding + 1."""
    N, C, H, W = x.shape
    K, KH, KW = w.shape[1] * groups, w.shape[2], w.shape[3]
    OH = (H - 1) * stride[0] - 2 * padding[0] + dilation[0] * (KH - 1) + output_padding[0] + 1
    OW = (W - 1) * stride[1] - 2 * padding[1] + dilation[1] * (KW - 1) + output_padding[1] + 1
    y = empty((N, K, OH, OW), np.float32)
    conv_transpose2d_forward_kernel[grid_1d(y.size)](x, w, dummy_f32() if b is None else b, b is not None,
                                                     stride[0], stride[1], padding[0], padding[1], dilation[0],
                                                     dilation[1], groups, y)
    return y


def conv_transpose2d_backward(dy, x, w, stride=(1, 1), padding=(0, 0), output_padding=(0, 0), dilation=(1, 1),
                              groups=1, has_bias=True):
    """dy : (N, K, OH, OW), x : (N, C, H, W), w : (C, K // groups, KH, KW) device float32
    -> (dx like x, dw like w, db (K,) or None), device float32."""
    geo = (stride[0], stride[1], padding[0], padding[1], dilation[0], dilation[1], groups)
    dx = empty(x.shape, np.float32)
    conv_transpose2d_backward_input_kernel[grid_1d(dx.size)](dy, w, *geo, dx)
    dwt = empty(w.shape, np.float32)
    N, C, H, W = x.shape
    conv_transpose2d_backward_weight_kernel[min(dwt.size, MAX_BLOCKS), reduce_tpb(N * H * W), stream()](
        dy, x, *geo, dwt)
    return dx, dwt, (channel_sum(as3d(dy)) if has_bias else None)
