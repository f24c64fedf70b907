"""Hypothesis strategies over kernel geometries, and the geometry records they draw.

Every strategy builds only VALID geometries (constructively, with ``assume``
for the rare dilated kernel that cannot fit 16 cells): a geometry the backend
would reject is never passed through silently.  Invalid geometries have their
own test (``test_ops.py::test_invalid_arguments``), which checks the
ValueError names the argument at fault.

``CASES`` maps every op of the op table (``numbacnn.ops.OPS``) to a strategy
of ``Case``s (inputs, keyword arguments, tolerances); ``EDGES`` lists fixed
cases every run sees.  The kernel tests (CPU and reference backends) and the
CUDA simulator tests draw from the same strategies (``small=True`` for the
simulator), so an op is tested on every backend by being declared here.

Ranges (from the test plan): batch 1-4, channels 1-8, spatial 1-16 (height and
width drawn independently), kernel 1-7, stride 1-3, padding 0-3 (pooling:
at most half the kernel, PyTorch's rule), dilation 1-3, groups dividing both
channel counts (depthwise included).  Array contents are not drawn by
hypothesis: a drawn ``seed`` feeds ``numpy.random.default_rng``, which keeps
examples cheap while geometry still shrinks to a minimal failing case.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

from numbacnn import layers as L
from numbacnn.kernels.geometry import out_size

from .check import ELEMENTWISE, EXACT, tol

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
        return (out_size(self.h, self.kernel[0], self.stride[0], self.padding[0], self.dilation[0]),
                out_size(self.w, self.kernel[1], self.stride[1], self.padding[1], self.dilation[1]))

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
        return (out_size(self.h, self.kernel[0], self.stride[0], self.padding[0]),
                out_size(self.w, self.kernel[1], self.stride[1], self.padding[1]))

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


# ====================================================================== cases of every op
@dataclass
class Case:
    """One call of an op: positional host inputs, keyword arguments, tolerances for ``check_op``."""

    inputs: list
    kwargs: dict = field(default_factory=dict)
    tol: dict = field(default_factory=lambda: dict(ELEMENTWISE))
    seed: int = 0


def normal(rng, shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def conv_case(g: ConvGeom, bias=True, seed=0):
    rng = np.random.default_rng(seed)
    x, w = normal(rng, g.x_shape), normal(rng, g.w_shape)
    b = normal(rng, (g.k,)) if bias else None
    wgrad = tol(g.weight_grad_terms)
    return Case([x, w, b], g.kwargs, dict(**tol(g.forward_terms + 1), grad_rtol=wgrad["rtol"],
                                          grad_atol=[tol(g.input_grad_terms)["atol"], wgrad["atol"], wgrad["atol"]]),
                seed)


def max_pool_case(g: PoolGeom, ties=False, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 3, g.x_shape).astype(np.float32) if ties else normal(rng, g.x_shape)
    # the max is a choice, not a sum: values and argmax are exact; dx sums `overlap` terms
    return Case([x], g.kwargs, dict(**EXACT, grad_atol=tol(g.overlap)["atol"], grad_rtol=tol(g.overlap)["rtol"]),
                seed)


def avg_pool_case(g: PoolGeom, count_include_pad=True, seed=0):
    x = normal(np.random.default_rng(seed), g.x_shape)
    return Case([x], dict(g.kwargs, count_include_pad=count_include_pad),
                dict(**tol(g.window), grad_atol=tol(g.overlap)["atol"]), seed)


def dense_case(n, n_in, n_out, bias=True, seed=0):
    rng = np.random.default_rng(seed)
    x, w = normal(rng, (n, n_in)), normal(rng, (n_out, n_in))
    b = normal(rng, (n_out,)) if bias else None
    return Case([x, w, b], {}, dict(**tol(n_in + 1), grad_atol=[tol(n_out)["atol"], tol(n)["atol"], tol(n)["atol"]]),
                seed)


def batch_norm_case(shape, training=True, momentum=0.1, eps=1e-5, seed=0):
    rng = np.random.default_rng(seed)
    c = shape[1]
    inputs = [normal(rng, shape), normal(rng, (c,)), normal(rng, (c,)), normal(rng, (c,)),
              rng.uniform(0.5, 2.0, c).astype(np.float32)]
    x = inputs[0].astype(np.float64)
    m = x.size // c
    var = x.var(axis=(0, 2, 3) if x.ndim == 4 else (0,)) if training else inputs[4].astype(np.float64)
    cond = float(np.max(1 / np.sqrt(var + eps)))   # invstd scales every rounding error of x - mean
    t = tol(m, scale=max(cond, 1.0))
    return Case(inputs, dict(training=training, momentum=momentum, eps=eps),
                dict(**t, grad_atol=t["atol"] * max(cond, 1.0)), seed)


def layer_norm_case(m, f, eps=1e-5, scale=1.0, seed=0):
    rng = np.random.default_rng(seed)
    x = normal(rng, (m, f), scale)
    cond = float(np.max(1 / np.sqrt(x.astype(np.float64).var(axis=1) + eps)))   # invstd: the op's condition
    t = tol(max(m, f), scale=max(cond, 1.0))
    return Case([x, normal(rng, (f,)), normal(rng, (f,))], dict(eps=eps),
                dict(**t, grad_atol=t["atol"] * max(cond, 1.0)), seed)


@st.composite
def _layer_norm(draw, small=False):
    m, f = draw(st.integers(1, 6 if small else 16)), draw(st.integers(2, 24 if small else 200))
    return layer_norm_case(m, f, draw(st.sampled_from([1e-5, 1e-3])), draw(st.sampled_from([1.0, 100.0])),
                           draw(seeds))


def _params(rng, shape):
    """Normal values with exact zeros sprinkled in (sign(0) = 0 for the L1 term)."""
    p = normal(rng, shape)
    p.reshape(-1)[::7] = 0.0
    return p


def _small(small, big, little):
    return little if small else big


@st.composite
def _conv(draw, small=False):
    g = draw(conv_geometries(max_batch=2, max_channels=4, max_size=7, max_kernel=3, max_stride=2, max_padding=1,
                             max_dilation=2) if small else conv_geometries())
    return conv_case(g, draw(st.booleans()), draw(seeds))


@st.composite
def _max_pool(draw, small=False):
    g = draw(pool_geometries(max_batch=2, max_channels=3, max_size=7, max_kernel=3, max_stride=2) if small
             else pool_geometries())
    return max_pool_case(g, draw(st.booleans()), draw(seeds))


@st.composite
def _avg_pool(draw, small=False):
    g = draw(pool_geometries(max_batch=2, max_channels=3, max_size=7, max_kernel=3, max_stride=2) if small
             else pool_geometries())
    return avg_pool_case(g, draw(st.booleans()), draw(seeds))


@st.composite
def _global_avg_pool(draw, small=False):
    shape = draw(nchw_shapes(max_batch=2, max_channels=3, max_size=6) if small else nchw_shapes())
    n_hw = shape[2] * shape[3]
    return Case([normal(np.random.default_rng(draw(seeds)), shape)], {},
                dict(**tol(n_hw, scale=1 / n_hw), grad_atol=ELEMENTWISE["atol"]))


@st.composite
def _dense(draw, small=False):
    n, n_in, n_out = (draw(st.integers(1, hi)) for hi in _small(small, (8, 300, 40), (5, 40, 20)))
    return dense_case(n, n_in, n_out, draw(st.booleans()), draw(seeds))


def _activation(extra=None):
    @st.composite
    def draw_case(draw, small=False):
        """Large scales push sigmoid and tanh into saturation (y rounds to 0 or 1)."""
        shape = draw(any_shapes(max_dims=3, max_side=6) if small else any_shapes())
        x = normal(np.random.default_rng(draw(seeds)), shape, draw(st.sampled_from([1.0, 10.0, 100.0])))
        return Case([x], {} if extra is None else {extra[0]: draw(extra[1])}, dict(ELEMENTWISE))
    return draw_case


@st.composite
def _softmax(draw, small=False):
    n, k = draw(st.integers(1, 4 if small else 6)), draw(st.integers(1, 40))
    x = normal(np.random.default_rng(draw(seeds)), (n, k), draw(st.sampled_from([1.0, 30.0])))
    return Case([x], {}, tol(k))


@st.composite
def _softmax_cross_entropy(draw, small=False):
    """Logits of magnitude 1e4 must neither overflow nor lose the loss (float32 ulp there is 1e-3)."""
    rng = np.random.default_rng(draw(seeds))
    n, k = draw(st.integers(1, 4 if small else 6)), draw(st.integers(1, 40))
    labels = rng.integers(0, k, n).astype(draw(st.sampled_from([np.int64, np.int32])))
    return Case([normal(rng, (n, k), draw(st.sampled_from([1.0, 30.0, 1e4]))), labels], {}, tol(k))


@st.composite
def _argmax(draw, small=False):
    """np.argmax's rules: the first maximum on ties, the first NaN when a row holds one."""
    rng = np.random.default_rng(draw(seeds))
    n, k = draw(st.integers(1, 5 if small else 40)), draw(st.integers(1, 12))
    x = rng.integers(0, 3, (n, k)).astype(np.float32) if draw(st.booleans()) else normal(rng, (n, k))
    if draw(st.booleans()):
        x[rng.integers(0, n), rng.integers(0, k)] = np.nan
    return Case([x], {}, dict(EXACT))


