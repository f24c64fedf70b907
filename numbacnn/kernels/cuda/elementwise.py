"""CUDA elementwise kernels: activations, softmax (+ cross-entropy), dropout,
merge (concat, add), optimizer updates and the array helpers of the backend.

Every launcher takes and returns numba device arrays (C-contiguous); scalars
are passed to the kernels as ``np.float32`` so that no kernel is specialised
for float64.  Activations accept any shape: they run on a flat view.
Softmax and cross-entropy work on rows of (N, K) arrays, one block per row.
"""
from __future__ import annotations

import math

import numpy as np
from numba import cuda, float32, uint8, uint64

from . import _memory
from ._common import MAX_BLOCKS, RED_TPB, as3d, block_max, block_sum, empty, flat, grid_1d, reduce_tpb, stream

_F32 = np.float32


def _empty_like(a, dtype=np.float32):
    return empty(a.shape, dtype)


def _launch_flat(kernel, n, *args):
    if n:
        kernel[grid_1d(n)](*args)


# ------------------------------------------------------------ array helpers
@cuda.jit
def fill_kernel(out, value):
    """out[i] = value.  out : (n,) any dtype, value : out's dtype."""
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[i] = value


@cuda.jit
def add2_kernel(a, b, relu, y):
    """y[i] = a[i] + b[i], then max(y[i], 0) when ``relu`` (an Add with its ReLU fused).  a, b, y : (n,) float32"""
    for i in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        v = a[i] + b[i]
        y[i] = max(v, float32(0)) if relu else v


@cuda.jit
def add_inplace_kernel(a, b):
    """a[i] += b[i].  a, b : (n,) float32 (each element owned by one thread)."""
    for i in range(cuda.grid(1), a.size, cuda.gridsize(1)):
        a[i] += b[i]


def full(shape, value, dtype=np.float32):
    """A device array of ``shape`` filled with ``value``."""
    out = empty(shape, dtype)
    _launch_flat(fill_kernel, out.size, flat(out), np.dtype(dtype).type(value))
    return out


def zeros(shape, dtype=np.float32):
    return full(shape, 0, dtype)


def copy(a):
    """A new device array equal to ``a`` (device-to-device copy)."""
    return _memory.copy(a)


def add_inplace(a, b):
    """a += b on the device (same shape, float32); returns a."""
    _launch_flat(add_inplace_kernel, a.size, flat(a), flat(b))
    return a


# ------------------------------------------------------------ activations
@cuda.jit
def relu_forward_kernel(x, y):
    """y = max(x, 0).  x, y : (n,) float32"""
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        v = x[i]
        y[i] = v if v > float32(0) else float32(0)


@cuda.jit
def relu_backward_kernel(dy, x, dx):
    """dx = dy where x > 0, else 0.  dy, x, dx : (n,) float32"""
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        dx[i] = dy[i] if x[i] > float32(0) else float32(0)


@cuda.jit
def leaky_relu_forward_kernel(x, negative_slope, y):
    """y = x if x > 0 else x * negative_slope.  x, y : (n,) float32, negative_slope : float32"""
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        v = x[i]
        y[i] = v if v > float32(0) else v * negative_slope


@cuda.jit
def leaky_relu_backward_kernel(dy, x, negative_slope, dx):
    """dx = dy if x > 0 else dy * negative_slope.  dy, x, dx : (n,) float32"""
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        g = dy[i]
        dx[i] = g if x[i] > float32(0) else g * negative_slope


@cuda.jit
def sigmoid_forward_kernel(x, y):
    """y = 1 / (1 + exp(-x)), evaluated stably for large |x|.  x, y : (n,) float32"""
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        v = x[i]
        e = math.exp(-abs(v))
        one = float32(1)
        y[i] = one / (one + e) if v >= float32(0) else e / (one + e)


@cuda.jit
def sigmoid_backward_kernel(dy, y, dx):
    """dx = dy * y * (1 - y), from the forward output y.  (n,) float32"""
    for i in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        dx[i] = dy[i] * y[i] * (float32(1) - y[i])


@cuda.jit
def tanh_forward_kernel(x, y):
    """y = tanh(x).  x, y : (n,) float32"""
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        y[i] = math.tanh(x[i])


@cuda.jit
def tanh_backward_kernel(dy, y, dx):
    """dx = dy * (1 - y * y), from the forward output y.  (n,) float32"""
    for i in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        dx[i] = dy[i] * (float32(1) - y[i] * y[i])


