"""Every environment flag numbacnn reads, in one place (tinygrad's ``getenv``).

Nothing else in the package reads ``os.environ``.  Flags that Numba itself
reads at import time (its threading layer) get their defaults here, and
``numbacnn/__init__.py`` imports this module before anything imports numba.

Flags
-----
NUMBACNN_DEVICE            default device for the CLI's ``--device auto`` (cpu|cuda|auto)
NUMBACNN_DEBUG             1: the CLI shows the Python traceback of an unexpected error
NUMBA_THREADING_LAYER      defaulted to ``omp``: starting a parallel kernel costs ~2 us
                           there against ~100 us with ``workqueue``, and a training
                           step calls dozens of small kernels
OPENBLAS_NUM_THREADS       defaulted to 1: OpenBLAS's threads and the OpenMP workers
                           spin against each other (LeNet-5 step 28 ms against 1.7 ms);
                           BLAS only serves Dense layers, which are small here
OPENBLAS_THREAD_TIMEOUT    defaulted to 4 (short spinning where OpenBLAS is threaded)
OMP_WAIT_POLICY            defaulted to ``passive`` only where numpy (so OpenBLAS) was
                           imported before numbacnn: OpenBLAS then keeps its threads,
                           and sleeping OpenMP workers leave them the cores (3 ms)
NUMBA_ENABLE_CUDASIM       set by the CUDA-simulator test process; read here only
"""
from __future__ import annotations

import os
import sys


def getenv(name: str, default=None, cast=str):
    """Return environment flag ``name`` converted by ``cast``, or ``default``."""
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return cast(value)
    except ValueError as exc:  # pragma: no cover - message only
        raise ValueError(f"environment variable {name}={value!r} is not a valid {cast.__name__}") from exc


def _setdefault(name: str, value: str) -> None:
    if name not in os.environ:
        os.environ[name] = value


# Numba reads these when it starts its thread pool / OpenBLAS when it loads.
_setdefault("NUMBA_THREADING_LAYER", "omp")
_setdefault("OPENBLAS_NUM_THREADS", "1")
_setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
if "numpy" in sys.modules:
    _setdefault("OMP_WAIT_POLICY", "passive")

DEVICE = getenv("NUMBACNN_DEVICE", "auto")
DEBUG = getenv("NUMBACNN_DEBUG", "0") not in ("0", "false", "False", "no")
CUDASIM = getenv("NUMBA_ENABLE_CUDASIM", 0, int) == 1
