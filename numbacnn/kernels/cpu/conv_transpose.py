"""Transposed 2-D convolution on the CPU (PyTorch's conv_transpose2d, ONNX ConvTranspose), NCHW float32.

Weights are (C, K // groups, KH, KW): input channel c spreads each of its cells
over a KH x KW window of every output channel of its group.  Every direction
gives each output array slice to one thread, so no two threads write one cell
and the sums run in a fixed order:

* forward: ``prange`` over the (n, k) output planes; for each input channel
  and tap, the input rows are added (scaled by the tap) onto the strided output
  rows they land on, the column range computed once per tap;
* input gradient: ``prange`` over the (n, c) input planes, gathering from dy;
* weight gradient: ``prange`` over the (c, k) weight pairs, one sum per tap
  over the batch and the input grid (float64 accumulators);
* bias gradient: ``prange`` over the output channels.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["conv_transpose2d_forward", "conv_transpose2d_backward"]


def _out_hw(H, W, KH, KW, stride, padding, output_padding, dilation):
    return ((H - 1) * stride[0] - 2 * padding[0] + dilation[0] * (KH - 1) + output_padding[0] + 1,
            (W - 1) * stride[1] - 2 * padding[1] + dilation[1] * (KW - 1) + output_padding[1] + 1)


@njit(cache=True)
def _span(n_in, n_out, tap, s, p):
    """The input indices i with 0 <= i * s + tap - p < n_out, as [lo, hi)."""
    lo = max(0, -((tap - p) // s))
    hi = min(n_in, (n_out - 1 - tap + p) // s + 1)
    return lo, max(lo, hi)


@njit(cache=True, parallel=True)
def _forward(x, w, b, has_bias, sh, sw, ph, pw, dh, dw, groups, y):
    """y (N, K, OH, OW) = conv_transpose2d(x (N, C, H, W), w (C, K/groups, KH, KW)) + b (K,)."""
    N, C, H, W = x.shape
    Kg, KH, KW = w.shape[1], w.shape[2], w.shape[3]
    K, OH, OW = y.shape[1], y.shape[2], y.shape[3]
    Cg = C // groups
    for p in prange(N * K):
        n, k = p // K, p % K
        g, o = k // Kg, k % Kg
        y[n, k, :, :] = b[k] if has_bias else np.float32(0)
        for c in range(g * Cg, (g + 1) * Cg):
            for kh in range(KH):
                i0, i1 = _span(H, OH, kh * dh, sh, ph)
                for kw in range(KW):
                    j0, j1 = _span(W, OW, kw * dw, sw, pw)
                    wv = w[c, o, kh, kw]
                    for i in range(i0, i1):
                        oh = i * sh + kh * dh - ph
                        for j in range(j0, j1):
                            y[n, k, oh, j * sw + kw * dw - pw] += x[n, c, i, j] * wv


@njit(cache=True, parallel=True)
def _grad_input(dy, w, sh, sw, ph, pw, dh, dw, groups, dx):
    """dx (N, C, H, W): each input cell gathers dy at the cells it was spread to, times the taps."""
    N, C, H, W = dx.shape
    Kg, KH, KW = w.shape[1], w.shape[2], w.shape[3]
    OH, OW = dy.shape[2], dy.shape[3]
    Cg = C // groups
    for p in prange(N * C):
        n, c = p // C, p % C
        g = c // Cg
        dx[n, c, :, :] = np.float32(0)
        for o in range(Kg):
            k = g * Kg + o
            for kh in range(KH):
                i0, i1 = _span(H, OH, kh * dh, sh, ph)
                for kw in range(KW):
                    j0, j1 = _span(W, OW, kw * dw, sw, pw)
                    wv = w[c, o, kh, kw]
                    for i in range(i0, i1):
                        oh = i * sh + kh * dh - ph
                        for j in range(j0, j1):
                            dx[n, c, i, j] += dy[n, k, oh, j * sw + kw * dw - pw] * wv


@njit(cache=True, parallel=True)
def _grad_weight(dy, x, sh, sw, ph, pw, dh, dw, groups, dwt):
    """dwt (C, K/groups, KH, KW): the sum over the batch and the input grid of x times dy where it landed."""
    N, C, H, W = x.shape
    Kg, KH, KW = dwt.shape[1], dwt.shape[2], dwt.shape[3]
    OH, OW = dy.shape[2], dy.shape[3]
    Cg = C // groups
    for p in prange(C * Kg):
        c, o = p // Kg, p % Kg
        k = (c // Cg) * Kg + o
        for kh in range(KH):
            i0, i1 = _span(H, OH, kh * dh, sh, ph)
            for kw in range(KW):
                j0, j1 = _span(W, OW, kw * dw, sw, pw)
                acc = 0.0
                for n in range(N):
                    for i in range(i0, i1):
                        oh = i * sh + kh * dh - ph
                        for j in range(j0, j1):
                            acc += x[n, c, i, j] * dy[n, k, oh, j * sw + kw * dw - pw]
                dwt[c, o, kh, kw] = acc


@njit(cache=True, parallel=True)
def _grad_bias(dy, db):
    N, K, OH, OW = dy.shape
    for k in prange(K):
        acc = 0.0
        for n in range(N):
            for i in range(OH):
                for j in range(OW):
                    acc += dy[n, k, i, j]
        db[k] = acc


def conv_transpose2d_forward(x, w, b=None, stride=(1, 1), padding=(0, 0), output_padding=(0, 0), dilation=(1, 1),
                             groups=1):
    """x : (N, C, H, W) float32, w : (C, K // groups, KH, KW) float32, b : (K,) float32 or None
    -> y : (N, K, OH, OW) float32, OH = (H - 1) * stride - 2 * padding + dilation * (KH - 1) + output_padding + 1."""
    x, w = np.ascontiguousarray(x), np.ascontiguousarray(w)
    N, C, H, W = x.shape
    K = w.shape[1] * groups
    OH, OW = _out_hw(H, W, w.shape[2], w.shape[3], stride, padding, output_padding, dilation)
    y = np.empty((N, K, OH, OW), dtype=x.dtype)
    bias = np.zeros(K, np.float32) if b is None else np.ascontiguousarray(b)
    _forward(x, w, bias, b is not None, stride[0], stride[1], padding[0], padding[1], dilation[0], dilation[1],
             groups, y)
    return y


def conv_transpose2d_backward(dy, x, w, stride=(1, 1), padding=(0, 0), output_padding=(0, 0), dilation=(1, 1),
                              groups=1, has_bias=True):
    """dy : (N, K, OH, OW), x : (N, C, H, W), w : (C, K // groups, KH, KW), float32
    -> (dx like x, dw like w, db (K,) or None), float32."""
    dy, x, w = (np.ascontiguousarray(a) for a in (dy, x, w))
    geo = (stride[0], stride[1], padding[0], padding[1], dilation[0], dilation[1], groups)
    dx = np.empty_like(x)
    _grad_input(dy, w, *geo, dx)
    dw64 = np.empty(w.shape, np.float64)
    _grad_weight(dy, x, *geo, dw64)
    db = None
    if has_bias:
        db64 = np.empty(dy.shape[1], np.float64)
        _grad_bias(dy, db64)
        db = db64.astype(np.float32)
    return dx, dw64.astype(np.float32), db
