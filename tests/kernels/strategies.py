"""Hypothesis strategies over kernel geometries, and the geometry records they draw.

Every strategy builds only VALID geometries (constructively, with ``assume``
for the rare dilated kernel that cannot fit 16 cells): a geometry the backend
would reject is never passed through silently.  Invalid geometries have their
own test (``test_ops.py::test_invalid_arguments``), which checks the
ValueError names the argument at fault.

Ranges (from the test plan): batch 1-4, channels 1-8, spatial 1-16 (height and
width drawn independently), kernel 1-7, stride 1-3, padding 0-3 (pooling:
at most half the kernel, PyTorch's rule), dilation 1-3, groups dividing both
channel counts (depthwise included).  Array contents are not drawn by
hypothesis: a drawn ``seed`` feeds ``numpy.random.default_rng``, which keeps
examples cheap while geometry still shrinks to a minimal failing case.
"""
from __future__ import annotations

from dataclasses import dataclass

from hypothesis import assume
from hypothesis import strategies as st

from numbacnn.kernels.reference import conv_out_size

seeds = st.integers(0, 2**32 - 1)


def _pair(lo, hi):
    return st.tuples(st.integers(lo, hi), st.integers(lo, hi))


# ---------------------------------------------------------------- convolution
@dataclass(frozen=True)
class ConvGeom:
    """One convolution: x (n, c, h, w) convolved with w (k, c // groups, kh, kw)."""

    n: int
    c: int
    k: int
    h: int
    w: int
    kernel: tuple
    stride: tuple = (1, 1)
    padding: tuple = (0, 0)
    dilation: tuple = (1, 1)
    groups: int = 1

    @property
    def x_shape(self):
        return (self.n, self.c, self.h, self.w)

    @property
    def w_shape(self):
        return (self.k, self.c // self.groups) + tuple(self.kernel)

    @property
    def out_hw(self):
        return (conv_out_size(self.h, self.kernel[0], self.stride[0], self.padding[0], self.dilation[0]),
                conv_out_size(self.w, self.kernel[1], self.stride[1], self.padding[1], self.dilation[1]))

    @property
    def kwargs(self):
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups)

    # reduction lengths, for the tolerances of check.py
    @property
    def forward_terms(self):
        return (self.c // self.groups) * self.kernel[0] * self.kernel[1]

    @property
    def input_grad_terms(self):
        return (self.k // self.groups) * self.kernel[0] * self.kernel[1]

    @property
    def weight_grad_terms(self):
        return self.n * self.out_hw[0] * self.out_hw[1]


def _fitting_size(draw, kernel, dilation, padding, max_size):
    """A spatial length on which the (dilated, padded) kernel fits at least once."""
    lo = max(1, dilation * (kernel - 1) + 1 - 2 * padding)
    assume(lo <= max_size)
    return draw(st.integers(lo, max_size))


@st.composite
def conv_geometries(draw, max_batch=4, max_channels=8, max_size=16, max_kernel=7, max_stride=3,
                    max_padding=3, max_dilation=3):
    """Valid conv2d geometries; groups is drawn first so it divides both channel counts."""
    n = draw(st.integers(1, max_batch))
    groups = draw(st.integers(1, max_channels))
    c = groups * draw(st.integers(1, max_channels // groups))
    k = groups * draw(st.integers(1, max_channels // groups))
    kernel = draw(_pair(1, max_kernel))
    stride = draw(_pair(1, max_stride))
    padding = draw(_pair(0, max_padding))
    dilation = draw(_pair(1, max_dilation))
    h = _fitting_size(draw, kernel[0], dilation[0], padding[0], max_size)
    w = _fitting_size(draw, kernel[1], dilation[1], padding[1], max_size)
    return ConvGeom(n, c, k, h, w, kernel, stride, padding, dilation, groups)


# Edge cases every run sees (used as @example by the tests).
CONV_EDGE_CASES = [
    # 1x1 kernel
    ConvGeom(2, 3, 5, 4, 7, (1, 1)),
    # kernel equal to the padded input: output 1x1
    ConvGeom(1, 2, 3, 3, 4, (5, 4), padding=(1, 0)),
    # output of size 1 through the stride
    ConvGeom(2, 2, 2, 5, 6, (3, 2), stride=(3, 5)),
    # stride larger than the kernel (cells skipped)
    ConvGeom(1, 3, 2, 9, 8, (2, 1), stride=(3, 3), padding=(1, 0)),
    # depthwise, and depthwise with a channel multiplier
    ConvGeom(2, 4, 4, 6, 5, (3, 3), padding=(1, 1), groups=4),
    ConvGeom(1, 3, 6, 5, 5, (3, 2), stride=(2, 1), groups=3),
    # dilation with the maximum padding, non-square everything
    ConvGeom(3, 4, 2, 7, 11, (3, 5), stride=(2, 3), padding=(3, 2), dilation=(3, 2), groups=2),
    # 1x1 input
    ConvGeom(4, 8, 8, 1, 1, (1, 1), groups=8),
]


# ---------------------------------------------------------------- pooling
@dataclass(frozen=True)
class PoolGeom:
    """One pooling: x (n, c, h, w), window ``kernel``, PyTorch floor mode."""

    n: int
    c: int
    h: int
    w: int
    kernel: tuple
    stride: tuple
    padding: tuple = (0, 0)

    @property
    def x_shape(self):
        return (self.n, self.c, self.h, self.w)

    @property
    def out_hw(self):
        return (conv_out_size(self.h, self.kernel[0], self.stride[0], self.padding[0]),
                conv_out_size(self.w, self.kernel[1], self.stride[1], self.padding[1]))

    @property
    def kwargs(self):
        return dict(kernel=self.kernel, stride=self.stride, padding=self.padding)

    @property
    def window(self):
        return self.kernel[0] * self.kernel[1]

    @property
    def overlap(self):
        """Most windows one input cell belongs to (terms summed into one dx cell)."""
        return -(-self.kernel[0] // self.stride[0]) * -(-self.kernel[1] // self.stride[1])


@st.composite
def pool_geometries(draw, max_batch=4, max_channels=8, max_size=16, max_kernel=7, max_stride=3):
    """Valid pooling geometries: padding at most half the kernel, window fits the padded input."""
    n = draw(st.integers(1, max_batch))
    c = draw(st.integers(1, max_channels))
    kernel = draw(_pair(1, max_kernel))
    stride = draw(_pair(1, max_stride))
    padding = (draw(st.integers(0, kernel[0] // 2)), draw(st.integers(0, kernel[1] // 2)))
    h = _fitting_size(draw, kernel[0], 1, padding[0], max_size)
    w = _fitting_size(draw, kernel[1], 1, padding[1], max_size)
    return PoolGeom(n, c, h, w, kernel, stride, padding)


POOL_EDGE_CASES = [
    PoolGeom(2, 3, 5, 7, (1, 1), (1, 1)),                  # 1x1 window
    PoolGeom(1, 2, 3, 4, (5, 4), (1, 1), (1, 0)),          # window equal to the padded input
    PoolGeom(2, 2, 5, 6, (3, 2), (3, 5)),                  # output of size 1 through the stride
    PoolGeom(1, 3, 9, 8, (2, 1), (3, 3), (1, 0)),          # stride larger than the window
    PoolGeom(3, 2, 7, 6, (7, 5), (1, 2), (3, 2)),          # maximal padding: corner windows mostly padding
    PoolGeom(2, 4, 16, 13, (3, 3), (2, 2), (1, 1)),        # the common 3x3/2 ResNet stem pool
]


# ---------------------------------------------------------------- shapes
def nchw_shapes(max_batch=4, max_channels=8, max_size=16):
    return st.tuples(st.integers(1, max_batch), st.integers(1, max_channels),
                     st.integers(1, max_size), st.integers(1, max_size))


def any_shapes(max_dims=4, max_side=8):
    """Shapes of 1 to ``max_dims`` dimensions (elementwise ops accept any shape)."""
    return st.lists(st.integers(1, max_side), min_size=1, max_size=max_dims).map(tuple)


@st.composite
def batch_norm_shapes(draw, training=True):
    """(N, C) or (N, C, H, W); in training at least 2 values per channel (else the backend refuses)."""
    four_d = draw(st.booleans())
    n = draw(st.integers(1, 4))
    c = draw(st.integers(1, 8))
    shape = (n, c, draw(st.integers(1, 16)), draw(st.integers(1, 16))) if four_d else (n, c)
    if training:
        assume(n * (shape[2] * shape[3] if four_d else 1) >= 2)
    return shape
