"""The numpy reference as a backend: slow, simple, the oracle for the others.

Every private op is the matching ``*_ref`` function of
``numbacnn.kernels.reference``, run in float32.
"""
from __future__ import annotations

import numpy as np

from ..kernels import reference as R
from .base import Backend


class HostArrays:
    """Array helpers for backends whose arrays are numpy arrays on the host."""

    def asarray(self, a, dtype=np.float32):
        return np.ascontiguousarray(a, dtype=dtype)

    def to_host(self, a):
        return np.asarray(a)

    def zeros(self, shape, dtype=np.float32):
        return np.zeros(shape, dtype=dtype)

    def add_inplace(self, a, b):
        a += b
        return a

    def copy(self, a):
        return a.copy()


class _RefTable:
    """The ``*_ref`` functions of ``kernels.reference`` under their kernel names (None where there is none)."""

    def __getattr__(self, name):
        return getattr(R, name + "_ref", None)


class ReferenceBackend(HostArrays, Backend):
    name = "reference"
    k = _RefTable()
