"""CUDA 2-D convolution (cross-correlation, PyTorch semantics), NCHW / OIHW.

Forward and backward to the input: one implicit-GEMM kernel (``conv_gemm_kernel``), compiled per kernel
size, stride, dilation, channel tile and direction by a cached factory.  A block computes a tile of
pixels x output channels, each thread a 4 x 4 register tile; per step the block stages the source values
of its pixels at one tap for BC = 8 channels (gathered on the fly: no im2col buffer) and the matching
weights in shared memory.  Forward epilogue: the bias, a fused ReLU and, for a batch norm that follows,
the tile's per-channel count, mean and M2 (``conv2d_forward_fused``).  The input gradient is the same
kernel as a forward convolution of the flipped weights over dy, strides by phase decomposition (one grid
layer per phase, only that phase's taps), plus the gradient already summed for x when the graph gives it
(``conv2d_backward_add``), zeroed where x <= 0 when that sum completes the gradient of the ReLU that made x;
a convolution fed by the model input skips it.

Backward weight: a split-K implicit GEMM in shared memory with a deterministic two-stage sum
(see ``conv2d_backward_weight_kernel``).  Backward bias: the per-channel block reduction of
``_common.channel_sum``.
"""
from __future__ import annotations

import functools

import numpy as np
from numba import cuda, float32, int32, uint32, uint64

from ..geometry import out_size

from ._common import MAX_BLOCKS, as3d, channel_sum, dummy_f32, empty, flat, stream
from .elementwise import zeros

# ------------------------------------------------------------ implicit GEMM: forward and backward to the input
TM = 4            # pixels per thread (register tile rows)
TN = 4            # channels per thread (register tile columns)
THREADS = 256     # threads per block
BC = 8            # source channels staged per step (BC x the pixel tile: 2, 4 or 8 values per thread)


def channel_tile(channels: int) -> int:
    """The output-channel tile of a block (16, 32 or 64): the smallest that holds a group's channels, at most 64;
    the pixel tile is 4096 / it (256, 128 or 64 pixels)."""
    return 16 if channels <= 16 else 32 if channels <= 32 else 64


