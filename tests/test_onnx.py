"""ONNX import and export.

* The conformance data shipped with the onnx package (``backend/test/data/pytorch-converted``):
  every case either imports and matches its stored output, or is listed in ``UNSUPPORTED`` with the
  reason and must fail with ONE OnnxImportError naming the operator.
* The classic graphs (``backend/test/data/light``; their weights are ConstantOfShape nodes, replaced
  here by seeded random initializers) import and match ONNX Runtime on the same input.
* Hand-built graphs for each operator's attributes and each opset's attribute/input forms,
  against ONNX Runtime.
* Every zoo model exports, passes onnx.checker, matches in ONNX Runtime and imports back.
* Errors: malformed files, unsupported operators and attributes.
* Transfer learning on an imported AlexNet: frozen body, new 10-class head, the loss falls.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from numbacnn.onnx import OnnxExportError, OnnxImportError, export_onnx, import_onnx  # noqa: E402
from numbacnn.onnx.light import light_graph, light_model_path  # noqa: E402

DATA = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")
CONVERTED = os.path.join(DATA, "pytorch-converted")


def _ort_run(proto, x):
    ort = pytest.importorskip("onnxruntime")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.log_severity_level = 3
    s = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]


def _run(model, x):
    return np.asarray(model.backend.to_host(model.forward(x)))


# ---------------------------------------------------------------- pytorch-converted conformance
#: cases that must fail with OnnxImportError, and why (the text the error must contain, the reason)
UNSUPPORTED = {
    "test_AvgPool3d": ("AveragePool", "3-D pooling"),
    "test_AvgPool3d_stride": ("AveragePool", "3-D pooling"),
    "test_AvgPool3d_stride1_pad0_gpu_input": ("AveragePool", "3-D pooling"),
    "test_BatchNorm3d_eval": None, "test_BatchNorm3d_momentum_eval": None,  # imported through Reshape
    "test_Conv3d": ("Conv", "3-D convolution"), "test_Conv3d_dilated": ("Conv", "3-D convolution"),
    "test_Conv3d_dilated_strided": ("Conv", "3-D convolution"), "test_Conv3d_groups": ("Conv", "3-D convolution"),
    "test_Conv3d_no_bias": ("Conv", "3-D convolution"), "test_Conv3d_stride": ("Conv", "3-D convolution"),
    "test_Conv3d_stride_padding": ("Conv", "3-D convolution"),
    "test_MaxPool3d": ("MaxPool", "3-D pooling"), "test_MaxPool3d_stride": ("MaxPool", "3-D pooling"),
    "test_MaxPool3d_stride_padding": ("MaxPool", "3-D pooling"),
    "test_MaxPool1d_stride_padding_dilation": ("dilations", "dilated pooling"),
    "test_MaxPool2d_stride_padding_dilation": ("dilations", "dilated pooling"),
    "test_ConvTranspose2d": ("ConvTranspose", "no transposed convolution layer"),
    "test_ConvTranspose2d_no_bias": ("ConvTranspose", "no transposed convolution layer"),
    "test_ELU": ("Elu", "no ELU layer"), "test_SELU": ("Selu", "no SELU layer"),
    "test_Softplus": ("Softplus", "no Softplus layer"), "test_Softsign": ("Abs", "no Abs/Div layers"),
    "test_PReLU_1d": ("PRelu", "no PReLU layer"), "test_PReLU_1d_multiparam": ("PRelu", "no PReLU layer"),
    "test_PReLU_2d": ("PRelu", "no PReLU layer"), "test_PReLU_2d_multiparam": ("PRelu", "no PReLU layer"),
    "test_PReLU_3d": ("PRelu", "no PReLU layer"), "test_PReLU_3d_multiparam": ("PRelu", "no PReLU layer"),
    "test_Embedding": ("must be a float tensor", "integer (index) input"),
    "test_Embedding_sparse": ("must be a float tensor", "integer (index) input"),
    "test_GLU": ("Split", "no Split layer"), "test_GLU_dim": ("Split", "no Split layer"),
    "test_LogSoftmax": ("LogSoftmax", "no LogSoftmax layer"),
    "test_log_softmax_dim3": ("LogSoftmax", "no LogSoftmax layer"),
    "test_log_softmax_lastdim": ("LogSoftmax", "no LogSoftmax layer"),
    "test_softmax_functional_dim3": ("axis", "softmax along a spatial axis"),
    "test_Softmin": ("Neg", "no Neg layer on computed tensors"),
    "test_PixelShuffle": ("Transpose", "no Transpose layer for computed tensors"),
    "test_PoissonNLLLLoss_no_reduce": ("Exp", "no Exp layer"),
    "test_ReflectionPad2d": ("mode", "reflect padding"), "test_ReplicationPad2d": ("mode", "edge padding"),
}
UNSUPPORTED = {k: v for k, v in UNSUPPORTED.items() if v is not None}
CASES = sorted(d for d in os.listdir(CONVERTED) if os.path.isdir(os.path.join(CONVERTED, d))) \
    if os.path.isdir(CONVERTED) else []


def _tensor(path):
    t = TensorProto()
    with open(path, "rb") as f:
        t.ParseFromString(f.read())
    return numpy_helper.to_array(t)


def test_conformance_data_is_there():
    assert len(CASES) > 60, f"expected the onnx package's pytorch-converted test data under {CONVERTED}"


@pytest.mark.parametrize("case", [c for c in CASES if c not in UNSUPPORTED])
def test_pytorch_converted_case_matches(case):
    d = os.path.join(CONVERTED, case)
    x = _tensor(os.path.join(d, "test_data_set_0", "input_0.pb")).astype(np.float32)
    expected = _tensor(os.path.join(d, "test_data_set_0", "output_0.pb"))
    model = import_onnx(os.path.join(d, "model.onnx"))
    y = _run(model, x)
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("case", sorted(c for c in UNSUPPORTED if c in CASES))
def test_pytorch_converted_unsupported_case_fails_clearly(case):
    words, _reason = UNSUPPORTED[case]
    with pytest.raises(OnnxImportError, match=words) as info:
        import_onnx(os.path.join(CONVERTED, case, "model.onnx"))
    msg = str(info.value)
    assert msg.startswith(os.path.join(CONVERTED, case, "model.onnx") + ": ") and "\n" not in msg


# ---------------------------------------------------------------- the classic graphs
LIGHT = ["light_bvlc_alexnet", "light_zfnet512", "light_squeezenet", "light_inception_v1", "light_resnet50",
         "light_vgg19"]


def load_light(name, seed=0):
    path = light_model_path(name)
    if not os.path.exists(path):
        pytest.skip(f"{path} is not in this onnx package")
    return light_graph(name, seed)


def strip_softmax(proto):
    """Make the final Softmax's input the graph output: random weights can saturate the probabilities."""
    g = proto.graph
    last = next(n for n in g.node if g.output[0].name in n.output)
    assert last.op_type == "Softmax"
    g.node.remove(last)
    g.output[0].name = last.input[0]
    return proto


