"""The channel-blocked convolution kernels (numbacnn/kernels/cpu/blocked.py) on both vector widths.

* Parity with the reference over drawn geometries for V = 8 and V = 16 whatever the host (the width is
  forced; a 16-lane vector is two registers on an AVX2 host), with channel counts on and off multiples of V.
* The backward on the same kernels: dx as a forward convolution of dy with the flipped weights, dw on the
  weight-gradient bodies; ``conv2d_backward_add`` (dx added to a gradient, a ReLU's mask) gives the composition's
  bits on either path.
* The hot loop of each micro-kernel, read from its assembly: full-width FMAs (zmm for 16 lanes, ymm for 8),
  one weight-vector load per channel block and one broadcast per pixel of the tile, nothing on the stack; the
  weight gradient's: one output-gradient vector per pixel, every broadcast folded into its FMA or one apiece.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from numbacnn import config
from numbacnn.kernels.cpu import blocked
from numbacnn.kernels.cpu.asm import describe, hot_loop

from .check import check_op
from .strategies import ConvGeom, _pair, conv_case


@pytest.fixture(params=[8, 16], ids=["V8", "V16"])
def width(request, monkeypatch):
    """The vector width forced, and conv2d_forward made to run the blocked kernels wherever they apply."""
    monkeypatch.setattr(config, "CPU_CONV", "blocked")
    old = blocked.set_vector_width(request.param)
    yield request.param
    blocked.set_vector_width(old)


def test_the_blocked_kernels_run_where_their_conversions_pay():
    """auto: C -> K channels with a KH x KW kernel go blocked when C*KH*KW*K >= MIN_INTENSITY * (C + K) (20)."""
    assert blocked.chosen(1, 6, 5, 5, 1)                # LeNet-5's first layer: 150 / 7
    assert not blocked.chosen(64, 16, 1, 1, 1)          # 1x1: 1024 / 80
    assert not blocked.chosen(2, 4, 3, 3, 1)            # 72 / 6
    assert blocked.chosen(16, 16, 3, 3, 1)              # ResNet-20's first stage: 2304 / 32
    assert blocked.chosen(6, 16, 5, 5, 1)               # LeNet-5's second: 2400 / 22
    assert blocked.chosen(64, 64, 3, 3, 1) and blocked.chosen(3, 64, 11, 11, 1)
    assert not blocked.chosen(64, 64, 3, 3, 64)         # grouped: the phase planes
    assert blocked.chosen(1, 6, 5, 5, 1, "blocked") and not blocked.chosen(64, 64, 3, 3, 1, "planes")


@st.composite
def blocked_geometries(draw):
    """Convolutions the blocked kernels take: channels on and off multiples of 8 and 16, groups 1, or 2 and 3
    with two or more channels a group each way (a group at a time)."""
    n = draw(st.sampled_from([1, 2, 3, 9]))             # 9: whole images a task, dw in 8 parts
    groups = draw(st.sampled_from([1, 1, 1, 2, 3]))
    c = groups * draw(st.sampled_from([1, 2, 3, 5, 8, 16, 24, 32] if groups == 1 else [2, 3, 8, 16]))
    k = groups * draw(st.sampled_from([1, 4, 6, 8, 9, 16, 17, 32, 48] if groups == 1 else [2, 4, 6, 17]))
    kernel, stride, dilation = draw(_pair(1, 5)), draw(_pair(1, 3)), draw(_pair(1, 2))
    padding = draw(_pair(0, 2))
    lo = [max(1, d * (q - 1) + 1 - 2 * p) for q, d, p in zip(kernel, dilation, padding)]
    h, w = draw(st.integers(lo[0], 12)), draw(st.integers(lo[1], 20))
    return ConvGeom(n, c, k, h, w, kernel, stride, padding, dilation, groups)


@given(g=blocked_geometries())
@example(g=ConvGeom(2, 16, 32, 9, 9, (3, 3), padding=(1, 1)))                     # IL = V, two blocks per tile
@example(g=ConvGeom(1, 3, 17, 15, 30, (5, 5), stride=(2, 2), padding=(2, 2)))      # RGB, a tail block, stride 2
@example(g=ConvGeom(3, 32, 16, 4, 4, (1, 1)))                                      # 1x1, one output block
@example(g=ConvGeom(9, 8, 17, 6, 7, (3, 3), padding=(1, 1)))                        # a batch, a tail block
@example(g=ConvGeom(2, 1, 6, 12, 12, (5, 5), padding=(2, 2)))                       # dw tiles of kernel rows
@example(g=ConvGeom(2, 6, 10, 9, 9, (5, 5), padding=(2, 2), groups=2))              # AlexNet's groups
def test_forward_and_backward_match_the_reference_on_both_widths(width, g):
    """check_op runs the backward too: dx on the blocked kernels for stride 1 (the phase planes otherwise), dw on
    the weight-gradient bodies (a grouped convolution's backward: the phase planes)."""
    group = (g.n, g.c // g.groups, g.h, g.w), (g.k // g.groups,) + tuple(g.w_shape[1:])
    assert blocked.forward_plan(*group, g.stride, g.padding, g.dilation, 1, width, 32) is not None
    case = conv_case(g, bias=True, seed=g.n + g.c)
    check_op("cpu", "conv2d", case.inputs, case.kwargs, **case.tol)


def test_grouped_convolutions_run_a_group_at_a_time_except_depthwise():
    """A group of two or more channels each way is a convolution of its own on the blocked kernels (forward; the
    backward stays on the phase planes); a depthwise one (one channel a group) is left to the phase planes."""
    assert blocked.forward_plan((2, 8, 9, 9), (8, 1, 3, 3), (1, 1), (1, 1), (1, 1), 8, 16, 32) is None
    assert blocked.chosen(96, 256, 5, 5, 2) and not blocked.chosen(64, 64, 3, 3, 64)
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((2, 8, 9, 9)).astype(np.float32), rng.standard_normal((8, 1, 3, 3)).astype(np.float32)
    assert blocked.conv2d_forward(x, w, None, (1, 1), (1, 1), (1, 1), 8) is None


def test_relu_is_applied_to_the_tile():
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 16, 7, 7)).astype(np.float32), rng.standard_normal((32, 16, 3, 3)).astype(np.float32)
    b = rng.standard_normal(32).astype(np.float32)
    geo = ((1, 1), (1, 1), (1, 1), 1)
    y = blocked.conv2d_forward(x, w, b, *geo)
    np.testing.assert_array_equal(blocked.conv2d_forward(x, w, b, *geo, relu=True), np.where(y < 0, 0, y))