@functools.lru_cache(maxsize=None)
def conv_gemm_kernel(KH, KW, sh, sw, dh, dw, BN, backward):
    """The implicit-GEMM convolution kernel for one kernel size, stride, dilation, channel tile ``BN`` and direction,
    compiled with them as constants (its tap loops unroll, its shared tiles have static sizes).

    A block computes a tile of BM pixels x BN output channels of one group, each thread a TM x TN register tile
    (pixels tx + TX * m, channels ty + TY * q).  Per step it stages, in shared memory, BC source channels of its
    BM pixels at one tap (the im2col values, gathered on the fly: no im2col buffer) and the BC x BN weights of
    that tap, then every thread does BC * TM * TN multiply-adds from there.  A thread stages one pixel's values
    (its (n, row, column) decomposed once per tile, so the steps do no division) for BC * BM / THREADS channels.

    Forward (``backward=False``): source x (N, C, H, W), output y (N, K, OH, OW); pixel (n, oh, ow) reads rows
    oh * sh - ph + i * dh.  Backward to the input (``backward=True``): the same kernel run as a forward
    convolution of the flipped weights over dy (N, K, OH, OW) into dx (N, C, H, W), the weights read transposed
    (the reduction over K, the output over C) and taps mirrored, strides by phase decomposition: grid z is the
    phase (rh, rw) = ((ih + ph) % sh, (iw + pw) % sw), whose pixels ih = ih0 + sh * a read dy row
    a + (ih0 + ph) // sh - (i * dh) // sh, and only its taps (i * dh % sh == rh) run.
    """
    TY = BN // TN
    TX = THREADS // TY
    BM = TX * TM
    A_TILE = BC * BM
    LOADS = A_TILE // THREADS            # source values a thread stages per step: one pixel, LOADS channels
    CSTEP = THREADS // BM                # channels apart
    BS = BC * BN
    RED = BN * TX
    TAPS = KH * KW
    PH = sh if backward else 1          # phases along rows and columns
    PW = sw if backward else 1

    def kernel(src, w, bias, base, mask, out, stats, N, Cs, Hs, Ws, Co, Ho, Wo, groups, ph, pw, has_bias, relu,
               want_stats, has_base):
        a_s = cuda.shared.array(A_TILE, float32)
        b_s = cuda.shared.array(BS, float32)
        red = cuda.shared.array(RED, float32)
        mean_s = cuda.shared.array(BN, float32)
        acc = cuda.local.array((TM, TN), float32)
        Rg = Cs // groups                    # reduction channels of a group (the source's)
        Og = Co // groups                    # output channels of a group
        rh = cuda.blockIdx.z // PW
        rw = cuda.blockIdx.z - rh * PW
        ih0 = (rh - ph) % PH                 # the phase's first output row and column (0 forward)
        iw0 = (rw - pw) % PW
        Hp = max(0, (Ho - ih0 + PH - 1) // PH)
        Wp = max(0, (Wo - iw0 + PW - 1) // PW)
        M = N * Hp * Wp
        row0 = (ih0 + ph) // PH if backward else -ph      # source row of pixel row 0, tap 0
        col0 = (iw0 + pw) // PW if backward else -pw
        tiles = -(-Og // BN)
        g = cuda.blockIdx.y // tiles
        o0 = (cuda.blockIdx.y - g * tiles) * BN
        t = cuda.threadIdx.x
        tx = t % TX
        ty = t // TX
        plane = Hs * Ws
        for tile in range(cuda.blockIdx.x, -(-M // BM), cuda.gridDim.x):
            p0 = tile * BM
            # the source values this thread stages per step: pixel pl of the tile, channels cl + CSTEP * k
            pl, cl = t % BM, t // BM
            r0, c0_, off0 = _gather_origin(p0 + pl, M, Hp, Wp, sh, sw, backward, row0, col0, Cs, plane, g * Rg + cl)
            for m in range(TM):
                for q in range(TN):
                    acc[m, q] = float32(0)
            for c0 in range(0, Rg, BC):
                for i in range(KH):
                    if backward and (i * dh) % sh != rh:
                        continue
                    di = -((i * dh) // sh) if backward else i * dh
                    for j in range(KW):
                        if backward and (j * dw) % sw != rw:
                            continue
                        dj = -((j * dw) // sw) if backward else j * dw
                        cuda.syncthreads()     # every thread is done with the previous step's tiles
                        for k in range(LOADS):
                            a_s[t + THREADS * k] = _gathered(src, r0 + di, c0_ + dj, off0 + (c0 + CSTEP * k) * plane,
                                                             c0 + cl + CSTEP * k < Rg, Hs, Ws)
                        _stage_weights(w, b_s, backward, g, Rg, Og, c0, o0, i * KW + j, TAPS, BS, BN)
                        cuda.syncthreads()
                        _multiply(a_s, b_s, acc, tx, ty, TX, TY, BM, BN, BC)
            _epilogue(acc, out, bias, base, mask, Co, Ho, Wo, Hp, Wp, ih0, iw0, M, p0, g * Og, o0, Og, tx, ty, TX, TY,
                      sh if backward else 1, sw if backward else 1, has_bias, relu and not backward, has_base,
                      relu and backward)
            if not backward and want_stats:     # (a constant False in the backward kernel: no code there)
                _tile_stats(acc, red, mean_s, stats, Co, M, p0, g * Og, o0, Og, tile, tx, ty, TX, TY, BN, BM)

    kernel.__name__ = "conv2d_backward_input_gemm_kernel" if backward else "conv2d_forward_gemm_kernel"
    return cuda.jit(kernel)


@cuda.jit(device=True)
def _stage_weights(w, b_s, backward, g, Rg, Og, c0, o0, tap, TAPS, BS, BN):
    """b_s[r * BN + q] = the weight of reduction channel c0 + r and output channel o0 + q (of group g) at ``tap``,
    0 past either; w (K, C // groups, KH, KW) flat: forward [o, r], backward transposed [r, o]."""
    for e in range(cuda.threadIdx.x, BS, THREADS):
        r = e // BN
        q = e - r * BN
        v = float32(0)
        if c0 + r < Rg and o0 + q < Og:
            if backward:
                v = w[((g * Rg + c0 + r) * Og + o0 + q) * TAPS + tap]
            else:
                v = w[((g * Og + o0 + q) * Rg + c0 + r) * TAPS + tap]
        b_s[e] = v


@cuda.jit(device=True)
def _multiply(a_s, b_s, acc, tx, ty, TX, TY, BM, BN, BC):
    """acc[m, q] += sum over the BC staged channels r of a_s[r * BM + tx + TX * m] * b_s[r * BN + ty + TY * q]
    (unsigned shared-memory offsets: no negative-index wrap-around in the loop)."""
    pa = uint32(tx)
    pb = uint32(ty)
    for r in range(BC):
        a0 = a_s[pa]
        a1 = a_s[pa + uint32(TX)]
        a2 = a_s[pa + uint32(2 * TX)]
        a3 = a_s[pa + uint32(3 * TX)]
        for q in range(TN):
            b = b_s[pb + uint32(q * TY)]
            acc[0, q] += a0 * b
            acc[1, q] += a1 * b
            acc[2, q] += a2 * b
            acc[3, q] += a3 * b
        pa += uint32(BM)
        pb += uint32(BN)


@cuda.jit(device=True)
def _gather_origin(p, M, Hp, Wp, sh, sw, backward, row0, col0, Cs, plane, c):
    """(row, column, offset of channel c's plane of image n) in the source for tap 0 of pixel p of the grid
    (N, Hp, Wp); a pixel past the grid gets a row no tap reaches."""
    if p >= M:
        return -(1 << 30), 0, 0
    n = p // (Hp * Wp)
    rem = p - n * Hp * Wp
    a = rem // Wp
    b = rem - a * Wp
    if backward:
        return a + row0, b + col0, (n * Cs + c) * plane
    return a * sh + row0, b * sw + col0, (n * Cs + c) * plane


@cuda.jit(device=True)
def _gathered(src, row, col, off, ok, Hs, Ws):
    """src at (row, col) of the plane at ``off``, or 0 outside it (padding, a tail)."""
    if ok and 0 <= row < Hs and 0 <= col < Ws:
        return src[uint64(off + row * Ws + col)]
    return float32(0)


@cuda.jit(device=True)
def _epilogue(acc, out, bias, base, mask, Co, Ho, Wo, Hp, Wp, ih0, iw0, M, p0, k_g, o0, Og, tx, ty, TX, TY, sh, sw,
              has_bias, relu, has_base, masked):
    """Write the thread's register tile: out (N, Co, Ho, Wo) flat at pixel (n, ih0 + sh * a, iw0 + sw * b) of the
    grid (N, Hp, Wp); plus the bias and the ReLU (forward) or plus ``base`` at the same place, then zero where
    ``mask`` <= 0 when ``masked`` (backward: a ReLU's gradient, mask its output); acc keeps the written values."""
    for m in range(TM):
        p = p0 + tx + TX * m
        if p < M:
            n = p // (Hp * Wp)
            rem = p - n * Hp * Wp
            a = rem // Wp
            pix = (ih0 + sh * a) * Wo + iw0 + sw * (rem - a * Wp)
            for q in range(TN):
                o = o0 + ty + TY * q
                if o < Og:
                    idx = (n * Co + k_g + o) * Ho * Wo + pix
                    v = acc[m, q]
                    if has_bias:
                        v += bias[k_g + o]
                    if relu:
                        v = max(v, float32(0))
                    if has_base:
                        v = base[idx] + v
                    if masked and mask[idx] <= float32(0):
                        v = float32(0)
                    out[idx] = v
                    acc[m, q] = v


@cuda.jit(device=True)
def _tile_stats(acc, red, mean_s, stats, Co, M, p0, k_g, o0, Og, tile, tx, ty, TX, TY, BN, BM):
    """The tile's count, mean and M2 per output channel into stats (3, Co, tiles) flat, column ``tile``: each
    thread's sums over its valid pixels, then the TX threads of a channel in order (two passes, no atomics)."""
    count = min(BM, M - p0)
    t = cuda.threadIdx.x
    for rnd in range(2):
        cuda.syncthreads()
        for q in range(TN):
            mu = mean_s[ty + TY * q] if rnd == 1 else float32(0)
            s = float32(0)
            for m in range(TM):
                if p0 + tx + TX * m < M:
                    d = acc[m, q] - mu
                    s += d * d if rnd == 1 else d
            red[(ty + TY * q) * TX + tx] = s
        cuda.syncthreads()
        if t < BN:
            total = float32(0)
            for x in range(TX):
                total += red[t * TX + x]
            if rnd == 0:
                mean_s[t] = total / float32(count)
            elif o0 + t < Og:
                tiles = stats.size // (3 * Co)
                stats[(k_g + o0 + t) * tiles + tile] = float32(count)
                stats[(Co + k_g + o0 + t) * tiles + tile] = mean_s[t]
                stats[(2 * Co + k_g + o0 + t) * tiles + tile] = total
    cuda.syncthreads()


# Backward to the weights as a split-K implicit GEMM.  Per group, dw (Kg x Cg*KH*KW) = dy (Kg x P) times the
# im2col of x (P x Cg*KH*KW), P = N * OH * OW pixels; the im2col is never stored.  A block computes a GM x GN
# tile of dw over one chunk of pixels: per step it stages GP pixels of dy and of the gathered x in shared
# memory, then each thread accumulates its 2 x 2 register tile from there (GP * 4 FMAs per step).  The
# (n, oh, ow) of the pixels a thread loads advance by counters, and its column's (c, i, j) is decomposed once:
# no division in the loop.  Chunks write partial sums; the last block of a tile to finish (an integer atomic
# counter per tile, reset by that block) sums them in chunk order into dw: one launch, no float atomics, the
# same result every run.
GM = 32    # dw rows (output channels of a group) per block
GN = 32    # dw columns (input channel x tap) per block
GP = 16    # pixels per shared-memory step
WTHREADS = 256


@cuda.jit(device=True)
def _advance(n, oh, ow, step, OH, OW):
    """The pixel ``step`` further on in (n, oh, ow) order."""
    ow += step
    while ow >= OW:
        ow -= OW
        oh += 1
        if oh >= OH:
            oh = 0
            n += 1
    return n, oh, ow


@cuda.jit
def conv2d_backward_weight_kernel(dy, x, KH, KW, sh, sw, ph, pw, dh, dw, groups, chunk, partial, counters, dwt):
    """dw of a convolution, each block one tile of dw over one chunk of ``chunk`` pixels (a multiple of GP).

    dy : (N, K, OH, OW), x : (N, C, H, W), partial : (chunks, K, Cg * KH * KW) scratch, dwt : (K, Cg * KH * KW),
    all float32; counters : (tiles,) int32, zero before and after.
    Launch: block WTHREADS, grid (column tiles, groups * row tiles, chunks).
    """
    a_s = cuda.shared.array((GP, GM), float32)
    b_s = cuda.shared.array((GP, GN), float32)
    last = cuda.shared.array(1, int32)
    N, C, H, W = x.shape
    K, OH, OW = dy.shape[1], dy.shape[2], dy.shape[3]
    Kg, Cg, cols = K // groups, C // groups, partial.shape[2]
    P = N * OH * OW
    t = cuda.threadIdx.x
    row_tiles = (Kg + GM - 1) // GM
    g = cuda.blockIdx.y // row_tiles
    m0 = (cuda.blockIdx.y - g * row_tiles) * GM
    n0 = cuda.blockIdx.x * GN
    p_lo = cuda.blockIdx.z * chunk
    p_hi = min(P, p_lo + chunk)
    # what this thread loads: column t % 32 of both tiles, pixels t // 32 and t // 32 + 8 of each step
    lane, pp = t % 32, t // 32
    col = n0 + lane
    cg = col // (KH * KW)
    tap = col - cg * (KH * KW)
    ki = tap // KW
    kj = tap - ki * KW
    c = g * Cg + cg
    k_load = g * Kg + m0 + lane
    ok_col = col < cols
    ok_row = m0 + lane < Kg
    q0 = p_lo + pp
    n_a = q0 // (OH * OW)
    oh_a = (q0 - n_a * OH * OW) // OW
    ow_a = q0 - n_a * OH * OW - oh_a * OW
    n_b, oh_b, ow_b = _advance(n_a, oh_a, ow_a, 8, OH, OW)
    # what this thread computes: rows ty, ty + 16 and columns tx, tx + 16 of the tile
    tx, ty = t % 16, t // 16
    acc00 = float32(0)
    acc01 = float32(0)
    acc10 = float32(0)
    acc11 = float32(0)
    for p0 in range(p_lo, p_hi, GP):
        for half in range(2):
            n_, oh_, ow_ = (n_a, oh_a, ow_a) if half == 0 else (n_b, oh_b, ow_b)
            q = p0 + pp + 8 * half
            inside = q < p_hi
            a_s[pp + 8 * half, lane] = dy[n_, k_load, oh_, ow_] if inside and ok_row else float32(0)
            ih = oh_ * sh - ph + ki * dh
            iw = ow_ * sw - pw + kj * dw
            v = float32(0)
            if inside and ok_col and 0 <= ih < H and 0 <= iw < W:
                v = x[n_, c, ih, iw]
            b_s[pp + 8 * half, lane] = v
        cuda.syncthreads()
        for r in range(GP):
            a0 = a_s[r, ty]
            a1 = a_s[r, ty + 16]
            b0 = b_s[r, tx]
            b1 = b_s[r, tx + 16]
            acc00 += a0 * b0
            acc01 += a0 * b1
            acc10 += a1 * b0
            acc11 += a1 * b1
        cuda.syncthreads()
        n_a, oh_a, ow_a = _advance(n_a, oh_a, ow_a, GP, OH, OW)
        n_b, oh_b, ow_b = _advance(n_b, oh_b, ow_b, GP, OH, OW)
    k0 = g * Kg + m0
    for a in range(2):
        m = ty + 16 * a
        if m0 + m < Kg:
            for b in range(2):
                j = n0 + tx + 16 * b
                if j < cols:
                    partial[cuda.blockIdx.z, k0 + m, j] = \
                        (acc00 if b == 0 else acc01) if a == 0 else (acc10 if b == 0 else acc11)
    _last_block_sums(partial, counters, last, k0, Kg - m0, n0, cols, dwt)


@cuda.jit(device=True)
def _last_block_sums(partial, counters, last, k0, rows, n0, cols, dwt):
    """The last block of a tile to finish sums the tile's partials over the chunks, in chunk order, into dwt,
    and resets the tile's counter (the CUDA threadFenceReduction pattern)."""
    t = cuda.threadIdx.x
    tile = cuda.blockIdx.y * cuda.gridDim.x + cuda.blockIdx.x
    chunks = cuda.gridDim.z
    cuda.threadfence()             # this block's partials are visible before it is counted
    cuda.syncthreads()
    if t == 0:
        last[0] = cuda.atomic.add(counters, tile, 1) == chunks - 1
    cuda.syncthreads()
    if last[0]:
        for e in range(t, GM * GN, WTHREADS):
            m, j = e // GN, n0 + e % GN
            if m < rows and j < cols:
                acc = float32(0)
                for s in range(chunks):
                    acc += partial[s, k0 + m, j]
                dwt[k0 + m, j] = acc
        if t == 0:
            counters[tile] = 0


_COUNTERS: dict = {}


def _tile_counters(tiles):
    """Zeroed int32 counters, one per tile, kept for the next launch (the last block of a tile resets its own)."""
    if tiles not in _COUNTERS:
        _COUNTERS[tiles] = zeros(tiles, np.int32)
    return _COUNTERS[tiles]


def _chunks(P, tiles, target_blocks=528):
    """(pixels per chunk, chunks): enough blocks for the GPU (about 4 per SM of an H200), at least 4 steps each."""
    want = max(1, min(-(-target_blocks // tiles), -(-P // (4 * GP)), 256))
    chunk = -(-P // want)
    chunk = -(-chunk // GP) * GP
    return chunk, -(-P // chunk)


def _dummy():
    """A 1-element device array standing for an absent optional array argument (bias, base, stats)."""
    return dummy_f32()


def _gemm_blocks(pixels, BN):
    """Pixel tiles of a launch of the implicit-GEMM kernel with channel tile BN."""
    return -(-pixels // (THREADS // (BN // TN) * TM))


def conv2d_forward_fused(x, w, b=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1, relu=False,
                         stats=False):
    """x : (N, C, H, W), w : (K, C // groups, KH, KW), b : (K,) or None -> (y : (N, K, OH, OW), stats or None):
    y = conv2d(x, w) + b, then max(y, 0) when relu; with ``stats`` also y's per-channel statistics in parts,
    (3, K, pixel tiles) float32 (count, mean, M2 of each block's pixels).  One launch; device float32."""
    N, C, H, W = x.shape
    K, Cg, KH, KW = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    OH, OW = out_size(H, KH, sh, ph, dh), out_size(W, KW, sw, pw, dw)
    BN = channel_tile(K // groups)
    tiles = _gemm_blocks(N * OH * OW, BN)
    y = empty((N, K, OH, OW), np.float32)
    st = empty((3, K, tiles), np.float32) if stats else None
    grid = (min(tiles, MAX_BLOCKS), groups * -(-(K // groups) // BN), 1)
    conv_gemm_kernel(KH, KW, sh, sw, dh, dw, BN, False)[grid, THREADS, stream()](
        flat(x), flat(w), _dummy() if b is None else b, _dummy(), _dummy(), flat(y),
        _dummy() if st is None else flat(st),
        N, C, H, W, K, OH, OW, groups, ph, pw, b is not None, bool(relu), st is not None, False)
    return y, st


def conv2d_forward(x, w, b=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
    """x : (N, C, H, W), w : (K, C // groups, KH, KW), b : (K,) or None -> y : (N, K, OH, OW); device float32."""
    return conv2d_forward_fused(x, w, b, stride, padding, dilation, groups)[0]


def conv2d_backward_input(dy, w, x_shape, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1, base=None,
                          mask=None):
    """dy : (N, K, OH, OW), w : (K, C // groups, KH, KW) -> dx : x_shape = (N, C, H, W), plus ``base`` (like dx)
    when given, then zeroed where ``mask`` (like dx) <= 0 when given; device float32.  One launch: a forward
    convolution of the flipped weights over dy, one grid layer per stride phase."""
    N, C, H, W = (int(s) for s in x_shape)
    K, Cg, KH, KW = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    dx = empty((N, C, H, W), np.float32)
    BN = channel_tile(Cg)
    grid = (min(_gemm_blocks(N * -(-H // sh) * -(-W // sw), BN), MAX_BLOCKS), groups * -(-Cg // BN), sh * sw)
    conv_gemm_kernel(KH, KW, sh, sw, dh, dw, BN, True)[grid, THREADS, stream()](
        flat(dy), flat(w), _dummy(), _dummy() if base is None else flat(base), _dummy() if mask is None else flat(mask),
        flat(dx), _dummy(), N, K, dy.shape[2], dy.shape[3], C, H, W, groups, ph, pw, False, mask is not None, False,
        base is not None)
    return dx


def conv2d_backward_add(dy, x, w, base, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1, has_bias=True,
                        relu=False):
    """(base + dx, dw, db or None) of y = conv2d(x, w) (+ b): the input gradient added to ``base`` in the same
    launch (the gradient already summed for x), zeroed where x <= 0 when ``relu`` (x a ReLU's output whose
    gradient this completes); device float32."""
    dx = conv2d_backward_input(dy, w, x.shape, stride, padding, dilation, groups, base=base, mask=x if relu else None)
    dw = conv2d_backward_weight(dy, x, w.shape, stride, padding, dilation, groups)
    return dx, dw, conv2d_backward_bias(dy) if has_bias else None


def conv2d_backward_weight(dy, x, w_shape, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
    """dy : (N, K, OH, OW), x : (N, C, H, W) -> dw : w_shape = (K, C // groups, KH, KW); device float32.

    Split-K implicit GEMM with the chunks summed in order by the last block of each tile, in one launch
    (``conv2d_backward_weight_kernel``)."""
    K, Cg, KH, KW = (int(s) for s in w_shape)
    N, _, OH, OW = dy.shape
    groups = int(groups)
    cols = Cg * KH * KW
    tiles = -(-cols // GN) * groups * -(-(K // groups) // GM)
    chunk, chunks = _chunks(N * OH * OW, tiles)
    dwt = empty((K, Cg, KH, KW), np.float32)
    partial = empty((chunks, K, cols), np.float32)
    grid = (-(-cols // GN), groups * -(-(K // groups) // GM), chunks)
    conv2d_backward_weight_kernel[grid, WTHREADS, stream()](dy, x, KH, KW, stride[0], stride[1], padding[0],
                                                            padding[1], dilation[0], dilation[1], groups, chunk,
                                                            partial, _tile_counters(tiles), dwt.reshape(K, cols))
    return dwt


def conv2d_backward_bias(dy):
    """dy : (N, K, OH, OW) -> db : (K,); device float32 (per-channel block reduction)."""
    return channel_sum(as3d(dy))


# the representative specialisations the op table declares (PTX, resource and coverage tests): 3x3, 64 channels
conv2d_forward_gemm_kernel = conv_gemm_kernel(3, 3, 1, 1, 1, 1, 64, False)
conv2d_backward_input_gemm_kernel = conv_gemm_kernel(3, 3, 2, 2, 1, 1, 64, True)

__all__ = ["conv2d_forward", "conv2d_forward_fused", "conv2d_backward_input", "conv2d_backward_add",
           "conv2d_backward_weight", "conv2d_backward_bias"]
