"""numbacnn ``Model`` -> ONNX (opset 13), checked with ``onnx.checker``.

``export_onnx(model, path=None, opset=13) -> onnx.ModelProto`` writes one ONNX
node (or two) per layer, its parameters as initializers named
``<layer>.<param>``, the input ``input`` of shape (N, *input_shape) with a
symbolic batch ``N``, and the model output under the output layer's name.
The export is an inference graph: BatchNorm uses its running statistics and
Dropout becomes Identity, as ``model.forward(x, training=False)`` does.
Each layer class has one entry in ``EXPORTERS`` (no if-chain); a layer
without one raises ``OnnxExportError`` naming it.
"""
from __future__ import annotations

import os

import numpy as np

from ..graph import INPUT

OPSET = 13


class OnnxExportError(ValueError):
    """A model that cannot be written as ONNX; the message names the layer."""


class _Graph:
    """Nodes and initializers being collected for one model."""

    def __init__(self, helper, numpy_helper):
        self.h, self.nh = helper, numpy_helper
        self.nodes, self.inits = [], []

    def const(self, name, array):
        self.inits.append(self.nh.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op, inputs, output, name, **attrs):
        self.nodes.append(self.h.make_node(op, list(inputs), [output], name=name, **attrs))
        return output


def _pads(p):
    """Engine (ph, pw) -> ONNX [top, left, bottom, right]."""
    return [int(p[0]), int(p[1]), int(p[0]), int(p[1])]


def _conv(g, layer, xs, out, state):
    ins = [xs[0], g.const(f"{out}.weight", state["weight"])]
    if layer.use_bias:
        ins.append(g.const(f"{out}.bias", state["bias"]))
    g.node("Conv", ins, out, out, kernel_shape=list(layer._k), strides=list(layer._s), pads=_pads(layer._p),
           dilations=list(layer._d), group=int(layer.groups))


def _dense(g, layer, xs, out, state):
    ins = [xs[0], g.const(f"{out}.weight", state["weight"])]
    if layer.use_bias:
        ins.append(g.const(f"{out}.bias", state["bias"]))
    g.node("Gemm", ins, out, out, transB=1)


def _max_pool(g, layer, xs, out, state):
    g.node("MaxPool", xs, out, out, kernel_shape=list(layer._k), strides=list(layer._s), pads=_pads(layer._p))


def _avg_pool(g, layer, xs, out, state):
    g.node("AveragePool", xs, out, out, kernel_shape=list(layer._k), strides=list(layer._s), pads=_pads(layer._p),
           count_include_pad=int(layer.count_include_pad))


def _batch_norm(g, layer, xs, out, state):
    ins = [xs[0]] + [g.const(f"{out}.{k}", state[k]) for k in ("gamma", "beta", "running_mean", "running_var")]
    g.node("BatchNormalization", ins, out, out, epsilon=float(layer.eps), momentum=float(1.0 - layer.momentum))


def _lrn(g, layer, xs, out, state):
    if layer.size % 2 == 0:
        raise OnnxExportError(f"{layer.describe()}: LRN size {layer.size} is even; ONNX centres even windows "
                              f"differently, so only odd sizes export")
    g.node("LRN", xs, out, out, size=int(layer.size), alpha=float(layer.alpha), beta=float(layer.beta),
           bias=float(layer.k))


def _add(g, layer, xs, out, state):
    g.node({1: "Identity", 2: "Add"}.get(len(xs), "Sum"), xs, out, out)


def _pad_node(g, xs, out, onnx_pads, value):
    ins = [xs[0], g.const(f"{out}.pads", np.asarray(onnx_pads, dtype=np.int64)),
           g.const(f"{out}.value", np.asarray(value, dtype=np.float32))]
    g.node("Pad", ins, out, out, mode="constant")


def _pad2d(g, layer, xs, out, state):
    t, b, l, r = layer.pads
    _pad_node(g, xs, out, [0, 0, t, l, 0, 0, b, r], layer.value)


def _channel_pad(g, layer, xs, out, state):
    rank = len(layer.input_shapes[0]) + 1
    pads = [0] * (2 * rank)
    pads[1], pads[rank + 1] = layer.before, layer.after
    _pad_node(g, xs, out, pads, 0.0)


def _reshape(g, layer, xs, out, state):
    g.node("Reshape", [xs[0], g.const(f"{out}.shape", np.asarray([0, *layer.target_shape], dtype=np.int64))],
           out, out)


def _simple(op, **attrs):
    def export(g, layer, xs, out, state):
        g.node(op, xs, out, out, **attrs)
    return export


#: layer class name -> exporter(graph, layer, input tensor names, output name, host state)
EXPORTERS = {
    "Conv2D": _conv, "Dense": _dense, "MaxPool2D": _max_pool, "AvgPool2D": _avg_pool,
    "GlobalAvgPool2D": _simple("GlobalAveragePool"), "BatchNorm": _batch_norm, "LRN": _lrn,
    "ReLU": _simple("Relu"), "Sigmoid": _simple("Sigmoid"), "Tanh": _simple("Tanh"),
    "Softmax": _simple("Softmax", axis=1), "Flatten": _simple("Flatten", axis=1), "Dropout": _simple("Identity"),
    "Add": _add, "Concatenate": _simple("Concat", axis=1), "ChannelPad": _channel_pad, "Pad2D": _pad2d,
    "Reshape": _reshape,
}


def _leaky(g, layer, xs, out, state):
    g.node("LeakyRelu", xs, out, out, alpha=float(layer.negative_slope))


EXPORTERS["LeakyReLU"] = _leaky


def export_onnx(model, path=None, opset: int = OPSET):
    """Write ``model`` (built) as an ONNX model to ``path`` (if given); returns the ``onnx.ModelProto``."""
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError:  # pragma: no cover - the onnx extra is missing
        raise OnnxExportError("exporting ONNX models needs the onnx package: pip install 'numbacnn[onnx]'") from None
    model._require_built()
    if int(opset) < OPSET:
        raise OnnxExportError(f"opset {opset} is too old: the exporter writes opset {OPSET} or later")
    if not model.output_shapes:
        model.infer_shapes()
    g = _Graph(helper, numpy_helper)
    for name, layer in model.layers.items():
        export = EXPORTERS.get(type(layer).__name__)
        if export is None:
            raise OnnxExportError(f"{layer.describe()}: no ONNX export for layer class {type(layer).__name__!r}")
        export(g, layer, model.inputs_of(name), name, layer.host_state())

    def value_info(name, shape):
        return helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, ["N", *[int(d) for d in shape]])

    graph = helper.make_graph(g.nodes, model.name, [value_info(INPUT, model.input_shape)],
                              [value_info(model.output, model.output_shapes[model.output])], g.inits)
    proto = helper.make_model(graph, producer_name="numbacnn", opset_imports=[helper.make_opsetid("", int(opset))])
    proto.ir_version = min(proto.ir_version, 8)  # readable by older runtimes; opset 13 needs IR >= 7
    try:
        onnx.checker.check_model(proto)
    except Exception as e:  # pragma: no cover - would be an exporter bug
        raise OnnxExportError(f"model {model.name!r}: the exported graph fails onnx.checker: {e}") from None
    if path is not None:
        path = os.fspath(path)
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(proto.SerializeToString())
        os.replace(tmp, path)
    return proto
