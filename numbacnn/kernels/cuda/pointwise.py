"""CUDA point-wise math: the unary functions and the broadcasting binary ops; twins of ``kernels/cpu/pointwise.py``.

One thread per element (grid-stride) switching on the function's code
(``kernels/pointwise.UNARY`` / ``BINARY``).  The binary kernels take the merged
output shape and each operand's stride per axis (``kernels/pointwise.broadcast``,
int64 arrays) and decode each flat index.  A broadcast operand's gradient is
the full-size partial derivative summed by ``sum_to_kernel``: one thread per
target element, its terms in a fixed order (no atomics).  Every constant is a
float32, so no float64 instruction is emitted.
"""
from __future__ import annotations

import math

import numpy as np
from numba import cuda, float32

from ..pointwise import BINARY, UNARY, broadcast, reduction
from ._common import empty, flat, grid_1d, to_device

__all__ = ["unary_forward", "unary_backward", "binary_forward", "binary_backward"]


@cuda.jit(device=True)
def _value(v, code, a, b):
    zero, one = float32(0), float32(1)
    if code == 0:
        return -v
    if code == 1:
        return abs(v)
    if code == 2:
        return math.exp(v)
    if code == 3:
        return math.log(v)
    if code == 4:
        return math.sqrt(v)
    if code == 5:
        return math.pow(v, a)
    if code == 6:
        return min(max(v, a), b)
    t = min(max(a * v + b, zero), one)
    if code == 7:
        return t
    if code == 8:
        return v * t
    e = math.expm1(min(v, zero))
    if code == 9:
        return v if v > zero else a * e
    if code == 10:
        return b * (v if v > zero else a * e)
    if code == 11:
        return max(v, zero) + math.log1p(math.exp(-abs(v)))
    if code == 12:
        return v / (one + abs(v))
    if code == 13:
        return a * v + b
    return one / v


@cuda.jit(device=True)
def _slope(v, y, code, a, b):
    zero, one = float32(0), float32(1)
    if code == 0:
        return -one
    if code == 1:
        return one if v > zero else (-one if v < zero else zero)
    if code == 2:
        return y
    if code == 3:
        return one / v
    if code == 4:
        return float32(0.5) / y
    if code == 5:
        return a * math.pow(v, a - one)
    if code == 6:
        return one if a <= v <= b else zero
    t = a * v + b
    if code == 7:
        return a if zero < t < one else zero
    if code == 8:
        return zero if t <= zero else (one if t >= one else t + a * v)
    if code == 9:
        return one if v > zero else a * math.exp(min(v, zero))
    if code == 10:
        return b * (one if v > zero else a * math.exp(min(v, zero)))
    if code == 11:
        e = math.exp(-abs(v))
        return one / (one + e) if v >= zero else e / (one + e)
    if code == 12:
        d = one + abs(v)
        return one / (d * d)
    if code == 13:
        return a
    return -y * y


@cuda.jit
def unary_forward_kernel(x, code, a, b, y):
    """y = fn(x) for the function ``code``.  x, y : (n,) float32; a, b : float32 (alpha, beta)."""
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        y[i] = _value(x[i], code, a, b)


@cuda.jit
def unary_backward_kernel(dy, x, y, code, a, b, dx):
    """dx = dy * fn'(x), y = fn(x) from the forward.  dy, x, y, dx : (n,) float32."""
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        dx[i] = dy[i] * _slope(x[i], y[i], code, a, b)


def unary_forward(x, fn, alpha=0.0, beta=0.0):
    """x : any shape, device float32 -> y like x."""
    y = empty(x.shape, np.float32)
    if x.size:
        unary_forward_kernel[grid_1d(x.size)](flat(x), UNARY[fn], np.float32(alpha), np.float32(beta), flat(y))
    return y


def unary_backward(dy, x, y, fn, alpha=0.0, beta=0.0):
    """dy, x, y : one shape, device float32 -> dx like x."""
    dx = empty(x.shape, np.float32)
    if x.size:
        unary_backward_kernel[grid_1d(x.size)](flat(dy), flat(x), flat(y), UNARY[fn], np.float32(alpha),
                                               np.float32(beta), flat(dx))
    return dx


