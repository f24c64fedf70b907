"""1x1 convolutions on the CPU straight on NCHW: pixels in the vector lanes, no layout conversion.

A 1x1 convolution of one image is y[k, p] = sum_c w[k, c] x[c, p] over its P = H*W pixels, and in NCHW a
channel's pixels are contiguous.  So where the channel-blocked kernels (``blocked.py``) put channels in the
lanes and convert x and y to and from their layout (for a 1x1 of a few hundred channels about as much work
as the multiply-adds: ResNet-50's and GoogLeNet's bottlenecks), these kernels keep NCHW and put PIXELS in the
lanes.  The forward and dx (the same sum with the transposed weights) hold a register tile of ``TK`` output
channels x ``TPV`` vectors of V pixels over the whole reduction over input channels: per input channel ``TPV``
vector loads of x and ``TK`` broadcast weights, ``TK x TPV`` fused multiply-adds (``simd.tile_fma`` with the
roles of the blocked kernels' operands swapped).  A block of TK outputs' weights is read as (C, TK), its
outputs side by side: packed so for the forward, dx's transposed weights are that already.  The last tile of
a row of pixels or of output channels overlaps the one before it (it recomputes a few outputs, the same
values), so nothing is padded or copied.  A stride > 1 takes the strided pixels into a contiguous copy first
(dx: computed there, then spread).  Every task writes its own outputs: the same bits for any thread count.

The weight gradient stays on the other kernels (``conv2d.py``): with pixels in the lanes each of its sums ends
in a sum across lanes, where the blocked weight body keeps output channels in the lanes.
"""
from __future__ import annotations

import functools

import numba
import numpy as np
from numba import njit

from . import blocked
from .simd import tile_affine, tile_fma, tile_relu, tile_store, tile_zero

__all__ = []     # reached through conv2d.py

#: about half a core's L2 cache: an image of x up to this size is read again from L2 for every block of weights
#: (measured on an AVX-512 Xeon with 2 MiB of L2 a core: below, blocks in the outer loop were up to 2x faster;
#: above, pixel tiles in the outer loop)
L2_BYTES = 1 << 20


#: run-time ints of a forward body (``ip``): their positions
_FWD_INTS = ("C", "P", "K", "KB", "PT", "G", "relu", "kinner", "scratch", "wc", "packed")


@njit(cache=True, inline="always")
def _task(task, KB, PT, G, kinner):
    """(image, group, weight block, pixel tile) of a task: ((n*G + g)*KB + kb)*PT + pt, or with ``kinner``
    ((n*G + g)*PT + pt)*KB + kb (a pixel tile's x kept in cache over all weight blocks)."""
    if kinner:
        kb, r = task % KB, task // KB
        pt, r = r % PT, r // PT
    else:
        pt, r = task % PT, task // PT
        kb, r = r % KB, r // KB
    return r // G, r % G, kb, pt


