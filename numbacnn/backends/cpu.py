"""The CPU backend: Numba ``@njit`` kernels from ``numbacnn.kernels.cpu``.

Inputs and outputs are C-contiguous numpy float32 arrays.  The kernel table
holds every kernel of the op table's families; where it has a kernel named
like a public method (``conv2d_backward``: dx, dw and db in one parallel
region, so Numba's thread pool wakes once), that kernel runs instead of the
method's composition of single-direction kernels.
"""
from __future__ import annotations

from .base import Backend, kernel_table
from .reference import HostArrays


class CPUBackend(HostArrays, Backend):
    name = "cpu"
    k = kernel_table("cpu")
