"""Every op of the op table (``numbacnn.ops.OPS``) against the numpy reference, through ``check_op``.

``test_op`` draws ``Case``s from the op's strategy (``strategies.CASES``) and
``test_op_edge_cases`` runs its fixed edge cases (``strategies.EDGES``): each
Case holds float32 inputs built from a seeded ``numpy.random.default_rng``,
keyword arguments and tolerances (``check.tol``; see check.py's docstring for
why).  ``check_op`` compares forward outputs, in-place updates and every
gradient.  An op is tested here by being declared in the table with a strategy;
the tests below the generic ones add what a strategy cannot say.

Run:  pytest tests/kernels/test_ops.py            (HYPOTHESIS_PROFILE=ci|thorough to change depth)
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from numbacnn.ops import OPS

from .check import ELEMENTWISE, EXACT, check_op, tol
from .strategies import (CASES, CONV_EDGE_CASES, EDGES, ConvGeom, PoolGeom, avg_pool_case, batch_norm_case,
                         conv_case, conv_geometries, max_pool_case, normal, seeds)


def test_every_op_has_a_strategy():
    assert sorted(CASES) == sorted(OPS), "every op of numbacnn.ops needs a strategy in tests/kernels/strategies.py"


@pytest.mark.parametrize("op", sorted(OPS))
@given(data=st.data())
def test_op(backend, op, data):
    case = data.draw(CASES[op](), label="case")
    check_op(backend, op, case.inputs, case.kwargs, **case.tol, seed=case.seed)


@pytest.mark.parametrize("op, i", [(op, i) for op in sorted(EDGES) for i in range(len(EDGES[op]))])
def test_op_edge_cases(backend, op, i):
    case = EDGES[op][i]
    check_op(backend, op, case.inputs, case.kwargs, **case.tol, seed=case.seed)


# ---------------------------------------------------------------- beyond the strategies
# Layer shapes of the model zoo, beyond the strategies' ranges: they reach the kernels' blocking
# and threading paths (several batch blocks per thread, long rows, many channels).
LAYER_CONVS = [
    ConvGeom(8, 16, 16, 32, 32, (3, 3), padding=(1, 1)),                    # VGG/ResNet 3x3
    ConvGeom(4, 3, 6, 28, 28, (5, 5)),                                      # LeNet-5 first layer
    ConvGeom(2, 32, 64, 16, 16, (1, 1), stride=(2, 2)),                     # ResNet projection shortcut
    ConvGeom(3, 3, 16, 33, 31, (7, 7), stride=(2, 2), padding=(3, 3)),      # ResNet stem, odd sizes
    ConvGeom(2, 32, 32, 20, 20, (3, 3), padding=(1, 1), groups=32),         # depthwise
    ConvGeom(5, 24, 12, 9, 9, (3, 3), padding=(2, 2), dilation=(2, 2), groups=4),
]


@pytest.mark.parametrize("g", LAYER_CONVS, ids=lambda g: f"{g.x_shape}-{g.w_shape}")
def test_conv2d_layer_shapes(backend, g):
    case = conv_case(g, True, 1)
    check_op(backend, "conv2d", case.inputs, case.kwargs, **case.tol)


@pytest.mark.parametrize("g", [PoolGeom(16, 16, 32, 32, (2, 2), (2, 2)), PoolGeom(4, 64, 17, 15, (3, 3), (2, 2), (1, 1)),
                               PoolGeom(2, 8, 56, 56, (3, 3), (1, 1), (1, 1))],
                         ids=lambda g: f"{g.x_shape}-{g.kernel}")
def test_pool_layer_shapes(backend, g):
    for case, op in ((max_pool_case(g, False, 2), "max_pool2d"), (avg_pool_case(g, False, 2), "avg_pool2d")):
        check_op(backend, op, case.inputs, case.kwargs, **case.tol)


@pytest.mark.parametrize("shape", [(32, 64, 8, 8), (128, 300), (3, 16, 33, 17)])
def test_batch_norm_layer_shapes(backend, shape):
    for training in (True, False):
        case = batch_norm_case(shape, training, 0.1, 1e-5, seed=3)
        out = check_op(backend, "batch_norm", case.inputs, case.kwargs, **case.tol, seed=3)
        if not training:     # running statistics normalise and stay untouched
            np.testing.assert_array_equal(out.inputs[3:], case.inputs[3:])


def test_relu_gradient_at_zero_is_zero(backend):
    """PyTorch's convention: relu'(0) = 0 (and leaky_relu'(0) = slope)."""
    x = np.array([[-1.0, 0.0, 2.0, 0.0]], dtype=np.float32)
    out = check_op(backend, "relu", [x], **EXACT)
    np.testing.assert_array_equal(out.grads[0, [1, 3]], 0.0)
    check_op(backend, "leaky_relu", [x], dict(negative_slope=0.1), **ELEMENTWISE)


def test_dropout_eval_and_p0_are_identity(backend):
    x = normal(np.random.default_rng(0), (2, 3, 4))
    for kw in (dict(p=0.5, training=False, seed=1), dict(p=0.0, training=True, seed=1)):
        out = check_op(backend, "dropout", [x], kw, **EXACT)
        np.testing.assert_array_equal(out.outputs[0], x)
        np.testing.assert_array_equal(out.outputs[1], 1)
        np.testing.assert_array_equal(out.grads, out.dy)


def test_optimizer_steps_carry_their_own_state(backend):
    """Three SGD and Adam steps from the backend's own state, each compared with one reference step."""
    rng = np.random.default_rng(4)
    shape = (3, 5)
    param, velocity = normal(rng, shape), np.zeros(shape, np.float32)
    for _ in range(3):
        param, _, velocity = check_op(backend, "sgd_update", [param, normal(rng, shape), velocity],
                                      dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3, l1=1e-4),
                                      **ELEMENTWISE).inputs
    m, v = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    for step in range(1, 4):
        param, _, m, v = check_op(backend, "adam_update", [param, normal(rng, shape), m, v],
                                  dict(step=step, lr=0.01, weight_decay=0.1, l1=1e-3), **ELEMENTWISE).inputs


