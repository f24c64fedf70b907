"""Every op and direction of the backend API against the numpy reference, through ``check_op``.

Each test draws a geometry (``strategies.py``) and a data seed, builds float32
inputs with ``numpy.random.default_rng(seed)`` and hands them to ``check_op``,
which compares forward outputs, in-place updates and every gradient.
Tolerances come from ``check.tol`` (see check.py's docstring for why).

Run:  pytest tests/kernels/test_ops.py            (HYPOTHESIS_PROFILE=ci|thorough to change depth)
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from .check import ELEMENTWISE, EXACT, check_op, tol
from .strategies import (CONV_EDGE_CASES, POOL_EDGE_CASES, ConvGeom, PoolGeom, any_shapes, batch_norm_shapes,
                         conv_geometries, nchw_shapes, pool_geometries, seeds)


def normal(rng, shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def with_examples(name, cases, **fixed):
    """Decorator adding one hypothesis @example per edge case (argument ``name``)."""
    def deco(fn):
        for case in reversed(cases):
            fn = example(**{name: case}, **fixed)(fn)
        return fn
    return deco


# ---------------------------------------------------------------- conv2d
@given(g=conv_geometries(), bias=st.booleans(), seed=seeds)
@with_examples("g", CONV_EDGE_CASES, bias=True, seed=1)
def test_conv2d(backend, g: ConvGeom, bias, seed):
    rng = np.random.default_rng(seed)
    x, w = normal(rng, g.x_shape), normal(rng, g.w_shape)
    b = normal(rng, (g.k,)) if bias else None
    wgrad = tol(g.weight_grad_terms)
    check_op(backend, "conv2d", [x, w, b], g.kwargs, **tol(g.forward_terms + 1),
             grad_atol=[tol(g.input_grad_terms)["atol"], wgrad["atol"], wgrad["atol"]], grad_rtol=wgrad["rtol"],
             seed=seed)


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
    rng = np.random.default_rng(1)
    x, w, b = normal(rng, g.x_shape), normal(rng, g.w_shape), normal(rng, (g.k,))
    wgrad = tol(g.weight_grad_terms)
    check_op(backend, "conv2d", [x, w, b], g.kwargs, **tol(g.forward_terms + 1),
             grad_atol=[tol(g.input_grad_terms)["atol"], wgrad["atol"], wgrad["atol"]])


@pytest.mark.parametrize("g", [PoolGeom(16, 16, 32, 32, (2, 2), (2, 2)), PoolGeom(4, 64, 17, 15, (3, 3), (2, 2), (1, 1)),
                               PoolGeom(2, 8, 56, 56, (3, 3), (1, 1), (1, 1))],
                         ids=lambda g: f"{g.x_shape}-{g.kernel}")
def test_pool_layer_shapes(backend, g):
    x = normal(np.random.default_rng(2), g.x_shape)
    check_op(backend, "max_pool2d", [x], g.kwargs, **EXACT, grad_atol=tol(g.overlap)["atol"])
    check_op(backend, "avg_pool2d", [x], dict(g.kwargs, count_include_pad=False), **tol(g.window),
             grad_atol=tol(g.overlap)["atol"])


@pytest.mark.parametrize("shape", [(32, 64, 8, 8), (128, 300), (3, 16, 33, 17)])
def test_batch_norm_layer_shapes(backend, shape):
    for training in (True, False):
        _bn_check(backend, shape, training, 0.1, 1e-5, seed=3)


# ---------------------------------------------------------------- pooling
@given(g=pool_geometries(), seed=seeds)
@with_examples("g", POOL_EDGE_CASES, seed=2)
def test_max_pool2d(backend, g: PoolGeom, seed):
    x = normal(np.random.default_rng(seed), g.x_shape)
    # the max is a choice, not a sum: values and argmax are exact; dx sums `overlap` terms
    check_op(backend, "max_pool2d", [x], g.kwargs, **EXACT, grad_atol=tol(g.overlap)["atol"],
             grad_rtol=tol(g.overlap)["rtol"], seed=seed)


@given(g=pool_geometries(max_size=8), seed=seeds)
def test_max_pool2d_ties_go_to_the_first_cell(backend, g: PoolGeom, seed):
    """Many equal values (integers 0..2): argmax must pick the first cell in row-major order."""
    x = np.random.default_rng(seed).integers(0, 3, g.x_shape).astype(np.float32)
    check_op(backend, "max_pool2d", [x], g.kwargs, **EXACT, grad_atol=tol(g.overlap)["atol"], seed=seed)


@given(g=pool_geometries(), count_include_pad=st.booleans(), seed=seeds)
@with_examples("g", POOL_EDGE_CASES, count_include_pad=False, seed=3)
def test_avg_pool2d(backend, g: PoolGeom, count_include_pad, seed):
    x = normal(np.random.default_rng(seed), g.x_shape)
    # forward: `window` terms each divided by at least 1 cell; dx: `overlap` terms of dy / divisor
    check_op(backend, "avg_pool2d", [x], dict(g.kwargs, count_include_pad=count_include_pad),
             **tol(g.window), grad_atol=tol(g.overlap)["atol"], seed=seed)


@given(shape=nchw_shapes(), seed=seeds)
@example(shape=(1, 1, 1, 1), seed=0)
def test_global_avg_pool2d(backend, shape, seed):
    x = normal(np.random.default_rng(seed), shape)
    n_hw = shape[2] * shape[3]
    check_op(backend, "global_avg_pool2d", [x], **tol(n_hw, scale=1 / n_hw), grad_atol=ELEMENTWISE["atol"],
             seed=seed)


# ---------------------------------------------------------------- dense
@given(n=st.integers(1, 8), n_in=st.integers(1, 300), n_out=st.integers(1, 40), bias=st.booleans(), seed=seeds)
@example(n=1, n_in=1, n_out=1, bias=True, seed=0)
def test_dense(backend, n, n_in, n_out, bias, seed):
    rng = np.random.default_rng(seed)
    x, w = normal(rng, (n, n_in)), normal(rng, (n_out, n_in))
    b = normal(rng, (n_out,)) if bias else None
    check_op(backend, "dense", [x, w, b], **tol(n_in + 1),
             grad_atol=[tol(n_out)["atol"], tol(n)["atol"], tol(n)["atol"]], seed=seed)


# ---------------------------------------------------------------- activations
@pytest.mark.parametrize("op", ["relu", "sigmoid", "tanh"])
@given(shape=any_shapes(), scale=st.sampled_from([1.0, 10.0, 100.0]), seed=seeds)
def test_activation(backend, op, shape, scale, seed):
    """Large scales push sigmoid and tanh into saturation (y rounds to 0 or 1)."""
    check_op(backend, op, [normal(np.random.default_rng(seed), shape, scale)], **ELEMENTWISE, seed=seed)


@given(shape=any_shapes(), slope=st.sampled_from([0.0, 0.01, 0.2, 1.5]), seed=seeds)
def test_leaky_relu(backend, shape, slope, seed):
    x = normal(np.random.default_rng(seed), shape)
    check_op(backend, "leaky_relu", [x], dict(negative_slope=slope), **ELEMENTWISE, seed=seed)


def test_relu_gradient_at_zero_is_zero(backend):
    """PyTorch's convention: relu'(0) = 0 (and leaky_relu'(0) = slope)."""
    x = np.array([[-1.0, 0.0, 2.0, 0.0]], dtype=np.float32)
    out = check_op(backend, "relu", [x], **EXACT)
    np.testing.assert_array_equal(out.grads[0, [1, 3]], 0.0)
    check_op(backend, "leaky_relu", [x], dict(negative_slope=0.1), **ELEMENTWISE)


@given(n=st.integers(1, 6), k=st.integers(1, 40), scale=st.sampled_from([1.0, 30.0]), seed=seeds)
def test_softmax(backend, n, k, scale, seed):
    x = normal(np.random.default_rng(seed), (n, k), scale)
    check_op(backend, "softmax", [x], **tol(k), seed=seed)


@given(n=st.integers(1, 6), k=st.integers(1, 40), scale=st.sampled_from([1.0, 30.0, 1e4]), seed=seeds)
@example(n=3, k=10, scale=1e4, seed=0)
def test_softmax_cross_entropy(backend, n, k, scale, seed):
    """Logits of magnitude 1e4 must neither overflow nor lose the loss (float32 ulp there is 1e-3)."""
    rng = np.random.default_rng(seed)
    logits, labels = normal(rng, (n, k), scale), rng.integers(0, k, n)
    out = check_op(backend, "softmax_cross_entropy", [logits, labels], **tol(k), seed=seed)
    assert np.isfinite(out.outputs[0]) and np.all(np.isfinite(out.grads))


def test_softmax_cross_entropy_int32_labels(backend):
    logits = normal(np.random.default_rng(0), (4, 5))
    check_op(backend, "softmax_cross_entropy", [logits, np.array([0, 4, 2, 2], dtype=np.int32)], **tol(5))


@given(n=st.integers(1, 40), k=st.integers(1, 12), ties=st.booleans(), nan=st.booleans(), seed=seeds)
@example(n=3, k=4, ties=True, nan=True, seed=0)
def test_argmax(backend, n, k, ties, nan, seed):
    """np.argmax's rules: the first maximum on ties, the first NaN when a row holds one."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 3, (n, k)).astype(np.float32) if ties else normal(rng, (n, k))
    if nan:
        x[rng.integers(0, n), rng.integers(0, k)] = np.nan
    check_op(backend, "argmax", [x], **EXACT)


# ---------------------------------------------------------------- batch norm
def _bn_inputs(rng, shape):
    c = shape[1]
    return [normal(rng, shape), normal(rng, (c,)), normal(rng, (c,)), normal(rng, (c,)),
            rng.uniform(0.5, 2.0, c).astype(np.float32)]


def _bn_check(backend, shape, training, momentum, eps, seed):
    rng = np.random.default_rng(seed)
    inputs = _bn_inputs(rng, shape)
    x = inputs[0].astype(np.float64)
    axes = (0, 2, 3) if x.ndim == 4 else (0,)
    m = x.size // x.shape[1]
    var = x.var(axis=axes) if training else inputs[4].astype(np.float64)
    cond = float(np.max(1 / np.sqrt(var + eps)))  # invstd scales every rounding error of x - mean
    t = tol(m, scale=max(cond, 1.0))
    return check_op(backend, "batch_norm", inputs, dict(training=training, momentum=momentum, eps=eps),
                    **t, grad_atol=t["atol"] * max(cond, 1.0), seed=seed)


@given(shape=batch_norm_shapes(training=True), momentum=st.sampled_from([0.0, 0.1, 1.0]),
       eps=st.sampled_from([1e-5, 1e-3]), seed=seeds)
@example(shape=(2, 3), momentum=0.1, eps=1e-5, seed=0)
@example(shape=(1, 2, 1, 2), momentum=0.1, eps=1e-5, seed=0)
def test_batch_norm_training(backend, shape, momentum, eps, seed):
    """Batch statistics, running mean/var updated in place (unbiased variance), all three gradients."""
    _bn_check(backend, shape, True, momentum, eps, seed)


@given(shape=batch_norm_shapes(training=False), eps=st.sampled_from([1e-5, 1e-3]), seed=seeds)
@example(shape=(1, 3), eps=1e-5, seed=0)
def test_batch_norm_eval(backend, shape, eps, seed):
    """Running statistics normalise and stay untouched; dx ignores the batch statistics."""
    out = _bn_check(backend, shape, False, 0.1, eps, seed)
    np.testing.assert_array_equal(out.inputs[3:], _bn_inputs(np.random.default_rng(seed), shape)[3:])


# ---------------------------------------------------------------- dropout
@given(shape=any_shapes(), p=st.sampled_from([0.0, 0.1, 0.5, 0.9]), training=st.booleans(), seed=seeds)
@example(shape=(3, 5, 7), p=0.5, training=True, seed=2**32 - 1)
def test_dropout(backend, shape, p, training, seed):
    """The mask is a pure function of (seed, index): identical to the reference, bit for bit."""
    x = normal(np.random.default_rng(seed), shape)
    out = check_op(backend, "dropout", [x], dict(p=p, training=training, seed=seed), **ELEMENTWISE, seed=seed)
    if not training or p == 0.0:
        np.testing.assert_array_equal(out.outputs[0], x)
        np.testing.assert_array_equal(out.outputs[1], 1)
        np.testing.assert_array_equal(out.grads, out.dy)


# ---------------------------------------------------------------- LRN
@given(shape=nchw_shapes(max_size=8), size=st.integers(1, 7), alpha=st.sampled_from([1e-4, 1e-2, 1.0]),
       beta=st.sampled_from([0.5, 0.75, 1.0]), k=st.sampled_from([1.0, 2.0]), seed=seeds)
@example(shape=(2, 8, 3, 3), size=5, alpha=1e-4, beta=0.75, k=1.0, seed=0)
@example(shape=(1, 3, 2, 2), size=6, alpha=1.0, beta=0.75, k=1.0, seed=0)
def test_lrn(backend, shape, size, alpha, beta, k, seed):
    x = normal(np.random.default_rng(seed), shape)
    check_op(backend, "lrn", [x], dict(size=size, alpha=alpha, beta=beta, k=k), **tol(size), seed=seed)


# ---------------------------------------------------------------- merge
@given(n=st.integers(1, 4), channels=st.lists(st.integers(1, 5), min_size=1, max_size=4),
       hw=st.tuples(st.integers(1, 8), st.integers(1, 8)), seed=seeds)
def test_concat(backend, n, channels, hw, seed):
    rng = np.random.default_rng(seed)
    xs = [normal(rng, (n, c) + hw) for c in channels]
    check_op(backend, "concat", [xs], **EXACT, seed=seed)


@given(shape=any_shapes(), count=st.integers(1, 5), seed=seeds)
def test_add(backend, shape, count, seed):
    rng = np.random.default_rng(seed)
    xs = [normal(rng, shape) for _ in range(count)]
    check_op(backend, "add", [xs], **tol(count), seed=seed)


@given(shape=nchw_shapes(max_size=8), pads=st.tuples(*[st.integers(-3, 3)] * 4),
       value=st.sampled_from([0.0, -np.inf]), seed=seeds)
def test_pad2d(backend, shape, pads, value, seed):
    """Padding (negative pads crop) only moves values: exact."""
    t, b, l, r = pads
    assume(min(t, b) >= -shape[2] and min(l, r) >= -shape[3] and shape[2] + t + b >= 1 and shape[3] + l + r >= 1)
    x = normal(np.random.default_rng(seed), shape)
    check_op(backend, "pad2d", [x], dict(pads=pads, value=value), **EXACT, seed=seed)


# ---------------------------------------------------------------- optimizers
def _params(rng, shape):
    """Normal values with exact zeros sprinkled in (sign(0) = 0 for the L1 term)."""
    p = normal(rng, shape)
    p.reshape(-1)[::7] = 0.0
    return p


@given(shape=any_shapes(max_dims=4, max_side=9), lr=st.sampled_from([0.01, 0.5]),
       momentum=st.sampled_from([0.0, 0.9]), nesterov=st.booleans(),
       weight_decay=st.sampled_from([0.0, 5e-4, 0.1]), l1=st.sampled_from([0.0, 1e-3]), seed=seeds)
def test_sgd_update(backend, shape, lr, momentum, nesterov, weight_decay, l1, seed):
    """Three steps from the backend's own state, each compared with one reference step."""
    rng = np.random.default_rng(seed)
    param, velocity = _params(rng, shape), np.zeros(shape, np.float32)
    kw = dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay, l1=l1)
    for _ in range(3):
        param, _, velocity = check_op(backend, "sgd_update", [param, normal(rng, shape), velocity], kw,
                                      **ELEMENTWISE).inputs


@given(shape=any_shapes(max_dims=4, max_side=9), lr=st.sampled_from([1e-3, 0.1]),
       betas=st.sampled_from([(0.9, 0.999), (0.5, 0.9)]), eps=st.sampled_from([1e-8, 1e-3]),
       weight_decay=st.sampled_from([0.0, 0.1]), l1=st.sampled_from([0.0, 1e-3]),
       first_step=st.sampled_from([1, 1000]), seed=seeds)
def test_adam_update(backend, shape, lr, betas, eps, weight_decay, l1, first_step, seed):
    rng = np.random.default_rng(seed)
    param, m, v = _params(rng, shape), np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    kw = dict(lr=lr, beta1=betas[0], beta2=betas[1], eps=eps, weight_decay=weight_decay, l1=l1)
    for step in range(first_step, first_step + 3):
        param, _, m, v = check_op(backend, "adam_update", [param, normal(rng, shape), m, v],
                                  dict(kw, step=step), **ELEMENTWISE).inputs


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
@given(g=conv_geometries(), seed=seeds)
@with_examples("g", CONV_EDGE_CASES, seed=1)
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
