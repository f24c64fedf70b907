"""Every environment flag numbacnn reads, in one place (tinygrad's ``getenv``).

Nothing else in the package reads ``os.environ``.  Flags that Numba itself
reads at import time (its threading layer) get their defaults here, and
``numbacnn/__init__.py`` imports this module before anything imports numba.

Flags
-----
NUMBACNN_DEVICE            default device for the CLI's ``--device auto`` (cpu|cuda|auto)
NUMBACNN_DEBUG             1: the CLI shows the Python traceback of an unexpected error
NUMBA_THREADING_LAYER      defaulted to ``workqueue`` (see DESIGN.md: Numba's and
                           OpenBLAS's threads spin against each other on 2 cores)
OPENBLAS_THREAD_TIMEOUT    defaulted to 4 for the same reason
NUMBA_ENABLE_CUDASIM       set by the CUDA-simulator test process; read here only
"""
from __future__ import annotations

import os


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
_setdefault("NUMBA_THREADING_LAYER", "workqueue")
_setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

DEVICE = getenv("NUMBACNN_DEVICE", "auto")
DEBUG = getenv("NUMBACNN_DEBUG", "0") not in ("0", "false", "False", "no")
CUDASIM = getenv("NUMBA_ENABLE_CUDASIM", 0, int) == 1
