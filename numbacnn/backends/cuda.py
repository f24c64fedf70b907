"""The CUDA backend: ``numba.cuda`` kernels from ``numbacnn.kernels.cuda``.

Arrays are numba device arrays (C-contiguous); ``asarray`` moves host data to
the device and ``to_host`` brings it back.  Device memory comes from the kernels'
caching allocator (``numbacnn.kernels.cuda._memory``: a Numba EMM plugin installed
here, before the CUDA context exists), so a training step allocates nothing once the
first steps are done; every launch and copy runs on the backend's one stream, and
``readback`` queues a copy to pinned memory that one synchronisation serves.
Under Numba's CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1``) the same code runs on the CPU, one Python thread
per CUDA thread: that is how CI checks every kernel without a GPU.
"""
from __future__ import annotations

import numpy as np

from .. import config
from .base import Backend, kernel_table

def _on_device(a) -> bool:
    """True for numba device arrays (real or simulated: both have ``copy_to_host``)."""
    return hasattr(a, "copy_to_host")


class CUDABackend(Backend):
    name = "cuda"

    def __init__(self):
        from . import numba_cuda_missing_reason

        missing = numba_cuda_missing_reason()
        if missing:
            raise RuntimeError(f"the CUDA backend needs numba-cuda: {missing}")
        from numba import cuda

        if not config.CUDASIM and not cuda.is_available():
            raise RuntimeError("no CUDA GPU is available (numba.cuda.is_available() is False); use --device cpu, "
                               "or run on Numba's CUDA simulator (slow, for testing): set NUMBA_ENABLE_CUDASIM=1 "
                               "in the environment, e.g. NUMBA_ENABLE_CUDASIM=1 numbacnn train --device cuda")
        from ..kernels.cuda import _memory, elementwise

        #: whether device memory comes from the caching allocator (False when a CUDA context existed before)
        self.caching = _memory.install()
        self._cuda = cuda
        self._mem = _memory
        self._ew = elementwise
        self.k = kernel_table("cuda")

    # ------------------------------------------------------------ arrays
    def asarray(self, a, dtype=np.float32):
        """Host data -> device array of ``dtype`` (C-contiguous); a device array of that dtype is returned as-is."""
        if _on_device(a):
            if dtype is None or np.dtype(a.dtype) == np.dtype(dtype):
                return a
            a = a.copy_to_host()
        return self._mem.to_device(a, dtype)

    def to_host(self, a) -> np.ndarray:
        """Device array -> numpy array (host arrays pass through)."""
        if _on_device(a):
            return a.copy_to_host()
        return np.asarray(a)

    def zeros(self, shape, dtype=np.float32):
        return self._ew.zeros(shape, dtype)

    def add_inplace(self, a, b):
        """a += b on the device (one kernel launch); returns a."""
        if tuple(a.shape) != tuple(b.shape):
            raise ValueError(f"add_inplace: shape {tuple(b.shape)} does not match {tuple(a.shape)}")
        return self._ew.add_inplace(a, b)

    def copy(self, a):
        return self._ew.copy(a)

    def synchronize(self):
        self._mem.synchronize()

    def readback(self, a):
        """A copy of device array ``a`` queued to pinned host memory; ``.get()`` waits (once for all queued)."""
        return self._mem.readback(a)
