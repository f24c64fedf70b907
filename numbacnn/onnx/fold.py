"""Constant folding for the ONNX importer: the small shape and weight subgraphs, in numpy.

Exporters often compute a weight or a Reshape target inside the graph
(``ConstantOfShape`` fed by an initializer, ``Shape -> Gather -> Unsqueeze ->
Concat`` feeding a Reshape, ``Transpose`` of a weight before ``MatMul``).
The importer evaluates such nodes at import time with the numpy functions
below, one per operator: a node is folded when all its inputs are known
constants (``Shape`` only needs its input's shape).  Only this fixed table of
numpy operations runs: nothing in a model file is executed.

Each function takes ``(inputs, attrs, opset)``: the input arrays (None for an
omitted optional input), the node's attributes as Python values, and the
default-domain opset, since several operators moved attributes to inputs
(Unsqueeze/Squeeze axes at 13, Slice starts/ends at 10, Reshape shape at 5).
They return the list of outputs.
"""
from __future__ import annotations

import numpy as np
from onnx import helper, numpy_helper

#: the most elements one folded tensor may hold (a file asking for more is refused)
MAX_ELEMENTS = 1 << 30


class FoldError(ValueError):
    """A constant subgraph that cannot be evaluated; the importer adds the node's name."""


def _ints(a, what):
    a = np.asarray(a)
    if a.dtype.kind not in "iu":
        raise FoldError(f"{what} must be integers, got {a.dtype}")
    return [int(v) for v in a.reshape(-1)]


def axes_arg(inputs, attrs, opset, attr_until, index=1):
    """Axes from the attribute (opset < attr_until) or from input ``index``; None when absent."""
    if opset < attr_until:
        return attrs.get("axes")
    if len(inputs) > index and inputs[index] is not None:
        return _ints(inputs[index], "axes")
    return None


def _check_size(shape):
    n = int(np.prod([max(int(d), 0) for d in shape], dtype=np.float64))
    if n > MAX_ELEMENTS:
        raise FoldError(f"a constant of shape {list(shape)} ({n} elements) is larger than the limit {MAX_ELEMENTS}")
    if any(int(d) < 0 for d in shape):
        raise FoldError(f"negative dimension in constant shape {list(shape)}")


def constant(inputs, attrs, opset):
    for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
        if key in attrs:
            v = attrs[key]
            if key == "value":
                return [numpy_helper.to_array(v)]
            return [np.asarray(v, dtype=np.float32 if "float" in key else np.int64)]
    raise FoldError(f"Constant holds none of value, value_float(s), value_int(s) (attributes {sorted(attrs)})")


def constant_of_shape(inputs, attrs, opset):
    shape = _ints(inputs[0], "shape")
    _check_size(shape)
    value = numpy_helper.to_array(attrs["value"]).reshape(-1) if "value" in attrs else np.zeros(1, np.float32)
    return [np.full(shape, value[0], dtype=value.dtype)]


def reshape(inputs, attrs, opset):
    data = inputs[0]
    shape = attrs.get("shape") if opset < 5 else _ints(inputs[1], "shape")
    return [data.reshape(resolve_reshape(data.shape, shape, attrs.get("allowzero", 0)))]


def resolve_reshape(in_shape, shape, allowzero=0):
    """ONNX Reshape's target: 0 copies the input dimension (unless allowzero), -1 is inferred."""
    out = [int(in_shape[i]) if d == 0 and not allowzero else int(d) for i, d in enumerate(shape)]
    if out.count(-1) > 1:
        raise FoldError(f"Reshape target {list(shape)} has more than one -1")
    total = int(np.prod(in_shape, dtype=np.int64))
    if -1 in out:
        known = int(np.prod([d for d in out if d != -1], dtype=np.int64))
        if known == 0 or total % known:
            raise FoldError(f"cannot reshape {list(in_shape)} to {list(shape)}")
        out[out.index(-1)] = total // known
    if int(np.prod(out, dtype=np.int64)) != total:
        raise FoldError(f"cannot reshape {list(in_shape)} to {list(shape)}")
    return tuple(out)


def shape(inputs, attrs, opset):
    s = np.asarray(inputs[0], dtype=np.int64)  # the importer passes the shape itself
    return [s[attrs.get("start", 0):attrs.get("end", len(s))]]


