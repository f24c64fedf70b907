"""Normalisation kernels on the CPU: batch norm and local response norm (LRN).

Batch norm sees x as (N, C, S) with S = H * W (4-D x) or S = 1 (2-D x) and
runs ``prange`` over the channels: each thread owns whole channels, so the
per-channel statistics and parameter gradients need no shared accumulator.
Statistics are accumulated in float64, the variance in a second pass around
the mean (no cancellation).  Layer norm runs ``prange`` over the rows for the
statistics and the input gradient (each row is one thread's), and over the
features for gamma's and beta's gradients (a fixed summation order over the
rows: the same bits for any thread count).  LRN runs ``prange`` over the (n, c)
planes.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["batch_norm_forward", "batch_norm_backward", "fused_batch_norm_forward", "fused_batch_norm_backward",
           "layer_norm_forward", "layer_norm_backward", "lrn_forward",
           "lrn_backward"]


def _as_ncs(a):
    """(N, C, H, W) or (N, C) -> C-contiguous (N, C, S) view."""
    if a.ndim not in (2, 4):
        raise ValueError(f"batch norm expects x of 2 or 4 dimensions, got shape {a.shape}")
    a = np.ascontiguousarray(a)
    return a.reshape(a.shape[0], a.shape[1], -1)


# ------------------------------------------------------------------ batch norm
#: the channel sums may be reassociated (LLVM then vectorizes them, several float64 partial sums in registers):
#: the order is fixed by the compiled code, not by the threads, so results stay the same bits from run to run
_REASSOC = {"reassoc"}

@njit(cache=True, parallel=True, fastmath=_REASSOC)
def _bn_stats(x, mean, var):
    """x : (N, C, S); writes mean, var : (C,) float64, the batch mean and biased variance."""
    N, C, S = x.shape
    m = N * S
    for c in prange(C):
        s = 0.0
        for n in range(N):
            for i in range(S):
                s += x[n, c, i]
        mu = s / m
        q = 0.0
        for n in range(N):
            for i in range(S):
                d = x[n, c, i] - mu
                q += d * d
        mean[c] = mu
        var[c] = q / m


@njit(cache=True, parallel=True)
def _bn_apply(x, mean, scale, beta, y, relu):
    """y = (x - mean) * scale + beta per channel, then 0 where y < 0 when ``relu`` (a ReLU the graph fused; NaN
    and -0.0 pass, as relu_forward).  x, y : (N, C, S); mean, scale, beta : (C,) (mean may be float64)."""
    N, C, S = x.shape
    for c in prange(C):
        mu, a, b = mean[c], scale[c], beta[c]
        for n in range(N):
            for i in range(S):
                v = np.float32((x[n, c, i] - mu) * a + b)
                y[n, c, i] = 0 if relu and v < 0 else v


@njit(cache=True, parallel=True, fastmath=_REASSOC)
def _bn_grad_params(dy, x, mean, invstd, dgamma, dbeta, y, relu):
    """dbeta = sum g, dgamma = sum g * xhat per channel (float64), g = dy, or with ``relu`` dy where the forward's
    output y > 0 and 0 elsewhere (the fused ReLU's gradient).  dy, x, y : (N, C, S)."""
    N, C, S = x.shape
    for c in prange(C):
        mu, r = np.float64(mean[c]), np.float64(invstd[c])
        sb = 0.0
        sg = 0.0
        for n in range(N):
            for i in range(S):
                g = np.float64(dy[n, c, i]) if not relu or y[n, c, i] > 0 else 0.0
                sb += g
                sg += g * (x[n, c, i] - mu) * r
        dbeta[c] = sb
        dgamma[c] = sg


@njit(cache=True, parallel=True)
def _bn_grad_input_train(dy, x, gamma, mean, invstd, dgamma, dbeta, dx, y, relu):
    """dx = gamma * invstd / m * (m * g - dbeta - xhat * dgamma), g as ``_bn_grad_params``.

    dy, x, dx, y : (N, C, S)."""
    N, C, S = x.shape
    m = N * S
    for c in prange(C):
        mu, r = mean[c], invstd[c]
        k = gamma[c] * r / m
        gb, gg = dbeta[c], dgamma[c]
        for n in range(N):
            for i in range(S):
                xhat = (x[n, c, i] - mu) * r
                g = dy[n, c, i] if not relu or y[n, c, i] > 0 else np.float32(0)
                dx[n, c, i] = k * (m * g - gb - xhat * gg)


def batch_norm_forward(x, gamma, beta, running_mean, running_var, training=True, momentum=0.1, eps=1e-5):
    """Batch normalisation per channel C (``fused_batch_norm_forward`` without the ReLU).

    x : (N, C, H, W) or (N, C) float32; gamma, beta, running_mean, running_var : (C,) float32.
    Training: the batch mean and biased variance normalise x, and the running
    estimates are updated in place (r = (1 - momentum) * r + momentum * s, with
    the unbiased variance).  Evaluation: the running estimates normalise x.
    returns (y : x's shape, save_mean : (C,), save_invstd : (C,)), all float32.
    """
    return fused_batch_norm_forward(x, gamma, beta, running_mean, running_var, training, momentum, eps, False, None)


def fused_batch_norm_forward(x, gamma, beta, running_mean, running_var, training, momentum, eps, relu, stats):
    """``batch_norm_forward``, then 0 where y < 0 when ``relu`` (the graph's BatchNorm + ReLU) in the same pass.
    ``stats`` (a convolution's statistics in parts) is not used: the CPU computes the batch's in one pass."""
    x3 = _as_ncs(x)
    N, C, S = x3.shape
    if training:
        mean = np.empty(C, dtype=np.float64)
        var = np.empty(C, dtype=np.float64)
        _bn_stats(x3, mean, var)
        m = N * S
        running_mean *= (1 - momentum)
        running_mean += momentum * mean
        running_var *= (1 - momentum)
        running_var += momentum * var * (m / max(m - 1, 1))
    else:
        mean = running_mean.astype(np.float64)
        var = running_var.astype(np.float64)
    save_mean = mean.astype(x.dtype)
    save_invstd = (1.0 / np.sqrt(var + eps)).astype(x.dtype)
    y = np.empty(x3.shape, dtype=x.dtype)
    # normalise with the float64 mean: x - mean is then exact to float32 rounding even when |mean| >> std
    _bn_apply(x3, mean, (save_invstd * gamma).astype(x.dtype), np.ascontiguousarray(beta, dtype=x.dtype), y,
              bool(relu))
    return y.reshape(x.shape), save_mean, save_invstd


def batch_norm_backward(dy, x, gamma, save_mean, save_invstd, training=True):
    """``fused_batch_norm_backward`` without the ReLU (shapes there)."""
    return fused_batch_norm_backward(dy, x, gamma, save_mean, save_invstd, training, None)


def fused_batch_norm_backward(dy, x, gamma, save_mean, save_invstd, training, y):
    """Gradients of batch norm.

    dy, x : (N, C, H, W) or (N, C) float32; gamma, save_mean, save_invstd : (C,) float32
    (save_* from the forward).  In training the batch statistics depend on x; in
    evaluation they are constants.  returns (dx : x's shape, dgamma : (C,), dbeta : (C,)), float32.
    """
    x3, dy3 = _as_ncs(x), _as_ncs(dy)
    relu = y is not None
    y3 = _as_ncs(y) if relu else dy3           # the forward's output when it applied the ReLU
    C = x3.shape[1]
    dgamma64 = np.empty(C, dtype=np.float64)
    dbeta64 = np.empty(C, dtype=np.float64)
    _bn_grad_params(dy3, x3, save_mean, save_invstd, dgamma64, dbeta64, y3, relu)
    dgamma, dbeta = dgamma64.astype(dy.dtype), dbeta64.astype(dy.dtype)
    if training:
        dx = np.empty(x3.shape, dtype=dy.dtype)
        _bn_grad_input_train(dy3, x3, np.ascontiguousarray(gamma), save_mean, save_invstd, dgamma, dbeta, dx, y3,
                             relu)
    else:
        if relu:
            dy3 = np.where(y3 > 0, dy3, np.float32(0)).astype(dy.dtype)
        dx = np.empty(x3.shape, dtype=dy.dtype)
        zero = np.zeros(C, dtype=dy.dtype)
        _bn_apply(dy3, zero, (gamma * save_invstd).astype(dy.dtype), zero, dx, False)  # dx = dy * gamma * invstd
    return dx.reshape(x.shape), dgamma, dbeta


# ------------------------------------------------------------------ layer norm
@njit(cache=True, parallel=True)
def _ln_forward(x, gamma, beta, eps, y, mean, invstd):
    """x, y : (M, F); gamma, beta : (F,); mean, invstd : (M,).  Statistics in float64, two passes."""
    M, F = x.shape
    for m in prange(M):
        s = 0.0
        for f in range(F):
            s += x[m, f]
        mu = s / F
        q = 0.0
        for f in range(F):
            d = x[m, f] - mu
            q += d * d
        r = 1.0 / np.sqrt(q / F + eps)
        mean[m], invstd[m] = mu, r
        for f in range(F):
            y[m, f] = (x[m, f] - mu) * r * gamma[f] + beta[f]


@njit(cache=True, parallel=True)
def _ln_grad_input(dy, x, gamma, mean, invstd, dx):
    """dx = invstd * (g - mean(g) - xhat * mean(g * xhat)) per row, g = dy * gamma.  All (M, F) / (F,) / (M,)."""
    M, F = x.shape
    for m in prange(M):
        mu, r = np.float64(mean[m]), np.float64(invstd[m])
        sg = 0.0
        sgx = 0.0
        for f in range(F):
            g = np.float64(dy[m, f]) * gamma[f]
            sg += g
            sgx += g * (x[m, f] - mu) * r
        sg /= F
        sgx /= F
        for f in range(F):
            xhat = (x[m, f] - mu) * r
            dx[m, f] = r * (dy[m, f] * gamma[f] - sg - xhat * sgx)


@njit(cache=True, parallel=True)
def _ln_grad_params(dy, x, mean, invstd, dgamma, dbeta):
    """dgamma = sum over rows of dy * xhat, dbeta = sum of dy (float64), one feature per thread."""
    M, F = x.shape
    for f in prange(F):
        sg = 0.0
        sb = 0.0
        for m in range(M):
            g = np.float64(dy[m, f])
            sb += g
            sg += g * (x[m, f] - mean[m]) * invstd[m]
        dgamma[f], dbeta[f] = sg, sb


def layer_norm_forward(x, gamma, beta, eps=1e-5):
    """Layer normalisation of each row.  x : (M, F) float32; gamma, beta : (F,) float32.

    returns (y : (M, F), save_mean : (M,), save_invstd : (M,)), float32: the row's mean and
    1 / sqrt(biased variance + eps) over its F features.
    """
    x = np.ascontiguousarray(x)
    M, F = x.shape
    y = np.empty_like(x)
    mean = np.empty(M, dtype=np.float64)
    invstd = np.empty(M, dtype=np.float64)
    _ln_forward(x, np.ascontiguousarray(gamma), np.ascontiguousarray(beta), float(eps), y, mean, invstd)
    return y, mean.astype(x.dtype), invstd.astype(x.dtype)


def layer_norm_backward(dy, x, gamma, save_mean, save_invstd):
    """dy, x : (M, F) float32; gamma : (F,); save_* : (M,) from the forward.
    returns (dx : (M, F), dgamma : (F,), dbeta : (F,)), float32."""
    dy, x = np.ascontiguousarray(dy), np.ascontiguousarray(x)
    F = x.shape[1]
    dx = np.empty_like(x)
    _ln_grad_input(dy, x, np.ascontiguousarray(gamma), save_mean, save_invstd, dx)
    dgamma, dbeta = np.empty(F, dtype=np.float64), np.empty(F, dtype=np.float64)
    _ln_grad_params(dy, x, save_mean, save_invstd, dgamma, dbeta)
    return dx, dgamma.astype(x.dtype), dbeta.astype(x.dtype)


# ------------------------------------------------------------------ LRN
@njit(cache=True, parallel=True)
def _lrn_fwd(x, y, scale, size, alpha, beta, k):
    """x, y, scale : (N, C, S).  scale[c] = k + alpha / size * sum of x[c']**2 over
    c' in [c - size // 2, c + (size - 1) // 2]; y = x * scale ** -beta."""
    N, C, S = x.shape
    a = alpha / size
    for nc in prange(N * C):
        n, c = nc // C, nc % C
        lo, hi = max(0, c - size // 2), min(C, c + (size - 1) // 2 + 1)
        sc = scale[n, c]
        for i in range(S):
            sc[i] = 0
        for cc in range(lo, hi):
            xc = x[n, cc]
            for i in range(S):
                sc[i] += xc[i] * xc[i]
        for i in range(S):
            s = k + a * sc[i]
            sc[i] = s
            y[n, c, i] = x[n, c, i] * s ** -beta


@njit(cache=True, parallel=True)
def _lrn_ratio(dy, y, scale, t):
    """t = dy * y / scale, all (N * C * S,)."""
    for i in prange(dy.shape[0]):
        t[i] = dy[i] * y[i] / scale[i]


@njit(cache=True, parallel=True)
def _lrn_bwd(dy, x, scale, t, dx, size, coef, beta):
    """dx[j] = dy[j] * scale[j] ** -beta - coef * x[j] * sum of t[c] over the channels c
    whose window holds j: c in [j - (size - 1) // 2, j + size // 2].  All (N, C, S)."""
    N, C, S = x.shape
    for nc in prange(N * C):
        n, j = nc // C, nc % C
        lo, hi = max(0, j - (size - 1) // 2), min(C, j + size // 2 + 1)
        d = dx[n, j]
        for i in range(S):
            d[i] = 0
        for c in range(lo, hi):
            tc = t[n, c]
            for i in range(S):
                d[i] += tc[i]
        for i in range(S):
            d[i] = dy[n, j, i] * scale[n, j, i] ** -beta - coef * x[n, j, i] * d[i]


def lrn_forward(x, size=5, alpha=1e-4, beta=0.75, k=1.0):
    """Local response normalisation across channels (PyTorch's LocalResponseNorm).

    x : (N, C, H, W) float32; returns (y, scale), both (N, C, H, W) float32, with
    scale = k + alpha / size * (sum of x**2 over the channel window) and y = x * scale ** -beta.
    """
    N, C, H, W = x.shape
    t = x.dtype.type
    x3 = np.ascontiguousarray(x).reshape(N, C, H * W)
    y = np.empty(x3.shape, dtype=x.dtype)
    scale = np.empty(x3.shape, dtype=x.dtype)
    _lrn_fwd(x3, y, scale, int(size), t(alpha), t(beta), t(k))
    return y.reshape(x.shape), scale.reshape(x.shape)


def lrn_backward(dy, x, y, scale, size=5, alpha=1e-4, beta=0.75, k=1.0):
    """dx for LRN from the forward's (y, scale).  dy, x, y, scale : (N, C, H, W) float32; returns dx : (N, C, H, W)."""
    N, C, H, W = x.shape
    shp = (N, C, H * W)
    tp = dy.dtype.type
    flat = [np.ascontiguousarray(a).reshape(-1) for a in (dy, y, scale)]
    t = np.empty(dy.size, dtype=dy.dtype)
    _lrn_ratio(flat[0], flat[1], flat[2], t)
    dx = np.empty(shp, dtype=dy.dtype)
    _lrn_bwd(flat[0].reshape(shp), np.ascontiguousarray(x).reshape(shp), flat[2].reshape(shp), t.reshape(shp), dx,
             int(size), tp(2.0 * alpha * beta / size), tp(beta))
    return dx.reshape(x.shape)