@st.composite
def _batch_norm(draw, small=False):
    training = draw(st.booleans())
    shapes = batch_norm_shapes(training=training)
    shape = draw(shapes.filter(lambda s: int(np.prod(s)) <= 200) if small else shapes)
    momentum = draw(st.sampled_from([0.0, 0.1, 1.0])) if training else 0.1
    return batch_norm_case(shape, training, momentum, draw(st.sampled_from([1e-5, 1e-3])), draw(seeds))


def channel_parts(x, cuts_seed=0, parts=None):
    """x's per-channel statistics in parts, (3, C, T) float32 (count, mean, M2 of T disjoint non-empty runs of
    each channel's values in (n, h, w) order, at random cut points): what ``fused_batch_norm_forward`` takes."""
    c = x.shape[1]
    v = np.moveaxis(x.astype(np.float64), 1, 0).reshape(c, -1)
    rng = np.random.default_rng(cuts_seed)
    m = v.shape[1]
    parts = int(rng.integers(1, min(m, 5) + 1)) if parts is None else parts
    cuts = np.sort(rng.choice(np.arange(1, m), parts - 1, replace=False)) if parts > 1 else np.array([], int)
    out = []
    for run in np.split(v, cuts, axis=1):
        mu = run.mean(axis=1)
        out.append([np.full(c, run.shape[1]), mu, ((run - mu[:, None]) ** 2).sum(axis=1)])
    return np.asarray(out, dtype=np.float64).transpose(1, 2, 0).astype(np.float32)


