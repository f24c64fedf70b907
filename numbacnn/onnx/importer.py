"""ONNX graph -> numbacnn ``Model`` (architecture and weights).

``import_onnx(source, backend="cpu") -> Model`` reads a ``.onnx`` file (or
bytes, or an ``onnx.ModelProto``), checks it with ``onnx.checker``, walks its
nodes in order and maps each one onto engine layers: Conv -> Conv2D (a Pad2D in
front for asymmetric pads), Gemm/MatMul -> Dense, Mul/Add/Sub/Div -> folded into
the conv, dense or batch norm before them when the constant is per channel, else
Unary/BinaryConst/Binary, Transpose -> Transpose, Slice/Gather/Split/Tile/Resize
and reflect/edge padding -> Take, ReduceMean/Sum/Max -> Reduce, ConvTranspose ->
ConvTranspose2D, ...; ``supported_ops()`` lists them all (``python -m
numbacnn.onnx`` prints it, as the README does).

Constant subgraphs (initializers, ``Constant``, ``ConstantOfShape``,
``Shape -> Gather -> Unsqueeze -> Concat``, ...) are folded with numpy (see
``fold.py``).  The first dimension of the graph input is the batch; a graph
with a fixed batch size (often 1) imports as a model taking any batch size, so
no operator may slice, reshape or reduce the batch axis.

The mapping of each operator is a function in ``mapping.py`` (the ``IMPORT``
registry); this module is the engine that walks the graph, folds constants and
offers the mapping functions their building blocks (``runtime``, ``const``,
``add``, ``set``, ``chain``, ``spatial``, ``window``, ``as_2d``, ``back_1d``,
``node_uses``, ``absorb``).

Anything else ends in ONE ``OnnxImportError`` naming the file, the operator,
the node, the opset and, where it is an attribute's value that is not supported,
the attribute.  Supported opsets: 6 to 21 of the default domain (a later opset
imports when its nodes are among the above).
"""
from __future__ import annotations

import math
import os
import re

import numpy as np

from ..graph import INPUT, Model
from ..layers import Reshape
from . import fold as F
from .mapping import IMPORT, pairs

MIN_OPSET, MAX_OPSET = 6, 21


def supported_ops() -> dict:
    """{ONNX op type: how it imports}: "layers" (the ``IMPORT`` table of mapping.py), "folded" (evaluated
    at import on constant inputs only, ``fold.FOLDERS``) or "layers, folded" (both)."""
    ops = {op: "layers" for op in IMPORT}
    for op in F.FOLDERS:
        ops[op] = "layers, folded" if op in ops else "folded"
    return dict(sorted(ops.items()))


def supported_ops_text(width: int = 100) -> str:
    """The supported operators as the README lists them (``python -m numbacnn.onnx`` prints it)."""
    import textwrap
    ops = supported_ops()
    layers = [op for op, how in ops.items() if "layers" in how]
    folded = [op for op, how in ops.items() if how == "folded"]
    return "\n".join(textwrap.wrap(f"Imported as layers ({len(layers)}): {', '.join(layers)}.", width) +
                     textwrap.wrap(f"Evaluated at import when their inputs are constant ({len(folded)} more): "
                                   f"{', '.join(folded)}.", width))


class OnnxImportError(ValueError):
    """An ONNX model that cannot be imported; the message names the file, the operator, the node and the attribute."""


def _onnx():
    try:
        import onnx
    except ImportError:  # pragma: no cover - the onnx extra is missing
        raise OnnxImportError("importing ONNX models needs the onnx package: pip install 'numbacnn[onnx]'") from None
    return onnx


def load_onnx_proto(source):
    """(ModelProto, label) from a path, bytes or a ModelProto; a file that is not a valid ONNX model raises."""
    onnx = _onnx()
    if isinstance(source, onnx.ModelProto):
        proto, label = source, "<onnx model>"
    elif isinstance(source, (bytes, bytearray)):
        proto, label = None, "<onnx bytes>"
        data = bytes(source)
    else:
        label = os.fspath(source)
        try:
            with open(label, "rb") as f:
                data = f.read()
        except OSError as e:
            raise OnnxImportError(f"{label}: cannot read the ONNX file ({e.strerror})") from None
        proto = None
    if proto is None:
        try:
            proto = onnx.load_model_from_string(data)
        except Exception as e:  # protobuf's DecodeError and friends
            raise OnnxImportError(f"{label}: not a valid ONNX model file ({type(e).__name__}: {e})") from None
    if not proto.graph.node:
        raise OnnxImportError(f"{label}: not a valid ONNX model file (the graph has no nodes)")
    try:
        onnx.checker.check_model(proto)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise OnnxImportError(f"{label}: not a valid ONNX model ({first})") from None
    for t in proto.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            raise OnnxImportError(f"{label}: initializer {t.name!r} is stored in an external data file, which "
                                  f"this importer does not read; convert the model to a single file first")
    return proto, label