def applies(KH, KW, padding, groups, C, K, H, W, stride, V) -> bool:
    """Whether these kernels can run a convolution: a 1x1 kernel without padding, at least one vector of output
    pixels and at least 2 channels a group each way."""
    if (KH, KW) != (1, 1) or tuple(padding) != (0, 0) or min(C // groups, K // groups) < 2:
        return False
    OH, OW = (H - 1) // stride[0] + 1, (W - 1) // stride[1] + 1
    return OH * OW >= V


def chosen(N, C, K, H, W, stride, groups, V, blocked_pays) -> bool:
    """Whether they run it (given ``applies``): where the blocked kernels do not pay (``blocked_pays`` false),
    for one or two images (the blocked kernels cut an image into chunks of rows), and where the output's pixels
    fill whole vectors.  Measured on an AVX-512 Xeon, 2 cores, against the blocked kernels, forward and dx: 2x
    faster at batch 1 on ResNet-50's 1x1s, 1.1-2x at batch 16 on 56x56 and 28x28 images; 0.7-0.9x at batch 16 on
    14x14 and 7x7 (a quarter of the last vector, or 15 of 16 lanes, computed for nothing)."""
    OH, OW = (H - 1) // stride[0] + 1, (W - 1) // stride[1] + 1
    return not blocked_pays or N <= 2 or (OH * OW) % V == 0


# ------------------------------------------------------------------ forward
def _tiles(V, regs):
    """(TPV, TK) register tiles: TPV*TK accumulators + TPV pixel vectors + a broadcast within ``regs``."""
    return [(t, min((regs - 1 - t) // t, 28)) for t in (1, 2, 3, 4)]


def forward_plan(K, P, V, regs):
    """(TPV, TK): the tile with the least work for K output channels of P pixels (the overlapping last tiles
    recompute), ties to the wider pixel tile (fewer broadcasts a multiply-add)."""
    best = None
    for tpv, tk in _tiles(V, regs):
        tk = min(tk, K)
        if tpv * V > P:
            continue
        cost = -(-K // tk) * tk * -(-P // (tpv * V)) * tpv
        key = (cost, -tpv)
        if best is None or key < best[0]:
            best = (key, (tpv, tk))
    return best[1]


@functools.lru_cache(maxsize=None)
def forward_body(V, TK, TPV):
    """The forward body for V-pixel vectors, TK output channels and TPV pixel vectors a tile (compiled once,
    then loaded from Numba's disk cache)."""
    return make_forward_body(V, TK, TPV, cache=True)


def make_forward_body(V, TK, TPV, cache=False):
    """body(x, w, sb, y, ip, task): x (N, G*C, P), w the weights, sb (2*G*K*V,) each output's scale then each
    output's bias, V copies each, y (N, G*K, P) (with ``scratch``: (TK, TPV*V), the tile alone), all flat
    float32; ip the ints ``_FWD_INTS`` (C, K: a group's channels); task as ``_task``.  The weights of output k of
    group g from its input c are at w[g*K*C + k + c*wc]: dx's, the transposed (K, C) of a convolution, read
    where they are, or with ``packed`` at w[k + c*TK] (wc = TK), the task's block of TK outputs as the driver
    copied it: a block's TK outputs side by side either way (immediate offsets in the FMAs)."""
    def body(x, w, sb, y, ip, task):
        C, P, K, KB, PT, G = ip[0], ip[1], ip[2], ip[3], ip[4], ip[5]
        relu, kinner, wc = ip[6], ip[7], ip[9]
        n, g, kb, pt = _task(task, KB, PT, G, kinner)
        k0 = min(kb * TK, K - TK)
        p0 = min(pt * TPV * V, P - TPV * V)
        acc = tile_zero(V, TK, TPV)
        xi = ((n * G + g) * C) * P + p0
        wi = 0 if ip[10] else g * K * C + k0
        for c in range(C):
            acc = tile_fma(acc, w, wi + c * wc, 1, x, xi + c * P, V, 1)
        acc = tile_affine(acc, sb, (g * K + k0) * V, sb, ((G + g) * K + k0) * V)
        if relu:
            acc = tile_relu(acc)
        if ip[8]:                       # the driver's scratch: (TK, TPV*V)
            tile_store(y, 0, TPV * V, V, acc)
        else:
            tile_store(y, ((n * G + g) * K + k0) * P + p0, P, V, acc)
    return blocked._compile(body, f"conv1x1_V{V}_TK{TK}_TPV{TPV}", cache)


@njit(cache=True)
def _pack_block(w, dst, w0, C, TK):
    """dst[c*TK + i] = w[w0 + i*C + c]: the weights of TK outputs, rows of C from w0 on, read a line of each row
    at a time."""
    for c0 in range(0, C, 16):
        for i in range(TK):
            row = w0 + i * C
            for c in range(c0, min(c0 + 16, C)):
                dst[c * TK + i] = w[row + c]


#: ``_forward``'s ints after the body's ``_FWD_INTS``
_DRV_INTS = ("mode", "TK", "TPVV", "N")


def _pack_blocks(fn, unused, w, a3, a4, a5, a6, a7, ws, ip, t, T):
    """Thread t's share of the G*KB blocks of TK outputs' weights copied as (C, TK) into ws's rows (``packed`` 2:
    blocks read again by other pixel tiles or images)."""
    C, K, KB, G, TK = ip[0], ip[2], ip[3], ip[5], ip[12]
    for gb in range(t * G * KB // T, (t + 1) * G * KB // T):
        g, kb = gb // KB, gb % KB
        _pack_block(w, ws[gb * C * TK:(gb + 1) * C * TK], (g * K + min(kb * TK, K - TK)) * C, C, TK)


def _forward(fn, x, w, sb, y, base, mask, ys, ws, ip, t, T):
    """Thread t's share of a forward body's tasks (every image, group, block of TK outputs and pixel tile), split
    statically over the T threads.

    With ``packed`` (ip) the body reads a block of TK output channels' weights copied as (C, TK) (rows of w a
    power-of-two apart, read in place, would share one set of the L1 cache: 4 KiB aliasing): with ``packed`` 2
    ``_pack_blocks`` copied them all first; with 1 (one image, blocks in the outer loop) the thread copies its
    task's block into its part of ``ws``, once for the tasks of one block in a row.  With ``mode`` 0 the body
    stores straight into y (an overlapping last tile writes the same values again); with 1 it stores into the
    thread's scratch (ip's ``scratch`` set) and the task writes base + the outputs it owns (its tile less the
    overlap) into y, with 2 also 0 where mask <= 0 (a ReLU's backward).  Flat arrays as the body's; base, mask
    like y (y itself when ``mode`` is 0); ys (T, TK*TPVV), ws (T or G*KB, C*TK); ip as ``_FWD_INTS`` then
    ``_DRV_INTS`` (TPVV = TPV*V pixels a tile)."""
    C, P, K, KB, PT, G, kinner, packed = ip[0], ip[1], ip[2], ip[3], ip[4], ip[5], ip[7], ip[10]
    mode, TK, TPVV, N = ip[11], ip[12], ip[13], ip[14]
    ntasks = N * G * KB * PT
    yl = ys[t * TK * TPVV:(t + 1) * TK * TPVV]
    last = -1
    for task in range(t * ntasks // T, (t + 1) * ntasks // T):
        n, g, kb, pt = _task(task, KB, PT, G, kinner)
        k0, p0 = min(kb * TK, K - TK), min(pt * TPVV, P - TPVV)
        gb = g * KB + kb
        wb = gb if packed == 2 else t
        wl = w if packed == 0 else ws[wb * C * TK:(wb + 1) * C * TK]
        if packed == 1 and gb != last:
            _pack_block(w, wl, (g * K + k0) * C, C, TK)       # once for the tasks of one block in a row
            last = gb
        if mode == 0:
            fn(x, wl, sb, y, ip, task)
            continue
        fn(x, wl, sb, yl, ip, task)
        for k in range(kb * TK, min(kb * TK + TK, K)):
            o = ((n * G + g) * K + k) * P
            s = (k - k0) * TPVV - p0
            for p in range(pt * TPVV, min(pt * TPVV + TPVV, P)):
                v = base[o + p] + yl[s + p]
                y[o + p] = v if mode == 1 or mask[o + p] > 0 else 0


def _subsample(x, stride):
    """x's pixels at the stride, contiguous (x itself for stride 1)."""
    if tuple(stride) == (1, 1):
        return x
    return np.ascontiguousarray(x[:, :, ::stride[0], ::stride[1]])


def forward(x, w, b, stride, groups=1, relu=False, scale=None, base=None, mask=None, transposed=False):
    """y = conv2d(x, w) + b for a 1x1 kernel (then max(y, 0) with ``relu``; output k as scale[k] * conv + b[k]
    when a ``scale`` is given; base + y, zeroed where mask <= 0, with ``base``/``mask``), every group in one
    parallel region.  x : (N, C, H, W) float32 C-contiguous, w : (K, C // groups, 1, 1) (with ``transposed``, w
    is (C, K // groups, 1, 1) and the weights are its transpose: dx's), b : (K,) or None; base, mask like y.
    Returns y (N, K, OH, OW)."""
    x = _subsample(x, stride)
    N, C, OH, OW = x.shape
    G = int(groups)
    K = w.shape[1] * G if transposed else w.shape[0]
    Cg, Kg, P = C // G, K // G, OH * OW
    V = blocked.vector_width()
    TPV, TK = forward_plan(Kg, P, V, blocked.vector_registers())
    KB, PT = -(-Kg // TK), -(-P // (TPV * V))
    # an image in L2: read again from there for every block of weights (blocks outer: y written row by row);
    # a larger one a pixel tile at a time, kept in cache over all weight blocks
    kinner = int(C * P * 4 > L2_BYTES)
    y = np.empty((N, K, OH, OW), np.float32)
    sb = np.empty((2, K, V), np.float32)
    sb[0] = 1.0 if scale is None else np.asarray(scale, np.float32)[:, None]
    sb[1] = 0.0 if b is None else np.asarray(b, np.float32)[:, None]
    mode = 0 if base is None else 1 if mask is None else 2
    T = numba.get_num_threads()
    packed = 0 if transposed else 1 if N == 1 and not kinner else 2
    ip = np.array([Cg, P, Kg, KB, PT, G, int(relu), kinner, int(mode > 0), Kg if transposed else TK, packed,
                   mode, TK, TPV * V, N], np.int64)
    yf, wf = y.reshape(-1), _flat(w)
    ws = blocked._work("1x1 w", ((1,), (T * Cg * TK,), (G * KB * Cg * TK,))[packed])
    ys = blocked._work("1x1", (T * TK * TPV * V,))
    body = blocked._pointer(forward_body(V, TK, TPV))
    if packed == 2:
        blocked.launch(blocked.driver(_pack_blocks), body, yf, wf, yf, yf, yf, yf, yf, ws, ip, T)
    blocked.launch(blocked.driver(_forward), body, _flat(x), wf, sb.reshape(-1), yf,
                   yf if base is None else _flat(base), yf if mask is None else _flat(mask), ys, ws, ip, T)
    return y


_flat = blocked._flat


def backward_input(dy, w, x_shape, stride, groups=1, base=None, mask=None):
    """dx (x_shape) of y = conv2d(x, w) for a 1x1 kernel: the forward sum of dy with the transposed weights;
    base + dx (zeroed where mask <= 0) with ``base``.  For strides > 1 dx is 0 between the strided pixels."""
    if tuple(stride) == (1, 1):
        return forward(dy, w, None, (1, 1), groups, base=base, mask=mask, transposed=True)
    part = forward(dy, w, None, (1, 1), groups, transposed=True)
    dx = np.zeros(x_shape, np.float32) if base is None else np.array(base, np.float32)
    view = dx[:, :, ::stride[0], ::stride[1]]
    view += part
    if mask is not None:
        dx[np.asarray(mask) <= 0] = 0
    return dx