def fused_batch_norm_case(shape, training=True, relu=True, with_stats=True, momentum=0.1, eps=1e-5, seed=0):
    case = batch_norm_case(shape, training, momentum, eps, seed)
    stats = channel_parts(case.inputs[0], seed) if with_stats and training else None
    return Case(case.inputs, dict(case.kwargs, relu=relu, stats=stats), case.tol, seed)


@st.composite
def _fused_batch_norm(draw, small=False):
    bn = draw(_batch_norm(small))
    stats = channel_parts(bn.inputs[0], bn.seed) if bn.kwargs["training"] and draw(st.booleans()) else None
    return Case(bn.inputs, dict(bn.kwargs, relu=draw(st.booleans()), stats=stats), bn.tol, bn.seed)


@st.composite
def _dropout(draw, small=False):
    """The mask is a pure function of (seed, index): identical to the reference, bit for bit."""
    shape = draw(any_shapes(max_dims=3, max_side=6) if small else any_shapes())
    seed = draw(seeds)
    kw = dict(p=draw(st.sampled_from([0.0, 0.1, 0.5, 0.9])), training=draw(st.booleans()), seed=seed)
    return Case([normal(np.random.default_rng(seed), shape)], kw, dict(ELEMENTWISE), seed)


@st.composite
def _lrn(draw, small=False):
    shape = draw(nchw_shapes(max_batch=2, max_channels=6, max_size=3) if small else nchw_shapes(max_size=8))
    size = draw(st.integers(1, 7))
    kw = dict(size=size, alpha=draw(st.sampled_from([1e-4, 1e-2, 1.0])), beta=draw(st.sampled_from([0.5, 0.75, 1.0])),
              k=draw(st.sampled_from([1.0, 2.0])))
    return Case([normal(np.random.default_rng(draw(seeds)), shape)], kw, tol(size))


@st.composite
def _concat(draw, small=False):
    rng = np.random.default_rng(draw(seeds))
    n, hw = draw(st.integers(1, 3 if small else 4)), draw(st.tuples(*[st.integers(1, 4 if small else 8)] * 2))
    channels = draw(st.lists(st.integers(1, 4 if small else 5), min_size=1, max_size=3 if small else 4))
    return Case([[normal(rng, (n, c) + hw) for c in channels]], {}, dict(EXACT))


