"""Direct 2-D convolution on the CPU (Numba ``@njit``), NCHW / OIHW float32.

No im2col and no BLAS: every direction is one hot loop that adds a few
weighted, shifted copies of a contiguous run of a scratch image into an
accumulator run (docs/ARCHITECTURE.md, "Performance notes").

How any stride and dilation become one stride-1 loop
-----------------------------------------------------
A block of images is copied, zero padded, into a scratch split into
``sh * sw`` *phases*: phase ``(a, b)`` holds the padded pixels whose row is
``a`` mod ``sh`` and column ``b`` mod ``sw``.  Tap ``(i, j)`` of the kernel
reads padded row ``oh*sh + i*dh``, which is row ``oh + (i*dh)//sh`` of phase
``(i*dh) % sh``: in the phase planes every tap is a plain shift.  Flattening
a phase plane row by row (row pitch ``Ws``), output ``(oh, ow)`` sits at
``oh*Ws + ow`` and its tap ``(i, j)`` at a fixed ``offset + oh*Ws + ow``, so
one output channel is one contiguous run (the extra columns of each row are
computed and dropped).  With stride 1 there is a single phase, the padded
image.  The images of a block are stacked in the plane (slots of ``Hs x Ws``
that share their zero padding, see ``_slots``) so that small images still
give runs of about ``_RUN`` floats.

* forward: run of output channel ``k`` = sum over its taps of
  ``w * scratch[offset : offset + L]``.
* backward input: the same loop, transposed: the runs are the phases of
  ``dx``, the source is ``dy`` padded by the largest tap shift, the taps are
  those of the kernel falling in that phase (a stride-``s`` transposed
  convolution is ``s*s`` small stride-1 convolutions).
* backward weight: ``dw[k, c, i, j]`` is the dot product of the run of
  ``dy[n, k]`` (zero outside the outputs) with the scratch run at the tap's
  offset; image blocks are split into at most ``_PARTS`` parts, each with its
  own ``dw`` buffer, and the buffers are summed in order at the end.  The
  parts depend on the batch and the geometry, never on the thread count, so
  any number of threads gives the same bits (so does the bias gradient).

``conv2d_backward`` computes dx, dw and db in one parallel region: each
thread takes its share of the dx blocks, then of the dw blocks, then of the
images for db, so Numba's thread pool wakes once per backward pass rather
than three times (``conv2d_backward_input`` and ``conv2d_backward_weight``
run the same region with the other gradients switched off).

Taps are consumed eight at a time for two output channels at once, weights
and source runs held in locals: each source run is loaded once for both
channels and each accumulator once per eight multiply-adds, and the
innermost loop vectorizes (it indexes slices, never ``x[i + offset]``).
Each thread zeroes its scratch once; the copies write the same cells every
time, so padding stays zero.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from ... import config
from ..geometry import out_size
from . import blocked, conv1x1
from .elementwise import _flat, _relu_fwd

__all__ = ["conv2d_forward", "conv2d_forward_fused", "conv2d_forward_norm", "conv2d_backward",
           "conv2d_backward_add", "conv2d_backward_input", "conv2d_backward_weight", "conv2d_backward_bias"]


# ------------------------------------------------------------------ geometry
def _geometry(H, W, KH, KW, stride, padding, dilation):
    """Sizes shared by the three directions (see the module docstring)."""
    sh, sw = int(stride[0]), int(stride[1])
    ph, pw = int(padding[0]), int(padding[1])
    dh, dw = int(dilation[0]), int(dilation[1])
    OH = out_size(H, KH, sh, ph, dh)
    OW = out_size(W, KW, sw, pw, dw)
    if OH < 1 or OW < 1:
        raise ValueError(f"conv2d: kernel {KH}x{KW} (dilation {(dh, dw)}) does not fit a {H}x{W} input "
                         f"with padding {(ph, pw)}")
    Hq = -(-(H + 2 * ph) // sh)  # rows and columns of the padded image in one phase
    Wq = -(-(W + 2 * pw) // sw)
    return sh, sw, ph, pw, dh, dw, OH, OW, Hq, Wq


# ------------------------------------------------------------------ the hot loops
@njit(cache=True, fastmath=True)
def _accumulate(acc, src, offs, ws, T):
    """acc[t] += sum over m < T of ws[m] * src[offs[m] + t], for t < len(acc).

    acc : (L,) float32, src : (S,) float32, offs : (>=T,) int64, ws : (>=T,) float32
    """
    L = acc.shape[0]
    m = 0
    while m + 8 <= T:
        w0, w1, w2, w3 = ws[m], ws[m + 1], ws[m + 2], ws[m + 3]
        w4, w5, w6, w7 = ws[m + 4], ws[m + 5], ws[m + 6], ws[m + 7]
        s0 = src[offs[m]:offs[m] + L]
        s1 = src[offs[m + 1]:offs[m + 1] + L]
        s2 = src[offs[m + 2]:offs[m + 2] + L]
        s3 = src[offs[m + 3]:offs[m + 3] + L]
        s4 = src[offs[m + 4]:offs[m + 4] + L]
        s5 = src[offs[m + 5]:offs[m + 5] + L]
        s6 = src[offs[m + 6]:offs[m + 6] + L]
        s7 = src[offs[m + 7]:offs[m + 7] + L]
        for t in range(L):
            acc[t] += (w0 * s0[t] + w1 * s1[t] + w2 * s2[t] + w3 * s3[t]
                       + w4 * s4[t] + w5 * s5[t] + w6 * s6[t] + w7 * s7[t])
        m += 8
    if m + 4 <= T:
        w0, w1, w2, w3 = ws[m], ws[m + 1], ws[m + 2], ws[m + 3]
        s0 = src[offs[m]:offs[m] + L]
        s1 = src[offs[m + 1]:offs[m + 1] + L]
        s2 = src[offs[m + 2]:offs[m + 2] + L]
        s3 = src[offs[m + 3]:offs[m + 3] + L]
        for t in range(L):
            acc[t] += w0 * s0[t] + w1 * s1[t] + w2 * s2[t] + w3 * s3[t]
        m += 4
    while m < T:
        w0 = ws[m]
        s0 = src[offs[m]:offs[m] + L]
        for t in range(L):
            acc[t] += w0 * s0[t]
        m += 1


@njit(cache=True, fastmath=True)
def _accumulate2(acc0, acc1, src, offs, ws0, ws1, T):
    """_accumulate for two channels that share their tap offsets: every source run is loaded
    once for both (a 2-channel register tile; about 1.6x faster than two single passes).

    acc0, acc1 : (L,) float32, src : (S,) float32, offs : (>=T,) int64, ws0, ws1 : (>=T,) float32
    """
    L = acc0.shape[0]
    m = 0
    while m + 8 <= T:
        w0, w1, w2, w3 = ws0[m], ws0[m + 1], ws0[m + 2], ws0[m + 3]
        w4, w5, w6, w7 = ws0[m + 4], ws0[m + 5], ws0[m + 6], ws0[m + 7]
        v0, v1, v2, v3 = ws1[m], ws1[m + 1], ws1[m + 2], ws1[m + 3]
        v4, v5, v6, v7 = ws1[m + 4], ws1[m + 5], ws1[m + 6], ws1[m + 7]
        s0 = src[offs[m]:offs[m] + L]
        s1 = src[offs[m + 1]:offs[m + 1] + L]
        s2 = src[offs[m + 2]:offs[m + 2] + L]
        s3 = src[offs[m + 3]:offs[m + 3] + L]
        s4 = src[offs[m + 4]:offs[m + 4] + L]
        s5 = src[offs[m + 5]:offs[m + 5] + L]
        s6 = src[offs[m + 6]:offs[m + 6] + L]
        s7 = src[offs[m + 7]:offs[m + 7] + L]
        for t in range(L):
            x0, x1, x2, x3 = s0[t], s1[t], s2[t], s3[t]
            x4, x5, x6, x7 = s4[t], s5[t], s6[t], s7[t]
            acc0[t] += w0 * x0 + w1 * x1 + w2 * x2 + w3 * x3 + w4 * x4 + w5 * x5 + w6 * x6 + w7 * x7
            acc1[t] += v0 * x0 + v1 * x1 + v2 * x2 + v3 * x3 + v4 * x4 + v5 * x5 + v6 * x6 + v7 * x7
        m += 8
    if m + 4 <= T:
        w0, w1, w2, w3 = ws0[m], ws0[m + 1], ws0[m + 2], ws0[m + 3]
        v0, v1, v2, v3 = ws1[m], ws1[m + 1], ws1[m + 2], ws1[m + 3]
        s0 = src[offs[m]:offs[m] + L]
        s1 = src[offs[m + 1]:offs[m + 1] + L]
        s2 = src[offs[m + 2]:offs[m + 2] + L]
        s3 = src[offs[m + 3]:offs[m + 3] + L]
        for t in range(L):
            x0, x1, x2, x3 = s0[t], s1[t], s2[t], s3[t]
            acc0[t] += w0 * x0 + w1 * x1 + w2 * x2 + w3 * x3
            acc1[t] += v0 * x0 + v1 * x1 + v2 * x2 + v3 * x3
        m += 4
    while m < T:
        w0, v0 = ws0[m], ws1[m]
        s0 = src[offs[m]:offs[m] + L]
        for t in range(L):
            acc0[t] += w0 * s0[t]
            acc1[t] += v0 * s0[t]
        m += 1


@njit(cache=True, fastmath=True)
def _dot_taps2(out0, out1, d0, d1, src, offs, T):
    """out0[m] += sum_t d0[t] * src[offs[m] + t] and out1 likewise with d1, for m < T.

    out0, out1 : (>=T,) float32, d0, d1 : (L,) float32, src : (S,) float32, offs : (>=T,) int64
    """
    L = d0.shape[0]
    m = 0
    while m + 4 <= T:
        s0 = src[offs[m]:offs[m] + L]
        s1 = src[offs[m + 1]:offs[m + 1] + L]
        s2 = src[offs[m + 2]:offs[m + 2] + L]
        s3 = src[offs[m + 3]:offs[m + 3] + L]
        a0 = a1 = a2 = a3 = np.float32(0.0)
        b0 = b1 = b2 = b3 = np.float32(0.0)
        for t in range(L):
            u, v = d0[t], d1[t]
            x0, x1, x2, x3 = s0[t], s1[t], s2[t], s3[t]
            a0 += u * x0
            a1 += u * x1
            a2 += u * x2
            a3 += u * x3
            b0 += v * x0
            b1 += v * x1
            b2 += v * x2
            b3 += v * x3
        out0[m] += a0
        out0[m + 1] += a1
        out0[m + 2] += a2
        out0[m + 3] += a3
        out1[m] += b0
        out1[m + 1] += b1
        out1[m + 2] += b2
        out1[m + 3] += b3
        m += 4
    while m < T:
        s0 = src[offs[m]:offs[m] + L]
        a0 = b0 = np.float32(0.0)
        for t in range(L):
            a0 += d0[t] * s0[t]
            b0 += d1[t] * s0[t]
        out0[m] += a0
        out1[m] += b0
        m += 1


@njit(cache=True, fastmath=True)
def _dot_taps(out, d, src, offs, T):
    """out[m] += sum over t of d[t] * src[offs[m] + t], for m < T.

    out : (>=T,) float32, d : (L,) float32, src : (S,) float32, offs : (>=T,) int64
    """
    L = d.shape[0]
    m = 0
    while m + 4 <= T:
        s0 = src[offs[m]:offs[m] + L]
        s1 = src[offs[m + 1]:offs[m + 1] + L]
        s2 = src[offs[m + 2]:offs[m + 2] + L]
        s3 = src[offs[m + 3]:offs[m + 3] + L]
        a0 = np.float32(0.0)
        a1 = np.float32(0.0)
        a2 = np.float32(0.0)
        a3 = np.float32(0.0)
        for t in range(L):
            v = d[t]
            a0 += v * s0[t]
            a1 += v * s1[t]
            a2 += v * s2[t]
            a3 += v * s3[t]
        out[m] += a0
        out[m + 1] += a1
        out[m + 2] += a2
        out[m + 3] += a3
        m += 4
    while m < T:
        s0 = src[offs[m]:offs[m] + L]
        a0 = np.float32(0.0)
        for t in range(L):
            a0 += d[t] * s0[t]
        out[m] += a0
        m += 1


# ------------------------------------------------------------------ scratch images
def _blocking(N, image_size, threads):
    """(images per block, number of blocks): blocks of whole images whose run is about _RUN floats,
    as many blocks as a multiple of the thread count so that no thread idles at the end."""
    nb = max(1, min(N, _RUN // max(1, image_size)))
    nblk = -(-N // nb)
    if N >= threads:
        nblk = -(-nblk // threads) * threads
    nb = -(-N // nblk)
    return nb, -(-N // nb)


def _slots(H, W, ph, pw, sh, sw, OH, OW):
    """(Hs, Ws): rows and columns of one image slot in a phase plane.

    Consecutive slots (and rows) share padding: the bottom padding of image
    i is the top padding of image i+1 and the right padding of a row is the
    left padding of the next, so a slot needs only ``H + ph`` padded rows
    (in phase rows: ceil((H + ph) / sh)), yet at least ``OH`` for the
    outputs.  Reads past a slot's last row or column land in the next slot's
    or row's zero padding, never in image cells.
    """
    return max(-(-(H + ph) // sh), OH), max(-(-(W + pw) // sw), OW)


_RUN = 1024  # target length of an accumulator run (floats): it stays in L1
_PARTS = 8   # partial weight and bias gradients summed in order (a multiple of 1, 2, 4 and 8 threads)


@njit(cache=True)
def _phase_split(xs, x, n0, nbi, P, ph, pw, sh, sw, Hs, Ws):
    """Copy images n0..n0+nbi-1 of x, zero padded, into phase planes.

    x : (N, C, H, W) float32; xs : (C*sh*sw*P,) float32, C*sh*sw phase planes
    of P floats, each a column of image slots of Hs x Ws: pixel (r, q) of
    padded image n0+i goes to phase (r % sh, q % sw), row i*Hs + r // sh,
    column q // sw.  Slots overlap by the bottom and right padding (see
    ``_slots``).  Every call writes
    the same cells, so the padding cells of a scratch zeroed once stay zero.
    """
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    xf = x.reshape(-1)  # copying through 1-D row views is ~3x faster than 4-D indexing
    for b in range(sw):
        w0 = (b - pw) % sw  # first input column whose padded column q = w + pw is b mod sw
        if w0 >= W:
            continue
        cnt = (W - w0 + sw - 1) // sw
        Q0 = (w0 + pw) // sw
        for c in range(C):
            for i in range(nbi):
                src = ((n0 + i) * C + c) * H * W + w0
                for h in range(H):
                    r = h + ph
                    base = ((c * sh + r % sh) * sw + b) * P + (i * Hs + r // sh) * Ws + Q0
                    dst = xs[base:base + cnt]
                    if sw == 1:  # a contiguous row: the copy vectorizes
                        row = xf[src + h * W:src + h * W + cnt]
                        for q in range(cnt):
                            dst[q] = row[q]
                    else:
                        row = xf[src + h * W:src + h * W + (cnt - 1) * sw + 1]
                        for q in range(cnt):
                            dst[q] = row[q * sw]


@njit(cache=True)
def _forward_offsets(Cg, KH, KW, groups, sh, sw, dh, dw, Ws, P):
    """offs : (groups, Cg*KH*KW) int64, the scratch offset of tap (c, i, j) of each group."""
    offs = np.empty((groups, Cg * KH * KW), dtype=np.int64)
    for g in range(groups):
        m = 0
        for cl in range(Cg):
            c = g * Cg + cl
            for i in range(KH):
                a, qh = (i * dh) % sh, (i * dh) // sh
                for j in range(KW):
                    b, qw = (j * dw) % sw, (j * dw) // sw
                    offs[g, m] = ((c * sh + a) * sw + b) * P + qh * Ws + qw
                    m += 1
    return offs


# ------------------------------------------------------------------ forward
@njit(cache=True, parallel=True, fastmath=True)
def _forward(x, w2, b, offs, y, ph, pw, sh, sw, Hs, Ws, P, Kg, nb, nkb, nchunks):
    """y[n, k] = b[k] + sum of the taps of k over the phase-split images.

    x : (N, C, H, W), w2 : (K, Cg*KH*KW), b : (K,), offs : (groups, Cg*KH*KW),
    y : (N, K, OH, OW) written in place.  Tasks are (block of ``nb`` images,
    block of output channels); ``nkb`` channel blocks (more than one only for
    tiny batches).  Each of the ``nchunks`` threads takes a run of tasks and
    keeps one scratch.
    """
    N, C = x.shape[0], x.shape[1]
    K, OH, OW = y.shape[1], y.shape[2], y.shape[3]
    T = w2.shape[1]
    Ss = Hs * Ws
    nblk = (N + nb - 1) // nb
    kper = (K + nkb - 1) // nkb
    ntasks = nblk * nkb
    for t in prange(nchunks):
        xs = np.zeros(C * sh * sw * P, dtype=np.float32)
        accb = np.empty((2, (nb - 1) * Ss + (OH - 1) * Ws + OW), dtype=np.float32)
        split = -1
        for task in range(t * ntasks // nchunks, (t + 1) * ntasks // nchunks):
            n0 = (task // nkb) * nb
            nbi = min(nb, N - n0)
            k0 = (task % nkb) * kper
            k1 = min(K, k0 + kper)
            if split != n0:
                _phase_split(xs, x, n0, nbi, P, ph, pw, sh, sw, Hs, Ws)
                split = n0
            Lr = (nbi - 1) * Ss + (OH - 1) * Ws + OW
            acc0, acc1 = accb[0][:Lr], accb[1][:Lr]  # 1-D contiguous views: they vectorize
            k = k0
            while k < k1:
                pair = k + 1 < k1 and (k + 1) // Kg == k // Kg  # two channels of one group share taps
                acc0[:] = b[k]
                if pair:
                    acc1[:] = b[k + 1]
                    _accumulate2(acc0, acc1, xs, offs[k // Kg], w2[k], w2[k + 1], T)
                else:
                    _accumulate(acc0, xs, offs[k // Kg], w2[k], T)
                for kk in range(k, k + 1 + pair):
                    for i in range(nbi):
                        for oh in range(OH):
                            u = i * Ss + oh * Ws
                            yrow = y[n0 + i, kk, oh]
                            arow = accb[kk - k, u:u + OW]
                            for ow in range(OW):
                                yrow[ow] = arow[ow]
                k += 1 + pair


def conv2d_forward(x, w, b, stride, padding, dilation, groups):
    """y = conv2d(x, w) + b (cross-correlation, PyTorch semantics): the 1x1 kernels (``conv1x1.py``) where they
    are chosen (``_pointwise``), the channel-blocked kernels (``blocked.py``) where they pay (``blocked.chosen``;
    NUMBACNN_CPU_CONV forces a path), else ``conv2d_forward_planes``.

    x : (N, C, H, W) float32, w : (K, C // groups, KH, KW) float32,
    b : (K,) float32 or None; returns y : (N, K, OH, OW) float32.
    """
    return conv2d_forward_fused(x, w, b, stride, padding, dilation, groups, False, False)[0]


def conv2d_forward_fused(x, w, b, stride, padding, dilation, groups, relu, stats):
    """(y, None): ``conv2d_forward`` followed by the ReLU the graph fused into it when ``relu`` (relu_forward's
    semantics), applied to the blocked kernels' register tiles before they are stored, or in place after the
    phase-plane kernels; no statistics in parts (``stats`` is not computed here).

    Shapes as ``conv2d_forward``."""
    return _forward_either(x, w, b, stride, padding, dilation, groups, relu), None


def conv2d_forward_norm(x, w, b, gamma, beta, mean, var, eps, stride, padding, dilation, groups, relu):
    """y = batch_norm(conv2d(x, w) + b) with the running statistics, then max(y, 0) when ``relu``: the graph's
    Conv2D -> BatchNorm (-> ReLU) at inference, as ONE convolution with the normalisation folded in: weights of
    output channel k times s[k] = gamma[k] / sqrt(var[k] + eps) (as the blocked kernels pack them), bias
    beta + (b - mean) * s (computed in float64).  Shapes as ``conv2d_forward``; gamma ... var : (K,) float32."""
    s = np.asarray(gamma, np.float64) / np.sqrt(np.asarray(var, np.float64) + eps)
    t = (np.asarray(beta, np.float64) + ((0.0 if b is None else np.asarray(b, np.float64)) - mean) * s)
    return _forward_either(x, w, t.astype(np.float32), stride, padding, dilation, groups, relu, s.astype(np.float32))


def _pointwise(x_shape, w_shape, stride, padding, groups) -> bool:
    """Whether a convolution's forward and dx run on the 1x1 kernels (``conv1x1.py``, pixels in the lanes,
    NCHW kept): ``conv1x1.applies`` and ``conv1x1.chosen``, unless NUMBACNN_CPU_CONV forces the blocked or plane
    kernels."""
    N, C, H, W = (int(v) for v in x_shape)
    K, _, KH, KW = (int(v) for v in w_shape)
    g, V = int(groups), blocked.vector_width()
    return (config.CPU_CONV == "auto" and conv1x1.applies(KH, KW, padding, g, C, K, H, W, stride, V)
            and conv1x1.chosen(N, C, K, H, W, stride, g, V, blocked.chosen(C, K, KH, KW, g)))


def _forward_either(x, w, b, stride, padding, dilation, groups, relu, scale=None):
    """The forward on the 1x1 kernels where they apply (``_pointwise``), the blocked kernels where they pay
    (``blocked.chosen``), else on the phase planes with the ReLU kernel run in place after them; output channel
    k's weights times scale[k] when a ``scale`` is given (a folded batch norm)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    w = np.ascontiguousarray(w, dtype=np.float32)
    K, _, KH, KW = w.shape
    if _pointwise(x.shape, w.shape, stride, padding, groups):
        return conv1x1.forward(x, w, b, stride, groups, relu=bool(relu), scale=scale)
    if blocked.chosen(x.shape[1], K, KH, KW, int(groups), config.CPU_CONV):
        return blocked.conv2d_forward(x, w, b, stride, padding, dilation, groups, relu=bool(relu), scale=scale)
    y = conv2d_forward_planes(x, w if scale is None else w * scale[:, None, None, None], b, stride, padding,
                              dilation, groups)
    if relu:
        flat = y.reshape(-1)
        _relu_fwd(flat, flat)           # the ReLU kernel, in place
    return y


