"""Every CUDA kernel against the numpy reference, through ``get_backend("cuda")`` and ``check_op``.

Run under Numba's CUDA simulator (no GPU needed; its own process, since the
variable must be set before numba is imported)::

    NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/cuda -q

On a machine with a GPU the same tests run on it without the variable.  The
simulator runs one Python thread per CUDA thread, so shapes are small and
hypothesis draws ``SIM_EXAMPLES`` examples per property.  Each test also checks
which kernels it launched (``KERNELS``), so a launcher that silently takes
another path (e.g. the direct instead of the tiled convolution) is noticed;
``test_cuda_coverage.py`` checks every kernel of the package is listed here.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from kernels.check import ELEMENTWISE, EXACT, check_op, tol
from kernels.strategies import (ConvGeom, PoolGeom, any_shapes, batch_norm_shapes, conv_geometries, nchw_shapes,
                                pool_geometries, seeds)
from numbacnn import config
from numbacnn.backends import cuda_available, get_backend

pytestmark = [
    pytest.mark.cudasim,
    pytest.mark.skipif(not (config.CUDASIM or cuda_available()),
                       reason="CUDA kernels need a GPU or Numba's simulator: "
                              "run NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/cuda"),
]

SIM_EXAMPLES = 8
sim = settings(max_examples=SIM_EXAMPLES)

# test -> kernels it must launch (names as defined in numbacnn.kernels.cuda)
KERNELS = {
    "conv2d": ["conv2d_forward_tiled_kernel", "conv2d_backward_input_kernel", "conv2d_backward_weight_kernel",
               "channel_sum_kernel"],
    "conv2d_direct": ["conv2d_forward_direct_kernel"],
    "max_pool2d": ["max_pool2d_forward_kernel", "max_pool2d_backward_kernel", "fill_kernel"],
    "avg_pool2d": ["avg_pool2d_forward_kernel", "avg_pool2d_backward_kernel"],
    "global_avg_pool2d": ["channel_sum_kernel", "global_avg_pool2d_backward_kernel"],
    "dense": ["dense_forward_kernel", "dense_backward_input_kernel", "dense_backward_weight_kernel",
              "channel_sum_kernel"],
    "relu": ["relu_forward_kernel", "relu_backward_kernel"],
    "sigmoid": ["sigmoid_forward_kernel", "sigmoid_backward_kernel"],
    "tanh": ["tanh_forward_kernel", "tanh_backward_kernel"],
    "leaky_relu": ["leaky_relu_forward_kernel", "leaky_relu_backward_kernel"],
    "softmax": ["softmax_forward_kernel", "softmax_backward_kernel"],
    "softmax_cross_entropy": ["softmax_cross_entropy_forward_kernel", "softmax_cross_entropy_backward_kernel"],
    "argmax": ["argmax_kernel"],
    "batch_norm_training": ["batch_norm_stats_kernel", "batch_norm_apply_kernel",
                            "batch_norm_backward_reduce_kernel", "batch_norm_backward_input_kernel"],
    "batch_norm_eval": ["batch_norm_eval_stats_kernel", "batch_norm_apply_kernel",
                        "batch_norm_backward_reduce_kernel", "batch_norm_backward_input_kernel"],
    "dropout": ["dropout_forward_kernel", "dropout_backward_kernel"],
    "dropout_eval": ["fill_kernel"],
    "lrn": ["lrn_forward_kernel", "lrn_backward_kernel"],
    "concat": ["concat_forward_kernel", "concat_backward_kernel"],
    "add": ["add_inplace_kernel"],
    "pad2d": ["pad2d_kernel"],
    "sgd_update": ["sgd_update_kernel"],
    "adam_update": ["adam_update_kernel"],
    "array_helpers": ["fill_kernel", "add_inplace_kernel"],
}


def expect_launched(launched, test):
    """Under the simulator, every kernel listed for ``test`` must have been launched."""
    if launched is not None:
        missing = set(KERNELS[test]) - launched
        assert not missing, f"{test}: kernels not launched: {sorted(missing)} (launched {sorted(launched)})"


def normal(rng, shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


# ---------------------------------------------------------------- conv2d
def _check_conv(g: ConvGeom, bias, seed):
    rng = np.random.default_rng(seed)
    x, w = normal(rng, g.x_shape), normal(rng, g.w_shape)
    b = normal(rng, (g.k,)) if bias else None
    wgrad = tol(g.weight_grad_terms)
    check_op("cuda", "conv2d", [x, w, b], g.kwargs, **tol(g.forward_terms + 1),
             grad_atol=[tol(g.input_grad_terms)["atol"], wgrad["atol"], wgrad["atol"]], grad_rtol=wgrad["rtol"],
             seed=seed)


@sim
@given(g=conv_geometries(max_batch=2, max_channels=4, max_size=7, max_kernel=3, max_stride=2, max_padding=1,
                         max_dilation=2), bias=st.booleans(), seed=seeds)
@example(g=ConvGeom(2, 2, 2, 5, 4, (3, 3), padding=(1, 1), groups=2), bias=True, seed=1)  # depthwise
@example(g=ConvGeom(2, 4, 2, 7, 6, (3, 2), stride=(2, 1), padding=(1, 1), dilation=(2, 2), groups=2),
         bias=False, seed=6)  # dilated, strided, grouped, non-square
@example(g=ConvGeom(1, 3, 2, 7, 6, (2, 1), stride=(3, 2), padding=(1, 0)), bias=True, seed=2)  # stride > kernel
def _conv2d_property(g, bias, seed):
    _check_conv(g, bias, seed)


def test_conv2d(launched):
    _conv2d_property()
    expect_launched(launched, "conv2d")


def test_conv2d_several_tiles(launched):
    """Outputs larger than one 16x16 tile, partial edge tiles, and a stride-3 7x7 kernel whose
    shared input region limits the tile height to 14."""
    _check_conv(ConvGeom(1, 2, 1, 18, 17, (3, 3), padding=(1, 1)), True, 3)
    _check_conv(ConvGeom(1, 1, 2, 52, 9, (7, 3), stride=(3, 3), padding=(2, 1)), False, 4)
    expect_launched(launched, "conv2d")


def test_conv2d_direct_path_for_kernels_wider_than_the_shared_region(launched):
    """A dilated kernel spanning 51 rows does not fit the 48-row shared region: the direct kernel runs."""
    _check_conv(ConvGeom(1, 2, 2, 52, 3, (3, 2), dilation=(25, 1)), True, 5)
    expect_launched(launched, "conv2d_direct")


# ---------------------------------------------------------------- pooling
_small_pools = pool_geometries(max_batch=2, max_channels=3, max_size=7, max_kernel=3, max_stride=2)


@sim
@given(g=_small_pools, ties=st.booleans(), seed=seeds)
@example(g=PoolGeom(1, 2, 7, 6, (3, 3), (2, 2), (1, 1)), ties=True, seed=2)  # overlapping windows, ties
def _max_pool_property(g, ties, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 3, g.x_shape).astype(np.float32) if ties else normal(rng, g.x_shape)
    check_op("cuda", "max_pool2d", [x], g.kwargs, **EXACT, grad_atol=tol(g.overlap)["atol"],
             grad_rtol=tol(g.overlap)["rtol"], seed=seed)


def test_max_pool2d(launched):
    _max_pool_property()
    expect_launched(launched, "max_pool2d")


@sim
@given(g=_small_pools, count_include_pad=st.booleans(), seed=seeds)
@example(g=PoolGeom(1, 2, 5, 6, (3, 3), (2, 1), (1, 1)), count_include_pad=False, seed=3)
def _avg_pool_property(g, count_include_pad, seed):
    x = normal(np.random.default_rng(seed), g.x_shape)
    check_op("cuda", "avg_pool2d", [x], dict(g.kwargs, count_include_pad=count_include_pad),
             **tol(g.window), grad_atol=tol(g.overlap)["atol"], seed=seed)


def test_avg_pool2d(launched):
    _avg_pool_property()
    expect_launched(launched, "avg_pool2d")


@sim
@given(shape=nchw_shapes(max_batch=2, max_channels=3, max_size=6), seed=seeds)
@example(shape=(1, 1, 1, 1), seed=0)
def _global_avg_pool_property(shape, seed):
    x = normal(np.random.default_rng(seed), shape)
    n_hw = shape[2] * shape[3]
    check_op("cuda", "global_avg_pool2d", [x], **tol(n_hw, scale=1 / n_hw), grad_atol=ELEMENTWISE["atol"],
             seed=seed)


def test_global_avg_pool2d(launched):
    _global_avg_pool_property()
    expect_launched(launched, "global_avg_pool2d")


# ---------------------------------------------------------------- dense
@sim
@given(n=st.integers(1, 5), n_in=st.integers(1, 40), n_out=st.integers(1, 20), bias=st.booleans(), seed=seeds)
@example(n=17, n_in=33, n_out=18, bias=True, seed=0)  # several tiles along every dimension, partial edges
def _dense_property(n, n_in, n_out, bias, seed):
    rng = np.random.default_rng(seed)
    x, w = normal(rng, (n, n_in)), normal(rng, (n_out, n_in))
    b = normal(rng, (n_out,)) if bias else None
    check_op("cuda", "dense", [x, w, b], **tol(n_in + 1),
             grad_atol=[tol(n_out)["atol"], tol(n)["atol"], tol(n)["atol"]], seed=seed)


def test_dense(launched):
    _dense_property()
    expect_launched(launched, "dense")


# ---------------------------------------------------------------- activations
@sim
@given(op=st.sampled_from(["relu", "sigmoid", "tanh"]), shape=any_shapes(max_dims=3, max_side=6),
       scale=st.sampled_from([1.0, 10.0, 100.0]), seed=seeds)
@example(op="relu", shape=(2, 3), scale=1.0, seed=0)
@example(op="sigmoid", shape=(5,), scale=100.0, seed=0)
@example(op="tanh", shape=(2, 2, 2), scale=10.0, seed=0)
def _activation_property(op, shape, scale, seed):
    check_op("cuda", op, [normal(np.random.default_rng(seed), shape, scale)], **ELEMENTWISE, seed=seed)


def test_activations(launched):
    _activation_property()
    for op in ("relu", "sigmoid", "tanh"):
        expect_launched(launched, op)


@sim
@given(shape=any_shapes(max_dims=3, max_side=6), slope=st.sampled_from([0.0, 0.01, 0.2, 1.5]), seed=seeds)
def _leaky_relu_property(shape, slope, seed):
    x = normal(np.random.default_rng(seed), shape)
    check_op("cuda", "leaky_relu", [x], dict(negative_slope=slope), **ELEMENTWISE, seed=seed)


def test_leaky_relu(launched):
    _leaky_relu_property()
    expect_launched(launched, "leaky_relu")


def test_relu_gradient_at_zero_is_zero(launched):
    x = np.array([[-1.0, 0.0, 2.0, 0.0]], dtype=np.float32)
    out = check_op("cuda", "relu", [x], **EXACT)
    np.testing.assert_array_equal(out.grads[0, [1, 3]], 0.0)
    expect_launched(launched, "relu")


@sim
@given(n=st.integers(1, 4), k=st.integers(1, 40), scale=st.sampled_from([1.0, 30.0]), seed=seeds)
def _softmax_property(n, k, scale, seed):
    check_op("cuda", "softmax", [normal(np.random.default_rng(seed), (n, k), scale)], **tol(k), seed=seed)


def test_softmax(launched):
    _softmax_property()
    expect_launched(launched, "softmax")


@sim
@given(n=st.integers(1, 4), k=st.integers(1, 40), scale=st.sampled_from([1.0, 30.0, 1e4]),
       int32=st.booleans(), seed=seeds)
@example(n=3, k=10, scale=1e4, int32=False, seed=0)
@example(n=4, k=5, scale=1.0, int32=True, seed=1)
def _softmax_cross_entropy_property(n, k, scale, int32, seed):
    rng = np.random.default_rng(seed)
    logits = normal(rng, (n, k), scale)
    labels = rng.integers(0, k, n).astype(np.int32 if int32 else np.int64)
    out = check_op("cuda", "softmax_cross_entropy", [logits, labels], **tol(k), seed=seed)
    assert isinstance(out.outputs[0], float) and np.isfinite(out.outputs[0]) and np.all(np.isfinite(out.grads))


def test_softmax_cross_entropy(launched):
    _softmax_cross_entropy_property()
    expect_launched(launched, "softmax_cross_entropy")


@sim
@given(n=st.integers(1, 5), k=st.integers(1, 12), ties=st.booleans(), nan=st.booleans(), seed=seeds)
@example(n=3, k=4, ties=True, nan=True, seed=0)
def _argmax_property(n, k, ties, nan, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 3, (n, k)).astype(np.float32) if ties else normal(rng, (n, k))
    if nan:
        x[rng.integers(0, n), rng.integers(0, k)] = np.nan
    check_op("cuda", "argmax", [x], **EXACT)


def test_argmax(launched):
    _argmax_property()
    expect_launched(launched, "argmax")


# ---------------------------------------------------------------- batch norm
def _bn_check(shape, training, momentum, eps, seed):
    rng = np.random.default_rng(seed)
    c = shape[1]
    inputs = [normal(rng, shape), normal(rng, (c,)), normal(rng, (c,)), normal(rng, (c,)),
              rng.uniform(0.5, 2.0, c).astype(np.float32)]
    x = inputs[0].astype(np.float64)
    m = x.size // c
    var = x.var(axis=(0, 2, 3) if x.ndim == 4 else (0,)) if training else inputs[4].astype(np.float64)
    cond = float(np.max(1 / np.sqrt(var + eps)))
    t = tol(m, scale=max(cond, 1.0))
    out = check_op("cuda", "batch_norm", inputs, dict(training=training, momentum=momentum, eps=eps),
                   **t, grad_atol=t["atol"] * max(cond, 1.0), seed=seed)
    if not training:
        np.testing.assert_array_equal(out.inputs[3:], inputs[3:])


_bn_shapes_train = batch_norm_shapes(training=True).filter(lambda s: int(np.prod(s)) <= 200)
_bn_shapes_eval = batch_norm_shapes(training=False).filter(lambda s: int(np.prod(s)) <= 200)


@sim
@given(shape=_bn_shapes_train, momentum=st.sampled_from([0.0, 0.1, 1.0]), eps=st.sampled_from([1e-5, 1e-3]),
       seed=seeds)
@example(shape=(2, 3), momentum=0.1, eps=1e-5, seed=0)
@example(shape=(1, 2, 1, 2), momentum=0.1, eps=1e-5, seed=0)
def _bn_training_property(shape, momentum, eps, seed):
    _bn_check(shape, True, momentum, eps, seed)


def test_batch_norm_training(launched):
    _bn_training_property()
    expect_launched(launched, "batch_norm_training")


@sim
@given(shape=_bn_shapes_eval, eps=st.sampled_from([1e-5, 1e-3]), seed=seeds)
@example(shape=(1, 3), eps=1e-5, seed=0)
def _bn_eval_property(shape, eps, seed):
    _bn_check(shape, False, 0.1, eps, seed)


def test_batch_norm_eval(launched):
    _bn_eval_property()
    expect_launched(launched, "batch_norm_eval")


# ---------------------------------------------------------------- dropout
@sim
@given(shape=any_shapes(max_dims=3, max_side=6), p=st.sampled_from([0.1, 0.5, 0.9]), seed=seeds)
@example(shape=(3, 5, 7), p=0.5, seed=2**32 - 1)
def _dropout_property(shape, p, seed):
    x = normal(np.random.default_rng(seed), shape)
    check_op("cuda", "dropout", [x], dict(p=p, training=True, seed=seed), **ELEMENTWISE, seed=seed)


def test_dropout_mask_is_bit_identical_to_the_reference(launched):
    _dropout_property()
    expect_launched(launched, "dropout")


def test_dropout_eval_and_p0_are_identity(launched):
    x = normal(np.random.default_rng(0), (2, 3, 4))
    for kw in (dict(p=0.5, training=False, seed=1), dict(p=0.0, training=True, seed=1)):
        out = check_op("cuda", "dropout", [x], kw, **EXACT)
        np.testing.assert_array_equal(out.outputs[0], x)
        np.testing.assert_array_equal(out.outputs[1], 1)
        np.testing.assert_array_equal(out.grads, out.dy)
    expect_launched(launched, "dropout_eval")


# ---------------------------------------------------------------- LRN
@sim
@given(shape=nchw_shapes(max_batch=2, max_channels=6, max_size=3), size=st.integers(1, 7),
       alpha=st.sampled_from([1e-4, 1e-2, 1.0]), beta=st.sampled_from([0.5, 0.75, 1.0]),
       k=st.sampled_from([1.0, 2.0]), seed=seeds)
@example(shape=(2, 6, 2, 2), size=5, alpha=1e-4, beta=0.75, k=1.0, seed=0)
def _lrn_property(shape, size, alpha, beta, k, seed):
    x = normal(np.random.default_rng(seed), shape)
    check_op("cuda", "lrn", [x], dict(size=size, alpha=alpha, beta=beta, k=k), **tol(size), seed=seed)


def test_lrn(launched):
    _lrn_property()
    expect_launched(launched, "lrn")


# ---------------------------------------------------------------- merge
@sim
@given(n=st.integers(1, 3), channels=st.lists(st.integers(1, 4), min_size=1, max_size=3),
       hw=st.tuples(st.integers(1, 4), st.integers(1, 4)), seed=seeds)
def _concat_property(n, channels, hw, seed):
    rng = np.random.default_rng(seed)
    check_op("cuda", "concat", [[normal(rng, (n, c) + hw) for c in channels]], **EXACT, seed=seed)


def test_concat(launched):
    _concat_property()
    expect_launched(launched, "concat")


@sim
@given(shape=any_shapes(max_dims=3, max_side=6), count=st.integers(2, 4), seed=seeds)
def _add_property(shape, count, seed):
    rng = np.random.default_rng(seed)
    check_op("cuda", "add", [[normal(rng, shape) for _ in range(count)]], **tol(count), seed=seed)


def test_add(launched):
    _add_property()
    expect_launched(launched, "add")


# ---------------------------------------------------------------- pad
@sim
@given(shape=nchw_shapes(max_batch=2, max_channels=2, max_size=5), pads=st.tuples(*[st.integers(-2, 2)] * 4),
       value=st.sampled_from([0.0, -1.5, -np.inf]), seed=seeds)
@example(shape=(1, 2, 3, 4), pads=(1, -1, -2, 2), value=-np.inf, seed=0)
def _pad2d_property(shape, pads, value, seed):
    t, b, l, r = pads
    assume(min(t, b) >= -shape[2] and min(l, r) >= -shape[3] and shape[2] + t + b >= 1 and shape[3] + l + r >= 1)
    x = normal(np.random.default_rng(seed), shape)
    check_op("cuda", "pad2d", [x], dict(pads=pads, value=value), **EXACT, seed=seed)


def test_pad2d(launched):
    _pad2d_property()
    expect_launched(launched, "pad2d")


# ---------------------------------------------------------------- optimizers
def _params(rng, shape):
    p = normal(rng, shape)
    p.reshape(-1)[::7] = 0.0  # sign(0) = 0 for the L1 term
    return p


@sim
@given(shape=any_shapes(max_dims=3, max_side=6), lr=st.sampled_from([0.01, 0.5]),
       momentum=st.sampled_from([0.0, 0.9]), nesterov=st.booleans(),
       weight_decay=st.sampled_from([0.0, 5e-4, 0.1]), l1=st.sampled_from([0.0, 1e-3]), seed=seeds)
def _sgd_property(shape, lr, momentum, nesterov, weight_decay, l1, seed):
    rng = np.random.default_rng(seed)
    param, velocity = _params(rng, shape), np.zeros(shape, np.float32)
    kw = dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay, l1=l1)
    for _ in range(3):
        param, _, velocity = check_op("cuda", "sgd_update", [param, normal(rng, shape), velocity], kw,
                                      **ELEMENTWISE).inputs


def test_sgd_update(launched):
    _sgd_property()
    expect_launched(launched, "sgd_update")


@sim
@given(shape=any_shapes(max_dims=3, max_side=6), lr=st.sampled_from([1e-3, 0.1]),
       betas=st.sampled_from([(0.9, 0.999), (0.5, 0.9)]), eps=st.sampled_from([1e-8, 1e-3]),
       weight_decay=st.sampled_from([0.0, 0.1]), l1=st.sampled_from([0.0, 1e-3]),
       first_step=st.sampled_from([1, 1000]), seed=seeds)
def _adam_property(shape, lr, betas, eps, weight_decay, l1, first_step, seed):
    rng = np.random.default_rng(seed)
    param, m, v = _params(rng, shape), np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    kw = dict(lr=lr, beta1=betas[0], beta2=betas[1], eps=eps, weight_decay=weight_decay, l1=l1)
    for step in range(first_step, first_step + 3):
        param, _, m, v = check_op("cuda", "adam_update", [param, normal(rng, shape), m, v],
                                  dict(kw, step=step), **ELEMENTWISE).inputs


def test_adam_update(launched):
    _adam_property()
    expect_launched(launched, "adam_update")


# ---------------------------------------------------------------- array helpers
def test_array_helpers(launched):
    """asarray/to_host round trip, zeros of any dtype, copy independence, add_inplace as numpy's +=."""
    be = get_backend("cuda")
    rng = np.random.default_rng(0)
    a, b = normal(rng, (2, 3, 4)), normal(rng, (2, 3, 4))
    da = be.asarray(a)
    assert be.asarray(da) is da                      # a device array of the right dtype passes as-is
    assert be.asarray(a.astype(np.float64)).dtype == np.float32
    np.testing.assert_array_equal(be.to_host(da), a)
    for dtype in (np.float32, np.uint8, np.int64):
        z = be.zeros((3, 5), dtype)
        assert z.dtype == dtype and z.shape == (3, 5)
        np.testing.assert_array_equal(be.to_host(z), 0)
    dc = be.copy(da)
    out = be.add_inplace(da, be.asarray(b))
    assert out is da
    be.synchronize()
    np.testing.assert_array_equal(be.to_host(da), a + b)   # one float32 add per element: exact
    np.testing.assert_array_equal(be.to_host(dc), a)       # the copy did not follow
    with pytest.raises(ValueError, match="shape"):
        be.add_inplace(da, be.asarray(b[:1]))
    expect_launched(launched, "array_helpers")