@pytest.mark.parametrize("mode", ["blocked", "planes"])
def test_the_fused_forward_is_the_forward_then_the_relu_kernel(mode, monkeypatch):
    """The CPU backend's conv2d_forward_fused (the graph's Conv2D + ReLU) gives relu_forward(conv2d_forward) bit for
    bit on both paths, NaN passing through as the ReLU kernel lets it, and no statistics."""
    from numbacnn.backends import get_backend

    monkeypatch.setattr(config, "CPU_CONV", mode)
    be, rng = get_backend("cpu"), np.random.default_rng(1)
    x, w = rng.standard_normal((2, 16, 9, 8)).astype(np.float32), rng.standard_normal((32, 16, 3, 3)).astype(np.float32)
    x[0, 3, 4, 4] = np.nan
    b = rng.standard_normal(32).astype(np.float32)
    geo = dict(stride=(2, 1), padding=(1, 1))
    y, stats = be.conv2d_forward_fused(x, w, b, relu=True, **geo)
    want = be.relu_forward(be.conv2d_forward(x, w, b, **geo))
    assert stats is None and np.isnan(want).any() and (want == 0).any()
    np.testing.assert_array_equal(y, want)
    np.testing.assert_array_equal(be.conv2d_forward_fused(x, w, b, **geo)[0], be.conv2d_forward(x, w, b, **geo))