def conv2d_forward_planes(x, w, b, stride, padding, dilation, groups):
    """``conv2d_forward`` on the phase planes (any geometry).  Shapes as ``conv2d_forward``."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    w = np.ascontiguousarray(w, dtype=np.float32)
    N, C, H, W = x.shape
    K, Cg, KH, KW = w.shape
    groups = int(groups)
    sh, sw, ph, pw, dh, dw, OH, OW, Hq, Wq = _geometry(H, W, KH, KW, stride, padding, dilation)
    b = np.zeros(K, np.float32) if b is None else np.ascontiguousarray(b, dtype=np.float32)
    threads = numba.get_num_threads()
    Hs, Ws = _slots(H, W, ph, pw, sh, sw, OH, OW)
    nb, nblk = _blocking(N, Hs * Ws, threads)
    P = (nb * Hs + ((KH - 1) * dh) // sh + 2) * Ws
    offs = _forward_offsets(Cg, KH, KW, groups, sh, sw, dh, dw, Ws, P)
    y = np.empty((N, K, OH, OW), dtype=np.float32)
    nkb = max(1, min(K, -(-threads // nblk)))
    nchunks = min(threads, nblk * nkb)
    _forward(x, w.reshape(K, Cg * KH * KW), b, offs, y, ph, pw, sh, sw, Hs, Ws, P, K // groups, nb, nkb, nchunks)
    return y


# ------------------------------------------------------------------ backward input
@njit(cache=True)
def _backward_input_taps(w, groups, sh, sw, dh, dw, Wd, Mh, Mw, Pd):
    """Taps of every phase of the padded dx.

    w : (K, Cg, KH, KW); returns offs : (groups, sh*sw, Tmax) int64 (offsets
    into the padded dy of a block: K planes of Pd floats, rows of Wd),
    ws : (C, sh*sw, Tmax) float32 and count : (sh*sw,) int64, the taps of
    each phase.
    """
    K, Cg, KH, KW = w.shape
    Kg = K // groups
    P = sh * sw
    count = np.zeros(P, dtype=np.int64)
    for i in range(KH):
        for j in range(KW):
            count[((i * dh) % sh) * sw + (j * dw) % sw] += Kg
    Tmax = max(1, count.max())
    offs = np.zeros((groups, P, Tmax), dtype=np.int64)
    ws = np.zeros((groups * Cg, P, Tmax), dtype=np.float32)
    fill = np.zeros(P, dtype=np.int64)
    for kl in range(Kg):
        for i in range(KH):
            a, qh = (i * dh) % sh, (i * dh) // sh
            for j in range(KW):
                b, qw = (j * dw) % sw, (j * dw) // sw
                p = a * sw + b
                m = fill[p]
                fill[p] += 1
                for g in range(groups):
                    k = g * Kg + kl
                    offs[g, p, m] = k * Pd + (Mh - qh) * Wd + (Mw - qw)
                    for cl in range(Cg):
                        ws[g * Cg + cl, p, m] = w[k, cl, i, j]
    return offs, ws, count


@njit(cache=True, fastmath=True)
def _backward_input_blocks(dy, offs, ws, count, dx, dyp, accb, blk0, blk1, gi):
    """dx for image blocks blk0..blk1-1, gathered from the sh*sw phase runs of dx.

    dy : (N, K, OH, OW), offs/ws/count from ``_backward_input_taps``,
    dx : (N, C, H, W) written in place, dyp : (K*Pd,) a zeroed scratch,
    accb : (2, >=run) accumulators, gi the ints of ``_input_plan``.  Only
    phase rows Rlo .. Rlo+Hrun-1 and columns Qlo .. Qlo+Wrun-1 (those holding
    image cells, not padding) are computed.  The padded dy of a block is K
    planes of Pd floats; slot i of a plane (Hd x Wd, slots sharing their zero
    margins as in ``_slots``) holds dy row ``j + Rlo - Mh`` at row j and
    column ``jj + Qlo - Mw`` at column jj.
    """
    ph, pw, sh, sw, Hq, Wq, Rlo, Qlo, Hrun, Wrun, Hd, Wd, Pd, Mh, Mw, Cg, nb = gi
    N, K, OH, OW = dy.shape
    C, H, W = dx.shape[1], dx.shape[2], dx.shape[3]
    Sd = Hd * Wd
    oh0, oh1 = max(0, Rlo - Mh), min(OH, Rlo - Mh + Hd)  # the dy rows and columns that are read
    ow0, ow1 = max(0, Qlo - Mw), min(OW, Qlo - Mw + Wd)
    for blk in range(blk0, blk1):
        n0 = blk * nb
        nbi = min(nb, N - n0)
        for k in range(K):
            for i in range(nbi):
                for oh in range(oh0, oh1):
                    base = k * Pd + i * Sd + (oh - Rlo + Mh) * Wd + ow0 - Qlo + Mw
                    drow = dyp[base:base + ow1 - ow0]
                    dyrow = dy[n0 + i, k, oh, ow0:ow1]
                    for ow in range(ow1 - ow0):
                        drow[ow] = dyrow[ow]
        Lr = (nbi - 1) * Sd + (Hrun - 1) * Wd + Wrun
        acc0, acc1 = accb[0][:Lr], accb[1][:Lr]  # 1-D contiguous views: they vectorize
        c = 0
        while c < C:
            g = c // Cg
            pair = c + 1 < C and (c + 1) // Cg == g  # two channels of one group share taps
            for a in range(sh):
                # phase rows R whose padded row r = R*sh + a is an image row h = r - ph in [0, H)
                R0 = max(0, (ph - a + sh - 1) // sh)
                R1 = min(Hq, (H + ph - a + sh - 1) // sh)
                for bb in range(sw):
                    Q0 = max(0, (pw - bb + sw - 1) // sw)
                    Q1 = min(Wq, (W + pw - bb + sw - 1) // sw)
                    if R0 >= R1 or Q0 >= Q1:
                        continue
                    p = a * sw + bb
                    acc0[:] = 0.0
                    acc1[:] = 0.0
                    if pair:
                        _accumulate2(acc0, acc1, dyp, offs[g, p], ws[c, p], ws[c + 1, p], count[p])
                    else:
                        _accumulate(acc0, dyp, offs[g, p], ws[c, p], count[p])
                    w0 = Q0 * sw + bb - pw
                    for cc in range(c, c + 1 + pair):
                        for i in range(nbi):
                            for R in range(R0, R1):
                                u = i * Sd + (R - Rlo) * Wd - Qlo
                                dxrow = dx[n0 + i, cc, R * sh + a - ph]
                                arow = accb[cc - c, u + Q0:u + Q1]
                                if sw == 1:  # a contiguous row: the copy vectorizes
                                    drow = dxrow[w0:w0 + Q1 - Q0]
                                    for Q in range(Q1 - Q0):
                                        drow[Q] = arow[Q]
                                else:
                                    for Q in range(Q1 - Q0):
                                        dxrow[w0 + Q * sw] = arow[Q]
            c += 1 + pair


def _phase_window(size, pad, stride, nq):
    """(lo, hi): the phase rows (or columns) lo..hi-1 that hold image cells in some phase."""
    lo = min(max(0, -(-(pad - a) // stride)) for a in range(stride))
    hi = max(min(nq, -(-(size + pad - a) // stride)) for a in range(stride))
    return lo, max(hi, lo + 1)


def _input_plan(w, N, H, W, OH, OW, geo, groups, threads):
    """(offs, ws, count, gi, nblk, run): the taps, ints and blocking of ``_backward_input_blocks``."""
    _, Cg, KH, KW = w.shape
    sh, sw, ph, pw, dh, dw, _, _, Hq, Wq = geo
    Mh = ((KH - 1) * dh) // sh  # largest tap shift in the phase planes
    Mw = ((KW - 1) * dw) // sw
    Rlo, Rhi = _phase_window(H, ph, sh, Hq)
    Qlo, Qhi = _phase_window(W, pw, sw, Wq)
    Hrun, Wrun = Rhi - Rlo, Qhi - Qlo
    # slot pitch of the padded dy: reads past a slot land in the next slot's zero margin (see _slots)
    Hd = max(Hrun + min(Mh, Rlo), min(Hrun + Mh, Mh - Rlo + OH))
    Wd = max(Wrun + min(Mw, Qlo), min(Wrun + Mw, Mw - Qlo + OW))
    nb, nblk = _blocking(N, Hd * Wd, threads)
    Pd = (nb * Hd + Mh + 2) * Wd
    offs, ws, count = _backward_input_taps(w, groups, sh, sw, dh, dw, Wd, Mh, Mw, Pd)
    gi = (ph, pw, sh, sw, Hq, Wq, Rlo, Qlo, Hrun, Wrun, Hd, Wd, Pd, Mh, Mw, Cg, nb)
    return offs, ws, count, gi, nblk, (nb - 1) * Hd * Wd + (Hrun - 1) * Wd + Wrun


# ------------------------------------------------------------------ backward weight and bias
@njit(cache=True, fastmath=True)
def _backward_weight_blocks(dy, x, offs, dwt, xs, dyr, blk0, blk1, gw):
    """Add the weight gradient of image blocks blk0..blk1-1 to dwt.

    dy : (N, K, OH, OW), x : (N, C, H, W), offs : (groups, Cg*KH*KW),
    dwt : (K, Cg*KH*KW), xs : (C*sh*sw*P,) and dyr : (2, nb*Hs*Ws) zeroed
    scratches (cells outside the OH x OW corner of a dyr slot stay zero),
    gw the ints of ``_weight_plan``.
    """
    ph, pw, sh, sw, Hs, Ws, P, Kg, nb = gw
    N = x.shape[0]
    K, OH, OW = dy.shape[1], dy.shape[2], dy.shape[3]
    T = dwt.shape[1]
    Ss = Hs * Ws
    for blk in range(blk0, blk1):
        n0 = blk * nb
        nbi = min(nb, N - n0)
        _phase_split(xs, x, n0, nbi, P, ph, pw, sh, sw, Hs, Ws)
        L = (nbi - 1) * Ss + (OH - 1) * Ws + OW
        k = 0
        while k < K:
            pair = k + 1 < K and (k + 1) // Kg == k // Kg  # two channels of one group share taps
            for kk in range(k, k + 1 + pair):
                for i in range(nbi):
                    for oh in range(OH):
                        u = i * Ss + oh * Ws
                        drow = dyr[kk - k, u:u + OW]
                        dyrow = dy[n0 + i, kk, oh]
                        for ow in range(OW):
                            drow[ow] = dyrow[ow]
            if pair:
                _dot_taps2(dwt[k], dwt[k + 1], dyr[0, :L], dyr[1, :L], xs, offs[k // Kg], T)
            else:
                _dot_taps(dwt[k], dyr[0, :L], xs, offs[k // Kg], T)
            k += 1 + pair


def _weight_plan(x_shape, w_shape, OH, OW, geo, groups, threads):
    """(offs, gw, nblk, scratch floats): the taps, ints and blocking of ``_backward_weight_blocks``."""
    N, C, H, W = x_shape
    K, Cg, KH, KW = w_shape
    sh, sw, ph, pw, dh, dw = geo[:6]
    Hs, Ws = _slots(H, W, ph, pw, sh, sw, OH, OW)
    nb, nblk = _blocking(N, Hs * Ws, threads)
    P = (nb * Hs + ((KH - 1) * dh) // sh + 2) * Ws
    offs = _forward_offsets(Cg, KH, KW, groups, sh, sw, dh, dw, Ws, P)
    return offs, (ph, pw, sh, sw, Hs, Ws, P, K // groups, nb), nblk, C * sh * sw * P


@njit(cache=True)
def _bias_rows(dy, dbt, n0, n1):
    """dbt[k] += sum of dy[n0:n1, k] in float64.  dy : (N, K, S) float32, dbt : (K,) float64."""
    K, S = dy.shape[1], dy.shape[2]
    for n in range(n0, n1):
        for k in range(K):
            row = dy[n, k]
            s = 0.0
            for t in range(S):
                s += row[t]
            dbt[k] += s


# ------------------------------------------------------------------ the backward pass
@njit(cache=True, parallel=True, fastmath=True)
def _backward(dy, x, dx, ioffs, iws, icount, gi, nblk_i, run_i, woffs, dwb, gw, nblk_w, xs_size, dbb):
    """All requested gradients in ONE parallel region (the thread pool wakes once per backward).

    Chunk t of ``nchunks = dwb.shape[0]`` computes dx for its share of the
    ``nblk_i`` input-gradient blocks, then adds the weight gradient of its
    share of the ``nblk_w`` weight-gradient blocks to dwb[t] and the bias
    gradient of its share of the images to dbb[t].  A gradient with no
    blocks (nblk 0, or an empty dbb) is skipped.  dy : (N, K, OH, OW),
    x : (N, C, H, W), dx : (N, C, H, W), dwb : (nchunks, K, Cg*KH*KW) and
    dbb : (nchunks, K) or (nchunks, 0) float64, zeroed.
    """
    N, K = dy.shape[0], dy.shape[1]
    dy3 = dy.reshape(N, K, dy.shape[2] * dy.shape[3])
    nchunks = dwb.shape[0]
    Hs, Ws, nb_w = gw[4], gw[5], gw[8]
    for t in prange(nchunks):
        i0, i1 = t * nblk_i // nchunks, (t + 1) * nblk_i // nchunks
        if i1 > i0:
            dyp = np.zeros(K * gi[12], dtype=np.float32)  # cells never written stay zero
            accb = np.empty((2, run_i), dtype=np.float32)
            _backward_input_blocks(dy, ioffs, iws, icount, dx, dyp, accb, i0, i1, gi)
        w0, w1 = t * nblk_w // nchunks, (t + 1) * nblk_w // nchunks
        if w1 > w0:
            xs = np.zeros(xs_size, dtype=np.float32)
            dyr = np.zeros((2, nb_w * Hs * Ws), dtype=np.float32)
            _backward_weight_blocks(dy, x, woffs, dwb[t], xs, dyr, w0, w1, gw)
        if dbb.shape[1] > 0:
            _bias_rows(dy3, dbb[t], t * N // nchunks, (t + 1) * N // nchunks)


def _backward_pass(dy, x, w, x_shape, w_shape, stride, padding, dilation, groups, want_dx, want_dw, want_db,
                   planes=False, base=None, mask=None):
    """(dx|None, dw|None, db|None): the requested gradients of y = conv2d(x, w) + b: dx on the 1x1 kernels where
    the forward runs them (``_pointwise``), on the channel-blocked kernels where the forward would run them
    (``blocked.chosen``; dx there for stride 1 only), else (and with ``planes``) in one ``_backward`` call on the
    phase planes.

    ``w`` is needed only for dx and ``x`` only for dw (pass None otherwise).  With ``base`` (x's shape), dx is
    base + dx, zeroed where ``mask`` <= 0 when a mask is given: added where dx is written on the blocked path,
    in one pass after the phase planes.
    """
    N, C, H, W = (int(s) for s in x_shape)
    K, Cg, KH, KW = (int(s) for s in w_shape)
    groups = int(groups)
    geo = _geometry(H, W, KH, KW, stride, padding, dilation)
    OH, OW = geo[6], geo[7]
    if dy.shape != (N, K, OH, OW):
        raise ValueError(f"conv2d backward: dy shape {dy.shape} does not match the output shape "
                         f"{(N, K, OH, OW)} of x shape {(N, C, H, W)}")
    if want_dx and not planes and _pointwise(x_shape, w_shape, stride, padding, groups):
        dx = conv1x1.backward_input(dy, w, x_shape, stride, groups, base, mask)
        if not (want_dw or want_db):
            return dx, None, None
        rest = _backward_pass(dy, x, w, x_shape, w_shape, stride, padding, dilation, groups, False, want_dw, want_db)
        return (dx,) + rest[1:]
    bx = bw = not planes and blocked.chosen(C, K, KH, KW, groups, config.CPU_CONV)
    bw = bw or (not planes and blocked.weight_chosen(C, KH, KW, groups, config.CPU_CONV))
    if (want_dx and bx) or (want_dw and bw):
        got = blocked.conv2d_backward(dy, x, w, x_shape, w_shape, stride, padding, dilation, groups, want_dx and bx,
                                      want_dw and bw, base, mask)
        if got is not None and (got[0] is not None or not want_dx) and (got[1] is not None or not want_dw):
            return got + (conv2d_backward_bias(dy) if want_db else None,)
        if got is not None:     # the blocked kernels did one of them: the phase planes do the other
            rest = _backward_pass(dy, x, w, x_shape, w_shape, stride, padding, dilation, groups,
                                  want_dx and got[0] is None, want_dw and got[1] is None, want_db, True, base, mask)
            return (got[0] if got[0] is not None else rest[0], got[1] if got[1] is not None else rest[1], rest[2])
    threads = numba.get_num_threads()
    if want_dx:
        ioffs, iws, icount, gi, nblk_i, run_i = _input_plan(w, N, H, W, OH, OW, geo, groups, threads)
        dx = np.empty((N, C, H, W), dtype=np.float32)  # every element is written by exactly one phase
    else:
        ioffs, iws, icount = np.zeros((1, 1, 1), np.int64), np.zeros((1, 1, 1), np.float32), np.zeros(1, np.int64)
        gi, nblk_i, run_i = (0,) * 16 + (1,), 0, 0
        dx = np.empty((0, 0, 0, 0), dtype=np.float32)
    if want_dw:
        woffs, gw, nblk_w, xs_size = _weight_plan((N, C, H, W), (K, Cg, KH, KW), OH, OW, geo, groups, _PARTS)
    else:
        woffs, gw, nblk_w, xs_size = np.zeros((1, 1), np.int64), (0,) * 8 + (1,), 0, 0
        x = np.empty((0, 0, 0, 0), dtype=np.float32)
    if want_dw or want_db:   # the parts of the sums: fixed by the batch, whatever the threads
        nchunks = max(1, min(_PARTS, max(nblk_w, N if want_db else 0)))
    else:
        nchunks = max(1, min(threads, nblk_i))
    dwb = np.zeros((nchunks, K, Cg * KH * KW) if want_dw else (nchunks, 0, 0), dtype=np.float32)
    dbb = np.zeros((nchunks, K if want_db else 0), dtype=np.float64)
    _backward(dy, x, dx, ioffs, iws, icount, gi, nblk_i, run_i, woffs, dwb, gw, nblk_w, xs_size, dbb)
    if want_dx and base is not None:
        flat = dx.reshape(-1)
        _add_masked(flat, _flat(base), flat if mask is None else _flat(mask), mask is not None)
    return (dx if want_dx else None,
            dwb.sum(axis=0).reshape(K, Cg, KH, KW) if want_dw else None,
            dbb.sum(axis=0).astype(np.float32) if want_db else None)


def conv2d_backward(dy, x, w, stride, padding, dilation, groups, has_bias=True):
    """(dx, dw, db|None) for y = conv2d(x, w) + b, all three in one parallel region.

    dy : (N, K, OH, OW) float32, x : (N, C, H, W) float32,
    w : (K, C // groups, KH, KW) float32; returns dx like x, dw like w and
    db : (K,) float32 (None when ``has_bias`` is false).
    """
    dy = np.ascontiguousarray(dy, dtype=np.float32)
    x = np.ascontiguousarray(x, dtype=np.float32)
    w = np.ascontiguousarray(w, dtype=np.float32)
    return _backward_pass(dy, x, w, x.shape, w.shape, stride, padding, dilation, groups, True, True, bool(has_bias))


def conv2d_backward_add(dy, x, w, base, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1, has_bias=True,
                        relu=False):
    """(base + dx, dw, db | None) of y = conv2d(x, w) (+ b): ``conv2d_backward`` with dx added to ``base`` (the
    gradient the graph summed for x so far) and, with ``relu``, zeroed where x <= 0 (x a ReLU's output whose
    gradient the sum completes): in the blocked kernels' unpacking pass, or one pass after the phase planes.
    Shapes as ``conv2d_backward``; base like x."""
    dy = np.ascontiguousarray(dy, dtype=np.float32)
    x = np.ascontiguousarray(x, dtype=np.float32)
    w = np.ascontiguousarray(w, dtype=np.float32)
    base = np.ascontiguousarray(base, dtype=np.float32)
    return _backward_pass(dy, x, w, x.shape, w.shape, stride, padding, dilation, groups, True, True, bool(has_bias),
                          False, base, x if relu else None)


@njit(cache=True, parallel=True)
def _add_masked(dx, base, mask, relu):
    """dx = base + dx, then 0 where mask <= 0 when ``relu`` (relu_backward's rule).  All (S,) float32."""
    for i in prange(dx.shape[0]):
        v = base[i] + dx[i]
        dx[i] = v if not relu or mask[i] > 0 else 0


def conv2d_backward_input(dy, w, x_shape, stride, padding, dilation, groups):
    """dx for y = conv2d(x, w).

    dy : (N, K, OH, OW) float32, w : (K, C // groups, KH, KW) float32,
    x_shape = (N, C, H, W); returns dx : (N, C, H, W) float32.
    """
    dy = np.ascontiguousarray(dy, dtype=np.float32)
    w = np.ascontiguousarray(w, dtype=np.float32)
    return _backward_pass(dy, None, w, x_shape, w.shape, stride, padding, dilation, groups, True, False, False)[0]


def conv2d_backward_weight(dy, x, w_shape, stride, padding, dilation, groups):
    """dw for y = conv2d(x, w).

    dy : (N, K, OH, OW) float32, x : (N, C, H, W) float32,
    w_shape = (K, C // groups, KH, KW); returns dw : (K, C // groups, KH, KW) float32.
    """
    dy = np.ascontiguousarray(dy, dtype=np.float32)
    x = np.ascontiguousarray(x, dtype=np.float32)
    return _backward_pass(dy, x, None, x.shape, w_shape, stride, padding, dilation, groups, False, True, False)[1]


@njit(cache=True, parallel=True)
def _bias_parallel(dy, dbb):
    """dbb[t] += the bias gradient of images t*N//nchunks .. (t+1)*N//nchunks - 1.

    dy : (N, K, S) float32, dbb : (nchunks, K) float64 zeroed.
    """
    N, nchunks = dy.shape[0], dbb.shape[0]
    for t in prange(nchunks):
        _bias_rows(dy, dbb[t], t * N // nchunks, (t + 1) * N // nchunks)


def conv2d_backward_bias(dy):
    """db for y = conv2d(x, w) + b.  dy : (N, K, OH, OW) float32; returns db : (K,) float32."""
    dy = np.ascontiguousarray(dy, dtype=np.float32)
    N, K = dy.shape[0], dy.shape[1]
    nchunks = max(1, min(_PARTS, N))
    dbb = np.zeros((nchunks, K), dtype=np.float64)
    _bias_parallel(dy.reshape(N, K, -1), dbb)
    return dbb.sum(axis=0).astype(np.float32)

