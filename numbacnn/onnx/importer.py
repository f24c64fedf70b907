"""ONNX graph -> numbacnn ``Model`` (architecture and weights).

``import_onnx(source, backend="cpu") -> Model`` reads a ``.onnx`` file (or
bytes, or an ``onnx.ModelProto``), checks it with ``onnx.checker``, walks its
nodes in order and maps each one onto engine layers:

=========================  =====================================================================
ONNX                       numbacnn
=========================  =====================================================================
Conv                       Conv2D (asymmetric pads / auto_pad: a Pad2D in front); 1-D: Reshape
                           to (C, L, 1) around a (k, 1) Conv2D
MaxPool                    MaxPool2D (asymmetric, ceil_mode or wide pads: Pad2D(-inf) in front)
AveragePool                AvgPool2D; count_include_pad=1 with uneven pads: Pad2D(0) in front;
                           count_include_pad=0 with uneven pads: padded evenly, then cropped
GlobalAveragePool          GlobalAvgPool2D
Gemm, MatMul (+ Add)       Dense (alpha, beta, transB folded into the weights; the Add of a
                           constant after a MatMul or Conv becomes its bias)
BatchNormalization         BatchNorm (evaluation statistics; 3-D/5-D inputs through Reshape)
Relu LeakyRelu Sigmoid     ReLU LeakyReLU Sigmoid Tanh
Tanh
Softmax                    Softmax over the features (Flatten / Reshape around it as needed)
LRN                        LRN (odd sizes: ONNX and the engine centre even windows differently)
Dropout                    Dropout (identity in evaluation, as in ONNX Runtime)
Flatten, Reshape           Flatten / Reshape when the first dimension stays the batch
Concat (axis 1)            Concatenate
Add, Sum                   Add
Pad (constant)             Pad2D (H, W), ChannelPad (zeros on channels)
Identity                   nothing (an alias)
=========================  =====================================================================

Constant subgraphs (initializers, ``Constant``, ``ConstantOfShape``,
``Shape -> Gather -> Unsqueeze -> Concat``, ...) are folded with numpy (see
``fold.py``).  The first dimension of the graph input is the batch; a graph
with a fixed batch size (often 1) imports as a model taking any batch size.

Anything else ends in ONE ``OnnxImportError`` naming the file, the operator,
the node and, where it is an attribute's value that is not supported, the
attribute.  Supported opsets: 6 to 21 of the default domain (a later opset
imports when its nodes are among the above).
"""
from __future__ import annotations

import math
import os
import re

import numpy as np

from ..graph import INPUT, Model
from ..layers import (LRN, Add, AvgPool2D, BatchNorm, ChannelPad, Concatenate, Conv2D, Dense, Dropout, Flatten,
                      GlobalAvgPool2D, LeakyReLU, MaxPool2D, Pad2D, ReLU, Reshape, Sigmoid, Softmax, Tanh)
from . import fold as F

MIN_OPSET, MAX_OPSET = 6, 21


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


# ---------------------------------------------------------------- helpers
def _pairs(v, what):
    return tuple(int(a) for a in v)



def _attrs_to_2d(node):
    """Rewrite a 1-D Conv/pool's list attributes for the (L, 1) image it becomes."""
    a = node.attrs
    for key in ("kernel_shape", "strides", "dilations"):
        if key in a:
            a[key] = list(a[key])[:1] + [1]
    if "pads" in a:
        p = list(a["pads"]) + [0, 0]
        a["pads"] = [p[0], 0, p[1], 0]


