"""Channel-blocked direct convolution on the CPU: register-tiled micro-kernels (oneDNN's design, our code).

Layouts (inside the CPU backend; the public API stays NCHW)
-----------------------------------------------------------
``V`` is the fp32 vector width: 16 lanes with AVX-512, 8 with AVX2, chosen from the CPU's features at run
time (``vector_width``; ``set_vector_width(8)`` or NUMBACNN_CPU_VECTOR=8 forces 8 on an AVX-512 host).

* input   xp : (CB, Hp, Wp, IL)  one image, zero padded; ``IL = V`` lanes of channels when C is a multiple of
                                V, ``IL = C`` when C < V (RGB, LeNet-5's 6: one block), else ``IL = 1``
                                (CB = C planes); the weight gradient's x has ``IL = 1`` for C < V too
* weights wb : (OB, KH, KW, CB, IL, V)  output channels in blocks of V (zero padded to OB*V)
* output  yb : (OB, OH, OWp, V)  one image; OWp = OW rounded up to a multiple of the tile width TW

The micro-kernel
----------------
One call computes one output row ``oh`` for ``OCB`` (1 or 2) blocks of V output channels.  The row is cut into
tiles of ``TW`` pixels; a tile keeps ``OCB x TW`` vector accumulators in registers for the whole reduction over
taps and input channels: per input value, ONE broadcast and OCB multiply-adds with weight vectors
(``simd.tile_fma``, unrolled over the IL lanes of a channel block).  ``TW`` and ``OCB`` fill the register
file (32 vector registers with AVX-512, 16 without: ``OCB*TW + OCB + 1`` of them).  Bodies are compiled per
(V, IL, column stride, TW, OCB) and cached on disk (``forward_body``); kernel size, row stride and dilation are
run-time loop bounds, so a model compiles one body per distinct layer shape at most.  The weight gradient's
bodies keep a tile of dw (input channels or kernel rows x taps x V output channels) over an image's pixels
(``weight_body``); dx is the forward body run on dy with the flipped weights (stride 1).

The drivers
-----------
``_images`` and ``_weight_images``, compiled once each, run any body through a first-class function pointer,
image by image: a task packs its image (NCHW -> blocked, in its thread's scratch), runs the body and unpacks
its rows straight into the NCHW result, so the blocked copies live in cache, never in memory.  A batch of one
is cut into chunks of rows (forward) or groups of tiles (weight gradient) so that both cores work.  Tasks
write disjoint outputs and sums run in an order fixed by the shapes: the same bits for any thread count.
The drivers are serial functions of one thread's share; ``launch``, the only parallel function among them,
runs a driver on every thread (each parallel function costs Numba ~2 s to compile, a serial one ~0.3 s).

``conv2d_forward(x, w, b, ...)`` returns None for what it does not cover (groups > 1): conv2d.py then runs
its phase-plane kernels.
"""
from __future__ import annotations

import collections
import functools
import hashlib

import numba
import numpy as np
from numba import njit, prange, types
from numba.core.types.function_type import CompileResultWAP, FunctionType
from numba.core.typing.typeof import typeof_impl

from ..geometry import out_size
from . import simd
from .simd import tile_fma, tile_fma_outer, tile_load, tile_relu, tile_store

__all__ = []     # reached through conv2d.py

F1 = types.float32[::1]
I1 = types.int64[::1]
#: every body: (a, b, c, d float32 arrays, ints, task index)
BODY = types.void(F1, F1, F1, F1, I1, types.int64)


# ------------------------------------------------------------------ the host's vector width
def _features() -> set:
    """The CPU features Numba compiles for (NUMBA_CPU_FEATURES when set, else the host's)."""
    if numba.config.CPU_FEATURES:
        return {f[1:] for f in str(numba.config.CPU_FEATURES).split(",") if f.startswith("+")}
    import llvmlite.binding as llvm
    return {k for k, v in llvm.get_host_cpu_features().items() if v}


@functools.lru_cache(maxsize=None)
def host_vector_width() -> int:
    """16 fp32 lanes where the CPU has AVX-512F, else 8 (AVX2, or two SSE registers)."""
    return 16 if "avx512f" in _features() else 8


@functools.lru_cache(maxsize=None)
def vector_registers() -> int:
    """Vector registers of the ISA: 32 with AVX-512 (also at 256 bits), 16 with AVX2."""
    return 32 if "avx512f" in _features() else 16


_forced = None


def set_vector_width(v=None):
    """Force the vector width (8 or 16; None: the host's).  Returns the previous setting."""
    global _forced
    if v is not None and int(v) not in (8, 16):
        raise ValueError(f"vector width must be 8 or 16, got {v!r}")
    old, _forced = _forced, None if v is None else int(v)
    return old


def vector_width() -> int:
    return _forced or host_vector_width()