def import_onnx(source, backend="cpu", name: str | None = None, log=None) -> Model:
    """Import an ONNX model (path, bytes or ``onnx.ModelProto``) as a built numbacnn ``Model``.

    The model is built on ``backend`` with the ONNX weights loaded (batch-norm
    running statistics included), ready for ``forward`` or ``io.hdf5.save_model``.
    ``log`` receives a line before each step that can take a while on a large model.
    """
    log = log or (lambda msg: None)
    if isinstance(source, (str, os.PathLike)) and os.path.isfile(source):
        log(f"Reading and checking {os.fspath(source)} ({os.path.getsize(source) / 2 ** 20:,.0f} MiB) ...")
    proto, label = load_onnx_proto(source)
    log(f"Converting {len(proto.graph.node)} ONNX nodes (opset "
        f"{max((o.version for o in proto.opset_import if o.domain in ('', 'ai.onnx')), default='?')}) ...")
    model, weights = _Importer(proto, label, name).run()
    model.build(backend, seed=0, initialize=False)
    model.set_weights(weights, strict=True)
    return model


class _Node:
    """One ONNX node with its attributes as Python values, and the error helper."""

    def __init__(self, proto, index, importer):
        from onnx import helper
        self.proto, self.op = proto, proto.op_type
        self.name = proto.name or (proto.output[0] if proto.output else f"node{index}")
        self.attrs = {a.name: helper.get_attribute_value(a) for a in proto.attribute}
        for k, v in self.attrs.items():
            if isinstance(v, bytes):
                self.attrs[k] = v.decode("utf-8", "replace")
        self.inputs = list(proto.input)
        self.outputs = list(proto.output)
        self.imp = importer

    def error(self, what, attribute=None) -> OnnxImportError:
        attr = f", attribute {attribute!r}" if attribute else ""
        return OnnxImportError(f"{self.imp.label}: operator {self.op} (node {self.name!r}, opset {self.imp.opset}"
                               f"{attr}): {what}")

    def check_attrs(self, known):
        for a in self.attrs:
            if a not in known:
                raise self.error(f"attribute {a!r} is not supported", a)

    def input(self, i):
        """Input name i, or None when it is absent or empty (an omitted optional input)."""
        return self.inputs[i] if i < len(self.inputs) and self.inputs[i] else None


