"""Every op of the op table on the CUDA backend against the numpy reference, through ``check_op``.

Run under Numba's CUDA simulator (no GPU needed; its own process, since the
variable must be set before numba is imported)::

    NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/cuda -q

On a machine with a GPU the same tests run on it without the variable.  The
cases come from the same strategies as the CPU kernel tests
(``tests/kernels/strategies.py``, ``small=True``: the simulator runs one Python
thread per CUDA thread) plus the op's fixed edge cases.  Each op's test also
checks that every ``@cuda.jit`` kernel the op declares (``Op.cuda`` in
``numbacnn/ops.py``) was launched, so a launcher that silently takes another
path is noticed; ``test_cuda_coverage.py`` checks every kernel of the package
is declared by some op.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.check import EXACT, check_op
from kernels.strategies import CASES, EDGES, fused_batch_norm_case, normal
from numbacnn import config
from numbacnn.backends import cuda_available, get_backend
from numbacnn.ops import OPS

pytestmark = [
    pytest.mark.cudasim,
    pytest.mark.skipif(not (config.CUDASIM or cuda_available()),
                       reason="CUDA kernels need a GPU or Numba's simulator: "
                              "run NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/cuda"),
]

SIM_EXAMPLES = 8


def expect_launched(launched, kernels, what):
    """Under the simulator, every kernel in ``kernels`` must have been launched."""
    if launched is not None:
        missing = set(kernels) - launched
        assert not missing, f"{what}: kernels not launched: {sorted(missing)} (launched {sorted(launched)})"


@pytest.mark.parametrize("op", sorted(OPS))
def test_op(op, launched):
    @settings(max_examples=SIM_EXAMPLES)
    @given(data=st.data())
    def prop(data):
        case = data.draw(CASES[op](small=True), label="case")
        check_op("cuda", op, case.inputs, case.kwargs, **case.tol, seed=case.seed)

    prop()
    for case in EDGES.get(op, []):
        check_op("cuda", op, case.inputs, case.kwargs, **case.tol, seed=case.seed)
    expect_launched(launched, OPS[op].cuda, op)


def test_relu_gradient_at_zero_is_zero():
    x = np.array([[-1.0, 0.0, 2.0, 0.0]], dtype=np.float32)
    out = check_op("cuda", "relu", [x], **EXACT)
    np.testing.assert_array_equal(out.grads[0, [1, 3]], 0.0)


def test_dropout_eval_and_p0_are_identity(launched):
    x = normal(np.random.default_rng(0), (2, 3, 4))
    for kw in (dict(p=0.5, training=False, seed=1), dict(p=0.0, training=True, seed=1)):
        out = check_op("cuda", "dropout", [x], kw, **EXACT)
        np.testing.assert_array_equal(out.outputs[0], x)
        np.testing.assert_array_equal(out.outputs[1], 1)
        np.testing.assert_array_equal(out.grads, out.dy)
    expect_launched(launched, ["fill_kernel"], "dropout in evaluation")


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
    expect_launched(launched, ["fill_kernel", "add_inplace_kernel"], "array helpers")


def test_softmax_cross_entropy_backward_weight():
    rng = np.random.default_rng(5)
    probs = rng.dirichlet(np.ones(6), 4).astype(np.float32)
    labels = np.array([0, 5, 2, 2])
    be, ref = get_backend("cuda"), get_backend("reference")
    got = be.to_host(be.softmax_cross_entropy_backward(be.asarray(probs), be.asarray(labels, np.int64), 0.3))
    np.testing.assert_allclose(got, ref.softmax_cross_entropy_backward(probs, labels, 0.3), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_multi_tensor_updates_match_one_update_per_parameter(opt, launched):
    """``*_update_many`` over 19 parameters of mixed sizes (two launches of 16 tensor slots, empty ones
    among them) equals the reference's update of each parameter on its own."""
    be, ref = get_backend("cuda"), get_backend("reference")
    rng = np.random.default_rng(3)
    shapes = [(3,), (2, 5), (1,), (4, 1, 3, 3), (0,)] * 3 + [(7,), (1, 2), (130,), (2, 2)]
    host = [[normal(rng, s) for s in shapes] for _ in range(4)]
    host[3] = [np.abs(a) for a in host[3]]          # Adam's second moments are >= 0
    dev = [[be.asarray(a) for a in group] for group in host]
    if opt == "sgd":
        kw = dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-2, l1=1e-3)
        be.sgd_update_many(*dev[:3], **kw)
        ref.sgd_update_many(*host[:3], **kw)
        out = 3
    else:
        kw = dict(lr=0.01, weight_decay=1e-2, l1=1e-3)
        be.adam_update_many(*dev, 3, **kw)
        ref.adam_update_many(*host, 3, **kw)
        out = 4
    for g in range(out):
        for got, want in zip(dev[g], host[g]):
            np.testing.assert_allclose(be.to_host(got), want, rtol=1e-5, atol=1e-6)
    expect_launched(launched, [f"{opt}_update_kernel"], f"{opt}_update_many")


