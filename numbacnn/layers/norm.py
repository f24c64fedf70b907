"""BatchNorm (2-D and 4-D inputs) and LRN (local response normalisation across channels)."""
from __future__ import annotations

import numpy as np

from .base import Layer, register


@register
class BatchNorm(Layer):
    """Per-channel batch normalisation, PyTorch semantics.

    x : (N, C) or (N, C, H, W); gamma, beta : (C,) trainable (not regularised);
    buffers running_mean (zeros), running_var (ones) : (C,).  Training uses the
    batch statistics and updates the running ones in place
    (``r = (1 - momentum) * r + momentum * batch``); evaluation, or a frozen
    layer (``trainable=False``), uses the running statistics and leaves them
    unchanged.
    """

    def __init__(self, momentum=0.1, eps=1e-5, name=None, trainable=True):
        super().__init__(name, trainable)
        if not isinstance(momentum, (int, float)) or not 0.0 <= momentum <= 1.0:
            raise ValueError(f"{self.describe()}: momentum must be a number in [0, 1], got {momentum!r}")
        if not isinstance(eps, (int, float)) or not eps > 0.0:
            raise ValueError(f"{self.describe()}: eps must be a number > 0, got {eps!r}")
        self.momentum, self.eps = float(momentum), float(eps)
        self._x = None

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

    def forward(self, inputs, training):
        x = inputs[0]
        self._training = bool(training) and self.trainable
        p, b = self.params, self.buffers
        y, self._mean, self._invstd = self.backend.batch_norm_forward(
            x, p["gamma"], p["beta"], b["running_mean"], b["running_var"], self._training, self.momentum, self.eps)
        self._x = x
        return y

    def backward(self, dy):
        x = self._need_forward("_x")
        dx, dgamma, dbeta = self.backend.batch_norm_backward(dy, x, self.params["gamma"], self._mean,
                                                             self._invstd, self._training)
        self.grads["gamma"], self.grads["beta"] = dgamma, dbeta
        return [dx]

    def clear_cache(self):
        self._x = self._mean = self._invstd = None


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
