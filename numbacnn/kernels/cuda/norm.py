"""CUDA batch normalisation and local response normalisation, NCHW float32.

Batch norm works on an (N, C, S) view of x (S = H * W, or 1 for (N, C)
inputs), over a grid of (slices x channels) blocks, each block a slice of one
channel's N * S values, and reduces in two deterministic stages (no atomics):
the first writes each slice's count, mean and M2 (the sum of squared
deviations from the slice's mean: two passes, as accurate as the reference),
and the second, fused with the normalisation, combines its channel's parts
(Chan's formulas, as ordered block sums, so every block of a channel gets the
same bits) and normalises its slice, applying a fused ReLU.  A convolution
that computes the parts in its epilogue (``conv2d_forward_fused``) leaves one
launch.  The backward is the same shape: per-slice sums of g and g * xhat,
then their ordered totals fused with the input gradient.

Layer norm works on (M, F) rows: one block per row for the statistics, the
output and the input gradient, one block per feature for gamma's and beta's
gradients (block reductions again, no atomics).

LRN runs one thread per element; each sums its channel window directly (the
window is small), so forward and backward are both plain gathers.
"""
from __future__ import annotations

import math

import numpy as np
from numba import cuda, float32

from ._common import MAX_BLOCKS, RED_TPB, as3d, block_sum, empty, grid_1d, reduce_tpb, stream

_F32 = np.float32


# ------------------------------------------------------------ batch norm
BN_TARGET_BLOCKS = 528   # blocks a batch-norm launch aims at (about 4 per SM of an H200)
BN_PER_THREAD = 4        # values of its slice each thread takes at least


@cuda.jit(device=True)
def _walk_start(S, lo):
    """(e, n, s, dn, ds): this thread's first flat index e = lo + threadIdx.x of a walk over (n, s) pairs with S
    values of s per n, that (n, s), and the (n, s) step of blockDim.x flat indices (walks advance by counters)."""
    nt = cuda.blockDim.x
    dn = nt // S
    e = lo + cuda.threadIdx.x
    n = e // S
    return e, n, e - n * S, dn, nt - dn * S


@cuda.jit(device=True)
def _slice_sum(x, c, lo, hi, shift, square):
    """This thread's sum of x[:, c, :] (or of its squared deviations from ``shift``) over the flat (n, s)
    indices lo + threadIdx.x, lo + threadIdx.x + blockDim.x, ... below hi; (n, s) advance by counters."""
    S = x.shape[2]
    nt = cuda.blockDim.x
    e, n, s, dn, ds = _walk_start(S, lo)
    acc = float32(0)
    for _ in range(e, hi, nt):
        v = x[n, c, s] - shift
        acc += v * v if square else v
        n += dn
        s += ds
        if s >= S:
            s -= S
            n += 1
    return acc


@cuda.jit
def batch_norm_partials_kernel(x, length, stats):
    """Statistics of each slice of each channel (the first stage of a two-stage reduction).

    x : (N, C, S) float32; stats : (3, C, T) float32 <- per channel c and slice t (the flat (n, s) indices
    t * length .. (t + 1) * length - 1): count, mean and M2, the sum of squared deviations from that mean
    (two passes over the slice).  Launch: grid (T, C), a power-of-two block.
    """
    buf = cuda.shared.array(RED_TPB, float32)
    N, C, S = x.shape
    T = stats.shape[2]
    for c in range(cuda.blockIdx.y, C, cuda.gridDim.y):
        for t in range(cuda.blockIdx.x, T, cuda.gridDim.x):
            lo = t * length
            hi = min(N * S, lo + length)
            count = float32(hi - lo)
            mu = block_sum(buf, _slice_sum(x, c, lo, hi, float32(0), False)) / count
            m2 = block_sum(buf, _slice_sum(x, c, lo, hi, mu, True))
            if cuda.threadIdx.x == 0:
                stats[0, c, t] = count
                stats[1, c, t] = mu
                stats[2, c, t] = m2


@cuda.jit(device=True)
def _combined(buf, stats, c):
    """(count, mean, biased variance) of channel c from its parts' (count, mean, M2) in ``stats`` (3, C, T):
    Chan's pairwise formulas as two ordered block sums; every block of the channel gets the same bits."""
    a = float32(0)
    b = float32(0)
    for t in range(cuda.threadIdx.x, stats.shape[2], cuda.blockDim.x):
        a += stats[0, c, t]
        b += stats[0, c, t] * stats[1, c, t]
    count = block_sum(buf, a)
    mu = block_sum(buf, b) / count
    q = float32(0)
    for t in range(cuda.threadIdx.x, stats.shape[2], cuda.blockDim.x):
        d = stats[1, c, t] - mu
        q += stats[2, c, t] + stats[0, c, t] * d * d
    return count, mu, block_sum(buf, q) / count