@st.composite
def _add(draw, small=False):
    rng = np.random.default_rng(draw(seeds))
    shape, count = draw(any_shapes(max_dims=3, max_side=6) if small else any_shapes()), draw(st.integers(1, 4))
    return Case([[normal(rng, shape) for _ in range(count)]], {}, tol(count))


@st.composite
def _pad2d(draw, small=False):
    """Padding (negative pads crop) only moves values: exact."""
    shape = draw(nchw_shapes(max_batch=2, max_channels=2, max_size=5) if small else nchw_shapes(max_size=8))
    t, b, l, r = pads = draw(st.tuples(*[st.integers(-3, 3)] * 4))
    assume(min(t, b) >= -shape[2] and min(l, r) >= -shape[3] and shape[2] + t + b >= 1 and shape[3] + l + r >= 1)
    value = draw(st.sampled_from([0.0, -1.5, -np.inf]))
    return Case([normal(np.random.default_rng(draw(seeds)), shape)], dict(pads=pads, value=value), dict(EXACT))


@st.composite
def _sgd_update(draw, small=False):
    rng = np.random.default_rng(draw(seeds))
    shape = draw(any_shapes(max_dims=3 if small else 4, max_side=6 if small else 9))
    kw = dict(lr=draw(st.sampled_from([0.01, 0.5])), momentum=draw(st.sampled_from([0.0, 0.9])),
              nesterov=draw(st.booleans()), weight_decay=draw(st.sampled_from([0.0, 5e-4, 0.1])),
              l1=draw(st.sampled_from([0.0, 1e-3])))
    if kw["nesterov"] and not kw["momentum"]:
        kw["momentum"] = 0.9
    velocity = normal(rng, shape) if draw(st.booleans()) else np.zeros(shape, np.float32)
    return Case([_params(rng, shape), normal(rng, shape), velocity], kw, dict(ELEMENTWISE))


@st.composite
def _adam_update(draw, small=False):
    rng = np.random.default_rng(draw(seeds))
    shape = draw(any_shapes(max_dims=3 if small else 4, max_side=6 if small else 9))
    betas = draw(st.sampled_from([(0.9, 0.999), (0.5, 0.9)]))
    kw = dict(step=draw(st.sampled_from([1, 2, 1000])), lr=draw(st.sampled_from([1e-3, 0.1])), beta1=betas[0],
              beta2=betas[1], eps=draw(st.sampled_from([1e-8, 1e-3])),
              weight_decay=draw(st.sampled_from([0.0, 0.1])), l1=draw(st.sampled_from([0.0, 1e-3])))
    m, v = normal(rng, shape, 0.1), np.abs(normal(rng, shape, 0.01))
    return Case([_params(rng, shape), normal(rng, shape), m, v], kw, dict(ELEMENTWISE))


# ---------------------------------------------------------------- point-wise math, layout, transposed conv
#: (alpha, beta) choices of each unary function; the functions after POSITIVE need x > 0
UNARY_PARAMS = {"neg": [(0.0, 0.0)], "abs": [(0.0, 0.0)], "exp": [(0.0, 0.0)], "log": [(0.0, 0.0)],
                "sqrt": [(0.0, 0.0)], "pow": [(2.0, 0.0), (0.5, 0.0), (-1.5, 0.0), (3.0, 0.0)],
                "clip": [(0.0, 6.0), (-0.5, 0.7)], "hard_sigmoid": [(0.2, 0.5), (1 / 6, 0.5)],
                "hard_swish": [(1 / 6, 0.5)], "elu": [(1.0, 0.0), (0.3, 0.0)],
                "selu": [(1.6732632423543772, 1.0507009873554805)], "softplus": [(0.0, 0.0)],
                "softsign": [(0.0, 0.0)], "affine": [(1.5, -0.3), (-0.5, 2.0)], "reciprocal": [(0.0, 0.0)]}
POSITIVE = {"log", "sqrt", "pow", "reciprocal"}


def unary_case(fn, shape, params=0, scale=1.0, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.uniform(0.3, 3.0, shape) if fn in POSITIVE else rng.standard_normal(shape) * scale).astype(np.float32)
    alpha, beta = UNARY_PARAMS[fn][params % len(UNARY_PARAMS[fn])]
    return Case([x], dict(fn=fn, alpha=alpha, beta=beta), dict(ELEMENTWISE), seed)


