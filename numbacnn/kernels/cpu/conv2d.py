"""Direct 2-D convolution on the CPU (Numba ``@njit``), NCHW / OIHW float32.

No im2col and no BLAS: every direction is one hot loop that adds a few
weighted, shifted copies of a contiguous run of a scratch image into an
accumulator run (DESIGN.md, performance notes).

How any stride and dilation become one stride-1 loop
-----------------------------------------------------
Each image is copied, zero padded, into a per-image scratch split into
``sh * sw`` *phases*: phase ``(a, b)`` holds the padded pixels whose row is
``a`` mod ``sh`` and column ``b`` mod ``sw``, as a ``Hq x Wq`` plane.  Tap
``(i, j)`` of the kernel reads padded row ``oh*sh + i*dh``, which is row
``oh + (i*dh)//sh`` of phase ``(i*dh) % sh``: in the phase planes every tap
is a plain shift.  Flattening a phase plane row by row, output row ``oh``
and column ``ow`` sit at ``oh*Wq + ow`` and tap ``(i, j)`` at a fixed
``offset + oh*Wq + ow``, so one output channel is one contiguous run of
length ``(OH - 1)*Wq + OW`` (the ``Wq - OW`` extra columns of each row are
computed and dropped).  With stride 1 there is a single phase, the plain
padded image.

* forward: run of output channel ``k`` = sum over its taps of
  ``w * scratch[offset : offset + L]``.
* backward input: the same loop, transposed: the runs are the phases of the
  padded ``dx``, the source is ``dy`` padded by the largest tap shift, the
  taps are those of the kernel falling in that phase (a stride-``s``
  transposed convolution is ``s*s`` small stride-1 convolutions).
* backward weight: ``dw[k, c, i, j]`` is the dot product of the run of
  ``dy[n, k]`` (extra columns zero) with the scratch run at the tap's offset,
  summed over images; images are split among threads, each with its own
  ``dw`` buffer, and the buffers are summed at the end.

Taps are consumed eight at a time with their weights and source runs held in
locals, so the accumulator run is loaded and stored once per eight
multiply-adds and the innermost loop vectorizes (it indexes slices, never
``x[i + offset]``).
"""
from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

__all__ = ["conv2d_forward", "conv2d_backward_input", "conv2d_backward_weight", "conv2d_backward_bias"]


