"""The ONNX mapping of every layer, both ways: one function per ONNX operator, one per layer.

``IMPORT`` maps an ONNX op type to ``fn(importer, node)``, which appends engine
layers through the importer's building blocks (``runtime``, ``const``, ``add``,
``set``, ``chain``, ``spatial``, ...; see ``importer.py``) and records the
result.  ``EXPORT`` maps a layer's registered name to ``fn(graph, layer, input
names, output name, host state)``, which appends ONNX nodes and initializers.
Both are ``registry.Registry`` tables, so adding an op is adding its two
functions here; the importer and the exporter are engines that know no op.
"""
from __future__ import annotations

import numpy as np

from ..kernels.geometry import out_size
from ..layers import (LRN, Add, AvgPool2D, BatchNorm, Binary, BinaryConst, ChannelPad, Concatenate, Conv2D,
                      ConvTranspose2D, Dense, Dropout, Flatten, GlobalAvgPool2D, LayerNorm, LeakyReLU, MaxPool2D, Pad2D,
                      Reduce, ReLU, Reshape, Sigmoid, Softmax, Take, Tanh, Transpose, Unary)
from ..registry import Registry
from . import fold as F

#: ONNX op type -> fn(importer, node)
IMPORT = Registry("ONNX operator")
#: layer registered name -> fn(graph, layer, input names, output name, host state)
EXPORT = Registry("layer without an ONNX export")


# ====================================================================== shared helpers
def pairs(v, what):
    return tuple(int(a) for a in v)



def attrs_to_2d(node):
    """Rewrite a 1-D Conv/pool's list attributes for the (L, 1) image it becomes."""
    a = node.attrs
    for key in ("kernel_shape", "strides", "dilations"):
        if key in a:
            a[key] = list(a[key])[:1] + [1]
    if "pads" in a:
        p = list(a["pads"]) + [0, 0]
        a["pads"] = [p[0], 0, p[1], 0]


# ====================================================================== import
@IMPORT.register("Conv")
def import_conv(imp, node):
    node.check_attrs({"kernel_shape", "strides", "pads", "dilations", "group", "auto_pad"})
    x = imp.runtime(node, 0, (3, 4))
    w = imp.const(node, 1)
    b = imp.const(node, 2, required=False)
    one_d = len(x[1]) == 3
    if w.ndim != len(x[1]):
        raise node.error(f"weight shape {list(w.shape)} does not match input shape {list(x[1])}")
    if one_d:
        attrs_to_2d(node)
        x, w = imp.as_2d(node, x, w)
    kernel = tuple(int(d) for d in w.shape[2:])
    if "kernel_shape" in node.attrs and tuple(node.attrs["kernel_shape"]) != kernel:
        raise node.error(f"kernel_shape {node.attrs['kernel_shape']} does not match the weight shape "
                         f"{list(w.shape)}", "kernel_shape")
    dil = pairs(node.attrs.get("dilations", [1, 1]), "dilations")
    groups = int(node.attrs.get("group", 1))
    strides, (t, bt, l, r) = imp.spatial(node, x[1], kernel, dilations=dil)
    sym = (min(t, bt), min(l, r))
    steps = []
    if (t, bt) != (sym[0], sym[0]) or (l, r) != (sym[1], sym[1]):
        steps.append((Pad2D((t - sym[0], bt - sym[0], l - sym[1], r - sym[1]), 0.0), None))
    weights = {"weight": w}
    if b is not None:
        weights["bias"] = b.reshape(-1)
    steps.append((Conv2D(int(w.shape[0]), kernel, strides, sym, dil, groups, use_bias=b is not None), weights))
    y = imp.chain(node, x, steps)
    imp.set(node, imp.back_1d(node, y) if one_d else y)


def _pool(imp, node, kind):
    if kind == "max":
        node.check_attrs({"kernel_shape", "strides", "pads", "auto_pad", "ceil_mode", "dilations",
                          "storage_order"})
    else:
        node.check_attrs({"kernel_shape", "strides", "pads", "auto_pad", "ceil_mode", "count_include_pad"})
    x = imp.runtime(node, 0, (3, 4))
    one_d = len(x[1]) == 3
    if one_d:
        attrs_to_2d(node)
        x, _ = imp.as_2d(node, x)
    k, s, (t, b, l, r), ceil = imp.window(node, x[1])
    H, W = x[1][2], x[1][3]
    even = t == b and l == r and t <= k[0] // 2 and l <= k[1] // 2
    if kind == "max":
        steps = [(MaxPool2D(k, s, (t, l)), None)] if even else \
            [(Pad2D((t, b, l, r), float("-inf")), None), (MaxPool2D(k, s, 0), None)]
    elif even:
        steps = [(AvgPool2D(k, s, (t, l), bool(node.attrs.get("count_include_pad", 0))), None)]
    elif ceil and imp.spatial(node, x[1], k)[1] != (t, b, l, r):
        raise node.error("ceil_mode=1 is not supported for AveragePool where it changes the output size",
                         "ceil_mode")
    elif node.attrs.get("count_include_pad", 0):
        steps = [(Pad2D((t, b, l, r), 0.0), None), (AvgPool2D(k, s, 0, True), None)]
    else:
        # Average only the real cells: pad evenly by the larger side with the engine's exclusive
        # divisor, then crop the windows that start before the requested top/left padding.
        ph, pw = max(t, b), max(l, r)
        if ph > k[0] // 2 or pw > k[1] // 2 or (ph - t) % s[0] or (pw - l) % s[1]:
            raise node.error(f"pads (top, bottom, left, right)={(t, b, l, r)} with kernel {k}, strides {s} "
                             f"and count_include_pad=0 cannot be expressed", "pads")
        OH, OW = out_size(H, k[0], s[0], (t, b)), out_size(W, k[1], s[1], (l, r))
        SH, SW = out_size(H, k[0], s[0], ph), out_size(W, k[1], s[1], pw)
        ct, cl = (ph - t) // s[0], (pw - l) // s[1]
        steps = [(AvgPool2D(k, s, (ph, pw), False), None)]
        if (ct, SH - ct - OH, cl, SW - cl - OW) != (0, 0, 0, 0):
            steps.append((Pad2D((-ct, -(SH - ct - OH), -cl, -(SW - cl - OW)), 0.0), None))
    y = imp.chain(node, x, steps)
    imp.set(node, imp.back_1d(node, y) if one_d else y)


@IMPORT.register("MaxPool")
def import_max_pool(imp, node):
    _pool(imp, node, "max")


@IMPORT.register("AveragePool")
def import_average_pool(imp, node):
    _pool(imp, node, "avg")


@IMPORT.register("GlobalAveragePool")
def import_global_average_pool(imp, node):
    node.check_attrs(set())
    imp.set(node, imp.add(node, GlobalAvgPool2D(), [imp.runtime(node, 0, 4)]))


def _dense(imp, node, x, w, b):
    """x : runtime (N, in); w : (out, in); b : (out,) or None."""
    weights = {"weight": w}
    if b is not None:
        weights["bias"] = b
    return imp.add(node, Dense(int(w.shape[0]), use_bias=b is not None), [x], weights)


