"""The CPU backend's own fused kernels (not the op table's compositions) give the composition's bits: batch norm
with the ReLU after it, forward and backward, in training and evaluation, (N, C, H, W) and (N, C)."""
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