@pytest.mark.parametrize("name", LIGHT)
def test_light_graph_matches_onnxruntime(name):
    proto = load_light(name)
    x = np.random.default_rng(1).uniform(-1, 1, (1, 3, 224, 224)).astype(np.float32)
    expected = _ort_run(proto, x)
    model = import_onnx(proto, name=name)
    y = _run(model, x)
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, rtol=2e-3, atol=1e-6)
    # the logits: float32 sums over up to 25,088 terms, in another order than ONNX Runtime's
    logits_proto = strip_softmax(proto)
    expected = _ort_run(logits_proto, x)
    y = _run(import_onnx(logits_proto), x)
    assert np.std(expected) > 0.1  # not a degenerate comparison
    np.testing.assert_allclose(y, expected, rtol=1e-3, atol=1e-4 * np.abs(expected).max())


# ---------------------------------------------------------------- hand-built graphs against ONNX Runtime
def _graph(nodes, x_shape, y_shape, inits=(), opset=13, name="g"):
    g = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)],
                          [numpy_helper.from_array(np.asarray(v), k) for k, v in dict(inits).items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 7 if opset < 15 else 8
    return onnx.shape_inference.infer_shapes(m) if y_shape is None else m


def _check_against_ort(proto, x_shape, seed=0, rtol=1e-4, atol=1e-5):
    x = np.random.default_rng(seed).standard_normal(x_shape).astype(np.float32)
    expected = _ort_run(proto, x)
    model = import_onnx(proto)
    y = _run(model, x)
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, rtol=rtol, atol=atol)
    return model