def _conv_out(size, k, s, pad, d=1):
    return (size + pad - d * (k - 1) - 1) // s + 1


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
        return OnnxImportError(f"{self.imp.label}: operator {self.op} (node {self.name!r}{attr}): {what}")

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
        self.used = set()
        self.uses = {}        # onnx tensor name -> number of consumers (graph output counts as one)
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
        handler = getattr(self, "_op_" + node.op, None)
        if handler is None:
            raise node.error("this operator is not supported" +
                             (" on a non-constant input" if node.op in F.FOLDERS else ""))
        handler(node)
        for extra in node.outputs[1:]:
            if extra and self.uses.get(extra):
                raise node.error(f"its output {extra!r} is used, but only the first output is supported")

    # ------------------------------------------------------------ building blocks
    def _runtime(self, node, i=0, rank=None):
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

    def _const(self, node, i, required=True):
        name = node.input(i)
        if name is None:
            if required:
                raise node.error(f"input {i} is required")
            return None
        if name not in self.consts:
            raise node.error(f"input {i} ({name!r}) must be a constant (an initializer or a foldable subgraph)")
        return self.consts[name]

    def _unique(self, base):
        base = re.sub(r"[^A-Za-z0-9_.\-]", "_", base) or "node"
        name, i = base, 1
        while name in self.layers or name == INPUT or name in (".", ".."):
            i += 1
            name = f"{base}_{i}"
        return name

    def _add(self, node, layer, inputs, weights=None, suffix=""):
        """Append ``layer`` fed by numbacnn nodes ``inputs`` (with their full shapes); returns (name, shape)."""
        name = self._unique(node.name + suffix)
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

    def _set(self, node, result, i=0):
        self.tensors[node.outputs[i]] = result

    def _chain(self, node, x, steps):
        """Apply [(layer, weights)] one after another from x; returns the last (name, shape)."""
        for k, (layer, w) in enumerate(steps):
            x = self._add(node, layer, [x], w, suffix="" if k == len(steps) - 1 else f"_{type(layer).__name__.lower()}")
        return x

    # ------------------------------------------------------------ spatial geometry
    def _spatial(self, node, x_shape, kernel, *, dilations=(1, 1), ceil=False):
        """ONNX pads (or auto_pad) -> (top, bottom, left, right) for a 2-D window, ceil_mode extra included."""
        strides = _pairs(node.attrs.get("strides", [1, 1]), "strides")
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

    def _window(self, node, x_shape):
        kernel = node.attrs.get("kernel_shape")
        if kernel is None or len(kernel) != 2:
            raise node.error(f"kernel_shape {kernel} must hold 2 sizes (only 2-D pooling is supported)",
                             "kernel_shape")
        if any(d != 1 for d in node.attrs.get("dilations", [1, 1])):
            raise node.error(f"dilations {node.attrs['dilations']} are not supported for pooling", "dilations")
        ceil = bool(node.attrs.get("ceil_mode", 0))
        strides, pads = self._spatial(node, x_shape, kernel, ceil=ceil)
        return tuple(kernel), strides, pads, ceil

    # ------------------------------------------------------------ 1-D through 2-D
    def _as_2d(self, node, x, w=None):
        """A (N, C, L) input as (N, C, L, 1) through a Reshape; returns (x, w with a trailing 1) or None."""
        x = self._add(node, Reshape((x[1][1], x[1][2], 1)), [x], suffix="_to2d")
        return x, (None if w is None else w[..., None])

    def _back_1d(self, node, y):
        return self._add(node, Reshape((y[1][1], y[1][2])), [y], suffix="_to1d")

    # ------------------------------------------------------------ operators
    def _op_Conv(self, node):
        node.check_attrs({"kernel_shape", "strides", "pads", "dilations", "group", "auto_pad"})
        x = self._runtime(node, 0, (3, 4))
        w = self._const(node, 1)
        b = self._const(node, 2, required=False)
        one_d = len(x[1]) == 3
        if w.ndim != len(x[1]):
            raise node.error(f"weight shape {list(w.shape)} does not match input shape {list(x[1])}")
        if one_d:
            _attrs_to_2d(node)
            x, w = self._as_2d(node, x, w)
        kernel = tuple(int(d) for d in w.shape[2:])
        if "kernel_shape" in node.attrs and tuple(node.attrs["kernel_shape"]) != kernel:
            raise node.error(f"kernel_shape {node.attrs['kernel_shape']} does not match the weight shape "
                             f"{list(w.shape)}", "kernel_shape")
        dil = _pairs(node.attrs.get("dilations", [1, 1]), "dilations")
        groups = int(node.attrs.get("group", 1))
        strides, (t, bt, l, r) = self._spatial(node, x[1], kernel, dilations=dil)
        sym = (min(t, bt), min(l, r))
        steps = []
        if (t, bt) != (sym[0], sym[0]) or (l, r) != (sym[1], sym[1]):
            steps.append((Pad2D((t - sym[0], bt - sym[0], l - sym[1], r - sym[1]), 0.0), None))
        weights = {"weight": w}
        if b is not None:
            weights["bias"] = b.reshape(-1)
        steps.append((Conv2D(int(w.shape[0]), kernel, strides, sym, dil, groups, use_bias=b is not None), weights))
        y = self._chain(node, x, steps)
        self._set(node, self._back_1d(node, y) if one_d else y)

    def _pool(self, node, kind):
        if kind == "max":
            node.check_attrs({"kernel_shape", "strides", "pads", "auto_pad", "ceil_mode", "dilations",
                              "storage_order"})
        else:
            node.check_attrs({"kernel_shape", "strides", "pads", "auto_pad", "ceil_mode", "count_include_pad"})
        x = self._runtime(node, 0, (3, 4))
        one_d = len(x[1]) == 3
        if one_d:
            _attrs_to_2d(node)
            x, _ = self._as_2d(node, x)
        k, s, (t, b, l, r), ceil = self._window(node, x[1])
        H, W = x[1][2], x[1][3]
        even = t == b and l == r and t <= k[0] // 2 and l <= k[1] // 2
        if kind == "max":
            steps = [(MaxPool2D(k, s, (t, l)), None)] if even else \
                [(Pad2D((t, b, l, r), float("-inf")), None), (MaxPool2D(k, s, 0), None)]
        elif even:
            steps = [(AvgPool2D(k, s, (t, l), bool(node.attrs.get("count_include_pad", 0))), None)]
        elif ceil and self._spatial(node, x[1], k)[1] != (t, b, l, r):
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
            OH, OW = _conv_out(H + t + b, k[0], s[0], 0), _conv_out(W + l + r, k[1], s[1], 0)
            SH, SW = _conv_out(H, k[0], s[0], 2 * ph), _conv_out(W, k[1], s[1], 2 * pw)
            ct, cl = (ph - t) // s[0], (pw - l) // s[1]
            steps = [(AvgPool2D(k, s, (ph, pw), False), None)]
            if (ct, SH - ct - OH, cl, SW - cl - OW) != (0, 0, 0, 0):
                steps.append((Pad2D((-ct, -(SH - ct - OH), -cl, -(SW - cl - OW)), 0.0), None))
        y = self._chain(node, x, steps)
        self._set(node, self._back_1d(node, y) if one_d else y)

    def _op_MaxPool(self, node):
        self._pool(node, "max")

    def _op_AveragePool(self, node):
        self._pool(node, "avg")

    def _op_GlobalAveragePool(self, node):
        node.check_attrs(set())
        self._set(node, self._add(node, GlobalAvgPool2D(), [self._runtime(node, 0, 4)]))

    def _dense(self, node, x, w, b):
        """x : runtime (N, in); w : (out, in); b : (out,) or None."""
        weights = {"weight": w}
        if b is not None:
            weights["bias"] = b
        return self._add(node, Dense(int(w.shape[0]), use_bias=b is not None), [x], weights)

    def _op_Gemm(self, node):
        node.check_attrs({"alpha", "beta", "transA", "transB", "broadcast"})
        if node.attrs.get("transA", 0):
            raise node.error("transA=1 on a non-constant input is not supported", "transA")
        x = self._runtime(node, 0, 2)
        bmat = self._const(node, 1)
        w = (bmat if node.attrs.get("transB", 0) else bmat.T) * np.float32(node.attrs.get("alpha", 1.0))
        c = self._const(node, 2, required=False)
        bias = None
        if c is not None:
            bias = self._bias_vector(node, c * np.float32(node.attrs.get("beta", 1.0)), 2, w.shape[0])
        self._set(node, self._dense(node, x, w, bias))

    def _op_MatMul(self, node):
        node.check_attrs(set())
        x = self._runtime(node, 0, 2)
        b = self._const(node, 1)
        if b.ndim != 2:
            raise node.error(f"only a 2-D constant right operand is supported, got shape {list(b.shape)}")
        self._set(node, self._dense(node, x, b.T, None))

    def _bias_vector(self, node, c, rank, channels):
        """A constant that broadcasts per channel (axis 1) against a rank-``rank`` tensor -> (channels,), or raise."""
        c = np.asarray(c, dtype=np.float32)
        if c.ndim > rank:
            raise node.error(f"constant of shape {list(c.shape)} does not broadcast per channel")
        s = (1,) * (rank - c.ndim) + c.shape
        if any(d != 1 for i, d in enumerate(s) if i != 1) or s[1] not in (1, channels):
            raise node.error(f"constant of shape {list(c.shape)} is not a per-channel bias of {channels} channels")
        return np.broadcast_to(c.reshape(-1), (channels,)).copy()

    def _op_Add(self, node):
        node.check_attrs({"broadcast", "axis"})
        a, b = node.input(0), node.input(1)
        if a in self.tensors and b in self.tensors:
            return self._merge(node, [a, b])
        if a in self.consts:
            a, b = b, a
        src, shape = self.tensors[a]
        layer = self.layers.get(src)
        c = self.consts[b]
        if not isinstance(layer, (Dense, Conv2D)) or self.uses.get(a, 0) != 1 or src not in self.weights:
            raise node.error("adding a constant is only supported as the bias of the Conv, Gemm or MatMul "
                             "just before it")
        if node.attrs.get("broadcast") and "axis" in node.attrs and c.ndim:  # opset < 7 axis broadcast
            c = c.reshape(c.shape + (1,) * (len(shape) - node.attrs["axis"] % len(shape) - c.ndim))
        bias = self._bias_vector(node, c, len(shape), shape[1])
        w = self.weights[src]
        w["bias"] = w.get("bias", 0) + bias
        if not layer.use_bias:
            layer.use_bias = True
            layer.build(layer.input_shapes)
        self._set(node, (src, shape))

    def _op_Sum(self, node):
        node.check_attrs(set())
        self._merge(node, node.inputs)

    def _merge(self, node, names):
        xs = []
        for i, n in enumerate(names):
            xs.append(self._runtime(node, i))
            if xs[-1][1] != xs[0][1]:
                raise node.error(f"inputs of shapes {list(xs[0][1])} and {list(xs[-1][1])}: broadcasting "
                                 f"between computed tensors is not supported")
        self._set(node, xs[0] if len(xs) == 1 else self._add(node, Add(), xs))

    def _op_Concat(self, node):
        node.check_attrs({"axis"})
        xs = [self._runtime(node, i) for i in range(len(node.inputs))]
        rank = len(xs[0][1])
        if "axis" not in node.attrs or node.attrs["axis"] % rank != 1:
            raise node.error(f"axis {node.attrs.get('axis')} is not supported: only the channel axis 1", "axis")
        self._set(node, self._add(node, Concatenate(), xs))

    def _op_BatchNormalization(self, node):
        node.check_attrs({"epsilon", "momentum", "spatial", "is_test", "consumed_inputs", "training_mode"})
        if node.attrs.get("training_mode", 0):
            raise node.error("training_mode=1 is not supported (import inference graphs)", "training_mode")
        x = self._runtime(node, 0, (2, 3, 4, 5))
        if node.attrs.get("spatial", 1) == 0 and len(x[1]) != 2:
            raise node.error("spatial=0 is not supported", "spatial")
        scale, bias, mean, var = (self._const(node, i).reshape(-1) for i in (1, 2, 3, 4))
        layer = BatchNorm(momentum=float(1.0 - node.attrs.get("momentum", 0.9)),
                          eps=float(node.attrs.get("epsilon", 1e-5)))
        weights = {"gamma": scale, "beta": bias, "running_mean": mean, "running_var": var}
        shape = x[1]
        if len(shape) in (3, 5):  # per-channel statistics do not care how the rest is laid out
            x = self._add(node, Reshape((shape[1], int(np.prod(shape[2:])), 1)), [x], suffix="_to4d")
        y = self._add(node, layer, [x], weights)
        if len(shape) in (3, 5):
            y = self._add(node, Reshape(shape[1:]), [y], suffix="_back")
        self._set(node, y)

    def _elementwise(self, node, layer, known=()):
        node.check_attrs(set(known) | {"consumed_inputs"})
        self._set(node, self._add(node, layer, [self._runtime(node)]))

    def _op_Relu(self, node):
        self._elementwise(node, ReLU())

    def _op_LeakyRelu(self, node):
        self._elementwise(node, LeakyReLU(float(node.attrs.get("alpha", 0.01))), {"alpha"})

    def _op_Sigmoid(self, node):
        self._elementwise(node, Sigmoid())

    def _op_Tanh(self, node):
        self._elementwise(node, Tanh())

    def _op_Identity(self, node):
        self._set(node, self._runtime(node))

    def _op_Dropout(self, node):
        node.check_attrs({"ratio", "is_test", "seed", "consumed_inputs"})
        ratio = node.attrs.get("ratio", 0.5)
        if self.opset >= 12:
            r = self._const(node, 1, required=False)
            ratio = 0.5 if r is None else float(np.asarray(r).reshape(-1)[0])
            mode = self._const(node, 2, required=False)
            if mode is not None and bool(np.asarray(mode).reshape(-1)[0]):
                raise node.error("training_mode=True is not supported (import inference graphs)")
        if not 0.0 <= ratio < 1.0:
            raise node.error(f"ratio {ratio} must be in [0, 1)", "ratio")
        self._set(node, self._add(node, Dropout(float(ratio)), [self._runtime(node)]))

    def _op_LRN(self, node):
        node.check_attrs({"size", "alpha", "beta", "bias"})
        size = int(node.attrs.get("size", 0))
        if size < 1 or size % 2 == 0:
            raise node.error(f"size {size} is not supported: only odd sizes (ONNX centres even windows "
                             f"differently from the engine)", "size")
        layer = LRN(size, float(node.attrs.get("alpha", 1e-4)), float(node.attrs.get("beta", 0.75)),
                    float(node.attrs.get("bias", 1.0)))
        self._set(node, self._add(node, layer, [self._runtime(node, 0, 4)]))

    def _op_Softmax(self, node):
        node.check_attrs({"axis"})
        x = self._runtime(node)
        shape = x[1]
        rank = len(shape)
        axis = node.attrs.get("axis", 1 if self.opset < 13 else -1) % rank
        if self.opset < 13:  # softmax over everything from ``axis`` on, per row
            ok = axis == 1
        else:  # softmax along one axis: the features when the others (but the batch) are 1
            ok = rank >= 2 and all(d == 1 for i, d in enumerate(shape) if i not in (0, axis))
        if not ok:
            raise node.error(f"softmax over axis {node.attrs.get('axis', axis)} of an input of shape {list(shape)} "
                             f"is not supported: only over the features of each sample", "axis")
        if rank > 2:
            x = self._add(node, Flatten(), [x], suffix="_flat")
        y = self._add(node, Softmax(), [x])
        if rank > 2:
            y = self._add(node, Reshape(shape[1:]), [y], suffix="_back")
        self._set(node, y)

    def _op_Flatten(self, node):
        node.check_attrs({"axis"})
        x = self._runtime(node)
        if node.attrs.get("axis", 1) % (len(x[1]) + 1) != 1:
            raise node.error(f"axis {node.attrs['axis']} is not supported: only 1 (keep the batch)", "axis")
        self._set(node, x if len(x[1]) == 2 else self._add(node, Flatten(), [x]))

    def _op_Reshape(self, node):
        node.check_attrs({"shape", "allowzero", "consumed_inputs"})
        x = self._runtime(node)
        target = node.attrs.get("shape") if self.opset < 5 else [int(v) for v in self._const(node, 1).reshape(-1)]
        try:
            out = F.resolve_reshape(x[1], target, node.attrs.get("allowzero", 0))
        except F.FoldError as e:
            raise node.error(str(e)) from None
        self._set(node, self._reshape_to(node, x, out))

    def _reshape_to(self, node, x, out):
        """x viewed as the full shape ``out``: an alias, a Flatten or a Reshape; the batch must stay first."""
        out = tuple(int(d) for d in out)
        if not out or out[0] != x[1][0]:
            raise node.error(f"reshaping {list(x[1])} to {list(out)} changes the first (batch) dimension")
        if out == x[1]:
            return x
        return self._add(node, Flatten() if len(out) == 2 else Reshape(out[1:]), [x])

    def _op_Unsqueeze(self, node):
        node.check_attrs({"axes"})
        x = self._runtime(node)
        axes = F._axes([None] + [self._const(node, 1, required=False)], node.attrs, self.opset, 13)
        if axes is None:
            raise node.error("axes are required", "axes")
        out = list(x[1])
        for a in sorted(int(a) % (len(out) + len(axes)) for a in axes):
            out.insert(a, 1)
        self._set(node, self._reshape_to(node, x, out))

    def _op_Squeeze(self, node):
        node.check_attrs({"axes"})
        x = self._runtime(node)
        axes = F._axes([None] + [self._const(node, 1, required=False)], node.attrs, self.opset, 13)
        rank = len(x[1])
        drop = {int(a) % rank for a in axes} if axes is not None else {i for i, d in enumerate(x[1]) if d == 1}
        if any(x[1][a] != 1 for a in drop):
            raise node.error(f"cannot squeeze axes {sorted(drop)} of shape {list(x[1])}", "axes")
        self._set(node, self._reshape_to(node, x, [d for i, d in enumerate(x[1]) if i not in drop]))

    def _op_Pad(self, node):
        node.check_attrs({"mode", "pads", "value", "paddings"})
        x = self._runtime(node, 0, 4)
        mode = node.attrs.get("mode", "constant")
        if mode != "constant":
            raise node.error(f"mode {mode!r} is not supported: only 'constant'", "mode")
        if self.opset < 11:
            pads, value = node.attrs.get("pads", node.attrs.get("paddings")), node.attrs.get("value", 0.0)
        else:
            pads = [int(v) for v in self._const(node, 1).reshape(-1)]
            v = self._const(node, 2, required=False)
            value = 0.0 if v is None else float(np.asarray(v).reshape(-1)[0])
            axes = self._const(node, 3, required=False)
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
        self._set(node, self._chain(node, x, steps))