def relu_forward(x):
    y = _empty_like(x)
    _launch_flat(relu_forward_kernel, x.size, flat(x), flat(y))
    return y


def relu_backward(dy, x):
    dx = _empty_like(dy)
    _launch_flat(relu_backward_kernel, x.size, flat(dy), flat(x), flat(dx))
    return dx


def leaky_relu_forward(x, negative_slope=0.01):
    y = _empty_like(x)
    _launch_flat(leaky_relu_forward_kernel, x.size, flat(x), _F32(negative_slope), flat(y))
    return y


def leaky_relu_backward(dy, x, negative_slope=0.01):
    dx = _empty_like(dy)
    _launch_flat(leaky_relu_backward_kernel, x.size, flat(dy), flat(x), _F32(negative_slope), flat(dx))
    return dx


def sigmoid_forward(x):
    y = _empty_like(x)
    _launch_flat(sigmoid_forward_kernel, x.size, flat(x), flat(y))
    return y


def sigmoid_backward(dy, y):
    dx = _empty_like(dy)
    _launch_flat(sigmoid_backward_kernel, y.size, flat(dy), flat(y), flat(dx))
    return dx


def tanh_forward(x):
    y = _empty_like(x)
    _launch_flat(tanh_forward_kernel, x.size, flat(x), flat(y))
    return y


def tanh_backward(dy, y):
    dx = _empty_like(dy)
    _launch_flat(tanh_backward_kernel, y.size, flat(dy), flat(y), flat(dx))
    return dx


# ------------------------------------------------------------ softmax rows
@cuda.jit
def softmax_forward_kernel(x, y):
    """Softmax of each row, one block per row.  x, y : (N, K) float32

    The row maximum and the sum of exponentials are block reductions.
    """
    buf = cuda.shared.array(RED_TPB, float32)
    N, K = x.shape
    t, nt = cuda.threadIdx.x, cuda.blockDim.x
    for n in range(cuda.blockIdx.x, N, cuda.gridDim.x):
        m = float32(-math.inf)
        for j in range(t, K, nt):
            m = max(m, x[n, j])
        m = block_max(buf, m)
        s = float32(0)
        for j in range(t, K, nt):
            s += math.exp(x[n, j] - m)
        s = block_sum(buf, s)
        for j in range(t, K, nt):
            y[n, j] = math.exp(x[n, j] - m) / s


@cuda.jit
def softmax_backward_kernel(dy, y, dx):
    """dx = y * (dy - sum(dy * y, axis=1)), one block per row.  (N, K) float32"""
    buf = cuda.shared.array(RED_TPB, float32)
    N, K = y.shape
    t, nt = cuda.threadIdx.x, cuda.blockDim.x
    for n in range(cuda.blockIdx.x, N, cuda.gridDim.x):
        s = float32(0)
        for j in range(t, K, nt):
            s += dy[n, j] * y[n, j]
        s = block_sum(buf, s)
        for j in range(t, K, nt):
            dx[n, j] = y[n, j] * (dy[n, j] - s)


@cuda.jit
def softmax_cross_entropy_forward_kernel(logits, labels, probs, row_loss):
    """Softmax of each row and its cross-entropy against an integer label, one block per row.

    logits, probs : (N, K) float32, labels : (N,) int, row_loss : (N,) float32
    (``-log p[label]``; NaN for a label outside [0, K)).
    """
    buf = cuda.shared.array(RED_TPB, float32)
    N, K = logits.shape
    t, nt = cuda.threadIdx.x, cuda.blockDim.x
    for n in range(cuda.blockIdx.x, N, cuda.gridDim.x):
        m = float32(-math.inf)
        for j in range(t, K, nt):
            m = max(m, logits[n, j])
        m = block_max(buf, m)
        s = float32(0)
        for j in range(t, K, nt):
            s += math.exp(logits[n, j] - m)
        s = block_sum(buf, s)
        lse = math.log(s)
        for j in range(t, K, nt):
            probs[n, j] = math.exp(logits[n, j] - m - lse)
        if t == 0:
            lab = labels[n]
            if 0 <= lab < K:
                row_loss[n] = lse - (logits[n, lab] - m)
            else:
                row_loss[n] = float32(math.nan)


@cuda.jit
def softmax_cross_entropy_backward_kernel(probs, labels, inv_n, dlogits):
    """dlogits = (probs - onehot(labels)) * inv_n.  probs, dlogits : (N, K) float32, labels : (N,) int"""
    N, K = probs.shape
    for i in range(cuda.grid(1), N * K, cuda.gridsize(1)):
        n, j = i // K, i % K
        p = probs[n, j]
        if labels[n] == j:
            p -= float32(1)
        dlogits[n, j] = p * inv_n


