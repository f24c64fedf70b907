"""Test helpers: a float64 reference backend, central finite differences, backend loading.

The kernels run in float32, where central differences are too noisy for tight
checks.  ``Float64Reference`` runs the same reference functions (which compute
in the dtype they are given) in float64, so a layer's or a graph's backward can
be checked against finite differences to ~1e-6; the float32 backends are then
compared with the float64 result at float32 tolerances.
"""
from __future__ import annotations

import numpy as np

from numbacnn.backends import get_backend
from numbacnn.backends.reference import ReferenceBackend

BACKENDS = ["cpu", "reference"]


class Float64Reference(ReferenceBackend):
    """The reference backend with float64 arrays (float32 requests become float64)."""

    name = "reference64"
    float_dtype = np.float64

    @staticmethod
    def _dt(dtype):
        return np.float64 if np.dtype(dtype) == np.float32 else dtype

    def asarray(self, a, dtype=np.float32):
        return np.ascontiguousarray(a, dtype=self._dt(dtype))

    def zeros(self, shape, dtype=np.float32):
        return np.zeros(shape, dtype=self._dt(dtype))


F64 = Float64Reference()


def load_backend(name):
    """get_backend(name): an import error of a kernel module fails the test, it never skips."""
    return get_backend(name)


def numeric_grad(loss, a: np.ndarray, eps: float = 1e-6, indices=None) -> np.ndarray:
    """Central differences of the scalar ``loss()`` w.r.t. ``a`` (perturbed in place).

    ``indices``: flat indices to check (default all); the others stay NaN.
    """
    g = np.full(a.shape, np.nan)
    flat, gflat = a.reshape(-1), g.reshape(-1)
    for i in (range(a.size) if indices is None else indices):
        old = flat[i]
        flat[i] = old + eps
        up = loss()
        flat[i] = old - eps
        down = loss()
        flat[i] = old
        gflat[i] = (up - down) / (2 * eps)
    return g


def assert_grad_close(analytic, numeric, what, rtol=1e-5, atol=1e-7):
    analytic = np.asarray(analytic, dtype=np.float64)
    mask = ~np.isnan(numeric)
    np.testing.assert_allclose(analytic[mask], numeric[mask], rtol=rtol, atol=atol, err_msg=what)


def sample_indices(rng, size, k=12):
    """At most k flat indices of an array of ``size`` elements."""
    return range(size) if size <= k else rng.choice(size, k, replace=False)
