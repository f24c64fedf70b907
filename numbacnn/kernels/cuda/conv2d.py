"""CUDA 2-D convolution (cross-correlation, PyTorch semantics), NCHW / OIHW.

Forward: each block computes a (TH, TW) tile of one output plane (n, k).  For
every input channel of k's group the block first stages the input region its
tile reads, ``((TH - 1) * sh + (KH - 1) * dh + 1) x (same for W)``, in shared
memory (zeros where it falls in the padding), then every thread sums its
KH * KW taps from there: each input value is read from global memory once per
block instead of once per tap.  The launcher picks the tile so the region fits
the ``REGION x REGION`` shared array; a kernel whose extent does not fit
(dilated or very large kernels) uses the direct kernel, one thread per output.

Backward input gathers: one thread per dx element sums the dy cells whose
windows cover it, so no two threads write the same cell.  Backward weight:
one block per weight element, threads stride over (n, oh, ow) and the block
reduces its partial sums in shared memory (no atomics, deterministic).
Backward bias: the per-channel block reduction of ``_common.channel_sum``.
"""
from __future__ import annotations

import numpy as np
from numba import cuda, float32

from ..geometry import out_size

from ._common import MAX_BLOCKS, RED_TPB, as3d, block_sum, channel_sum, dummy_f32, empty, grid_1d, reduce_tpb, stream

TILE = 16    # largest output tile edge (threads per block edge) of the tiled forward
REGION = 48  # edge of the shared input region of the tiled forward (9 KiB of float32)