def _rows(kernel, n_rows, row_len, *args):
    kernel[min(max(n_rows, 1), MAX_BLOCKS), reduce_tpb(row_len), stream()](*args)


def softmax_forward(x):
    """Softmax over axis 1.  x : (N, K) float32 -> y : (N, K)"""
    y = _empty_like(x)
    _rows(softmax_forward_kernel, x.shape[0], x.shape[1], x, y)
    return y


def softmax_backward(dy, y):
    """dy, y : (N, K) float32 -> dx : (N, K)"""
    dx = _empty_like(dy)
    _rows(softmax_backward_kernel, y.shape[0], y.shape[1], dy, y, dx)
    return dx


def softmax_cross_entropy_forward(logits, labels):
    """Mean cross-entropy.  logits : (N, K) float32, labels : (N,) int -> (loss, probs (N, K)).

    The per-row losses are computed on the device and copied to pinned host memory without waiting;
    ``loss`` is their mean, read (with one synchronisation for every readback queued before) when
    ``float(loss)`` is first asked: a training step reads it after the backward pass and the update.
    """
    N, K = logits.shape
    probs = _empty_like(logits)
    row_loss = empty(N, np.float32)
    _rows(softmax_cross_entropy_forward_kernel, N, K, logits, labels, probs, row_loss)
    return _memory.ReadbackMean(row_loss), probs


def softmax_cross_entropy_backward(probs, labels, weight=1.0):
    """dlogits = (probs - onehot(labels)) / N * weight.  probs : (N, K), labels : (N,) -> (N, K)"""
    N, K = probs.shape
    d = _empty_like(probs)
    _launch_flat(softmax_cross_entropy_backward_kernel, N * K, probs, labels, _F32(weight / N), d)
    return d


@cuda.jit
def argmax_kernel(x, out):
    """out[n] = index of the first maximum of row n (the first NaN wins, as np.argmax), one thread per row.

    x : (N, K) float32, out : (N,) int64.  Rows are short (class scores), so
    a serial loop per thread is enough and keeps the tie rule exact.
    """
    N, K = x.shape
    for n in range(cuda.grid(1), N, cuda.gridsize(1)):
        best = x[n, 0]
        jb = 0
        if best == best:
            for j in range(1, K):
                v = x[n, j]
                if v != v:
                    jb = j
                    break
                if v > best:
                    best = v
                    jb = j
        out[n] = jb


def argmax(x):
    """Index of each row's maximum.  x : (N, K) float32 -> (N,) int64 device array."""
    out = empty(x.shape[0], np.int64)
    _launch_flat(argmax_kernel, x.shape[0], x, out)
    return out


# ------------------------------------------------------------ dropout
_M32 = np.uint64(0xFFFFFFFF)
_GOLDEN = np.uint64(0x9E3779B1)
_SEED_MUL = np.uint64(0x85EBCA77)
_FMIX1 = np.uint64(0x85EBCA6B)
_FMIX2 = np.uint64(0xC2B2AE35)
_S8, _S13, _S16 = np.uint64(8), np.uint64(13), np.uint64(16)


@cuda.jit(device=True)
def dropout_uniform(seed, i):
    """The uniform number in [0, 1) of element ``i`` (float32), as ``dropout_uniform_ref``.

    seed : uint64 in [0, 2**32).  The hash is murmur3's finaliser in uint32
    arithmetic: every product is taken in 64 bits and masked to 32, which is
    exactly uint32 wrap-around (and raises no overflow warning under the
    simulator), so masks match the reference bit for bit.
    """
    h = (((uint64(i) * _GOLDEN) & _M32) + ((seed * _SEED_MUL) & _M32)) & _M32
    h ^= h >> _S16
    h = (h * _FMIX1) & _M32
    h ^= h >> _S13
    h = (h * _FMIX2) & _M32
    h ^= h >> _S16
    return float32(h >> _S8) * float32(2.0 ** -24)


@cuda.jit
def dropout_forward_kernel(x, seed, p, scale, y, mask):
    """Inverted dropout: mask[i] = u[i] >= p, y = x * mask * scale.

    x, y : (n,) float32, mask : (n,) uint8, seed : uint64, p, scale : float32
    """
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        keep = dropout_uniform(seed, i) >= p
        mask[i] = uint8(1) if keep else uint8(0)
        y[i] = x[i] * (float32(1) if keep else float32(0)) * scale


