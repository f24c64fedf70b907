"""Point-wise math on the CPU: the unary functions and the broadcasting binary ops.

``unary_*`` run one ``prange`` loop over the flat elements and switch on the
function's code (``kernels/pointwise.UNARY``; the switch is loop-invariant).
``binary_*`` walk the output in rows of its innermost merged axis
(``kernels/pointwise.broadcast``): one ``prange`` over the rows, each row's
operand offsets computed once.  A broadcast operand's gradient is the full-size
partial derivative summed over the broadcast axes, one target element per
iteration of a ``prange`` loop with the terms in a fixed order (no shared
accumulator).  Computed in float32 with float32 constants, like the reference, and with
numpy's error model: a division by zero gives inf or nan, as in numpy, instead of raising.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..pointwise import BINARY, UNARY, broadcast, reduction

__all__ = ["unary_forward", "unary_backward", "binary_forward", "binary_backward"]

_0, _1, _HALF = np.float32(0), np.float32(1), np.float32(0.5)


def _c(a):
    """C-contiguous, 0-d arrays kept 0-d (``np.ascontiguousarray`` makes them 1-d)."""
    a = np.asarray(a)
    return a if a.flags.c_contiguous else a.copy(order="C")


@njit(cache=True, error_model="numpy")
def _value(v, code, a, b):
    """The unary function ``code`` at v (float32); see kernels/pointwise.UNARY."""
    if code == 0:
        return -v
    if code == 1:
        return abs(v)
    if code == 2:
        return np.exp(v)
    if code == 3:
        return np.log(v)
    if code == 4:
        return np.sqrt(v)
    if code == 5:
        return v ** a
    if code == 6:
        return min(max(v, a), b)
    t = min(max(a * v + b, _0), _1)
    if code == 7:
        return t
    if code == 8:
        return v * t
    e = np.expm1(min(v, _0))
    if code == 9:
        return v if v > _0 else a * e
    if code == 10:
        return b * (v if v > _0 else a * e)
    if code == 11:
        return max(v, _0) + np.log1p(np.exp(-abs(v)))
    if code == 12:
        return v / (_1 + abs(v))
    if code == 13:
        return a * v + b
    return _1 / v


@njit(cache=True, error_model="numpy")
def _slope(v, y, code, a, b):
    """d fn / dv at v, with y = fn(v); PyTorch's choices at the kinks (abs: 0, clip: inclusive)."""
    if code == 0:
        return -_1
    if code == 1:
        return _1 if v > _0 else (-_1 if v < _0 else _0)
    if code == 2:
        return y
    if code == 3:
        return _1 / v
    if code == 4:
        return _HALF / y
    if code == 5:
        return a * v ** (a - _1)
    if code == 6:
        return _1 if a <= v <= b else _0
    t = a * v + b
    if code == 7:
        return a if _0 < t < _1 else _0
    if code == 8:
        return _0 if t <= _0 else (_1 if t >= _1 else t + a * v)
    if code == 9:
        return _1 if v > _0 else a * np.exp(min(v, _0))
    if code == 10:
        return b * (_1 if v > _0 else a * np.exp(min(v, _0)))
    if code == 11:
        e = np.exp(-abs(v))
        return _1 / (_1 + e) if v >= _0 else e / (_1 + e)
    if code == 12:
        d = _1 + abs(v)
        return _1 / (d * d)
    if code == 13:
        return a
    return -y * y


@njit(cache=True, parallel=True, error_model="numpy")
def _unary_fwd(x, code, a, b, y):
    for i in prange(x.shape[0]):
        y[i] = _value(x[i], code, a, b)


@njit(cache=True, parallel=True, error_model="numpy")
def _unary_bwd(dy, x, y, code, a, b, dx):
    for i in prange(x.shape[0]):
        dx[i] = dy[i] * _slope(x[i], y[i], code, a, b)


def unary_forward(x, fn, alpha=0.0, beta=0.0):
    """y = fn(x).  x : any shape float32; fn a name of kernels/pointwise.UNARY -> y like x float32."""
    x = _c(x)
    y = np.empty_like(x)
    _unary_fwd(x.reshape(-1), UNARY[fn], np.float32(alpha), np.float32(beta), y.reshape(-1))
    return y


def unary_backward(dy, x, y, fn, alpha=0.0, beta=0.0):
    """dx = dy * fn'(x).  dy, x, y : one shape float32 (y the forward's output) -> dx like x float32."""
    dy, x, y = (_c(a) for a in (dy, x, y))
    dx = np.empty_like(x)
    _unary_bwd(dy.reshape(-1), x.reshape(-1), y.reshape(-1), UNARY[fn], np.float32(alpha), np.float32(beta),
               dx.reshape(-1))
    return dx


