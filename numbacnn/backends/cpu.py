"""The CPU backend: Numba ``@njit`` kernels from ``numbacnn.kernels.cpu``.

Inputs and outputs are C-contiguous numpy float32 arrays.
"""
from __future__ import annotations

from types import SimpleNamespace

from ..kernels.cpu import conv2d, dense, elementwise, norm, pad, pool2d
from .base import KernelBackend
from .reference import HostArrays


def _table(*modules):
    ns = {}
    for m in modules:
        for name in getattr(m, "__all__"):
            ns[name] = getattr(m, name)
    return SimpleNamespace(**ns)


class CPUBackend(HostArrays, KernelBackend):
    name = "cpu"
    k = _table(conv2d, pool2d, dense, elementwise, norm, pad)

    def _conv2d_backward(self, dy, x, w, stride, padding, dilation, groups, has_bias):
        # dx, dw and db in one parallel region: Numba's thread pool wakes once, not three times
        return self.k.conv2d_backward(dy, x, w, stride, padding, dilation, groups, has_bias)