@cuda.jit
def dropout_backward_kernel(dy, mask, scale, dx):
    """dx = dy * mask * scale.  dy, dx : (n,) float32, mask : (n,) uint8"""
    for i in range(cuda.grid(1), dy.size, cuda.gridsize(1)):
        dx[i] = dy[i] * float32(mask[i]) * scale


def dropout_forward(x, p=0.5, training=True, seed=0):
    """x : any shape float32 -> (y, mask uint8), both x's shape."""
    if not training or p == 0.0:
        return copy(x), full(x.shape, 1, np.uint8)
    y = _empty_like(x)
    mask = _empty_like(x, np.uint8)
    _launch_flat(dropout_forward_kernel, x.size, flat(x), np.uint64(int(seed) & 0xFFFFFFFF), _F32(p),
                 _F32(1.0 / (1.0 - p)), flat(y), flat(mask))
    return y, mask


def dropout_backward(dy, mask, p=0.5, training=True):
    if not training or p == 0.0:
        return copy(dy)
    dx = _empty_like(dy)
    _launch_flat(dropout_backward_kernel, dy.size, flat(dy), flat(mask), _F32(1.0 / (1.0 - p)), flat(dx))
    return dx


# ------------------------------------------------------------ merge
@cuda.jit
def concat_forward_kernel(x, offset, y):
    """y[:, offset:offset + Ci, :] = x.  x : (N, Ci, S) float32, y : (N, C, S) float32"""
    N, Ci, S = x.shape
    for i in range(cuda.grid(1), N * Ci * S, cuda.gridsize(1)):
        n, r = i // (Ci * S), i % (Ci * S)
        y[n, offset + r // S, r % S] = x[n, r // S, r % S]


@cuda.jit
def concat_backward_kernel(dy, offset, dx):
    """dx = dy[:, offset:offset + Ci, :].  dy : (N, C, S) float32, dx : (N, Ci, S) float32"""
    N, Ci, S = dx.shape
    for i in range(cuda.grid(1), N * Ci * S, cuda.gridsize(1)):
        n, r = i // (Ci * S), i % (Ci * S)
        dx[n, r // S, r % S] = dy[n, offset + r // S, r % S]


def concat_forward(xs):
    """Concatenate (N, Ci, ...) device arrays along axis 1."""
    C = sum(int(x.shape[1]) for x in xs)
    y = empty((xs[0].shape[0], C) + tuple(xs[0].shape[2:]), np.float32)
    offset = 0
    for x in xs:
        _launch_flat(concat_forward_kernel, x.size, as3d(x), offset, as3d(y))
        offset += int(x.shape[1])
    return y


def concat_backward(dy, sizes):
    """Split dy (N, C, ...) along axis 1 into pieces of ``sizes`` channels."""
    out, offset = [], 0
    for c in sizes:
        dx = empty((dy.shape[0], c) + tuple(dy.shape[2:]), np.float32)
        _launch_flat(concat_backward_kernel, dx.size, as3d(dy), offset, as3d(dx))
        out.append(dx)
        offset += c
    return out


def add_forward(xs, relu=False):
    """Sum of same-shape device arrays (one launch for two; no copy), then max(y, 0) when ``relu``."""
    if len(xs) == 1:
        return relu_forward(xs[0]) if relu else copy(xs[0])
    y = _empty_like(xs[0])
    _launch_flat(add2_kernel, y.size, flat(xs[0]), flat(xs[1]), bool(relu and len(xs) == 2), flat(y))
    for x in xs[2:]:
        add_inplace(y, x)
    if relu and len(xs) > 2:
        _launch_flat(relu_forward_kernel, y.size, flat(y), flat(y))
    return y


def add_relu_forward(xs):
    """max(sum of xs, 0): one launch for two same-shape device arrays."""
    return add_forward(xs, relu=True)


def add_backward(dy, n):
    return [copy(dy) for _ in range(n)]


# ------------------------------------------------------------ optimizers
@cuda.jit(device=True)
def _penalised(p, g, weight_decay, l1):
    """g + weight_decay * p + l1 * sign(p) (sign(0) = 0)."""
    s = float32(1) if p > float32(0) else (float32(-1) if p < float32(0) else float32(0))
    return g + weight_decay * p + l1 * s


# Multi-tensor updates: one launch updates up to TENSORS parameters, passed as tuples of flat arrays
# (block row y = the tensor, blocks along x stride over its elements); unused slots hold an empty array.
# 16 tensors keep the kernel parameters of Adam's four tuples under the classic 4 KiB limit.
TENSORS = 16


@cuda.jit
def sgd_update_kernel(params, grads, velocities, lr, momentum, nesterov, weight_decay, l1):
    """PyTorch's SGD step, in place, on up to TENSORS parameters at once.

    params, grads, velocities : tuples of TENSORS (n_t,) float32 arrays (the t-th of each has the same size);
    scalars float32, nesterov bool.  Launch: grid (blocks, TENSORS).
    """
    param, grad, velocity = params[cuda.blockIdx.y], grads[cuda.blockIdx.y], velocities[cuda.blockIdx.y]
    for i in range(cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x, param.size, cuda.gridDim.x * cuda.blockDim.x):
        p = param[i]
        g = _penalised(p, grad[i], weight_decay, l1)
        if momentum != float32(0):
            v = velocity[i] * momentum + g
            velocity[i] = v
            g = g + momentum * v if nesterov else v
        param[i] = p - lr * g


@cuda.jit
def adam_update_kernel(params, grads, ms, vs, lr, beta1, beta2, one_m_beta1, one_m_beta2, bc1, bc2, eps,
                       weight_decay, l1):
    """PyTorch's Adam step, in place, on up to TENSORS parameters at once.

    params, grads, ms, vs : tuples of TENSORS (n_t,) float32 arrays; one_m_beta* = 1 - beta*,
    bc* = 1 - beta* ** step: float32 scalars computed on the host.  Launch: grid (blocks, TENSORS).
    """
    t = cuda.blockIdx.y
    param, grad, m, v = params[t], grads[t], ms[t], vs[t]
    for i in range(cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x, param.size, cuda.gridDim.x * cuda.blockDim.x):
        p = param[i]
        g = _penalised(p, grad[i], weight_decay, l1)
        mi = m[i] * beta1 + one_m_beta1 * g
        vi = v[i] * beta2 + one_m_beta2 * g * g
        m[i] = mi
        v[i] = vi
        param[i] = p - lr * (mi / bc1) / (math.sqrt(vi / bc2) + eps)


def _multi_tensor(kernel, groups, *scalars):
    """Launch ``kernel`` on the parallel lists of ``groups`` (params, grads, ...) TENSORS at a time."""
    n = len(groups[0])
    pad = empty(0, np.float32)
    for s in range(0, n, TENSORS):
        chunk = [tuple(flat(a) for a in g[s:s + TENSORS]) + (pad,) * (TENSORS - len(g[s:s + TENSORS]))
                 for g in groups]
        largest = max(int(a.size) for a in chunk[0])
        if largest:
            blocks, threads, st = grid_1d(largest)
            kernel[(min(blocks, 1024), TENSORS), threads, st](*chunk, *scalars)


def sgd_update_many(params, grads, velocities, lr, momentum=0.0, nesterov=False, weight_decay=0.0, l1=0.0):
    _multi_tensor(sgd_update_kernel, (params, grads, velocities), _F32(lr), _F32(momentum), bool(nesterov),
                  _F32(weight_decay), _F32(l1))


def adam_update_many(params, grads, ms, vs, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
                     l1=0.0):
    _multi_tensor(adam_update_kernel, (params, grads, ms, vs), _F32(lr), _F32(beta1), _F32(beta2),
                  _F32(1 - beta1), _F32(1 - beta2), _F32(1 - beta1 ** step), _F32(1 - beta2 ** step), _F32(eps),
                  _F32(weight_decay), _F32(l1))


def sgd_update(param, grad, velocity, lr, momentum=0.0, nesterov=False, weight_decay=0.0, l1=0.0):
    sgd_update_many([param], [grad], [velocity], lr, momentum, nesterov, weight_decay, l1)


def adam_update(param, grad, m, v, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, l1=0.0):
    adam_update_many([param], [grad], [m], [v], step, lr, beta1, beta2, eps, weight_decay, l1)


__all__ = [
    "relu_forward", "relu_backward", "leaky_relu_forward", "leaky_relu_backward",
    "sigmoid_forward", "sigmoid_backward", "tanh_forward", "tanh_backward",
    "softmax_forward", "softmax_backward", "softmax_cross_entropy_forward", "softmax_cross_entropy_backward", "argmax",
    "dropout_forward", "dropout_backward", "concat_forward", "concat_backward", "add_forward", "add_backward",
    "add_relu_forward", "sgd_update", "adam_update", "sgd_update_many", "adam_update_many", "full", "zeros", "copy",
    "add_inplace",
]
