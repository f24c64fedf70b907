"""Bit-identical results for any thread count (issue 10, part 5): the exact-resume guarantee needs it.

Every CPU kernel splits its work into parts that do not depend on the number of threads and sums partial
results in a fixed order, so one and two threads give the same bits, forward and backward.  The shapes reach
the blocking and small-batch paths (a batch of 1 splits over channels and rows instead of images).
"""
from __future__ import annotations

import numba
import numpy as np
import pytest

from numbacnn.backends import get_backend
from numbacnn.ops import OPS

from .strategies import ConvGeom, PoolGeom, avg_pool_case, batch_norm_case, conv_case, dense_case, max_pool_case

pytestmark = pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 threads")


def forward_backward(be, op, inputs, kwargs, seed=1):
    """(outputs, gradients) of ``op`` as host arrays, from an upstream gradient seeded by ``seed``."""
    spec = OPS[op]
    ins = [a.copy() if isinstance(a, np.ndarray) else a for a in inputs]
    outs = getattr(be, spec.forward)(*ins, **kwargs)
    first = outs[0] if isinstance(outs, tuple) else outs
    dy = np.random.default_rng(seed).standard_normal(first.shape).astype(np.float32)
    args, kw = spec.grad(dy, ins, outs, kwargs)
    return outs, getattr(be, f"{op}_backward")(*args, **kw), ins


def leaves(tree):
    if isinstance(tree, (list, tuple)):
        return [x for t in tree for x in leaves(t)]
    return [tree] if isinstance(tree, np.ndarray) else []


def with_threads(n, fn):
    old = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        return fn()
    finally:
        numba.set_num_threads(old)


CONVS = [ConvGeom(1, 16, 32, 12, 12, (3, 3), padding=(1, 1)),                   # batch 1: channels and rows
         ConvGeom(3, 8, 16, 10, 9, (3, 3), stride=(2, 2), padding=(1, 1)),
         ConvGeom(5, 1, 6, 28, 28, (5, 5), padding=(2, 2)),                     # LeNet-5's first layer
         ConvGeom(4, 6, 16, 14, 14, (5, 5)),
         ConvGeom(2, 32, 16, 8, 8, (1, 1)),
         ConvGeom(1, 64, 48, 9, 9, (1, 1)),                                     # 1x1 kernels: overlapping tiles
         ConvGeom(3, 24, 36, 8, 8, (1, 1), stride=(2, 2), groups=3),            # 1x1 kernels, strided, groups
         ConvGeom(2, 12, 12, 9, 9, (3, 3), padding=(1, 1), groups=12),          # depthwise
         ConvGeom(33, 4, 4, 6, 6, (3, 3), padding=(1, 1)),                      # many image blocks
         ConvGeom(6, 16, 32, 8, 8, (3, 3), padding=(1, 1)),    # blocked: whole images on 1 thread, rows cut on 2
         ConvGeom(9, 16, 16, 7, 7, (3, 3), padding=(1, 1)),    # blocked, dw in 8 parts of images
         ConvGeom(1, 1, 6, 12, 12, (5, 5), padding=(2, 2))]    # dw tiles of kernel rows, in groups
POOLS = [PoolGeom(1, 8, 16, 16, (2, 2), (2, 2)), PoolGeom(5, 4, 9, 9, (3, 3), (2, 2), (1, 1))]


def cases():
    for g in CONVS:
        yield f"conv2d {g.x_shape} {g.w_shape} {g.kwargs}", "conv2d", conv_case(g, True, 2)
    for g in POOLS:
        yield f"max_pool2d {g.x_shape} {g.kwargs}", "max_pool2d", max_pool_case(g, False, 2)
        yield f"avg_pool2d {g.x_shape} {g.kwargs}", "avg_pool2d", avg_pool_case(g, True, 2)
    for n in (1, 7, 64):
        yield f"dense n={n}", "dense", dense_case(n, 40, 24, True, 2)
    for shape in ((1, 8, 5, 5), (6, 16, 7, 7), (300, 12)):
        yield f"batch_norm {shape}", "batch_norm", batch_norm_case(shape, True, 0.1, 1e-5, seed=2)


@pytest.mark.parametrize("what, op, case", list(cases()), ids=lambda v: v if isinstance(v, str) else "")
def test_one_and_two_threads_give_the_same_bits(what, op, case):
    be = get_backend("cpu")
    one = with_threads(1, lambda: forward_backward(be, op, case.inputs, case.kwargs))
    two = with_threads(2, lambda: forward_backward(be, op, case.inputs, case.kwargs))
    a, b = leaves(one), leaves(two)
    assert len(a) == len(b) and a
    for i, (u, v) in enumerate(zip(a, b)):
        np.testing.assert_array_equal(u, v, err_msg=f"{what}: result {i} differs between 1 and 2 threads")
