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
windows cover it, so no two threads write the same cell.  Backward weight: a
split-K implicit GEMM in shared memory with a deterministic two-stage sum
(see ``conv2d_backward_weight_kernel``).
Backward bias: the per-channel block reduction of ``_common.channel_sum``.
"""
from __future__ import annotations

import numpy as np
from numba import cuda, float32, int32

from ..geometry import out_size

from ._common import MAX_BLOCKS, as3d, channel_sum, dummy_f32, empty, grid_1d, stream
from .elementwise import zeros

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


# Backward to the weights as a split-K implicit GEMM.  Per group, dw (Kg x Cg*KH*KW) = dy (Kg x P) times the
# im2col of x (P x Cg*KH*KW), P = N * OH * OW pixels; the im2col is never stored.  A block computes a GM x GN
# tile of dw over one chunk of pixels: per step it stages GP pixels of dy and of the gathered x in shared
# memory, then each thread accumulates its 2 x 2 register tile from there (GP * 4 FMAs per step).  The
# (n, oh, ow) of the pixels a thread loads advance by counters, and its column's (c, i, j) is decomposed once:
# no division in the loop.  Chunks write partial sums; the last block of a tile to finish (an integer atomic
# counter per tile, reset by that block) sums them in chunk order into dw: one launch, no float atomics, the
# same result every run.
GM = 32    # dw rows (output channels of a group) per block
GN = 32    # dw columns (input channel x tap) per block
GP = 16    # pixels per shared-memory step
WTHREADS = 256


@cuda.jit(device=True)
def _advance(n, oh, ow, step, OH, OW):
    """The pixel ``step`` further on in (n, oh, ow) order."""
    ow += step
    while ow >= OW:
        ow -= OW
        oh += 1
        if oh >= OH:
            oh = 0
            n += 1
    return n, oh, ow


@cuda.jit
def conv2d_backward_weight_kernel(dy, x, KH, KW, sh, sw, ph, pw, dh, dw, groups, chunk, partial, counters, dwt):
    """dw of a convolution, each block one tile of dw over one chunk of ``chunk`` pixels (a multiple of GP).

    dy : (N, K, OH, OW), x : (N, C, H, W), partial : (chunks, K, Cg * KH * KW) scratch, dwt : (K, Cg * KH * KW),
    all float32; counters : (tiles,) int32, zero before and after.
    Launch: block WTHREADS, grid (column tiles, groups * row tiles, chunks).
    """
    a_s = cuda.shared.array((GP, GM), float32)
    b_s = cuda.shared.array((GP, GN), float32)
    last = cuda.shared.array(1, int32)
    N, C, H, W = x.shape
    K, OH, OW = dy.shape[1], dy.shape[2], dy.shape[3]
    Kg, Cg, cols = K // groups, C // groups, partial.shape[2]
    P = N * OH * OW
    t = cuda.threadIdx.x
    row_tiles = (Kg + GM - 1) // GM
    g = cuda.blockIdx.y // row_tiles
    m0 = (cuda.blockIdx.y - g * row_tiles) * GM
    n0 = cuda.blockIdx.x * GN
    p_lo = cuda.blockIdx.z * chunk
    p_hi = min(P, p_lo + chunk)
    # what this thread loads: column t % 32 of both tiles, pixels t // 32 and t // 32 + 8 of each step
    lane, pp = t % 32, t // 32
    col = n0 + lane
    cg = col // (KH * KW)
    tap = col - cg * (KH * KW)
    ki = tap // KW
    kj = tap - ki * KW
    c = g * Cg + cg
    k_load = g * Kg + m0 + lane
    ok_col = col < cols
    ok_row = m0 + lane < Kg
    q0 = p_lo + pp
    n_a = q0 // (OH * OW)
    oh_a = (q0 - n_a * OH * OW) // OW
    ow_a = q0 - n_a * OH * OW - oh_a * OW
    n_b, oh_b, ow_b = _advance(n_a, oh_a, ow_a, 8, OH, OW)
    # what this thread computes: rows ty, ty + 16 and columns tx, tx + 16 of the tile
    tx, ty = t % 16, t // 16
    acc00 = float32(0)
    acc01 = float32(0)
    acc10 = float32(0)
    acc11 = float32(0)
    for p0 in range(p_lo, p_hi, GP):
        for half in range(2):
            n_, oh_, ow_ = (n_a, oh_a, ow_a) if half == 0 else (n_b, oh_b, ow_b)
            q = p0 + pp + 8 * half
            inside = q < p_hi
            a_s[pp + 8 * half, lane] = dy[n_, k_load, oh_, ow_] if inside and ok_row else float32(0)
            ih = oh_ * sh - ph + ki * dh
            iw = ow_ * sw - pw + kj * dw
            v = float32(0)
            if inside and ok_col and 0 <= ih < H and 0 <= iw < W:
                v = x[n_, c, ih, iw]
            b_s[pp + 8 * half, lane] = v
        cuda.syncthreads()
        for r in range(GP):
            a0 = a_s[r, ty]
            a1 = a_s[r, ty + 16]
            b0 = b_s[r, tx]
            b1 = b_s[r, tx + 16]
            acc00 += a0 * b0
            acc01 += a0 * b1
            acc10 += a1 * b0
            acc11 += a1 * b1
        cuda.syncthreads()
        n_a, oh_a, ow_a = _advance(n_a, oh_a, ow_a, GP, OH, OW)
        n_b, oh_b, ow_b = _advance(n_b, oh_b, ow_b, GP, OH, OW)
    k0 = g * Kg + m0
    for a in range(2):
        m = ty + 16 * a
        if m0 + m < Kg:
            for b in range(2):
                j = n0 + tx + 16 * b
                if j < cols:
                    partial[cuda.blockIdx.z, k0 + m, j] = \
                        (acc00 if b == 0 else acc01) if a == 0 else (acc10 if b == 0 else acc11)
    _last_block_sums(partial, counters, last, k0, Kg - m0, n0, cols, dwt)


@cuda.jit(device=True)
def _last_block_sums(partial, counters, last, k0, rows, n0, cols, dwt):
    """The last block of a tile to finish sums the tile's partials over the chunks, in chunk order, into dwt,
    and resets the tile's counter (the CUDA threadFenceReduction pattern)."""
    t = cuda.threadIdx.x
    tile = cuda.blockIdx.y * cuda.gridDim.x + cuda.blockIdx.x
    chunks = cuda.gridDim.z
    cuda.threadfence()             # this block's partials are visible before it is counted
    cuda.syncthreads()
    if t == 0:
        last[0] = cuda.atomic.add(counters, tile, 1) == chunks - 1
    cuda.syncthreads()
    if last[0]:
        for e in range(t, GM * GN, WTHREADS):
            m, j = e // GN, n0 + e % GN
            if m < rows and j < cols:
                acc = float32(0)
                for s in range(chunks):
                    acc += partial[s, k0 + m, j]
                dwt[k0 + m, j] = acc
        if t == 0:
            counters[tile] = 0


