"""Every ``@cuda.jit`` kernel of ``numbacnn.kernels.cuda`` compiles to PTX for a real GPU
(compute capability 9.0) with explicit float32 signatures, and uses no float64.

Runs in the normal pytest process (no GPU needed, no simulator): ``numba.cuda.compile_ptx``
of the maintained **numba-cuda** package needs only libNVVM, which the project's ``cuda``
extra installs (``pip install -e '.[cuda]'`` brings ``numba-cuda[cu13]``, whose
``cuda-toolkit[nvvm,nvrtc,...]`` wheels carry it).  Skips with the reason when the simulator
is on, when numba-cuda is not installed (numba's deprecated built-in ``numba.cuda`` types some
kernels differently, so a machine with a CUDA toolkit but no numba-cuda must not run these),
or when libNVVM cannot be loaded.

The kernels and their signatures come from the op table (``Op.cuda`` in ``numbacnn/ops.py``):
the types the launchers produce (C-contiguous float32 views, Python ints as int64, scalars
passed as ``np.float32``, flags as booleans).
"""
from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

from numbacnn import config

if config.CUDASIM:
    pytest.skip("PTX compilation needs the real numba.cuda, not the simulator (NUMBA_ENABLE_CUDASIM=1)",
                allow_module_level=True)

from numbacnn.backends import numba_cuda_missing_reason  # noqa: E402

if numba_cuda_missing_reason():
    pytest.skip(f"PTX checks need numba-cuda: {numba_cuda_missing_reason()}", allow_module_level=True)

from numba import cuda, float32  # noqa: E402

from numbacnn.backends.cuda_resources import CC, declared_kernels  # noqa: E402

# the kernels of the op table with their signatures, typed from its codes (numbacnn/ops.py's docstring)
PTX_SIGNATURES = declared_kernels()

F64 = re.compile(r"\.f64\b|\bcvt\.\S*f64")


def _nvvm_missing_reason():
    try:
        from numba.cuda.cudadrv import nvvm
        nvvm.NVVM()
    except Exception as exc:  # the library is absent or cannot be loaded
        return f"libNVVM is not available ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); " \
               f"install the cuda extra: pip install -e '.[cuda]'"
    return None


@pytest.fixture
def nvvm_available(monkeypatch):
    """Skip without libNVVM; otherwise let device functions compile without a GPU.

    ``compile_ptx`` takes the target ``cc`` for the kernel, but the device
    functions a kernel calls (``block_sum``, ``dropout_uniform``...) ask the
    current device for theirs: without a GPU there is none, so the test tells
    numba-cuda the device is the cc 9.0 target (on a machine with a GPU the
    real device answers).
    """
    reason = _nvvm_missing_reason()
    if reason:
        pytest.skip(reason)
    if not cuda.is_available():
        import numba.cuda.dispatcher as dispatcher
        monkeypatch.setattr(dispatcher, "get_current_device", lambda: SimpleNamespace(compute_capability=CC))


@pytest.mark.parametrize("name", sorted(PTX_SIGNATURES))
def test_kernel_compiles_to_float32_ptx(nvvm_available, name):
    kernel, sigs = PTX_SIGNATURES[name]
    for sig in sigs:
        ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=CC)
        assert ".entry" in ptx, f"{name}{sig}: no kernel entry in the PTX"
        bad = [line.strip() for line in ptx.splitlines() if F64.search(line)]
        assert not bad, f"{name}{sig} uses float64 in its PTX ({len(bad)} lines), e.g.:\n" + "\n".join(bad[:5])


def test_the_f64_pattern_catches_float64():
    """The checker itself: a kernel that computes in float64 is caught."""
    def doubles(x):
        i = cuda.grid(1)
        if i < x.size:
            x[i] = x[i] * 1.5 + x[i] / 3.0

    if _nvvm_missing_reason():
        pytest.skip(_nvvm_missing_reason())
    ptx, _ = cuda.compile_ptx(doubles, (float32[::1],), cc=CC)
    assert any(F64.search(line) for line in ptx.splitlines())