# ------------------------------------------------------------ binary, broadcasting
@cuda.jit(device=True)
def _offsets(i, shape, sa, sb):
    oa, ob = 0, 0
    for d in range(shape.size - 1, -1, -1):
        q = i % shape[d]
        i //= shape[d]
        oa += q * sa[d]
        ob += q * sb[d]
    return oa, ob


@cuda.jit
def binary_forward_kernel(a, sa, b, sb, shape, code, y):
    """y[i] = a code b at output index i (C order over ``shape``).  a, b, y : flat float32; sa, sb, shape :
    (R,) int64, each operand's stride per output axis (0 where it is broadcast)."""
    for i in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        oa, ob = _offsets(i, shape, sa, sb)
        u, v = a[oa], b[ob]
        if code == 0:
            y[i] = u + v
        elif code == 1:
            y[i] = u - v
        elif code == 2:
            y[i] = u * v
        elif code == 3:
            y[i] = u / v
        else:
            y[i] = math.pow(u, v)


@cuda.jit
def binary_partials_kernel(dy, a, sa, b, sb, shape, code, ga, gb):
    """ga, gb (output-sized, flat float32) = dy * the partial derivatives of a code b; see the forward."""
    for i in range(cuda.grid(1), dy.size, cuda.gridsize(1)):
        oa, ob = _offsets(i, shape, sa, sb)
        u, v, g = a[oa], b[ob], dy[i]
        if code == 0:
            ga[i], gb[i] = g, g
        elif code == 1:
            ga[i], gb[i] = g, -g
        elif code == 2:
            ga[i], gb[i] = g * v, g * u
        elif code == 3:
            ga[i], gb[i] = g / v, -g * (u / v) / v
        else:
            ga[i], gb[i] = g * v * math.pow(u, v - float32(1)), g * math.pow(u, v) * math.log(u)


@cuda.jit
def sum_to_kernel(g, keep, keep_st, red, red_st, out):
    """out[j] = the sum of g (flat float32) over the reduced axes at target element j, one thread per j.
    keep/red : (R,) int64 sizes, keep_st/red_st : their strides into g (kernels/pointwise.reduction)."""
    count = 1
    for d in range(red.size):
        count *= red[d]
    for j in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        base, rem = 0, j
        for d in range(keep.size - 1, -1, -1):
            base += (rem % keep[d]) * keep_st[d]
            rem //= keep[d]
        acc = float32(0)
        for r in range(count):
            off, rem = base, r
            for d in range(red.size - 1, -1, -1):
                off += (rem % red[d]) * red_st[d]
                rem //= red[d]
            acc += g[off]
        out[j] = acc


def binary_forward(a, b, fn):
    """a, b : device float32 of broadcastable shapes -> y : their broadcast shape, device float32."""
    out, shape, sa, sb = broadcast(a.shape, b.shape)
    y = empty(out, np.float32)
    if y.size:
        binary_forward_kernel[grid_1d(y.size)](flat(a), to_device(sa), flat(b), to_device(sb),
                                               to_device(shape), BINARY[fn], flat(y))
    return y


def _reduce(g, out_shape, shape):
    if tuple(shape) == tuple(out_shape):
        return g
    out = empty(shape, np.float32)
    keep, keep_st, red, red_st = (to_device(v) for v in reduction(out_shape, shape))
    sum_to_kernel[grid_1d(out.size)](flat(g), keep, keep_st, red, red_st, flat(out))
    return out


def binary_backward(dy, a, b, fn, need_a=True, need_b=True):
    """dy : the broadcast shape, a, b : device float32 -> (da like a or None, db like b or None)."""
    out, shape, sa, sb = broadcast(a.shape, b.shape)
    ga = empty(out, np.float32)
    gb = empty(out, np.float32)
    if ga.size:
        binary_partials_kernel[grid_1d(ga.size)](flat(dy), flat(a), to_device(sa), flat(b), to_device(sb),
                                                 to_device(shape), BINARY[fn], flat(ga), flat(gb))
    return (_reduce(ga, out, a.shape) if need_a else None), (_reduce(gb, out, b.shape) if need_b else None)