def _w(*shape, seed=1):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32) * 0.3


CONV_CASES = [
    dict(pads=[1, 0, 2, 1]), dict(pads=[0, 2, 1, 0], strides=[2, 2]), dict(auto_pad="SAME_UPPER", strides=[2, 2]),
    dict(auto_pad="SAME_LOWER", strides=[2, 1]), dict(auto_pad="VALID", strides=[1, 2]),
    dict(pads=[1, 1, 1, 1], dilations=[2, 2]), dict(pads=[2, 1, 2, 1], group=2),
    dict(auto_pad="SAME_UPPER", strides=[1, 2], group=4), dict(pads=[0, 2, 3, 1], dilations=[2, 1], group=4),
]


@pytest.mark.parametrize("attrs", CONV_CASES, ids=lambda a: ",".join(f"{k}={v}" for k, v in a.items()))
def test_conv_padding_forms(attrs):
    g = attrs.get("group", 1)
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[3, 3], **attrs)
    proto = _graph([node], (2, 4, 9, 8), None, {"w": _w(6 if g != 4 else 8, 4 // g, 3, 3), "b": _w(6 if g != 4 else 8)})
    _check_against_ort(proto, (2, 4, 9, 8))


POOL_CASES = [
    ("MaxPool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[0, 0, 1, 1])),
    ("MaxPool", dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)),
    ("MaxPool", dict(kernel_shape=[2, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1)),
    ("MaxPool", dict(kernel_shape=[3, 3], strides=[1, 1], auto_pad="SAME_UPPER")),
    ("MaxPool", dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_LOWER")),
    ("AveragePool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])),
    ("AveragePool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1)),
    ("AveragePool", dict(kernel_shape=[3, 3], strides=[1, 1], pads=[0, 0, 1, 1])),
    ("AveragePool", dict(kernel_shape=[3, 3], strides=[1, 1], pads=[0, 1, 1, 0], count_include_pad=1)),
    ("AveragePool", dict(kernel_shape=[3, 2], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1)),  # no effect
    ("AveragePool", dict(kernel_shape=[3, 3], strides=[1, 1], auto_pad="SAME_UPPER")),
    ("AveragePool", dict(kernel_shape=[7, 7], strides=[1, 1], pads=[0, 0, 1, 1])),  # GoogLeNet's pool5
]


@pytest.mark.parametrize("op, attrs", POOL_CASES, ids=[f"{o}-{a}" for o, a in POOL_CASES])
def test_pool_padding_and_ceil_mode(op, attrs):
    x_shape = (2, 3, 6, 6) if attrs["kernel_shape"] == [7, 7] else (2, 3, 9, 8)
    proto = _graph([helper.make_node(op, ["x"], ["y"], **attrs)], x_shape, None, opset=12)
    _check_against_ort(proto, x_shape)


@pytest.mark.parametrize("alpha, beta, trans_b, c_shape", [(1.0, 1.0, 1, (5,)), (0.5, 2.0, 0, (1, 5)),
                                                           (2.0, 0.5, 1, ()), (1.0, 1.0, 0, None)])
def test_gemm_attributes(alpha, beta, trans_b, c_shape):
    b = _w(5, 7) if trans_b else _w(7, 5)
    inits = {"b": b}
    ins = ["x", "b"]
    if c_shape is not None:
        inits["c"] = _w(*c_shape, seed=2) if c_shape else np.float32(0.7)
        ins.append("c")
    node = helper.make_node("Gemm", ins, ["y"], alpha=alpha, beta=beta, transB=trans_b)
    _check_against_ort(_graph([node], (3, 7), None, inits, opset=11), (3, 7))


def test_matmul_add_becomes_dense_with_bias():
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Add", ["h", "b"], ["y"])]
    model = _check_against_ort(_graph(nodes, (4, 6), None, {"w": _w(6, 3), "b": _w(3, seed=3)}), (4, 6))
    assert [type(l).__name__ for l in model.layers.values()] == ["Dense"]
    assert model.layers["h"].use_bias


def test_conv_then_constant_add_folds_into_the_bias():
    nodes = [helper.make_node("Conv", ["x", "w"], ["h"], kernel_shape=[3, 3]),
             helper.make_node("Add", ["h", "b"], ["y"])]
    _check_against_ort(_graph(nodes, (1, 2, 5, 5), None, {"w": _w(3, 2, 3, 3), "b": _w(1, 3, 1, 1)}), (1, 2, 5, 5))


def _flatten_head(opset):
    """Conv -> Relu -> Shape/Gather/Unsqueeze/Concat -> Reshape -> Gemm -> Dropout -> Softmax (PyTorch's export)."""
    i64 = lambda *v: np.asarray(v, dtype=np.int64)  # noqa: E731
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "s", "bb", "m", "v"], ["bn"], epsilon=1e-3),
             helper.make_node("Relu", ["bn"], ["r"]),
             helper.make_node("Shape", ["r"], ["shp"]),
             helper.make_node("Gather", ["shp", "zero"], ["n"], axis=0)]
    if opset >= 13:
        nodes.append(helper.make_node("Unsqueeze", ["n", "ax0"], ["n1"]))
    else:
        nodes.append(helper.make_node("Unsqueeze", ["n"], ["n1"], axes=[0]))
    nodes += [helper.make_node("Concat", ["n1", "minus1"], ["target"], axis=0),
              helper.make_node("Reshape", ["r", "target"], ["f"]),
              helper.make_node("Gemm", ["f", "fw", "fb"], ["g"], transB=1)]
    if opset >= 12:
        nodes.append(helper.make_node("Dropout", ["g", "ratio"], ["d"]))
    else:
        nodes.append(helper.make_node("Dropout", ["g"], ["d"], ratio=0.3))
    nodes += [helper.make_node("Identity", ["d"], ["i"]), helper.make_node("Softmax", ["i"], ["y"], axis=1)]
    inits = {"w": _w(4, 3, 3, 3), "s": np.linspace(0.5, 1.5, 4, dtype=np.float32), "bb": _w(4, seed=4),
             "m": _w(4, seed=5), "v": np.linspace(0.5, 2.0, 4, dtype=np.float32), "zero": np.asarray(0, np.int64),
             "ax0": i64(0), "minus1": i64(-1), "fw": _w(10, 4 * 5 * 5, seed=6), "fb": _w(10, seed=7),
             "ratio": np.float32(0.3)}
    return _graph(nodes, (2, 3, 5, 5), [2, 10], inits, opset=opset)


@pytest.mark.parametrize("opset", [7, 9, 11, 12, 13, 17, 21])
def test_opsets_attribute_and_input_forms(opset):
    model = _check_against_ort(_flatten_head(opset), (2, 3, 5, 5))
    types = [type(l).__name__ for l in model.layers.values()]
    assert types == ["Conv2D", "BatchNorm", "ReLU", "Flatten", "Dense", "Dropout", "Softmax"]
    assert model.layers["d"].rate == pytest.approx(0.3)


def test_constant_of_shape_weights_and_constant_nodes():
    nodes = [helper.make_node("ConstantOfShape", ["wshape"], ["w"],
                              value=numpy_helper.from_array(np.asarray([0.25], np.float32))),
             helper.make_node("Constant", [], ["b"], value=numpy_helper.from_array(_w(4, seed=8))),
             helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[1, 1])]
    _check_against_ort(_graph(nodes, (1, 3, 4, 4), None, {"wshape": np.asarray([4, 3, 1, 1], np.int64)}, opset=11),
                       (1, 3, 4, 4))


def test_lrn_concat_sum_leaky_sigmoid_tanh_gap():
    nodes = [helper.make_node("LRN", ["x"], ["a"], size=3, alpha=1e-2, beta=0.7, bias=1.5),
             helper.make_node("LeakyRelu", ["x"], ["b"], alpha=0.2),
             helper.make_node("Sigmoid", ["x"], ["c"]), helper.make_node("Tanh", ["x"], ["d"]),
             helper.make_node("Sum", ["a", "b", "c"], ["s"]), helper.make_node("Concat", ["s", "d"], ["cat"], axis=1),
             helper.make_node("GlobalAveragePool", ["cat"], ["y"])]
    _check_against_ort(_graph(nodes, (2, 5, 4, 3), None, opset=13), (2, 5, 4, 3))


def test_imported_model_with_minus_inf_padding_survives_hdf5(tmp_path):
    from numbacnn.io.hdf5 import load_model, save_model
    proto = _graph([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)],
                   (1, 2, 8, 8), None, opset=12)
    model = import_onnx(proto)
    assert any(type(l).__name__ == "Pad2D" and l.value == -np.inf for l in model.layers.values())
    save_model(tmp_path / "m.h5", model)
    again = load_model(str(tmp_path / "m.h5")).model
    x = np.random.default_rng(0).standard_normal((1, 2, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(_run(again, x), _run(model, x))


# ---------------------------------------------------------------- errors
def test_malformed_files_give_one_clear_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage\xff\xff\x00not protobuf")
    with pytest.raises(OnnxImportError, match="bad.onnx: not a valid ONNX model"):
        import_onnx(bad)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(OnnxImportError, match="empty.onnx: not a valid ONNX model"):
        import_onnx(empty)
    good = _graph([helper.make_node("Relu", ["x"], ["y"])], (1, 3), None).SerializeToString()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(good[:len(good) // 2])
    with pytest.raises(OnnxImportError, match="cut.onnx: not a valid ONNX model"):
        import_onnx(cut)
    with pytest.raises(OnnxImportError, match="missing.onnx: cannot read"):
        import_onnx(tmp_path / "missing.onnx")


@pytest.mark.parametrize("node, words", [
    (helper.make_node("Elu", ["x"], ["y"], name="act"), r"operator Elu \(node 'act'\): this operator is not supported"),
    (helper.make_node("MaxPool", ["x"], ["y"], name="p", kernel_shape=[2, 2], dilations=[2, 2]),
     r"operator MaxPool \(node 'p', attribute 'dilations'\)"),
    (helper.make_node("Conv", ["x", "w"], ["y"], name="c", kernel_shape=[1, 1], auto_pad="WHATEVER"),
     r"operator Conv \(node 'c', attribute 'auto_pad'\)"),
    (helper.make_node("LRN", ["x"], ["y"], name="n", size=4), r"operator LRN \(node 'n', attribute 'size'\)"),
    (helper.make_node("Pad", ["x", "pads"], ["y"], name="pd", mode="reflect"),
     r"operator Pad \(node 'pd', attribute 'mode'\)"),
    (helper.make_node("Concat", ["x", "x"], ["y"], name="cc", axis=2), r"node 'cc', attribute 'axis'"),
    (helper.make_node("Softmax", ["x"], ["y"], name="sm", axis=2), r"node 'sm', attribute 'axis'"),
    (helper.make_node("AveragePool", ["x"], ["y"], name="ap", kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
     r"operator AveragePool \(node 'ap', attribute 'ceil_mode'\)"),
])
def test_unsupported_operator_or_attribute_is_named(node, words):
    inits = {"w": _w(3, 3, 1, 1), "pads": np.zeros(8, np.int64)}
    proto = _graph([node], (1, 3, 4, 4), None, inits, opset=13)
    with pytest.raises(OnnxImportError, match=words):
        import_onnx(proto)


def test_graph_shape_errors():
    two_out = _graph([helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Relu", ["x"], ["z"])], (1, 3), None)
    two_out.graph.output.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 3]))
    with pytest.raises(OnnxImportError, match="exactly one output"):
        import_onnx(two_out)
    old = _graph([helper.make_node("Relu", ["x"], ["y"])], (1, 3), [1, 3], opset=5)
    with pytest.raises(OnnxImportError, match="opset 5 is older"):
        import_onnx(old)
    dyn = _graph([helper.make_node("Relu", ["x"], ["y"])], ("N", "C"), ["N", "C"])
    with pytest.raises(OnnxImportError, match="fixed sizes"):
        import_onnx(dyn)


# ---------------------------------------------------------------- export
def _zoo_cases():
    from numbacnn.models import ZOO
    extra = {"vgg": {"width": 0.25}, "inception": {"width": 0.25}}
    return [(name, extra.get(name, {})) for name in ZOO]


def _randomize_state(model, seed=0):
    rng = np.random.default_rng(seed)
    w = model.get_weights()
    for state in w.values():
        for k, v in state.items():
            if k == "running_var" or k == "gamma":
                state[k] = rng.uniform(0.5, 1.5, v.shape).astype(np.float32)
            elif k in ("running_mean", "beta", "bias"):
                state[k] = (rng.standard_normal(v.shape) * 0.1).astype(np.float32)
    model.set_weights(w)


@pytest.mark.parametrize("name, kwargs", _zoo_cases(), ids=[n for n, _ in _zoo_cases()])
def test_zoo_model_exports_and_matches_onnxruntime(name, kwargs, tmp_path):
    from numbacnn.models import build_model
    model = build_model(name, **kwargs).build("cpu", seed=3)
    _randomize_state(model)
    x = np.random.default_rng(4).standard_normal((2,) + model.input_shape).astype(np.float32)
    ours = _run(model, x)
    path = tmp_path / f"{name}.onnx"
    proto = export_onnx(model, path)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    assert proto.opset_import[0].version == 13
    np.testing.assert_allclose(_ort_run(proto, x), ours, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(ours).max()))
    again = import_onnx(path)
    np.testing.assert_allclose(_run(again, x), ours, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(ours).max()))


def test_export_of_engine_only_layers_and_errors():
    from numbacnn.graph import Model
    from numbacnn.layers import LRN, Flatten, LeakyReLU, Pad2D, Reshape, Sigmoid, Softmax, Tanh
    m = Model.sequential("odd", (2, 5, 4), [Pad2D((1, -1, 0, 2), -0.5), LeakyReLU(0.2), Sigmoid(), Tanh(),
                                            Flatten(), Reshape((4, 5, 3)), Flatten(), Softmax()]).build("cpu")
    x = np.random.default_rng(0).standard_normal((3, 2, 5, 4)).astype(np.float32)
    np.testing.assert_allclose(_ort_run(export_onnx(m), x), _run(m, x), rtol=1e-5, atol=1e-6)
    even = Model.sequential("even", (4, 3, 3), [LRN(4)]).build("cpu")
    with pytest.raises(OnnxExportError, match="layer 'lrn_1' .*even"):
        export_onnx(even)


# ---------------------------------------------------------------- transfer learning
def replace_head(model, num_classes, head_name="head"):
    """A new model: ``model`` up to (not including) its last Dense, then Dense(num_classes); the body's
    weights copied over and frozen, so that only the new head trains."""
    from numbacnn.graph import Model
    cfg = model.to_config()
    dense = [i for i, n in enumerate(cfg["nodes"]) if n["class_name"] == "Dense"][-1]
    body = cfg["nodes"][:dense]
    cfg["nodes"] = body + [{"name": head_name, "class_name": "Dense", "config": {"units": num_classes},
                            "inputs": cfg["nodes"][dense]["inputs"]}]
    cfg["output"] = head_name
    new = Model.from_config(cfg).build(model.backend, seed=0)
    weights = model.get_weights()
    new.set_weights({n: weights[n] for n in new.layers if n in weights}, strict=False)
    new.freeze([n["name"] for n in body])
    return new


def test_transfer_learning_on_imported_alexnet():
    from numbacnn.data.builtin import make_shapes
    from numbacnn.optim import Adam
    from numbacnn.train import fit
    model = import_onnx(load_light("light_bvlc_alexnet", seed=5))
    assert model.input_shape == (3, 224, 224)
    x, y, _ = make_shapes(40, seed=1, rgb=True)                   # (40, 3, 32, 32) in [0, 1]
    x = np.ascontiguousarray(x.repeat(7, axis=2).repeat(7, axis=3))  # nearest-neighbour resize to 224x224
    new = replace_head(model, 10)
    assert [n for n, l in new.layers.items() if l.trainable] == ["head"]
    first_conv = next(n for n, l in new.layers.items() if l.params)
    body_before = new.layers[first_conv].host_state()
    history = fit(new, x, y, epochs=6, batch_size=10, optimizer=Adam(lr=1e-3), precompute_frozen=True)
    losses = [h["loss"] for h in history]
    assert losses[-1] < 0.7 * losses[0], losses
    for k, v in new.layers[first_conv].host_state().items():  # the frozen body did not move
        np.testing.assert_array_equal(v, body_before[k])