#: (V, IL, column stride, TW, OCB): the tiles the plans choose for AVX-512 (32 registers) and AVX2 (16)
BODIES = [(16, 16, 1, 14, 2), (16, 1, 1, 14, 2), (16, 16, 2, 8, 2), (16, 3, 4, 14, 2), (16, 16, 1, 28, 1),
          (16, 6, 1, 10, 1), (8, 8, 1, 14, 2), (8, 8, 1, 6, 2), (8, 1, 2, 14, 1), (8, 3, 1, 14, 1)]


def _hot_loop(body, V, fmas, label):
    """(the mix of ``body``'s hot loop, how many times the loop holds the tile's ``fmas`` FMAs, a message),
    checked for what every body must show: whole tiles, every FMA on zmm (16 lanes) or ymm (8), no spill or
    reload in the loop."""
    m = hot_loop(body.inspect_asm(body.signatures[0]))
    unroll, what = m["fma"] // fmas, f"{label}: {describe(m)}"
    assert unroll >= 1 and m["fma"] == unroll * fmas, what
    assert m["fma_width"] == V and m["stack"] == 0, what
    return m, unroll, what


@pytest.mark.parametrize("V, IL, SW, TW, OCB", BODIES)
def test_the_hot_loop_is_full_width_fma_without_spills(V, IL, SW, TW, OCB):
    m, unroll, what = _hot_loop(blocked.make_forward_body(V, IL, SW, TW, OCB), V, TW * OCB,
                                f"forward body {(V, IL, SW, TW, OCB)}")
    assert m["vector_loads"] == unroll * OCB, what          # one weight vector per channel block
    assert m["broadcasts"] + m["fma_memory_operand"] == unroll * TW, what   # one input value per pixel
    assert m["instructions"] - m["fma"] - m["vector_loads"] - m["broadcasts"] <= 8, what   # addresses, the branch


#: (V, IL, KW, TC, ROWS): the weight-gradient tiles the plans choose for AVX-512 (32 registers) and AVX2 (16)
WEIGHT_BODIES = [(16, 16, 3, 8, False), (16, 1, 5, 6, False), (16, 16, 1, 16, False), (8, 8, 3, 4, False),
                 (8, 1, 5, 2, False), (8, 1, 5, 5, True)]


@pytest.mark.parametrize("V, IL, KW, TC, ROWS", WEIGHT_BODIES)
def test_the_weight_gradient_hot_loop_is_one_vector_load_and_full_width_fma(V, IL, KW, TC, ROWS):
    m, unroll, what = _hot_loop(blocked.make_weight_body(V, IL, KW, TC, ROWS), V, KW * TC,
                                f"weight body {(V, IL, KW, TC, ROWS)}")
    assert m["vector_loads"] + (m["fma"] - m["fma_memory_operand"] - m["broadcasts"]) <= unroll * (1 + 1), what
    assert m["broadcasts"] + m["fma_memory_operand"] >= unroll * KW * TC - unroll, what   # an input value per FMA