@IMPORT.register("Gemm")
def import_gemm(imp, node):
    node.check_attrs({"alpha", "beta", "transA", "transB", "broadcast"})
    if node.attrs.get("transA", 0):
        raise node.error("transA=1 on a non-constant input is not supported", "transA")
    x = imp.runtime(node, 0, 2)
    bmat = imp.const(node, 1)
    w = (bmat if node.attrs.get("transB", 0) else bmat.T) * np.float32(node.attrs.get("alpha", 1.0))
    c = imp.const(node, 2, required=False)
    bias = None
    if c is not None:
        bias = _bias_vector(imp, node, c * np.float32(node.attrs.get("beta", 1.0)), 2, w.shape[0])
    imp.set(node, _dense(imp, node, x, w, bias))


@IMPORT.register("MatMul")
def import_matmul(imp, node):
    node.check_attrs(set())
    x = imp.runtime(node, 0, 2)
    b = imp.const(node, 1)
    if b.ndim != 2:
        raise node.error(f"only a 2-D constant right operand is supported, got shape {list(b.shape)}")
    imp.set(node, _dense(imp, node, x, b.T, None))


def _channel_vector(c, rank, channels):
    """A constant that broadcasts per channel (axis 1) against a rank-``rank`` tensor -> (channels,), else None."""
    c = np.asarray(c, dtype=np.float32)
    if c.ndim > rank:
        return None
    s = (1,) * (rank - c.ndim) + c.shape
    if any(d != 1 for i, d in enumerate(s) if i != 1) or (rank > 1 and s[1] not in (1, channels)):
        return None
    return np.broadcast_to(c.reshape(-1), (channels,)).astype(np.float32)


def _bias_vector(imp, node, c, rank, channels):
    vec = _channel_vector(c, rank, channels)
    if vec is None:
        raise node.error(f"constant of shape {list(np.shape(c))} is not a per-channel bias of {channels} channels")
    return vec


def _fold(imp, node, x, c, fn):
    """Fold ``x fn c`` (c one value per channel; fn mul, div, add or sub) into the conv, dense or batch-norm
    layer that computes x alone; True when done (the node then aliases that layer)."""
    src, shape = imp.tensors[x]
    layer = imp.layers.get(src)
    affine = None if layer is None else layer.channel_affine
    vec = _channel_vector(c, len(shape), shape[1]) if len(shape) > 1 else None
    if affine is None or vec is None or src not in imp.weights or imp.node_uses(src) != 1:
        return False
    scaled, bias = affine
    w = imp.weights[src]
    if bias not in w and fn in ("add", "sub"):
        if not layer.optional_bias:
            return False
        layer.use_bias = True
        layer.build(layer.input_shapes)
        w[bias] = np.zeros(shape[1], np.float32)
    if fn in ("mul", "div"):
        s = vec if fn == "mul" else np.float32(1) / vec
        for p in scaled:
            if p in w:
                w[p] = (w[p] * s.reshape((-1,) + (1,) * (w[p].ndim - 1))).astype(np.float32)
    else:
        w[bias] = (w[bias] + (vec if fn == "add" else -vec)).astype(np.float32)
    imp.absorb(src)
    imp.set(node, (src, shape))
    return True


#: ONNX binary operator -> the engine's function (kernels/pointwise.BINARY)
ARITHMETIC = {"Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div", "Pow": "pow"}


def _const_operand(imp, node, c, shape):
    """The constant operand as float32, with opset < 7's axis broadcast applied and its rank checked."""
    c = np.asarray(c, dtype=np.float32)
    if node.attrs.get("broadcast") and "axis" in node.attrs and c.ndim:  # opset < 7: align c at ``axis``
        c = c.reshape(c.shape + (1,) * (len(shape) - node.attrs["axis"] % len(shape) - c.ndim))
    if c.ndim > len(shape) or (c.ndim == len(shape) and c.shape[0] != 1):
        raise node.error(f"a constant of shape {list(c.shape)} against an input of shape {list(shape)} would "
                         f"broadcast along the batch axis")
    return c


def _scalar_layer(fn, v, reverse):
    """x fn v (v fn x when reverse) for a number v as a Unary layer, or None."""
    if fn == "add":
        return Unary("affine", 1.0, v)
    if fn == "sub":
        return Unary("affine", -1.0, v) if reverse else Unary("affine", 1.0, -v)
    if fn == "mul":
        return Unary("affine", v, 0.0)
    if fn == "div" and not reverse and v != 0:
        return Unary("affine", float(np.float32(1) / np.float32(v)), 0.0)
    if fn == "pow" and not reverse:
        return Unary("pow", v)
    return None


def _arithmetic(imp, node):
    node.check_attrs({"broadcast", "axis", "consumed_inputs"})
    fn = ARITHMETIC[node.op]
    a, b = node.input(0), node.input(1)
    if a in imp.tensors and b in imp.tensors:
        if fn == "add" and imp.tensors[a][1] == imp.tensors[b][1]:
            return _merge(imp, node, [a, b])
        xa, xb = imp.runtime(node, 0), imp.runtime(node, 1)
        if len(xa[1]) != len(xb[1]):
            raise node.error(f"inputs of shapes {list(xa[1])} and {list(xb[1])}: broadcasting between computed "
                             f"tensors of different ranks would mix the batch axis")
        return imp.set(node, imp.add(node, Binary(fn), [xa, xb]))
    reverse = a in imp.consts
    x, c = (b, imp.consts[a]) if reverse else (a, imp.consts[b])
    xs = imp.runtime(node, 1 if reverse else 0)
    c = _const_operand(imp, node, c, xs[1])
    if not reverse or fn in ("add", "mul"):
        if _fold(imp, node, x, c, fn):
            return
    layer = _scalar_layer(fn, float(c.reshape(-1)[0]), reverse) if c.size == 1 else None
    if layer is None:
        shape = tuple(c.shape[1:] if c.ndim == len(xs[1]) else c.shape) or (1,)
        layer = BinaryConst(fn, shape, reverse)
        return imp.set(node, imp.add(node, layer, [xs], {"constant": c.reshape(shape)}))
    imp.set(node, imp.add(node, layer, [xs]))


for _op in ARITHMETIC:
    IMPORT.register(_op)(_arithmetic)


@IMPORT.register("Sum")
def import_sum(imp, node):
    node.check_attrs(set())
    _merge(imp, node, node.inputs)


def _merge(imp, node, names):
    xs = []
    for i, n in enumerate(names):
        xs.append(imp.runtime(node, i))
        if xs[-1][1] != xs[0][1]:
            raise node.error(f"inputs of shapes {list(xs[0][1])} and {list(xs[-1][1])}: broadcasting "
                             f"between computed tensors is not supported")
    imp.set(node, xs[0] if len(xs) == 1 else imp.add(node, Add(), xs))


