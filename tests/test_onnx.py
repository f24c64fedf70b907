"""ONNX import and export.

* The conformance data shipped with the onnx package (``backend/test/data``: pytorch-converted,
  pytorch-operator, simple, light; ``numbacnn.onnx.conformance``): every case either imports and
  matches its stored outputs, or is listed in ``NOT_PASSING`` with the reason and fails with ONE line
  naming the operator, node and opset.
* The classic graphs (``backend/test/data/light``; their weights are ConstantOfShape nodes, replaced
  here by seeded random initializers) match ONNX Runtime's logits, fine-tune and export back.
* Hand-built graphs for each operator's attributes and each opset's attribute/input forms,
  against ONNX Runtime (more in test_onnx_ops.py).
* Zoo models export (the opset chosen or the lowest needed), pass onnx.checker, match in ONNX Runtime
  and import back; the biggest run in benchmarks/onnx_roundtrip.py.
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
from numbacnn.onnx import conformance as CONF  # noqa: E402
from numbacnn.onnx.importer import supported_ops  # noqa: E402
from numbacnn.onnx.light import light_graph, light_model_path, round_trip  # noqa: E402


def _ort_run(proto, x):
    ort = pytest.importorskip("onnxruntime")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.log_severity_level = 3
    s = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]


def _run(model, x):
    return np.asarray(model.backend.to_host(model.forward(x)))


# ---------------------------------------------------------------- the onnx package's conformance data
_3D = "3-D convolution and pooling: the engine is 2-D"
_MULTI = "several runtime inputs (the engine's model has one)"
#: every conformance case that does not pass: (status, operator, why); every other case must pass
NOT_PASSING = {
    **{c: ("unsupported", op, _3D) for c, op in [
        ("test_AvgPool3d", "AveragePool"), ("test_AvgPool3d_stride", "AveragePool"),
        ("test_AvgPool3d_stride1_pad0_gpu_input", "AveragePool"), ("test_Conv3d", "Conv"),
        ("test_Conv3d_dilated", "Conv"), ("test_Conv3d_dilated_strided", "Conv"), ("test_Conv3d_groups", "Conv"),
        ("test_Conv3d_no_bias", "Conv"), ("test_Conv3d_stride", "Conv"), ("test_Conv3d_stride_padding", "Conv"),
        ("test_MaxPool3d", "MaxPool"), ("test_MaxPool3d_stride", "MaxPool"),
        ("test_MaxPool3d_stride_padding", "MaxPool")]},
    "test_MaxPool1d_stride_padding_dilation": ("unsupported", "MaxPool", "dilated pooling"),
    "test_MaxPool2d_stride_padding_dilation": ("unsupported", "MaxPool", "dilated pooling"),
    "test_PoissonNLLLLoss_no_reduce": ("unsupported", "Mul", "a constant spanning the batch axis (a loss target)"),
    "test_operator_params": ("unsupported", "Add", "a parameter spanning the batch axis"),
    "test_operator_index": ("unsupported", "Squeeze", "squeezes the tensor down to its batch axis"),
    "test_Embedding": ("graph", None, "an integer (index) input"),
    "test_Embedding_sparse": ("graph", None, "an integer (index) input"),
    "test_operator_non_float_params": ("graph", None, "an integer input"),
    "test_operator_addconstant": ("graph", None, "float64 data beyond float32's range"),
    **{c: ("graph", None, "no batch axis (a rank-1 input)") for c in [
        "test_operator_chunk", "test_operator_view", "test_shrink", "test_sign_model"]},
    **{c: ("graph", None, _MULTI) for c in [
        "test_operator_add_broadcast", "test_operator_add_size1_broadcast", "test_operator_add_size1_right_broadcast",
        "test_operator_add_size1_singleton_broadcast", "test_operator_addmm", "test_operator_basic",
        "test_operator_concat2", "test_operator_max", "test_operator_min", "test_operator_mm", "test_operator_pow",
        "test_operator_symbolic_override_nested", "test_gradient_of_add", "test_gradient_of_add_and_mul",
        *[f"test_expand_shape_model{i}" for i in range(1, 5)],
        *[f"test_sequence_model{i}" for i in (1, 2, 3, 4, 5, 8)]]},
    "test_sequence_model6": ("unsupported-op", "SplitToSequence", "sequences"),
    "test_sequence_model7": ("unsupported-op", "SplitToSequence", "sequences"),
    **{c: ("graph", None, "a string input") for c in [
        "test_strnorm_model_monday_casesensintive_lower", "test_strnorm_model_monday_casesensintive_nochangecase",
        "test_strnorm_model_monday_casesensintive_upper", "test_strnorm_model_monday_empty_output",
        "test_strnorm_model_monday_insensintive_upper_twodim", "test_strnorm_model_nostopwords_nochangecase"]},
}
CASES = [c for folder in CONF.FOLDERS for c in CONF.cases(folder)]


def test_conformance_data_is_there():
    assert {c.folder for c in CASES} == set(CONF.FOLDERS) and len(CASES) > 140, \
        f"expected the onnx package's test data under {CONF.data_dir()}"
    assert len({c.name for c in CASES}) == len(CASES)   # NOT_PASSING is keyed by name


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.folder}/{c.name}")
def test_conformance_case(case):
    """Every case imports and matches its stored outputs (ONNX's tolerances), or fails as NOT_PASSING says,
    with one line that names the file (and the operator, node and opset)."""
    r = CONF.run_case(case)
    expected = NOT_PASSING.get(case.name)
    if expected is None:
        assert r.status == "passed", r.message
        return
    assert (r.status, r.op) == expected[:2], r.message
    assert "\n" not in r.message and r.message.startswith(case.model) or r.message.startswith("data set")
    if r.op is not None:
        assert f"operator {r.op} (node " in r.message and ", opset " in r.message


def test_every_declared_operator_passes_its_cases():
    """Cases failing on an operator we declare supported are only those NOT_PASSING explains (an attribute
    or shape the engine has no layer for), and an unsupported operator is one outside the table."""
    supported = supported_ops()
    for name, (status, op, _why) in NOT_PASSING.items():
        assert (op in supported) == (status == "unsupported"), name
    assert "SplitToSequence" not in supported and {"Mul", "ConvTranspose", "Resize", "Transpose"} <= set(supported)


# ---------------------------------------------------------------- the classic graphs
#: the light graphs round-tripped in the test suite; AlexNet, ZFNet-512 and VGG-19 (their dense layers make
#: them slow on 2 cores) run in ``python benchmarks/onnx_roundtrip.py --light`` (all 9); all 9 run above
#: as conformance cases (their stand-in weights, onnx's input and expected output)
LIGHT_IN_CI = ["light_squeezenet", "light_shufflenet", "light_inception_v1", "light_inception_v2",
               "light_densenet121", "light_resnet50"]


@pytest.mark.parametrize("name", LIGHT_IN_CI)
def test_light_graph_round_trip(name):
    """Seeded random weights: logits match ONNX Runtime (relative 1e-4), 3 Adam steps lower the loss, the
    fine-tuned model exports and ONNX Runtime gives our outputs."""
    pytest.importorskip("onnxruntime")
    if not os.path.exists(light_model_path(name)):
        pytest.skip(f"{light_model_path(name)} is not in this onnx package")
    out = round_trip(name, steps=3, batch=2, log=lambda msg: None)
    assert out["import_rel"] <= 1e-4, out
    assert out["losses"][-1] < out["losses"][0], out
    assert out["export_rel"] <= 1e-4, out


def test_densenet_and_inception_v2_batch_norm_arithmetic_folds():
    """BatchNormalization -> Mul -> Add by per-channel constants imports as one BatchNorm, no point-wise layer."""
    for name in ("light_densenet121", "light_inception_v2"):
        types = {layer.registered_name for layer in import_onnx(light_graph(name)).layers.values()}
        assert types <= {"Conv2D", "BatchNorm", "ReLU", "MaxPool2D", "AvgPool2D", "Pad2D", "Concatenate",
                         "GlobalAvgPool2D", "Flatten", "Dense", "Softmax"}, (name, types)


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
    (helper.make_node("Einsum", ["x"], ["y"], name="es", equation="nchw->nchw"),
     r"operator Einsum \(node 'es', opset 13\): this operator is not supported$"),
    (helper.make_node("MaxPool", ["x"], ["y"], name="p", kernel_shape=[2, 2], dilations=[2, 2]),
     r"operator MaxPool \(node 'p', opset 13, attribute 'dilations'\)"),
    (helper.make_node("Conv", ["x", "w"], ["y"], name="c", kernel_shape=[1, 1], auto_pad="WHATEVER"),
     r"operator Conv \(node 'c', opset 13, attribute 'auto_pad'\)"),
    (helper.make_node("LRN", ["x"], ["y"], name="n", size=4),
     r"operator LRN \(node 'n', opset 13, attribute 'size'\)"),
    (helper.make_node("Pad", ["x", "pads"], ["y"], name="pd", mode="mirror"),
     r"operator Pad \(node 'pd', opset 13, attribute 'mode'\)"),
    (helper.make_node("Concat", ["x", "x"], ["y"], name="cc", axis=2), r"node 'cc', opset 13, attribute 'axis'"),
    (helper.make_node("Softmax", ["x"], ["y"], name="sm", axis=0), r"node 'sm', opset 13, attribute 'axis'"),
    (helper.make_node("AveragePool", ["x"], ["y"], name="ap", kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
     r"operator AveragePool \(node 'ap', opset 13, attribute 'ceil_mode'\)"),
    (helper.make_node("Transpose", ["x"], ["y"], name="tp", perm=[1, 0, 2, 3]),
     r"node 'tp', opset 13, attribute 'perm'"),
    (helper.make_node("Flatten", ["x"], ["y"], name="fl", axis=2), r"node 'fl', opset 13, attribute 'axis'.*batch"),
    (helper.make_node("Resize", ["x", "", "sc"], ["y"], name="rs", mode="cubic"),
     r"node 'rs', opset 13, attribute 'mode'"),
])
def test_unsupported_operator_or_attribute_is_named(node, words):
    inits = {"w": _w(3, 3, 1, 1), "pads": np.zeros(8, np.int64), "sc": np.asarray([1, 1, 2, 2], np.float32)}
    proto = _graph([node], (2, 3, 4, 4), [2, 3, 4, 4], inits, opset=13)
    with pytest.raises(OnnxImportError, match=words) as info:
        import_onnx(proto)
    assert "\n" not in str(info.value)


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
#: the zoo models exported in the test suite, at small inputs with 10 classes; every zoo model, at its
#: full size, runs in ``python benchmarks/onnx_roundtrip.py --zoo`` (VGG-11..19 and ResNet-34/101/152 add
#: nothing but depth and time to what these cover)
ZOO_IN_CI = ["lenet5", "alexnet", "alexnet32", "zfnet", "vgg11_bn", "vgg", "googlenet", "inception", "resnet20",
             "resnet32", "resnet44", "resnet56", "resnet110", "resnet18", "resnet50"]


def small_zoo_model(name, seed=3):
    """``name`` built with 10 classes at the smallest input it takes (64x64 for AlexNet and ZFNet, 32x32 for
    the others but LeNet-5), random batch-norm statistics."""
    from numbacnn.models import build_model
    kwargs = {"num_classes": 10}
    if name in ("alexnet", "zfnet"):
        kwargs["input_shape"] = (3, 64, 64)
    elif name != "lenet5":
        kwargs["input_shape"] = (3, 32, 32)
    model = build_model(name, **kwargs).build("cpu", seed=seed)
    _randomize_state(model)
    return model


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


@pytest.mark.parametrize("name", ZOO_IN_CI)
def test_zoo_model_exports_and_matches_onnxruntime(name, tmp_path):
    model = small_zoo_model(name)
    x = np.random.default_rng(4).standard_normal((2,) + model.input_shape).astype(np.float32)
    ours = _run(model, x)
    path = tmp_path / f"{name}.onnx"
    proto = export_onnx(model, path)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    assert proto.opset_import[0].version == 13 and len(proto.graph.output) == 1
    np.testing.assert_allclose(_ort_run(proto, x), ours, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(ours).max()))
    again = import_onnx(path)
    np.testing.assert_allclose(_run(again, x), ours, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(ours).max()))


def test_zoo_subset_is_in_the_zoo():
    from numbacnn.models import ZOO
    assert set(ZOO_IN_CI) <= set(ZOO)


def test_googlenet_exports_its_auxiliary_heads_only_when_asked():
    ort = pytest.importorskip("onnxruntime")
    model = small_zoo_model("googlenet")
    assert len(model.aux_outputs) == 2
    x = np.random.default_rng(5).standard_normal((2,) + model.input_shape).astype(np.float32)
    proto = export_onnx(model, keep_aux=True)
    assert [o.name for o in proto.graph.output] == [model.output, *model.aux_outputs]
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    theirs = sess.run(None, {"input": x})
    ours = model.forward(x, until=[model.output, *model.aux_outputs])
    for a, b in zip(theirs, ours):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(b).max()))


@pytest.mark.parametrize("opset", [13, 17, 18, 21])
def test_export_opset_is_chosen(opset):
    """An asked opset is written (ReduceMean's axes become an input from 18), an older one than a layer needs is
    refused naming the layer; the default is the lowest every layer needs (LayerNorm: 17)."""
    from numbacnn.graph import Model
    from numbacnn.layers import Conv2D, LayerNorm, Reduce
    m = Model.sequential("ops", (3, 6, 5), [Conv2D(4, 3, padding=1), Reduce("mean", (3,)), LayerNorm(-1)])
    m.build("cpu", seed=1)
    if opset < 17:
        with pytest.raises(OnnxExportError, match="layer .*LayerNorm.* needs ONNX opset 17 or later"):
            export_onnx(m, opset=opset)
        assert export_onnx(m).opset_import[0].version == 17
        return
    proto = export_onnx(m, opset=opset)
    assert proto.opset_import[0].version == opset
    x = np.random.default_rng(6).standard_normal((2, 3, 6, 5)).astype(np.float32)
    np.testing.assert_allclose(_ort_run(proto, x), _run(m, x), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(_run(import_onnx(proto), x), _run(m, x), rtol=1e-5, atol=1e-6)


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
    if not os.path.exists(light_model_path("light_bvlc_alexnet")):
        pytest.skip("light_bvlc_alexnet is not in this onnx package")
    model = import_onnx(light_graph("light_bvlc_alexnet", seed=5))
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


# ---------------------------------------------------------------- the README's operator list
def test_readme_lists_exactly_the_importers_operators():
    """The README's list is ``python -m numbacnn.onnx``'s output: the IMPORT table's keys and the folded ops."""
    import re
    import subprocess
    import sys

    from numbacnn.onnx.fold import FOLDERS
    from numbacnn.onnx.importer import supported_ops_text
    from numbacnn.onnx.mapping import IMPORT
    readme = open(os.path.join(os.path.dirname(__file__), "..", "README.md")).read()
    block = re.search(r"<!-- onnx-operators: begin -->\n(.*?)\n<!-- onnx-operators: end -->", readme, re.S).group(1)
    assert block == supported_ops_text(), "regenerate the README's list with python -m numbacnn.onnx"
    listed = set(re.findall(r"\b[A-Z][A-Za-z]+\b", block.split(":", 1)[1].replace("Evaluated at import", "")))
    listed -= {"Evaluated", "Imported"}
    assert listed == set(IMPORT) | set(FOLDERS)
    out = subprocess.run([sys.executable, "-m", "numbacnn.onnx"], capture_output=True, text=True, check=True).stdout
    assert block in out
