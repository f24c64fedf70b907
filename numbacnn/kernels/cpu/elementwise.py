"""Element-wise kernels on the CPU: activations, softmax (+ cross-entropy),
dropout, merges (concat, add) and the fused optimizer updates.

Arrays of any shape are handled as their flat C-contiguous ``ravel()`` view
(a copy is made only for a non-contiguous input) and processed by one
``prange`` loop over the elements.  Scalars (slopes, learning rates, ...) are
cast to the array's dtype before the loop, so that float32 arrays are computed
in float32 as numpy (NEP 50) does in ``kernels/reference.py``.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = [
    "relu_forward", "relu_backward", "leaky_relu_forward", "leaky_relu_backward",
    "sigmoid_forward", "sigmoid_backward", "tanh_forward", "tanh_backward",
    "softmax_forward", "softmax_backward",
    "softmax_cross_entropy_forward", "softmax_cross_entropy_backward", "argmax",
    "dropout_forward", "dropout_backward",
    "concat_forward", "concat_backward", "add_forward", "add_backward", "add_relu_forward", "add_relu_backward",
    "sgd_update", "adam_update",
]


def _flat(a):
    """Any shape -> 1-D C-contiguous view (a copy only if a is not contiguous)."""
    return np.ascontiguousarray(a).reshape(-1)


# ------------------------------------------------------------------ activations
@njit(cache=True, parallel=True)
def _relu_fwd(x, y):
    for i in prange(x.shape[0]):
        v = x[i]
        y[i] = 0 if v < 0 else v  # NaN passes through, as np.maximum


@njit(cache=True, parallel=True)
def _relu_bwd(dy, x, dx):
    for i in prange(x.shape[0]):
        dx[i] = dy[i] if x[i] > 0 else 0  # the gradient at exactly 0 is 0


@njit(cache=True, parallel=True)
def _leaky_fwd(x, y, slope):
    for i in prange(x.shape[0]):
        y[i] = x[i] if x[i] > 0 else x[i] * slope


@njit(cache=True, parallel=True)
def _leaky_bwd(dy, x, dx, slope):
    for i in prange(x.shape[0]):
        dx[i] = dy[i] if x[i] > 0 else dy[i] * slope


@njit(cache=True, parallel=True)
def _sigmoid_fwd(x, y):
    one = x.dtype.type(1)
    for i in prange(x.shape[0]):
        v = x[i]
        e = np.exp(-abs(v))  # never overflows
        y[i] = one / (one + e) if v >= 0 else e / (one + e)


@njit(cache=True, parallel=True)
def _sigmoid_bwd(dy, y, dx):
    one = y.dtype.type(1)
    for i in prange(y.shape[0]):
        dx[i] = dy[i] * y[i] * (one - y[i])


@njit(cache=True, parallel=True)
def _tanh_fwd(x, y):
    for i in prange(x.shape[0]):
        y[i] = np.tanh(x[i])


@njit(cache=True, parallel=True)
def _tanh_bwd(dy, y, dx):
    one = y.dtype.type(1)
    for i in prange(y.shape[0]):
        dx[i] = dy[i] * (one - y[i] * y[i])


def relu_forward(x):
    """y = max(x, 0).  x : any shape float32; returns y : x's shape."""
    y = np.empty(x.shape, dtype=x.dtype)
    _relu_fwd(_flat(x), y.reshape(-1))
    return y


def relu_backward(dy, x):
    """dx = dy where x > 0, else 0.  dy, x : same shape float32; returns dx : that shape."""
    dx = np.empty(dy.shape, dtype=dy.dtype)
    _relu_bwd(_flat(dy), _flat(x), dx.reshape(-1))
    return dx


def leaky_relu_forward(x, negative_slope=0.01):
    """y = x where x > 0, else x * negative_slope.  x : any shape float32; returns y : x's shape."""
    y = np.empty(x.shape, dtype=x.dtype)
    _leaky_fwd(_flat(x), y.reshape(-1), x.dtype.type(negative_slope))
    return y


