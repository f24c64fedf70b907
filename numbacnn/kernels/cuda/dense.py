"""CUDA fully connected layer: three shared-memory tiled matrix products.

Each block computes a TILE x TILE tile of its output; the loop over the
contracted dimension stages one TILE x TILE tile of each operand in shared
memory per step (the classic tiled GEMM), so every operand value is read from
global memory once per block instead of once per thread.  Each output cell is
owned by one thread, which also makes the weight gradient (a sum over the
batch) race-free without atomics.  Shared tiles are padded by one column
against bank conflicts.  Launch: block (TILE, TILE), grid over output tiles.
"""
from __future__ import annotations

import numpy as np
from numba import cuda, float32

from ._common import channel_sum, dummy_f32, empty, stream

TILE = 16
TILE_PAD = TILE + 1  # shared tiles are TILE x (TILE + 1): the extra column avoids bank conflicts


@cuda.jit
def dense_forward_kernel(x, w, b, has_bias, y):
    """y = x @ w.T + b.  x : (N, IN), w : (OUT, IN), b : (OUT,) (ignored unless has_bias), y : (N, OUT); float32.

    Thread (tx, ty) of block (bx, by) owns y[by * TILE + ty, bx * TILE + tx].
    """
    xs = cuda.shared.array((TILE, TILE_PAD), float32)
    ws = cuda.shared.array((TILE, TILE_PAD), float32)
    N, IN = x.shape
    OUT = w.shape[0]
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    n = cuda.blockIdx.y * TILE + ty
    o = cuda.blockIdx.x * TILE + tx
    o_load = cuda.blockIdx.x * TILE + ty   # the w row this thread stages
    acc = float32(0)
    for t0 in range(0, IN, TILE):
        xs[ty, tx] = x[n, t0 + tx] if n < N and t0 + tx < IN else float32(0)
        ws[ty, tx] = w[o_load, t0 + tx] if o_load < OUT and t0 + tx < IN else float32(0)
        cuda.syncthreads()
        for q in range(TILE):
            acc += xs[ty, q] * ws[tx, q]
        cuda.syncthreads()
    if n < N and o < OUT:
        if has_bias:
            acc += b[o]
        y[n, o] = acc


@cuda.jit
def dense_backward_input_kernel(dy, w, dx):
    """dx = dy @ w.  dy : (N, OUT), w : (OUT, IN), dx : (N, IN); float32.

    Thread (tx, ty) of block (bx, by) owns dx[by * TILE + ty, bx * TILE + tx].
    """
    ds = cuda.shared.array((TILE, TILE_PAD), float32)
    ws = cuda.shared.array((TILE, TILE_PAD), float32)
    N, OUT = dy.shape
    IN = w.shape[1]
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    n = cuda.blockIdx.y * TILE + ty
    i = cuda.blockIdx.x * TILE + tx
    acc = float32(0)
    for t0 in range(0, OUT, TILE):
        ds[ty, tx] = dy[n, t0 + tx] if n < N and t0 + tx < OUT else float32(0)
        ws[ty, tx] = w[t0 + ty, i] if t0 + ty < OUT and i < IN else float32(0)
        cuda.syncthreads()
        for q in range(TILE):
            acc += ds[ty, q] * ws[q, tx]
        cuda.syncthreads()
    if n < N and i < IN:
        dx[n, i] = acc


@cuda.jit
def dense_backward_weight_kernel(dy, x, dw):
    """dw = dy.T @ x.  dy : (N, OUT), x : (N, IN), dw : (OUT, IN); float32.

    Thread (tx, ty) of block (bx, by) owns dw[by * TILE + ty, bx * TILE + tx] and
    sums over the batch itself: no two threads write one cell, no atomics.
    """
    ds = cuda.shared.array((TILE, TILE_PAD), float32)
    xs = cuda.shared.array((TILE, TILE_PAD), float32)
    N, OUT = dy.shape
    IN = x.shape[1]
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    o = cuda.blockIdx.y * TILE + ty
    i = cuda.blockIdx.x * TILE + tx
    o_load = cuda.blockIdx.y * TILE + tx   # the dy column this thread stages
    acc = float32(0)
    for t0 in range(0, N, TILE):
        ds[ty, tx] = dy[t0 + ty, o_load] if t0 + ty < N and o_load < OUT else float32(0)  # ds[q, o]
        xs[ty, tx] = x[t0 + ty, i] if t0 + ty < N and i < IN else float32(0)              # xs[q, i]
        cuda.syncthreads()
        for q in range(TILE):
            acc += ds[q, ty] * xs[q, tx]
        cuda.syncthreads()
    if o < OUT and i < IN:
        dw[o, i] = acc


def _grid(rows, cols):
    return ((cols + TILE - 1) // TILE, (rows + TILE - 1) // TILE), (TILE, TILE)


def dense_forward(x, w, b=None):
    """x : (N, IN), w : (OUT, IN), b : (OUT,) or None -> y : (N, OUT); device float32."""
    N, OUT = x.shape[0], w.shape[0]
    y = empty((N, OUT), np.float32)
    has_bias = b is not None
    grid, block = _grid(N, OUT)
    dense_forward_kernel[grid, block, stream()](x, w, b if has_bias else dummy_f32(), has_bias, y)
    return y


def dense_backward_input(dy, w):
    """dy : (N, OUT), w : (OUT, IN) -> dx : (N, IN); device float32."""
    dx = empty((dy.shape[0], w.shape[1]), np.float32)
    grid, block = _grid(dx.shape[0], dx.shape[1])
    dense_backward_input_kernel[grid, block, stream()](dy, w, dx)
    return dx


def dense_backward_weight(dy, x):
    """dy : (N, OUT), x : (N, IN) -> dw : (OUT, IN); device float32."""
    dw = empty((dy.shape[1], x.shape[1]), np.float32)
    grid, block = _grid(dw.shape[0], dw.shape[1])
    dense_backward_weight_kernel[grid, block, stream()](dy, x, dw)
    return dw


def dense_backward_bias(dy):
    """dy : (N, OUT) -> db : (OUT,); one block per output reduces over the batch (``channel_sum``)."""
    return channel_sum(dy.reshape(dy.shape[0], dy.shape[1], 1))


__all__ = ["dense_forward", "dense_backward_input", "dense_backward_weight", "dense_backward_bias"]
