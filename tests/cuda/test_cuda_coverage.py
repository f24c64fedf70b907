"""Every ``@cuda.jit`` kernel of ``numbacnn.kernels.cuda`` is declared by an op of the op table, so the
simulator tests launch it and the PTX test compiles it.

Kernels are discovered by walking the package's modules for numba CUDA kernel objects
(``CUDADispatcher`` normally, ``FakeCUDAKernel`` under the simulator) that are not device
functions and are defined in that module.  Runs in both the normal and the simulator process.
"""
from __future__ import annotations

import importlib
import pkgutil

import numbacnn.kernels.cuda as cuda_pkg


def _is_kernel(obj):
    """A numba CUDA kernel (not a device function), real or simulated."""
    try:
        from numba.cuda.dispatcher import CUDADispatcher
        if isinstance(obj, CUDADispatcher):
            return not obj.targetoptions.get("device", False)
    except ImportError:  # the simulator has no CUDADispatcher
        pass
    from numba.cuda.simulator.kernel import FakeCUDAKernel
    return isinstance(obj, FakeCUDAKernel) and not obj._device


def discover_kernels():
    """{kernel name: module name} for every kernel defined in numbacnn.kernels.cuda."""
    found = {}
    for info in pkgutil.iter_modules(cuda_pkg.__path__):
        module = importlib.import_module(f"{cuda_pkg.__name__}.{info.name}")
        for name, obj in vars(module).items():
            if _is_kernel(obj) and obj.py_func.__module__ == module.__name__:
                found[name] = module.__name__
    return found


def test_discovery_finds_the_kernels_of_every_module():
    modules = set(discover_kernels().values())
    for m in ("conv2d", "pool2d", "dense", "elementwise", "norm", "pad"):
        assert f"numbacnn.kernels.cuda.{m}" in modules


def test_every_kernel_is_declared_by_an_op():
    """The simulator test launches, and the PTX test compiles, exactly the kernels the op table declares."""
    from numbacnn.ops import CUDA_HELPERS, OPS
    declared = set(CUDA_HELPERS).union(*(op.cuda for op in OPS.values()))
    kernels = set(discover_kernels())
    assert not kernels - declared, f"kernels no op declares (numbacnn/ops.py): {sorted(kernels - declared)}"
    assert not declared - kernels, f"ops declare unknown kernels: {sorted(declared - kernels)}"