@st.composite
def _unary(draw, small=False):
    fn = draw(st.sampled_from(sorted(UNARY_PARAMS)))
    shape = draw(any_shapes(max_dims=3, max_side=5) if small else any_shapes())
    return unary_case(fn, shape, draw(st.integers(0, 3)), draw(st.sampled_from([1.0, 3.0])), draw(seeds))


def binary_case(fn, a_shape, b_shape, seed=0):
    """Operands away from the functions' singular points: a > 0 for pow, |b| >= 0.5 for div."""
    rng = np.random.default_rng(seed)
    a = (rng.uniform(0.5, 2.0, a_shape) if fn == "pow" else rng.standard_normal(a_shape)).astype(np.float32)
    if fn == "div":
        b = rng.uniform(0.5, 2.0, b_shape) * rng.choice([-1.0, 1.0], b_shape)
    else:
        b = rng.standard_normal(b_shape) * (0.7 if fn == "pow" else 1.0)
    b = np.asarray(b, dtype=np.float32)
    out = np.broadcast_shapes(a_shape, b_shape)
    terms = int(np.prod(out)) // max(1, min(int(np.prod(a_shape)), int(np.prod(b_shape))))
    return Case([a, b], dict(fn=fn), dict(**ELEMENTWISE, grad_rtol=tol(terms)["rtol"],
                                          grad_atol=tol(terms, scale=10.0)["atol"]), seed)


@st.composite
def _binary(draw, small=False):
    """Broadcastable operands: each keeps an output axis or has 1 there, and may drop leading axes (not all:
    the backends' arrays have at least one axis)."""
    out = draw(any_shapes(max_dims=3 if small else 4, max_side=4 if small else 6))

    def operand():
        shape = tuple(d if draw(st.booleans()) else 1 for d in out)
        return shape[draw(st.integers(0, len(shape) - 1)):]
    return binary_case(draw(st.sampled_from(["add", "sub", "mul", "div", "pow"])), operand(), operand(),
                       draw(seeds))


@st.composite
def _transpose(draw, small=False):
    shape = draw(any_shapes(max_dims=4 if small else 6, max_side=4 if small else 5))
    perm = tuple(draw(st.permutations(range(len(shape)))))
    return Case([normal(np.random.default_rng(draw(seeds)), shape)], dict(perm=perm), dict(EXACT))


def take_case(shape, axis, indices, seed=0):
    repeats = max(indices.count(i) for i in indices)
    return Case([normal(np.random.default_rng(seed), shape)], dict(indices=tuple(indices), axis=axis),
                dict(**EXACT, grad_rtol=tol(repeats)["rtol"], grad_atol=tol(repeats)["atol"]), seed)


@st.composite
def _take(draw, small=False):
    shape = draw(any_shapes(max_dims=3 if small else 4, max_side=5 if small else 8))
    axis = draw(st.integers(0, len(shape) - 1))
    indices = draw(st.lists(st.integers(0, shape[axis] - 1), min_size=1, max_size=6 if small else 12))
    return take_case(shape, axis, indices, draw(seeds))


@dataclass(frozen=True)
class ConvTGeom:
    """One transposed convolution: x (n, c, h, w), w (c, k // groups, kh, kw)."""

    n: int
    c: int
    k: int
    h: int
    w: int
    kernel: tuple
    stride: tuple = (1, 1)
    padding: tuple = (0, 0)
    output_padding: tuple = (0, 0)
    dilation: tuple = (1, 1)
    groups: int = 1

    @property
    def kwargs(self):
        return dict(stride=self.stride, padding=self.padding, output_padding=self.output_padding,
                    dilation=self.dilation, groups=self.groups)

    @property
    def out_hw(self):
        return tuple((i - 1) * s - 2 * p + d * (k - 1) + op + 1 for i, s, p, d, k, op in
                     zip((self.h, self.w), self.stride, self.padding, self.dilation, self.kernel,
                         self.output_padding))