# ------------------------------------------------------------------ when the blocked kernels pay
#: a blocked convolution converts x to the blocked layout and y back (work ~ (C + K) values a pixel, image by
#: image in cache for a batch, ``_images``) around a reduction of C/groups * KH * KW * K multiply-adds a pixel:
#: below this ratio the conversions cost more than the faster micro-kernels save.  Measured on an AVX-512 Xeon,
#: 2 cores, forward: LeNet-5's first layer (21) 0.8 ms on the phase planes against 1.1 ms blocked at batch 256
#: (faster blocked at batch 32), a CIFAR ResNet's first (3 -> 16 3x3, 23) 1.3 ms either way, 3 -> 32 (25) and
#: up faster blocked.  20 takes them all blocked: a model of such layers then never compiles the phase-plane
#: kernels (LeNet-5: 5 s less on a cold start, for 0.3 ms a batch of 256).  1x1 convolutions run on conv1x1.py.
MIN_INTENSITY = 20
#: NUMBACNN_CPU_CONV: "auto" (1x1 kernels on conv1x1.py, others blocked by MIN_INTENSITY), "blocked" (wherever
#: the kernels apply) or "planes" (never; neither the 1x1 kernels)
MODES = ("auto", "blocked", "planes")


def chosen(C, K, KH, KW, groups, mode="auto") -> bool:
    """Whether the blocked kernels run C -> K channels with a KH x KW kernel and ``groups`` (a group at a time;
    not for groups of one channel: depthwise; the backward of a grouped convolution stays on the phase
    planes)."""
    C, K = C // groups, K // groups
    if mode == "planes" or (groups > 1 and min(C, K) < 2):
        return False
    return mode == "blocked" or C * KH * KW * K >= MIN_INTENSITY * (C + K)


def weight_chosen(C, KH, KW, groups, mode="auto") -> bool:
    """Whether the weight gradient runs blocked where ``chosen`` says no: few input channels (a grayscale or RGB
    model input, whose layer computes only dw), where the register tile holds a channel's KH x KW taps."""
    return groups == 1 and mode == "auto" and C < KH and KH * KW <= vector_registers() - 2


# ------------------------------------------------------------------ forward
#: run-time ints of a forward body (``ip``): their positions
_FWD_INTS = ("CB", "Hp", "Wp", "OB", "OH", "OWp", "KH", "KW", "SH", "DH", "DW", "relu")


@functools.lru_cache(maxsize=None)
def forward_body(V, IL, SW, TW, OCB):
    """The forward body for V lanes, IL input lanes, column stride SW, TW-pixel tiles of OCB channel blocks
    (compiled once, then loaded from Numba's disk cache)."""
    return make_forward_body(V, IL, SW, TW, OCB, cache=True)


def make_forward_body(V, IL, SW, TW, OCB, cache=False):
    """A new forward body (``cache=False``: compiled here, so ``inspect_asm`` can show its machine code).

    body(xp, wb, bias, yb, ip, task): xp (N, CB, Hp, Wp, IL), wb (OB, KH, KW, CB, IL, V), bias (OB*V,),
    yb (N, OB, OH, OWp, V), all flat float32; ip the ints ``_FWD_INTS``; task = (n*(OB/OCB) + obg)*OH + oh.
    """
    def body(xp, wb, bias, yb, ip, task):
        CB, Hp, Wp, OB, OH, OWp = ip[0], ip[1], ip[2], ip[3], ip[4], ip[5]
        KH, KW, SH, DH, DW, relu = ip[6], ip[7], ip[8], ip[9], ip[10], ip[11]
        oh = task % OH
        r = task // OH
        ngroups = OB // OCB
        ob0 = (r % ngroups) * OCB
        n = r // ngroups
        plane = Hp * Wp * IL
        wstep = KH * KW * CB * IL * V              # the next block of V output channels
        for ow0 in range(0, OWp, TW):
            acc = tile_load(bias, ob0 * V, 0, V, V, TW, OCB)
            for kh in range(KH):
                xrow = ((n * CB * Hp + oh * SH + kh * DH) * Wp + ow0 * SW) * IL
                for kw in range(KW):
                    x0 = xrow + kw * DW * IL
                    w0 = ((ob0 * KH + kh) * KW + kw) * CB * IL * V
                    for cb in range(CB):        # the IL lanes of a channel block: one unrolled block of FMAs
                        acc = tile_fma(acc, xp, x0 + cb * plane, SW * IL, wb, w0 + cb * IL * V, wstep, IL)
            if relu:
                acc = tile_relu(acc)
            tile_store(yb, (((n * OB + ob0) * OH + oh) * OWp + ow0) * V, V, OH * OWp * V, acc)
    return _compile(body, f"forward_V{V}_IL{IL}_S{SW}_TW{TW}_OCB{OCB}", cache)


@functools.lru_cache(maxsize=None)
def _simd_digest() -> str:
    """A digest of simd.py: Numba's cache checks only this file's time stamp, so a body cached before simd.py's
    operations changed would otherwise be loaded with the old code."""
    with open(simd.__file__, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:10]


class _Entry(CompileResultWAP):
    """A compiled body's entry point (Numba's ``CompileResultWAP``) whose Numba type is built once: Numba types
    a first-class function argument anew at every call otherwise (~30 us a call of a driver)."""

    def __init__(self, cres):
        super().__init__(cres)
        self.numba_type = FunctionType(cres.signature)


