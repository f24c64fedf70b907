"""Moving values without arithmetic on the CPU: transpose (any rank) and take (indices along one axis).

``transpose_forward`` walks the output in rows of its innermost merged axis
(``kernels/pointwise.strided_view``): one ``prange`` over the rows, the input
offset of each row computed once, so a channel shuffle copies whole H*W planes.
``take`` sees x as (A, L, B) around the axis: the forward copies B-long rows,
one ``prange`` over the (a, m) rows; the backward adds each dy row to the row
it was taken from, one ``prange`` over a, the rows in index order (a fixed sum
order where an index repeats).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..pointwise import strided_view

__all__ = ["transpose_forward", "transpose_backward", "take_forward", "take_backward"]


@njit(cache=True, parallel=True)
def _gather_rows(x, shape, strides, y):
    """y (flat, C order over ``shape``) = x at the offsets given by ``strides`` per output axis."""
    last = shape.shape[0] - 1
    inner, step = shape[last], strides[last]
    for r in prange(y.shape[0] // inner):
        off, rem = 0, np.int64(r)
        for d in range(last - 1, -1, -1):
            off += (rem % shape[d]) * strides[d]
            rem //= shape[d]
        base = np.int64(r) * inner
        if step == 1:   # a contiguous row: one block copy
            y[base:base + inner] = x[off:off + inner]
        else:
            for j in range(inner):
                y[base + j] = x[off + j * step]


def transpose_forward(x, perm):
    """y = x.transpose(perm), C-contiguous.  x : any shape float32, perm : a permutation of its axes."""
    x = np.ascontiguousarray(x)
    y = np.empty(tuple(x.shape[p] for p in perm), dtype=x.dtype)
    if y.size:
        shape, (strides,) = strided_view(x.shape, perm)
        _gather_rows(x.reshape(-1), shape, strides, y.reshape(-1))
    return y


def transpose_backward(dy, perm):
    """dx = dy transposed by the inverse permutation.  dy : x.transpose(perm)'s shape float32."""
    return transpose_forward(dy, tuple(int(i) for i in np.argsort(perm)))


def _as3(shape, axis):
    A = int(np.prod(shape[:axis], dtype=np.int64))
    return A, int(shape[axis]), int(np.prod(shape[axis + 1:], dtype=np.int64))


@njit(cache=True, parallel=True)
def _take_rows(x, idx, y):
    """x : (A, L, B), idx : (M,) int64, y : (A, M, B): y[a, m] = x[a, idx[m]]."""
    A, M = y.shape[0], y.shape[1]
    for r in prange(A * M):
        a, m = r // M, r % M
        y[a, m, :] = x[a, idx[m], :]


@njit(cache=True, parallel=True)
def _untake_rows(dy, idx, dx):
    """dy : (A, M, B), dx : (A, L, B) zeros: dx[a, idx[m]] += dy[a, m], m in order."""
    A, M, B = dy.shape
    for a in prange(A):
        for m in range(M):
            i = idx[m]
            for b in range(B):
                dx[a, i, b] += dy[a, m, b]


def take_forward(x, indices, axis):
    """y = numpy's take(x, indices, axis).  x : any shape float32, indices : ints in [0, x.shape[axis])
    -> y : x's shape with len(indices) along ``axis``, float32."""
    x = np.ascontiguousarray(x)
    idx = np.asarray(indices, dtype=np.int64)
    A, L, B = _as3(x.shape, axis)
    shape = x.shape[:axis] + (len(idx),) + x.shape[axis + 1:]
    y = np.empty(shape, dtype=x.dtype)
    if y.size:
        _take_rows(x.reshape(A, L, B), idx, y.reshape(A, len(idx), B))
    return y


def take_backward(dy, indices, axis, size):
    """dx : dy's shape with ``size`` along ``axis``: every dy slice added to the x slice it came from."""
    dy = np.ascontiguousarray(dy)
    idx = np.asarray(indices, dtype=np.int64)
    shape = dy.shape[:axis] + (int(size),) + dy.shape[axis + 1:]
    dx = np.zeros(shape, dtype=dy.dtype)
    A, M, B = _as3(dy.shape, axis)
    if dy.size:
        _untake_rows(dy.reshape(A, M, B), idx, dx.reshape(A, int(size), B))
    return dx
