"""CUDA test plumbing: when the kernels can run, and which kernels a test launched.

The simulator tests need ``NUMBA_ENABLE_CUDASIM=1`` set before numba is first
imported, so CI runs them in their own process::

    NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/cuda -q

In the normal process they skip (unless a real GPU is present), while the PTX
and coverage tests run.  No ``__init__.py`` here on purpose: a package called
``cuda`` would shadow the ``cuda`` namespace package of NVIDIA's bindings.
"""
from __future__ import annotations

import sys

import pytest

from numbacnn import config
from numbacnn.backends import cuda_available

CAN_RUN = config.CUDASIM or cuda_available()
SKIP_REASON = "CUDA kernels need a GPU or Numba's simulator: run NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/cuda"

if config.CUDASIM:
    # The simulator runs one Python thread per CUDA thread and its block manager polls them;
    # a shorter GIL switch interval makes every syncthreads() several times cheaper.
    sys.setswitchinterval(5e-4)


@pytest.fixture
def launched(monkeypatch):
    """The names of the kernels launched during the test (a set), under the simulator; None on a GPU."""
    if not config.CUDASIM:
        return None
    from numba.cuda.simulator.kernel import FakeCUDAKernel

    names = set()
    call = FakeCUDAKernel.__call__

    def recording_call(self, *args):
        if not self._device:
            names.add(self.fn.__name__)
        return call(self, *args)

    monkeypatch.setattr(FakeCUDAKernel, "__call__", recording_call)
    return names