def leaky_relu_backward(dy, x, negative_slope=0.01):
    """dx = dy where x > 0, else dy * negative_slope.  dy, x : same shape float32."""
    dx = np.empty(dy.shape, dtype=dy.dtype)
    _leaky_bwd(_flat(dy), _flat(x), dx.reshape(-1), dy.dtype.type(negative_slope))
    return dx


def sigmoid_forward(x):
    """y = 1 / (1 + exp(-x)), stable for large |x|.  x : any shape float32; returns y : x's shape."""
    y = np.empty(x.shape, dtype=x.dtype)
    _sigmoid_fwd(_flat(x), y.reshape(-1))
    return y


def sigmoid_backward(dy, y):
    """dx = dy * y * (1 - y) from the forward output y.  dy, y : same shape float32."""
    dx = np.empty(dy.shape, dtype=dy.dtype)
    _sigmoid_bwd(_flat(dy), _flat(y), dx.reshape(-1))
    return dx


def tanh_forward(x):
    """y = tanh(x).  x : any shape float32; returns y : x's shape."""
    y = np.empty(x.shape, dtype=x.dtype)
    _tanh_fwd(_flat(x), y.reshape(-1))
    return y


def tanh_backward(dy, y):
    """dx = dy * (1 - y * y) from the forward output y.  dy, y : same shape float32."""
    dx = np.empty(dy.shape, dtype=dy.dtype)
    _tanh_bwd(_flat(dy), _flat(y), dx.reshape(-1))
    return dx


# ------------------------------------------------------------------ softmax
def _as_nkm(a):
    """(N, K, ...) -> C-contiguous (N, K, M) view, M the product of the trailing axes."""
    a = np.ascontiguousarray(a)
    return a.reshape(a.shape[0], a.shape[1], -1)


@njit(cache=True, parallel=True)
def _softmax_fwd(x, y):
    """x, y : (N, K, M); softmax over K for every (n, m), sums in float64."""
    N, K, M = x.shape
    for n in prange(N):
        for m in range(M):
            mx = x[n, 0, m]
            for k in range(1, K):
                mx = max(mx, x[n, k, m])
            s = 0.0
            for k in range(K):
                e = np.exp(x[n, k, m] - mx)
                y[n, k, m] = e
                s += e
            inv = 1.0 / s
            for k in range(K):
                y[n, k, m] = y[n, k, m] * inv


@njit(cache=True, parallel=True)
def _softmax_bwd(dy, y, dx):
    """dy, y, dx : (N, K, M); dx = y * (dy - sum_k dy * y)."""
    N, K, M = y.shape
    for n in prange(N):
        for m in range(M):
            s = 0.0
            for k in range(K):
                s += dy[n, k, m] * y[n, k, m]
            for k in range(K):
                dx[n, k, m] = y[n, k, m] * (dy[n, k, m] - s)


def softmax_forward(x):
    """Softmax over axis 1.  x : (N, K) or (N, K, ...) float32; returns y : x's shape."""
    y = np.empty(x.shape, dtype=x.dtype)
    _softmax_fwd(_as_nkm(x), y.reshape(_as_nkm(x).shape))
    return y


def softmax_backward(dy, y):
    """dx = y * (dy - sum(dy * y, axis=1)).  dy, y : (N, K) or (N, K, ...) float32."""
    dx = np.empty(dy.shape, dtype=dy.dtype)
    _softmax_bwd(_as_nkm(dy), _as_nkm(y), dx.reshape(_as_nkm(dy).shape))
    return dx