@IMPORT.register("Concat")
def import_concat(imp, node):
    node.check_attrs({"axis"})
    xs = [imp.runtime(node, i) for i in range(len(node.inputs))]
    rank = len(xs[0][1])
    if "axis" not in node.attrs or node.attrs["axis"] % rank != 1:
        raise node.error(f"axis {node.attrs.get('axis')} is not supported: only the channel axis 1", "axis")
    imp.set(node, imp.add(node, Concatenate(), xs))


@IMPORT.register("BatchNormalization")
def import_batch_normalization(imp, node):
    node.check_attrs({"epsilon", "momentum", "spatial", "is_test", "consumed_inputs", "training_mode"})
    if node.attrs.get("training_mode", 0):
        raise node.error("training_mode=1 is not supported (import inference graphs)", "training_mode")
    x = imp.runtime(node, 0, (2, 3, 4, 5))
    if node.attrs.get("spatial", 1) == 0 and len(x[1]) != 2:
        raise node.error("spatial=0 is not supported", "spatial")
    scale, bias, mean, var = (imp.const(node, i).reshape(-1) for i in (1, 2, 3, 4))
    layer = BatchNorm(momentum=float(1.0 - node.attrs.get("momentum", 0.9)),
                      eps=float(node.attrs.get("epsilon", 1e-5)))
    weights = {"gamma": scale, "beta": bias, "running_mean": mean, "running_var": var}
    shape = x[1]
    if len(shape) in (3, 5):  # per-channel statistics do not care how the rest is laid out
        x = imp.add(node, Reshape((shape[1], int(np.prod(shape[2:])), 1)), [x], suffix="_to4d")
    y = imp.add(node, layer, [x], weights)
    if len(shape) in (3, 5):
        y = imp.add(node, Reshape(shape[1:]), [y], suffix="_back")
    imp.set(node, y)


@IMPORT.register("LayerNormalization")
def import_layer_normalization(imp, node):
    """LayerNormalization (opset 17): Y = (X - mean) / sqrt(var + epsilon) * Scale + B over axes axis..rank-1."""
    node.check_attrs({"axis", "epsilon", "stash_type"})
    x = imp.runtime(node)
    rank = len(x[1])
    axis = int(node.attrs.get("axis", -1))
    if axis % rank == 0:
        raise node.error("normalising over the batch axis is not supported", "axis")
    layer = LayerNorm(axis if axis < 0 else axis % rank, float(node.attrs.get("epsilon", 1e-5)))
    norm_shape = tuple(x[1][axis % rank:])
    scale = np.broadcast_to(imp.const(node, 1), norm_shape)
    b = imp.const(node, 2, required=False)
    bias = np.zeros(norm_shape, np.float32) if b is None else np.broadcast_to(b, norm_shape)
    imp.set(node, imp.add(node, layer, [x], {"gamma": scale, "beta": bias}))


def _elementwise(imp, node, layer, known=()):
    node.check_attrs(set(known) | {"consumed_inputs"})
    imp.set(node, imp.add(node, layer, [imp.runtime(node)]))


@IMPORT.register("Relu")
def import_relu(imp, node):
    _elementwise(imp, node, ReLU())


@IMPORT.register("LeakyRelu")
def import_leaky_relu(imp, node):
    _elementwise(imp, node, LeakyReLU(float(node.attrs.get("alpha", 0.01))), {"alpha"})


@IMPORT.register("Sigmoid")
def import_sigmoid(imp, node):
    _elementwise(imp, node, Sigmoid())


@IMPORT.register("Tanh")
def import_tanh(imp, node):
    _elementwise(imp, node, Tanh())


@IMPORT.register("Identity")
def import_identity(imp, node):
    x = imp.runtime(node)
    imp.absorb(x[0])   # an alias: its input's consumer is not another consumer of the node
    imp.set(node, x)


@IMPORT.register("Dropout")
def import_dropout(imp, node):
    node.check_attrs({"ratio", "is_test", "seed", "consumed_inputs"})
    ratio = node.attrs.get("ratio", 0.5)
    if imp.opset >= 12:
        r = imp.const(node, 1, required=False)
        ratio = 0.5 if r is None else float(np.asarray(r).reshape(-1)[0])
        mode = imp.const(node, 2, required=False)
        if mode is not None and bool(np.asarray(mode).reshape(-1)[0]):
            raise node.error("training_mode=True is not supported (import inference graphs)")
    if not 0.0 <= ratio < 1.0:
        raise node.error(f"ratio {ratio} must be in [0, 1)", "ratio")
    imp.set(node, imp.add(node, Dropout(float(ratio)), [imp.runtime(node)]))


@IMPORT.register("LRN")
def import_lrn(imp, node):
    node.check_attrs({"size", "alpha", "beta", "bias"})
    size = int(node.attrs.get("size", 0))
    if size < 1 or size % 2 == 0:
        raise node.error(f"size {size} is not supported: only odd sizes (ONNX centres even windows "
                         f"differently from the engine)", "size")
    layer = LRN(size, float(node.attrs.get("alpha", 1e-4)), float(node.attrs.get("beta", 0.75)),
                float(node.attrs.get("bias", 1.0)))
    imp.set(node, imp.add(node, layer, [imp.runtime(node, 0, 4)]))


@IMPORT.register("Softmax")
def import_softmax(imp, node):
    """Softmax over one axis (opset 13) or over the flattened axes from ``axis`` on (earlier opsets): the
    engine's Softmax works on the last axis, with Transposes or Reshapes around it as needed."""
    node.check_attrs({"axis"})
    x = imp.runtime(node)
    shape, rank = x[1], len(x[1])
    axis = _axis(node, node.attrs.get("axis", 1 if imp.opset < 13 else -1), rank)
    if axis == 0:
        raise node.error("softmax over the batch axis 0 is not supported", "axis")
    if imp.opset < 13 and axis < rank - 1:
        rows = imp.add(node, Reshape((*shape[1:axis], int(np.prod(shape[axis:])))), [x], suffix="_rows")
        y = imp.add(node, Softmax(), [rows], suffix="_softmax")
        return imp.set(node, imp.add(node, Reshape(shape[1:]), [y]))
    if axis == rank - 1:
        return imp.set(node, imp.add(node, Softmax(), [x]))
    perm = tuple(a for a in range(rank) if a != axis) + (axis,)
    t = imp.add(node, Transpose(perm), [x], suffix="_last")
    y = imp.add(node, Softmax(), [t], suffix="_softmax")
    imp.set(node, imp.add(node, Transpose(tuple(int(i) for i in np.argsort(perm))), [y]))


@IMPORT.register("LogSoftmax")
def import_log_softmax(imp, node):
    """x - max - log(sum(exp(x - max))) over the axis (the flattened axes from ``axis`` before opset 13),
    from Reduce, Binary and Unary layers: stable for any logits, differentiable."""
    node.check_attrs({"axis"})
    x = imp.runtime(node)
    rank = len(x[1])
    axis = _axis(node, node.attrs.get("axis", 1 if imp.opset < 13 else -1), rank)
    if axis == 0:
        raise node.error("log-softmax over the batch axis 0 is not supported", "axis")
    axes = list(range(axis, rank)) if imp.opset < 13 else [axis]
    m = imp.add(node, Reduce("max", axes), [x], suffix="_max")
    d = imp.add(node, Binary("sub"), [x, m], suffix="_shifted")
    e = imp.add(node, Unary("exp"), [d], suffix="_exp")
    s = imp.add(node, Reduce("sum", axes), [e], suffix="_sum")
    lg = imp.add(node, Unary("log"), [s], suffix="_log")
    imp.set(node, imp.add(node, Binary("sub"), [d, lg]))