@cuda.jit
def conv2d_forward_tiled_kernel(x, w, b, has_bias, sh, sw, ph, pw, dh, dw, groups, y):
    """y = conv2d(x, w) + b, shared-memory tiled.  Launch: block (TW, TH), grid (OW / TW, OH / TH, <= N * K).

    x : (N, C, H, W) float32, w : (K, C // groups, KH, KW) float32, b : (K,) float32
    (ignored unless has_bias), y : (N, K, OH, OW) float32.
    Requires (TH - 1) * sh + (KH - 1) * dh + 1 <= REGION, and the same along W.
    """
    region = cuda.shared.array((REGION, REGION), float32)
    N, C, H, W = x.shape
    K, Cg, KH, KW = w.shape
    OH, OW = y.shape[2], y.shape[3]
    Kg = K // groups
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    TW, TH = cuda.blockDim.x, cuda.blockDim.y
    ow = cuda.blockIdx.x * TW + tx
    oh = cuda.blockIdx.y * TH + ty
    h0 = cuda.blockIdx.y * TH * sh - ph   # input row of region[0, :]
    w0 = cuda.blockIdx.x * TW * sw - pw   # input column of region[:, 0]
    RH = (TH - 1) * sh + (KH - 1) * dh + 1
    RW = (TW - 1) * sw + (KW - 1) * dw + 1
    for nk in range(cuda.blockIdx.z, N * K, cuda.gridDim.z):
        n, k = nk // K, nk % K
        c0 = (k // Kg) * Cg
        acc = float32(0)
        for cg in range(Cg):
            cuda.syncthreads()  # every thread is done with the previous channel's region
            for r in range(ty, RH, TH):
                ih = h0 + r
                for s in range(tx, RW, TW):
                    iw = w0 + s
                    v = float32(0)
                    if 0 <= ih < H and 0 <= iw < W:
                        v = x[n, c0 + cg, ih, iw]
                    region[r, s] = v
            cuda.syncthreads()
            for i in range(KH):
                for j in range(KW):
                    acc += region[ty * sh + i * dh, tx * sw + j * dw] * w[k, cg, i, j]
        if oh < OH and ow < OW:
            if has_bias:
                acc += b[k]
            y[n, k, oh, ow] = acc


@cuda.jit
def conv2d_forward_direct_kernel(x, w, b, has_bias, sh, sw, ph, pw, dh, dw, groups, y):
    """y = conv2d(x, w) + b, one thread per output cell (any kernel extent).

    x : (N, C, H, W), w : (K, C // groups, KH, KW), b : (K,), y : (N, K, OH, OW), all float32.
    """
    N, C, H, W = x.shape
    K, Cg, KH, KW = w.shape
    OH, OW = y.shape[2], y.shape[3]
    Kg = K // groups
    for idx in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        ow = idx % OW
        oh = (idx // OW) % OH
        k = (idx // (OW * OH)) % K
        n = idx // (OW * OH * K)
        c0 = (k // Kg) * Cg
        acc = float32(0)
        for cg in range(Cg):
            for i in range(KH):
                ih = oh * sh - ph + i * dh
                if 0 <= ih < H:
                    for j in range(KW):
                        iw = ow * sw - pw + j * dw
                        if 0 <= iw < W:
                            acc += x[n, c0 + cg, ih, iw] * w[k, cg, i, j]
        if has_bias:
            acc += b[k]
        y[n, k, oh, ow] = acc


@cuda.jit
def conv2d_backward_input_kernel(dy, w, sh, sw, ph, pw, dh, dw, groups, dx):
    """dx for y = conv2d(x, w): one thread per dx cell gathers the dy cells it fed.

    dy : (N, K, OH, OW), w : (K, C // groups, KH, KW), dx : (N, C, H, W), all float32.
    """
    N, C, H, W = dx.shape
    K, Cg, KH, KW = w.shape
    OH, OW = dy.shape[2], dy.shape[3]
    Kg = K // groups
    for idx in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        iw = idx % W
        ih = (idx // W) % H
        c = (idx // (W * H)) % C
        n = idx // (W * H * C)
        g, cg = c // Cg, c % Cg
        acc = float32(0)
        for kg in range(Kg):
            k = g * Kg + kg
            for i in range(KH):
                th = ih + ph - i * dh          # = oh * sh when tap i of row oh reads row ih
                if th >= 0 and th % sh == 0 and th // sh < OH:
                    oh = th // sh
                    for j in range(KW):
                        tw = iw + pw - j * dw
                        if tw >= 0 and tw % sw == 0 and tw // sw < OW:
                            acc += dy[n, k, oh, tw // sw] * w[k, cg, i, j]
        dx[n, c, ih, iw] = acc


@cuda.jit
def conv2d_backward_weight_kernel(dy, x, sh, sw, ph, pw, dh, dw, groups, dwt):
    """dw for y = conv2d(x, w): one block per weight element (k, cg, i, j).

    dy : (N, K, OH, OW), x : (N, C, H, W), dwt : (K, C // groups, KH, KW), all float32.
    The block's threads stride over the N * OH * OW products and ``block_sum``
    reduces their partial sums in shared memory: race-free, deterministic.
    """
    buf = cuda.shared.array(RED_TPB, float32)
    N, C, H, W = x.shape
    K, Cg, KH, KW = dwt.shape
    OH, OW = dy.shape[2], dy.shape[3]
    Kg = K // groups
    for e in range(cuda.blockIdx.x, dwt.size, cuda.gridDim.x):
        j = e % KW
        i = (e // KW) % KH
        cg = (e // (KW * KH)) % Cg
        k = e // (KW * KH * Cg)
        c = (k // Kg) * Cg + cg
        acc = float32(0)
        for m in range(cuda.threadIdx.x, N * OH * OW, cuda.blockDim.x):
            ow = m % OW
            oh = (m // OW) % OH
            n = m // (OW * OH)
            ih = oh * sh - ph + i * dh
            iw = ow * sw - pw + j * dw
            if 0 <= ih < H and 0 <= iw < W:
                acc += dy[n, k, oh, ow] * x[n, c, ih, iw]
        total = block_sum(buf, acc)
        if cuda.threadIdx.x == 0:
            dwt[k, cg, i, j] = total


def _tile_edge(out, kernel, stride, dilation):
    """Largest tile edge <= TILE whose input region fits REGION (0 if none does)."""
    extent = (kernel - 1) * dilation + 1
    if extent > REGION:
        return 0
    return min(TILE, out, (REGION - extent) // stride + 1)


def conv2d_forward(x, w, b=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
    """x : (N, C, H, W), w : (K, C // groups, KH, KW), b : (K,) or None -> y : (N, K, OH, OW); device float32."""
    N, C, H, W = x.shape
    K, Cg, KH, KW = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    OH, OW = out_size(H, KH, sh, ph, dh), out_size(W, KW, sw, pw, dw)
    y = empty((N, K, OH, OW), np.float32)
    has_bias = b is not None
    bias = b if has_bias else dummy_f32()
    args = (x, w, bias, has_bias, sh, sw, ph, pw, dh, dw, groups, y)
    th, tw = _tile_edge(OH, KH, sh, dh), _tile_edge(OW, KW, sw, dw)
    if th and tw:
        grid = ((OW + tw - 1) // tw, (OH + th - 1) // th, min(N * K, MAX_BLOCKS))
        conv2d_forward_tiled_kernel[grid, (tw, th), stream()](*args)
    else:
        conv2d_forward_direct_kernel[grid_1d(y.size)](*args)
    return y


def conv2d_backward_input(dy, w, x_shape, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
    """dy : (N, K, OH, OW), w : (K, C // groups, KH, KW) -> dx : x_shape = (N, C, H, W); device float32."""
    dx = empty(tuple(int(s) for s in x_shape), np.float32)
    conv2d_backward_input_kernel[grid_1d(dx.size)](dy, w, stride[0], stride[1], padding[0], padding[1],
                                                   dilation[0], dilation[1], groups, dx)
    return dx


def conv2d_backward_weight(dy, x, w_shape, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
    """dy : (N, K, OH, OW), x : (N, C, H, W) -> dw : w_shape = (K, C // groups, KH, KW); device float32."""
    dwt = empty(tuple(int(s) for s in w_shape), np.float32)
    N, K, OH, OW = dy.shape
    conv2d_backward_weight_kernel[min(dwt.size, MAX_BLOCKS), reduce_tpb(N * OH * OW), stream()](
        dy, x, stride[0], stride[1], padding[0], padding[1], dilation[0], dilation[1], groups, dwt)
    return dwt


def conv2d_backward_bias(dy):
    """dy : (N, K, OH, OW) -> db : (K,); device float32 (per-channel block reduction)."""
    return channel_sum(as3d(dy))


__all__ = ["conv2d_forward", "conv2d_backward_input", "conv2d_backward_weight", "conv2d_backward_bias"]
