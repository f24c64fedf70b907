"""Resources of the hot CUDA kernels for an H200 (sm_90), measured without a GPU: a kernel that regresses fails.

Each hot kernel is compiled to PTX with the op table's signature, assembled by ``ptxas -v`` (registers per
thread, spill bytes) and disassembled by ``nvdisasm`` (``numbacnn.backends.cuda_resources``):

* registers per thread within the kernel's budget below, and no spills;
* the convolutions' innermost multiply-add loop within its budget of SASS instructions per FFMA, and
  free of integer division and modulo (division subroutine calls, ``I2F``/``MUFU.RCP`` sequences).

The tools come with the ``cuda`` extra (``pip install -e '.[cuda]'``: the CUDA 13 nvcc and nvdisasm
wheels); without them, or under the simulator, the tests skip.  Measured at the budgets' last change
(``python -m pytest -q tests/cuda/test_cuda_resources.py -s`` prints the table).
"""
from __future__ import annotations

import pytest

from numbacnn import config

if config.CUDASIM:
    pytest.skip("ptxas checks need the real numba.cuda, not the simulator", allow_module_level=True)

from numbacnn.backends import numba_cuda_missing_reason  # noqa: E402

if numba_cuda_missing_reason():
    pytest.skip(f"ptxas checks need numba-cuda: {numba_cuda_missing_reason()}", allow_module_level=True)

from numba import cuda, float32, int64  # noqa: E402

from numbacnn.backends import cuda_resources as R  # noqa: E402
from test_cuda_ptx import nvvm_available  # noqa: E402,F401  (the fixture)

#: kernel -> (registers per thread at most, SASS instructions per FFMA of the inner loop at most, or None)
BUDGETS = {
    # the implicit-GEMM forward (with its statistics epilogue) and backward to the input, 3x3 with 64-channel tiles
    # (all three tiles: test_every_channel_tile_of_the_gemm_convolution): 168 and 167 registers, 2.00 and 1.97
    # instructions per FFMA (a 4 x 4 register tile from shared memory); before them the tiled forward had 36.2,
    # the direct one 46.8 and the gathering backward to the input 38.2
    "conv2d_forward_gemm_kernel": (200, 2.5),
    "conv2d_backward_input_gemm_kernel": (200, 2.5),
    "conv2d_backward_weight_kernel": (80, 7),
    "batch_norm_partials_kernel": (64, None),
    "batch_norm_apply_kernel": (88, None),
    "batch_norm_backward_partials_kernel": (96, None),
    "batch_norm_backward_input_kernel": (80, None),
    "relu_forward_kernel": (32, None),
    "relu_backward_kernel": (32, None),
    "add2_kernel": (32, None),
    "sgd_update_kernel": (40, None),
    "adam_update_kernel": (48, None),
    "dense_forward_kernel": (64, None),
    "softmax_cross_entropy_forward_kernel": (64, None),
    "channel_sum_kernel": (64, None),
}
#: convolution kernels whose inner loop must not divide
NO_DIVISION = {"conv2d_forward_gemm_kernel", "conv2d_backward_input_gemm_kernel", "conv2d_backward_weight_kernel"}


def _tools_missing():
    missing = [t for t in ("ptxas", "nvdisasm") if R.tool(t) is None]
    return f"{', '.join(missing)} not found: pip install -e '.[cuda]'" if missing else None


@pytest.fixture
def tools(nvvm_available):  # noqa: F811
    reason = _tools_missing()
    if reason:
        pytest.skip(reason)
    try:
        R.usage(R.compile_kernel_ptx(cuda.jit(_bad_kernel), (float32[::1], int64)))
    except RuntimeError as exc:   # e.g. a ptxas older than the PTX libNVVM writes
        pytest.skip(str(exc).splitlines()[0])


@pytest.fixture(scope="module")
def kernels():
    return R.declared_kernels()


@pytest.mark.parametrize("name", sorted(BUDGETS))
def test_registers_within_budget_and_no_spills(tools, kernels, name):
    kernel, sigs = kernels[name]
    max_regs, max_per_fma = BUDGETS[name]
    ptx = R.compile_kernel_ptx(kernel, sigs[0])
    use = R.usage(ptx)
    print(f"\n{name}: {use.registers} registers, {use.spill_stores}/{use.spill_loads} bytes spilled, "
          f"{use.shared_bytes} B shared", end="")
    assert use.spill_stores == 0 and use.spill_loads == 0, f"{name} spills: {use}"
    assert use.registers <= max_regs, f"{name} uses {use.registers} registers per thread (budget {max_regs})"
    if max_per_fma is not None:
        loop = R.inner_loop(R.sass(ptx))
        assert loop is not None, f"{name}: no multiply-add loop found in its SASS"
        print(f"; inner loop {loop.instructions} instructions / {loop.ffma} FFMA = {loop.per_fma:.1f}", end="")
        assert loop.per_fma <= max_per_fma, \
            f"{name}: {loop.per_fma:.1f} instructions per FFMA in its inner loop (budget {max_per_fma})"
        if name in NO_DIVISION:
            assert not loop.divisions, f"{name} divides in its inner loop: {loop.divisions[:3]}"


@pytest.mark.parametrize("backward", [False, True], ids=["forward", "backward_input"])
@pytest.mark.parametrize("channel_tile", [16, 32, 64])
def test_every_channel_tile_of_the_gemm_convolution(tools, kernels, channel_tile, backward):
    """Every channel tile the launchers pick (16, 32, 64 output channels: 256, 128, 64 pixels) stages 8 channels
    per step, so each keeps its multiply-adds dense (the 16- and 32-channel tiles staged 2 and 4 before: 14.1 and
    12.2 instructions per FFMA in the forward).  Measured: forward 194, 190, 168 registers, backward to the input
    167, 174, 167; 2.00 and 1.97 instructions per FFMA."""
    from numbacnn.kernels.cuda.conv2d import conv_gemm_kernel

    name = "conv2d_backward_input_gemm_kernel" if backward else "conv2d_forward_gemm_kernel"
    max_regs, max_per_fma = BUDGETS[name]
    s = 2 if backward else 1
    ptx = R.compile_kernel_ptx(conv_gemm_kernel(3, 3, s, s, 1, 1, channel_tile, backward), kernels[name][1][0])
    use, loop = R.usage(ptx), R.inner_loop(R.sass(ptx))
    print(f"\n{name} tile {channel_tile}: {use.registers} registers, {loop.per_fma:.2f} per FFMA", end="")
    assert use.spill_stores == 0 and use.spill_loads == 0 and use.registers <= max_regs, use
    assert loop.per_fma <= max_per_fma and not loop.divisions, loop


def _bad_kernel(x, s):
    """Deliberately bad: an integer modulo and division in the multiply-add loop, and a big local array."""
    tmp = cuda.local.array(512, float32)
    acc = float32(0)
    for i in range(x.size):
        tmp[i % 512] = x[(i * 7) % x.size]
        acc += tmp[(i // s) % 512] * x[i % s]
    for j in range(512):
        acc += tmp[j]
    x[0] = acc


def test_the_checks_catch_a_bad_kernel(tools):
    """The checker itself: a division in the loop, a poor instruction mix, and a local array are all seen."""
    ptx = R.compile_kernel_ptx(cuda.jit(_bad_kernel), (float32[::1], int64))
    use = R.usage(ptx)
    loop = R.inner_loop(R.sass(ptx))
    assert use.stack_bytes > 0          # the local array lives in (slow) local memory
    assert loop is not None and loop.divisions and loop.per_fma > 10
