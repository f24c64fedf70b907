"""What the point-wise kernels share: the function tables and the strided-index geometry.

``UNARY`` and ``BINARY`` name every function of the ``unary`` and ``binary`` ops
and give the integer code the CPU and CUDA kernels switch on (one kernel per
direction serves every function).  ``strided_view`` and ``broadcast`` turn a
transpose or a numpy-style broadcast into what the kernels walk: the output
shape and, per operand, the element stride of each output axis (0 where the
operand is broadcast), with adjacent axes merged where they stay adjacent, so
the innermost loop runs over as long a row as the layout allows.  This module
imports nothing else of the package.
"""
from __future__ import annotations

import numpy as np

#: unary function -> kernel code; ``alpha`` and ``beta`` are the parameters named in the reference
UNARY = {"neg": 0, "abs": 1, "exp": 2, "log": 3, "sqrt": 4, "pow": 5, "clip": 6, "hard_sigmoid": 7,
         "hard_swish": 8, "elu": 9, "selu": 10, "softplus": 11, "softsign": 12, "affine": 13, "reciprocal": 14}
#: binary function -> kernel code
BINARY = {"add": 0, "sub": 1, "mul": 2, "div": 3, "pow": 4}


def c_strides(shape) -> list:
    """Element strides of a C-contiguous array of ``shape``."""
    out, s = [], 1
    for d in reversed(tuple(shape)):
        out.append(s)
        s *= int(d)
    return out[::-1]


def broadcast_shape(a_shape, b_shape) -> tuple:
    """numpy's broadcast of two shapes, or a ValueError naming both."""
    rank = max(len(a_shape), len(b_shape))
    a = (1,) * (rank - len(a_shape)) + tuple(int(d) for d in a_shape)
    b = (1,) * (rank - len(b_shape)) + tuple(int(d) for d in b_shape)
    out = []
    for x, y in zip(a, b):
        if x != y and 1 not in (x, y):
            raise ValueError(f"shapes {tuple(a_shape)} and {tuple(b_shape)} do not broadcast")
        out.append(max(x, y) if min(x, y) else 0)
    return tuple(out)


def operand_strides(shape, out_shape) -> list:
    """Strides of a C-contiguous operand of ``shape`` over the axes of ``out_shape`` (0: broadcast)."""
    shape = (1,) * (len(out_shape) - len(shape)) + tuple(int(d) for d in shape)
    return [0 if d == 1 and o != 1 else s for d, o, s in zip(shape, out_shape, c_strides(shape))]


def merge_axes(out_shape, *strides) -> tuple:
    """Merge adjacent output axes along which every operand's layout is contiguous; drop size-1 axes.

    Returns (shape, [strides per operand]) as int64 arrays of at least one axis.
    """
    shape, sts = [], [[] for _ in strides]
    for i, d in enumerate(out_shape):
        if d == 1:
            continue
        if shape and all(st[-1] == s[i] * d for st, s in zip(sts, strides)):
            shape[-1] *= d
            for st, s in zip(sts, strides):
                st[-1] = s[i]
            continue
        shape.append(int(d))
        for st, s in zip(sts, strides):
            st.append(int(s[i]))
    if not shape:
        shape, sts = [1], [[0] for _ in strides]
    return np.asarray(shape, np.int64), [np.asarray(st, np.int64) for st in sts]


def strided_view(shape, perm):
    """A transpose as (merged output shape, input strides per output axis): y = x.transpose(perm)."""
    st = c_strides(shape)
    out_shape = [int(shape[p]) for p in perm]
    return merge_axes(out_shape, [st[p] for p in perm])


def broadcast(a_shape, b_shape):
    """(output shape, merged shape, [a strides, b strides]) of ``a op b`` with numpy broadcasting."""
    out = broadcast_shape(a_shape, b_shape)
    shape, (sa, sb) = merge_axes(out, operand_strides(a_shape, out), operand_strides(b_shape, out))
    return out, shape, sa, sb


def reduction(out_shape, target_shape):
    """How to sum a C-contiguous array of ``out_shape`` down to ``target_shape`` (broadcast to it).

    Returns (kept sizes, kept strides, reduced sizes, reduced strides), int64 arrays, strides into the
    full array: target element j (C order over the kept sizes) sums the cells at its kept offset plus
    every combination of the reduced axes.
    """
    target = (1,) * (len(out_shape) - len(target_shape)) + tuple(int(d) for d in target_shape)
    st = c_strides(out_shape)
    keep = [(int(d), s) for d, t, s in zip(out_shape, target, st) if t == d and d != 1]
    red = [(int(d), s) for d, t, s in zip(out_shape, target, st) if t != d]

    def arrays(pairs):
        pairs = pairs or [(1, 0)]
        return np.asarray([p[0] for p in pairs], np.int64), np.asarray([p[1] for p in pairs], np.int64)
    return (*arrays(keep), *arrays(red))


__all__ = ["UNARY", "BINARY", "broadcast", "broadcast_shape", "strided_view", "reduction", "merge_axes",
           "operand_strides", "c_strides"]
