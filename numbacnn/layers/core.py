"""Dense, Flatten and Dropout."""
from __future__ import annotations

import numpy as np

from ..init import check_kernel_initializer
from .base import Layer, check_activation, register


@register
class Dense(Layer):
    """y = x @ weight.T + bias.  x : (N, F) -> y : (N, units); weight : (units, F), bias : (units,).

    ``activation`` and ``input_shape``: as for Conv2D (Keras' style)."""

    outputs_key = "units"
    optional_bias = True
    channel_affine = (("weight", "bias"), "bias")

    def __init__(self, units, use_bias=True, kernel_initializer="he_normal", activation=None, input_shape=None,
                 name=None, trainable=True):
        super().__init__(name, trainable)
        if not isinstance(units, int) or isinstance(units, bool) or units < 1:
            raise ValueError(f"{self.describe()}: units must be an int >= 1, got {units!r}")
        self.units, self.use_bias = units, bool(use_bias)
        self.kernel_initializer = check_kernel_initializer(kernel_initializer, self.describe())
        self.activation = check_activation(self, activation)
        self.input_shape = None if input_shape is None else tuple(int(d) for d in input_shape)
        self._x = None

    def _build(self, shapes):
        s = shapes[0]
        if len(s) != 1:
            raise self.shape_error("needs a flat (features,) input; put a Flatten before it", s, "(F,)")
        self.add_param("weight", (self.units, s[0]), self.kernel_initializer, regularize=True)
        if self.use_bias:
            self.add_param("bias", (self.units,), "zeros")
        return (self.units,)

    def macs(self):
        return self.units * self.input_shapes[0][0]

    def flops(self):
        return 2 * self.macs() + (self.units if self.use_bias else 0)

    def forward(self, inputs, training):
        self._x = inputs[0]
        return self.backend.dense_forward(self._x, self.params["weight"], self.params.get("bias"))

    def backward(self, dy):
        x = self._need_forward("_x")
        dx, dw, db = self.backend.dense_backward(dy, x, self.params["weight"], self.use_bias)
        self.grads["weight"] = dw
        if self.use_bias:
            self.grads["bias"] = db
        return [dx]

    def clear_cache(self):
        self._x = None


@register
class Flatten(Layer):
    """(N, C, H, W) -> (N, C*H*W) by ``.reshape`` (a view for numpy and numba device arrays)."""

    reshapes_only = True

    def __init__(self, input_shape=None, name=None, trainable=True):
        super().__init__(name, trainable)
        self.input_shape = None if input_shape is None else tuple(int(d) for d in input_shape)
        self._x_shape = None

    def _build(self, shapes):
        return (int(np.prod(shapes[0], dtype=np.int64)),)

    def flops(self):
        return 0

    def forward(self, inputs, training):
        x = inputs[0]
        self._x_shape = tuple(int(d) for d in x.shape)
        return x.reshape(self._x_shape[0], int(np.prod(self._x_shape[1:], dtype=np.int64)))

    def backward(self, dy):
        return [dy.reshape(*self._need_forward("_x_shape"))]

    def clear_cache(self):
        self._x_shape = None


def step_seed(base: int, step: int, stream: int = 0) -> int:
    """A 32-bit seed for training step ``step`` of a dropout layer seeded ``base``.

    SeedSequence mixes both numbers, so neighbouring steps and layers get
    unrelated masks, and the same (base, step) always gives the same mask.
    ``stream`` > 0 (the rank of a data-parallel run) is mixed in too.
    """
    words = [int(base) & 0xFFFFFFFF, int(step)] + ([int(stream)] if stream else [])
    return int(np.random.SeedSequence(words).generate_state(1)[0])


@register
class Dropout(Layer):
    """Inverted dropout: in training y = x * mask / (1 - rate); in evaluation y = x.

    Each training forward draws a fresh mask from ``step_seed(seed, step)``
    and then advances the layer's step counter, so a run is reproducible.
    ``seed=None`` takes the base seed from the model's build seed (the rng
    given to ``init_params``).  Any input shape.
    """

    random = True
    #: set by a data-parallel strategy to the rank: each rank's part of a batch draws its own masks (0: one
    #: process's masks; not saved, the step counter is the same on every rank)
    random_stream = 0

    def __init__(self, rate=0.5, seed=None, name=None, trainable=True):
        super().__init__(name, trainable)
        if not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
            raise ValueError(f"{self.describe()}: rate must be a number in [0, 1), got {rate!r}")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
            raise ValueError(f"{self.describe()}: seed must be None or an int >= 0, got {seed!r}")
        self.rate, self.seed = float(rate), seed
        self._base_seed = 0 if seed is None else seed
        self.step = 0
        self._mask = None

    def init_params(self, rng, zeros=False):
        super().init_params(rng, zeros)
        self._base_seed = int(rng.integers(2 ** 31)) if self.seed is None else self.seed
        self.step = 0

    def get_random_state(self):
        return [int(self._base_seed), int(self.step)]

    def set_random_state(self, state):
        self._base_seed, self.step = int(state[0]), int(state[1])

    def flops(self):
        return int(np.prod(self.output_shape, dtype=np.int64))

    def forward(self, inputs, training):
        self._training = bool(training) and self.rate > 0.0
        seed = 0
        if self._training:
            seed = step_seed(self._base_seed, self.step, self.random_stream)
            self.step += 1
        y, self._mask = self.backend.dropout_forward(inputs[0], self.rate, self._training, seed)
        return y

    def backward(self, dy):
        mask = self._need_forward("_mask")
        return [self.backend.dropout_backward(dy, mask, self.rate, self._training)]

    def clear_cache(self):
        self._mask = None
