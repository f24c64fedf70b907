"""Shared pieces of the CUDA kernels: launch geometry, block reductions, views.

Launch sizes are always computed here, from the problem size, and passed to
the kernels as the launch configuration (docs/ARCHITECTURE.md, "CUDA kernels"); kernels
themselves loop grid-stride, so any grid size is correct.  Small problems get
small blocks, which also keeps the CUDA simulator (one Python thread per CUDA
thread) fast in the tests.

Reductions (bias, weight and batch-norm gradients, softmax rows) never use a
shared ``+=`` across threads: each thread sums its own strided slice in a
register, then ``block_sum`` / ``block_max`` combine the block's partial sums
with a tree in shared memory.  The result is race-free and deterministic.
"""
from __future__ import annotations

import math

import numpy as np
from numba import cuda, float32

from ._memory import empty, stream, to_device  # noqa: F401  (the launchers' allocator, stream and uploads)

TPB = 256          # threads per block of 1-D elementwise launches (at most)
RED_TPB = 256      # threads per block of reductions (at most; a power of two)
MAX_BLOCKS = 65535  # blocks per grid dimension we ever ask for (kernels loop grid-stride)


def _next_pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def grid_1d(n: int, tpb: int = TPB):
    """(blocks, threads, stream): the launch configuration of a grid-stride loop over ``n`` items."""
    threads = min(tpb, max(32, 32 * math.ceil(n / 32)))
    return max(1, min(MAX_BLOCKS, math.ceil(n / threads))), threads, stream()


def reduce_tpb(m: int) -> int:
    """Threads per block for a block reduction over ``m`` items: a power of two
    in [32, RED_TPB], about one thread per 8 items."""
    return max(32, min(RED_TPB, _next_pow2(math.ceil(m / 8))))


def flat(a):
    """1-D view of a C-contiguous device array."""
    return a.reshape(a.size)


def as3d(a):
    """(N, C, S) view of a C-contiguous device array of shape (N, C, ...)."""
    return a.reshape(a.shape[0], a.shape[1], a.size // max(1, a.shape[0] * a.shape[1]))


def dummy_f32():
    """A 1-element device array standing for an absent optional argument (bias)."""
    return empty(1, np.float32)


@cuda.jit(device=True)
def block_sum(buf, v):
    """Sum ``v`` over the threads of a 1-D block; every thread gets the total.

    buf : (RED_TPB,) float32 shared array; blockDim.x must be a power of two.
    All threads of the block must call it (it synchronises).
    """
    t = cuda.threadIdx.x
    cuda.syncthreads()  # buf may still be read by a previous call
    buf[t] = v
    cuda.syncthreads()
    step = cuda.blockDim.x // 2
    while step > 0:
        if t < step:
            buf[t] += buf[t + step]
        cuda.syncthreads()
        step //= 2
    return buf[0]


@cuda.jit(device=True)
def block_max(buf, v):
    """Maximum of ``v`` over the threads of a 1-D block; see ``block_sum``."""
    t = cuda.threadIdx.x
    cuda.syncthreads()
    buf[t] = v
    cuda.syncthreads()
    step = cuda.blockDim.x // 2
    while step > 0:
        if t < step and buf[t + step] > buf[t]:
            buf[t] = buf[t + step]
        cuda.syncthreads()
        step //= 2
    return buf[0]


@cuda.jit
def channel_sum_kernel(x, divisor, out):
    """out[c] = sum(x[:, c, :]) / divisor, one block per channel.

    x : (N, C, S) float32, divisor : float32, out : (C,) float32.
    Each thread sums a strided slice of the N * S values in a register, then
    ``block_sum`` combines the partial sums: no atomics, deterministic.
    Used for conv and dense bias gradients and global average pooling.
    """
    buf = cuda.shared.array(RED_TPB, float32)
    N, C, S = x.shape
    for c in range(cuda.blockIdx.x, C, cuda.gridDim.x):
        acc = float32(0)
        for m in range(cuda.threadIdx.x, N * S, cuda.blockDim.x):
            acc += x[m // S, c, m % S]
        total = block_sum(buf, acc)
        if cuda.threadIdx.x == 0:
            out[c] = total / divisor


def channel_sum(x3, divisor=1.0):
    """Launch ``channel_sum_kernel``.  x3 : (N, C, S) device float32 -> (C,) device float32."""
    N, C, S = x3.shape
    out = empty(C, np.float32)
    channel_sum_kernel[min(C, MAX_BLOCKS), reduce_tpb(N * S), stream()](x3, np.float32(divisor), out)
    return out
