"""Pooling kernels on the CPU: max, average and global average, NCHW float32.

Every kernel works on the input as ``P = N * C`` independent (H, W) planes
and runs ``prange`` over the planes, so no two threads ever write the same
output (the max-pool backward with overlapping windows included).  Inside a
plane the loops go output row -> kernel tap -> output column, so the
innermost loop is a run along one output row.  Max pooling has a
branch-free special case for 2x2 windows with stride 2 (the common one),
about 5x faster than the general kernel.

Semantics are those of ``kernels/reference.py`` (PyTorch's): floor mode,
max pooling treats padding as -inf and breaks ties towards the first cell in
row-major order, average pooling counts padded cells in the divisor unless
``count_include_pad`` is False.
"""
from __future__ import annotations

import numpy as np
from numba import get_num_threads, njit, prange

from ..geometry import out_size

__all__ = [
    "max_pool2d_forward", "max_pool2d_backward",
    "avg_pool2d_forward", "avg_pool2d_backward",
    "global_avg_pool2d_forward", "global_avg_pool2d_backward",
]


def _planes(a):
    """(N, C, H, W) -> C-contiguous (N * C, H, W) view (a copy only if needed)."""
    a = np.ascontiguousarray(a)
    return a.reshape(a.shape[0] * a.shape[1], a.shape[2], a.shape[3])


@njit(cache=True, inline="always")
def _valid_range(start, step, count, size):
    """[lo, hi) of the indices o in [0, count) with 0 <= o * step + start < size."""
    lo = 0
    while lo < count and lo * step + start < 0:
        lo += 1
    hi = count
    while hi > lo and (hi - 1) * step + start >= size:
        hi -= 1
    return lo, hi


# ------------------------------------------------------------------ max pool
@njit(cache=True, inline="always")
def _tap_max(src, best, tap, t):
    """One kernel tap over an output row: best = src where src > best (strict), and tap = t there."""
    for q in range(best.shape[0]):
        v = src[q]
        b = best[q]
        better = v > b
        best[q] = v if better else b
        tap[q] = t if better else tap[q]


