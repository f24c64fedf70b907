"""numbacnn ``Model`` -> ONNX (opset 13, or the later one a layer needs), checked with ``onnx.checker``.

``export_onnx(model, path=None, opset=13) -> onnx.ModelProto`` writes one ONNX
node (or two) per layer, its parameters as initializers named
``<layer>.<param>``, the input ``input`` of shape (N, *input_shape) with a
symbolic batch ``N``, and the model output under the output layer's name.
The export is an inference graph: BatchNorm uses its running statistics and
Dropout becomes Identity, as ``model.forward(x, training=False)`` does.
Each layer has one export function in ``mapping.EXPORT``, keyed by its
registered name (no if-chain); a layer without one raises
``OnnxExportError`` naming it.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from ..graph import INPUT
from .mapping import EXPORT

OPSET = 13


class OnnxExportError(ValueError):
    """A model that cannot be written as ONNX; the message names the layer."""


class _Graph:
    """Nodes and initializers being collected for one model, and the opset they need.

    The exporter runs the mapping functions twice: a dry pass (``dry``: no initializers made) in which
    they state the opset they need (``require_opset``), then the real one with ``opset`` final, so a
    mapping function may choose an operator's form by ``g.opset`` (ReduceMean's axes: an attribute until
    opset 17, an input from 18).
    """

    def __init__(self, helper, numpy_helper, opset=None, start=None, dry=False):
        self.h, self.nh, self.dry = helper, numpy_helper, dry
        self.nodes, self.inits = [], []
        self.asked = opset
        self.opset = int(start) if start is not None else OPSET if opset is None else int(opset)

    def require_opset(self, version, layer):
        """A mapping function says its nodes need ``version``: raised to it, unless a lower opset was asked."""
        if self.asked is not None and self.asked < version:
            raise self.error(layer, f"needs ONNX opset {version} or later (asked for {self.asked})")
        self.opset = max(self.opset, int(version))

    def const(self, name, array):
        if not self.dry:
            self.inits.append(self.nh.from_array(np.ascontiguousarray(array), name))
        return name

    def error(self, layer, what) -> "OnnxExportError":
        return OnnxExportError(f"{layer.describe()}: {what}")

    def node(self, op, inputs, output, name, **attrs):
        if not self.dry:
            self.nodes.append(self.h.make_node(op, list(inputs), [output], name=name, **attrs))
        return output


def _emit(model, names, graph):
    """Run every layer's export function (``mapping.EXPORT``) on ``graph``, in ``names``' order."""
    for name in names:
        layer = model.layers[name]
        export = EXPORT.get(layer.registered_name)
        if export is None:
            raise OnnxExportError(f"{layer.describe()}: no ONNX export for layer class {layer.registered_name!r}")
        state = defaultdict(type(None)) if graph.dry else layer.host_state()   # dry: no weights copied
        export(graph, layer, model.inputs_of(name), name, state)
    return graph


def export_onnx(model, path=None, opset: int | None = None, keep_aux: bool = False):
    """Write ``model`` (built) as an ONNX model to ``path`` (if given); returns the ``onnx.ModelProto``.

    ``opset`` None picks the lowest opset (13 or later) that every layer's export needs.  The graph computes
    the model output; auxiliary training outputs (GoogLeNet's heads) are left out unless ``keep_aux``, which
    makes them further graph outputs.
    """
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError:  # pragma: no cover - the onnx extra is missing
        raise OnnxExportError("exporting ONNX models needs the onnx package: pip install 'numbacnn[onnx]'") from None
    model.require_built()
    if opset is not None and int(opset) < OPSET:
        raise OnnxExportError(f"opset {opset} is too old: the exporter writes opset {OPSET} or later")
    if opset is not None and int(opset) > onnx.defs.onnx_opset_version():
        raise OnnxExportError(f"opset {opset} is newer than the installed onnx package knows "
                              f"({onnx.defs.onnx_opset_version()})")
    if not model.output_shapes:
        model.infer_shapes()
    outputs = [model.output, *(model.aux_outputs if keep_aux else ())]
    names = model.plan(outputs)
    needed = _emit(model, names, _Graph(helper, numpy_helper, opset, dry=True)).opset
    g = _emit(model, names, _Graph(helper, numpy_helper, opset, start=needed))

    def value_info(name, shape):
        return helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, ["N", *[int(d) for d in shape]])

    graph = helper.make_graph(g.nodes, model.name, [value_info(INPUT, model.input_shape)],
                              [value_info(n, model.output_shapes[n]) for n in outputs], g.inits)
    proto = helper.make_model(graph, producer_name="numbacnn", opset_imports=[helper.make_opsetid("", g.opset)])
    proto.ir_version = min(proto.ir_version, 8)  # readable by older runtimes; opset 13 needs IR >= 7
    try:
        onnx.checker.check_model(proto)
    except Exception as e:  # pragma: no cover - would be an exporter bug
        raise OnnxExportError(f"model {model.name!r}: the exported graph fails onnx.checker: {e}") from None
    if path is not None:
        from ..io.atomic import atomic_write
        atomic_write(path, lambda f: f.write(proto.SerializeToString()), binary=True)
    return proto