@IMPORT.register("Flatten")
def import_flatten(imp, node):
    """Flatten at ``axis``: 1 keeps the batch; another axis only where the axes it merges with the batch
    are of size 1 (0 on a batch of one)."""
    node.check_attrs({"axis"})
    x = imp.runtime(node)
    rank = len(x[1])
    axis = node.attrs.get("axis", 1) % (rank + 1)
    out = (int(np.prod(x[1][:axis])), int(np.prod(x[1][axis:])))
    if out[0] != x[1][0]:
        raise node.error(f"axis {node.attrs['axis']} merges the batch axis with others (shape {list(x[1])} to "
                         f"{list(out)})", "axis")
    imp.set(node, _reshape_to(imp, node, x, out))


@IMPORT.register("Reshape")
def import_reshape(imp, node):
    node.check_attrs({"shape", "allowzero", "consumed_inputs"})
    x = imp.runtime(node)
    target = node.attrs.get("shape") if imp.opset < 5 else [int(v) for v in imp.const(node, 1).reshape(-1)]
    try:
        out = F.resolve_reshape(x[1], target, node.attrs.get("allowzero", 0))
    except F.FoldError as e:
        raise node.error(str(e)) from None
    imp.set(node, _reshape_to(imp, node, x, out))


def _reshape_to(imp, node, x, out):
    """x viewed as the full shape ``out``: an alias, a Flatten or a Reshape; the batch must stay first."""
    out = tuple(int(d) for d in out)
    if not out or out[0] != x[1][0]:
        raise node.error(f"reshaping {list(x[1])} to {list(out)} changes the first (batch) dimension")
    if len(out) < 2:
        raise node.error(f"reshaping {list(x[1])} to {list(out)} leaves the batch axis alone; the engine needs "
                         f"a sample of at least one axis")
    if out == x[1]:
        return x
    return imp.add(node, Flatten() if len(out) == 2 else Reshape(out[1:]), [x])


@IMPORT.register("Unsqueeze")
def import_unsqueeze(imp, node):
    node.check_attrs({"axes"})
    x = imp.runtime(node)
    axes = F.axes_arg([None] + [imp.const(node, 1, required=False)], node.attrs, imp.opset, 13)
    if axes is None:
        raise node.error("axes are required", "axes")
    out = list(x[1])
    for a in sorted(int(a) % (len(out) + len(axes)) for a in axes):
        out.insert(a, 1)
    imp.set(node, _reshape_to(imp, node, x, out))


@IMPORT.register("Squeeze")
def import_squeeze(imp, node):
    node.check_attrs({"axes"})
    x = imp.runtime(node)
    axes = F.axes_arg([None] + [imp.const(node, 1, required=False)], node.attrs, imp.opset, 13)
    rank = len(x[1])
    drop = {int(a) % rank for a in axes} if axes is not None else {i for i, d in enumerate(x[1]) if d == 1}
    if any(x[1][a] != 1 for a in drop):
        raise node.error(f"cannot squeeze axes {sorted(drop)} of shape {list(x[1])}", "axes")
    imp.set(node, _reshape_to(imp, node, x, [d for i, d in enumerate(x[1]) if i not in drop]))


def _pad_args(imp, node, rank):
    """(pads as [begin of each axis..., end of each axis...], constant value) of a Pad node."""
    if imp.opset < 11:
        pads, value = node.attrs.get("pads", node.attrs.get("paddings")), node.attrs.get("value", 0.0)
        if pads is None:
            raise node.error("pads are required", "pads")
        return [int(p) for p in pads], float(value)
    pads = [int(v) for v in np.asarray(imp.const(node, 1)).reshape(-1)]
    v = imp.const(node, 2, required=False)
    value = 0.0 if v is None or not np.size(v) else float(np.asarray(v).reshape(-1)[0])
    axes = imp.const(node, 3, required=False)
    if axes is not None:
        full = [0] * (2 * rank)
        ax = [_axis(node, a, rank, "axes") for a in np.asarray(axes).reshape(-1)]
        for i, a in enumerate(ax):
            full[a], full[a + rank] = pads[i], pads[i + len(ax)]
        pads = full
    return pads, value


@IMPORT.register("Pad")
def import_pad(imp, node):
    """Constant padding of H and W (any value; negative crops) and of channels (zeros) as Pad2D/ChannelPad;
    reflect, edge and wrap padding of any non-batch axis as Take layers."""
    node.check_attrs({"mode", "pads", "value", "paddings"})
    x = imp.runtime(node)
    rank = len(x[1])
    mode = node.attrs.get("mode", "constant")
    pads, value = _pad_args(imp, node, rank)
    if len(pads) != 2 * rank or pads[0] or pads[rank]:
        raise node.error(f"pads {pads} must hold 2 ints per axis of the input shape {list(x[1])}, none on the "
                         f"batch axis", "pads")
    if mode in ("reflect", "edge", "wrap"):
        return imp.set(node, _pad_by_index(imp, node, x, pads, mode))
    if mode != "constant":
        raise node.error(f"mode {mode!r} is not supported", "mode")
    if rank == 3 and not pads[1] and not pads[4]:   # (N, C, L): pad L as the H of an (L, 1) image
        x, _ = imp.as_2d(node, x)
        pads = [0, 0, pads[2], 0, 0, 0, pads[5], 0]
    elif rank != 4 or (pads[1] or pads[5]) and (value != 0.0 or min(pads[1], pads[5]) < 0):
        raise node.error(f"constant pads {pads} are not supported: only H and W (any value) and channels (zeros, "
                         f"no cropping) of a 4-D input, or the last axis of a 3-D one", "pads")
    steps = []
    if pads[1] or pads[5]:
        steps.append((ChannelPad(int(pads[1]), int(pads[5])), None))
    if any(pads[i] for i in (2, 3, 6, 7)) or not steps:
        steps.append((Pad2D((pads[2], pads[6], pads[3], pads[7]), float(value)), None))
    y = imp.chain(node, x, steps)
    imp.set(node, imp.back_1d(node, y) if rank == 3 else y)


#: ONNX operator -> (the Unary function, its (alpha, beta) attributes with their defaults); HardSwish is
#: hard_sigmoid's (1/6, 0.5) times x
UNARY_OPS = {"Neg": ("neg", ()), "Abs": ("abs", ()), "Exp": ("exp", ()), "Log": ("log", ()), "Sqrt": ("sqrt", ()),
             "Reciprocal": ("reciprocal", ()), "Softplus": ("softplus", ()), "Softsign": ("softsign", ()),
             "Elu": ("elu", (("alpha", 1.0),)),
             "Selu": ("selu", (("alpha", 1.67326319217681884765625), ("gamma", 1.05070102214813232421875))),
             "HardSigmoid": ("hard_sigmoid", (("alpha", 0.2), ("beta", 0.5))),
             "HardSwish": ("hard_swish", ((None, 1 / 6), (None, 0.5)))}