class _Importer:
    def __init__(self, proto, label, name):
        self.proto, self.label = proto, label
        g = proto.graph
        domains = {o.domain: o.version for o in proto.opset_import}
        self.opset = domains.get("", domains.get("ai.onnx"))
        if self.opset is None:
            raise OnnxImportError(f"{label}: the model imports no default-domain (ai.onnx) opset")
        if self.opset < MIN_OPSET:
            raise OnnxImportError(f"{label}: opset {self.opset} is older than the oldest supported ({MIN_OPSET})")
        self.name = name or g.name or os.path.splitext(os.path.basename(label))[0] or "onnx_model"
        self.consts = {}      # onnx tensor name -> numpy array
        self.tensors = {}     # onnx tensor name -> (numbacnn node name or INPUT, full shape with batch)
        self.nodes = []       # [(node name, layer, [input node names])]
        self.layers = {}      # node name -> layer
        self.weights = {}     # node name -> {param: array}
        self.uses = {}        # onnx tensor name -> number of consumers (graph output counts as one)
        self.absorbed = {}    # numbacnn node -> consumers of its tensors that were folded into it (or aliases)
        for n in g.node:
            for i in n.input:
                self.uses[i] = self.uses.get(i, 0) + 1
        for o in g.output:
            self.uses[o.name] = self.uses.get(o.name, 0) + 1
        for t in g.initializer:
            self.consts[t.name] = self._array(t)

    def _array(self, tensor):
        from onnx import numpy_helper
        a = numpy_helper.to_array(tensor)
        return a.astype(np.float32) if a.dtype.kind == "f" else a

    # ------------------------------------------------------------ graph
    def run(self):
        g = self.proto.graph
        runtime = [i for i in g.input if i.name not in self.consts]
        used_runtime = [i for i in runtime if self.uses.get(i.name)]
        if len(used_runtime) != 1:
            raise OnnxImportError(f"{self.label}: the graph must have exactly one (non-constant) input, it has "
                                  f"{[i.name for i in used_runtime]}")
        self._set_input(used_runtime[0])
        for index, proto in enumerate(g.node):
            node = _Node(proto, index, self)
            if proto.domain not in ("", "ai.onnx"):
                raise node.error(f"operators of domain {proto.domain!r} are not supported")
            self._node(node)
        if len(g.output) != 1:
            raise OnnxImportError(f"{self.label}: the graph must have exactly one output, it has "
                                  f"{[o.name for o in g.output]}")
        out = g.output[0].name
        if out in self.consts or out not in self.tensors or self.tensors[out][0] == INPUT:
            raise OnnxImportError(f"{self.label}: the graph output {out!r} does not depend on the graph input")
        return self._model(self.tensors[out][0]), self.weights

    def _set_input(self, vi):
        from onnx import TensorProto
        tt = vi.type.tensor_type
        if tt.elem_type not in (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE):
            raise OnnxImportError(f"{self.label}: graph input {vi.name!r} must be a float tensor")
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
        if len(dims) < 2 or any(d is None or d < 1 for d in dims[1:]):
            raise OnnxImportError(f"{self.label}: graph input {vi.name!r} needs a batch dimension and fixed "
                                  f"sizes for the others, got shape {dims}")
        self.input_shape = tuple(dims[1:])
        self.tensors[vi.name] = (INPUT, (dims[0] or 1,) + self.input_shape)

    def _model(self, output):
        live, stack = set(), [output]
        ins = {n: i for n, _, i in self.nodes}
        while stack:
            n = stack.pop()
            if n in live or n == INPUT:
                continue
            live.add(n)
            stack.extend(ins[n])
        m = Model(self.name, self.input_shape)
        for n, layer, inputs in self.nodes:
            if n in live:
                m.add(layer, inputs, n)
        m.output = output
        self.weights = {n: w for n, w in self.weights.items() if n in live}
        return m

    def _node(self, node):
        known = [i for i in node.inputs if i]
        for i in known:
            if i not in self.consts and i not in self.tensors:
                raise node.error(f"input {i!r} is not produced by any earlier node (the graph is not in "
                                 f"topological order or is incomplete)")
        if node.op in F.FOLDERS and (node.op == "Shape" or all(i in self.consts for i in known)):
            args = [self.tensors[node.inputs[0]][1] if node.op == "Shape" and node.inputs[0] in self.tensors
                    else np.asarray(self.consts[node.inputs[0]]).shape if node.op == "Shape"
                    else (self.consts[i] if i else None) for i in node.inputs]
            try:
                outs = F.fold(node.op, args, node.attrs, self.opset)
            except F.FoldError as e:
                raise node.error(str(e)) from None
            for name, value in zip(node.outputs, outs):
                self.consts[name] = value
            return
        handler = IMPORT.get(node.op)
        if handler is None:
            raise node.error("this operator is not supported" +
                             (" on a non-constant input" if node.op in F.FOLDERS else ""))
        handler(self, node)
        for extra in node.outputs[1:]:
            if extra and self.uses.get(extra) and extra not in self.tensors:
                raise node.error(f"its output {extra!r} is used, but only the first output is supported")

    # ------------------------------------------------------------ building blocks
    def runtime(self, node, i=0, rank=None):
        """(numbacnn node name, full shape) of the runtime input i; constants and wrong ranks raise."""
        name = node.input(i)
        if name is None or name not in self.tensors:
            raise node.error(f"input {i} must be computed from the graph input, not a constant")
        src, shape = self.tensors[name]
        if rank is not None and len(shape) not in ((rank,) if isinstance(rank, int) else rank):
            raise node.error(f"input {i} has shape {list(shape)}; only {rank}-D inputs are supported"
                             if isinstance(rank, int) else
                             f"input {i} has shape {list(shape)}; only inputs of rank {sorted(rank)} are supported")
        return src, shape

    def const(self, node, i, required=True):
        name = node.input(i)
        if name is None:
            if required:
                raise node.error(f"input {i} is required")
            return None
        if name not in self.consts:
            raise node.error(f"input {i} ({name!r}) must be a constant (an initializer or a foldable subgraph)")
        return self.consts[name]

    def unique(self, base):
        base = re.sub(r"[^A-Za-z0-9_.\-]", "_", base) or "node"
        name, i = base, 1
        while name in self.layers or name == INPUT or name in (".", ".."):
            i += 1
            name = f"{base}_{i}"
        return name

    def add(self, node, layer, inputs, weights=None, suffix=""):
        """Append ``layer`` fed by numbacnn nodes ``inputs`` (with their full shapes); returns (name, shape)."""
        name = self.unique(node.name + suffix)
        srcs = [s for s, _ in inputs]
        layer.name = name
        try:
            out = layer.build([shape[1:] for _, shape in inputs])
        except ValueError as e:
            raise node.error(str(e)) from None
        self.nodes.append((name, layer, srcs))
        self.layers[name] = layer
        if weights:
            self.weights[name] = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in weights.items()}
        return name, (inputs[0][1][0],) + tuple(out)

    def set(self, node, result, i=0):
        self.tensors[node.outputs[i]] = result

    def node_uses(self, src) -> int:
        """How many ONNX consumers the numbacnn node ``src``'s output still has (folded ones not counted)."""
        return sum(self.uses.get(t, 0) for t, (s, _) in self.tensors.items() if s == src) - self.absorbed.get(src, 0)

    def absorb(self, src):
        """One consumer of ``src``'s output was folded into it (or is an alias of it)."""
        self.absorbed[src] = self.absorbed.get(src, 0) + 1

    def chain(self, node, x, steps):
        """Apply [(layer, weights)] one after another from x; returns the last (name, shape)."""
        for k, (layer, w) in enumerate(steps):
            x = self.add(node, layer, [x], w, suffix="" if k == len(steps) - 1 else f"_{layer.registered_name.lower()}")
        return x

    # ------------------------------------------------------------ spatial geometry
    def spatial(self, node, x_shape, kernel, *, dilations=(1, 1), ceil=False):
        """ONNX pads (or auto_pad) -> (top, bottom, left, right) for a 2-D window, ceil_mode extra included."""
        strides = pairs(node.attrs.get("strides", [1, 1]), "strides")
        auto = node.attrs.get("auto_pad", "NOTSET")
        H, W = x_shape[2], x_shape[3]
        if auto in ("NOTSET", ""):
            p = [int(v) for v in node.attrs.get("pads", [0, 0, 0, 0])]
            if len(p) != 4 or min(p) < 0:
                raise node.error(f"pads {p} must be 4 ints >= 0", "pads")
            pads = [p[0], p[2], p[1], p[3]]
        elif auto == "VALID":
            pads = [0, 0, 0, 0]
        elif auto in ("SAME_UPPER", "SAME_LOWER"):
            pads = []
            for size, k, s, d in zip((H, W), kernel, strides, dilations):
                total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
                small, big = total // 2, total - total // 2
                pads += [small, big] if auto == "SAME_UPPER" else [big, small]
        else:
            raise node.error(f"auto_pad {auto!r} is not supported", "auto_pad")
        if ceil:
            for axis, (size, k, s, d) in enumerate(zip((H, W), kernel, strides, dilations)):
                lo, hi = pads[2 * axis], pads[2 * axis + 1]
                span = size + lo + hi - d * (k - 1) - 1
                out = -(-span // s) + 1
                if (out - 1) * s >= size + lo:  # the last window would start in the end padding
                    out -= 1
                pads[2 * axis + 1] += max(0, (out - 1) * s + d * (k - 1) + 1 - (size + lo + hi))
        return strides, tuple(pads)

    def window(self, node, x_shape):
        kernel = node.attrs.get("kernel_shape")
        if kernel is None or len(kernel) != 2:
            raise node.error(f"kernel_shape {kernel} must hold 2 sizes (only 2-D pooling is supported)",
                             "kernel_shape")
        if any(d != 1 for d in node.attrs.get("dilations", [1, 1])):
            raise node.error(f"dilations {node.attrs['dilations']} are not supported for pooling", "dilations")
        ceil = bool(node.attrs.get("ceil_mode", 0))
        strides, pads = self.spatial(node, x_shape, kernel, ceil=ceil)
        return tuple(kernel), strides, pads, ceil

    # ------------------------------------------------------------ 1-D through 2-D
    def as_2d(self, node, x, w=None):
        """A (N, C, L) input as (N, C, L, 1) through a Reshape; returns (x, w with a trailing 1) or None."""
        x = self.add(node, Reshape((x[1][1], x[1][2], 1)), [x], suffix="_to2d")
        return x, (None if w is None else w[..., None])

    def back_1d(self, node, y):
        return self.add(node, Reshape((y[1][1], y[1][2])), [y], suffix="_to1d")
