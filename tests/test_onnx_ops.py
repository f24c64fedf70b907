"""ONNX operators against ONNX Runtime, one hand-built graph per operator form (opsets 7-21).

Each graph is imported, run on a seeded input and compared with ONNX Runtime; where the import
folds or rewrites (a Mul by per-channel constants into the conv before it, Resize as Take layers),
the resulting layers are checked too.  The conformance data and the classic graphs are in
test_onnx.py; every layer's export is in test_onnx_layers.py.
"""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from numbacnn.onnx import OnnxImportError, export_onnx, import_onnx  # noqa: E402
from numbacnn.onnx.light import ort_run  # noqa: E402


def graph(nodes, x_shape, inits=(), opset=13):
    """A model of ``nodes`` from input ``x`` to output ``y`` (shapes inferred), with initializers ``inits``."""
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(np.asarray(v), k) for k, v in dict(inits).items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 7 if opset < 15 else 8
    return onnx.shape_inference.infer_shapes(m)


def check(proto, x_shape, positive=False, seed=0, rtol=1e-5, atol=1e-5):
    """Import ``proto``, compare with ONNX Runtime on a seeded input; export it back and compare again."""
    rng = np.random.default_rng(seed)
    x = (rng.uniform(0.2, 2.0, x_shape) if positive else rng.standard_normal(x_shape)).astype(np.float32)
    want = ort_run(proto, x)
    model = import_onnx(proto)
    y = np.asarray(model.forward(x))
    assert y.shape == want.shape
    np.testing.assert_allclose(y, want, rtol=rtol, atol=atol)
    np.testing.assert_allclose(ort_run(export_onnx(model), x), y, rtol=rtol, atol=atol)
    return model


def layer_types(model):
    return [layer.registered_name for layer in model.layers.values()]


def w(*shape, seed=1, scale=0.5):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


def i64(*v):
    return np.asarray(v, dtype=np.int64)


def f32(*v):
    return np.asarray(v, dtype=np.float32)


# ---------------------------------------------------------------- arithmetic
@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div", "Pow"])
@pytest.mark.parametrize("const_shape, first", [((1, 3, 1, 1), False), ((3, 1, 1), True), ((5,), False), ((), True),
                                                ((1, 4, 5), False)])
def test_arithmetic_with_a_constant(op, const_shape, first):
    c = np.random.default_rng(2).uniform(0.5, 1.5, const_shape).astype(np.float32)
    ins = ["c", "r"] if first else ["r", "c"]
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node(op, ins, ["y"])]
    proto = graph(nodes, (2, 3, 4, 5), {"c": c})
    x_pos = op == "Pow" and not first
    check(proto, (2, 3, 4, 5), positive=x_pos)


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div", "Pow"])
def test_arithmetic_between_computed_tensors_broadcasts(op):
    nodes = [helper.make_node("Sigmoid", ["x"], ["s"]),
             helper.make_node("ReduceMean", ["x"], ["m"], axes=[2], keepdims=1),
             helper.make_node(op, ["s", "m"] if op != "Pow" else ["s", "m"], ["y"])]
    check(graph(nodes, (2, 3, 4, 5)), (2, 3, 4, 5), positive=True)