@typeof_impl.register(_Entry)
def _typeof_entry(val, c):
    return val.numba_type


@functools.lru_cache(maxsize=None)
def _pointer(body):
    """``body`` as the drivers take it: its compiled entry point's address (``_Entry``), which a call passes on as
    it is, where a dispatcher object is looked up anew by every call (~35 us)."""
    return _Entry(body.overloads[body.signatures[0]])


def _compile(body, name, cache):
    """``body`` compiled with the BODY signature.  Its own name gives each specialisation its own files in Numba's
    cache: closures of one name share an index whose entries two processes compiling different
    specialisations at once could cross (Numba numbers data files per index), loading the wrong code.  The name
    ends with ``_simd_digest()``."""
    body.__qualname__ = body.__name__ = f"{name}_{_simd_digest()}"
    return njit(BODY, fastmath=True, cache=cache, error_model="numpy")(body)


def _tile(OW, OB, regs):
    """(TW, OCB): the output tile of a row, filling ``regs`` vector registers (OCB*TW accumulators, OCB weight
    vectors, one broadcast) with the least padded work (a tile costs ~2 pixels more than its width)."""
    OCB = 2 if OB % 2 == 0 else 1
    most = min((regs - 1 - OCB) // OCB, 28)
    return min(range(1, most + 1), key=lambda tw: (-(-OW // tw) * (tw + 2), -tw)), OCB


@functools.lru_cache(maxsize=256)
def forward_plan(x_shape, w_shape, stride, padding, dilation, groups, V, regs):
    """The sizes of a blocked forward (a dict), or None where it does not apply (grouped convolutions)."""
    N, C, H, W = x_shape
    K, Cg, KH, KW = w_shape
    if groups != 1:
        return None     # conv2d_forward runs a grouped convolution a group at a time
    if V == 16 and K <= 8:
        V = 8                                   # one ymm of output channels instead of a half-empty zmm
    (SH, SW), (ph, pw), (DH, DW) = stride, padding, dilation
    OH, OW = out_size(H, KH, SH, ph, DH), out_size(W, KW, SW, pw, DW)
    IL = V if C % V == 0 else C if C < V else 1     # all of a few channels in one block: one unrolled FMA block
    OB = -(-K // V)
    TW, OCB = _tile(OW, OB, regs)
    OWp = -(-OW // TW) * TW
    Hp = H + 2 * ph
    Wp = max(W + 2 * pw, (OWp - 1) * SW + (KW - 1) * DW + 1)
    ints = dict(CB=C // IL, Hp=Hp, Wp=Wp, OB=OB, OH=OH, OWp=OWp, KH=KH, KW=KW, SH=SH, DH=DH, DW=DW, relu=0)
    return dict(V=V, IL=IL, SW=SW, TW=TW, OCB=OCB, ph=ph, pw=pw, OW=OW, ints=ints)


# ------------------------------------------------------------------ layout conversions and the drivers
@njit(cache=True)
def _pack_block(x, dst, cb, ph, pw, r0, r1, c0, C):
    """dst[r, pw + w, i] = x[c0 + cb*IL + i, r - ph, w] for the padded rows r0 <= r < r1, zero where that is
    padding or a channel >= C (x's channels c0 ... c0 + C - 1: a group's).  x : (channels, H, W) one image,
    dst : (Hp, Wp, IL) block ``cb`` of its packed input."""
    H, W = x.shape[1], x.shape[2]
    IL = dst.shape[2]
    for r in range(r0, r1):
        h = r - ph
        row = dst[r]
        if h < 0 or h >= H:
            row[:, :] = 0.0
            continue
        row[:pw, :] = 0.0
        row[pw + W:, :] = 0.0
        for i in range(IL):
            c = cb * IL + i
            if c < C:
                src = x[c0 + c, h]
                for w in range(W):
                    row[pw + w, i] = src[w]
            else:
                for w in range(W):
                    row[pw + w, i] = 0.0


@njit(cache=True)
def _unpack_block(src, y, base, mask, ob, mode, oh0, oh1, k0, K):
    """y[k0 + ob*V + i, oh, ow] = src[oh, ow, i] for oh0 <= oh < oh1, ow < OW and ob*V + i < K (y's channels
    k0 ... k0 + K - 1: a group's); with ``mode`` 1 plus base, with 2 plus base and then 0 where mask <= 0 (a
    ReLU's backward, relu_backward's rule).

    src : (OH, OWp, V) one block of one image's blocked output; y, base, mask : (channels, OH, OW) that image.
    """
    OW = y.shape[2]
    V = src.shape[2]
    for i in range(min(V, K - ob * V)):
        k = k0 + ob * V + i
        for oh in range(oh0, oh1):
            s = src[oh]
            d = y[k, oh]
            if mode == 0:
                for ow in range(OW):
                    d[ow] = s[ow, i]
            else:
                b = base[k, oh]
                m = mask[k, oh]
                for ow in range(OW):
                    v = b[ow] + s[ow, i]
                    d[ow] = v if mode == 1 or m[ow] > 0 else 0


#: every driver: (body, eight flat float32 arrays, ints, thread t, threads T); one thread's share of a kernel
DRIVER = types.void(types.FunctionType(BODY), F1, F1, F1, F1, F1, F1, F1, F1, I1, types.int64, types.int64)


@njit(parallel=True, cache=True)      # compiled at its first call (a signature would compile it at import)
def launch(driver, fn, a, b, c, d, e, f, g, h, ip, T):
    """driver(fn, a ... h, ip, t, T) for t = 0 ... T-1 on Numba's threads: the one parallel region of every
    driver (compiled once, where a parallel function of its own costs each driver ~2 s of a cold start)."""
    for t in prange(T):
        driver(fn, a, b, c, d, e, f, g, h, ip, np.int64(t), T)


def driver(py_func):
    """``py_func`` compiled with the DRIVER signature at its first use (then from Numba's disk cache), as
    ``launch`` takes it."""
    return _pointer(_compiled_driver(py_func))


@functools.lru_cache(maxsize=None)
def _compiled_driver(py_func):
    return njit(DRIVER, cache=True)(py_func)


#: ``_images``'s ints after the body's ``_FWD_INTS`` and the group's channels (ip[12:16])
_IMG_INTS = ("N", "Cx", "H", "W", "Ky", "OH", "OW", "ph", "pw", "OCB", "mode", "R", "IL", "V")


def _images(fn, x, wb, bias, y, base, mask, xs, ys, ip, t, T):
    """Thread t's share of a forward body over the batch, one (image, chunk of output rows, group of OCB output
    blocks) a task: the input rows the chunk reads packed into the thread's scratch (once for the chunk's
    groups), the rows computed into the thread's output scratch and unpacked into y (``_unpack_block``'s
    ``mode``) while both are in cache.  ``R`` chunks an image: 1 for a batch, more to give both cores work at
    batch 1.  Tasks are split statically over the T threads; each writes its own part of y, so any T and R give
    the same bits.

    Flat arrays: x (N, Cx, H, W); y, base, mask (N, Ky, OH, OW); xs, ys (T, CB*Hp*Wp*IL), (T, OB*OH*OWp*V); ip as
    ``_FWD_INTS`` (tasks of one image: n = 0), then the group's first input channel, its input channels, its
    first output channel and its output channels, then ``_IMG_INTS``.
    """
    CB, Hp, Wp, OB, OH, OWp = ip[0], ip[1], ip[2], ip[3], ip[4], ip[5]
    KH, SH, DH = ip[6], ip[8], ip[9]
    cx0, C, ck0, K = ip[12], ip[13], ip[14], ip[15]
    N, Cx, H, W, Ky, OHy, OWy = ip[16], ip[17], ip[18], ip[19], ip[20], ip[21], ip[22]
    ph, pw, OCB, mode, R, IL, V = ip[23], ip[24], ip[25], ip[26], ip[27], ip[28], ip[29]
    x4 = x.reshape((N, Cx, H, W))
    y4, b4, m4 = y.reshape((N, Ky, OHy, OWy)), base.reshape((N, Ky, OHy, OWy)), mask.reshape((N, Ky, OHy, OWy))
    xl = xs[t * CB * Hp * Wp * IL:(t + 1) * CB * Hp * Wp * IL]
    yl = ys[t * OB * OH * OWp * V:(t + 1) * OB * OH * OWp * V]
    xt, yt = xl.reshape((CB, Hp, Wp, IL)), yl.reshape((OB, OH, OWp, V))
    ngroups = OB // OCB
    ntasks = N * R * ngroups
    last = -1
    for task in range(t * ntasks // T, (t + 1) * ntasks // T):
        g, nc = task % ngroups, task // ngroups
        n, c = nc // R, nc % R
        oh0, oh1 = c * OH // R, (c + 1) * OH // R
        if nc != last:
            for cb in range(CB):
                _pack_block(x4[n], xt[cb], cb, ph, pw, oh0 * SH, (oh1 - 1) * SH + (KH - 1) * DH + 1, cx0, C)
            last = nc
        for oh in range(oh0, oh1):
            fn(xl, wb, bias, yl, ip, g * OH + oh)
        for ob in range(g * OCB, (g + 1) * OCB):
            if ob * V < K:
                _unpack_block(yt[ob], y4[n], b4[n], m4[n], ob, mode, oh0, oh1, ck0, K)


#: ``_weight_images``'s ints after the body's ``_DW_INTS`` (ip[19:])
_WIMG_INTS = ("ph", "pw", "G", "tc", "Nx", "Cx", "H", "W", "Ky", "OHy", "OWy", "parts", "IL", "V")


def _weight_images(fn, x, dy, dwb, xs, ds, unused1, unused2, unused3, ip, t, T):
    """Thread t's share of a weight-gradient body over the batch in ``parts`` parts of images, one (part, group
    of tiles) a task: each image of the part and its output gradient packed into the thread's scratch, then the
    group's share of the J = OB*chunks (output block, channel chunk) tiles of the image added to the part's dwb
    row.  ``G`` groups split a part's tiles when the batch is small (both cores busy at batch 1); every tile has
    one task, so the sums run in a fixed order whatever the threads; the caller sums the parts in order.  A task
    packs only the blocks of x and dy its tiles read (tile j: output block j // chunks, input channels
    (j % chunks) * tc ... + tc - 1).

    Flat arrays: x (Nx, Cx, H, W), dy (Nx, Ky, OHy, OWy), dwb (parts, OB*C*KH*KW*V) zeroed, xs (T, CB*Hp*Wp*IL),
    ds (T, OB*OH*OW*V); ip as ``_DW_INTS`` for one image (N = P = 1, oy = ox = 0), then ``_WIMG_INTS``.
    """
    CB, Hp, Wp, OB, Hd, Wd = ip[0], ip[1], ip[2], ip[3], ip[4], ip[5]
    chunks = ip[15]
    ph, pw, G, tc, N, Cx, H, W = ip[19], ip[20], ip[21], ip[22], ip[23], ip[24], ip[25], ip[26]
    Ky, OHy, OWy, P, IL, V = ip[27], ip[28], ip[29], ip[30], ip[31], ip[32]
    x4, d4 = x.reshape((N, Cx, H, W)), dy.reshape((N, Ky, OHy, OWy))
    xl = xs[t * CB * Hp * Wp * IL:(t + 1) * CB * Hp * Wp * IL]
    dl = ds[t * OB * Hd * Wd * V:(t + 1) * OB * Hd * Wd * V]
    xt, dt = xl.reshape((CB, Hp, Wp, IL)), dl.reshape((OB, Hd, Wd, V))
    row = dwb.shape[0] // P
    J = OB * chunks
    ntasks = P * G
    for task in range(t * ntasks // T, (t + 1) * ntasks // T):
        p, gi = task // G, task % G
        j0, j1 = gi * J // G, (gi + 1) * J // G
        xb, db = np.zeros(CB, np.bool_), np.zeros(OB, np.bool_)
        for j in range(j0, j1):
            c0 = (j % chunks) * tc
            for cb in range(c0 // IL, (c0 + tc - 1) // IL + 1):
                xb[cb] = True
            db[j // chunks] = True
        out = dwb[p * row:(p + 1) * row]
        for n in range(p * N // P, (p + 1) * N // P):
            for cb in range(CB):
                if xb[cb]:
                    _pack_block(x4[n], xt[cb], cb, ph, pw, 0, Hp, 0, Cx)
            for ob in range(OB):
                if db[ob]:
                    _pack_block(d4[n], dt[ob], ob, 0, 0, 0, Hd, 0, Ky)
            for j in range(j0, j1):
                fn(xl, dl, xl, out, ip, j)


@njit(cache=True)
def _pack_weight_block(w, wb, flip, scale, t):
    """Block t = (ob, cb) of wb[ob, kh, kw, cb, i, v] = the weight from input channel cb*IL + i to output
    channel k = ob*V + v at tap (kh, kw) times scale[k], 0 past the last output channel: w[k, c, kh, kw], or
    with ``flip`` (the weights of dx as a forward convolution of dy) w[c, k, KH-1-kh, KW-1-kw]."""
    OB, KH, KW, CB, IL, V = wb.shape
    K = w.shape[1] if flip else w.shape[0]
    ob, cb = t // CB, t % CB
    for kh in range(KH):
        for kw in range(KW):
            for i in range(IL):
                c = cb * IL + i
                dst = wb[ob, kh, kw, cb, i]
                for v in range(V):      # writes in order; the rows read stay in L1 across i
                    k = ob * V + v
                    if k >= K:
                        dst[v] = 0.0
                    elif flip:
                        dst[v] = w[c, k, KH - 1 - kh, KW - 1 - kw] * scale[k]
                    else:
                        dst[v] = w[k, c, kh, kw] * scale[k]


@njit(cache=True, parallel=True)
def _pack_weights(w, wb, flip, scale, parallel):
    """Every (ob, cb) block of wb (``_pack_weight_block``), on Numba's threads when ``parallel``."""
    n = wb.shape[0] * wb.shape[3]
    if parallel:
        for t in prange(n):
            _pack_weight_block(w, wb, flip, scale, t)
    else:
        for t in range(n):
            _pack_weight_block(w, wb, flip, scale, t)


#: weights of at least this many floats are packed on all threads (below, waking the pool costs more)
PARALLEL_PACK = 1 << 16


def pack_weights(w, V, IL, K_blocks, flip=False, scale=None):
    """wb : (OB, KH, KW, CB, IL, V) from w : (K, C, KH, KW) (or with ``flip``, for dx, from w : (C, K, KH, KW)
    with its taps reversed), zero padded to OB*V output channels; output channel k times scale[k] when a
    ``scale`` (K,) is given (a batch norm folded in)."""
    C, K = (w.shape[0], w.shape[1]) if flip else (w.shape[1], w.shape[0])
    scale = np.ones(K, np.float32) if scale is None else np.ascontiguousarray(scale, dtype=np.float32)
    wb = np.empty((K_blocks, w.shape[2], w.shape[3], C // IL, IL, V), np.float32)
    _pack_weights(np.ascontiguousarray(w, dtype=np.float32), wb, bool(flip), scale, wb.size >= PARALLEL_PACK)
    return wb


#: layout conversions since the last ``CONVERSIONS.clear()``: tensors moved into the blocked layout ("in") and
#: back to NCHW ("out"), and their bytes; each goes image by image through the cache (``_images``).
#: ``benchmarks/bench_devices.py`` prints them for a training step.
CONVERSIONS: collections.Counter = collections.Counter()


def _count(direction, a):
    CONVERSIONS[direction] += 1
    CONVERSIONS[direction + " bytes"] += a.nbytes


#: the blocked layouts' buffers, reused from call to call (a fresh 4 MiB array is a page fault per 4 KiB page
#: every call: as long as the kernel itself on a ResNet layer); at most ``WORK_BUFFERS`` shapes are kept
_WORK: collections.OrderedDict = collections.OrderedDict()
WORK_BUFFERS = 16


def _work(name, shape):
    """A float32 buffer of ``shape`` for ``name`` (its contents are whatever the last call left)."""
    key = (name, shape)
    a = _WORK.pop(key, None)
    _WORK[key] = a = np.empty(shape, np.float32) if a is None else a
    while len(_WORK) > WORK_BUFFERS:
        _WORK.popitem(last=False)
    return a


def conv2d_forward(x, w, b, stride, padding, dilation, groups, relu=False, scale=None):
    """y = conv2d(x, w) + b (then max(y, 0) when ``relu``) on the blocked kernels, a group at a time for
    ``groups`` > 1, or None where they do not apply (a group of one input or output channel: depthwise); with
    ``scale`` (K,) the weights of output channel k are multiplied by scale[k] as they are packed.
    x : (N, C, H, W) float32 C-contiguous, w : (K, C // groups, KH, KW) float32, b : (K,) float32 or None;
    returns y : (N, K, OH, OW) float32."""
    groups = int(groups)
    K, Cg = w.shape[0], w.shape[1]
    Kg = K // groups
    if groups > 1 and min(Cg, Kg) < 2:
        return None
    x_shape = (x.shape[0], Cg) + tuple(x.shape[2:])
    p = _plan(x_shape, (Kg,) + tuple(w.shape[1:]), stride, padding, dilation, 1)
    if groups == 1:
        return _forward(x, p, w, b, relu, scale=scale)
    y = np.empty((x.shape[0], K, p["ints"]["OH"], p["OW"]), np.float32)
    for g in range(groups):
        part = slice(g * Kg, (g + 1) * Kg)
        _forward(x, p, w[part], None if b is None else b[part], relu, scale=None if scale is None else scale[part],
                 out=y, channels=(g * Cg, g * Kg))
    return y


def _plan(x_shape, w_shape, stride, padding, dilation, groups):
    return forward_plan(tuple(x_shape), tuple(w_shape), tuple(stride), tuple(padding), tuple(dilation), int(groups),
                        vector_width(), vector_registers())


#: ``_images`` cuts images into chunks of rows until every thread has at least this many tasks (a batch
#: needs none; a batch of one still keeps both cores busy)
IMAGE_TASKS = 4


def _mutable(a):
    """``a``, or a copy of it where it is read-only (the drivers' signatures take writable arrays)."""
    return a if a.flags.writeable else a.copy()


def _flat(a):
    """``a`` float32 C-contiguous and writable, flat (the drivers take flat arrays)."""
    return _mutable(np.ascontiguousarray(a, dtype=np.float32)).reshape(-1)


def _forward(x, p, w, b, relu, base=None, mask=None, flip=False, scale=None, out=None, channels=(0, 0)):
    """y (N, K, OH, OW) of plan ``p`` from x (N, C, H, W) C-contiguous float32 (``base`` + y when ``base`` is
    given, then zeroed where ``mask`` <= 0 when a mask is: the gradient the graph summed so far, a ReLU's
    backward), by ``_images``; with ``flip`` w is a convolution's (K, C, KH, KW) whose dx this computes
    from x = dy.  With ``out`` and ``channels`` = (c0, k0) (a group), the plan's C input channels are x's from
    c0 on and its K outputs go to out's channels from k0 on; out is returned."""
    V, IL, g = p["V"], p["IL"], p["ints"]
    N, K = x.shape[0], w.shape[1 if flip else 0]
    wb = pack_weights(w, V, IL, g["OB"], flip, scale)
    bias = np.zeros(g["OB"] * V, np.float32)
    if b is not None:
        bias[:K] = b
    C = g["CB"] * IL if IL > 1 else g["CB"]
    C = min(C, w.shape[0 if flip else 1])
    ints = np.array([g[k] for k in _FWD_INTS[:-1]] + [int(relu), channels[0], C, channels[1], K], np.int64)
    body = forward_body(V, IL, p["SW"], p["TW"], p["OCB"])
    y = np.empty((N, K, g["OH"], p["OW"]), np.float32) if out is None else out
    mode = 0 if base is None else 1 if mask is None else 2
    T = numba.get_num_threads()
    tasks = N * (g["OB"] // p["OCB"])
    R = min(g["OH"], -(-IMAGE_TASKS * T // tasks))          # row chunks an image: 1 for a batch
    xs = _work("xs", (T * g["CB"] * g["Hp"] * g["Wp"] * IL,))
    ys = _work("ys", (T * g["OB"] * g["OH"] * g["OWp"] * V,))
    ints = np.array(ints.tolist() + [N, x.shape[1], x.shape[2], x.shape[3], y.shape[1], y.shape[2], y.shape[3],
                                     p["ph"], p["pw"], p["OCB"], mode, R, IL, V], np.int64)
    yf = y.reshape(-1)
    launch(driver(_images), _pointer(body), _flat(x), wb.reshape(-1), bias, yf, yf if base is None else _flat(base),
           yf if mask is None else _flat(mask), xs, ys, ints, T)
    _count("in", x)
    _count("out", y)
    return y


# ------------------------------------------------------------------ backward
#: run-time ints of a weight-gradient body (``ip``): their positions
_DW_INTS = ("CB", "Hp", "Wp", "OB", "Hd", "Wd", "oy", "ox", "OH", "OW", "KH", "SH", "SW", "DH", "DW", "chunks",
            "P", "N", "C")
#: a weight gradient is summed in P = min(N, IMAGE_PARTS) parts of the batch, added up in order at the end
#: (``_weight_images``): the parts depend on the shapes only, so any thread count gives the same bits; a
#: part's tiles are split into groups (tasks) only as far as the threads need work (a small batch)
IMAGE_PARTS = 8


@functools.lru_cache(maxsize=None)
def weight_body(V, IL, KW, TC, ROWS=False):
    """The weight-gradient body for V lanes of output channels, IL input lanes, KW taps a row and TC input
    channels a tile, or with ``ROWS`` the TC = KH kernel rows of one channel (compiled once, then loaded from
    Numba's disk cache)."""
    return make_weight_body(V, IL, KW, TC, ROWS, cache=True)


def make_weight_body(V, IL, KW, TC, ROWS=False, cache=False):
    """A new weight-gradient body.  body(xp, dyp, _, dwb, ip, task): xp (N, CB, Hp, Wp, IL) the padded input,
    dyp (N, OB, Hd, Wd, V) the output gradient at offset (oy, ox), dwb (P, OB, C, KH, KW, V) zeroed, all flat
    float32; ip the ints ``_DW_INTS``; task = (part*OB + ob)*chunks + chunk.

    Per image of the part and kernel row, the tile holds dw for TC input channels x KW taps x V output channels
    in TC*KW registers for the whole reduction over the image's output pixels: per pixel ONE load of the
    output-gradient vector and a broadcast input value per accumulator (``simd.tile_fma_outer``); the tile is
    added to dwb after each (image, row): the image's input stays in cache for all KH rows.  With ``ROWS`` (few
    input channels: RGB, LeNet-5's one) the tile is the KH x KW taps of one channel instead, one task a
    channel.  Sums run in a fixed order (images, rows, pixels).
    """
    def body(xp, dyp, unused, dwb, ip, task):
        CB, Hp, Wp, OB, Hd, Wd, oy, ox = ip[0], ip[1], ip[2], ip[3], ip[4], ip[5], ip[6], ip[7]
        OH, OW, KH, SH, SW, DH, DW = ip[8], ip[9], ip[10], ip[11], ip[12], ip[13], ip[14]
        chunks, P, N, C = ip[15], ip[16], ip[17], ip[18]
        c0 = (task % chunks) * (1 if ROWS else TC)
        r = task // chunks
        ob = r % OB
        part = r // OB
        cb, i0 = c0 // IL, c0 % IL
        if ROWS:                                    # the tile's j: kernel rows
            jstep, rows, jout = DH * Wp * IL, 1, KW * V
        else:                                       # the tile's j: input channels
            jstep, rows, jout = 1 if IL > 1 else Hp * Wp, KH, KH * KW * V
        for n in range(part * N // P, (part + 1) * N // P):
            for kh in range(rows):
                out = ((((part * OB + ob) * C + c0) * KH + kh) * KW) * V
                acc = tile_load(dwb, out, V, jout, V, KW, TC)
                for oh in range(OH):
                    xrow = (((n * CB + cb) * Hp + oh * SH + kh * DH) * Wp) * IL + i0
                    drow = (((n * OB + ob) * Hd + oh + oy) * Wd + ox) * V
                    for ow in range(OW):
                        acc = tile_fma_outer(acc, xp, xrow + ow * SW * IL, jstep, DW * IL, dyp, drow + ow * V)
                tile_store(dwb, out, V, jout, acc)
    return _compile(body, f"weight_V{V}_IL{IL}_KW{KW}_TC{TC}{'_rows' if ROWS else ''}", cache)


@functools.lru_cache(maxsize=256)
def weight_plan(x_shape, w_shape, stride, padding, dilation, groups, V, regs):
    """The sizes of a blocked weight gradient (a dict), or None where it does not apply (grouped convolutions,
    rows of more taps than the register file holds)."""
    N, C, H, W = x_shape
    K, Cg, KH, KW = w_shape
    if groups != 1 or KW > regs - 2:
        return None
    if V == 16 and K <= 8:
        V = 8
    (SH, SW), (ph, pw), (DH, DW) = stride, padding, dilation
    OH, OW = out_size(H, KH, SH, ph, DH), out_size(W, KW, SW, pw, DW)
    IL = V if C % V == 0 else 1
    most = (regs - 2) // KW                     # TC*KW accumulators, the gradient vector, a broadcast
    TC = max(d for d in range(1, min(most, C) + 1) if (IL if IL > 1 else C) % d == 0)
    rows = TC < KH <= most                      # a channel's KH x KW taps fill more registers
    TC = KH if rows else TC
    OB = -(-K // V)
    J = OB * (C if rows else C // TC)           # tiles an image
    P = min(N, IMAGE_PARTS)
    ints = dict(CB=C // IL, Hp=H + 2 * ph, Wp=W + 2 * pw, OB=OB, OH=OH, OW=OW, KH=KH, SH=SH, SW=SW, DH=DH, DW=DW,
                chunks=C if rows else C // TC, P=P, N=N, C=C)
    return dict(V=V, IL=IL, KW=KW, TC=TC, rows=rows, ph=ph, pw=pw, ints=ints, J=J)


def input_plan(x_shape, w_shape, stride, padding, dilation, groups):
    """(plan of the forward convolution that computes dx, dy's padding) for stride 1, or None (strides > 1,
    padding wider than the kernel's reach, grouped convolutions)."""
    K, Cg, KH, KW = w_shape
    (DH, DW) = dilation
    pad = ((KH - 1) * DH - padding[0], (KW - 1) * DW - padding[1])
    if tuple(stride) != (1, 1) or min(pad) < 0 or groups != 1:
        return None
    N, C, H, W = x_shape
    OH, OW = out_size(H, KH, 1, padding[0], DH), out_size(W, KW, 1, padding[1], DW)
    p = _plan((N, K, OH, OW), (C, K, KH, KW), (1, 1), pad, dilation, 1)
    return None if p is None else (p, pad)


def conv2d_backward(dy, x, w, x_shape, w_shape, stride, padding, dilation, groups, want_dx=True, want_dw=True,
                    base=None, mask=None):
    """(dx | None, dw | None) of y = conv2d(x, w) on the blocked kernels: dx as the forward convolution of dy
    with the flipped weights (stride 1 only: None for other strides), dw by ``weight_body``.  Returns None
    where the kernels do not apply (groups > 1).  With ``base``, dx is base + dx (zeroed where ``mask`` <= 0
    when a mask is given), in the unpacking pass.

    dy : (N, K, OH, OW), x : (N, C, H, W), w : (K, C, KH, KW) float32 C-contiguous (x only for dw, w only for
    dx: None otherwise); x_shape, w_shape their shapes; base, mask : x's shape float32.
    """
    if groups != 1:
        return None
    x_shape, w_shape = tuple(int(v) for v in x_shape), tuple(int(v) for v in w_shape)
    geo = (tuple(stride), tuple(padding), tuple(dilation))
    dx = None
    ip = input_plan(x_shape, w_shape, *geo, 1) if want_dx else None
    if ip is not None:
        dx = _forward(dy, ip[0], w, None, False, base, mask, flip=True)
    if not want_dw:
        return dx, None
    q = weight_plan(x_shape, w_shape, *geo, 1, vector_width(), vector_registers())
    return dx, None if q is None else _weight_gradient(dy, x, w_shape, q)


def _weight_gradient(dy, x, w_shape, q):
    """dw (K, C, KH, KW) of plan ``q`` by ``_weight_images``; the parts summed in order."""
    V, IL, g = q["V"], q["IL"], dict(q["ints"])
    P, body = g["P"], weight_body(V, q["IL"], q["KW"], q["TC"], q["rows"])
    dwb = np.zeros((P, g["OB"], g["C"], w_shape[2], w_shape[3], V), np.float32)
    g.update(Hd=g["OH"], Wd=g["OW"], oy=0, ox=0, N=1, P=1)
    T = numba.get_num_threads()
    xs = _work("wxs", (T * g["CB"] * g["Hp"] * g["Wp"] * IL,))
    ds = _work("wds", (T * g["OB"] * g["OH"] * g["OW"] * V,))
    G = min(q["J"], -(-IMAGE_TASKS * T // P))        # groups of a part's tiles: work for every thread
    ints = np.array([g[k] for k in _DW_INTS] + [q["ph"], q["pw"], G, 1 if q["rows"] else q["TC"], *x.shape,
                                                 *dy.shape[1:], P, IL, V], np.int64)
    xf = _flat(x)
    launch(driver(_weight_images), _pointer(body), xf, _flat(dy), dwb.reshape(-1), xs, ds, xf, xf, xf, ints, T)
    _count("in", x)
    _count("in", dy)
    s = dwb.sum(axis=0) if P > 1 else dwb[0]
    return np.ascontiguousarray(s.transpose(0, 4, 1, 2, 3).reshape(-1, *w_shape[1:])[:w_shape[0]])