@cuda.jit
def batch_norm_apply_kernel(x, stats, gamma, beta, running_mean, running_var, training, relu, momentum, eps, length,
                            mean, invstd, y):
    """y = (x - mean) * (invstd * gamma) + beta, then max(y, 0) when ``relu``: the second stage, fused.

    x, y : (N, C, S); stats : (3, C, T) parts of each channel (training; see ``batch_norm_partials_kernel``);
    gamma, beta, running_*, mean, invstd : (C,); all float32.  Training: every block combines its channel's
    parts (the same bits in each) into the batch mean and biased variance, and the block of slice 0 writes
    mean, invstd = 1 / sqrt(var + eps) and moves the running estimates by ``momentum`` (the unbiased
    variance); evaluation: the running estimates normalise.  Launch: grid (slices of ``length``, C).
    """
    buf = cuda.shared.array(RED_TPB, float32)
    N, C, S = x.shape
    for c in range(cuda.blockIdx.y, C, cuda.gridDim.y):
        if training:
            count, mu, var = _combined(buf, stats, c)
        else:
            count, mu, var = float32(0), running_mean[c], running_var[c]
        r = float32(1) / math.sqrt(var + eps)
        scale = r * gamma[c]
        for t in range(cuda.blockIdx.x, -(-(N * S) // length), cuda.gridDim.x):
            if t == 0 and cuda.threadIdx.x == 0:
                mean[c] = mu
                invstd[c] = r
                if training:
                    keep = float32(1) - momentum
                    running_mean[c] = running_mean[c] * keep + momentum * mu
                    unbiased = var * (count / max(count - float32(1), float32(1)))
                    running_var[c] = running_var[c] * keep + momentum * unbiased
            nt = cuda.blockDim.x
            e, n, s, dn, ds = _walk_start(S, t * length)
            for _ in range(e, min(N * S, (t + 1) * length), nt):
                v = (x[n, c, s] - mu) * scale + beta[c]
                y[n, c, s] = max(v, float32(0)) if relu else v
                n += dn
                s += ds
                if s >= S:
                    s -= S
                    n += 1


@cuda.jit(device=True)
def _slice_grad_sums(dy, x, y, relu, c, mu, r, lo, hi):
    """This thread's (sum of g, sum of g * xhat) over its share of a slice, g = dy (where y > 0 when relu)."""
    S = x.shape[2]
    nt = cuda.blockDim.x
    e, n, s, dn, ds = _walk_start(S, lo)
    sb = float32(0)
    sg = float32(0)
    for _ in range(e, hi, nt):
        g = dy[n, c, s]
        if relu and y[n, c, s] <= float32(0):
            g = float32(0)
        sb += g
        sg += g * ((x[n, c, s] - mu) * r)
        n += dn
        s += ds
        if s >= S:
            s -= S
            n += 1
    return sb, sg


@cuda.jit
def batch_norm_backward_partials_kernel(dy, x, y, relu, mean, invstd, length, part):
    """Per channel c and slice t (first stage): part[0, c, t] = sum of g, part[1, c, t] = sum of g * xhat,
    g = dy, zeroed where y <= 0 when ``relu`` (the fused ReLU's gradient).

    dy, x, y : (N, C, S) float32 (y: the forward's output; read only when relu); mean, invstd : (C,);
    part : (2, C, T) float32.  Launch: grid (T, C), a power-of-two block.
    """
    buf = cuda.shared.array(RED_TPB, float32)
    N, C, S = x.shape
    for c in range(cuda.blockIdx.y, C, cuda.gridDim.y):
        for t in range(cuda.blockIdx.x, part.shape[2], cuda.gridDim.x):
            lo = t * length
            sb, sg = _slice_grad_sums(dy, x, y, relu, c, mean[c], invstd[c], lo, min(N * S, lo + length))
            sb = block_sum(buf, sb)
            sg = block_sum(buf, sg)
            if cuda.threadIdx.x == 0:
                part[0, c, t] = sb
                part[1, c, t] = sg


@cuda.jit
def batch_norm_backward_input_kernel(dy, x, y, relu, gamma, mean, invstd, part, training, length, dgamma, dbeta, dx):
    """dx of batch norm (second stage, fused): every block sums its channel's parts in order into dbeta = sum(g)
    and dgamma = sum(g * xhat) (the block of slice 0 writes them), then its slice of dx: training
    dx = gamma * invstd / m * (m * g - dbeta - xhat * dgamma) (the batch statistics depend on x), evaluation
    dx = g * gamma * invstd; g = dy, zeroed where y <= 0 when ``relu``.

    dy, x, y, dx : (N, C, S); gamma, mean, invstd, dgamma, dbeta : (C,); part : (2, C, T); all float32.
    Launch: grid (slices of ``length``, C).
    """
    buf = cuda.shared.array(RED_TPB, float32)
    N, C, S = x.shape
    m = float32(N * S)
    for c in range(cuda.blockIdx.y, C, cuda.gridDim.y):
        a = float32(0)
        b = float32(0)
        for t in range(cuda.threadIdx.x, part.shape[2], cuda.blockDim.x):
            a += part[0, c, t]
            b += part[1, c, t]
        sb = block_sum(buf, a)
        sg = block_sum(buf, b)
        mu, r = mean[c], invstd[c]
        scale = gamma[c] * r
        for t in range(cuda.blockIdx.x, -(-(N * S) // length), cuda.gridDim.x):
            if t == 0 and cuda.threadIdx.x == 0:
                dbeta[c] = sb
                dgamma[c] = sg
            nt = cuda.blockDim.x
            e, n, s, dn, ds = _walk_start(S, t * length)
            for _ in range(e, min(N * S, (t + 1) * length), nt):
                g = dy[n, c, s]
                if relu and y[n, c, s] <= float32(0):
                    g = float32(0)
                if training:
                    dx[n, c, s] = scale / m * (m * g - sb - (x[n, c, s] - mu) * r * sg)
                else:
                    dx[n, c, s] = g * scale
                n += dn
                s += ds
                if s >= S:
                    s -= S
                    n += 1


def _bn_grid(m, C):
    """(threads, slices, length) of a batch-norm launch over C channels of m values: about BN_TARGET_BLOCKS
    blocks of (channel, slice), each thread at least BN_PER_THREAD values of its slice."""
    threads = reduce_tpb(m)
    slices = max(1, min(-(-BN_TARGET_BLOCKS // C), -(-m // (BN_PER_THREAD * threads))))
    length = -(-m // slices)
    return threads, -(-m // length), length


def _grid(slices, C, threads):
    return (min(slices, MAX_BLOCKS), min(C, MAX_BLOCKS)), threads, stream()


def fused_batch_norm_forward(x, gamma, beta, running_mean, running_var, training=True, momentum=0.1, eps=1e-5,
                             relu=False, stats=None):
    """x : (N, C, H, W) or (N, C); gamma, beta, running_* : (C,); stats : (3, C, T) parts of x's channels or
    None -> (y, save_mean (C,), save_invstd (C,)), y = max(bn(x), 0) when relu.  Training: one launch with
    ``stats``, else two (the parts, then the combination fused with the normalisation); the running estimates
    move in place.  Evaluation: one launch."""
    x3 = as3d(x)
    N, C, S = x3.shape
    threads, slices, length = _bn_grid(N * S, C)
    mean = empty(C, np.float32)
    invstd = empty(C, np.float32)
    if training and stats is None:
        stats = empty((3, C, slices), np.float32)
        batch_norm_partials_kernel[_grid(slices, C, threads)](x3, length, stats)
    elif not training:
        stats = _no_stats()
    y = empty(x.shape, np.float32)
    batch_norm_apply_kernel[_grid(slices, C, threads)](x3, stats, gamma, beta, running_mean, running_var,
                                                       bool(training), bool(relu), _F32(momentum), _F32(eps), length,
                                                       mean, invstd, as3d(y))
    return y, mean, invstd


def fused_batch_norm_backward(dy, x, gamma, save_mean, save_invstd, training=True, y=None):
    """dy, x : (N, C, H, W) or (N, C); gamma, save_* : (C,); y : the forward's output when it applied the ReLU
    (dy counts where y > 0), else None -> (dx, dgamma (C,), dbeta (C,)).  Two launches."""
    x3, dy3 = as3d(x), as3d(dy)
    y3 = x3 if y is None else as3d(y)
    N, C, S = x3.shape
    threads, slices, length = _bn_grid(N * S, C)
    part = empty((2, C, slices), np.float32)
    batch_norm_backward_partials_kernel[_grid(slices, C, threads)](dy3, x3, y3, y is not None, save_mean,
                                                                   save_invstd, length, part)
    dgamma = empty(C, np.float32)
    dbeta = empty(C, np.float32)
    dx = empty(x.shape, np.float32)
    batch_norm_backward_input_kernel[_grid(slices, C, threads)](dy3, x3, y3, y is not None, gamma, save_mean,
                                                                save_invstd, part, bool(training), length, dgamma,
                                                                dbeta, as3d(dx))
    return dx, dgamma, dbeta


def _no_stats():
    """A (3, 1, 1) stand-in for the parts an evaluation does not read."""
    return empty((3, 1, 1), np.float32)


def batch_norm_forward(x, gamma, beta, running_mean, running_var, training=True, momentum=0.1, eps=1e-5):
    """x : (N, C, H, W) or (N, C); gamma, beta, running_* : (C,) -> (y, save_mean (C,), save_invstd (C,)).

    In training the running estimates (device arrays) are updated in place.
    """
    return fused_batch_norm_forward(x, gamma, beta, running_mean, running_var, training, momentum, eps)


def batch_norm_backward(dy, x, gamma, save_mean, save_invstd, training=True):
    """dy, x : (N, C, H, W) or (N, C); gamma, save_* : (C,) -> (dx, dgamma (C,), dbeta (C,))."""
    return fused_batch_norm_backward(dy, x, gamma, save_mean, save_invstd, training)


# ------------------------------------------------------------ layer norm
@cuda.jit
def layer_norm_forward_kernel(x, gamma, beta, eps, y, mean, invstd):
    """One block per row m.  x, y : (M, F) float32; gamma, beta : (F,); mean, invstd : (M,) float32.

    mean and 1 / sqrt(biased variance + eps) of the row (two passes), then y = xhat * gamma + beta.
    """
    buf = cuda.shared.array(RED_TPB, float32)
    M, F = x.shape
    for m in range(cuda.blockIdx.x, M, cuda.gridDim.x):
        acc = float32(0)
        for f in range(cuda.threadIdx.x, F, cuda.blockDim.x):
            acc += x[m, f]
        mu = block_sum(buf, acc) / float32(F)
        acc = float32(0)
        for f in range(cuda.threadIdx.x, F, cuda.blockDim.x):
            d = x[m, f] - mu
            acc += d * d
        r = float32(1) / math.sqrt(block_sum(buf, acc) / float32(F) + eps)
        for f in range(cuda.threadIdx.x, F, cuda.blockDim.x):
            y[m, f] = (x[m, f] - mu) * r * gamma[f] + beta[f]
        if cuda.threadIdx.x == 0:
            mean[m] = mu
            invstd[m] = r


@cuda.jit
def layer_norm_backward_input_kernel(dy, x, gamma, mean, invstd, dx):
    """One block per row: dx = invstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy * gamma.

    dy, x, dx : (M, F) float32; gamma : (F,); mean, invstd : (M,) float32.
    """
    buf = cuda.shared.array(RED_TPB, float32)
    M, F = x.shape
    for m in range(cuda.blockIdx.x, M, cuda.gridDim.x):
        mu, r = mean[m], invstd[m]
        sg = float32(0)
        sgx = float32(0)
        for f in range(cuda.threadIdx.x, F, cuda.blockDim.x):
            g = dy[m, f] * gamma[f]
            sg += g
            sgx += g * (x[m, f] - mu) * r
        sg = block_sum(buf, sg) / float32(F)
        sgx = block_sum(buf, sgx) / float32(F)
        for f in range(cuda.threadIdx.x, F, cuda.blockDim.x):
            dx[m, f] = r * (dy[m, f] * gamma[f] - sg - (x[m, f] - mu) * r * sgx)


@cuda.jit
def layer_norm_backward_params_kernel(dy, x, mean, invstd, dgamma, dbeta):
    """One block per feature f: dgamma = sum over rows of dy * xhat, dbeta = sum of dy.

    dy, x : (M, F) float32; mean, invstd : (M,); dgamma, dbeta : (F,) float32.
    """
    buf = cuda.shared.array(RED_TPB, float32)
    M, F = x.shape
    for f in range(cuda.blockIdx.x, F, cuda.gridDim.x):
        sg = float32(0)
        sb = float32(0)
        for m in range(cuda.threadIdx.x, M, cuda.blockDim.x):
            g = dy[m, f]
            sb += g
            sg += g * (x[m, f] - mean[m]) * invstd[m]
        sb = block_sum(buf, sb)
        sg = block_sum(buf, sg)
        if cuda.threadIdx.x == 0:
            dgamma[f] = sg
            dbeta[f] = sb


def layer_norm_forward(x, gamma, beta, eps=1e-5):
    """x : (M, F); gamma, beta : (F,) -> (y (M, F), save_mean (M,), save_invstd (M,)); device float32."""
    M, F = x.shape
    y = empty(x.shape, np.float32)
    mean = empty(M, np.float32)
    invstd = empty(M, np.float32)
    layer_norm_forward_kernel[min(M, MAX_BLOCKS), reduce_tpb(F), stream()](x, gamma, beta, _F32(eps), y, mean, invstd)
    return y, mean, invstd


def layer_norm_backward(dy, x, gamma, save_mean, save_invstd):
    """dy, x : (M, F); gamma : (F,); save_* : (M,) -> (dx (M, F), dgamma (F,), dbeta (F,)); device float32."""
    M, F = x.shape
    dx = empty(x.shape, np.float32)
    layer_norm_backward_input_kernel[min(M, MAX_BLOCKS), reduce_tpb(F), stream()](
        dy, x, gamma, save_mean, save_invstd, dx)
    dgamma = empty(F, np.float32)
    dbeta = empty(F, np.float32)
    layer_norm_backward_params_kernel[min(F, MAX_BLOCKS), reduce_tpb(M), stream()](
        dy, x, save_mean, save_invstd, dgamma, dbeta)
    return dx, dgamma, dbeta


# ------------------------------------------------------------ LRN
@cuda.jit
def lrn_forward_kernel(x, size, alpha_over_size, beta, k, y, scale):
    """Local response norm across channels (PyTorch's LocalResponseNorm).

    x, y, scale : (N, C, S) float32.  scale = k + alpha / size * (sum of x**2 over
    channels c - size // 2 .. c + (size - 1) // 2), y = x * scale ** -beta.
    """
    N, C, S = x.shape
    for idx in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        n, c, s = idx // (C * S), (idx // S) % C, idx % S
        acc = float32(0)
        for cc in range(max(0, c - size // 2), min(C, c + (size - 1) // 2 + 1)):
            v = x[n, cc, s]
            acc += v * v
        sc = k + alpha_over_size * acc
        scale[n, c, s] = sc
        y[n, c, s] = x[n, c, s] * math.pow(sc, -beta)


@cuda.jit
def lrn_backward_kernel(dy, x, y, scale, size, two_alpha_beta_over_size, beta, dx):
    """dx of LRN from the forward's y and scale.  dy, x, y, scale, dx : (N, C, S) float32.

    dx_j = dy_j * scale_j ** -beta - 2 alpha beta / size * x_j * sum(dy_c * y_c / scale_c)
    over the channels c whose window holds j.
    """
    N, C, S = x.shape
    for idx in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        n, j, s = idx // (C * S), (idx // S) % C, idx % S
        acc = float32(0)
        for c in range(max(0, j - (size - 1) // 2), min(C, j + size // 2 + 1)):
            acc += dy[n, c, s] * y[n, c, s] / scale[n, c, s]
        dx[n, j, s] = dy[n, j, s] * math.pow(scale[n, j, s], -beta) - two_alpha_beta_over_size * x[n, j, s] * acc


def lrn_forward(x, size=5, alpha=1e-4, beta=0.75, k=1.0):
    """x : (N, C, H, W) -> (y, scale), both x's shape; device float32."""
    y = empty(x.shape, np.float32)
    scale = empty(x.shape, np.float32)
    lrn_forward_kernel[grid_1d(x.size)](as3d(x), int(size), _F32(alpha / size), _F32(beta), _F32(k), as3d(y),
                                        as3d(scale))
    return y, scale


def lrn_backward(dy, x, y, scale, size=5, alpha=1e-4, beta=0.75, k=1.0):
    """dy, x, y, scale : (N, C, H, W) -> dx : (N, C, H, W); device float32."""
    dx = empty(x.shape, np.float32)
    lrn_backward_kernel[grid_1d(x.size)](as3d(dy), as3d(x), as3d(y), as3d(scale), int(size),
                                         _F32(2.0 * alpha * beta / size), _F32(beta), as3d(dx))
    return dx


__all__ = ["batch_norm_forward", "batch_norm_backward", "fused_batch_norm_forward", "fused_batch_norm_backward",
           "layer_norm_forward", "layer_norm_backward", "lrn_forward",
           "lrn_backward"]
