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
from ..layers import (LRN, Add, AvgPool2D, BatchNorm, ChannelPad, Concatenate, Conv2D, Dense, Dropout, Flatten,
                      GlobalAvgPool2D, LayerNorm, LeakyReLU, MaxPool2D, Pad2D, ReLU, Reshape, Sigmoid, Softmax, Tanh)
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


def _bias_vector(imp, node, c, rank, channels):
    """A constant that broadcasts per channel (axis 1) against a rank-``rank`` tensor -> (channels,), or raise."""
    c = np.asarray(c, dtype=np.float32)
    if c.ndim > rank:
        raise node.error(f"constant of shape {list(c.shape)} does not broadcast per channel")
    s = (1,) * (rank - c.ndim) + c.shape
    if any(d != 1 for i, d in enumerate(s) if i != 1) or s[1] not in (1, channels):
        raise node.error(f"constant of shape {list(c.shape)} is not a per-channel bias of {channels} channels")
    return np.broadcast_to(c.reshape(-1), (channels,)).copy()


@IMPORT.register("Add")
def import_add(imp, node):
    node.check_attrs({"broadcast", "axis"})
    a, b = node.input(0), node.input(1)
    if a in imp.tensors and b in imp.tensors:
        return _merge(imp, node, [a, b])
    if a in imp.consts:
        a, b = b, a
    src, shape = imp.tensors[a]
    layer = imp.layers.get(src)
    c = imp.consts[b]
    if layer is None or not layer.optional_bias or imp.uses.get(a, 0) != 1 or src not in imp.weights:
        raise node.error("adding a constant is only supported as the bias of the Conv, Gemm or MatMul "
                         "just before it")
    if node.attrs.get("broadcast") and "axis" in node.attrs and c.ndim:  # opset < 7 axis broadcast
        c = c.reshape(c.shape + (1,) * (len(shape) - node.attrs["axis"] % len(shape) - c.ndim))
    bias = _bias_vector(imp, node, c, len(shape), shape[1])
    w = imp.weights[src]
    w["bias"] = w.get("bias", 0) + bias
    if not layer.use_bias:
        layer.use_bias = True
        layer.build(layer.input_shapes)
    imp.set(node, (src, shape))


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
    imp.set(node, imp.runtime(node))


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
    node.check_attrs({"axis"})
    x = imp.runtime(node)
    shape = x[1]
    rank = len(shape)
    axis = node.attrs.get("axis", 1 if imp.opset < 13 else -1) % rank
    if imp.opset < 13:  # softmax over everything from ``axis`` on, per row
        ok = axis == 1
    else:  # softmax along one axis: the features when the others (but the batch) are 1
        ok = rank >= 2 and all(d == 1 for i, d in enumerate(shape) if i not in (0, axis))
    if not ok:
        raise node.error(f"softmax over axis {node.attrs.get('axis', axis)} of an input of shape {list(shape)} "
                         f"is not supported: only over the features of each sample", "axis")
    if rank > 2:
        x = imp.add(node, Flatten(), [x], suffix="_flat")
    y = imp.add(node, Softmax(), [x])
    if rank > 2:
        y = imp.add(node, Reshape(shape[1:]), [y], suffix="_back")
    imp.set(node, y)


@IMPORT.register("Flatten")
def import_flatten(imp, node):
    node.check_attrs({"axis"})
    x = imp.runtime(node)
    if node.attrs.get("axis", 1) % (len(x[1]) + 1) != 1:
        raise node.error(f"axis {node.attrs['axis']} is not supported: only 1 (keep the batch)", "axis")
    imp.set(node, x if len(x[1]) == 2 else imp.add(node, Flatten(), [x]))


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


@IMPORT.register("Pad")
def import_pad(imp, node):
    node.check_attrs({"mode", "pads", "value", "paddings"})
    x = imp.runtime(node, 0, 4)
    mode = node.attrs.get("mode", "constant")
    if mode != "constant":
        raise node.error(f"mode {mode!r} is not supported: only 'constant'", "mode")
    if imp.opset < 11:
        pads, value = node.attrs.get("pads", node.attrs.get("paddings")), node.attrs.get("value", 0.0)
    else:
        pads = [int(v) for v in imp.const(node, 1).reshape(-1)]
        v = imp.const(node, 2, required=False)
        value = 0.0 if v is None else float(np.asarray(v).reshape(-1)[0])
        axes = imp.const(node, 3, required=False)
        if axes is not None:
            full = [0] * 8
            ax = [int(a) % 4 for a in np.asarray(axes).reshape(-1)]
            for i, a in enumerate(ax):
                full[a], full[a + 4] = pads[i], pads[i + len(ax)]
            pads = full
    if pads is None or len(pads) != 8 or pads[0] or pads[4] or (
            (pads[1] or pads[5]) and (value != 0.0 or min(pads[1], pads[5]) < 0)):
        raise node.error(f"pads {pads} are not supported: only H and W (any constant) and channels (zeros, "
                         f"no cropping) may be padded", "pads")
    steps = []
    if pads[1] or pads[5]:
        steps.append((ChannelPad(int(pads[1]), int(pads[5])), None))
    if any(pads[i] for i in (2, 3, 6, 7)) or not steps:
        steps.append((Pad2D((pads[2], pads[6], pads[3], pads[7]), float(value)), None))
    imp.set(node, imp.chain(node, x, steps))


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
                            ("Sigmoid", "Sigmoid", {}), ("Tanh", "Tanh", {}), ("Softmax", "Softmax", {"axis": 1}),
                            ("Flatten", "Flatten", {"axis": 1}), ("Dropout", "Identity", {}),
                            ("Concatenate", "Concat", {"axis": 1})):
    EXPORT.register(_layer)(_simple(_op, **_attrs))


@EXPORT.register("LeakyReLU")
def export_leaky(g, layer, xs, out, state):
    g.node("LeakyRelu", xs, out, out, alpha=float(layer.negative_slope))