# ------------------------------------------------------------------ geometry
def _out_size(size, kernel, stride, padding, dilation):
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _geometry(H, W, KH, KW, stride, padding, dilation):
    """Sizes shared by the three directions (see the module docstring)."""
    sh, sw = int(stride[0]), int(stride[1])
    ph, pw = int(padding[0]), int(padding[1])
    dh, dw = int(dilation[0]), int(dilation[1])
    OH = _out_size(H, KH, sh, ph, dh)
    OW = _out_size(W, KW, sw, pw, dw)
    if OH < 1 or OW < 1:
        raise ValueError(f"conv2d: kernel {KH}x{KW} (dilation {(dh, dw)}) does not fit a {H}x{W} input "
                         f"with padding {(ph, pw)}")
    Hq = -(-(H + 2 * ph) // sh)  # rows of one phase plane
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
@njit(cache=True)
def _phase_split(xs, x, n, c0, C, ph, pw, sh, sw, Hq, Wq):
    """Copy channels c0..c0+C of image n of x, zero padded, into phase planes.

    x : (N, Cx, H, W) float32; xs : (>= C*sh*sw*Hq*Wq,) float32, laid out
    (C, sh, sw, Hq, Wq); pixel (r, q) of the padded image goes to phase
    (r % sh, q % sw), position (r // sh, q // sw).
    """
    H, W = x.shape[2], x.shape[3]
    xs[:] = 0.0
    Sq = Hq * Wq
    for c in range(C):
        for h in range(H):
            r = h + ph
            for w in range(W):
                q = w + pw
                xs[((c * sh + r % sh) * sw + q % sw) * Sq + (r // sh) * Wq + q // sw] = x[n, c0 + c, h, w]


@njit(cache=True)
def _forward_offsets(Cg, KH, KW, groups, sh, sw, dh, dw, Hq, Wq):
    """offs : (groups, Cg*KH*KW) int64, the scratch offset of tap (c, i, j) of each group."""
    Sq = Hq * Wq
    offs = np.empty((groups, Cg * KH * KW), dtype=np.int64)
    for g in range(groups):
        m = 0
        for cl in range(Cg):
            c = g * Cg + cl
            for i in range(KH):
                a, qh = (i * dh) % sh, (i * dh) // sh
                for j in range(KW):
                    b, qw = (j * dw) % sw, (j * dw) // sw
                    offs[g, m] = ((c * sh + a) * sw + b) * Sq + qh * Wq + qw
                    m += 1
    return offs


# ------------------------------------------------------------------ forward
@njit(cache=True, parallel=True, fastmath=True)
def _forward(x, w2, b, offs, y, ph, pw, sh, sw, Hq, Wq, Kg, nkb):
    """y[n, k] = b[k] + sum of the taps of k over the phase-split image n.

    x : (N, C, H, W), w2 : (K, Cg*KH*KW), b : (K,), offs : (groups, Cg*KH*KW),
    y : (N, K, OH, OW) written in place.  Tasks are (image, block of output
    channels); ``nkb`` blocks per image (more than one only for tiny batches).
    """
    N, C = x.shape[0], x.shape[1]
    K, OH, OW = y.shape[1], y.shape[2], y.shape[3]
    T = w2.shape[1]
    L = (OH - 1) * Wq + OW
    kper = (K + nkb - 1) // nkb
    for task in prange(N * nkb):
        n = task // nkb
        k0 = (task % nkb) * kper
        k1 = min(K, k0 + kper)
        xs = np.empty(C * sh * sw * Hq * Wq, dtype=np.float32)
        _phase_split(xs, x, n, 0, C, ph, pw, sh, sw, Hq, Wq)
        acc = np.empty(L, dtype=np.float32)
        for k in range(k0, k1):
            acc[:] = b[k]
            _accumulate(acc, xs, offs[k // Kg], w2[k], T)
            for oh in range(OH):
                y[n, k, oh, :] = acc[oh * Wq:oh * Wq + OW]


def conv2d_forward(x, w, b, stride, padding, dilation, groups):
    """y = conv2d(x, w) + b (cross-correlation, PyTorch semantics).

    x : (N, C, H, W) float32, w : (K, C // groups, KH, KW) float32,
    b : (K,) float32 or None; returns y : (N, K, OH, OW) float32.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    w = np.ascontiguousarray(w, dtype=np.float32)
    N, C, H, W = x.shape
    K, Cg, KH, KW = w.shape
    groups = int(groups)
    sh, sw, ph, pw, dh, dw, OH, OW, Hq, Wq = _geometry(H, W, KH, KW, stride, padding, dilation)
    b = np.zeros(K, np.float32) if b is None else np.ascontiguousarray(b, dtype=np.float32)
    offs = _forward_offsets(Cg, KH, KW, groups, sh, sw, dh, dw, Hq, Wq)
    y = np.empty((N, K, OH, OW), dtype=np.float32)
    nkb = max(1, min(K, -(-numba.get_num_threads() // N)))
    _forward(x, w.reshape(K, Cg * KH * KW), b, offs, y, ph, pw, sh, sw, Hq, Wq, K // groups, nkb)
    return y


# ------------------------------------------------------------------ backward input
@njit(cache=True)
def _backward_input_taps(w, groups, sh, sw, dh, dw, Wd, Mh, Mw, Sd):
    """Taps of every phase of the padded dx.

    w : (K, Cg, KH, KW); returns offs : (groups, sh*sw, Tmax) int64 (offsets
    into the padded dy of one image, laid out (K, Hd, Wd)), ws : (C, sh*sw,
    Tmax) float32 and count : (sh*sw,) int64, the taps of each phase.
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
                    offs[g, p, m] = k * Sd + (Mh - qh) * Wd + (Mw - qw)
                    for cl in range(Cg):
                        ws[g * Cg + cl, p, m] = w[k, cl, i, j]
    return offs, ws, count


@njit(cache=True, parallel=True, fastmath=True)
def _backward_input(dy, offs, ws, count, dx, ph, pw, sh, sw, Hq, Wd, Hd, Mh, Mw, Cg):
    """dx[n, c] gathered from the sh*sw phase runs of the padded dx of image n.

    dy : (N, K, OH, OW), offs/ws/count from ``_backward_input_taps``,
    dx : (N, C, H, W) written in place.
    """
    N, K, OH, OW = dy.shape
    C, H, W = dx.shape[1], dx.shape[2], dx.shape[3]
    Sd = Hd * Wd
    Wq = Wd - Mw
    L = (Hq - 1) * Wd + Wq
    for n in prange(N):
        dyp = np.zeros(K * Sd, dtype=np.float32)
        for k in range(K):
            for oh in range(OH):
                base = k * Sd + (oh + Mh) * Wd + Mw
                dyp[base:base + OW] = dy[n, k, oh, :]
        acc = np.empty(L, dtype=np.float32)
        for c in range(C):
            g = c // Cg
            for a in range(sh):
                # padded rows r = R*sh + a that fall inside the image: h = r - ph in [0, H)
                R0 = max(0, (ph - a + sh - 1) // sh)
                R1 = min(Hq, (H + ph - a + sh - 1) // sh)
                for bb in range(sw):
                    Q0 = max(0, (pw - bb + sw - 1) // sw)
                    Q1 = min(Wq, (W + pw - bb + sw - 1) // sw)
                    if R0 >= R1 or Q0 >= Q1:
                        continue
                    p = a * sw + bb
                    acc[:] = 0.0
                    _accumulate(acc, dyp, offs[g, p], ws[c, p], count[p])
                    for R in range(R0, R1):
                        h = R * sh + a - ph
                        for Q in range(Q0, Q1):
                            dx[n, c, h, Q * sw + bb - pw] = acc[R * Wd + Q]


def conv2d_backward_input(dy, w, x_shape, stride, padding, dilation, groups):
    """dx for y = conv2d(x, w).

    dy : (N, K, OH, OW) float32, w : (K, C // groups, KH, KW) float32,
    x_shape = (N, C, H, W); returns dx : (N, C, H, W) float32.
    """
    dy = np.ascontiguousarray(dy, dtype=np.float32)
    w = np.ascontiguousarray(w, dtype=np.float32)
    N, C, H, W = (int(s) for s in x_shape)
    K, Cg, KH, KW = w.shape
    groups = int(groups)
    sh, sw, ph, pw, dh, dw, OH, OW, Hq, Wq = _geometry(H, W, KH, KW, stride, padding, dilation)
    if dy.shape != (N, K, OH, OW):
        raise ValueError(f"conv2d_backward_input: dy shape {dy.shape} does not match the output shape "
                         f"{(N, K, OH, OW)} of x shape {(N, C, H, W)}")
    Mh = ((KH - 1) * dh) // sh  # largest tap shift in the phase planes
    Mw = ((KW - 1) * dw) // sw
    Hd, Wd = Hq + Mh, Wq + Mw
    offs, ws, count = _backward_input_taps(w, groups, sh, sw, dh, dw, Wd, Mh, Mw, Hd * Wd)
    dx = np.zeros((N, C, H, W), dtype=np.float32)
    _backward_input(dy, offs, ws, count, dx, ph, pw, sh, sw, Hq, Wd, Hd, Mh, Mw, Cg)
    return dx


# ------------------------------------------------------------------ backward weight
@njit(cache=True, parallel=True, fastmath=True)
def _backward_weight(dy, x, offs, dwb, ph, pw, sh, sw, Hq, Wq, Kg):
    """Per-thread partial weight gradients.

    dy : (N, K, OH, OW), x : (N, C, H, W), offs : (groups, Cg*KH*KW),
    dwb : (nchunks, K, Cg*KH*KW) zeroed; chunk t sums images t*N//nchunks ..
    (t+1)*N//nchunks - 1 into dwb[t].
    """
    N, C = x.shape[0], x.shape[1]
    K, OH, OW = dy.shape[1], dy.shape[2], dy.shape[3]
    nchunks, T = dwb.shape[0], dwb.shape[2]
    L = (OH - 1) * Wq + OW
    for t in prange(nchunks):
        xs = np.empty(C * sh * sw * Hq * Wq, dtype=np.float32)
        dyr = np.zeros(L, dtype=np.float32)  # columns OW..Wq-1 of each row stay zero
        for n in range(t * N // nchunks, (t + 1) * N // nchunks):
            _phase_split(xs, x, n, 0, C, ph, pw, sh, sw, Hq, Wq)
            for k in range(K):
                for oh in range(OH):
                    dyr[oh * Wq:oh * Wq + OW] = dy[n, k, oh, :]
                _dot_taps(dwb[t, k], dyr, xs, offs[k // Kg], T)


def conv2d_backward_weight(dy, x, w_shape, stride, padding, dilation, groups):
    """dw for y = conv2d(x, w).

    dy : (N, K, OH, OW) float32, x : (N, C, H, W) float32,
    w_shape = (K, C // groups, KH, KW); returns dw : (K, C // groups, KH, KW) float32.
    """
    dy = np.ascontiguousarray(dy, dtype=np.float32)
    x = np.ascontiguousarray(x, dtype=np.float32)
    N, C, H, W = x.shape
    K, Cg, KH, KW = (int(s) for s in w_shape)
    groups = int(groups)
    sh, sw, ph, pw, dh, dw, OH, OW, Hq, Wq = _geometry(H, W, KH, KW, stride, padding, dilation)
    if dy.shape != (N, K, OH, OW):
        raise ValueError(f"conv2d_backward_weight: dy shape {dy.shape} does not match the output shape "
                         f"{(N, K, OH, OW)} of x shape {x.shape}")
    offs = _forward_offsets(Cg, KH, KW, groups, sh, sw, dh, dw, Hq, Wq)
    nchunks = max(1, min(N, numba.get_num_threads()))
    dwb = np.zeros((nchunks, K, Cg * KH * KW), dtype=np.float32)
    _backward_weight(dy, x, offs, dwb, ph, pw, sh, sw, Hq, Wq, K // groups)
    return dwb.sum(axis=0).reshape(K, Cg, KH, KW)


# ------------------------------------------------------------------ backward bias
@njit(cache=True, parallel=True, fastmath=True)
def _backward_bias(dy, db):
    """db[k] = sum of dy[:, k].  dy : (N, K, S), db : (K,) written in place."""
    N, K, S = dy.shape
    for k in prange(K):
        s = np.float32(0.0)
        for n in range(N):
            for t in range(S):
                s += dy[n, k, t]
        db[k] = s


def conv2d_backward_bias(dy):
    """db for y = conv2d(x, w) + b.  dy : (N, K, OH, OW) float32; returns db : (K,) float32."""
    dy = np.ascontiguousarray(dy, dtype=np.float32)
    N, K = dy.shape[0], dy.shape[1]
    db = np.empty(K, dtype=np.float32)
    _backward_bias(dy.reshape(N, K, -1), db)
    return db