def _unary(imp, node):
    fn, params = UNARY_OPS[node.op]
    node.check_attrs({a for a, _ in params if a} | {"consumed_inputs"})
    values = [float(node.attrs.get(a, default)) if a else default for a, default in params]
    imp.set(node, imp.add(node, Unary(fn, *values), [imp.runtime(node)]))


for _op in UNARY_OPS:
    IMPORT.register(_op)(_unary)


@IMPORT.register("Clip")
def import_clip(imp, node):
    """Clip to [min, max] (attributes before opset 11, optional constant inputs after); [0, inf) is a ReLU."""
    node.check_attrs({"min", "max", "consumed_inputs"})
    big = float(np.finfo(np.float32).max)
    if imp.opset < 11:
        lo, hi = float(node.attrs.get("min", -big)), float(node.attrs.get("max", big))
    else:
        lo, hi = (imp.const(node, i, required=False) for i in (1, 2))
        lo = -big if lo is None else float(np.asarray(lo).reshape(-1)[0])
        hi = big if hi is None else float(np.asarray(hi).reshape(-1)[0])
    x = imp.runtime(node)
    layer = ReLU() if lo == 0.0 and hi >= big else Unary("clip", max(lo, -big), min(hi, big))
    imp.set(node, imp.add(node, layer, [x]))


@IMPORT.register("PRelu")
def import_prelu(imp, node):
    """y = relu(x) + slope * (x - relu(x)): a ReLU, a subtraction, the stored slope and an Add (exact)."""
    node.check_attrs(set())
    x = imp.runtime(node)
    slope = np.asarray(imp.const(node, 1), np.float32)
    if imp.opset < 7 and slope.ndim == 1 and slope.size == x[1][1] and len(x[1]) > 2:   # PRelu-6: per channel
        slope = slope.reshape((-1,) + (1,) * (len(x[1]) - 2))
    slope = _const_operand(imp, node, slope, x[1])
    shape = tuple(slope.shape[1:] if slope.ndim == len(x[1]) else slope.shape) or (1,)
    r = imp.add(node, ReLU(), [x], suffix="_relu")
    m = imp.add(node, Binary("sub"), [x, r], suffix="_neg_part")
    s = imp.add(node, BinaryConst("mul", shape), [m], {"constant": slope.reshape(shape)}, suffix="_slope")
    imp.set(node, imp.add(node, Add(), [r, s]))


@IMPORT.register("InstanceNormalization")
def import_instance_normalization(imp, node):
    """Each (sample, channel) normalised over its spatial axes (a LayerNorm from axis 2), then the per-channel
    scale and bias (stored constants)."""
    node.check_attrs({"epsilon"})
    x = imp.runtime(node, 0, (3, 4, 5))
    C, rank = x[1][1], len(x[1])
    scale, bias = (imp.const(node, i).reshape((C,) + (1,) * (rank - 2)).astype(np.float32) for i in (1, 2))
    spatial = tuple(x[1][2:])
    y = imp.add(node, LayerNorm(2, float(node.attrs.get("epsilon", 1e-5))), [x],
                {"gamma": np.ones(spatial, np.float32), "beta": np.zeros(spatial, np.float32)}, suffix="_norm")
    y = imp.add(node, BinaryConst("mul", scale.shape), [y], {"constant": scale}, suffix="_scale")
    imp.set(node, imp.add(node, BinaryConst("add", bias.shape), [y], {"constant": bias}))


# ---------------------------------------------------------------------- layout: transpose, slices, resizing
def _axis(node, axis, rank, what="axis"):
    axis = int(axis)
    if not -rank <= axis < rank:
        raise node.error(f"{what} {axis} is out of range for rank {rank}", what)
    return axis % rank


def _takes(imp, node, x, picks, suffix=""):
    """Apply {axis: indices} to x as Take layers (identity picks skipped; the batch axis never taken)."""
    steps = []
    for axis, idx in sorted(picks.items()):
        idx = [int(i) for i in idx]
        if idx == list(range(x[1][axis])):
            continue
        if axis == 0:
            raise node.error("selecting along the batch axis 0 is not supported (the model takes any batch)")
        if not idx:
            raise node.error(f"the result is empty along axis {axis}")
        steps.append((Take(axis, idx), None))
    if not steps:
        return x
    for k, (layer, _) in enumerate(steps):
        x = imp.add(node, layer, [x], suffix=suffix if k == len(steps) - 1 else f"{suffix}_axis{layer.axis}")
    return x


@IMPORT.register("Transpose")
def import_transpose(imp, node):
    node.check_attrs({"perm"})
    x = imp.runtime(node)
    rank = len(x[1])
    perm = tuple(int(p) for p in node.attrs.get("perm", range(rank - 1, -1, -1)))
    if sorted(perm) != list(range(rank)):
        raise node.error(f"perm {list(perm)} is not a permutation of the {rank} axes", "perm")
    if perm[0] != 0:
        raise node.error(f"perm {list(perm)} moves the batch axis 0", "perm")
    imp.set(node, x if perm == tuple(range(rank)) else imp.add(node, Transpose(perm), [x]))


def _slice_args(imp, node, rank):
    if imp.opset < 10:
        starts, ends, axes, steps = node.attrs["starts"], node.attrs["ends"], node.attrs.get("axes"), None
    else:
        starts, ends = (list(np.asarray(imp.const(node, i)).reshape(-1)) for i in (1, 2))
        axes, steps = (imp.const(node, i, required=False) for i in (3, 4))
        axes = None if axes is None else list(np.asarray(axes).reshape(-1))
        steps = None if steps is None else list(np.asarray(steps).reshape(-1))
    axes = list(range(len(starts))) if axes is None else [_axis(node, a, rank, "axes") for a in axes]
    return starts, ends, axes, [1] * len(starts) if steps is None else steps


@IMPORT.register("Slice")
def import_slice(imp, node):
    """Slices of a computed tensor (any step) as Take layers; the batch axis is kept whole."""
    node.check_attrs({"starts", "ends", "axes"})
    x = imp.runtime(node)
    starts, ends, axes, steps = _slice_args(imp, node, len(x[1]))
    picks = {}
    for s, e, a, st in zip(starts, ends, axes, steps):
        if int(st) == 0:
            raise node.error("a step of 0 is not allowed")
        n = x[1][a]
        picks[a] = list(range(n))[slice(int(np.clip(s, -n - 1, n)), int(np.clip(e, -n - 1, n)), int(st))]
    imp.set(node, _takes(imp, node, x, picks))