# ---------------------------------------------------------------- invalid arguments
def _f32(*shape):
    return np.zeros(shape, np.float32)


INVALID = {
    # name: (call(backend), text the ValueError must contain)
    "conv bad groups": (lambda be: be.conv2d_forward(_f32(1, 4, 5, 5), _f32(6, 2, 3, 3), groups=3), "groups"),
    "conv groups vs weight": (lambda be: be.conv2d_forward(_f32(1, 4, 5, 5), _f32(4, 4, 3, 3), groups=2), "w shape"),
    "conv kernel too big": (lambda be: be.conv2d_forward(_f32(1, 1, 3, 3), _f32(1, 1, 5, 5)), "kernel"),
    "conv dilated kernel too big": (
        lambda be: be.conv2d_forward(_f32(1, 1, 5, 5), _f32(1, 1, 3, 3), dilation=3), "kernel"),
    "conv bad stride": (lambda be: be.conv2d_forward(_f32(1, 1, 5, 5), _f32(1, 1, 3, 3), stride=0), "stride"),
    "conv bad padding": (lambda be: be.conv2d_forward(_f32(1, 1, 5, 5), _f32(1, 1, 3, 3), padding=-1), "padding"),
    "conv wrong bias shape": (lambda be: be.conv2d_forward(_f32(1, 2, 5, 5), _f32(3, 2, 3, 3), _f32(2)), "b shape"),
    "conv wrong dtype": (
        lambda be: be.conv2d_forward(np.zeros((1, 1, 5, 5)), _f32(1, 1, 3, 3)), "x must be float32"),
    "conv wrong weight dtype": (
        lambda be: be.conv2d_forward(_f32(1, 1, 5, 5), np.zeros((1, 1, 3, 3), np.float16)), "w must be float32"),
    "conv x not 4-d": (lambda be: be.conv2d_forward(_f32(1, 5, 5), _f32(1, 1, 3, 3)), "x must have 4"),
    "conv mismatched dy": (
        lambda be: be.conv2d_backward(_f32(1, 1, 4, 4), _f32(1, 1, 5, 5), _f32(1, 1, 3, 3)), "dy shape"),
    "max pool kernel too big": (lambda be: be.max_pool2d_forward(_f32(1, 1, 2, 2), 3, 1, 0), "kernel"),
    "max pool padding over half the kernel": (lambda be: be.max_pool2d_forward(_f32(1, 1, 8, 8), 2, 2, 2), "padding"),
    "max pool mismatched argmax": (
        lambda be: be.max_pool2d_backward(_f32(1, 1, 2, 2), np.zeros((1, 1, 3, 2), np.int64), (1, 1, 4, 4)),
        "argmax shape"),
    "avg pool mismatched dy": (
        lambda be: be.avg_pool2d_backward(_f32(1, 1, 3, 3), (1, 1, 4, 4), 2, 2), "dy shape"),
    "global pool mismatched dy": (lambda be: be.global_avg_pool2d_backward(_f32(1, 2, 1, 1), (1, 3, 4, 4)), "dy shape"),
    "dense mismatched features": (lambda be: be.dense_forward(_f32(2, 3), _f32(4, 5)), "features"),
    "dense wrong bias shape": (lambda be: be.dense_forward(_f32(2, 3), _f32(4, 3), _f32(3)), "b shape"),
    "dense mismatched dy": (lambda be: be.dense_backward(_f32(2, 5), _f32(2, 3), _f32(4, 3)), "dy shape"),
    "relu mismatched dy": (lambda be: be.relu_backward(_f32(2, 3), _f32(3, 2)), "dy shape"),
    "relu wrong dtype": (lambda be: be.relu_forward(np.zeros(3, np.int32)), "x must be float32"),
    "softmax not 2-d": (lambda be: be.softmax_forward(_f32(2, 3, 4)), "x must have 2"),
    "cross-entropy float labels": (
        lambda be: be.softmax_cross_entropy_forward(_f32(2, 3), np.zeros(2, np.float32)), "labels must be integers"),
    "cross-entropy labels count": (
        lambda be: be.softmax_cross_entropy_forward(_f32(2, 3), np.zeros(3, np.int64)), "labels shape"),
    "argmax needs rows": (lambda be: be.argmax(_f32(6)), "x must have 2 dimensions"),
    "batch norm gamma shape": (
        lambda be: be.batch_norm_forward(_f32(2, 3), _f32(4), _f32(3), _f32(3), _f32(3)), "gamma shape"),
    "batch norm one value per channel": (
        lambda be: be.batch_norm_forward(_f32(1, 3), _f32(3), _f32(3), _f32(3), _f32(3)), "more than 1 value"),
    "batch norm 3-d": (lambda be: be.batch_norm_forward(_f32(2, 3, 4), _f32(3), _f32(3), _f32(3), _f32(3)), "x must"),
    "dropout p = 1": (lambda be: be.dropout_forward(_f32(3), p=1.0), "p must"),
    "dropout mask dtype": (lambda be: be.dropout_backward(_f32(3), np.ones(3, np.int64)), "mask must be uint8"),
    "lrn size 0": (lambda be: be.lrn_forward(_f32(1, 3, 2, 2), size=0), "size"),
    "concat mismatched": (lambda be: be.concat_forward([_f32(1, 2, 3, 3), _f32(1, 2, 4, 3)]), r"xs\[1\]"),
    "concat sizes": (lambda be: be.concat_backward(_f32(1, 5, 2, 2), [2, 2]), "sizes"),
    "add mismatched": (lambda be: be.add_forward([_f32(2, 3), _f32(3, 2)]), r"xs\[1\]"),
    "sgd mismatched velocity": (lambda be: be.sgd_update(_f32(3), _f32(3), _f32(4), 0.1), "velocity shape"),
    "adam step 0": (lambda be: be.adam_update(_f32(3), _f32(3), _f32(3), _f32(3), 0), "step"),
}


