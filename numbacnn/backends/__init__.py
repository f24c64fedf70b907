"""Backends: ``get_backend("cpu" | "cuda" | "reference" | "auto")``.

Every backend has the same public API (see ``numbacnn.backends.base``).
"""
from __future__ import annotations

from .. import config  # noqa: F401  (sets Numba's threading defaults before numba loads)
from ..registry import provide_backends
from .base import Backend

_INSTANCES: dict = {}
NAMES = ("cpu", "cuda", "reference", "auto")


def numba_cuda_missing_reason() -> str | None:
    """None when the maintained numba-cuda package is installed, else why the CUDA backend cannot run.

    Numba still ships a deprecated built-in ``numba.cuda``, which ``from numba import cuda``
    falls back to without numba-cuda; the kernels here are written for numba-cuda.
    """
    import importlib.util
    if importlib.util.find_spec("numba_cuda") is None:
        return "the numba-cuda package is not installed (pip install 'numbacnn[cuda]')"
    return None


def no_gpu_device() -> bool:
    """True when this Linux machine shows no GPU device node (``/dev/nvidia*``; WSL's ``/dev/dxg``) and no CUDA
    driver was named (NUMBA_CUDA_DRIVER): there is then no GPU, known without importing ``numba.cuda`` (seconds)."""
    import glob
    import os
    import sys
    if not sys.platform.startswith("linux") or os.environ.get("NUMBA_CUDA_DRIVER"):
        return False
    return not (glob.glob("/dev/nvidia*") or os.path.exists("/dev/dxg"))


def cuda_available() -> bool:
    """True when a real CUDA GPU (not the simulator) can be used through numba-cuda."""
    if config.CUDASIM or no_gpu_device() or numba_cuda_missing_reason():
        return False
    try:
        from numba import cuda
        return bool(cuda.is_available())
    except Exception:
        return False


def get_backend(name: str = "cpu") -> Backend:
    """Return the (shared) backend called ``name``.

    ``auto`` is ``cuda`` when a real GPU is present, else ``cpu``.  Asking for
    ``cuda`` without one (and without the CUDA simulator) raises RuntimeError.
    """
    if isinstance(name, Backend):
        return name
    name = str(name).lower()
    if name == "auto":
        name = "cuda" if cuda_available() else "cpu"
    if name not in _INSTANCES:
        if name == "cpu":
            from .cpu import CPUBackend
            _INSTANCES[name] = CPUBackend()
        elif name == "reference":
            from .reference import ReferenceBackend
            _INSTANCES[name] = ReferenceBackend()
        elif name == "cuda":
            from .cuda import CUDABackend
            _INSTANCES[name] = CUDABackend()
        else:
            raise ValueError(f"unknown backend {name!r}: choose one of {', '.join(NAMES)}")
    return _INSTANCES[name]


provide_backends(get_backend)

__all__ = ["Backend", "get_backend", "cuda_available", "numba_cuda_missing_reason", "NAMES"]