def conv_transpose_case(g: ConvTGeom, bias=True, seed=0):
    rng = np.random.default_rng(seed)
    x, w = normal(rng, (g.n, g.c, g.h, g.w)), normal(rng, (g.c, g.k // g.groups) + tuple(g.kernel))
    b = normal(rng, (g.k,)) if bias else None
    taps = g.kernel[0] * g.kernel[1]
    big = tol(g.n * max(g.h * g.w, g.out_hw[0] * g.out_hw[1]))
    return Case([x, w, b], g.kwargs, dict(**tol(g.c // g.groups * taps + 1), grad_rtol=big["rtol"],
                                          grad_atol=[tol(g.k // g.groups * taps)["atol"], big["atol"], big["atol"]]),
                seed)


@st.composite
def conv_transpose_geometries(draw, max_batch=3, max_channels=6, max_size=8, max_kernel=4, max_stride=3):
    n, groups = draw(st.integers(1, max_batch)), draw(st.integers(1, 3))
    c = groups * draw(st.integers(1, max(1, max_channels // groups)))
    k = groups * draw(st.integers(1, max(1, max_channels // groups)))
    kernel, stride, dilation = draw(_pair(1, max_kernel)), draw(_pair(1, max_stride)), draw(_pair(1, 2))
    out_pad = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
    padding = tuple(draw(st.integers(0, (d * (kk - 1) + op) // 2)) for d, kk, op in zip(dilation, kernel, out_pad))
    h, w = draw(st.integers(1, max_size)), draw(st.integers(1, max_size))
    return ConvTGeom(n, c, k, h, w, kernel, stride, padding, out_pad, dilation, groups)


@st.composite
def _conv_transpose(draw, small=False):
    g = draw(conv_transpose_geometries(2, 4, 4, 3, 2) if small else conv_transpose_geometries())
    return conv_transpose_case(g, draw(st.booleans()), draw(seeds))


CONVT_EDGE_CASES = [
    ConvTGeom(2, 3, 4, 3, 4, (3, 3), (2, 2), (1, 1), (1, 1)),             # the usual 2x upsampling
    ConvTGeom(1, 4, 4, 2, 3, (3, 2), (2, 3), (1, 0), (1, 2), (2, 1), 4),   # depthwise, output padding < dilation
    ConvTGeom(2, 2, 3, 1, 1, (4, 4), (3, 3), (0, 0)),                     # one input cell
    ConvTGeom(1, 6, 4, 3, 3, (1, 1), (1, 1), (0, 0), (0, 0), (1, 1), 2),  # 1x1, groups
]


#: op name -> (small=False) -> strategy of Cases; every op of numbacnn.ops.OPS must be here
CASES = {
    "conv2d": _conv, "max_pool2d": _max_pool, "avg_pool2d": _avg_pool, "global_avg_pool2d": _global_avg_pool,
    "dense": _dense, "relu": _activation(), "sigmoid": _activation(), "tanh": _activation(),
    "leaky_relu": _activation(("negative_slope", st.sampled_from([0.0, 0.01, 0.2, 1.5]))), "softmax": _softmax,
    "softmax_cross_entropy": _softmax_cross_entropy, "argmax": _argmax, "batch_norm": _batch_norm,
    "fused_batch_norm": _fused_batch_norm,
    "dropout": _dropout, "lrn": _lrn, "layer_norm": _layer_norm, "concat": _concat, "add": _add, "add_relu": _add,
    "pad2d": _pad2d,
    "sgd_update": _sgd_update,
    "adam_update": _adam_update,
    "unary": _unary, "binary": _binary, "transpose": _transpose, "take": _take, "conv_transpose2d": _conv_transpose,
}

#: op name -> fixed cases every run sees (edge cases; ``small`` ones fit the CUDA simulator)
EDGES = {
    "conv2d": [conv_case(g, True, 1) for g in CONV_EDGE_CASES] + [
        # the simulator's tiled kernel: outputs larger than a 16x16 tile, partial tiles, a tall strided kernel
        conv_case(ConvGeom(1, 2, 1, 18, 17, (3, 3), padding=(1, 1)), True, 3),
        conv_case(ConvGeom(1, 1, 2, 52, 9, (7, 3), stride=(3, 3), padding=(2, 1)), False, 4),
        # a dilated kernel spanning 51 rows does not fit the CUDA shared region: the direct kernel runs
        conv_case(ConvGeom(1, 2, 2, 52, 3, (3, 2), dilation=(25, 1)), True, 5),
        # the CUDA split-K weight gradient: row and column tiles with tails (17 channels, 36 columns a group),
        # 70 pixels (not a multiple of 16) in two chunks summed by a second kernel
        conv_case(ConvGeom(2, 8, 34, 9, 7, (3, 3), stride=(2, 1), padding=(1, 1), groups=2), False, 6)],
    "max_pool2d": [max_pool_case(g, i % 2 == 0, 2) for i, g in enumerate(POOL_EDGE_CASES)],
    "avg_pool2d": [avg_pool_case(g, False, 3) for g in POOL_EDGE_CASES],
    "dense": [dense_case(1, 1, 1), dense_case(17, 33, 18)],
    "batch_norm": [batch_norm_case((2, 3)), batch_norm_case((1, 2, 1, 2)), batch_norm_case((1, 3), training=False)],
    # parts with tails and one value; the ReLU in evaluation; (N, C) input with parts; no parts given
    "fused_batch_norm": [fused_batch_norm_case((2, 3, 3, 5), seed=1), fused_batch_norm_case((1, 2, 1, 2), seed=2),
                         fused_batch_norm_case((3, 2, 2, 2), training=False, seed=3),
                         fused_batch_norm_case((7, 3), relu=False, seed=4),
                         fused_batch_norm_case((2, 2, 3, 3), with_stats=False, seed=5)],
    "dropout": [Case([normal(np.random.default_rng(1), (3, 5, 7))], dict(p=0.5, training=True, seed=2**32 - 1))],
    "lrn": [Case([normal(np.random.default_rng(0), (2, 8, 3, 3))], dict(size=5, alpha=1e-4, beta=0.75, k=1.0), tol(5)),
            Case([normal(np.random.default_rng(0), (1, 3, 2, 2))], dict(size=6, alpha=1.0, beta=0.75, k=1.0), tol(6))],
    "softmax_cross_entropy": [Case([normal(np.random.default_rng(0), (3, 10), 1e4), np.array([0, 9, 4])], {}, tol(10)),
                              Case([normal(np.random.default_rng(0), (4, 5)), np.array([0, 4, 2, 2], np.int32)], {},
                                   tol(5))],
    "add_relu": [Case([[normal(np.random.default_rng(k), (2, 3, 5)) for _ in range(k)]], {}, tol(k))
                 for k in (1, 2, 3)],
    "pad2d": [Case([normal(np.random.default_rng(0), (1, 2, 3, 4))], dict(pads=(1, -1, -2, 2), value=-np.inf),
                   dict(EXACT))],
    "layer_norm": [layer_norm_case(1, 2), layer_norm_case(3, 300, seed=1)],   # the fewest features; many
    "unary": [unary_case(fn, (2, 3), k) for fn in sorted(UNARY_PARAMS) for k in range(len(UNARY_PARAMS[fn]))],
    "binary": [binary_case("mul", (2, 3, 4, 5), (3, 1, 1)), binary_case("sub", (1,), (2, 3)),     # per channel; scalar
               binary_case("div", (4, 1, 1), (1, 5, 6)), binary_case("pow", (1, 3), (2, 1))],    # both broadcast
    "transpose": [Case([normal(np.random.default_rng(0), (2, 3, 4, 5, 6))], dict(perm=(0, 2, 1, 3, 4)), dict(EXACT))],
    "take": [take_case((2, 3, 4), 2, [3, 3, 0, 3, 1]), take_case((5,), 0, [4])],
    "conv_transpose2d": [conv_transpose_case(g, i % 2 == 0, i) for i, g in enumerate(CONVT_EDGE_CASES)],
}


# ====================================================================== cases of every layer
# name -> (make the layer, input shapes without the batch, training): together they cover every
# registered layer (tests/layers/test_layers.py checks configs, finite differences and backends)
LAYER_CASES = {
    "conv": (lambda: L.Conv2D(3, 3, strides=2, padding=1), [(4, 7, 7)], True),
    "conv_groups_dilation": (lambda: L.Conv2D(4, (3, 2), strides=(1, 2), padding=(2, 1), dilation=2, groups=2,
                                              kernel_initializer="glorot_uniform"), [(4, 7, 6)], True),
    "conv_nobias": (lambda: L.Conv2D(2, 1, use_bias=False, padding=[1, 1, 0, 0]), [(3, 3, 4)], True),
    "maxpool": (lambda: L.MaxPool2D(3, 2, padding=1), [(2, 7, 7)], True),
    "avgpool": (lambda: L.AvgPool2D(3, 2, padding=1), [(2, 7, 6)], True),
    "avgpool_nopad": (lambda: L.AvgPool2D((3, 2), (2, 1), padding=(1, 1), count_include_pad=False),
                      [(2, 5, 6)], True),
    "gap": (lambda: L.GlobalAvgPool2D(), [(3, 4, 5)], True),
    "dense": (lambda: L.Dense(4, kernel_initializer="he_uniform"), [(6,)], True),
    "flatten": (lambda: L.Flatten(), [(2, 3, 3)], True),
    "relu": (lambda: L.ReLU(), [(3, 4, 4)], True),
    "leaky": (lambda: L.LeakyReLU(0.1), [(3, 4, 4)], True),
    "sigmoid": (lambda: L.Sigmoid(), [(3, 4, 4)], True),
    "tanh": (lambda: L.Tanh(), [(7,)], True),
    "softmax": (lambda: L.Softmax(), [(5,)], True),
    "bn4d_train": (lambda: L.BatchNorm(momentum=0.2), [(3, 4, 4)], True),
    "bn4d_eval": (lambda: L.BatchNorm(), [(3, 4, 4)], False),
    "bn2d_train": (lambda: L.BatchNorm(eps=1e-3), [(5,)], True),
    "dropout": (lambda: L.Dropout(0.3, seed=7), [(3, 4, 4)], True),
    "dropout_eval": (lambda: L.Dropout(0.3, seed=7), [(3, 4, 4)], False),
    "lrn": (lambda: L.LRN(3, alpha=0.5, beta=0.75, k=2.0), [(5, 3, 3)], True),
    "layernorm_chw": (lambda: L.LayerNorm(), [(3, 4, 4)], True),
    "layernorm_last": (lambda: L.LayerNorm(axis=-1, eps=1e-3), [(2, 3, 5)], True),
    "layernorm_flat": (lambda: L.LayerNorm(), [(7,)], True),
    "add": (lambda: L.Add(), [(2, 3, 3)] * 3, True),
    "concat": (lambda: L.Concatenate(), [(2, 3, 3), (3, 3, 3)], True),
    "channelpad": (lambda: L.ChannelPad(1, 2), [(2, 3, 3)], True),
    "pad2d": (lambda: L.Pad2D((1, 0, 2, 1), 0.5), [(2, 3, 4)], True),
    "pad2d_crop": (lambda: L.Pad2D((-1, 2, 0, -2)), [(2, 4, 5)], True),
    "reshape": (lambda: L.Reshape((3, 2, 3)), [(2, 9)], True),
    "softmax_rows": (lambda: L.Softmax(), [(2, 3, 4)], True),
    "unary_exp": (lambda: L.Unary("exp"), [(2, 3, 3)], True),
    "unary_clip": (lambda: L.Unary("clip", 0.0, 6.0), [(2, 3, 3)], True),
    "unary_hard_swish": (lambda: L.Unary("hard_swish", 1 / 6, 0.5), [(2, 3, 3)], True),
    "unary_softsign": (lambda: L.Unary("softsign"), [(7,)], True),
    "binary_mul": (lambda: L.Binary("mul"), [(2, 3, 3), (2, 3, 3)], True),
    "binary_sub_broadcast": (lambda: L.Binary("sub"), [(2, 3, 3), (2, 1, 3)], True),
    "binary_const_mul": (lambda: L.BinaryConst("mul", (2, 1, 1)), [(2, 3, 3)], True),
    "binary_const_rdiv": (lambda: L.BinaryConst("div", (3,), reverse=True), [(2, 3, 3)], True),
    "transpose": (lambda: L.Transpose((0, 2, 1, 3, 4)), [(2, 3, 2, 2)], True),
    "take": (lambda: L.Take(2, (2, 0, 0, 1)), [(2, 3, 4)], True),
    "reduce_mean": (lambda: L.Reduce("mean", (1, 3)), [(2, 3, 4)], True),
    "reduce_sum_drop": (lambda: L.Reduce("sum", (2,), keepdims=False), [(2, 3, 4)], True),
    "reduce_max": (lambda: L.Reduce("max", (2, 3)), [(2, 3, 4)], True),
    "conv_transpose": (lambda: L.ConvTranspose2D(3, 3, strides=2, padding=1, output_padding=1), [(2, 3, 4)],
                       True),
    "conv_transpose_groups": (lambda: L.ConvTranspose2D(4, (2, 3), strides=(1, 2), dilation=(2, 1), groups=2,
                                                        use_bias=False), [(2, 3, 3)], True),
}
