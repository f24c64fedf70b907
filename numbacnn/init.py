"""Weight initialisers, on the host, seeded through a numpy ``Generator``.

Fan-in and fan-out come from the weight layout: conv weights are OIHW
(``fan_in = I*KH*KW``, ``fan_out = O*KH*KW``), dense weights are (out, in).

==================  ==========================================================
he_normal           N(0, 2 / fan_in)                  (He et al. 2015)
he_uniform          U(-sqrt(6 / fan_in), +sqrt(6 / fan_in))
glorot_normal       N(0, 2 / (fan_in + fan_out))      (Glorot & Bengio 2010)
glorot_uniform      U(-sqrt(6 / (fan_in + fan_out)), +...)
zeros, ones         constants (biases, batch-norm beta / gamma)
==================  ==========================================================

The normal variants are plain (not truncated) normals, as in PyTorch's
``kaiming_normal_`` / ``xavier_normal_``.
"""
from __future__ import annotations

import numpy as np


def fans(shape) -> tuple:
    """(fan_in, fan_out) of a weight of ``shape``: (out, in) or (O, I, KH, KW)."""
    shape = tuple(int(d) for d in shape)
    if len(shape) < 2:
        raise ValueError(f"fan-in/fan-out need a weight of 2 or more dimensions, got shape {shape}")
    receptive = int(np.prod(shape[2:], dtype=np.int64))
    return shape[1] * receptive, shape[0] * receptive


def _uniform(shape, limit, rng):
    """U(-limit, limit) drawn directly in float32."""
    return (rng.random(shape, dtype=np.float32) * np.float32(2.0) - np.float32(1.0)) * np.float32(limit)


def he_normal(shape, rng: np.random.Generator) -> np.ndarray:
    fan_in, _ = fans(shape)
    return rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_in))


def he_uniform(shape, rng: np.random.Generator) -> np.ndarray:
    fan_in, _ = fans(shape)
    limit = np.sqrt(6.0 / fan_in)
    return _uniform(shape, limit, rng)


def glorot_normal(shape, rng: np.random.Generator) -> np.ndarray:
    fan_in, fan_out = fans(shape)
    return rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / (fan_in + fan_out)))


def glorot_uniform(shape, rng: np.random.Generator) -> np.ndarray:
    fan_in, fan_out = fans(shape)
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return _uniform(shape, limit, rng)


def zeros(shape, rng=None) -> np.ndarray:
    return np.zeros(shape, dtype=np.float32)


def ones(shape, rng=None) -> np.ndarray:
    return np.ones(shape, dtype=np.float32)


INITIALIZERS = {f.__name__: f for f in (he_normal, he_uniform, glorot_normal, glorot_uniform, zeros, ones)}
#: the names a layer's ``kernel_initializer`` may take
KERNEL_INITIALIZERS = ("he_normal", "he_uniform", "glorot_normal", "glorot_uniform")


def check_kernel_initializer(name, owner: str = "kernel_initializer") -> str:
    if name not in KERNEL_INITIALIZERS:
        raise ValueError(f"{owner}: unknown initializer {name!r}; choose one of {', '.join(KERNEL_INITIALIZERS)}")
    return name


def initialize(name: str, shape, rng: np.random.Generator) -> np.ndarray:
    """A float32 host array of ``shape`` drawn by the initialiser called ``name``."""
    fn = INITIALIZERS.get(name)
    if fn is None:
        raise ValueError(f"unknown initializer {name!r}; choose one of {', '.join(INITIALIZERS)}")
    return fn(tuple(int(d) for d in shape), rng)
