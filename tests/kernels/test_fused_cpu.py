"""The CPU backend's own fused kernels (not the op table's compositions) give the composition's bits: batch norm
with the ReLU after it, forward and backward, in training and evaluation, (N, C, H, W) and (N, C); Add with the
ReLU.  A convolution with a batch norm folded in (inference) gives the composition's values to rounding."""
from __future__ import annotations

import numpy as np
import pytest

from numbacnn.backends import get_backend


@pytest.mark.parametrize("shape", [(4, 3, 5, 5), (7, 3), (2, 16, 9, 9)])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_with_relu_is_batch_norm_then_relu(shape, training):
    be, rng = get_backend("cpu"), np.random.default_rng(sum(shape))
    c = shape[1]
    x = (rng.standard_normal(shape) * 2 + 1).astype(np.float32)
    x.reshape(-1)[3] = np.nan if training else x.reshape(-1)[3]        # NaN passes the ReLU as relu_forward lets it
    gamma, beta = rng.standard_normal(c).astype(np.float32), rng.standard_normal(c).astype(np.float32)
    stats = [np.zeros(c, np.float32), np.ones(c, np.float32)]
    stats0 = [a.copy() for a in stats]
    assert hasattr(be.k, "fused_batch_norm_forward")     # the CPU's own kernel runs, not the composition
    y, mean, invstd = be.fused_batch_norm_forward(x, gamma, beta, *stats, training, 0.1, 1e-5, relu=True)
    y0, mean0, invstd0 = be.batch_norm_forward(x, gamma, beta, *stats0, training, 0.1, 1e-5)
    np.testing.assert_array_equal(y, be.relu_forward(y0))
    for a, b in zip([mean, invstd, *stats], [mean0, invstd0, *stats0]):
        np.testing.assert_array_equal(a, b)
    dy = rng.standard_normal(shape).astype(np.float32)
    fused = be.fused_batch_norm_backward(dy, x, gamma, mean, invstd, training, y=y)
    plain = be.batch_norm_backward(be.relu_backward(dy, be.relu_forward(y0)), x, gamma, mean0, invstd0, training)
    for a, b in zip(fused, plain):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_add_with_relu_is_add_then_relu(n):
    be, rng = get_backend("cpu"), np.random.default_rng(n)
    xs = [rng.standard_normal((2, 3, 4, 5)).astype(np.float32) for _ in range(n)]
    xs[0][0, 0, 0, 0] = np.nan
    assert hasattr(be.k, "add_relu_forward")
    y = be.add_relu_forward(xs)
    y0 = be.relu_forward(be.add_forward(xs))
    np.testing.assert_array_equal(y, y0)
    assert all(x is not y for x in xs)                   # a new array, the inputs untouched
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dxs = be.add_relu_backward(dy, y, n)
    assert len(dxs) == n
    for dx in dxs:
        np.testing.assert_array_equal(dx, be.relu_backward(dy, y0))


@pytest.mark.parametrize("mode", ["blocked", "planes"])
@pytest.mark.parametrize("groups, bias, relu", [(1, True, True), (1, False, False), (2, True, False)])
def test_conv_with_a_folded_batch_norm_is_conv_then_batch_norm(mode, groups, bias, relu, monkeypatch):
    """conv2d_forward_norm (Conv2D -> BatchNorm (-> ReLU) at inference) folds the normalisation into the weights and
    bias: the composition's values to float32 rounding, on the blocked kernels (the scale applied as the weights
    are packed) and on the phase planes (grouped convolutions, or forced)."""
    from numbacnn import config
    monkeypatch.setattr(config, "CPU_CONV", mode)
    be, rng = get_backend("cpu"), np.random.default_rng(groups)
    x = rng.standard_normal((3, 16, 9, 9)).astype(np.float32)
    w = rng.standard_normal((32, 16 // groups, 3, 3)).astype(np.float32)
    b = rng.standard_normal(32).astype(np.float32) if bias else None
    gamma, beta, mean = (rng.standard_normal(32).astype(np.float32) for _ in range(3))
    var = (rng.random(32) + 0.1).astype(np.float32)
    geo = dict(stride=(1, 1), padding=(1, 1), groups=groups)
    assert hasattr(be.k, "conv2d_forward_norm")
    y = be.conv2d_forward_norm(x, w, b, gamma, beta, mean, var, 1e-5, relu=relu, **geo)
    want = be.batch_norm_forward(be.conv2d_forward(x, w, b, **geo), gamma, beta, mean, var, False, 0.0, 1e-5)[0]
    want = be.relu_forward(want) if relu else want
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
