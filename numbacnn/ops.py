"""The op table: every op of the kernel API, declared once.

An ``Op`` says everything the rest of the code base needs to know about it:

* its public methods (``Method``): the name (``conv2d_forward``), the argument
  checks and normalisation (a function whose signature and docstring ARE the
  public API: ``Backend`` generates one method per entry from it), and how a
  backend without a kernel of that exact name composes it from single-direction
  kernels (``conv2d_backward`` from ``conv2d_backward_input``/``_weight``/``_bias``);
* where its kernels live: ``kernels/reference.py`` (``<kernel>_ref``),
  ``kernels/cpu/<family>.py`` and ``kernels/cuda/<family>.py`` (listed in the
  module's ``__all__``); the backends build their kernel tables from the families
  named here;
* how its backward takes the forward's inputs and outputs (``grad``), which the
  kernel tests use to check every gradient of every op the same way;
* its ``@cuda.jit`` kernels with their PTX signatures (``cuda``), which the PTX
  test compiles and the CUDA simulator test expects to see launched;
* its benchmark cases (``bench``) and its PyTorch twin (``torch``), which
  ``benchmarks/bench_layers.py`` times side by side.

Adding an op: its reference, its CPU and CUDA kernels, an ``Op`` entry here, and
a strategy in ``tests/kernels/strategies.py`` (see docs/ARCHITECTURE.md).

PTX signatures are strings of type codes (``"A4 A4 A1 B I"``): ``A1``..``A4``
C-contiguous float32 arrays of 1-4 dimensions, ``F`` float32, ``I`` int64,
``B`` boolean, ``U8`` uint8 array, ``u8`` uint8, ``u64`` uint64, ``L64``/``L32``
int64/int32 arrays, ``LA2``/``LA4`` 2-/4-d int64 arrays, ``T16`` a tuple of 16
``A1``; several signatures are a list.
"""
from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .kernels.geometry import out_size


# ====================================================================== argument checks
#: the floating-point dtype arrays are checked against (float32; the float64 test oracle sets float64)
FLOAT = contextvars.ContextVar("numbacnn_float_dtype", default=np.dtype(np.float32))


@contextlib.contextmanager
def float_dtype(dtype):
    """Check float arrays against ``dtype`` instead of float32 inside the block."""
    token = FLOAT.set(np.dtype(dtype))
    try:
        yield
    finally:
        FLOAT.reset(token)


def pair(name, v):
    """An int or a pair of ints -> (a, b)."""
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    try:
        a, b = v
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an int or a pair of ints, got {v!r}") from None
    return int(a), int(b)


def shape_of(a) -> tuple:
    return tuple(int(s) for s in a.shape)


def check_array(name, a, ndim=None, dtype=np.float32):
    """``a`` is an array (numpy or device) of ``ndim`` dimensions (an int or a tuple of allowed ones) and dtype
    (float32 means the checked float dtype, see ``FLOAT``)."""
    if dtype is not None and np.dtype(dtype) == np.float32:
        dtype = FLOAT.get()
    if not hasattr(a, "shape") or not hasattr(a, "dtype"):
        raise ValueError(f"{name} must be an array, got {type(a).__name__}")
    if ndim is not None and len(a.shape) not in ((ndim,) if isinstance(ndim, int) else ndim):
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {shape_of(a)}")
    if dtype is not None and np.dtype(a.dtype) != np.dtype(dtype):
        raise ValueError(f"{name} must be {np.dtype(dtype).name}, got {np.dtype(a.dtype).name} (shape {shape_of(a)})")


def check_same(name_a, a, name_b, b):
    if shape_of(a) != shape_of(b):
        raise ValueError(f"{name_a} shape {shape_of(a)} does not match {name_b} shape {shape_of(b)}")


def check_vector(name, v, n, of):
    check_array(name, v, 1)
    if shape_of(v) != (n,):
        raise ValueError(f"{name} shape {shape_of(v)} does not match {of}: expected ({n},)")


def conv_geometry(x_shape, w_shape, stride, padding, dilation, groups):
    """Normalised (stride, padding, dilation, groups, y shape) of a convolution, or a ValueError."""
    stride, padding, dilation = pair("stride", stride), pair("padding", padding), pair("dilation", dilation)
    if min(stride) < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if min(padding) < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    if min(dilation) < 1:
        raise ValueError(f"dilation must be >= 1, got {dilation}")
    groups = int(groups)
    N, C, H, W = x_shape
    K, Cg, KH, KW = w_shape
    if groups < 1 or C % groups or K % groups:
        raise ValueError(f"groups={groups} must divide input channels {C} (x shape {x_shape}) "
                         f"and output channels {K} (w shape {w_shape})")
    if Cg * groups != C:
        raise ValueError(f"w shape {w_shape} expects {Cg * groups} input channels with groups={groups}, "
                         f"x shape {x_shape} has {C}")
    OH = out_size(H, KH, stride[0], padding[0], dilation[0])
    OW = out_size(W, KW, stride[1], padding[1], dilation[1])
    if OH < 1 or OW < 1:
        raise ValueError(f"kernel {KH}x{KW} (dilation {dilation}) does not fit x shape {x_shape} "
                         f"with padding {padding}: output would be {OH}x{OW}")
    return stride, padding, dilation, groups, (N, K, OH, OW)


def pool_geometry(x_shape, kernel, stride, padding):
    """Normalised (kernel, stride, padding, y shape) of a pooling window, or a ValueError."""
    kernel, stride, padding = pair("kernel", kernel), pair("stride", stride), pair("padding", padding)
    if min(kernel) < 1:
        raise ValueError(f"kernel must be >= 1, got {kernel}")
    if min(stride) < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if min(padding) < 0 or padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        raise ValueError(f"padding {padding} must be >= 0 and at most half the kernel {kernel}")
    N, C, H, W = x_shape
    OH, OW = out_size(H, kernel[0], stride[0], padding[0]), out_size(W, kernel[1], stride[1], padding[1])
    if OH < 1 or OW < 1:
        raise ValueError(f"pooling kernel {kernel} does not fit x shape {x_shape} with padding {padding}")
    return kernel, stride, padding, (N, C, OH, OW)


def x_shape_arg(x_shape, ndim=4):
    x_shape = tuple(int(s) for s in x_shape)
    if len(x_shape) != ndim:
        raise ValueError(f"x_shape must have {ndim} dimensions, got {x_shape}")
    return x_shape


# ====================================================================== the table's records
@dataclass(frozen=True)
class Method:
    """One public method of the kernel API (see the module docstring)."""

    name: str
    check: Callable                 # check(*args, **kwargs) -> the kernel's positional arguments
    compose: Callable | None = None  # compose(kernels, *args) where a backend has no kernel called ``name``


@dataclass(frozen=True)
class Bench:
    """A benchmark case: ``make(rng) -> (inputs, kwargs)`` of the forward; ``flops`` of one forward."""

    label: str
    make: Callable
    flops: float | None = None


@dataclass(frozen=True)
class Op:
    """One op of the kernel API (see the module docstring)."""

    name: str
    family: str
    methods: tuple
    grad: Callable | None = None    # (dy, inputs, outputs, kwargs) -> (args, kwargs) of <op>_backward
    upstream: bool = True           # False: the backward takes no dy (a loss)
    cuda: dict = field(default_factory=dict)
    bench: tuple = ()
    torch: Callable | None = None   # torch(F, *inputs, **kwargs) -> the forward's (first) output

    @property
    def forward(self) -> str:
        """The method called first by tests and benchmarks: ``<op>_forward``, or the op itself (in place)."""
        names = [m.name for m in self.methods]
        return f"{self.name}_forward" if f"{self.name}_forward" in names else names[0]