@njit(cache=True, parallel=True)
def _softmax_xent_fwd(z, labels, probs, row_loss):
    """z, probs : (N, K); labels : (N,); row_loss : (N,) float64 = -log softmax(z)[label]."""
    N, K = z.shape
    for n in prange(N):
        mx = z[n, 0]
        for k in range(1, K):
            mx = max(mx, z[n, k])
        s = 0.0
        for k in range(K):
            s += np.exp(np.float64(z[n, k]) - mx)
        lse = mx + np.log(s)  # log-sum-exp, stable for huge logits
        for k in range(K):
            probs[n, k] = np.exp(np.float64(z[n, k]) - lse)
        row_loss[n] = lse - np.float64(z[n, labels[n]])


@njit(cache=True, parallel=True)
def _softmax_xent_bwd(probs, labels, weight, d):
    """probs, d : (N, K); labels : (N,); d = (probs - onehot(labels)) / N * weight."""
    N, K = probs.shape
    n_rows = probs.dtype.type(N)
    one = probs.dtype.type(1)
    for n in prange(N):
        for k in range(K):
            p = probs[n, k]
            d[n, k] = (p - one if k == labels[n] else p) / n_rows * weight


def _check_labels(labels, K):
    labels = np.ascontiguousarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= K):
        raise ValueError(f"labels must lie in [0, {K}), got values from {labels.min()} to {labels.max()}")
    return labels


def softmax_cross_entropy_forward(logits, labels):
    """Mean cross-entropy of softmax(logits) against integer labels.

    logits : (N, K) float32, labels : (N,) integers in [0, K);
    returns (loss : Python float, the batch mean; probs : (N, K) float32).
    """
    N, K = logits.shape
    labels = _check_labels(labels, K)
    probs = np.empty((N, K), dtype=logits.dtype)
    row_loss = np.empty(N, dtype=np.float64)
    _softmax_xent_fwd(np.ascontiguousarray(logits), labels, probs, row_loss)
    return float(row_loss.mean()), probs


def softmax_cross_entropy_backward(probs, labels, weight=1.0):
    """dlogits = (probs - onehot(labels)) / N * weight.  probs : (N, K) float32, labels : (N,); returns (N, K)."""
    N, K = probs.shape
    labels = _check_labels(labels, K)
    d = np.empty((N, K), dtype=probs.dtype)
    _softmax_xent_bwd(np.ascontiguousarray(probs), labels, probs.dtype.type(weight), d)
    return d


@njit(cache=True, parallel=True)
def _argmax_rows(x, out):
    """out[n] = index of the first maximum of x[n] (the first NaN wins).  x : (N, K) float32, out : (N,) int64"""
    for n in prange(x.shape[0]):
        best, jb = x[n, 0], 0
        if best == best:
            for j in range(1, x.shape[1]):
                v = x[n, j]
                if v != v:
                    jb = j
                    break
                if v > best:
                    best, jb = v, j
        out[n] = jb


def argmax(x):
    """Index of each row's maximum (``np.argmax`` rules).  x : (N, K) float32 -> (N,) int64."""
    out = np.empty(x.shape[0], dtype=np.int64)
    _argmax_rows(np.ascontiguousarray(x), out)
    return out


# ------------------------------------------------------------------ dropout
@njit(cache=True, parallel=True)
def _dropout_fwd(x, y, mask, seed_term, p, scale):
    """x, y : (S,), mask : (S,) uint8.  Keeps element i when u[i] >= p, u the
    counter-based uniform of ``reference.dropout_uniform_ref`` (murmur3's
    finaliser of i * 0x9E3779B1 + seed * 0x85EBCA77), in exact uint32 arithmetic."""
    M32 = np.uint64(0xFFFFFFFF)
    one, zero = x.dtype.type(1), x.dtype.type(0)
    two_m24 = np.float32(2.0 ** -24)
    for i in prange(x.shape[0]):
        h = (np.uint64(i) * np.uint64(0x9E3779B1) + seed_term) & M32
        h ^= h >> np.uint64(16)
        h = (h * np.uint64(0x85EBCA6B)) & M32
        h ^= h >> np.uint64(13)
        h = (h * np.uint64(0xC2B2AE35)) & M32
        h ^= h >> np.uint64(16)
        u = np.float32(h >> np.uint64(8)) * two_m24  # exact: a 24-bit integer times 2**-24
        keep = u >= p
        mask[i] = np.uint8(1) if keep else np.uint8(0)
        y[i] = x[i] * (one if keep else zero) * scale


