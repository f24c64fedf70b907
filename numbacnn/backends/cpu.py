"""The CPU backend: Numba ``@njit`` kernels from ``numbacnn.kernels.cpu``.

Inputs and outputs are C-contiguous numpy float32 arrays.  Convolutions run
on channel-blocked kernels (``kernels/cpu/blocked.py``) whose vector width is
the host's unless NUMBACNN_CPU_VECTOR says otherwise.  The kernel table
holds every kernel of the op table's families; where it has a kernel named
like a public method (``conv2d_backward``: dx, dw and db in one parallel
region, so Numba's thread pool wakes once), that kernel runs instead of the
method's composition of single-direction kernels.
"""
from __future__ import annotations

from .. import config
from ..kernels.cpu import blocked
from .base import Backend, kernel_table
from .reference import HostArrays

if config.CPU_CONV not in blocked.MODES:
    raise ValueError(f"NUMBACNN_CPU_CONV must be one of {', '.join(blocked.MODES)}, got {config.CPU_CONV!r}")
if config.CPU_VECTOR is not None:       # NUMBACNN_CPU_VECTOR: the convolutions' vector width (8 or 16)
    try:
        blocked.set_vector_width(config.CPU_VECTOR)
    except ValueError as e:
        raise ValueError(f"NUMBACNN_CPU_VECTOR: {e}") from None


class CPUBackend(HostArrays, Backend):
    name = "cpu"
    k = kernel_table("cpu")
