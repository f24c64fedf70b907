"""Every ``@cuda.jit`` kernel of ``numbacnn.kernels.cuda`` is exercised by the simulator tests
and compiled by the PTX test.

Kernels are discovered by walking the package's modules for numba CUDA kernel objects
(``CUDADispatcher`` normally, ``FakeCUDAKernel`` under the simulator) that are not device
functions and are defined in that module.  Runs in both the normal and the simulator process.
"""
from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from pathlib import Path

import numbacnn.kernels.cuda as cuda_pkg

HERE = Path(__file__).parent


def _load(name):
    """Import a sibling test module by path (tests/cuda is not a package; see conftest.py)."""
    spec = importlib.util.spec_from_file_location(f"_numbacnn_cuda_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


def test_every_kernel_is_in_the_simulator_tests():
    listed = set().union(*_load("test_cuda_sim").KERNELS.values())
    kernels = set(discover_kernels())
    assert not kernels - listed, f"kernels no simulator test launches: {sorted(kernels - listed)}"
    assert not listed - kernels, f"simulator tests list unknown kernels: {sorted(listed - kernels)}"


def test_every_kernel_is_in_the_ptx_test():
    source = (HERE / "test_cuda_ptx.py").read_text()
    # the PTX module skips itself at import under the simulator, so read its table's keys from the source
    listed = {line.split('"')[1] for line in source.splitlines() if line.strip().startswith('"') and
              line.strip().split('"')[1].endswith("_kernel")}
    kernels = set(discover_kernels())
    assert not kernels - listed, f"kernels the PTX test does not compile: {sorted(kernels - listed)}"
    assert not listed - kernels, f"PTX test lists unknown kernels: {sorted(listed - kernels)}"