def gather(inputs, attrs, opset):
    return [np.take(inputs[0], np.asarray(inputs[1]).astype(np.int64), axis=attrs.get("axis", 0))]


def unsqueeze(inputs, attrs, opset):
    axes = axes_arg(inputs, attrs, opset, 13)
    if axes is None:
        raise FoldError("Unsqueeze needs axes")
    x = inputs[0]
    rank = x.ndim + len(axes)
    for a in sorted(a % rank for a in axes):
        x = np.expand_dims(x, a)
    return [x]


def squeeze(inputs, attrs, opset):
    axes = axes_arg(inputs, attrs, opset, 13)
    x = inputs[0]
    return [np.squeeze(x) if axes is None else np.squeeze(x, axis=tuple(a % x.ndim for a in axes))]


def concat(inputs, attrs, opset):
    return [np.concatenate([np.asarray(a) for a in inputs], axis=attrs.get("axis", 0))]


def transpose(inputs, attrs, opset):
    return [np.transpose(inputs[0], attrs.get("perm"))]


def cast(inputs, attrs, opset):
    return [np.asarray(inputs[0]).astype(helper.tensor_dtype_to_np_dtype(attrs["to"]))]


def identity(inputs, attrs, opset):
    return [inputs[0]]


def flatten(inputs, attrs, opset):
    x = inputs[0]
    axis = attrs.get("axis", 1) % (x.ndim + 1) if x.ndim else 0
    return [x.reshape(int(np.prod(x.shape[:axis], dtype=np.int64)), -1)]


def slice_(inputs, attrs, opset):
    x = inputs[0]
    if opset < 10:
        starts, ends, axes, steps = attrs["starts"], attrs["ends"], attrs.get("axes"), None
    else:
        starts, ends = _ints(inputs[1], "starts"), _ints(inputs[2], "ends")
        axes = _ints(inputs[3], "axes") if len(inputs) > 3 and inputs[3] is not None else None
        steps = _ints(inputs[4], "steps") if len(inputs) > 4 and inputs[4] is not None else None
    axes = list(range(len(starts))) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    index = [slice(None)] * x.ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        index[a % x.ndim] = slice(s, e, st)
    return [x[tuple(index)]]


def _binary(fn):
    def op(inputs, attrs, opset):
        a, b = np.asarray(inputs[0]), np.asarray(inputs[1])
        if opset < 7 and attrs.get("broadcast", 0) and "axis" in attrs:  # legacy broadcast along an axis
            b = b.reshape(b.shape + (1,) * (a.ndim - attrs["axis"] % a.ndim - b.ndim))
        return [fn(a, b).astype(np.result_type(a, b))]
    return op


def _int_div(a, b):
    if a.dtype.kind in "iu" and b.dtype.kind in "iu":
        return np.trunc(a / b)
    return a / b


def _unary(fn):
    def op(inputs, attrs, opset):
        a = np.asarray(inputs[0])
        return [fn(a).astype(a.dtype)]
    return op


#: op_type -> numpy implementation
FOLDERS = {
    "Constant": constant, "ConstantOfShape": constant_of_shape, "Reshape": reshape, "Shape": shape,
    "Gather": gather, "Unsqueeze": unsqueeze, "Squeeze": squeeze, "Concat": concat, "Transpose": transpose,
    "Cast": cast, "Identity": identity, "Flatten": flatten, "Slice": slice_,
    "Add": _binary(np.add), "Sub": _binary(np.subtract), "Mul": _binary(np.multiply), "Div": _binary(_int_div),
    "Pow": _binary(np.power), "Neg": _unary(np.negative), "Sqrt": _unary(np.sqrt),
    "Reciprocal": _unary(np.reciprocal), "Abs": _unary(np.abs), "Exp": _unary(np.exp), "Log": _unary(np.log),
}


def fold(op_type, inputs, attrs, opset):
    """Evaluate one node on constant inputs; a FoldError (or numpy's error) becomes the importer's error."""
    try:
        out = FOLDERS[op_type](inputs, attrs, opset)
    except FoldError:
        raise
    except (ValueError, IndexError, KeyError, TypeError) as e:
        raise FoldError(f"cannot evaluate it on constant inputs ({type(e).__name__}: {e})") from None
    for a in out:
        _check_size(np.shape(a))
    return out
