"""Every ``@cuda.jit`` kernel of ``numbacnn.kernels.cuda`` compiles to PTX for a real GPU
(compute capability 9.0) with explicit float32 signatures, and uses no float64.

Runs in the normal pytest process (no GPU needed, no simulator): ``numba.cuda.compile_ptx``
of the maintained **numba-cuda** package needs only libNVVM, which the project's ``cuda``
extra installs (``pip install -e '.[cuda]'`` brings ``numba-cuda[cu13]``, whose
``cuda-toolkit[nvvm,nvrtc,...]`` wheels carry it).  Skips with the reason when the simulator
is on, when numba-cuda is not installed (numba's deprecated built-in ``numba.cuda`` types some
kernels differently, so a machine with a CUDA toolkit but no numba-cuda must not run these),
or when libNVVM cannot be loaded.

The signatures are those the launchers produce: C-contiguous float32 views, Python ints as
int64, scalars passed as ``np.float32``, flags as booleans.
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

from numba import boolean, cuda, float32, int32, int64, uint8, uint64  # noqa: E402

from numbacnn.kernels.cuda import _common, conv2d, dense, elementwise, norm, pad, pool2d  # noqa: E402

CC = (9, 0)
F = float32
A1, A2, A3, A4 = float32[::1], float32[:, ::1], float32[:, :, ::1], float32[:, :, :, ::1]
I = int64
U8 = uint8[::1]
L64, L32 = int64[::1], int32[::1]
B = boolean

# kernel name -> (module, signature or list of signatures)
PTX_SIGNATURES = {
    # _common
    "channel_sum_kernel": (_common, (A3, F, A1)),
    # conv2d
    "conv2d_forward_tiled_kernel": (conv2d, (A4, A4, A1, B, I, I, I, I, I, I, I, A4)),
    "conv2d_forward_direct_kernel": (conv2d, (A4, A4, A1, B, I, I, I, I, I, I, I, A4)),
    "conv2d_backward_input_kernel": (conv2d, (A4, A4, I, I, I, I, I, I, I, A4)),
    "conv2d_backward_weight_kernel": (conv2d, (A4, A4, I, I, I, I, I, I, I, A4)),
    # pool2d
    "max_pool2d_forward_kernel": (pool2d, (A4, I, I, I, I, I, I, A4, int64[:, :, :, ::1])),
    "max_pool2d_backward_kernel": (pool2d, (A2, int64[:, ::1], A2)),
    "avg_pool2d_forward_kernel": (pool2d, (A4, I, I, I, I, I, I, B, A4)),
    "avg_pool2d_backward_kernel": (pool2d, (A4, I, I, I, I, I, I, B, A4)),
    "global_avg_pool2d_backward_kernel": (pool2d, (A1, F, A2)),
    # dense
    "dense_forward_kernel": (dense, (A2, A2, A1, B, A2)),
    "dense_backward_input_kernel": (dense, (A2, A2, A2)),
    "dense_backward_weight_kernel": (dense, (A2, A2, A2)),
    # elementwise
    "fill_kernel": (elementwise, [(A1, F), (U8, uint8)]),
    "add_inplace_kernel": (elementwise, (A1, A1)),
    "relu_forward_kernel": (elementwise, (A1, A1)),
    "relu_backward_kernel": (elementwise, (A1, A1, A1)),
    "leaky_relu_forward_kernel": (elementwise, (A1, F, A1)),
    "leaky_relu_backward_kernel": (elementwise, (A1, A1, F, A1)),
    "sigmoid_forward_kernel": (elementwise, (A1, A1)),
    "sigmoid_backward_kernel": (elementwise, (A1, A1, A1)),
    "tanh_forward_kernel": (elementwise, (A1, A1)),
    "tanh_backward_kernel": (elementwise, (A1, A1, A1)),
    "softmax_forward_kernel": (elementwise, (A2, A2)),
    "softmax_backward_kernel": (elementwise, (A2, A2, A2)),
    "softmax_cross_entropy_forward_kernel": (elementwise, [(A2, L64, A2, A1), (A2, L32, A2, A1)]),
    "softmax_cross_entropy_backward_kernel": (elementwise, [(A2, L64, F, A2), (A2, L32, F, A2)]),
    "argmax_kernel": (elementwise, (A2, L64)),
    "dropout_forward_kernel": (elementwise, (A1, uint64, F, F, A1, U8)),
    "dropout_backward_kernel": (elementwise, (A1, U8, F, A1)),
    "concat_forward_kernel": (elementwise, (A3, I, A3)),
    "concat_backward_kernel": (elementwise, (A3, I, A3)),
    "sgd_update_kernel": (elementwise, (A1, A1, A1, F, F, B, F, F)),
    "adam_update_kernel": (elementwise, (A1, A1, A1, A1, F, F, F, F, F, F, F, F, F, F)),
    # norm
    "batch_norm_stats_kernel": (norm, (A3, F, F, F, A1, A1, A1, A1)),
    "batch_norm_eval_stats_kernel": (norm, (A1, A1, F, A1, A1)),
    "batch_norm_apply_kernel": (norm, (A3, A1, A1, A1, A1, A3)),
    "batch_norm_backward_reduce_kernel": (norm, (A3, A3, A1, A1, A1, A1)),
    "batch_norm_backward_input_kernel": (norm, (A3, A3, A1, A1, A1, A1, A1, B, A3)),
    "lrn_forward_kernel": (norm, (A3, I, F, F, F, A3, A3)),
    "lrn_backward_kernel": (norm, (A3, A3, A3, A3, I, F, F, A3)),
    # pad
    "pad2d_kernel": (pad, (A3, I, I, F, A3)),
}

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
    module, sigs = PTX_SIGNATURES[name]
    kernel = getattr(module, name)
    for sig in sigs if isinstance(sigs, list) else [sigs]:
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