@pytest.mark.parametrize("case", list(INVALID))
def test_invalid_arguments(backend, case):
    """The public API refuses bad arguments with a ValueError naming the argument, before any kernel runs."""
    call, text = INVALID[case]
    with pytest.raises(ValueError, match=text):
        call(backend)


# The CPU backend computes all conv gradients in one fused kernel (conv2d_backward); the
# single-direction kernels stay public in numbacnn.kernels.cpu.conv2d (docs/ARCHITECTURE.md, "One op, three twins")
# and are checked here directly against their references.
@given(g=st.one_of(st.sampled_from(CONV_EDGE_CASES), conv_geometries()), seed=seeds)
def test_cpu_conv2d_single_direction_kernels(g: ConvGeom, seed):
    from numbacnn.kernels import reference as R
    from numbacnn.kernels.cpu import conv2d as K

    rng = np.random.default_rng(seed)
    x, w = normal(rng, g.x_shape), normal(rng, g.w_shape)
    dy = normal(rng, (g.n, g.k) + g.out_hw)
    args = (g.stride, g.padding, g.dilation, g.groups)
    dx = K.conv2d_backward_input(dy, w, g.x_shape, *args)
    np.testing.assert_allclose(dx, R.conv2d_backward_input_ref(dy, w, g.x_shape, *args),
                               **tol(g.input_grad_terms))
    dw = K.conv2d_backward_weight(dy, x, g.w_shape, *args)
    np.testing.assert_allclose(dw, R.conv2d_backward_weight_ref(dy, x, g.w_shape, *args),
                               **tol(g.weight_grad_terms))
    np.testing.assert_allclose(K.conv2d_backward_bias(dy), R.conv2d_backward_bias_ref(dy),
                               **tol(g.weight_grad_terms))
    fused_dx, fused_dw, _ = K.conv2d_backward(dy, x, w, *args, False)
    np.testing.assert_array_equal(fused_dx, dx)
    np.testing.assert_array_equal(fused_dw, dw)


def test_softmax_cross_entropy_backward_weight(backend):
    """The loss weight of an auxiliary output scales the gradient exactly like the reference."""
    rng = np.random.default_rng(5)
    logits, labels = normal(rng, (4, 6)), np.array([0, 5, 2, 2])
    from numbacnn.backends import get_backend
    ref = get_backend("reference")
    _, probs = ref.softmax_cross_entropy_forward(logits, labels)
    want = ref.softmax_cross_entropy_backward(probs, labels, 0.3)
    np.testing.assert_allclose(want, 0.3 * ref.softmax_cross_entropy_backward(probs, labels), rtol=1e-6)
    got = backend.to_host(backend.softmax_cross_entropy_backward(backend.asarray(probs), backend.asarray(labels,
                                                                                                      np.int64), 0.3))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)
