"""What the GPU can do at most, measured: memory bandwidth (a copy kernel) and fp32 FMA throughput.

``benchmarks/device_check.py`` reports our kernels against these ceilings.  The kernels are plain
``@cuda.jit`` code on device arrays; the times are medians after a warm-up, each run ended by a
synchronisation.
"""
from __future__ import annotations

import numpy as np
from numba import cuda, float32

from common import median_time

CHAINS = 8   # independent FMA chains per thread (enough instruction-level parallelism to fill the pipes)


@cuda.jit
def copy_kernel(x, y):
    """y[i] = x[i].  x, y : (n,) float32"""
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        y[i] = x[i]


@cuda.jit
def fma_kernel(iters, out):
    """CHAINS independent multiply-add chains of ``iters`` steps per thread; out : (threads,) float32."""
    i = cuda.grid(1)
    b, c = float32(0.999), float32(0.001)
    a0, a1, a2, a3 = float32(i), float32(i + 1), float32(i + 2), float32(i + 3)
    a4, a5, a6, a7 = float32(i + 4), float32(i + 5), float32(i + 6), float32(i + 7)
    for _ in range(iters):
        a0 = a0 * b + c
        a1 = a1 * b + c
        a2 = a2 * b + c
        a3 = a3 * b + c
        a4 = a4 * b + c
        a5 = a5 * b + c
        a6 = a6 * b + c
        a7 = a7 * b + c
    if i < out.size:
        out[i] = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7


def bandwidth(n: int, repeats: int = 10) -> float:
    """GB/s of a device-to-device copy of ``n`` float32 (read + write counted)."""
    x = cuda.to_device(np.ones(n, np.float32))
    y = cuda.device_array(n, np.float32)
    blocks = min(65535, (n + 255) // 256)
    t = median_time(lambda: copy_kernel[blocks, 256](x, y), repeats, 1, cuda.synchronize)
    return 2 * 4 * n / t / 1e9


def fma_throughput(iters: int, blocks: int, threads: int = 256, repeats: int = 5) -> float:
    """TFLOP/s of ``fma_kernel`` (2 flops per FMA) on ``blocks`` x ``threads`` threads."""
    out = cuda.device_array(blocks * threads, np.float32)
    t = median_time(lambda: fma_kernel[blocks, threads](np.int64(iters), out), repeats, 1, cuda.synchronize)
    return 2 * CHAINS * iters * blocks * threads / t / 1e12