@njit(cache=True, parallel=True)
def _dropout_bwd(dy, mask, dx, scale):
    for i in prange(dy.shape[0]):
        dx[i] = dy[i] * dy.dtype.type(mask[i]) * scale


def dropout_forward(x, p=0.5, training=True, seed=0):
    """Inverted dropout.  x : any shape float32; returns (y : x's shape, mask : x's shape uint8, 1 = kept).

    Training with p > 0: y = x * mask / (1 - p) with the reference's counter-based
    mask (the same on every backend, bit for bit).  Otherwise y = x and the mask is all ones.
    """
    if not training or p == 0.0:
        return x.copy(), np.ones(x.shape, dtype=np.uint8)
    seed_term = np.uint64(((seed & 0xFFFFFFFF) * 0x85EBCA77) & 0xFFFFFFFF)
    y = np.empty(x.shape, dtype=x.dtype)
    mask = np.empty(x.shape, dtype=np.uint8)
    _dropout_fwd(_flat(x), y.reshape(-1), mask.reshape(-1), seed_term, np.float32(p),
                 x.dtype.type(1.0 / (1.0 - p)))
    return y, mask


def dropout_backward(dy, mask, p=0.5, training=True):
    """dx = dy * mask / (1 - p) in training with p > 0, else dy.  dy : any shape float32, mask : same shape uint8."""
    if not training or p == 0.0:
        return dy.copy()
    dx = np.empty(dy.shape, dtype=dy.dtype)
    _dropout_bwd(_flat(dy), _flat(mask), dx.reshape(-1), dy.dtype.type(1.0 / (1.0 - p)))
    return dx


# ------------------------------------------------------------------ merges
@njit(cache=True, parallel=True)
def _add_into(y, x):
    """y += x, both (S,)."""
    for i in prange(y.shape[0]):
        y[i] += x[i]


def concat_forward(xs):
    """Concatenate along channels.  xs : list of (N, C_i, ...) float32; returns (N, sum C_i, ...)."""
    return np.concatenate(xs, axis=1)


def concat_backward(dy, sizes):
    """Split dy : (N, sum C_i, ...) along axis 1 into C-contiguous pieces (N, C_i, ...)."""
    out, start = [], 0
    for s in sizes:
        out.append(np.ascontiguousarray(dy[:, start:start + s]))
        start += s
    return out


@njit(cache=True, parallel=True)
def _add_pair(a, b, y, relu):
    """y = a + b (then 0 where that is < 0 when ``relu``; NaN and -0.0 pass, as relu_forward).  All (S,)."""
    for i in prange(y.shape[0]):
        v = a[i] + b[i]
        y[i] = 0 if relu and v < 0 else v


def add_forward(xs):
    """y = sum of xs (in order).  xs : list of arrays of one shape, float32; returns y : that shape."""
    return _add(xs, False)


def _add(xs, relu):
    """The sum of xs in order, its first addition one pass that writes y (the ReLU in the last one's when
    ``relu``)."""
    if len(xs) == 1:
        return relu_forward(xs[0]) if relu else np.ascontiguousarray(xs[0]).copy()
    y = np.empty(xs[0].shape, dtype=xs[0].dtype)
    yf = y.reshape(-1)
    _add_pair(_flat(xs[0]), _flat(xs[1]), yf, relu and len(xs) == 2)
    for i, x in enumerate(xs[2:], start=3):
        if relu and i == len(xs):
            _add_relu_last(yf, _flat(x))
        else:
            _add_into(yf, _flat(x))
    return y


