"""The CPU kernels (Numba ``@njit(cache=True)``), one module per op family."""
from __future__ import annotations


def cache_dir() -> str:
    """The directory where Numba caches these kernels' machine code (NUMBA_CACHE_DIR when set, else the
    ``__pycache__`` beside the sources when writable, else Numba's per-user cache)."""
    from .elementwise import _relu_fwd
    return str(_relu_fwd._cache._cache_path)