@IMPORT.register("Split")
def import_split(imp, node):
    """Split into consecutive parts along a non-batch axis: one Take per output."""
    node.check_attrs({"axis", "split", "num_outputs"})
    x = imp.runtime(node)
    axis = _axis(node, node.attrs.get("axis", 0), len(x[1]))
    n, parts = x[1][axis], len(node.outputs)
    sizes = node.attrs.get("split") if imp.opset < 13 else imp.const(node, 1, required=False)
    if sizes is None:
        sizes = [-(-n // parts)] * (parts - 1) + [n - -(-n // parts) * (parts - 1)]
    sizes = [int(v) for v in np.asarray(sizes).reshape(-1)]
    if sum(sizes) != n or len(sizes) != parts or min(sizes) < 1:
        raise node.error(f"split sizes {sizes} do not divide the {n} slices of axis {axis} into {parts} parts")
    start = 0
    for i, size in enumerate(sizes):
        imp.set(node, _takes(imp, node, x, {axis: range(start, start + size)}, suffix=f"_{i}"), i)
        start += size


@IMPORT.register("Gather")
def import_gather(imp, node):
    """Constant indices along a non-batch axis of a computed tensor: a Take (and a Reshape for the index shape)."""
    node.check_attrs({"axis"})
    x = imp.runtime(node)
    rank = len(x[1])
    axis = _axis(node, node.attrs.get("axis", 0), rank)
    idx = np.asarray(imp.const(node, 1)).astype(np.int64)
    n = x[1][axis]
    if idx.size == 0 or idx.min() < -n or idx.max() >= n:
        raise node.error(f"indices {idx.reshape(-1)[:8].tolist()} are out of range for axis {axis} of size {n}")
    y = _takes(imp, node, x, {axis: (idx % n).reshape(-1)}, suffix="_take" if idx.shape != (idx.size,) else "")
    out = x[1][:axis] + idx.shape + x[1][axis + 1:]
    imp.set(node, _reshape_to(imp, node, y, out) if y[1] != out else y)


@IMPORT.register("Tile")
def import_tile(imp, node):
    node.check_attrs(set())
    x = imp.runtime(node)
    reps = [int(r) for r in np.asarray(imp.const(node, 1)).reshape(-1)]
    if len(reps) != len(x[1]) or min(reps) < 1:
        raise node.error(f"repeats {reps} do not match the input shape {list(x[1])}")
    imp.set(node, _takes(imp, node, x, {a: np.tile(np.arange(x[1][a]), r) for a, r in enumerate(reps) if r != 1}))


def _pad_indices(n, before, after, mode):
    """The source index of every position of an axis of length n padded by (before, after) (negative: crop)."""
    idx = np.pad(np.arange(n), (max(before, 0), max(after, 0)), mode={"edge": "edge", "reflect": "reflect",
                                                                      "wrap": "wrap"}[mode])
    return idx[max(-before, 0):len(idx) - max(-after, 0)]


def _pad_by_index(imp, node, x, pads, mode):
    rank = len(x[1])
    if mode == "reflect" and any(max(pads[a], pads[a + rank]) >= x[1][a] for a in range(rank)):
        raise node.error(f"reflect pads {pads} must be smaller than the axes {list(x[1])}", "pads")
    return _takes(imp, node, x, {a: _pad_indices(x[1][a], pads[a], pads[a + rank], mode)
                                 for a in range(rank) if pads[a] or pads[a + rank]})


@IMPORT.register("Resize")
def import_resize(imp, node):
    node.check_attrs({"mode", "coordinate_transformation_mode", "nearest_mode", "cubic_coeff_a", "exclude_outside",
                      "extrapolation_value", "antialias", "axes", "keep_aspect_ratio_policy"})
    x = imp.runtime(node)
    scales_in, sizes_in = (2, 3) if imp.opset >= 11 else (1, None)
    scales = imp.const(node, scales_in, required=False)
    sizes = imp.const(node, sizes_in, required=False) if sizes_in else None
    _resize(imp, node, x, scales, sizes, node.attrs.get("coordinate_transformation_mode", "half_pixel"),
            node.attrs.get("nearest_mode", "round_prefer_floor"))


@IMPORT.register("Upsample")
def import_upsample(imp, node):
    """Upsample (opsets 7-9): nearest is Resize's asymmetric coordinates rounded down."""
    node.check_attrs({"mode", "scales", "height_scale", "width_scale"})
    x = imp.runtime(node)
    scales = node.attrs.get("scales") if imp.opset < 9 else imp.const(node, 1)
    _resize(imp, node, x, scales, None, "asymmetric", "floor")


def _resize(imp, node, x, scales, sizes, coords, rounding):
    """Nearest-neighbour resizing as one Take per resized axis (ONNX Resize's coordinate and rounding modes)."""
    if node.attrs.get("mode", "nearest") != "nearest":
        raise node.error(f"mode {node.attrs['mode']!r} is not supported: only 'nearest'", "mode")
    if node.attrs.get("axes") is not None or node.attrs.get("keep_aspect_ratio_policy", "stretch") != "stretch":
        raise node.error("the axes and keep_aspect_ratio_policy attributes are not supported", "axes")
    shape = x[1]
    if sizes is not None and np.size(sizes):
        out = [int(v) for v in np.asarray(sizes).reshape(-1)]
        scale = [o / i for o, i in zip(out, shape)]
    elif scales is not None and np.size(scales):
        scale = [float(v) for v in np.asarray(scales).reshape(-1)]
        out = [int(np.floor(i * s)) for i, s in zip(shape, scale)]
    else:
        raise node.error("needs constant scales or sizes")
    if len(out) != len(shape):
        raise node.error(f"scales/sizes {out} do not match the input rank {len(shape)}")
    picks = {a: _nearest(node, shape[a], out[a], scale[a], coords, rounding) for a in range(len(shape))}
    imp.set(node, _takes(imp, node, x, picks))


def _nearest(node, n_in, n_out, scale, coords, rounding):
    o = np.arange(n_out, dtype=np.float64)
    forms = {"half_pixel": lambda: (o + 0.5) / scale - 0.5, "asymmetric": lambda: o / scale,
             "pytorch_half_pixel": lambda: (o + 0.5) / scale - 0.5 if n_out > 1 else np.zeros(n_out),
             "align_corners": lambda: o * (n_in - 1) / (n_out - 1) if n_out > 1 else np.zeros(n_out),
             "tf_half_pixel_for_nn": lambda: (o + 0.5) / scale}
    if coords not in forms:
        raise node.error(f"coordinate_transformation_mode {coords!r} is not supported with nearest",
                         "coordinate_transformation_mode")
    c = forms[coords]()
    rounders = {"round_prefer_floor": lambda: np.where(c - np.floor(c) == 0.5, np.floor(c), np.round(c)),
                "round_prefer_ceil": lambda: np.where(c - np.floor(c) == 0.5, np.ceil(c), np.round(c)),
                "floor": lambda: np.floor(c), "ceil": lambda: np.ceil(c)}
    if rounding not in rounders:
        raise node.error(f"nearest_mode {rounding!r} is not supported", "nearest_mode")
    return np.clip(rounders[rounding](), 0, n_in - 1).astype(np.int64)


# ---------------------------------------------------------------------- reductions
#: ONNX reduction -> (Reduce fn, the first opset taking axes as an input)
REDUCTIONS = {"ReduceMean": ("mean", 18), "ReduceSum": ("sum", 13), "ReduceMax": ("max", 18)}


def _reduce(imp, node):
    node.check_attrs({"axes", "keepdims", "noop_with_empty_axes"})
    fn, input_from = REDUCTIONS[node.op]
    x = imp.runtime(node)
    rank = len(x[1])
    axes = F.axes_arg([None, imp.const(node, 1, required=False) if imp.opset >= input_from else None],
                      node.attrs, imp.opset, input_from)
    if axes is None or not len(axes):
        if node.attrs.get("noop_with_empty_axes", 0):
            return imp.set(node, x)
        axes = range(rank)
    axes = sorted({_axis(node, a, rank, "axes") for a in axes})
    keep = bool(node.attrs.get("keepdims", 1))
    if 0 in axes:
        if x[1][0] != 1 or axes == list(range(rank)) and not keep:
            raise node.error(f"reducing over the batch axis 0 is not supported (axes {axes})", "axes")
        axes = [a for a in axes if a != 0]   # a batch of one: nothing to reduce there
    y = imp.add(node, Reduce(fn, axes, keep), [x]) if axes else x
    imp.set(node, y)


for _op in REDUCTIONS:
    IMPORT.register(_op)(_reduce)


@IMPORT.register("GlobalMaxPool")
def import_global_max_pool(imp, node):
    node.check_attrs(set())
    x = imp.runtime(node, 0, 4)
    imp.set(node, imp.add(node, MaxPool2D((x[1][2], x[1][3]), 1), [x]))


# ---------------------------------------------------------------------- transposed convolution
def _convt_pads(node, x_shape, kernel, strides, dil, out_pad):
    """(top, bottom, left, right) cropped from the full output, from pads, auto_pad or output_shape."""
    full = [(n - 1) * s + (k - 1) * d + 1 + op for n, s, k, d, op in zip(x_shape[2:], strides, kernel, dil, out_pad)]
    if "output_shape" in node.attrs:
        want = [int(v) for v in node.attrs["output_shape"]][-2:]
        total = [f - w for f, w in zip(full, want)]
        if min(total) < 0:
            raise node.error(f"output_shape {want} is larger than the full output {full}", "output_shape")
        upper = node.attrs.get("auto_pad", "NOTSET") == "SAME_UPPER"
        pads = [(t // 2, t - t // 2) if upper else (t - t // 2, t // 2) for t in total]
        return pads[0] + pads[1]
    auto = node.attrs.get("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        total = [f - n * s for f, n, s in zip(full, x_shape[2:], strides)]
        pads = [(t // 2, t - t // 2) if auto == "SAME_UPPER" else (t - t // 2, t // 2) for t in total]
        return pads[0] + pads[1]
    if auto not in ("NOTSET", "", "VALID"):
        raise node.error(f"auto_pad {auto!r} is not supported", "auto_pad")
    p = [int(v) for v in node.attrs.get("pads", [0, 0, 0, 0])] if auto != "VALID" else [0, 0, 0, 0]
    return p[0], p[2], p[1], p[3]


@IMPORT.register("ConvTranspose")
def import_conv_transpose(imp, node):
    node.check_attrs({"kernel_shape", "strides", "pads", "dilations", "group", "auto_pad", "output_padding",
                      "output_shape"})
    x = imp.runtime(node, 0, (3, 4))
    w, b = imp.const(node, 1), imp.const(node, 2, required=False)
    one_d = len(x[1]) == 3
    if w.ndim != len(x[1]):
        raise node.error(f"weight shape {list(w.shape)} does not match input shape {list(x[1])}")
    if one_d:
        attrs_to_2d(node)
        if "output_padding" in node.attrs:
            node.attrs["output_padding"] = list(node.attrs["output_padding"])[:1] + [0]
        x, w = imp.as_2d(node, x, w)
    kernel, groups = tuple(int(d) for d in w.shape[2:]), int(node.attrs.get("group", 1))
    strides = pairs(node.attrs.get("strides", [1, 1]), "strides")
    dil = pairs(node.attrs.get("dilations", [1, 1]), "dilations")
    out_pad = pairs(node.attrs.get("output_padding", [0, 0]), "output_padding")
    t, bt, l, r = _convt_pads(node, x[1], kernel, strides, dil, out_pad)
    sym = (min(t, bt), min(l, r))
    weights = {"weight": w} if b is None else {"weight": w, "bias": b.reshape(-1)}
    steps = [(ConvTranspose2D(int(w.shape[1]) * groups, kernel, strides, sym, out_pad, dil, groups,
                              use_bias=b is not None), weights)]
    if (t, bt, l, r) != (sym[0], sym[0], sym[1], sym[1]):
        steps.append((Pad2D((sym[0] - t, sym[0] - bt, sym[1] - l, sym[1] - r), 0.0), None))
    y = imp.chain(node, x, steps)
    imp.set(node, imp.back_1d(node, y) if one_d else y)


# ====================================================================== export
def _window_attrs(layer):
    """kernel_shape, strides and pads (ONNX's [top, left, bottom, right]) of a conv or pooling layer."""
    p = layer.padding_hw
    return dict(kernel_shape=list(layer.kernel_hw), strides=list(layer.stride_hw),
                pads=[int(p[0]), int(p[1]), int(p[0]), int(p[1])])


@EXPORT.register("Conv2D")
def export_conv(g, layer, xs, out, state):
    ins = [xs[0], g.const(f"{out}.weight", state["weight"])]
    if layer.use_bias:
        ins.append(g.const(f"{out}.bias", state["bias"]))
    g.node("Conv", ins, out, out, **_window_attrs(layer), dilations=list(layer.dilation_hw), group=int(layer.groups))


@EXPORT.register("Dense")
def export_dense(g, layer, xs, out, state):
    ins = [xs[0], g.const(f"{out}.weight", state["weight"])]
    if layer.use_bias:
        ins.append(g.const(f"{out}.bias", state["bias"]))
    g.node("Gemm", ins, out, out, transB=1)


@EXPORT.register("MaxPool2D")
def export_max_pool(g, layer, xs, out, state):
    g.node("MaxPool", xs, out, out, **_window_attrs(layer))


@EXPORT.register("AvgPool2D")
def export_avg_pool(g, layer, xs, out, state):
    g.node("AveragePool", xs, out, out, **_window_attrs(layer), count_include_pad=int(layer.count_include_pad))


@EXPORT.register("BatchNorm")
def export_batch_norm(g, layer, xs, out, state):
    ins = [xs[0]] + [g.const(f"{out}.{k}", state[k]) for k in ("gamma", "beta", "running_mean", "running_var")]
    g.node("BatchNormalization", ins, out, out, epsilon=float(layer.eps), momentum=float(1.0 - layer.momentum))


@EXPORT.register("LayerNorm")
def export_layer_norm(g, layer, xs, out, state):
    g.require_opset(17, layer)
    ins = [xs[0], g.const(f"{out}.gamma", state["gamma"]), g.const(f"{out}.beta", state["beta"])]
    g.node("LayerNormalization", ins, out, out, axis=int(layer.axis), epsilon=float(layer.eps))


@EXPORT.register("LRN")
def export_lrn(g, layer, xs, out, state):
    if layer.size % 2 == 0:
        raise g.error(layer, f"LRN size {layer.size} is even; ONNX centres even windows "
                              f"differently, so only odd sizes export")
    g.node("LRN", xs, out, out, size=int(layer.size), alpha=float(layer.alpha), beta=float(layer.beta),
           bias=float(layer.k))


@EXPORT.register("Add")
def export_add(g, layer, xs, out, state):
    g.node({1: "Identity", 2: "Add"}.get(len(xs), "Sum"), xs, out, out)


def _pad_node(g, xs, out, onnx_pads, value):
    ins = [xs[0], g.const(f"{out}.pads", np.asarray(onnx_pads, dtype=np.int64)),
           g.const(f"{out}.value", np.asarray(value, dtype=np.float32))]
    g.node("Pad", ins, out, out, mode="constant")


@EXPORT.register("Pad2D")
def export_pad2d(g, layer, xs, out, state):
    t, b, l, r = layer.pads
    _pad_node(g, xs, out, [0, 0, t, l, 0, 0, b, r], layer.value)


@EXPORT.register("ChannelPad")
def export_channel_pad(g, layer, xs, out, state):
    rank = len(layer.input_shapes[0]) + 1
    pads = [0] * (2 * rank)
    pads[1], pads[rank + 1] = layer.before, layer.after
    _pad_node(g, xs, out, pads, 0.0)


@EXPORT.register("Reshape")
def export_reshape(g, layer, xs, out, state):
    g.node("Reshape", [xs[0], g.const(f"{out}.shape", np.asarray([0, *layer.target_shape], dtype=np.int64))],
           out, out)


def _simple(op, **attrs):
    def export(g, layer, xs, out, state):
        g.node(op, xs, out, out, **attrs)
    return export


for _layer, _op, _attrs in (("GlobalAvgPool2D", "GlobalAveragePool", {}), ("ReLU", "Relu", {}),
                            ("Sigmoid", "Sigmoid", {}), ("Tanh", "Tanh", {}), ("Softmax", "Softmax", {"axis": -1}),
                            ("Flatten", "Flatten", {"axis": 1}), ("Dropout", "Identity", {}),
                            ("Concatenate", "Concat", {"axis": 1})):
    EXPORT.register(_layer)(_simple(_op, **_attrs))


@EXPORT.register("LeakyReLU")
def export_leaky(g, layer, xs, out, state):
    g.node("LeakyRelu", xs, out, out, alpha=float(layer.negative_slope))


#: Unary function -> its ONNX operator and the attributes taken from (alpha, beta)
UNARY_EXPORT = {"neg": ("Neg", {}), "abs": ("Abs", {}), "exp": ("Exp", {}), "log": ("Log", {}), "sqrt": ("Sqrt", {}),
                "reciprocal": ("Reciprocal", {}), "softplus": ("Softplus", {}), "softsign": ("Softsign", {}),
                "elu": ("Elu", {"alpha": 0}), "selu": ("Selu", {"alpha": 0, "gamma": 1}),
                "hard_sigmoid": ("HardSigmoid", {"alpha": 0, "beta": 1})}


def _scalar(g, name, v):
    return g.const(name, np.asarray(v, dtype=np.float32))


@EXPORT.register("Unary")
def export_unary(g, layer, xs, out, state):
    fn, ab = layer.fn, (float(layer.alpha), float(layer.beta))
    if fn in UNARY_EXPORT:
        op, attrs = UNARY_EXPORT[fn]
        return g.node(op, xs, out, out, **{k: ab[i] for k, i in attrs.items()})
    if fn == "pow":
        return g.node("Pow", [xs[0], _scalar(g, f"{out}.exponent", ab[0])], out, out)
    if fn == "clip":
        return g.node("Clip", [xs[0], _scalar(g, f"{out}.min", ab[0]), _scalar(g, f"{out}.max", ab[1])], out, out)
    if fn == "hard_swish":   # HardSwish (opset 14) is hard_sigmoid's (1/6, 1/2) only: x * HardSigmoid(x) always
        h = g.node("HardSigmoid", xs, f"{out}.hard_sigmoid", f"{out}.hard_sigmoid", alpha=ab[0], beta=ab[1])
        return g.node("Mul", [xs[0], h], out, out)
    scaled = g.node("Mul", [xs[0], _scalar(g, f"{out}.alpha", ab[0])], f"{out}.scaled", f"{out}.scaled")  # affine
    return g.node("Add", [scaled, _scalar(g, f"{out}.beta", ab[1])], out, out)


BINARY_EXPORT = {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "pow": "Pow"}


@EXPORT.register("Binary")
def export_binary(g, layer, xs, out, state):
    g.node(BINARY_EXPORT[layer.fn], xs, out, out)


@EXPORT.register("BinaryConst")
def export_binary_const(g, layer, xs, out, state):
    c = g.const(f"{out}.constant", state["constant"])
    g.node(BINARY_EXPORT[layer.fn], [c, xs[0]] if layer.reverse else [xs[0], c], out, out)


@EXPORT.register("Transpose")
def export_transpose(g, layer, xs, out, state):
    g.node("Transpose", xs, out, out, perm=list(layer.perm))


@EXPORT.register("Take")
def export_take(g, layer, xs, out, state):
    g.node("Gather", [xs[0], g.const(f"{out}.indices", np.asarray(layer.indices, np.int64))], out, out,
           axis=int(layer.axis))


@EXPORT.register("Reduce")
def export_reduce(g, layer, xs, out, state):
    """ReduceMean/Max take their axes as an attribute until opset 17 and as an input from 18, ReduceSum as an
    input from 13 (the exporter's first pass fixes the opset before this one runs)."""
    op = {"mean": "ReduceMean", "sum": "ReduceSum", "max": "ReduceMax"}[layer.fn]
    axes = [int(a) for a in layer.axes]
    if op == "ReduceSum" or g.opset >= 18:
        return g.node(op, [xs[0], g.const(f"{out}.axes", np.asarray(axes, np.int64))], out, out,
                      keepdims=int(layer.keepdims))
    g.node(op, xs, out, out, axes=axes, keepdims=int(layer.keepdims))


@EXPORT.register("ConvTranspose2D")
def export_conv_transpose(g, layer, xs, out, state):
    ins = [xs[0], g.const(f"{out}.weight", state["weight"])]
    if layer.use_bias:
        ins.append(g.const(f"{out}.bias", state["bias"]))
    g.node("ConvTranspose", ins, out, out, **_window_attrs(layer), dilations=list(layer.dilation_hw),
           group=int(layer.groups), output_padding=list(layer.output_padding_hw))