@njit(cache=True, parallel=True)
def _add_relu_last(y, x):
    """y = y + x, then 0 where that is < 0 (NaN and -0.0 pass, as relu_forward).  y, x : (S,)."""
    for i in prange(y.shape[0]):
        v = y[i] + x[i]
        y[i] = 0 if v < 0 else v


def add_relu_forward(xs):
    """y = the sum of xs (in order), then 0 where y < 0: the graph's Add + ReLU, the ReLU in the last addition's
    pass.  xs : list of at least 2 arrays of one shape, float32 (one: the ReLU of it); returns y : that shape."""
    return _add(xs, True)


def add_relu_backward(dy, y, n):
    """[dx] * n, dx = dy where the forward's output y > 0, else 0 (one array for every input, as ``add_backward``
    hands its inputs dy itself).  dy, y : same shape float32."""
    return [relu_backward(dy, y)] * int(n)


def add_backward(dy, n):
    """Each of the n inputs gets a copy of dy.  dy : any shape float32; returns a list of n arrays."""
    return [dy.copy() for _ in range(n)]


# ------------------------------------------------------------------ optimizers
@njit(cache=True, parallel=True)
def _sgd(p, g, v, lr, momentum, nesterov, wd, l1):
    """p, g, v : (S,), updated in place in one pass (v only when momentum != 0)."""
    zero = p.dtype.type(0)
    for i in prange(p.shape[0]):
        w = p[i]
        gi = g[i] + wd * w + l1 * np.sign(w)
        if momentum != zero:
            vi = momentum * v[i] + gi
            v[i] = vi
            gi = gi + momentum * vi if nesterov else vi
        p[i] = w - lr * gi


@njit(cache=True, parallel=True)
def _adam(p, g, m, v, lr, beta1, beta2, omb1, omb2, c1, c2, eps, wd, l1):
    """p, g, m, v : (S,), updated in place in one pass.

    omb1, omb2 = 1 - beta1, 1 - beta2; c1, c2 = the bias corrections 1 - beta ** step.
    """
    for i in prange(p.shape[0]):
        w = p[i]
        gi = g[i] + wd * w + l1 * np.sign(w)
        mi = beta1 * m[i] + omb1 * gi
        vi = beta2 * v[i] + omb2 * gi * gi
        m[i] = mi
        v[i] = vi
        p[i] = w - lr * (mi / c1) / (np.sqrt(vi / c2) + eps)


def _flat_inplace(name, a):
    if not a.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous for an in-place update, got strides {a.strides}")
    return a.reshape(-1)


def sgd_update(param, grad, velocity, lr, momentum=0.0, nesterov=False, weight_decay=0.0, l1=0.0):
    """PyTorch's SGD (dampening 0), fused and in place on ``param`` and ``velocity``.

    param, grad, velocity : one shape, float32.  g = grad + weight_decay * p + l1 * sign(p);
    v = momentum * v + g;  p -= lr * (g + momentum * v if nesterov else v)  (v unused if momentum is 0).
    """
    t = param.dtype.type
    _sgd(_flat_inplace("param", param), _flat(grad), _flat_inplace("velocity", velocity), t(lr), t(momentum),
         bool(nesterov), t(weight_decay), t(l1))


def adam_update(param, grad, m, v, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, l1=0.0):
    """PyTorch's Adam (L2 added to the gradient), fused and in place on ``param``, ``m`` and ``v``.

    param, grad, m, v : one shape, float32; ``step`` counts from 1.
    """
    t = param.dtype.type
    _adam(_flat_inplace("param", param), _flat(grad), _flat_inplace("m", m), _flat_inplace("v", v), t(lr),
          t(beta1), t(beta2), t(1 - beta1), t(1 - beta2), t(1 - beta1 ** step), t(1 - beta2 ** step), t(eps),
          t(weight_decay), t(l1))
