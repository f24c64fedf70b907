"""BatchNorm (2-D and 4-D inputs), LayerNorm (over trailing axes) and LRN (across channels)."""
from __future__ import annotations

import numpy as np

from .base import Layer, assign, register


@register
class BatchNorm(Layer):
    """Per-channel batch normalisation, PyTorch semantics.

    x : (N, C) or (N, C, H, W); gamma, beta : (C,) trainable (not regularised);
    buffers running_mean (zeros), running_var (ones) : (C,).  Training uses the
    batch statistics and updates the running ones in place
    (``r = (1 - momentum) * r + momentum * batch``); evaluation, or a frozen
    layer (``trainable=False``), uses the running statistics and leaves them
    unchanged.

    ``stats_sync``: None, or (set by a data-parallel strategy, ``distributed.MPIStrategy(sync_bn=True)``) an
    object whose ``sum(a)`` adds a host float64 array over the ranks and ``sum_gradients(a)`` adds a gradient
    statistic in this rank's gradient units.  Training then normalises with the statistics of the global
    batch and back-propagates through them (PyTorch's SyncBatchNorm): K ranks compute what one process
    computes on the whole batch, to float32 rounding.
    """

    channel_affine = (("gamma", "beta"), "beta")
    stats_sync = None
    absorbs = ("relu",)
    foldable_norm = True        # an inference pass lets the convolution before fold it (``Model.fusions``)

    def __init__(self, momentum=0.1, eps=1e-5, name=None, trainable=True):
        super().__init__(name, trainable)
        if not isinstance(momentum, (int, float)) or not 0.0 <= momentum <= 1.0:
            raise ValueError(f"{self.describe()}: momentum must be a number in [0, 1], got {momentum!r}")
        if not isinstance(eps, (int, float)) or not eps > 0.0:
            raise ValueError(f"{self.describe()}: eps must be a number > 0, got {eps!r}")
        self.momentum, self.eps = float(momentum), float(eps)
        self._x, self._y, self._synced = None, None, False

    def _build(self, shapes):
        s = shapes[0]
        if len(s) not in (1, 3):
            raise self.shape_error("needs a (C,) or (C, H, W) input", s, "(C,) or (C, H, W)")
        C = s[0]
        self.add_param("gamma", (C,), "ones")
        self.add_param("beta", (C,), "zeros")
        self.add_buffer("running_mean", (C,), 0.0)
        self.add_buffer("running_var", (C,), 1.0)
        return s

    def flops(self):
        return 2 * int(np.prod(self.output_shape, dtype=np.int64))

    def uses_input_stats(self, training):
        return bool(training) and self.trainable and self.stats_sync is None

    def forward(self, inputs, training):
        """Batch norm, with the ReLU after it when the graph fused it (``fused_activation``) and the statistics
        of x in parts when the layer before made them (``input_stats``)."""
        x, be = inputs[0], self.backend
        self._training = bool(training) and self.trainable
        relu = self.fused_activation == "relu"
        p, b = self.params, self.buffers
        self._synced = self._training and self.stats_sync is not None
        if self._synced:
            y = self._synced_forward(x)
            y = be.relu_forward(y) if relu else y
        else:
            y, self._mean, self._invstd = be.fused_batch_norm_forward(
                x, p["gamma"], p["beta"], b["running_mean"], b["running_var"], self._training, self.momentum,
                self.eps, relu=relu, stats=self.input_stats if self.uses_input_stats(training) else None)
            self._x = x
        self._y = y if relu else None
        return y

    def backward(self, dy):
        x = self._need_forward("_x")
        y = None if self.relu_grad_done else self._y      # the fused ReLU's mask, unless dy has it already
        if self._synced:
            return self._synced_backward(dy if y is None else self.backend.relu_backward(dy, y), x)
        dx, dgamma, dbeta = self.backend.fused_batch_norm_backward(dy, x, self.params["gamma"], self._mean,
                                                                   self._invstd, self._training, y=y)
        self.grads["gamma"], self.grads["beta"] = dgamma, dbeta
        return [dx]

    def _synced_forward(self, x):
        """Training with the global batch's mean and biased variance (sums over the ranks, in float64); the
        kernel's evaluation path normalises with them, and the running statistics take them (unbiased)."""
        be, b = self.backend, self.buffers
        xh = np.asarray(be.to_host(x), dtype=np.float64)
        C = xh.shape[1]
        axes = (0, *range(2, xh.ndim))
        totals = self.stats_sync.sum(np.concatenate([xh.sum(axis=axes), (xh * xh).sum(axis=axes), [xh.size // C]]))
        m = totals[-1]
        mean = totals[:C] / m
        var = np.maximum(totals[C:2 * C] / m - mean * mean, 0.0)
        y, self._mean, self._invstd = be.batch_norm_forward(
            x, self.params["gamma"], self.params["beta"], be.asarray(mean.astype(np.float32)),
            be.asarray(var.astype(np.float32)), False, self.momentum, self.eps)
        for name, batch in (("running_mean", mean), ("running_var", var * (m / max(m - 1, 1)))):
            r = np.asarray(be.to_host(b[name]), dtype=np.float64)
            assign(b[name], ((1 - self.momentum) * r + self.momentum * batch).astype(np.float32))
        self._x, self._count = x, m
        return y

    def _synced_backward(self, dy, x):
        """dx = gamma invstd (dy - (S1 + xhat S2) / M), S1 = Σ dy and S2 = Σ dy xhat over the global batch of M
        values per channel; dgamma, dbeta stay this rank's sums (the strategy sums every gradient)."""
        be = self.backend
        dx0, dgamma, dbeta = be.batch_norm_backward(dy, x, self.params["gamma"], self._mean, self._invstd, False)
        self.grads["gamma"], self.grads["beta"] = dgamma, dbeta
        C = len(self._mean)
        s = self.stats_sync.sum_gradients(np.concatenate([be.to_host(dbeta), be.to_host(dgamma)]))
        mean, invstd = be.to_host(self._mean), be.to_host(self._invstd)
        scale = (be.to_host(self.params["gamma"]) * invstd / self._count).astype(np.float32)
        shape = (1, C) + (1,) * (len(x.shape) - 2)
        xhat = (np.asarray(be.to_host(x)) - mean.reshape(shape)) * invstd.reshape(shape)
        dx = np.asarray(be.to_host(dx0)) - (scale * s[:C]).astype(np.float32).reshape(shape) \
            - xhat * (scale * s[C:]).astype(np.float32).reshape(shape)
        return [be.asarray(dx)]

    def clear_cache(self):
        self._x = self._y = self._mean = self._invstd = None


@register
class LayerNorm(Layer):
    """Layer normalisation of each sample over its trailing axes (PyTorch's LayerNorm, ONNX LayerNormalization).

    ``axis`` counts the batch as axis 0: 1 (the default) normalises over the whole sample, e.g.
    (C, H, W); -1 over the last axis only (each (n, c, h) row of W values).  The mean and the biased
    variance are taken over those axes; gamma (ones) and beta (zeros), trainable and of their
    shape, scale and shift the result.  Any input shape; the output has the input's shape.
    """

    def __init__(self, axis=1, eps=1e-5, name=None, trainable=True):
        super().__init__(name, trainable)
        if not isinstance(axis, int) or isinstance(axis, bool) or axis == 0:
            raise ValueError(f"{self.describe()}: axis must be a non-zero int (1: the whole sample, -1: the last "
                             f"axis), got {axis!r}")
        if not isinstance(eps, (int, float)) or not eps > 0.0:
            raise ValueError(f"{self.describe()}: eps must be a number > 0, got {eps!r}")
        self.axis, self.eps = axis, float(eps)
        self._x = None

    def _build(self, shapes):
        s = shapes[0]
        rank = len(s) + 1
        if not (1 <= self.axis < rank or -rank < self.axis <= -1):
            raise self.shape_error(f"axis {self.axis} is not an axis of the sample", s, f"axis in 1..{rank - 1}")
        self.normalized_shape = tuple(s[(self.axis if self.axis > 0 else rank + self.axis) - 1:])
        self.add_param("gamma", self.normalized_shape, "ones")
        self.add_param("beta", self.normalized_shape, "zeros")
        return s

    def flops(self):
        return 5 * int(np.prod(self.output_shape, dtype=np.int64))

    def _rows(self, a):
        f = int(np.prod(self.normalized_shape, dtype=np.int64))
        return a.reshape(a.size // f, f)

    def forward(self, inputs, training):
        x = inputs[0]
        f = int(np.prod(self.normalized_shape, dtype=np.int64))
        y, self._mean, self._invstd = self.backend.layer_norm_forward(
            self._rows(x), self.params["gamma"].reshape(f), self.params["beta"].reshape(f), self.eps)
        self._x = x
        return y.reshape(x.shape)

    def backward(self, dy):
        x = self._need_forward("_x")
        f = int(np.prod(self.normalized_shape, dtype=np.int64))
        dx, dgamma, dbeta = self.backend.layer_norm_backward(self._rows(dy), self._rows(x),
                                                             self.params["gamma"].reshape(f), self._mean,
                                                             self._invstd)
        self.grads["gamma"] = dgamma.reshape(self.normalized_shape)
        self.grads["beta"] = dbeta.reshape(self.normalized_shape)
        return [dx.reshape(x.shape)]

    def clear_cache(self):
        self._x = None


@register
class LRN(Layer):
    """Local response normalisation across channels (AlexNet, GoogLeNet; PyTorch's LocalResponseNorm).

    y = x * (k + alpha / size * sum of x**2 over ``size`` neighbouring channels) ** -beta.
    (N, C, H, W) -> (N, C, H, W).
    """

    def __init__(self, size=5, alpha=1e-4, beta=0.75, k=1.0, name=None, trainable=True):
        super().__init__(name, trainable)
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ValueError(f"{self.describe()}: size must be an int >= 1, got {size!r}")
        for arg, v in (("alpha", alpha), ("beta", beta), ("k", k)):
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                raise ValueError(f"{self.describe()}: {arg} must be a number, got {v!r}")
        self.size, self.alpha, self.beta, self.k = size, float(alpha), float(beta), float(k)
        self._x = None

    def _build(self, shapes):
        s = shapes[0]
        if len(s) != 3:
            raise self.shape_error("needs a (C, H, W) input", s, "(C, H, W)")
        return s

    def flops(self):
        return (2 * self.size + 4) * int(np.prod(self.output_shape, dtype=np.int64))

    def forward(self, inputs, training):
        x = inputs[0]
        y, scale = self.backend.lrn_forward(x, self.size, self.alpha, self.beta, self.k)
        self._x, self._y, self._scale = x, y, scale
        return y

    def backward(self, dy):
        x = self._need_forward("_x")
        return [self.backend.lrn_backward(dy, x, self._y, self._scale, self.size, self.alpha, self.beta, self.k)]

    def clear_cache(self):
        self._x = self._y = self._scale = None