# ------------------------------------------------------------------ binary, broadcasting
@njit(cache=True, error_model="numpy")
def _apply(u, v, code):
    if code == 0:
        return u + v
    if code == 1:
        return u - v
    if code == 2:
        return u * v
    if code == 3:
        return u / v
    return u ** v


@njit(cache=True, error_model="numpy")
def _offsets(r, shape, sa, sb):
    """Operand offsets of row r (C order over all but the last axis of ``shape``)."""
    oa, ob, r = 0, 0, np.int64(r)
    for d in range(shape.shape[0] - 2, -1, -1):
        q = r % shape[d]
        r //= shape[d]
        oa += q * sa[d]
        ob += q * sb[d]
    return oa, ob


@njit(cache=True, parallel=True, error_model="numpy")
def _binary_fwd(a, sa, b, sb, shape, code, y):
    """y (flat, C order over ``shape``) = a code b; sa, sb : each operand's stride per axis (0: broadcast)."""
    inner = shape[shape.shape[0] - 1]
    ia, ib = sa[sa.shape[0] - 1], sb[sb.shape[0] - 1]
    for r in prange(y.shape[0] // inner):
        oa, ob = _offsets(r, shape, sa, sb)
        for j in range(inner):
            y[np.int64(r) * inner + j] = _apply(a[oa + j * ia], b[ob + j * ib], code)


@njit(cache=True, parallel=True, error_model="numpy")
def _binary_partials(dy, a, sa, b, sb, shape, code, ga, gb):
    """ga, gb (flat, output-sized) = dy * d(a code b)/da, dy * d(a code b)/db."""
    inner = shape[shape.shape[0] - 1]
    ia, ib = sa[sa.shape[0] - 1], sb[sb.shape[0] - 1]
    for r in prange(dy.shape[0] // inner):
        oa, ob = _offsets(r, shape, sa, sb)
        for j in range(inner):
            k = np.int64(r) * inner + j
            u, v, g = a[oa + j * ia], b[ob + j * ib], dy[k]
            if code == 0:
                ga[k], gb[k] = g, g
            elif code == 1:
                ga[k], gb[k] = g, -g
            elif code == 2:
                ga[k], gb[k] = g * v, g * u
            elif code == 3:
                ga[k], gb[k] = g / v, -g * (u / v) / v
            else:
                ga[k], gb[k] = g * v * u ** (v - _1), g * u ** v * np.log(u)


@njit(cache=True, parallel=True, error_model="numpy")
def _sum_to(g, keep, keep_st, red, red_st, out):
    """out[j] = the sum over the reduced axes of g at target element j (see kernels/pointwise.reduction);
    the last reduced axis is the inner loop."""
    last = red.shape[0] - 1
    inner, step = red[last], red_st[last]
    count = 1
    for d in range(last):
        count *= red[d]
    for j in prange(out.shape[0]):
        base, rem = 0, np.int64(j)
        for d in range(keep.shape[0] - 1, -1, -1):
            base += (rem % keep[d]) * keep_st[d]
            rem //= keep[d]
        acc = _0
        for r in range(count):
            off, rem = base, np.int64(r)
            for d in range(last - 1, -1, -1):
                off += (rem % red[d]) * red_st[d]
                rem //= red[d]
            for i in range(inner):
                acc += g[off + i * step]
        out[j] = acc


def binary_forward(a, b, fn):
    """y = a fn b, numpy broadcasting.  a, b : float32 of broadcastable shapes -> y float32 (their broadcast)."""
    a, b = _c(a), _c(b)
    out, shape, sa, sb = broadcast(a.shape, b.shape)
    y = np.empty(out, dtype=a.dtype)
    if y.size:
        _binary_fwd(a.reshape(-1), sa, b.reshape(-1), sb, shape, BINARY[fn], y.reshape(-1))
    return y


def _reduce(g, out_shape, shape):
    if tuple(shape) == tuple(out_shape):
        return g.reshape(shape)
    out = np.empty(shape, dtype=g.dtype)
    _sum_to(g.reshape(-1), *reduction(out_shape, shape), out.reshape(-1))
    return out


def binary_backward(dy, a, b, fn, need_a=True, need_b=True):
    """(da like a or None, db like b or None) from dy (the broadcast shape), all float32."""
    dy, a, b = (_c(v) for v in (dy, a, b))
    out, shape, sa, sb = broadcast(a.shape, b.shape)
    ga, gb = np.empty(out, dtype=dy.dtype), np.empty(out, dtype=dy.dtype)
    if dy.size:
        _binary_partials(dy.reshape(-1), a.reshape(-1), sa, b.reshape(-1), sb, shape, BINARY[fn], ga.reshape(-1),
                         gb.reshape(-1))
    return (_reduce(ga, out, a.shape) if need_a else None), (_reduce(gb, out, b.shape) if need_b else None)
