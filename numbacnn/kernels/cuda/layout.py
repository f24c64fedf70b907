"""CUDA transpose and take: twins of ``kernels/cpu/layout.py``.

``gather_strided_kernel`` gives each output element one thread, which decodes
its index over the merged output shape and reads the input at the strided
offset (``kernels/pointwise.strided_view``).  ``take`` sees x as (A, L, B): the
forward is a gather; the backward gives each dx element one thread, which adds
the dy slices taken from it, listed by the launcher (a CSR table built on the
host from the indices, in index order): no atomics, a fixed sum order.
"""
from __future__ import annotations

import numpy as np
from numba import cuda, float32

from ..pointwise import strided_view
from ._common import empty, flat, grid_1d, to_device

__all__ = ["transpose_forward", "transpose_backward", "take_forward", "take_backward"]


@cuda.jit
def gather_strided_kernel(x, shape, strides, y):
    """y[i] = x[offset of i], i in C order over ``shape``.  x, y : flat float32; shape, strides : (R,) int64."""
    for i in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        off, rem = 0, i
        for d in range(shape.size - 1, -1, -1):
            off += (rem % shape[d]) * strides[d]
            rem //= shape[d]
        y[i] = x[off]


def transpose_forward(x, perm):
    """x : any shape, device float32 -> y = x.transpose(perm), C-contiguous device float32."""
    y = empty(tuple(x.shape[p] for p in perm), np.float32)
    if y.size:
        shape, (strides,) = strided_view(x.shape, perm)
        gather_strided_kernel[grid_1d(y.size)](flat(x), to_device(shape), to_device(strides), flat(y))
    return y


def transpose_backward(dy, perm):
    """dy : x.transpose(perm)'s shape -> dx : dy transposed back (device float32)."""
    return transpose_forward(dy, tuple(int(i) for i in np.argsort(perm)))


def _as3(shape, axis):
    return (int(np.prod(shape[:axis], dtype=np.int64)), int(shape[axis]),
            int(np.prod(shape[axis + 1:], dtype=np.int64)))


@cuda.jit
def take_forward_kernel(x, idx, y):
    """y[a, m, b] = x[a, idx[m], b].  x : (A, L, B), y : (A, M, B) float32; idx : (M,) int64."""
    A, M, B = y.shape
    for i in range(cuda.grid(1), A * M * B, cuda.gridsize(1)):
        a, r = i // (M * B), i % (M * B)
        y[a, r // B, r % B] = x[a, idx[r // B], r % B]


@cuda.jit
def take_backward_kernel(dy, starts, order, dx):
    """dx[a, l, b] = sum of dy[a, m, b] over the m with idx[m] == l: order[starts[l]:starts[l + 1]].
    dy : (A, M, B), dx : (A, L, B) float32; starts : (L + 1,), order : (M,) int64."""
    A, L, B = dx.shape
    for i in range(cuda.grid(1), A * L * B, cuda.gridsize(1)):
        a, r = i // (L * B), i % (L * B)
        l, b = r // B, r % B
        acc = float32(0)
        for k in range(starts[l], starts[l + 1]):
            acc += dy[a, order[k], b]
        dx[a, l, b] = acc


def take_forward(x, indices, axis):
    """x : any shape, device float32; indices : ints in [0, x.shape[axis]) -> y with len(indices) along axis."""
    idx = np.asarray(indices, dtype=np.int64)
    A, L, B = _as3(x.shape, axis)
    y = empty(tuple(x.shape[:axis]) + (len(idx),) + tuple(x.shape[axis + 1:]), np.float32)
    if y.size:
        take_forward_kernel[grid_1d(y.size)](x.reshape(A, L, B), to_device(idx), y.reshape(A, len(idx), B))
    return y


def take_backward(dy, indices, axis, size):
    """dy : device float32 -> dx : dy's shape with ``size`` along ``axis`` (device float32)."""
    idx = np.asarray(indices, dtype=np.int64)
    order = np.argsort(idx, kind="stable").astype(np.int64)
    starts = np.searchsorted(idx[order], np.arange(int(size) + 1)).astype(np.int64)
    A, M, B = _as3(dy.shape, axis)
    dx = empty(tuple(dy.shape[:axis]) + (int(size),) + tuple(dy.shape[axis + 1:]), np.float32)
    if dx.size:
        take_backward_kernel[grid_1d(dx.size)](dy.reshape(A, M, B), to_device(starts), to_device(order),
                                               dx.reshape(A, int(size), B))
    return dx