def test_conv_weight_gradient_is_the_same_every_run():
    """The split-K weight gradient sums its chunks in a fixed order (no float atomics): bit for bit the same
    on every launch, and the tile counters are left at zero for the next one."""
    from numbacnn.kernels.cuda import conv2d as k

    be = get_backend("cuda")
    rng = np.random.default_rng(7)
    x, dy = be.asarray(normal(rng, (2, 8, 9, 7))), be.asarray(normal(rng, (2, 34, 5, 7)))
    args = (dy, x, (34, 4, 3, 3), (2, 1), (1, 1), (1, 1), 2)
    assert k._chunks(2 * 5 * 7, 4)[1] == 2                      # two chunks: the last block sums them
    first, second = be.to_host(k.conv2d_backward_weight(*args)), be.to_host(k.conv2d_backward_weight(*args))
    np.testing.assert_array_equal(first, second)
    assert all(not be.to_host(c).any() for c in k._COUNTERS.values())


@pytest.mark.parametrize("shape, with_stats, training", [((5, 2, 29), True, True), ((5, 2, 29), False, True),
                                                         ((145, 3), False, True), ((5, 2, 29), False, False)])
def test_batch_norm_over_slices_of_channels(shape, with_stats, training, monkeypatch, launched):
    """Several (slice, channel) blocks per channel, the last slice short: the two-stage reductions (each
    block of a channel combining the same parts, one block writing the running estimates) match the reference,
    with and without parts given, with the ReLU fused, and (N, C) inputs."""
    from numbacnn.kernels.cuda import norm

    monkeypatch.setattr(norm, "BN_PER_THREAD", 1)
    assert norm._bn_grid(5 * 29, 2)[1:] == (5, 29)               # 5 slices of 29 values, 32 threads
    case = fused_batch_norm_case(shape[:2] + (1, shape[2]) if len(shape) == 3 else shape, training,
                                 with_stats=with_stats, seed=11)
    check_op("cuda", "fused_batch_norm", case.inputs, case.kwargs, **case.tol, seed=case.seed)
    check_op("cuda", "batch_norm", case.inputs, {k: case.kwargs[k] for k in ("training", "momentum", "eps")},
             **case.tol, seed=case.seed)
    expect_launched(launched, ["batch_norm_apply_kernel", "batch_norm_backward_input_kernel"], "batch norm")


@pytest.mark.parametrize("stride, groups", [((1, 1), 1), ((2, 1), 2)])
def test_conv_gemm_epilogues(stride, groups, launched):
    """The implicit-GEMM kernels' epilogues: forward with the bias, the fused ReLU and the per-tile channel
    statistics (two pixel tiles, the last one short, and a channel tile only partly used: the parts combine to
    y's mean and variance); backward to the input added to a given gradient (``conv2d_backward_add``), and
    masked where x <= 0."""
    from numbacnn.kernels import reference as ref
    be, rng = get_backend("cuda"), np.random.default_rng(5)
    x, w, b = normal(rng, (2, 4, 7, 6)), normal(rng, (40, 4 // groups, 3, 3)), normal(rng, (40,))
    geo = dict(stride=stride, padding=(1, 1), dilation=(1, 1), groups=groups)
    want = ref.conv2d_forward_ref(x, w, b, **geo)
    for relu in (False, True):
        y, stats = be.conv2d_forward_fused(be.asarray(x), be.asarray(w), be.asarray(b), **geo, relu=relu,
                                           stats=True)
        expect = np.maximum(want, 0) if relu else want
        np.testing.assert_allclose(be.to_host(y), expect, rtol=1e-5, atol=1e-5)
        assert stats.shape == (3, 40, 2 if stride == (1, 1) else 1)     # 84 pixels in tiles of 64; 48 in one
        count, mean, m2 = be.to_host(stats).astype(np.float64)
        values = np.moveaxis(expect, 1, 0).reshape(40, -1)
        assert (count.sum(axis=1) == values.shape[1]).all()
        mu = (count * mean).sum(axis=1) / values.shape[1]
        var = (m2 + count * (mean - mu[:, None]) ** 2).sum(axis=1) / values.shape[1]
        np.testing.assert_allclose(mu, values.mean(axis=1), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(var, values.var(axis=1), rtol=1e-4, atol=1e-5)
    dy, base = normal(rng, want.shape), normal(rng, x.shape)
    dx, dw, db = be.conv2d_backward_add(be.asarray(dy), be.asarray(x), be.asarray(w), be.asarray(base), **geo)
    np.testing.assert_allclose(be.to_host(dx), base + ref.conv2d_backward_input_ref(dy, w, x.shape, **geo),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(be.to_host(dw), ref.conv2d_backward_weight_ref(dy, x, w.shape, **geo), rtol=1e-4,
                               atol=1e-4)
    np.testing.assert_allclose(be.to_host(db), dy.sum(axis=(0, 2, 3)), rtol=1e-5, atol=1e-5)
    # x the output of a ReLU whose gradient the sum completes: that ReLU's backward in the same epilogue
    masked = be.conv2d_backward_add(be.asarray(dy), be.asarray(x), be.asarray(w), be.asarray(base), **geo,
                                    relu=True)[0]
    np.testing.assert_array_equal(be.to_host(masked), np.where(x > 0, be.to_host(dx), 0))
    expect_launched(launched, ["conv2d_forward_gemm_kernel", "conv2d_backward_input_gemm_kernel"], "conv gemm")