@njit(cache=True, parallel=True)
def _max_pool_fwd(x, y, arg, KH, KW, sh, sw, ph, pw, nt):
    """Any kernel, stride and padding.

    x : (P, H, W); writes y : (P, OH, OW) and arg : (P, OH, OW) int64 (flat h * W + w).
    Each thread copies its planes into a -inf padded scratch plane, then sweeps
    the taps in row-major order over whole output rows, remembering the winning
    tap number; the flat index is formed once per output at the end.
    """
    P, H, W = x.shape
    _, OH, OW = y.shape
    neg_inf = x.dtype.type(-np.inf)
    Hp = max(H + 2 * ph, (OH - 1) * sh + KH)
    Wp = max(W + 2 * pw, (OW - 1) * sw + KW)
    offs = np.empty(KH * KW, np.int64)  # tap number -> offset of its cell from the window corner
    for i in range(KH):
        for j in range(KW):
            offs[i * KW + j] = i * W + j
    for th in prange(nt):  # nt threads, each with its own scratch plane
        xp = np.full((Hp, Wp), neg_inf, dtype=x.dtype)  # borders stay -inf
        best = np.empty(OW, dtype=x.dtype)
        tap = np.empty(OW, dtype=np.int32)
        for p in range(th * P // nt, (th + 1) * P // nt):
            xp[ph:ph + H, pw:pw + W] = x[p]
            for oh in range(OH):
                best[:] = neg_inf
                tap[:] = -1  # no cell beat -inf (yet)
                for i in range(KH):
                    row = xp[oh * sh + i]
                    for j in range(KW):
                        _tap_max(row[j:j + (OW - 1) * sw + 1:sw], best, tap, np.int32(i * KW + j))
                y[p, oh] = best
                arow = arg[p, oh]
                corner = (oh * sh - ph) * W - pw
                for ow in range(OW):
                    t = tap[ow]
                    arow[ow] = corner + ow * sw + offs[t] if t >= 0 else 0


@njit(cache=True, parallel=True)
def _max_pool_fwd_2x2(x, y, arg):
    """The common 2x2, stride 2, unpadded case.  x : (P, H, W); y, arg : (P, H // 2, W // 2).

    Same result as ``_max_pool_fwd``, written branch-free so that it vectorises:
    each pair of a row is scanned in order from -inf, then the second row's
    winner replaces the first's only if strictly greater.
    """
    P, H, W = x.shape
    _, OH, OW = y.shape
    neg_inf = x.dtype.type(-np.inf)
    one, none_ = np.int32(1), np.int32(-1)
    for p in prange(P):
        tap = np.empty(OW, np.int32)  # offset of the winner from the window corner, -1: none
        for oh in range(OH):
            r0 = x[p, 2 * oh]
            r1 = x[p, 2 * oh + 1]
            yrow = y[p, oh]
            for ow in range(OW):
                a, b = r0[2 * ow], r0[2 * ow + 1]
                c, d = r1[2 * ow], r1[2 * ow + 1]
                t = a > neg_inf
                m1 = a if t else neg_inf
                k1 = np.int32(0) if t else none_
                t = b > m1
                m1 = b if t else m1
                k1 = one if t else k1
                t = c > neg_inf
                m2 = c if t else neg_inf
                k2 = np.int32(W) if t else none_
                t = d > m2
                m2 = d if t else m2
                k2 = np.int32(W + 1) if t else k2
                t = m2 > m1
                yrow[ow] = m2 if t else m1
                tap[ow] = k2 if t else k1
            arow = arg[p, oh]
            corner = 2 * oh * W
            for ow in range(OW):
                k = tap[ow]
                arow[ow] = corner + 2 * ow + k if k >= 0 else 0


@njit(cache=True, parallel=True)
def _max_pool_bwd(dy, arg, dx):
    """dy, arg : (P, OH * OW); writes dx : (P, H * W).  Returns the count of out-of-range indices."""
    P, M = dy.shape
    HW = dx.shape[1]
    bad = np.zeros(P, dtype=np.int64)
    for p in prange(P):
        drow = dx[p]
        for q in range(HW):
            drow[q] = 0
        for j in range(M):
            a = arg[p, j]
            if a < 0 or a >= HW:
                bad[p] += 1
            else:
                drow[a] += dy[p, j]
    return bad.sum()


def max_pool2d_forward(x, kernel, stride, padding):
    """Max pooling; padded cells count as -inf, ties go to the first cell in row-major order.

    x : (N, C, H, W) float32; kernel, stride, padding : (int, int) pairs.
    returns y : (N, C, OH, OW) float32 and argmax : (N, C, OH, OW) int64, the flat
    index ``h * W + w`` of the chosen cell within its (n, c) plane.
    """
    N, C, H, W = x.shape
    (KH, KW), (sh, sw), (ph, pw) = kernel, stride, padding
    OH, OW = out_size(H, KH, sh, ph), out_size(W, KW, sw, pw)
    y = np.empty((N * C, OH, OW), dtype=x.dtype)
    arg = np.empty((N * C, OH, OW), dtype=np.int64)
    if (KH, KW, sh, sw, ph, pw) == (2, 2, 2, 2, 0, 0):
        _max_pool_fwd_2x2(_planes(x), y, arg)
    else:
        _max_pool_fwd(_planes(x), y, arg, KH, KW, sh, sw, ph, pw, max(1, min(get_num_threads(), N * C)))
    return y.reshape(N, C, OH, OW), arg.reshape(N, C, OH, OW)


def max_pool2d_backward(dy, argmax, x_shape):
    """dx for max pooling: each dy cell goes to the input cell its argmax names.

    dy : (N, C, OH, OW) float32, argmax : (N, C, OH, OW) int64 from the forward,
    x_shape = (N, C, H, W); returns dx : (N, C, H, W) float32.
    """
    N, C, H, W = x_shape
    P = N * C
    dx = np.empty((P, H * W), dtype=dy.dtype)
    bad = _max_pool_bwd(np.ascontiguousarray(dy).reshape(P, -1),
                        np.ascontiguousarray(argmax, dtype=np.int64).reshape(P, -1), dx)
    if bad:
        raise ValueError(f"argmax holds {bad} indices outside [0, {H * W}) for x_shape {tuple(x_shape)}")
    return dx.reshape(N, C, H, W)


# ------------------------------------------------------------------ average pool
def _avg_divisor(H, W, kernel, stride, padding, OH, OW, count_include_pad, dtype):
    """(OH, OW) divisor of each output cell: the window size, or only its cells inside x."""
    (KH, KW), (sh, sw), (ph, pw) = kernel, stride, padding
    if count_include_pad:
        return np.full((OH, OW), KH * KW, dtype=dtype)
    hs = np.arange(OH) * sh - ph
    ws = np.arange(OW) * sw - pw
    hc = np.minimum(hs + KH, H) - np.maximum(hs, 0)
    wc = np.minimum(ws + KW, W) - np.maximum(ws, 0)
    return (hc[:, None] * wc[None, :]).astype(dtype)


@njit(cache=True, parallel=True)
def _avg_pool_fwd(x, y, div, KH, KW, sh, sw, ph, pw):
    """x : (P, H, W); div : (OH, OW) divisors; writes y : (P, OH, OW)."""
    P, H, W = x.shape
    _, OH, OW = y.shape
    for p in prange(P):
        for oh in range(OH):
            yrow = y[p, oh]
            for ow in range(OW):
                yrow[ow] = 0
            for i in range(KH):
                ih = oh * sh - ph + i
                if ih < 0 or ih >= H:
                    continue
                xrow = x[p, ih]
                for j in range(KW):
                    lo, hi = _valid_range(j - pw, sw, OW, W)
                    for ow in range(lo, hi):
                        yrow[ow] += xrow[ow * sw - pw + j]
            for ow in range(OW):
                yrow[ow] /= div[oh, ow]


@njit(cache=True, parallel=True)
def _avg_pool_bwd(dy, dx, div, KH, KW, sh, sw, ph, pw):
    """dy : (P, OH, OW); div : (OH, OW) divisors; writes dx : (P, H, W)."""
    P, H, W = dx.shape
    _, OH, OW = dy.shape
    for p in prange(P):
        dxp = dx[p]
        for h in range(H):
            for w in range(W):
                dxp[h, w] = 0
        g = np.empty(OW, dtype=dy.dtype)
        for oh in range(OH):
            for ow in range(OW):
                g[ow] = dy[p, oh, ow] / div[oh, ow]
            for i in range(KH):
                ih = oh * sh - ph + i
                if ih < 0 or ih >= H:
                    continue
                drow = dxp[ih]
                for j in range(KW):
                    lo, hi = _valid_range(j - pw, sw, OW, W)
                    for ow in range(lo, hi):
                        drow[ow * sw - pw + j] += g[ow]


def avg_pool2d_forward(x, kernel, stride, padding, count_include_pad=True):
    """Average pooling.

    x : (N, C, H, W) float32; kernel, stride, padding : (int, int) pairs.
    returns y : (N, C, OH, OW) float32.  Padded cells count in the divisor
    unless ``count_include_pad`` is False.
    """
    N, C, H, W = x.shape
    (KH, KW), (sh, sw), (ph, pw) = kernel, stride, padding
    OH, OW = out_size(H, KH, sh, ph), out_size(W, KW, sw, pw)
    div = _avg_divisor(H, W, kernel, stride, padding, OH, OW, count_include_pad, x.dtype)
    y = np.empty((N * C, OH, OW), dtype=x.dtype)
    _avg_pool_fwd(_planes(x), y, div, KH, KW, sh, sw, ph, pw)
    return y.reshape(N, C, OH, OW)


def avg_pool2d_backward(dy, x_shape, kernel, stride, padding, count_include_pad=True):
    """dx for average pooling.

    dy : (N, C, OH, OW) float32, x_shape = (N, C, H, W); returns dx : (N, C, H, W) float32.
    """
    N, C, H, W = x_shape
    (KH, KW), (sh, sw), (ph, pw) = kernel, stride, padding
    OH, OW = dy.shape[2], dy.shape[3]
    div = _avg_divisor(H, W, kernel, stride, padding, OH, OW, count_include_pad, dy.dtype)
    dx = np.empty((N * C, H, W), dtype=dy.dtype)
    _avg_pool_bwd(_planes(dy), dx, div, KH, KW, sh, sw, ph, pw)
    return dx.reshape(N, C, H, W)


# ------------------------------------------------------------------ global average pool
@njit(cache=True, parallel=True)
def _global_avg_fwd(x, y):
    """x : (P, H * W); writes y : (P,) the plane means (accumulated in float64)."""
    P, M = x.shape
    for p in prange(P):
        s = 0.0
        for q in range(M):
            s += x[p, q]
        y[p] = s / M


@njit(cache=True, parallel=True)
def _global_avg_bwd(dy, dx):
    """dy : (P,); writes dx : (P, H * W) = dy / (H * W) broadcast over each plane."""
    P, M = dx.shape
    for p in prange(P):
        g = dy[p] / dx.dtype.type(M)
        for q in range(M):
            dx[p, q] = g


def global_avg_pool2d_forward(x):
    """x : (N, C, H, W) float32; returns y : (N, C, 1, 1) float32, the mean over H and W."""
    N, C, H, W = x.shape
    y = np.empty(N * C, dtype=x.dtype)
    _global_avg_fwd(np.ascontiguousarray(x).reshape(N * C, H * W), y)
    return y.reshape(N, C, 1, 1)


def global_avg_pool2d_backward(dy, x_shape):
    """dy : (N, C, 1, 1) float32, x_shape = (N, C, H, W); returns dx : (N, C, H, W) float32."""
    N, C, H, W = x_shape
    dx = np.empty((N * C, H * W), dtype=dy.dtype)
    _global_avg_bwd(np.ascontiguousarray(dy).reshape(N * C), dx)
    return dx.reshape(N, C, H, W)