OPS: dict = {}
#: shared CUDA kernels (fills, sums, in-place adds) that several ops and the array helpers launch
CUDA_HELPERS = {"fill_kernel": ["A1 F", "U8 u8"], "add_inplace_kernel": "A1 A1", "channel_sum_kernel": "A3 F A1"}


def helpers(*names) -> dict:
    """The ``CUDA_HELPERS`` entries an op launches too (listed in its ``cuda`` so the tests expect them)."""
    return {n: CUDA_HELPERS[n] for n in names}


def declare(op: Op) -> Op:
    if op.name in OPS:
        raise ValueError(f"op {op.name!r} is declared twice")
    OPS[op.name] = op
    return op


def methods():
    """{method name: Method} of every op."""
    return {m.name: m for op in OPS.values() for m in op.methods}


def families():
    """The kernel module names the backends load (kernels/cpu/<family>.py, kernels/cuda/<family>.py)."""
    return sorted({op.family for op in OPS.values()})


def _first(outs):
    return outs[0] if isinstance(outs, tuple) else outs


def _pick(kw, *names):
    return {n: kw[n] for n in names if n in kw}


# ====================================================================== convolution
def conv2d_forward(x, w, b=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
    """y (N, K, OH, OW) = conv2d(x (N, C, H, W), w (K, C/groups, KH, KW)) + b (K,) or None; PyTorch's conv2d."""
    check_array("x", x, 4)
    check_array("w", w, 4)
    stride, padding, dilation, groups, _ = conv_geometry(shape_of(x), shape_of(w), stride, padding, dilation, groups)
    if b is not None:
        check_vector("b", b, w.shape[0], f"w shape {shape_of(w)}")
    return x, w, b, stride, padding, dilation, groups


def conv2d_backward(dy, x, w, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1, has_bias=True):
    """(dx like x, dw like w, db (K,) or None when not has_bias) from dy (N, K, OH, OW)."""
    for name, a in (("dy", dy), ("x", x), ("w", w)):
        check_array(name, a, 4)
    stride, padding, dilation, groups, y_shape = conv_geometry(shape_of(x), shape_of(w), stride, padding, dilation,
                                                               groups)
    if shape_of(dy) != y_shape:
        raise ValueError(f"dy shape {shape_of(dy)} does not match the output shape {y_shape} of "
                         f"x {shape_of(x)} convolved with w {shape_of(w)}")
    return dy, x, w, stride, padding, dilation, groups, bool(has_bias)


def conv2d_backward_params(dy, x, w, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1, has_bias=True):
    """(dw like w, db (K,) or None when not has_bias) from dy (N, K, OH, OW): ``conv2d_backward`` without dx
    (a convolution fed by the model input)."""
    return conv2d_backward(dy, x, w, stride, padding, dilation, groups, has_bias)


def _compose_conv2d_backward_params(k, dy, x, w, stride, padding, dilation, groups, has_bias):
    dw = k.conv2d_backward_weight(dy, x, w.shape, stride, padding, dilation, groups)
    return dw, k.conv2d_backward_bias(dy) if has_bias else None


def _compose_conv2d_backward(k, dy, x, w, stride, padding, dilation, groups, has_bias):
    dx = k.conv2d_backward_input(dy, w, x.shape, stride, padding, dilation, groups)
    dw = k.conv2d_backward_weight(dy, x, w.shape, stride, padding, dilation, groups)
    return dx, dw, k.conv2d_backward_bias(dy) if has_bias else None


def conv2d_forward_fused(x, w, b=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1, relu=False,
                         stats=False):
    """(y, stats): ``conv2d_forward``, then y = max(y, 0) when ``relu`` (a ReLU the graph fused); with ``stats``,
    y's per-channel statistics in parts (3, K, T) as ``fused_batch_norm_forward`` takes them, or None where the
    backend computes none (then, and without ``stats``, the second result is None)."""
    return (*conv2d_forward(x, w, b, stride, padding, dilation, groups), bool(relu), bool(stats))


def conv2d_forward_norm(x, w, b, gamma, beta, running_mean, running_var, eps=1e-5, stride=(1, 1), padding=(0, 0),
                        dilation=(1, 1), groups=1, relu=False):
    """y = batch_norm(conv2d(x, w) + b) with the running statistics (inference), then max(y, 0) when ``relu``: the
    graph's Conv2D -> BatchNorm (-> ReLU) at inference, in one pass where a backend folds the normalisation into
    the weights and bias (to float32 rounding: the same values, not the same bits).  gamma, beta, running_mean,
    running_var : (K,) as ``batch_norm_forward`` takes them."""
    x, w, b, stride, padding, dilation, groups = conv2d_forward(x, w, b, stride, padding, dilation, groups)
    K = shape_of(w)[0]
    for name, a in (("gamma", gamma), ("beta", beta), ("running_mean", running_mean), ("running_var", running_var)):
        check_vector(name, a, K, f"the {K} filters of w shape {shape_of(w)}")
    return x, w, b, gamma, beta, running_mean, running_var, float(eps), stride, padding, dilation, groups, bool(relu)


def _compose_conv2d_forward_norm(k, x, w, b, gamma, beta, mean, var, eps, stride, padding, dilation, groups, relu):
    y = k.conv2d_forward(x, w, b, stride, padding, dilation, groups)
    y = k.batch_norm_forward(y, gamma, beta, mean, var, False, 0.0, eps)[0]
    return k.relu_forward(y) if relu else y


def conv2d_backward_add(dy, x, w, base, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1, has_bias=True,
                        relu=False):
    """(base + dx, dw, db or None): ``conv2d_backward`` with its input gradient added to ``base`` (like x: the
    gradient the graph has summed for x so far), which a backend may do in the same pass; with ``relu`` the sum is
    zeroed where x <= 0 (x the output of a ReLU whose gradient the sum completes: that ReLU's backward)."""
    args = conv2d_backward(dy, x, w, stride, padding, dilation, groups, has_bias)
    check_array("base", base, 4)
    check_same("base", base, "x", x)
    return (*args[:3], base, *args[3:], bool(relu))


def _compose_conv2d_forward_fused(k, x, w, b, stride, padding, dilation, groups, relu, stats):
    y = k.conv2d_forward(x, w, b, stride, padding, dilation, groups)
    return (k.relu_forward(y) if relu else y), None


def _compose_conv2d_backward_add(k, dy, x, w, base, *geometry_and_relu):
    *geometry, relu = geometry_and_relu
    whole = getattr(k, "conv2d_backward", None)      # a backend's one-pass backward, else the single directions
    dx, dw, db = whole(dy, x, w, *geometry) if whole is not None else _compose_conv2d_backward(k, dy, x, w, *geometry)
    dx = k.add_forward([base, dx])
    return (k.relu_backward(dx, x) if relu else dx), dw, db


_CONV_GEMM = "A1 A1 A1 A1 A1 A1 A1 I I I I I I I I I I B B B B"


def _conv_bench(label, shape, K, k, s, p, groups=1):
    N, C, H, W = shape

    def make(rng):
        x = rng.standard_normal(shape).astype(np.float32)
        w = (rng.standard_normal((K, C // groups, k, k)) * 0.1).astype(np.float32)
        return [x, w, rng.standard_normal(K).astype(np.float32)], {"stride": s, "padding": p, "groups": groups}
    flops = 2.0 * N * K * out_size(H, k, s, p) * out_size(W, k, s, p) * C // groups * k * k
    return Bench(f"{label} {N}x{C}x{H}x{W}->{K} {k}x{k} s{s} p{p}{f' g{groups}' if groups > 1 else ''}", make, flops)


declare(Op(
    "conv2d", "conv2d",
    (Method("conv2d_forward", conv2d_forward), Method("conv2d_backward", conv2d_backward, _compose_conv2d_backward),
     Method("conv2d_backward_params", conv2d_backward_params, _compose_conv2d_backward_params),
     Method("conv2d_forward_fused", conv2d_forward_fused, _compose_conv2d_forward_fused),
     Method("conv2d_forward_norm", conv2d_forward_norm, _compose_conv2d_forward_norm),
     Method("conv2d_backward_add", conv2d_backward_add, _compose_conv2d_backward_add)),
    grad=lambda dy, i, o, kw: ((dy, i[0], i[1]), dict(kw, has_bias=i[2] is not None)),
    # the implicit-GEMM kernels are made per geometry (kernels/cuda/conv2d.py); these are their 3x3 instances
    cuda={"conv2d_forward_gemm_kernel": _CONV_GEMM, "conv2d_backward_input_gemm_kernel": _CONV_GEMM,
          "conv2d_backward_weight_kernel": "A4 A4 I I I I I I I I I I A3 L32 A2", **helpers("channel_sum_kernel")},
    bench=(_conv_bench("lenet-c1", (64, 1, 28, 28), 6, 5, 1, 2), _conv_bench("lenet-c2", (64, 6, 14, 14), 16, 5, 1, 0),
           _conv_bench("c16-32x32-3x3", (64, 16, 32, 32), 16, 3, 1, 1),
           _conv_bench("c32-16x16-3x3", (64, 32, 16, 16), 32, 3, 1, 1),
           _conv_bench("c64-8x8-3x3", (64, 64, 8, 8), 64, 3, 1, 1),
           _conv_bench("c64-16x16-1x1", (64, 64, 16, 16), 32, 1, 1, 0),
           _conv_bench("alexnet-c1", (16, 3, 224, 224), 64, 11, 4, 2),
           # ResNet-20's three stages at batch 128 (and its stride-2 entry), a depthwise 3x3, batch 1 (a 3x3, and a
           # 1x1 of ResNet-50's third stage: inference of an imported network)
           _conv_bench("resnet-16", (128, 16, 32, 32), 16, 3, 1, 1),
           _conv_bench("resnet-32s2", (128, 32, 16, 16), 32, 3, 2, 1),
           _conv_bench("resnet-32", (128, 32, 16, 16), 32, 3, 1, 1),
           _conv_bench("resnet-64", (128, 64, 8, 8), 64, 3, 1, 1),
           _conv_bench("depthwise-3x3", (64, 64, 56, 56), 64, 3, 1, 1, groups=64),
           _conv_bench("batch1-64", (1, 64, 56, 56), 64, 3, 1, 1),
           _conv_bench("batch1-1x1", (1, 1024, 14, 14), 256, 1, 1, 0)),
    torch=lambda F, x, w, b, stride=1, padding=0, dilation=1, groups=1: F.conv2d(x, w, b, stride, padding, dilation,
                                                                                 groups)))


# ====================================================================== pooling
def max_pool2d_forward(x, kernel=(2, 2), stride=(2, 2), padding=(0, 0)):
    """(y (N, C, OH, OW), argmax (N, C, OH, OW) int64 flat index into each H*W plane); padding counts as -inf."""
    check_array("x", x, 4)
    kernel, stride, padding, _ = pool_geometry(shape_of(x), kernel, stride, padding)
    return x, kernel, stride, padding


def max_pool2d_backward(dy, argmax, x_shape):
    """dx (x_shape): dy scattered to the argmax cells (summed where windows overlap)."""
    check_array("dy", dy, 4)
    check_array("argmax", argmax, 4, dtype=None)
    check_same("dy", dy, "argmax", argmax)
    x_shape = tuple(int(s) for s in x_shape)
    if len(x_shape) != 4 or x_shape[:2] != shape_of(dy)[:2]:
        raise ValueError(f"x_shape {x_shape} does not match dy shape {shape_of(dy)}")
    return dy, argmax, x_shape


def avg_pool2d_forward(x, kernel=(2, 2), stride=(2, 2), padding=(0, 0), count_include_pad=True):
    """y (N, C, OH, OW): window means (padded cells counted unless count_include_pad=False)."""
    check_array("x", x, 4)
    kernel, stride, padding, _ = pool_geometry(shape_of(x), kernel, stride, padding)
    return x, kernel, stride, padding, bool(count_include_pad)


def avg_pool2d_backward(dy, x_shape, kernel=(2, 2), stride=(2, 2), padding=(0, 0), count_include_pad=True):
    """dx (x_shape) of avg_pool2d_forward."""
    check_array("dy", dy, 4)
    x_shape = x_shape_arg(x_shape)
    kernel, stride, padding, y_shape = pool_geometry(x_shape, kernel, stride, padding)
    if shape_of(dy) != y_shape:
        raise ValueError(f"dy shape {shape_of(dy)} does not match the pooled shape {y_shape} of x_shape {x_shape}")
    return dy, x_shape, kernel, stride, padding, bool(count_include_pad)


def global_avg_pool2d_forward(x):
    """y (N, C, 1, 1): the mean of each plane of x (N, C, H, W)."""
    check_array("x", x, 4)
    return (x,)


def global_avg_pool2d_backward(dy, x_shape):
    """dx (x_shape): dy / (H * W) spread over each plane."""
    check_array("dy", dy, 4)
    x_shape = tuple(int(s) for s in x_shape)
    if len(x_shape) != 4 or shape_of(dy) != x_shape[:2] + (1, 1):
        raise ValueError(f"dy shape {shape_of(dy)} does not match x_shape {x_shape}: expected {x_shape[:2] + (1, 1)}")
    return dy, x_shape


def _pool_bench(label, shape, k, s):
    return Bench(f"{label} {'x'.join(map(str, shape))} s{s}",
                 lambda rng: ([rng.standard_normal(shape).astype(np.float32)], {"kernel": k, "stride": s}))


declare(Op(
    "max_pool2d", "pool2d", (Method("max_pool2d_forward", max_pool2d_forward),
                             Method("max_pool2d_backward", max_pool2d_backward)),
    grad=lambda dy, i, o, kw: ((dy, o[1], tuple(i[0].shape)), {}),
    cuda={"max_pool2d_forward_kernel": "A4 I I I I I I A4 LA4", "max_pool2d_backward_kernel": "A2 LA2 A2",
          **helpers("fill_kernel")},
    bench=(_pool_bench("maxpool-2x2", (64, 16, 32, 32), 2, 2),),
    torch=lambda F, x, kernel=2, stride=2, padding=0: F.max_pool2d(x, kernel, stride, padding)))
declare(Op(
    "avg_pool2d", "pool2d", (Method("avg_pool2d_forward", avg_pool2d_forward),
                             Method("avg_pool2d_backward", avg_pool2d_backward)),
    grad=lambda dy, i, o, kw: ((dy, tuple(i[0].shape)), kw),
    cuda={"avg_pool2d_forward_kernel": "A4 I I I I I I B A4", "avg_pool2d_backward_kernel": "A4 I I I I I I B A4"}))
declare(Op(
    "global_avg_pool2d", "pool2d", (Method("global_avg_pool2d_forward", global_avg_pool2d_forward),
                                    Method("global_avg_pool2d_backward", global_avg_pool2d_backward)),
    grad=lambda dy, i, o, kw: ((dy, tuple(i[0].shape)), {}),
    cuda={"global_avg_pool2d_backward_kernel": "A1 F A2", **helpers("channel_sum_kernel")}))


# ====================================================================== dense
def _check_dense(x, w, b=None):
    check_array("x", x, 2)
    check_array("w", w, 2)
    if x.shape[1] != w.shape[1]:
        raise ValueError(f"x shape {shape_of(x)} has {x.shape[1]} features, w shape {shape_of(w)} expects {w.shape[1]}")
    if b is not None:
        check_vector("b", b, w.shape[0], f"w shape {shape_of(w)}")


def dense_forward(x, w, b=None):
    """y (N, out) = x (N, in) @ w (out, in).T + b (out,) or None."""
    _check_dense(x, w, b)
    return x, w, b


def dense_backward(dy, x, w, has_bias=True):
    """(dx (N, in), dw (out, in), db (out,) or None) from dy (N, out)."""
    _check_dense(x, w)
    check_array("dy", dy, 2)
    if shape_of(dy) != (x.shape[0], w.shape[0]):
        raise ValueError(f"dy shape {shape_of(dy)} does not match ({x.shape[0]}, {w.shape[0]}) "
                         f"from x {shape_of(x)} and w {shape_of(w)}")
    return dy, x, w, bool(has_bias)


def _compose_dense_backward(k, dy, x, w, has_bias):
    db = k.dense_backward_bias(dy) if has_bias else None
    return k.dense_backward_input(dy, w), k.dense_backward_weight(dy, x), db


declare(Op(
    "dense", "dense", (Method("dense_forward", dense_forward),
                       Method("dense_backward", dense_backward, _compose_dense_backward)),
    grad=lambda dy, i, o, kw: ((dy, i[0], i[1]), dict(has_bias=i[2] is not None)),
    cuda={"dense_forward_kernel": "A2 A2 A1 B A2", "dense_backward_input_kernel": "A2 A2 A2",
          "dense_backward_weight_kernel": "A2 A2 A2", **helpers("channel_sum_kernel")},
    torch=lambda F, x, w, b=None: F.linear(x, w, b)))


# ====================================================================== element-wise activations
def _unary(x):
    check_array("x", x)
    return (x,)


def _unary_backward(dy, saved, saved_name):
    check_array("dy", dy)
    check_same("dy", dy, saved_name, saved)
    return dy, saved


def relu_forward(x):
    """y = max(x, 0), any shape."""
    return _unary(x)


def relu_backward(dy, x):
    """dx = dy where x > 0 (0 at 0, PyTorch's convention)."""
    return _unary_backward(dy, x, "x")


def leaky_relu_forward(x, negative_slope=0.01):
    """y = x if x > 0 else negative_slope * x."""
    return (*_unary(x), float(negative_slope))


def leaky_relu_backward(dy, x, negative_slope=0.01):
    """dx = dy if x > 0 else negative_slope * dy."""
    return (*_unary_backward(dy, x, "x"), float(negative_slope))


def sigmoid_forward(x):
    """y = 1 / (1 + exp(-x))."""
    return _unary(x)


def sigmoid_backward(dy, y):
    """dx = dy * y * (1 - y), in terms of the forward's output y."""
    return _unary_backward(dy, y, "y")


def tanh_forward(x):
    """y = tanh(x)."""
    return _unary(x)


def tanh_backward(dy, y):
    """dx = dy * (1 - y^2), in terms of the forward's output y."""
    return _unary_backward(dy, y, "y")


def _activation(name, forward, backward, uses_output, kernels, torch, **kw):
    grad = (lambda dy, i, o, k: ((dy, o), {})) if uses_output else (lambda dy, i, o, k: ((dy, i[0]), k))
    return declare(Op(name, "elementwise", (Method(f"{name}_forward", forward), Method(f"{name}_backward", backward)),
                      grad=grad, cuda=kernels, torch=torch, **kw))


_activation("relu", relu_forward, relu_backward, False,
            {"relu_forward_kernel": "A1 A1", "relu_backward_kernel": "A1 A1 A1"}, lambda F, x: F.relu(x))
_activation("leaky_relu", leaky_relu_forward, leaky_relu_backward, False,
            {"leaky_relu_forward_kernel": "A1 F A1", "leaky_relu_backward_kernel": "A1 A1 F A1"},
            lambda F, x, negative_slope=0.01: F.leaky_relu(x, negative_slope))
_activation("sigmoid", sigmoid_forward, sigmoid_backward, True,
            {"sigmoid_forward_kernel": "A1 A1", "sigmoid_backward_kernel": "A1 A1 A1"}, lambda F, x: F.sigmoid(x))
_activation("tanh", tanh_forward, tanh_backward, True,
            {"tanh_forward_kernel": "A1 A1", "tanh_backward_kernel": "A1 A1 A1"}, lambda F, x: F.tanh(x))


# ====================================================================== softmax, loss, argmax
def softmax_forward(x):
    """y (N, K) = softmax of each row of x (N, K)."""
    check_array("x", x, 2)
    return (x,)


def softmax_backward(dy, y):
    """dx (N, K) from dy and the forward's output y."""
    check_array("dy", dy, 2)
    check_same("dy", dy, "y", y)
    return dy, y


def _check_labels(logits, labels, name="logits"):
    check_array(name, logits, 2)
    check_array("labels", labels, 1, dtype=None)
    if labels.shape[0] != logits.shape[0]:
        raise ValueError(f"labels shape {shape_of(labels)} does not match {name} shape {shape_of(logits)}")
    if not np.issubdtype(np.dtype(labels.dtype), np.integer):
        raise ValueError(f"labels must be integers, got {np.dtype(labels.dtype).name}")
    return logits, labels


def softmax_cross_entropy_forward(logits, labels):
    """(loss, the mean over the batch: a float, or on a GPU a value whose float() reads it back; probs (N, K))
    from logits (N, K) and integer labels (N,)."""
    return _check_labels(logits, labels)


def softmax_cross_entropy_backward(probs, labels, weight=1.0):
    """dlogits (N, K) of the mean loss times ``weight`` (an auxiliary output's share): (probs - onehot) / N * weight."""
    if not (isinstance(weight, (int, float, np.floating)) and np.isfinite(weight)):
        raise ValueError(f"weight must be a finite number, got {weight!r}")
    return (*_check_labels(probs, labels, "probs"), float(weight))


def argmax(x):
    """(N,) int64 index of each row's maximum of x (N, K): np.argmax's rules (first maximum, first NaN)."""
    check_array("x", x, 2)
    if x.shape[1] < 1:
        raise ValueError(f"argmax needs at least one column, got x shape {shape_of(x)}")
    return (x,)


declare(Op("softmax", "elementwise", (Method("softmax_forward", softmax_forward),
                                      Method("softmax_backward", softmax_backward)),
           grad=lambda dy, i, o, kw: ((dy, o), {}),
           cuda={"softmax_forward_kernel": "A2 A2", "softmax_backward_kernel": "A2 A2 A2"},
           torch=lambda F, x: F.softmax(x, 1)))
declare(Op("softmax_cross_entropy", "elementwise",
           (Method("softmax_cross_entropy_forward", softmax_cross_entropy_forward),
            Method("softmax_cross_entropy_backward", softmax_cross_entropy_backward)),
           grad=lambda dy, i, o, kw: ((o[1], i[1]), {}), upstream=False,
           cuda={"softmax_cross_entropy_forward_kernel": ["A2 L64 A2 A1", "A2 L32 A2 A1"],
                 "softmax_cross_entropy_backward_kernel": ["A2 L64 F A2", "A2 L32 F A2"]}))
declare(Op("argmax", "elementwise", (Method("argmax", argmax),), cuda={"argmax_kernel": "A2 L64"}))


# ====================================================================== normalisation
def _check_channels(x, **params):
    check_array("x", x, (2, 4))
    for name, p in params.items():
        check_vector(name, p, x.shape[1], f"the {x.shape[1]} channels of x shape {shape_of(x)}")


def batch_norm_forward(x, gamma, beta, running_mean, running_var, training=True, momentum=0.1, eps=1e-5):
    """(y like x, save_mean (C,), save_invstd (C,)) for x (N, C) or (N, C, H, W); in training the running
    statistics are updated in place (unbiased variance), in evaluation they normalise."""
    _check_channels(x, gamma=gamma, beta=beta, running_mean=running_mean, running_var=running_var)
    if training and x.size // x.shape[1] < 2:
        raise ValueError(f"batch norm in training needs more than 1 value per channel, got x shape {shape_of(x)}")
    return x, gamma, beta, running_mean, running_var, bool(training), float(momentum), float(eps)


def batch_norm_backward(dy, x, gamma, save_mean, save_invstd, training=True):
    """(dx like x, dgamma (C,), dbeta (C,))."""
    _check_channels(x, gamma=gamma, save_mean=save_mean, save_invstd=save_invstd)
    check_same("dy", dy, "x", x)
    return dy, x, gamma, save_mean, save_invstd, bool(training)


def layer_norm_forward(x, gamma, beta, eps=1e-5):
    """(y (M, F), save_mean (M,), save_invstd (M,)): each row of x (M, F) normalised over its F features
    (biased variance), then scaled by gamma (F,) and shifted by beta (F,); PyTorch's layer_norm."""
    check_array("x", x, 2)
    for name, p in (("gamma", gamma), ("beta", beta)):
        check_vector(name, p, x.shape[1], f"the {x.shape[1]} features of x shape {shape_of(x)}")
    if not eps > 0:
        raise ValueError(f"layer norm eps must be > 0, got {eps!r}")
    return x, gamma, beta, float(eps)


def layer_norm_backward(dy, x, gamma, save_mean, save_invstd):
    """(dx (M, F), dgamma (F,), dbeta (F,)) from dy (M, F) and the forward's saved statistics (M,)."""
    check_array("x", x, 2)
    check_same("dy", dy, "x", x)
    check_vector("gamma", gamma, x.shape[1], f"the {x.shape[1]} features of x shape {shape_of(x)}")
    for name, p in (("save_mean", save_mean), ("save_invstd", save_invstd)):
        check_vector(name, p, x.shape[0], f"the {x.shape[0]} rows of x shape {shape_of(x)}")
    return dy, x, gamma, save_mean, save_invstd


def _lrn_args(size, alpha, beta, k):
    if int(size) < 1:
        raise ValueError(f"LRN size must be >= 1, got {size}")
    return int(size), float(alpha), float(beta), float(k)


def lrn_forward(x, size=5, alpha=1e-4, beta=0.75, k=1.0):
    """(y, scale) for x (N, C, H, W): PyTorch's LocalResponseNorm across channels."""
    check_array("x", x, 4)
    return (x, *_lrn_args(size, alpha, beta, k))


def lrn_backward(dy, x, y, scale, size=5, alpha=1e-4, beta=0.75, k=1.0):
    """dx (N, C, H, W) from dy and the forward's x, y and scale."""
    check_array("x", x, 4)
    for name, a in (("dy", dy), ("y", y), ("scale", scale)):
        check_array(name, a, 4)
        check_same(name, a, "x", x)
    return (dy, x, y, scale, *_lrn_args(size, alpha, beta, k))


def fused_batch_norm_forward(x, gamma, beta, running_mean, running_var, training=True, momentum=0.1, eps=1e-5,
                             relu=False, stats=None):
    """(y, save_mean (C,), save_invstd (C,)): ``batch_norm_forward``, then y = max(y, 0) when ``relu`` (a ReLU the
    graph fused); in training ``stats``, when given, are x's channel statistics in parts (3, C, T): for T
    disjoint non-empty parts of each channel's values, their count, mean and sum of squared deviations from that
    mean (``conv2d_forward_fused`` makes them), which a backend may use instead of a pass over x."""
    args = batch_norm_forward(x, gamma, beta, running_mean, running_var, training, momentum, eps)
    if stats is not None:
        check_array("stats", stats, 3, dtype=None)     # a backend's hint: float32 even where x is float64
        if np.dtype(stats.dtype).kind != "f":
            raise ValueError(f"stats must be a float array, got {np.dtype(stats.dtype).name}")
        if shape_of(stats)[:2] != (3, x.shape[1]) or stats.shape[2] < 1:
            raise ValueError(f"stats shape {shape_of(stats)} does not match the {x.shape[1]} channels of x shape "
                             f"{shape_of(x)}: expected (3, {x.shape[1]}, parts)")
    return (*args, bool(relu), stats)


def fused_batch_norm_backward(dy, x, gamma, save_mean, save_invstd, training=True, y=None):
    """(dx like x, dgamma (C,), dbeta (C,)) of ``fused_batch_norm_forward``; y, its output, when it applied the
    ReLU (dy then counts only where y > 0), else None."""
    args = batch_norm_backward(dy, x, gamma, save_mean, save_invstd, training)
    if y is not None:
        check_array("y", y)
        check_same("y", y, "x", x)
    return (*args, y)


def _compose_fused_batch_norm_forward(k, x, gamma, beta, running_mean, running_var, training, momentum, eps, relu,
                                      stats):
    y, mean, invstd = k.batch_norm_forward(x, gamma, beta, running_mean, running_var, training, momentum, eps)
    return (k.relu_forward(y) if relu else y), mean, invstd


def _compose_fused_batch_norm_backward(k, dy, x, gamma, save_mean, save_invstd, training, y):
    return k.batch_norm_backward(dy if y is None else k.relu_backward(dy, y), x, gamma, save_mean, save_invstd,
                                 training)


#: the CUDA batch-norm kernels (one set for both ops): two-stage reductions over (slices x channels) grids
_BN_CUDA = {"batch_norm_partials_kernel": "A3 I A3",
            "batch_norm_apply_kernel": "A3 A3 A1 A1 A1 A1 B B F F I A1 A1 A3",
            "batch_norm_backward_partials_kernel": "A3 A3 A3 B A1 A1 I A3",
            "batch_norm_backward_input_kernel": "A3 A3 A3 B A1 A1 A1 A3 B I A1 A1 A3"}
declare(Op("batch_norm", "norm", (Method("batch_norm_forward", batch_norm_forward),
                                  Method("batch_norm_backward", batch_norm_backward)),
           grad=lambda dy, i, o, kw: ((dy, i[0], i[1], o[1], o[2]), _pick(kw, "training")), cuda=dict(_BN_CUDA)))
declare(Op("fused_batch_norm", "norm",
           (Method("fused_batch_norm_forward", fused_batch_norm_forward, _compose_fused_batch_norm_forward),
            Method("fused_batch_norm_backward", fused_batch_norm_backward, _compose_fused_batch_norm_backward)),
           grad=lambda dy, i, o, kw: ((dy, i[0], i[1], o[1], o[2]),
                                      dict(_pick(kw, "training"), y=o[0] if kw.get("relu") else None)),
           cuda=dict(_BN_CUDA)))
declare(Op("layer_norm", "norm", (Method("layer_norm_forward", layer_norm_forward),
                                  Method("layer_norm_backward", layer_norm_backward)),
           grad=lambda dy, i, o, kw: ((dy, i[0], i[1], o[1], o[2]), {}),
           cuda={"layer_norm_forward_kernel": "A2 A1 A1 F A2 A1 A1",
                 "layer_norm_backward_input_kernel": "A2 A2 A1 A1 A1 A2",
                 "layer_norm_backward_params_kernel": "A2 A2 A1 A1 A1 A1"},
           bench=(Bench("layernorm-512x768", lambda rng: ([rng.standard_normal((512, 768)).astype(np.float32),
                                                           np.ones(768, np.float32), np.zeros(768, np.float32)], {})),),
           torch=lambda F, x, gamma, beta, eps=1e-5: F.layer_norm(x, (x.shape[1],), gamma, beta, eps)))
declare(Op("lrn", "norm", (Method("lrn_forward", lrn_forward), Method("lrn_backward", lrn_backward)),
           grad=lambda dy, i, o, kw: ((dy, i[0], o[0], o[1]), kw),
           cuda={"lrn_forward_kernel": "A3 I F F F A3 A3", "lrn_backward_kernel": "A3 A3 A3 A3 I F F A3"}))


# ====================================================================== dropout
def dropout_forward(x, p=0.5, training=True, seed=0):
    """(y like x, mask uint8 like x): inverted dropout whose mask is a hash of (seed, element index)."""
    check_array("x", x)
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout p must be in [0, 1), got {p}")
    return x, float(p), bool(training), int(seed)


def dropout_backward(dy, mask, p=0.5, training=True):
    """dx = dy * mask / (1 - p) in training, dy in evaluation."""
    check_array("dy", dy)
    check_array("mask", mask, dtype=np.uint8)
    check_same("dy", dy, "mask", mask)
    return dy, mask, float(p), bool(training)


declare(Op("dropout", "elementwise", (Method("dropout_forward", dropout_forward),
                                      Method("dropout_backward", dropout_backward)),
           grad=lambda dy, i, o, kw: ((dy, o[1]), _pick(kw, "p", "training")),
           cuda={"dropout_forward_kernel": "A1 u64 F F A1 U8", "dropout_backward_kernel": "A1 U8 F A1"}))


# ====================================================================== merge and pad
def concat_forward(xs):
    """y: the arrays of ``xs`` (same shape but axis 1) joined along axis 1."""
    if len(xs) < 1:
        raise ValueError("concat needs at least one input")
    for i, x in enumerate(xs):
        check_array(f"xs[{i}]", x)
        if shape_of(x)[:1] + shape_of(x)[2:] != shape_of(xs[0])[:1] + shape_of(xs[0])[2:]:
            raise ValueError(f"xs[{i}] shape {shape_of(x)} does not match xs[0] shape {shape_of(xs[0])} "
                             f"outside axis 1")
    return (list(xs),)


def concat_backward(dy, sizes):
    """[dx per input]: dy split along axis 1 into ``sizes``."""
    check_array("dy", dy)
    sizes = [int(s) for s in sizes]
    if sum(sizes) != dy.shape[1]:
        raise ValueError(f"sizes {sizes} do not add up to the {dy.shape[1]} channels of dy shape {shape_of(dy)}")
    return dy, sizes


def add_forward(xs):
    """y: the element-wise sum of the arrays of ``xs`` (all of one shape)."""
    if len(xs) < 1:
        raise ValueError("add needs at least one input")
    for i, x in enumerate(xs):
        check_array(f"xs[{i}]", x)
        check_same(f"xs[{i}]", x, "xs[0]", xs[0])
    return (list(xs),)


def add_backward(dy, n):
    """[dy] * n: every input gets the output's gradient."""
    check_array("dy", dy)
    return dy, int(n)


def _check_pads(x_shape, pads, name="x"):
    try:
        pads = tuple(int(p) for p in pads)
    except (TypeError, ValueError):
        raise ValueError(f"pads must be 4 ints (top, bottom, left, right), got {pads!r}") from None
    if len(pads) != 4:
        raise ValueError(f"pads must be 4 ints (top, bottom, left, right), got {pads!r}")
    H, W = x_shape[2] + pads[0] + pads[1], x_shape[3] + pads[2] + pads[3]
    if min(pads[0], pads[1]) < -x_shape[2] or min(pads[2], pads[3]) < -x_shape[3] or H < 1 or W < 1:
        raise ValueError(f"pads {pads} crop all of {name} shape {x_shape}")
    return pads


def pad2d_forward(x, pads=(0, 0, 0, 0), value=0.0):
    """y (N, C, H + top + bottom, W + left + right) filled with ``value``; a negative pad crops."""
    check_array("x", x, 4)
    return x, _check_pads(shape_of(x), pads), float(value)


def pad2d_backward(dy, pads=(0, 0, 0, 0)):
    """dx: the part of dy that came from x."""
    check_array("dy", dy, 4)
    return dy, tuple(-p for p in _check_pads(shape_of(dy), tuple(-int(p) for p in pads), "dy"))


declare(Op("concat", "elementwise", (Method("concat_forward", concat_forward),
                                     Method("concat_backward", concat_backward)),
           grad=lambda dy, i, o, kw: ((dy, [int(x.shape[1]) for x in i[0]]), {}),
           cuda={"concat_forward_kernel": "A3 I A3", "concat_backward_kernel": "A3 I A3"}))
declare(Op("add", "elementwise", (Method("add_forward", add_forward), Method("add_backward", add_backward)),
           grad=lambda dy, i, o, kw: ((dy, len(i[0])), {}), cuda={"add2_kernel": "A1 A1 B A1",
                                                                  **helpers("add_inplace_kernel")}))


def add_relu_forward(xs):
    """y = max(the element-wise sum of ``xs``, 0): an Add with the ReLU after it fused (one launch for two)."""
    return add_forward(xs)


def add_relu_backward(dy, y, n):
    """[dx] * n, dx = dy where y > 0 (y: the forward's output): every input's gradient."""
    check_array("dy", dy)
    check_same("dy", dy, "y", y)
    return dy, y, int(n)


declare(Op("add_relu", "elementwise",
           (Method("add_relu_forward", add_relu_forward, lambda k, xs: k.relu_forward(k.add_forward(xs))),
            Method("add_relu_backward", add_relu_backward,
                   lambda k, dy, y, n: [k.relu_backward(dy, y)] * n)),
           grad=lambda dy, i, o, kw: ((dy, o, len(i[0])), {}),
           cuda={"add2_kernel": "A1 A1 B A1", "relu_backward_kernel": "A1 A1 A1",
                 **helpers("add_inplace_kernel"), "relu_forward_kernel": "A1 A1"}))
declare(Op("pad2d", "pad", (Method("pad2d_forward", pad2d_forward), Method("pad2d_backward", pad2d_backward)),
           grad=lambda dy, i, o, kw: ((dy,), _pick(kw, "pads")), cuda={"pad2d_kernel": "A3 I I F A3"}))


# ====================================================================== optimizer updates (in place)
def sgd_update(param, grad, velocity, lr, momentum=0.0, nesterov=False, weight_decay=0.0, l1=0.0):
    """In place: v = momentum * v + g'; param -= lr * (g' + momentum * v if nesterov else v), where
    g' = grad + weight_decay * param + l1 * sign(param)."""
    check_array("param", param)
    check_same("grad", grad, "param", param)
    check_same("velocity", velocity, "param", param)
    return param, grad, velocity, float(lr), float(momentum), bool(nesterov), float(weight_decay), float(l1)


def adam_update(param, grad, m, v, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, l1=0.0):
    """In place: Adam with bias correction for step ``step`` (from 1), L2/L1 added to the gradient."""
    check_array("param", param)
    for name, a in (("grad", grad), ("m", m), ("v", v)):
        check_same(name, a, "param", param)
    if int(step) < 1:
        raise ValueError(f"adam step counts from 1, got {step}")
    return (param, grad, m, v, int(step), float(lr), float(beta1), float(beta2), float(eps), float(weight_decay),
            float(l1))


def _same_length(**lists):
    n = {name: len(v) for name, v in lists.items()}
    if len(set(n.values())) != 1:
        raise ValueError(f"the lists must have one entry per parameter, got lengths {n}")


def sgd_update_many(params, grads, velocities, lr, momentum=0.0, nesterov=False, weight_decay=0.0, l1=0.0):
    """``sgd_update`` of every parameter of the lists params, grads, velocities (arrays of any shapes, each
    grad and velocity like its param), in place: on a GPU one launch per 16 parameters."""
    params, grads, velocities = list(params), list(grads), list(velocities)
    _same_length(params=params, grads=grads, velocities=velocities)
    for p, g, v in zip(params, grads, velocities):
        sgd_update(p, g, v, lr)
    return params, grads, velocities, float(lr), float(momentum), bool(nesterov), float(weight_decay), float(l1)


def adam_update_many(params, grads, m, v, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
                     l1=0.0):
    """``adam_update`` of every parameter of the lists params, grads, m, v (all at the same ``step``), in place:
    on a GPU one launch per 16 parameters."""
    params, grads, m, v = list(params), list(grads), list(m), list(v)
    _same_length(params=params, grads=grads, m=m, v=v)
    for args in zip(params, grads, m, v):
        adam_update(*args, step)
    return (params, grads, m, v, int(step), float(lr), float(beta1), float(beta2), float(eps), float(weight_decay),
            float(l1))


def _compose_sgd_update_many(k, params, grads, velocities, *hyper):
    for p, g, v in zip(params, grads, velocities):
        k.sgd_update(p, g, v, *hyper)


def _compose_adam_update_many(k, params, grads, m, v, *hyper):
    for args in zip(params, grads, m, v):
        k.adam_update(*args, *hyper)


# CUDA: one multi-tensor kernel per optimizer (tuples of 16 flat arrays, code T16)
declare(Op("sgd_update", "elementwise", (Method("sgd_update", sgd_update),
                                         Method("sgd_update_many", sgd_update_many, _compose_sgd_update_many)),
           cuda={"sgd_update_kernel": "T16 T16 T16 F F B F F"}))
declare(Op("adam_update", "elementwise", (Method("adam_update", adam_update),
                                          Method("adam_update_many", adam_update_many, _compose_adam_update_many)),
           cuda={"adam_update_kernel": "T16 T16 T16 T16 F F F F F F F F F F"}))


# ====================================================================== point-wise math, layout, transposed conv
def _unary_fn(fn):
    from .kernels.pointwise import UNARY
    if fn not in UNARY:
        raise ValueError(f"fn must be one of {sorted(UNARY)}, got {fn!r}")
    return fn


def unary_forward(x, fn, alpha=0.0, beta=0.0):
    """y like x (any shape) = fn(x) element by element; fn: neg, abs, exp, log, sqrt, pow (x ** alpha), clip
    (to [alpha, beta]), hard_sigmoid, hard_swish (clip(alpha * x + beta, 0, 1), times x), elu (alpha), selu
    (alpha, gamma = beta), softplus, softsign, affine (alpha * x + beta), reciprocal."""
    check_array("x", x)
    return x, _unary_fn(fn), float(alpha), float(beta)


def unary_backward(dy, x, y, fn, alpha=0.0, beta=0.0):
    """dx like x = dy * fn'(x), from the forward's input x and output y."""
    check_array("dy", dy)
    check_same("dy", dy, "x", x)
    check_same("y", y, "x", x)
    return dy, x, y, _unary_fn(fn), float(alpha), float(beta)


def _binary_args(a, b, fn):
    from .kernels.pointwise import BINARY, broadcast_shape
    check_array("a", a)
    check_array("b", b)
    if fn not in BINARY:
        raise ValueError(f"fn must be one of {sorted(BINARY)}, got {fn!r}")
    return broadcast_shape(shape_of(a), shape_of(b))


def binary_forward(a, b, fn):
    """y = a fn b with numpy broadcasting (y has the broadcast shape); fn: add, sub, mul, div, pow (a ** b)."""
    _binary_args(a, b, fn)
    return a, b, fn


def binary_backward(dy, a, b, fn, need_a=True, need_b=True):
    """(da like a, db like b; None where not needed): dy (the broadcast shape) times each partial derivative,
    summed over the axes the operand was broadcast along."""
    out = _binary_args(a, b, fn)
    check_array("dy", dy)
    if shape_of(dy) != out:
        raise ValueError(f"dy shape {shape_of(dy)} does not match the broadcast shape {out} of a and b")
    return dy, a, b, fn, bool(need_a), bool(need_b)


def _perm(perm, ndim):
    perm = tuple(int(p) for p in perm)
    if sorted(perm) != list(range(ndim)):
        raise ValueError(f"perm {perm} is not a permutation of the {ndim} axes")
    return perm


def transpose_forward(x, perm):
    """y = x.transpose(perm), C-contiguous (any rank)."""
    check_array("x", x)
    return x, _perm(perm, len(x.shape))


def transpose_backward(dy, perm):
    """dx = dy transposed back by the inverse of ``perm``."""
    check_array("dy", dy)
    return dy, _perm(perm, len(dy.shape))


def _take_args(shape, indices, axis, size, name):
    axis = int(axis)
    if not 0 <= axis < len(shape):
        raise ValueError(f"axis {axis} is not an axis of {name} shape {shape}")
    indices = tuple(int(i) for i in np.asarray(indices).reshape(-1))
    if not indices or min(indices) < 0 or max(indices) >= size:
        raise ValueError(f"indices must be at least one int in [0, {size}), got {indices[:8]}")
    return indices, axis


def take_forward(x, indices, axis):
    """y: the slices ``indices`` (a list of ints in [0, x.shape[axis])) of x along ``axis``, numpy's take."""
    check_array("x", x)
    return (x, *_take_args(shape_of(x), indices, axis, x.shape[int(axis)] if len(x.shape) > int(axis) else 0, "x"))


def take_backward(dy, indices, axis, size):
    """dx (dy's shape with ``size`` along ``axis``): every dy slice added to the slice of x it was taken from."""
    check_array("dy", dy)
    indices, axis = _take_args(shape_of(dy), indices, axis, int(size), "dy")
    if len(indices) != dy.shape[axis]:
        raise ValueError(f"dy shape {shape_of(dy)} has {dy.shape[axis]} slices along axis {axis}, "
                         f"indices {len(indices)}")
    return dy, indices, axis, int(size)


def conv_transpose_geometry(x_shape, w_shape, stride, padding, output_padding, dilation, groups):
    """Normalised (stride, padding, output_padding, dilation, groups, y shape) of a transposed convolution."""
    stride, padding, dilation = pair("stride", stride), pair("padding", padding), pair("dilation", dilation)
    output_padding = pair("output_padding", output_padding)
    if min(stride) < 1 or min(dilation) < 1 or min(padding) < 0:
        raise ValueError(f"stride {stride} and dilation {dilation} must be >= 1, padding {padding} >= 0")
    if any(not 0 <= op < max(s, d) for op, s, d in zip(output_padding, stride, dilation)):
        raise ValueError(f"output_padding {output_padding} must be >= 0 and below the stride {stride} "
                         f"or the dilation {dilation}")
    groups = int(groups)
    N, C, H, W = x_shape
    if groups < 1 or C % groups or w_shape[0] != C:
        raise ValueError(f"w shape {w_shape} needs {C} input channels (x shape {x_shape}) divisible by "
                         f"groups={groups}")
    K, KH, KW = w_shape[1] * groups, w_shape[2], w_shape[3]
    OH = (H - 1) * stride[0] - 2 * padding[0] + dilation[0] * (KH - 1) + output_padding[0] + 1
    OW = (W - 1) * stride[1] - 2 * padding[1] + dilation[1] * (KW - 1) + output_padding[1] + 1
    if OH < 1 or OW < 1:
        raise ValueError(f"padding {padding} crops the whole output of x shape {x_shape} with w shape {w_shape}")
    return stride, padding, output_padding, dilation, groups, (N, K, OH, OW)


def conv_transpose2d_forward(x, w, b=None, stride=(1, 1), padding=(0, 0), output_padding=(0, 0), dilation=(1, 1),
                             groups=1):
    """y (N, K, OH, OW) = conv_transpose2d(x (N, C, H, W), w (C, K/groups, KH, KW)) + b (K,) or None, PyTorch's
    conv_transpose2d: OH = (H - 1) * stride - 2 * padding + dilation * (KH - 1) + output_padding + 1."""
    check_array("x", x, 4)
    check_array("w", w, 4)
    s, p, op, d, g, _ = conv_transpose_geometry(shape_of(x), shape_of(w), stride, padding, output_padding,
                                                dilation, groups)
    if b is not None:
        check_vector("b", b, w.shape[1] * g, f"w shape {shape_of(w)} with groups={g}")
    return x, w, b, s, p, op, d, g


def conv_transpose2d_backward(dy, x, w, stride=(1, 1), padding=(0, 0), output_padding=(0, 0), dilation=(1, 1),
                              groups=1, has_bias=True):
    """(dx like x, dw like w, db (K,) or None when not has_bias) from dy (N, K, OH, OW)."""
    for name, a in (("dy", dy), ("x", x), ("w", w)):
        check_array(name, a, 4)
    s, p, op, d, g, y_shape = conv_transpose_geometry(shape_of(x), shape_of(w), stride, padding, output_padding,
                                                      dilation, groups)
    if shape_of(dy) != y_shape:
        raise ValueError(f"dy shape {shape_of(dy)} does not match the output shape {y_shape}")
    return dy, x, w, s, p, op, d, g, bool(has_bias)


def _torch_unary(F, x, fn, alpha=0.0, beta=0.0):
    return {"neg": lambda: -x, "abs": lambda: x.abs(), "exp": lambda: x.exp(), "log": lambda: x.log(),
            "sqrt": lambda: x.sqrt(), "pow": lambda: x ** alpha, "clip": lambda: x.clamp(alpha, beta),
            "hard_sigmoid": lambda: (alpha * x + beta).clamp(0, 1),
            "hard_swish": lambda: x * (alpha * x + beta).clamp(0, 1), "elu": lambda: F.elu(x, alpha),
            "selu": lambda: beta * F.elu(x, alpha), "softplus": lambda: F.softplus(x),
            "softsign": lambda: F.softsign(x), "affine": lambda: alpha * x + beta,
            "reciprocal": lambda: x.reciprocal()}[fn]()


def _torch_binary(F, a, b, fn):
    return {"add": lambda: a + b, "sub": lambda: a - b, "mul": lambda: a * b, "div": lambda: a / b,
            "pow": lambda: a ** b}[fn]()


declare(Op("unary", "pointwise", (Method("unary_forward", unary_forward), Method("unary_backward", unary_backward)),
           grad=lambda dy, i, o, kw: ((dy, i[0], o), kw),
           cuda={"unary_forward_kernel": "A1 I F F A1", "unary_backward_kernel": "A1 A1 A1 I F F A1"},
           torch=_torch_unary))
declare(Op("binary", "pointwise", (Method("binary_forward", binary_forward),
                                   Method("binary_backward", binary_backward)),
           grad=lambda dy, i, o, kw: ((dy, i[0], i[1]), kw),
           cuda={"binary_forward_kernel": "A1 L64 A1 L64 L64 I A1",
                 "binary_partials_kernel": "A1 A1 L64 A1 L64 L64 I A1 A1",
                 "sum_to_kernel": "A1 L64 L64 L64 L64 A1"},
           torch=_torch_binary))
declare(Op("transpose", "layout", (Method("transpose_forward", transpose_forward),
                                   Method("transpose_backward", transpose_backward)),
           grad=lambda dy, i, o, kw: ((dy,), kw), cuda={"gather_strided_kernel": "A1 L64 L64 A1"},
           torch=lambda F, x, perm: x.permute(*perm)))
declare(Op("take", "layout", (Method("take_forward", take_forward), Method("take_backward", take_backward)),
           grad=lambda dy, i, o, kw: ((dy,), dict(kw, size=i[0].shape[kw["axis"]])),
           cuda={"take_forward_kernel": "A3 L64 A3", "take_backward_kernel": "A3 L64 L64 A3"},
           torch=lambda F, x, indices, axis: x[(slice(None),) * axis + (list(indices),)]))
declare(Op("conv_transpose2d", "conv_transpose",
           (Method("conv_transpose2d_forward", conv_transpose2d_forward),
            Method("conv_transpose2d_backward", conv_transpose2d_backward)),
           grad=lambda dy, i, o, kw: ((dy, i[0], i[1]), dict(kw, has_bias=i[2] is not None)),
           cuda={"conv_transpose2d_forward_kernel": "A4 A4 A1 B I I I I I I I A4",
                 "conv_transpose2d_backward_input_kernel": "A4 A4 I I I I I I I A4",
                 "conv_transpose2d_backward_weight_kernel": "A4 A4 I I I I I I I A4", **helpers("channel_sum_kernel")},
           torch=lambda F, x, w, b, stride=1, padding=0, output_padding=0, dilation=1, groups=1: F.conv_transpose2d(
               x, w, b, stride, padding, output_padding, groups, dilation)))


def describe() -> str:
    """The op table as text: each op, its public methods with their signatures, its CUDA kernels."""
    import inspect
    lines = []
    for op in OPS.values():
        lines.append(f"{op.name}  (kernels/cpu/{op.family}.py, kernels/cuda/{op.family}.py; "
                     f"{len(op.cuda)} CUDA kernel(s), {len(op.bench)} benchmark case(s))")
        for m in op.methods:
            doc = (m.check.__doc__ or "").strip().splitlines()
            lines.append(f"    {m.name}{inspect.signature(m.check)}")
            lines.extend(f"        {d.strip()}" for d in doc)
    return "\n".join(lines)


__all__ = ["Op", "Method", "Bench", "OPS", "describe", "CUDA_HELPERS", "declare", "helpers", "methods", "families",
           "check_array", "check_same", "check_vector", "conv_geometry", "pool_geometry", "pair", "shape_of"]