def test_mul_add_by_channel_constants_fold_into_conv_and_batch_norm():
    """Conv -> Mul -> Add and BatchNormalization -> Mul(Unsqueeze) -> Add(Unsqueeze) (DenseNet's form) import as
    the conv and the batch norm alone, with their weights scaled and shifted."""
    s, t = np.linspace(0.5, 2.0, 4, dtype=np.float32), np.linspace(-1, 1, 4, dtype=np.float32)
    nodes = [helper.make_node("Conv", ["x", "cw"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Mul", ["c", "s4"], ["cm"]), helper.make_node("Add", ["t4", "cm"], ["ca"]),
             helper.make_node("BatchNormalization", ["ca", "g", "b", "m", "v"], ["bn"]),
             helper.make_node("Unsqueeze", ["s", "ax"], ["su"]), helper.make_node("Mul", ["bn", "su"], ["bm"]),
             helper.make_node("Unsqueeze", ["t", "ax"], ["tu"]), helper.make_node("Add", ["bm", "tu"], ["ba"]),
             helper.make_node("Sub", ["ba", "t4"], ["bs"]), helper.make_node("Div", ["bs", "s4"], ["y"])]
    inits = {"cw": w(4, 3, 3, 3), "s4": s.reshape(1, 4, 1, 1), "t4": t.reshape(4, 1, 1), "s": s, "t": t,
             "g": f32(1, 2, 3, 4), "b": f32(0, 1, 0, -1), "m": f32(0.1, 0, -0.1, 0), "v": f32(1, 2, 1, 0.5),
             "ax": i64(1, 2)}
    model = check(graph(nodes, (2, 3, 5, 5), inits), (2, 3, 5, 5))
    assert layer_types(model) == ["Conv2D", "BatchNorm"]


def test_constant_that_cannot_fold_is_stored():
    """A Mul after a Relu, and one whose conv output has a second consumer, keep a BinaryConst layer."""
    nodes = [helper.make_node("Conv", ["x", "cw"], ["c"], kernel_shape=[1, 1]),
             helper.make_node("Mul", ["c", "s"], ["m"]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Mul", ["r", "s"], ["r2"]), helper.make_node("Add", ["m", "r2"], ["y"])]
    model = check(graph(nodes, (2, 3, 4, 4), {"cw": w(2, 3, 1, 1), "s": w(2, 1, 1, seed=3)}), (2, 3, 4, 4))
    assert layer_types(model).count("BinaryConst") == 2


# ---------------------------------------------------------------- point-wise functions
UNARY_CASES = [
    ("Neg", {}, False), ("Abs", {}, False), ("Exp", {}, False), ("Log", {}, True), ("Sqrt", {}, True),
    ("Reciprocal", {}, True), ("Softplus", {}, False), ("Softsign", {}, False), ("Elu", {"alpha": 0.7}, False),
    ("Selu", {}, False), ("Selu", {"alpha": 1.2, "gamma": 0.9}, False), ("HardSigmoid", {}, False),
    ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}, False),
]


@pytest.mark.parametrize("op, attrs, positive", UNARY_CASES, ids=[f"{o}-{a}" for o, a, _ in UNARY_CASES])
def test_unary_operators(op, attrs, positive):
    check(graph([helper.make_node(op, ["x"], ["y"], **attrs)], (2, 3, 4)), (2, 3, 4), positive=positive)


def test_hard_swish_opset_14():
    check(graph([helper.make_node("HardSwish", ["x"], ["y"])], (2, 3, 4), opset=14), (2, 3, 4), seed=1)


@pytest.mark.parametrize("opset, attrs, inputs", [
    (6, {"min": 0.0, "max": 6.0}, []), (6, {"min": -0.5}, []), (11, {}, ["lo", "hi"]), (13, {}, ["", "hi"]),
    (13, {}, ["zero"])])
def test_clip_forms(opset, attrs, inputs):
    node = helper.make_node("Clip", ["x", *inputs], ["y"], **attrs)
    inits = {k: v for k, v in {"lo": f32(-0.3).reshape(()), "hi": f32(0.8).reshape(()),
                               "zero": f32(0).reshape(())}.items() if k in inputs}
    model = check(graph([node], (2, 3, 4), inits, opset=opset), (2, 3, 4))
    if opset == 13 and inputs == ["zero"]:
        assert layer_types(model) == ["ReLU"]


def test_prelu_per_channel():
    """(Opset 6's per-channel 1-D slope, which ONNX Runtime no longer runs, is in the conformance cases.)"""
    check(graph([helper.make_node("PRelu", ["x", "s"], ["y"])], (2, 3, 4, 4), {"s": w(3, 1, 1)}), (2, 3, 4, 4))
    check(graph([helper.make_node("PRelu", ["x", "s"], ["y"])], (2, 3, 5), {"s": w(5)}), (2, 3, 5))


def test_instance_normalization():
    node = helper.make_node("InstanceNormalization", ["x", "s", "b"], ["y"], epsilon=1e-3)
    check(graph([node], (2, 3, 4, 5), {"s": w(3), "b": w(3, seed=2)}), (2, 3, 4, 5), atol=1e-4)


# ---------------------------------------------------------------- softmax, reductions
@pytest.mark.parametrize("opset, axis", [(11, 1), (11, 2), (11, 3), (11, -1), (13, 1), (13, 2), (13, -1)])
@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
def test_softmax_axes(op, opset, axis):
    check(graph([helper.make_node(op, ["x"], ["y"], axis=axis)], (2, 3, 4, 5), opset=opset), (2, 3, 4, 5))


@pytest.mark.parametrize("op", ["ReduceMean", "ReduceSum", "ReduceMax"])
@pytest.mark.parametrize("axes, keepdims, opset", [([2, 3], 1, 13), ([1], 0, 13), ([-1, 1], 1, 18), ([2], 0, 18)])
def test_reductions(op, axes, keepdims, opset):
    as_input = opset >= 18 or op == "ReduceSum"
    node = helper.make_node(op, ["x", "axes"] if as_input else ["x"], ["y"], keepdims=keepdims,
                            **({} if as_input else {"axes": axes}))
    check(graph([node], (2, 3, 4, 5), {"axes": i64(*axes)} if as_input else {}, opset=opset), (2, 3, 4, 5),
          atol=2e-5)


def test_global_max_pool():
    check(graph([helper.make_node("GlobalMaxPool", ["x"], ["y"])], (2, 3, 5, 4)), (2, 3, 5, 4))


# ---------------------------------------------------------------- layout
def test_transpose_channel_shuffle():
    nodes = [helper.make_node("Reshape", ["x", "s5"], ["r"]), helper.make_node("Transpose", ["r"], ["t"],
                                                                              perm=[0, 2, 1, 3, 4]),
             helper.make_node("Reshape", ["t", "s4"], ["y"])]
    model = check(graph(nodes, (2, 6, 3, 3), {"s5": i64(2, 2, 3, 3, 3), "s4": i64(2, 6, 3, 3)}), (2, 6, 3, 3))
    assert "Transpose" in layer_types(model)


@pytest.mark.parametrize("opset, starts, ends, axes, steps", [
    (9, [1, 0], [3, 10], [2, 3], None), (13, [0, 1], [10, -1], [1, 3], [2, 1]), (13, [-1], [-100], [2], [-1]),
    (13, [0, 4], [2, 1], [1, 2], [1, -2])])
def test_slice_of_a_computed_tensor(opset, starts, ends, axes, steps):
    if opset < 10:
        node, inits = helper.make_node("Slice", ["x"], ["y"], starts=starts, ends=ends, axes=axes), {}
    else:
        inits = {"s": i64(*starts), "e": i64(*ends), "a": i64(*axes)}
        if steps:
            inits["st"] = i64(*steps)
        node = helper.make_node("Slice", ["x", "s", "e", "a"] + (["st"] if steps else []), ["y"])
    check(graph([node], (2, 3, 5, 6), inits, opset=opset), (2, 3, 5, 6))


@pytest.mark.parametrize("opset, axis, split", [(11, 1, [1, 2]), (13, 2, [2, 2]), (13, -1, None)])
def test_split_outputs(opset, axis, split):
    inits = {"sp": i64(*split)} if split and opset >= 13 else {}
    attrs = {"split": split} if split and opset < 13 else {}
    nodes = [helper.make_node("Split", ["x"] + (["sp"] if inits else []), ["a", "b"], axis=axis, **attrs),
             helper.make_node("Tanh", ["a"], ["ta"]), helper.make_node("Sigmoid", ["b"], ["sb"]),
             helper.make_node("Mul", ["ta", "sb"], ["y"])] if split != [1, 2] else [
             helper.make_node("Split", ["x"], ["a", "b"], axis=axis, **attrs),
             helper.make_node("ReduceSum", ["b"], ["rb"], axes=[1], keepdims=1),
             helper.make_node("Add", ["a", "rb"], ["y"])]
    check(graph(nodes, (2, 3, 4, 4), inits, opset=opset), (2, 3, 4, 4))


@pytest.mark.parametrize("indices, axis", [([2, 0, 2], 1), (1, 2), ([[0, 1], [3, 3]], 3), ([-1], -2)])
def test_gather_from_a_computed_tensor(indices, axis):
    node = helper.make_node("Gather", ["x", "i"], ["y"], axis=axis)
    check(graph([node], (2, 3, 4, 5), {"i": np.asarray(indices, np.int64)}), (2, 3, 4, 5))


def test_tile():
    check(graph([helper.make_node("Tile", ["x", "r"], ["y"])], (2, 3, 2, 3), {"r": i64(1, 2, 3, 1)}), (2, 3, 2, 3))


@pytest.mark.parametrize("mode, pads", [("reflect", [0, 0, 1, 2, 0, 0, 2, 1]), ("edge", [0, 1, 2, 0, 0, 0, 1, 3]),
                                        ("wrap", [0, 0, 1, 1, 0, 0, 2, 2]), ("constant", [0, 0, 0, 2, 0, 0, 1, -1])])
def test_pad_modes(mode, pads):
    opset = 19 if mode == "wrap" else 13
    node = helper.make_node("Pad", ["x", "p", "v"], ["y"], mode=mode)
    check(graph([node], (2, 2, 4, 5), {"p": i64(*pads), "v": f32(0.5).reshape(())}, opset=opset), (2, 2, 4, 5))


def test_pad_of_a_sequence_and_opset_2_form():
    check(graph([helper.make_node("Pad", ["x", "p"], ["y"])], (2, 3, 5), {"p": i64(0, 0, 2, 0, 0, 1)}), (2, 3, 5))
    check(graph([helper.make_node("Pad", ["x"], ["y"], mode="reflect", pads=[0, 0, 1, 1, 0, 0, 1, 1])],
                (1, 2, 3, 3), opset=9), (1, 2, 3, 3))


RESIZE_CASES = [
    ({}, [1, 1, 2, 2], None), ({"coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"},
                              [1, 1, 2, 3], None),
    ({"coordinate_transformation_mode": "align_corners", "nearest_mode": "round_prefer_ceil"}, None, [2, 3, 7, 4]),
    ({"coordinate_transformation_mode": "pytorch_half_pixel", "nearest_mode": "ceil"}, [1, 1, 0.6, 1.7], None),
    ({"coordinate_transformation_mode": "tf_half_pixel_for_nn"}, None, [2, 3, 3, 9]),
]


@pytest.mark.parametrize("attrs, scales, sizes", RESIZE_CASES, ids=[str(a) for a, _, _ in RESIZE_CASES])
def test_resize_nearest(attrs, scales, sizes):
    ins = ["x", "", "sc"] if scales else ["x", "", "", "sz"]
    inits = {"sc": f32(*scales)} if scales else {"sz": i64(*sizes)}
    model = check(graph([helper.make_node("Resize", ins, ["y"], mode="nearest", **attrs)], (2, 3, 5, 4), inits),
                  (2, 3, 5, 4))
    assert set(layer_types(model)) == {"Take"}


def test_upsample_opset_7_and_9():
    check(graph([helper.make_node("Upsample", ["x"], ["y"], scales=[1.0, 1.0, 2.0, 3.0])], (1, 2, 3, 3), opset=7),
          (1, 2, 3, 3))
    check(graph([helper.make_node("Upsample", ["x", "s"], ["y"])], (1, 2, 3, 3), {"s": f32(1, 1, 2, 2)}, opset=9),
          (1, 2, 3, 3))


def test_flatten_squeeze_unsqueeze_reshape_forms():
    nodes = [helper.make_node("Unsqueeze", ["x", "a"], ["u"]), helper.make_node("Squeeze", ["u", "a"], ["s"]),
             helper.make_node("Reshape", ["s", "t"], ["r"]), helper.make_node("Flatten", ["r"], ["y"], axis=2)]
    check(graph(nodes, (2, 3, 4), {"a": i64(2), "t": i64(0, 1, -1)}), (2, 3, 4))


# ---------------------------------------------------------------- transposed convolution
CONVT_CASES = [
    dict(strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1]), dict(strides=[2, 1], pads=[0, 1, 2, 0]),
    dict(strides=[2, 2], group=3, dilations=[2, 1]), dict(strides=[2, 2], output_shape=[9, 10]),
    dict(strides=[2, 2], auto_pad="SAME_UPPER"), dict(strides=[3, 2], auto_pad="SAME_LOWER"),
    dict(kernel_shape=[3, 3]),
]


@pytest.mark.parametrize("attrs", CONVT_CASES, ids=[str(a) for a in CONVT_CASES])
@pytest.mark.parametrize("bias", [True, False])
def test_conv_transpose(attrs, bias):
    g = attrs.get("group", 1)
    inits = {"w": w(6, 6 // g, 3, 3)}
    if bias:
        inits["b"] = w(6, seed=2)
    node = helper.make_node("ConvTranspose", ["x", "w", "b"] if bias else ["x", "w"], ["y"], **attrs)
    model = check(graph([node], (2, 6, 4, 5), inits, opset=11), (2, 6, 4, 5), atol=1e-4)
    assert layer_types(model)[0] == "ConvTranspose2D"


def test_conv_transpose_1d():
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2], pads=[1, 0], output_padding=[1])
    check(graph([node], (2, 3, 6), {"w": w(3, 2, 3)}), (2, 3, 6), atol=1e-4)


# ---------------------------------------------------------------- what is refused
@pytest.mark.parametrize("nodes, inits, words", [
    ([helper.make_node("Slice", ["x", "s", "e", "a"], ["y"], name="sl")],
     {"s": i64(0), "e": i64(1), "a": i64(0)}, r"node 'sl', opset 13\): selecting along the batch axis 0"),
    ([helper.make_node("Mul", ["x", "c"], ["y"], name="mc")], {"c": w(2, 3, 4)}, r"node 'mc'.*batch axis"),
    ([helper.make_node("ReduceMean", ["x"], ["y"], name="rm", axes=[0])], {}, r"node 'rm'.*batch axis 0"),
    ([helper.make_node("Resize", ["x", "", "s"], ["y"], name="rz", mode="linear")], {"s": f32(1, 1, 2, 2)},
     r"node 'rz', opset 13, attribute 'mode'"),
])
def test_refusals_name_the_node(nodes, inits, words):
    with pytest.raises(OnnxImportError, match=words) as info:
        import_onnx(graph(nodes, (2, 3, 4, 4) if "rz" in words else (2, 3, 4), inits))
    assert "\n" not in str(info.value)
