"""CUDA batch normalisation and local response normalisation, NCHW float32.

Batch norm works on an (N, C, S) view of x (S = H * W, or 1 for (N, C)
inputs).  Per-channel statistics and the gamma/beta gradients are block
reductions, one block per channel (``_common.block_sum``: no atomics,
deterministic); the mean is taken first and the variance as the mean squared
deviation from it (two passes, as accurate as the reference).  Normalising
and the input gradient are then elementwise.

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
@cuda.jit
def batch_norm_stats_kernel(x, momentum, unbias, eps, mean, invstd, running_mean, running_var):
    """Training statistics, one block per channel c.

    x : (N, C, S) float32; mean, invstd, running_mean, running_var : (C,) float32.
    mean = batch mean, invstd = 1 / sqrt(biased variance + eps); the running
    estimates move by ``momentum`` toward the mean and the unbiased variance
    (biased variance * unbias, unbias = m / (m - 1)), in place.
    """
    buf = cuda.shared.array(RED_TPB, float32)
    N, C, S = x.shape
    m = N * S
    for c in range(cuda.blockIdx.x, C, cuda.gridDim.x):
        acc = float32(0)
        for e in range(cuda.threadIdx.x, m, cuda.blockDim.x):
            acc += x[e // S, c, e % S]
        mu = block_sum(buf, acc) / float32(m)
        acc = float32(0)
        for e in range(cuda.threadIdx.x, m, cuda.blockDim.x):
            d = x[e // S, c, e % S] - mu
            acc += d * d
        var = block_sum(buf, acc) / float32(m)
        if cuda.threadIdx.x == 0:
            mean[c] = mu
            invstd[c] = float32(1) / math.sqrt(var + eps)
            keep = float32(1) - momentum
            running_mean[c] = running_mean[c] * keep + momentum * mu
            running_var[c] = running_var[c] * keep + momentum * var * unbias


@cuda.jit
def batch_norm_eval_stats_kernel(running_mean, running_var, eps, mean, invstd):
    """Evaluation statistics: mean = running_mean, invstd = 1 / sqrt(running_var + eps).  All (C,) float32."""
    for c in range(cuda.grid(1), mean.size, cuda.gridsize(1)):
        mean[c] = running_mean[c]
        invstd[c] = float32(1) / math.sqrt(running_var[c] + eps)


@cuda.jit
def batch_norm_apply_kernel(x, mean, invstd, gamma, beta, y):
    """y = (x - mean) * (invstd * gamma) + beta per channel.  x, y : (N, C, S), the rest (C,); float32."""
    N, C, S = x.shape
    for idx in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        n, c, s = idx // (C * S), (idx // S) % C, idx % S
        y[n, c, s] = (x[n, c, s] - mean[c]) * (invstd[c] * gamma[c]) + beta[c]


@cuda.jit
def batch_norm_backward_reduce_kernel(dy, x, mean, invstd, dgamma, dbeta):
    """dbeta = sum(dy), dgamma = sum(dy * xhat) per channel, one block per channel.

    dy, x : (N, C, S) float32; mean, invstd, dgamma, dbeta : (C,) float32.
    """
    buf = cuda.shared.array(RED_TPB, float32)
    N, C, S = x.shape
    for c in range(cuda.blockIdx.x, C, cuda.gridDim.x):
        sb = float32(0)
        sg = float32(0)
        for e in range(cuda.threadIdx.x, N * S, cuda.blockDim.x):
            g = dy[e // S, c, e % S]
            sb += g
            sg += g * ((x[e // S, c, e % S] - mean[c]) * invstd[c])
        sb = block_sum(buf, sb)
        sg = block_sum(buf, sg)
        if cuda.threadIdx.x == 0:
            dbeta[c] = sb
            dgamma[c] = sg


@cuda.jit
def batch_norm_backward_input_kernel(dy, x, gamma, mean, invstd, dgamma, dbeta, training, dx):
    """dx of batch norm.  dy, x, dx : (N, C, S) float32; the rest (C,) float32.

    training: dx = gamma * invstd / m * (m * dy - dbeta - xhat * dgamma) (the
    batch statistics depend on x); evaluation: dx = dy * gamma * invstd.
    """
    N, C, S = x.shape
    m = float32(N * S)
    for idx in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        n, c, s = idx // (C * S), (idx // S) % C, idx % S
        scale = gamma[c] * invstd[c]
        if training:
            xhat = (x[n, c, s] - mean[c]) * invstd[c]
            dx[n, c, s] = scale / m * (m * dy[n, c, s] - dbeta[c] - xhat * dgamma[c])
        else:
            dx[n, c, s] = dy[n, c, s] * scale


def batch_norm_forward(x, gamma, beta, running_mean, running_var, training=True, momentum=0.1, eps=1e-5):
    """x : (N, C, H, W) or (N, C); gamma, beta, running_* : (C,) -> (y, save_mean (C,), save_invstd (C,)).

    In training the running estimates (device arrays) are updated in place.
    """
    x3 = as3d(x)
    N, C, S = x3.shape
    mean = empty(C, np.float32)
    invstd = empty(C, np.float32)
    if training:
        m = N * S
        batch_norm_stats_kernel[min(C, MAX_BLOCKS), reduce_tpb(m), stream()](
            x3, _F32(momentum), _F32(m / max(m - 1, 1)), _F32(eps), mean, invstd, running_mean, running_var)
    else:
        batch_norm_eval_stats_kernel[grid_1d(C)](running_mean, running_var, _F32(eps), mean, invstd)
    y = empty(x.shape, np.float32)
    batch_norm_apply_kernel[grid_1d(x.size)](x3, mean, invstd, gamma, beta, as3d(y))
    return y, mean, invstd


def batch_norm_backward(dy, x, gamma, save_mean, save_invstd, training=True):
    """dy, x : (N, C, H, W) or (N, C); gamma, save_* : (C,) -> (dx, dgamma (C,), dbeta (C,))."""
    x3, dy3 = as3d(x), as3d(dy)
    N, C, S = x3.shape
    dgamma = empty(C, np.float32)
    dbeta = empty(C, np.float32)
    batch_norm_backward_reduce_kernel[min(C, MAX_BLOCKS), reduce_tpb(N * S), stream()](dy3, x3, save_mean, save_invstd,
                                                                            dgamma, dbeta)
    dx = empty(x.shape, np.float32)
    batch_norm_backward_input_kernel[grid_1d(x.size)](dy3, x3, gamma, save_mean, save_invstd, dgamma, dbeta,
                                                      bool(training), as3d(dx))
    return dx, dgamma, dbeta


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


__all__ = ["batch_norm_forward", "batch_norm_backward", "layer_norm_forward", "layer_norm_backward", "lrn_forward",
           "lrn_backward"]