_COUNTERS: dict = {}


def _tile_counters(tiles):
    """Zeroed int32 counters, one per tile, kept for the next launch (the last block of a tile resets its own)."""
    if tiles not in _COUNTERS:
        _COUNTERS[tiles] = zeros(tiles, np.int32)
    return _COUNTERS[tiles]


def _chunks(P, tiles, target_blocks=528):
    """(pixels per chunk, chunks): enough blocks for the GPU (about 4 per SM of an H200), at least 4 steps each."""
    want = max(1, min(-(-target_blocks // tiles), -(-P // (4 * GP)), 256))
    chunk = -(-P // want)
    chunk = -(-chunk // GP) * GP
    return chunk, -(-P // chunk)


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
    """dy : (N, K, OH, OW), x : (N, C, H, W) -> dw : w_shape = (K, C // groups, KH, KW); device float32.

    Split-K implicit GEMM with the chunks summed in order by the last block of each tile, in one launch
    (``conv2d_backward_weight_kernel``)."""
    K, Cg, KH, KW = (int(s) for s in w_shape)
    N, _, OH, OW = dy.shape
    groups = int(groups)
    cols = Cg * KH * KW
    tiles = -(-cols // GN) * groups * -(-(K // groups) // GM)
    chunk, chunks = _chunks(N * OH * OW, tiles)
    dwt = empty((K, Cg, KH, KW), np.float32)
    partial = empty((chunks, K, cols), np.float32)
    grid = (-(-cols // GN), groups * -(-(K // groups) // GM), chunks)
    conv2d_backward_weight_kernel[grid, WTHREADS, stream()](dy, x, KH, KW, stride[0], stride[1], padding[0],
                                                            padding[1], dilation[0], dilation[1], groups, chunk,
                                                            partial, _tile_counters(tiles), dwt.reshape(K, cols))
    return dwt


def conv2d_backward_bias(dy):
    """dy : (N, K, OH, OW) -> db : (K,); device float32 (per-channel block reduction)."""
    return channel_sum(as3d(dy))


__all__ = ["conv2d_forward", "conv2d_backward_input", "conv2d_backward_weight", "conv2d_backward_bias"]
