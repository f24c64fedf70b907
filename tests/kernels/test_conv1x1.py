"""The 1x1 convolution kernels (numbacnn/kernels/cpu/conv1x1.py): pixels in the lanes, NCHW kept.

* Parity with the reference over drawn 1x1 geometries (strides, groups, pixel counts on and off multiples of V,
  a last tile that overlaps the one before it) for V = 8 and V = 16 whatever the host, forward and backward
  (dx on these kernels, dw on the others).
* Where they run (``conv1x1.chosen``) and what the fused forms give: the ReLU and a folded batch norm applied to
  the tile, dx added to a gradient and masked by a ReLU (``conv2d_backward_add``), bit for bit against the
  plain ops.
* The hot loop of each body in its assembly: TK x TPV full-width FMAs, TPV vector loads, TK broadcasts, no
  spill.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from numbacnn import config
from numbacnn.backends import get_backend
from numbacnn.kernels.cpu import blocked, conv1x1
from numbacnn.kernels.cpu import conv2d as cpu_conv
from numbacnn.kernels.cpu.asm import describe, hot_loop

from .check import check_op
from .strategies import ConvGeom, conv_case


@pytest.fixture(params=[8, 16], ids=["V8", "V16"])
def width(request, monkeypatch):
    """The vector width forced, the automatic choice of kernels on."""
    monkeypatch.setattr(config, "CPU_CONV", "auto")
    old = blocked.set_vector_width(request.param)
    yield request.param
    blocked.set_vector_width(old)


@st.composite
def pointwise_geometries(draw):
    """1x1 convolutions: batches of 1 to 3 (all on these kernels), strides 1 and 2, groups 1 to 4, channels
    on and off multiples of the tile, images whose pixels fill whole vectors or not."""
    groups = draw(st.sampled_from([1, 1, 2, 3, 4]))
    c = groups * draw(st.sampled_from([2, 3, 5, 16, 33, 64]))
    k = groups * draw(st.sampled_from([2, 5, 9, 14, 17, 29, 64]))
    s = draw(st.sampled_from([1, 1, 2]))
    h, w = draw(st.integers(1, 17)), draw(st.integers(1, 17))
    return ConvGeom(draw(st.sampled_from([1, 2, 3])), c, k, h, w, (1, 1), stride=(s, s), groups=groups)


@given(g=pointwise_geometries())
@example(g=ConvGeom(1, 64, 29, 7, 7, (1, 1)))                      # 49 pixels: the last tile overlaps
@example(g=ConvGeom(2, 33, 64, 16, 16, (1, 1), stride=(2, 2)))     # strided: a copy of the pixels first
@example(g=ConvGeom(3, 12, 18, 5, 9, (1, 1), groups=3))            # groups in one parallel region
@example(g=ConvGeom(1, 2, 2, 4, 4, (1, 1)))                        # one vector of pixels, two channels
def test_forward_and_backward_match_the_reference_on_both_widths(width, g):
    case = conv_case(g, bias=True, seed=g.c + g.k)
    check_op("cpu", "conv2d", case.inputs, case.kwargs, **case.tol)


def test_where_they_run():
    """1x1 kernels without padding with a vector of output pixels; chosen over the blocked kernels where those do
    not pay, for one or two images, and where the pixels fill whole vectors."""
    assert conv1x1.applies(1, 1, (0, 0), 1, 64, 32, 4, 4, (1, 1), 16)
    assert not conv1x1.applies(3, 3, (0, 0), 1, 64, 32, 8, 8, (1, 1), 16)
    assert not conv1x1.applies(1, 1, (1, 1), 1, 64, 32, 8, 8, (1, 1), 16)
    assert not conv1x1.applies(1, 1, (0, 0), 1, 64, 32, 3, 3, (1, 1), 16)          # 9 pixels < a vector
    assert not conv1x1.applies(1, 1, (0, 0), 64, 64, 64, 8, 8, (1, 1), 16)          # depthwise
    assert conv1x1.chosen(16, 64, 32, 14, 14, (1, 1), 1, 16, False)
    assert conv1x1.chosen(1, 1024, 256, 14, 14, (1, 1), 1, 16, True)
    assert conv1x1.chosen(16, 256, 64, 56, 56, (1, 1), 1, 16, True)
    assert not conv1x1.chosen(16, 1024, 256, 14, 14, (1, 1), 1, 16, True)


@pytest.mark.parametrize("shape, stride, groups", [((1, 64, 7, 7), 1, 1), ((3, 24, 8, 8), 2, 3)])
def test_relu_and_folded_norm_are_applied_to_the_tile(shape, stride, groups):
    """conv2d_forward_fused's ReLU is relu(conv) bit for bit; conv2d_forward_norm (a batch norm folded in:
    scale and bias applied to the tile) is batch_norm(conv) within rounding."""
    be, rng = get_backend("cpu"), np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal((48, shape[1] // groups, 1, 1)).astype(np.float32)
    b = rng.standard_normal(48).astype(np.float32)
    geo = dict(stride=(stride, stride), groups=groups)
    assert cpu_conv._pointwise(x.shape, w.shape, (stride, stride), (0, 0), groups)
    y = be.conv2d_forward(x, w, b, **geo)
    np.testing.assert_array_equal(be.conv2d_forward_fused(x, w, b, relu=True, **geo)[0], be.relu_forward(y))
    gamma, beta, mean = (rng.standard_normal(48).astype(np.float32) for _ in range(3))
    var = rng.uniform(0.5, 2, 48).astype(np.float32)
    got = cpu_conv.conv2d_forward_norm(x, w, b, gamma, beta, mean, var, 1e-5, (stride, stride), (0, 0), (1, 1),
                                       groups, True)
    want = np.maximum(gamma[:, None, None] * (y - mean[:, None, None]) / np.sqrt(var[:, None, None] + 1e-5)
                      + beta[:, None, None], 0)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("stride", [1, 2])
def test_backward_add_is_the_backward_then_add_then_relu_mask(stride):
    """dx of a 1x1 added to the gradient summed so far and masked by a ReLU in the kernels' own pass: the bits of
    conv2d_backward, add_forward and relu_backward in turn; tasks own the outputs of overlapping tiles once."""
    be, rng = get_backend("cpu"), np.random.default_rng(stride)
    x = np.maximum(rng.standard_normal((2, 40, 9, 9)), 0).astype(np.float32)
    w = rng.standard_normal((30, 40, 1, 1)).astype(np.float32)
    geo = ((stride, stride), (0, 0), (1, 1), 1)
    dy = rng.standard_normal(be.conv2d_forward(x, w, None, *geo).shape).astype(np.float32)
    base = rng.standard_normal(x.shape).astype(np.float32)
    dx, dw, db = be.conv2d_backward(dy, x, w, *geo, True)
    for relu in (False, True):
        got = be.conv2d_backward_add(dy, x, w, base, *geo, True, relu=relu)
        want = be.add_forward([base, dx])
        want = be.relu_backward(want, x) if relu else want
        for a, b in zip(got, (want, dw, db)):
            np.testing.assert_array_equal(a, b)


def test_read_only_inputs_are_taken():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 32, 8, 8)).astype(np.float32)
    w = rng.standard_normal((20, 32, 1, 1)).astype(np.float32)
    y = conv1x1.forward(x, w, None, (1, 1))
    for a in (x, w):
        a.flags.writeable = False
    np.testing.assert_array_equal(conv1x1.forward(x, w, None, (1, 1)), y)


#: (V, TK, TPV): every tile the plans can choose for AVX-512 (32 registers) and AVX2 (16)
BODIES = [(16, 28, 1), (16, 14, 2), (16, 9, 3), (16, 6, 4), (8, 14, 1), (8, 6, 2), (8, 4, 3), (8, 2, 4)]


def test_the_plans_choose_among_the_tested_tiles():
    for V, regs in ((16, 32), (8, 16)):
        assert [(V, tk, t) for t, tk in conv1x1._tiles(V, regs)] == [b for b in BODIES if b[0] == V]


@pytest.mark.parametrize("V, TK, TPV", BODIES)
def test_the_hot_loop_is_full_width_fma_without_spills(V, TK, TPV):
    body = conv1x1.make_forward_body(V, TK, TPV)
    m = hot_loop(body.inspect_asm(body.signatures[0]))
    what = f"1x1 body {(V, TK, TPV)}: {describe(m)}"
    unroll = m["fma"] // (TK * TPV)
    assert unroll >= 1 and m["fma"] == unroll * TK * TPV, what
    assert m["fma_width"] == V and m["stack"] == 0, what
    assert m["vector_loads"] == unroll * TPV, what                                  # the pixel vectors of x
    assert m["broadcasts"] + m["fma_memory_operand"] >= unroll * TK, what          # a weight per output
    assert m["broadcasts"] <= unroll * TK, what