@pytest.mark.parametrize("mode", ["blocked", "planes"])
@pytest.mark.parametrize("stride", [1, 2])
def test_backward_add_is_the_backward_then_add_then_relu_mask(mode, stride, monkeypatch):
    """conv2d_backward_add (the graph's gradient sum for a convolution's input, and the ReLU before it) gives the
    bits of conv2d_backward, add_forward and relu_backward in turn: dx summed in the blocked kernels' unpacking
    pass (stride 1) or in one pass after the phase planes."""
    from numbacnn.backends import get_backend
    monkeypatch.setattr(config, "CPU_CONV", mode)
    be, rng = get_backend("cpu"), np.random.default_rng(stride)
    x = np.maximum(rng.standard_normal((3, 32, 9, 9)), 0).astype(np.float32)
    w = rng.standard_normal((32, 32, 3, 3)).astype(np.float32)
    geo = ((stride, stride), (1, 1), (1, 1), 1)
    dy = rng.standard_normal(be.conv2d_forward(x, w, None, *geo).shape).astype(np.float32)
    base = rng.standard_normal(x.shape).astype(np.float32)
    assert hasattr(be.k, "conv2d_backward_add")          # the CPU's own kernel runs, not the composition
    dx, dw, db = be.conv2d_backward(dy, x, w, *geo, True)
    for relu in (False, True):
        got = be.conv2d_backward_add(dy, x, w, base, *geo, True, relu=relu)
        want = be.add_forward([base, dx])
        want = be.relu_backward(want, x) if relu else want
        for a, b in zip(got, (want, dw, db)):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("stride", [1, 2])
def test_each_gradient_alone_is_the_one_of_the_whole_backward(width, stride):
    """conv2d_backward_input (no x), conv2d_backward_weight (no w) and conv2d_backward_params (a model's first
    layer) on the blocked kernels give conv2d_backward's bits."""
    from numbacnn.backends import get_backend
    be, rng = get_backend("cpu"), np.random.default_rng(stride)
    x = rng.standard_normal((9, 16, 8, 8)).astype(np.float32)
    w = rng.standard_normal((24, 16, 3, 3)).astype(np.float32)
    geo = ((stride, stride), (1, 1), (1, 1), 1)
    dy = rng.standard_normal(be.conv2d_forward(x, w, None, *geo).shape).astype(np.float32)
    dx, dw, db = be.conv2d_backward(dy, x, w, *geo, True)
    np.testing.assert_array_equal(be.k.conv2d_backward_input(dy, w, x.shape, *geo), dx)
    np.testing.assert_array_equal(be.k.conv2d_backward_weight(dy, x, w.shape, *geo), dw)
    for a, b in zip(be.conv2d_backward_params(dy, x, w, *geo, True), (dw, db)):
        np.testing.assert_array_equal(a, b)


def test_layout_conversions_are_counted(width):
    """CONVERSIONS counts the tensors moved into the blocked layout and back: a forward moves x in and y out,
    a backward dy in and dx out (the input gradient) and x and dy in again (the weight gradient)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 16, 6, 6)).astype(np.float32)
    w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    geo = ((1, 1), (1, 1), (1, 1), 1)
    blocked.CONVERSIONS.clear()
    y = blocked.conv2d_forward(x, w, None, *geo)
    assert dict(blocked.CONVERSIONS) == {"in": 1, "in bytes": x.nbytes, "out": 1, "out bytes": y.nbytes}
    blocked.CONVERSIONS.clear()
    blocked.conv2d_backward(y, x, w, x.shape, w.shape, *geo)
    assert blocked.CONVERSIONS["in"] == 3 and blocked.CONVERSIONS["out"] == 1
    assert blocked.CONVERSIONS["in bytes"] == 2 * y.nbytes + x.nbytes


def test_read_only_inputs_are_taken():
    """Arrays numpy hands out read-only (a memory-mapped file, np.load of an ONNX test set) go through the blocked
    drivers, whose compiled signatures take writable arrays."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 16, 6, 6)).astype(np.float32)
    w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    geo = ((1, 1), (1, 1), (1, 1), 1)
    y = blocked.conv2d_forward(x, w, None, *geo)
    dx, dw = blocked.conv2d_backward(y, x, w, x.shape, w.shape, *geo)
    for a in (x, w, y):
        a.flags.writeable = False
    np.testing.assert_array_equal(blocked.conv2d_forward(x, w, None, *geo), y)
    for a, b in zip(blocked.conv2d_backward(y, x, w, x.shape, w.shape, *geo), (dx, dw)):
        np.testing.assert_array_equal(a, b)
