"""Fully connected (dense) layer kernels on the CPU.

The products go to BLAS through ``np.dot`` (already multi-threaded and
near peak); Numba compiles only the bias add and the bias gradient, where a
fused parallel loop saves a pass over ``y`` / ``dy``.  Weights are (out, in)
as in PyTorch.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["dense_forward", "dense_backward_input", "dense_backward_weight", "dense_backward_bias"]


@njit(cache=True, parallel=True)
def _add_bias(y, b):
    """y : (N, OUT) += b : (OUT,) broadcast over rows, in place."""
    N, OUT = y.shape
    for n in prange(N):
        for o in range(OUT):
            y[n, o] += b[o]


@njit(cache=True, parallel=True)
def _column_sums(dy, db):
    """db : (OUT,) = dy : (N, OUT) summed over rows, accumulated in float64.

    Parallel over blocks of columns so that each thread owns its outputs.
    """
    N, OUT = dy.shape
    nblk = (OUT + 63) // 64
    for blk in prange(nblk):
        lo = blk * 64
        hi = min(OUT, lo + 64)
        acc = np.zeros(hi - lo, dtype=np.float64)
        for n in range(N):
            for o in range(lo, hi):
                acc[o - lo] += dy[n, o]
        for o in range(lo, hi):
            db[o] = acc[o - lo]


def dense_forward(x, w, b=None):
    """y = x @ w.T + b.

    x : (N, IN) float32, w : (OUT, IN) float32, b : (OUT,) float32 or None;
    returns y : (N, OUT) float32.
    """
    y = np.dot(x, w.T)
    if b is not None:
        _add_bias(y, np.ascontiguousarray(b))
    return y


def dense_backward_input(dy, w):
    """dx = dy @ w.  dy : (N, OUT) float32, w : (OUT, IN) float32; returns dx : (N, IN) float32."""
    return np.dot(dy, w)


def dense_backward_weight(dy, x):
    """dw = dy.T @ x.  dy : (N, OUT) float32, x : (N, IN) float32; returns dw : (OUT, IN) float32."""
    return np.dot(dy.T, x)


def dense_backward_bias(dy):
    """db = dy summed over the batch.  dy : (N, OUT) float32; returns db : (OUT,) float32."""
    db = np.empty(dy.shape[1], dtype=dy.dtype)
    _column_sums(np.ascontiguousarray(dy), db)
    return db
