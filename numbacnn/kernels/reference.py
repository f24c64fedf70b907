"""Plain-numpy references for every op and direction: the specification.

Every CPU (``kernels/cpu``) and CUDA (``kernels/cuda``) kernel is checked
against the function of the same name with a ``_ref`` suffix.  Semantics are
PyTorch's exactly (cross-correlation, floor-mode pooling, max-pool padding
with -inf, avg-pool counting padded cells by default, batch norm with biased
batch variance and unbiased running variance, LocalResponseNorm's window).

The references compute in the dtype they are given, so the tests can run
them in float64 against central finite differences.  Layout is NCHW, conv
weights OIHW, dense weights (out, in).  This module imports nothing else of
the package (docs/ARCHITECTURE.md: import rules).
"""
from __future__ import annotations

import numpy as np

from .geometry import out_size


# ----------------------------------------------------------------- geometry
def _tap_slice(start: int, stride: int, count: int) -> slice:
    return slice(start, start + stride * (count - 1) + 1, stride)


def _pad(x, padding, value=0.0):
    ph, pw = padding
    if ph == 0 and pw == 0:
        return x
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=value)


# ---------------------------------------------------------------- conv2d
def conv2d_forward_ref(x, w, b=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
    """y = conv2d(x, w) + b.

    x : (N, C, H, W), w : (K, C // groups, KH, KW), b : (K,) or None
    returns y : (N, K, OH, OW)
    """
    N, C, H, W = x.shape
    K, Cg, KH, KW = w.shape
    sh, sw = stride
    dh, dw = dilation
    OH = out_size(H, KH, sh, padding[0], dh)
    OW = out_size(W, KW, sw, padding[1], dw)
    Kg = K // groups
    xp = _pad(x, padding)
    y = np.zeros((N, K, OH, OW), dtype=np.result_type(x, w))
    for g in range(groups):
        xs = xp[:, g * Cg:(g + 1) * Cg]
        for i in range(KH):
            for j in range(KW):
                patch = xs[:, :, _tap_slice(i * dh, sh, OH), _tap_slice(j * dw, sw, OW)]
                y[:, g * Kg:(g + 1) * Kg] += np.einsum("nchw,kc->nkhw", patch, w[g * Kg:(g + 1) * Kg, :, i, j])
    if b is not None:
        y += b.reshape(1, K, 1, 1)
    return y


def conv2d_backward_input_ref(dy, w, x_shape, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
    """dx for y = conv2d(x, w).

    dy : (N, K, OH, OW), w : (K, C // groups, KH, KW); returns dx : x_shape = (N, C, H, W)
    """
    N, C, H, W = x_shape
    K, Cg, KH, KW = w.shape
    _, _, OH, OW = dy.shape
    sh, sw = stride
    dh, dw = dilation
    ph, pw = padding
    Kg = K // groups
    dxp = np.zeros((N, C, H + 2 * ph, W + 2 * pw), dtype=np.result_type(dy, w))
    for g in range(groups):
        for i in range(KH):
            for j in range(KW):
                dxp[:, g * Cg:(g + 1) * Cg, _tap_slice(i * dh, sh, OH), _tap_slice(j * dw, sw, OW)] += np.einsum(
                    "nkhw,kc->nchw", dy[:, g * Kg:(g + 1) * Kg], w[g * Kg:(g + 1) * Kg, :, i, j])
    return dxp[:, :, ph:ph + H, pw:pw + W].copy()


def conv2d_backward_weight_ref(dy, x, w_shape, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
    """dw for y = conv2d(x, w).

    dy : (N, K, OH, OW), x : (N, C, H, W); returns dw : w_shape = (K, C // groups, KH, KW)
    """
    K, Cg, KH, KW = w_shape
    _, _, OH, OW = dy.shape
    sh, sw = stride
    dh, dw_ = dilation
    Kg = K // groups
    xp = _pad(x, padding)
    dw = np.zeros(w_shape, dtype=np.result_type(dy, x))
    for g in range(groups):
        xs = xp[:, g * Cg:(g + 1) * Cg]
        for i in range(KH):
            for j in range(KW):
                patch = xs[:, :, _tap_slice(i * dh, sh, OH), _tap_slice(j * dw_, sw, OW)]
                dw[g * Kg:(g + 1) * Kg, :, i, j] = np.einsum("nkhw,nchw->kc", dy[:, g * Kg:(g + 1) * Kg], patch)
    return dw


def conv2d_backward_bias_ref(dy):
    """db for y = conv2d(x, w) + b.  dy : (N, K, OH, OW); returns db : (K,)"""
    return dy.sum(axis=(0, 2, 3))


# ---------------------------------------------------------------- pooling
def max_pool2d_forward_ref(x, kernel=(2, 2), stride=(2, 2), padding=(0, 0)):
    """Max pooling, padded cells count as -inf.

    x : (N, C, H, W); returns y : (N, C, OH, OW) and argmax : (N, C, OH, OW) int64,
    the flat index ``h * W + w`` of the chosen input cell within its (n, c) plane
    (PyTorch's ``return_indices``).  Ties go to the first cell in row-major order.
    """
    N, C, H, W = x.shape
    KH, KW = kernel
    sh, sw = stride
    ph, pw = padding
    OH = out_size(H, KH, sh, ph)
    OW = out_size(W, KW, sw, pw)
    xp = _pad(x, padding, -np.inf)
    y = np.full((N, C, OH, OW), -np.inf, dtype=x.dtype)
    arg = np.zeros((N, C, OH, OW), dtype=np.int64)
    oh = np.arange(OH).reshape(OH, 1) * sh - ph
    ow = np.arange(OW).reshape(1, OW) * sw - pw
    for i in range(KH):
        for j in range(KW):
            v = xp[:, :, _tap_slice(i, sh, OH), _tap_slice(j, sw, OW)]
            better = v > y
            y = np.where(better, v, y)
            arg = np.where(better, (oh + i) * W + (ow + j), arg)
    return y, arg


def max_pool2d_backward_ref(dy, argmax, x_shape):
    """dx for max pooling.  dy, argmax : (N, C, OH, OW); returns dx : x_shape"""
    N, C, H, W = x_shape
    dx = np.zeros((N * C, H * W), dtype=dy.dtype)
    rows = np.repeat(np.arange(N * C), dy.shape[2] * dy.shape[3])
    np.add.at(dx, (rows, argmax.reshape(-1)), dy.reshape(-1))
    return dx.reshape(x_shape)


def _avg_divisor(H, W, kernel, stride, padding, OH, OW, count_include_pad, dtype):
    """(OH, OW) divisor of each output cell."""
    KH, KW = kernel
    if count_include_pad:
        return np.full((OH, OW), KH * KW, dtype=dtype)
    hs = np.arange(OH) * stride[0] - padding[0]
    ws = np.arange(OW) * stride[1] - padding[1]
    hc = np.minimum(hs + KH, H) - np.maximum(hs, 0)
    wc = np.minimum(ws + KW, W) - np.maximum(ws, 0)
    return (hc.reshape(-1, 1) * wc.reshape(1, -1)).astype(dtype)


def avg_pool2d_forward_ref(x, kernel=(2, 2), stride=(2, 2), padding=(0, 0), count_include_pad=True):
    """Average pooling; padded cells are counted in the divisor unless ``count_include_pad`` is False.

    x : (N, C, H, W); returns y : (N, C, OH, OW)
    """
    N, C, H, W = x.shape
    KH, KW = kernel
    OH = out_size(H, KH, stride[0], padding[0])
    OW = out_size(W, KW, stride[1], padding[1])
    xp = _pad(x, padding)
    y = np.zeros((N, C, OH, OW), dtype=x.dtype)
    for i in range(KH):
        for j in range(KW):
            y += xp[:, :, _tap_slice(i, stride[0], OH), _tap_slice(j, stride[1], OW)]
    return y / _avg_divisor(H, W, kernel, stride, padding, OH, OW, count_include_pad, x.dtype)


def avg_pool2d_backward_ref(dy, x_shape, kernel=(2, 2), stride=(2, 2), padding=(0, 0), count_include_pad=True):
    """dx for average pooling.  dy : (N, C, OH, OW); returns dx : x_shape"""
    N, C, H, W = x_shape
    KH, KW = kernel
    ph, pw = padding
    OH, OW = dy.shape[2:]
    g = dy / _avg_divisor(H, W, kernel, stride, padding, OH, OW, count_include_pad, dy.dtype)
    dxp = np.zeros((N, C, H + 2 * ph, W + 2 * pw), dtype=dy.dtype)
    for i in range(KH):
        for j in range(KW):
            dxp[:, :, _tap_slice(i, stride[0], OH), _tap_slice(j, stride[1], OW)] += g
    return dxp[:, :, ph:ph + H, pw:pw + W].copy()


def global_avg_pool2d_forward_ref(x):
    """x : (N, C, H, W); returns y : (N, C, 1, 1), the mean over H and W."""
    return x.mean(axis=(2, 3), keepdims=True)


def global_avg_pool2d_backward_ref(dy, x_shape):
    """dy : (N, C, 1, 1); returns dx : x_shape"""
    N, C, H, W = x_shape
    return np.broadcast_to(dy / (H * W), x_shape).copy()


# ---------------------------------------------------------------- dense
def dense_forward_ref(x, w, b=None):
    """x : (N, IN), w : (OUT, IN), b : (OUT,) or None; returns y : (N, OUT)"""
    y = x @ w.T
    if b is not None:
        y = y + b
    return y


def dense_backward_input_ref(dy, w):
    """dy : (N, OUT), w : (OUT, IN); returns dx : (N, IN)"""
    return dy @ w


def dense_backward_weight_ref(dy, x):
    """dy : (N, OUT), x : (N, IN); returns dw : (OUT, IN)"""
    return dy.T @ x


def dense_backward_bias_ref(dy):
    """dy : (N, OUT); returns db : (OUT,)"""
    return dy.sum(axis=0)


# ---------------------------------------------------------------- activations
def relu_forward_ref(x):
    """Any shape."""
    return np.maximum(x, 0).astype(x.dtype)


def relu_backward_ref(dy, x):
    """dx = dy where x > 0 (PyTorch: the gradient at exactly 0 is 0)."""
    return np.where(x > 0, dy, 0).astype(dy.dtype)


def leaky_relu_forward_ref(x, negative_slope=0.01):
    return np.where(x > 0, x, x * negative_slope).astype(x.dtype)


def leaky_relu_backward_ref(dy, x, negative_slope=0.01):
    return np.where(x > 0, dy, dy * negative_slope).astype(dy.dtype)


def sigmoid_forward_ref(x):
    """Stable for large |x|."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype)


def sigmoid_backward_ref(dy, y):
    """Written in terms of the forward output y."""
    return dy * y * (1 - y)


def tanh_forward_ref(x):
    return np.tanh(x)


def tanh_backward_ref(dy, y):
    """Written in terms of the forward output y."""
    return dy * (1 - y * y)


def softmax_forward_ref(x):
    """Softmax over axis 1.  x : (N, K, ...); returns y of the same shape."""
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def softmax_backward_ref(dy, y):
    """dx = y * (dy - sum(dy * y, axis=1))."""
    return y * (dy - (dy * y).sum(axis=1, keepdims=True))


def softmax_cross_entropy_forward_ref(logits, labels):
    """Mean cross-entropy of softmax(logits) against integer labels.

    logits : (N, K), labels : (N,) integers in [0, K)
    returns (loss, probs): loss a Python float (mean over the batch), probs (N, K)
    """
    z = logits - logits.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z).sum(axis=1, keepdims=True))
    logp = z - lse
    n = logits.shape[0]
    loss = -logp[np.arange(n), labels].mean()
    return float(loss), np.exp(logp).astype(logits.dtype)


def softmax_cross_entropy_backward_ref(probs, labels, weight=1.0):
    """dlogits = (probs - onehot(labels)) / N * weight.  probs : (N, K), labels : (N,); ``weight`` scales the
    loss (an auxiliary output's share of the total)."""
    n = probs.shape[0]
    d = probs.copy()
    d[np.arange(n), labels] -= 1
    return (d / n * probs.dtype.type(weight)).astype(probs.dtype)


def argmax_ref(x):
    """Index of each row's maximum: the first one on ties, and the first NaN if a row holds one
    (``np.argmax``'s rules).  x : (N, K) with K >= 1; returns (N,) int64.

    The training loop counts correct predictions from it, so only N indices,
    not the (N, K) scores, leave the device.
    """
    return np.argmax(x, axis=1).astype(np.int64)


# ---------------------------------------------------------------- batch norm
def _bn_axes(x):
    if x.ndim == 4:
        return (0, 2, 3), (1, -1, 1, 1)
    if x.ndim == 2:
        return (0,), (1, -1)
    raise ValueError(f"batch norm expects x of 2 or 4 dimensions, got shape {x.shape}")


def batch_norm_forward_ref(x, gamma, beta, running_mean, running_var, training=True, momentum=0.1, eps=1e-5):
    """Batch normalisation over (N, C, H, W) or (N, C), per channel C.

    Training: batch mean and biased variance normalise x; the running estimates
    are updated in place as PyTorch does (``r = (1 - momentum) * r + momentum * s``
    with the unbiased variance).  Evaluation: the running estimates normalise x.
    returns (y, save_mean (C,), save_invstd (C,)) where save_* are what
    normalised x (and what the backward needs).
    """
    axes, bshape = _bn_axes(x)
    if training:
        m = x.size // x.shape[1]
        mean = x.mean(axis=axes)
        var = x.var(axis=axes)
        running_mean *= (1 - momentum)
        running_mean += momentum * mean
        running_var *= (1 - momentum)
        running_var += momentum * var * (m / max(m - 1, 1))
    else:
        mean = running_mean.astype(x.dtype)
        var = running_var.astype(x.dtype)
    invstd = (1.0 / np.sqrt(var + eps)).astype(x.dtype)
    y = (x - mean.reshape(bshape)) * (invstd * gamma).reshape(bshape) + beta.reshape(bshape)
    return y.astype(x.dtype), mean.astype(x.dtype), invstd


def batch_norm_backward_ref(dy, x, gamma, save_mean, save_invstd, training=True):
    """returns (dx, dgamma (C,), dbeta (C,)).

    In training the batch statistics depend on x; in evaluation they are constants.
    """
    axes, bshape = _bn_axes(x)
    xhat = (x - save_mean.reshape(bshape)) * save_invstd.reshape(bshape)
    dbeta = dy.sum(axis=axes)
    dgamma = (dy * xhat).sum(axis=axes)
    if training:
        m = x.size // x.shape[1]
        dx = (gamma * save_invstd).reshape(bshape) / m * (
            m * dy - dbeta.reshape(bshape) - xhat * dgamma.reshape(bshape))
    else:
        dx = dy * (gamma * save_invstd).reshape(bshape)
    return dx.astype(dy.dtype), dgamma, dbeta


# ---------------------------------------------------------------- dropout
def dropout_uniform_ref(seed, n):
    """The counter-based uniform numbers in [0, 1) that every backend's dropout uses.

    u[i] = fmix32(i * 0x9E3779B1 + seed * 0x85EBCA77) >> 8, scaled by 2**-24
    (murmur3's finaliser).  Being a pure function of (seed, i), the mask is the
    same on every backend, bit for bit, and needs no generator state.
    """
    i = np.arange(n, dtype=np.uint32)
    with np.errstate(over="ignore"):
        h = i * np.uint32(0x9E3779B1) + np.uint32(seed & 0xFFFFFFFF) * np.uint32(0x85EBCA77)
        h ^= h >> np.uint32(16)
        h *= np.uint32(0x85EBCA6B)
        h ^= h >> np.uint32(13)
        h *= np.uint32(0xC2B2AE35)
        h ^= h >> np.uint32(16)
    return (h >> np.uint32(8)).astype(np.float32) * np.float32(2.0 ** -24)


def dropout_forward_ref(x, p=0.5, training=True, seed=0):
    """Inverted dropout.  returns (y, mask) with mask uint8 of x's shape (1 = kept).

    Training: y = x * mask / (1 - p), mask[i] = u[i] >= p.  Evaluation (or p == 0):
    y = x and the mask is all ones.
    """
    if not training or p == 0.0:
        return x.copy(), np.ones(x.shape, dtype=np.uint8)
    mask = (dropout_uniform_ref(seed, x.size) >= np.float32(p)).reshape(x.shape).astype(np.uint8)
    scale = np.asarray(1.0 / (1.0 - p), dtype=x.dtype)
    return (x * mask * scale).astype(x.dtype), mask


def dropout_backward_ref(dy, mask, p=0.5, training=True):
    if not training or p == 0.0:
        return dy.copy()
    return (dy * mask * np.asarray(1.0 / (1.0 - p), dtype=dy.dtype)).astype(dy.dtype)



# ----------------------------------------------------------------- layer norm
def layer_norm_forward_ref(x, gamma, beta, eps=1e-5):
    """Layer normalisation of each row: x (M, F), gamma and beta (F,).

    y = (x - mean) / sqrt(var + eps) * gamma + beta with the row's mean and biased
    variance over its F features (PyTorch's layer_norm with normalized_shape (F,)).
    returns (y (M, F), save_mean (M,), save_invstd (M,)).
    """
    mean = x.mean(axis=1)
    invstd = (1.0 / np.sqrt(x.var(axis=1) + eps)).astype(x.dtype)
    y = (x - mean[:, None]) * invstd[:, None] * gamma + beta
    return y.astype(x.dtype), mean.astype(x.dtype), invstd


def layer_norm_backward_ref(dy, x, gamma, save_mean, save_invstd):
    """returns (dx (M, F), dgamma (F,), dbeta (F,)): every row's statistics depend on its x."""
    xhat = (x - save_mean[:, None]) * save_invstd[:, None]
    g = dy * gamma
    dx = save_invstd[:, None] * (g - g.mean(axis=1, keepdims=True) - xhat * (g * xhat).mean(axis=1, keepdims=True))
    return dx.astype(x.dtype), (dy * xhat).sum(axis=0).astype(x.dtype), dy.sum(axis=0).astype(x.dtype)


# ---------------------------------------------------------------- LRN
def lrn_forward_ref(x, size=5, alpha=1e-4, beta=0.75, k=1.0):
    """Local response normalisation across channels (PyTorch's LocalResponseNorm).

    scale[c] = k + alpha / size * sum(x[c'] ** 2 for c' in c - size // 2 .. c + (size - 1) // 2)
    y = x * scale ** -beta.   x : (N, C, H, W); returns (y, scale), both x's shape.
    """
    C = x.shape[1]
    sq = x * x
    acc = np.zeros_like(x)
    for c in range(C):
        lo, hi = max(0, c - size // 2), min(C, c + (size - 1) // 2 + 1)
        acc[:, c] = sq[:, lo:hi].sum(axis=1)
    scale = k + (alpha / size) * acc
    return x * scale ** (-beta), scale


def lrn_backward_ref(dy, x, y, scale, size=5, alpha=1e-4, beta=0.75, k=1.0):
    """dx for LRN, from the forward's (y, scale).  All arrays (N, C, H, W)."""
    C = x.shape[1]
    t = dy * y / scale  # dy_c * x_c * scale_c^(-beta-1)
    dx = dy * scale ** (-beta)
    for j in range(C):
        # channels c whose window holds j: c - size//2 <= j <= c + (size-1)//2
        lo, hi = max(0, j - (size - 1) // 2), min(C, j + size // 2 + 1)
        dx[:, j] -= (2.0 * alpha * beta / size) * x[:, j] * t[:, lo:hi].sum(axis=1)
    return dx


# ---------------------------------------------------------------- merge
def concat_forward_ref(xs):
    """Concatenate along channels (axis 1)."""
    return np.concatenate(xs, axis=1)


def concat_backward_ref(dy, sizes):
    """Split dy along axis 1 into pieces of the given channel counts."""
    return [p.copy() for p in np.split(dy, np.cumsum(sizes)[:-1], axis=1)]


def add_forward_ref(xs):
    y = xs[0].copy()
    for x in xs[1:]:
        y += x
    return y


def add_backward_ref(dy, n):
    return [dy.copy() for _ in range(n)]


# ---------------------------------------------------------------- optimizers
def _penalised_grad(p, g, weight_decay, l1):
    return g + weight_decay * p + l1 * np.sign(p)


def sgd_update_ref(param, grad, velocity, lr, momentum=0.0, nesterov=False, weight_decay=0.0, l1=0.0):
    """PyTorch's SGD (dampening 0), in place on ``param`` and ``velocity``.

    g = grad + weight_decay * p + l1 * sign(p);  v = momentum * v + g;
    p -= lr * (g + momentum * v if nesterov else v).  With momentum 0, v is unused.
    (PyTorch starts v at g on the first step, which equals this with v = 0.)
    """
    g = _penalised_grad(param, grad, weight_decay, l1)
    if momentum != 0.0:
        velocity *= momentum
        velocity += g
        g = g + momentum * velocity if nesterov else velocity
    param -= (lr * g).astype(param.dtype)


def adam_update_ref(param, grad, m, v, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                    weight_decay=0.0, l1=0.0):
    """PyTorch's Adam (L2 added to the gradient), in place; ``step`` counts from 1."""
    g = _penalised_grad(param, grad, weight_decay, l1)
    m *= beta1
    m += (1 - beta1) * g
    v *= beta2
    v += (1 - beta2) * g * g
    mhat = m / (1 - beta1 ** step)
    vhat = v / (1 - beta2 ** step)
    param -= (lr * mhat / (np.sqrt(vhat) + eps)).astype(param.dtype)


# ---------------------------------------------------------------- pad
def pad2d_forward_ref(x, pads=(0, 0, 0, 0), value=0.0):
    """Constant padding of H and W; a negative pad crops.

    x : (N, C, H, W), pads = (top, bottom, left, right);
    returns y : (N, C, H + top + bottom, W + left + right) with
    y[n, c, i, j] = x[n, c, i - top, j - left] where that cell exists, else ``value``.
    """
    t, b, l, r = pads
    N, C, H, W = x.shape
    y = np.full((N, C, H + t + b, W + l + r), value, dtype=x.dtype)
    y[:, :, max(t, 0):max(t, 0) + H - max(-t, 0) - max(-b, 0), max(l, 0):max(l, 0) + W - max(-l, 0) - max(-r, 0)] = \
        x[:, :, max(-t, 0):H - max(-b, 0), max(-l, 0):W - max(-r, 0)]
    return y


def pad2d_backward_ref(dy, pads=(0, 0, 0, 0)):
    """dx for pad2d: dy cropped back (zeros where the forward cropped x).

    dy : (N, C, H + top + bottom, W + left + right); returns dx : (N, C, H, W)
    """
    t, b, l, r = pads
    return pad2d_forward_ref(dy, (-t, -b, -l, -r), 0.0)


# ---------------------------------------------------------------- point-wise functions
def _unary_value(x, fn, a, b):
    """The unary functions of kernels/pointwise.UNARY; ``a``, ``b`` are alpha and beta in x's dtype."""
    one = x.dtype.type(1)
    table = {
        "neg": lambda: -x, "abs": lambda: np.abs(x), "exp": lambda: np.exp(x), "log": lambda: np.log(x),
        "sqrt": lambda: np.sqrt(x), "pow": lambda: x ** a, "clip": lambda: np.minimum(np.maximum(x, a), b),
        "hard_sigmoid": lambda: np.clip(a * x + b, 0, 1), "hard_swish": lambda: x * np.clip(a * x + b, 0, 1),
        "elu": lambda: np.where(x > 0, x, a * np.expm1(np.minimum(x, 0))),
        "selu": lambda: b * np.where(x > 0, x, a * np.expm1(np.minimum(x, 0))),
        "softplus": lambda: np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x))),
        "softsign": lambda: x / (one + np.abs(x)), "affine": lambda: a * x + b, "reciprocal": lambda: one / x}
    return table[fn]()


def _unary_slope(x, y, fn, a, b):
    """dy/dx of the unary function at x (y its value); PyTorch's choices at kinks (abs: 0, clip: inclusive)."""
    one = x.dtype.type(1)
    t = a * x + b
    table = {
        "neg": lambda: -np.ones_like(x), "abs": lambda: np.sign(x), "exp": lambda: y, "log": lambda: one / x,
        "sqrt": lambda: x.dtype.type(0.5) / y, "pow": lambda: a * x ** (a - one),
        "clip": lambda: ((x >= a) & (x <= b)).astype(x.dtype),
        "hard_sigmoid": lambda: np.where((t > 0) & (t < 1), a, 0).astype(x.dtype),
        "hard_swish": lambda: np.where(t <= 0, 0, np.where(t >= 1, one, t + a * x)).astype(x.dtype),
        "elu": lambda: np.where(x > 0, one, a * np.exp(np.minimum(x, 0))),
        "selu": lambda: b * np.where(x > 0, one, a * np.exp(np.minimum(x, 0))),
        "softplus": lambda: np.where(x >= 0, one / (one + np.exp(-np.abs(x))),
                                     np.exp(-np.abs(x)) / (one + np.exp(-np.abs(x)))),
        "softsign": lambda: one / (one + np.abs(x)) ** 2, "affine": lambda: np.full_like(x, a),
        "reciprocal": lambda: -y * y}
    return table[fn]()


def unary_forward_ref(x, fn, alpha=0.0, beta=0.0):
    """y = fn(x) element by element, any shape:

    neg -x, abs |x|, exp, log, sqrt, pow x**alpha, clip min(max(x, alpha), beta), hard_sigmoid
    clip(alpha*x + beta, 0, 1), hard_swish x * hard_sigmoid(x), elu (alpha), selu (alpha, gamma=beta),
    softplus log(1 + e^x), softsign x / (1 + |x|), affine alpha*x + beta, reciprocal 1/x.
    """
    a, b = x.dtype.type(alpha), x.dtype.type(beta)
    return np.asarray(_unary_value(x, fn, a, b), dtype=x.dtype)


def unary_backward_ref(dy, x, y, fn, alpha=0.0, beta=0.0):
    """dx = dy * fn'(x), from the forward's input x and output y (same shape)."""
    a, b = x.dtype.type(alpha), x.dtype.type(beta)
    return (dy * _unary_slope(x, y, fn, a, b)).astype(x.dtype)


def _sum_to(g, shape):
    """g summed over the axes along which an operand of ``shape`` was broadcast to g's shape."""
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, d in enumerate(shape) if d == 1 and g.shape[lead + i] != 1)
    return g.sum(axis=axes).reshape(shape) if axes else g.reshape(shape)


def binary_forward_ref(a, b, fn):
    """y = a fn b with numpy broadcasting: add, sub, mul, div, pow (a ** b)."""
    table = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide, "pow": np.power}
    return np.array(table[fn](a, b), dtype=a.dtype, order="C")


def binary_backward_ref(dy, a, b, fn, need_a=True, need_b=True):
    """(da like a, db like b): dy times each partial derivative, summed over the axes the operand was
    broadcast along; None for an operand not needed."""
    y = binary_forward_ref(a, b, fn)
    one = a.dtype.type(1)
    parts = {"add": (lambda: dy, lambda: dy), "sub": (lambda: dy, lambda: -dy),
             "mul": (lambda: dy * b, lambda: dy * a), "div": (lambda: dy / b, lambda: -dy * y / b),
             "pow": (lambda: dy * b * a ** (b - one), lambda: dy * y * np.log(a))}[fn]
    da = _sum_to(np.broadcast_to(parts[0](), y.shape), a.shape).astype(a.dtype) if need_a else None
    db = _sum_to(np.broadcast_to(parts[1](), y.shape), b.shape).astype(b.dtype) if need_b else None
    return da, db


# ---------------------------------------------------------------- transpose, take
def transpose_forward_ref(x, perm):
    """y = x.transpose(perm), C-contiguous; ``perm`` a permutation of x's axes."""
    return np.ascontiguousarray(np.transpose(x, perm))


def transpose_backward_ref(dy, perm):
    """dx = dy transposed back (by the inverse permutation)."""
    return np.ascontiguousarray(np.transpose(dy, np.argsort(perm)))


def take_forward_ref(x, indices, axis):
    """y = x indexed along ``axis`` by ``indices`` (ints in [0, x.shape[axis])): numpy's take."""
    return np.ascontiguousarray(np.take(x, np.asarray(indices, np.int64), axis=axis))


def take_backward_ref(dy, indices, axis, size):
    """dx (dy's shape with ``size`` along ``axis``): each dy slice added to the x slice it was taken from."""
    shape = list(dy.shape)
    shape[axis] = size
    dx = np.zeros(shape, dtype=dy.dtype)
    for m, i in enumerate(indices):       # in order: the same sums as the kernels
        index = [slice(None)] * dy.ndim
        src = list(index)
        index[axis], src[axis] = i, m
        dx[tuple(index)] += dy[tuple(src)]
    return dx


# ---------------------------------------------------------------- transposed convolution
def _ct_geometry(x, w, stride, padding, output_padding, dilation, groups):
    N, C, H, W = x.shape
    Kg, KH, KW = w.shape[1:]
    (sh, sw), (ph, pw), (oph, opw), (dh, dw) = stride, padding, output_padding, dilation
    full = ((H - 1) * sh + dh * (KH - 1) + 1 + oph, (W - 1) * sw + dw * (KW - 1) + 1 + opw)
    out = (full[0] - 2 * ph, full[1] - 2 * pw)
    return N, C, H, W, Kg, KH, KW, full, out


def _ct_taps(H, W, KH, KW, stride, dilation):
    """For each tap (kh, kw): the rows and columns of the full output the input grid lands on."""
    for kh in range(KH):
        for kw in range(KW):
            yield kh, kw, _tap_slice(kh * dilation[0], stride[0], H), _tap_slice(kw * dilation[1], stride[1], W)


def conv_transpose2d_forward_ref(x, w, b=None, stride=(1, 1), padding=(0, 0), output_padding=(0, 0),
                                 dilation=(1, 1), groups=1):
    """y = conv_transpose2d(x, w) + b (PyTorch's conv_transpose2d, ONNX ConvTranspose).

    x : (N, C, H, W), w : (C, K // groups, KH, KW), b : (K,) or None; returns y : (N, K, OH, OW),
    OH = (H - 1) * stride - 2 * padding + dilation * (KH - 1) + output_padding + 1: every input cell
    adds x * w[c, :, kh, kw] at (i * stride + kh * dilation - padding, ...).
    """
    N, C, H, W, Kg, KH, KW, full, out = _ct_geometry(x, w, stride, padding, output_padding, dilation, groups)
    Cg = C // groups
    yf = np.zeros((N, Kg * groups) + full, dtype=x.dtype)
    for g in range(groups):
        xg, wg = x[:, g * Cg:(g + 1) * Cg], w[g * Cg:(g + 1) * Cg]
        for kh, kw, rows, cols in _ct_taps(H, W, KH, KW, stride, dilation):
            yf[:, g * Kg:(g + 1) * Kg, rows, cols] += np.einsum("nchw,co->nohw", xg, wg[:, :, kh, kw])
    y = yf[:, :, padding[0]:padding[0] + out[0], padding[1]:padding[1] + out[1]]
    if b is not None:
        y = y + b.reshape(1, -1, 1, 1)
    return np.ascontiguousarray(y, dtype=x.dtype)


def conv_transpose2d_backward_ref(dy, x, w, stride=(1, 1), padding=(0, 0), output_padding=(0, 0),
                                  dilation=(1, 1), groups=1, has_bias=True):
    """(dx like x, dw like w, db (K,) or None) of conv_transpose2d from dy (N, K, OH, OW)."""
    N, C, H, W, Kg, KH, KW, full, out = _ct_geometry(x, w, stride, padding, output_padding, dilation, groups)
    Cg = C // groups
    dyf = np.zeros((N, Kg * groups) + full, dtype=dy.dtype)
    dyf[:, :, padding[0]:padding[0] + out[0], padding[1]:padding[1] + out[1]] = dy
    dx, dw = np.zeros_like(x), np.zeros_like(w)
    for g in range(groups):
        cs, ks = slice(g * Cg, (g + 1) * Cg), slice(g * Kg, (g + 1) * Kg)
        for kh, kw, rows, cols in _ct_taps(H, W, KH, KW, stride, dilation):
            tap = dyf[:, ks, rows, cols]
            dx[:, cs] += np.einsum("nohw,co->nchw", tap, w[cs, :, kh, kw])
            dw[cs, :, kh, kw] = np.einsum("nchw,nohw->co", x[:, cs], tap)
    return dx, dw, (dy.sum(axis=(0, 2, 3)).astype(dy.dtype) if has_bias else None)
