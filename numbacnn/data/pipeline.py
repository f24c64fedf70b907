"""The streaming input pipeline: batches made by worker threads ahead of the training loop, in order.

::

    with BatchStream(make, n_batches, workers=2) as stream:     # make(j) -> batch j
        for batch in stream:                                   # batch 0, 1, 2, ... in order
            ...

``workers`` threads run ``make`` (for image files: decode + resize + augment) for up to ``prefetch``
batches ahead of the one being consumed (a bounded queue: memory stays at ``prefetch`` batches), so
the compute kernels find the next batch ready.  ``workers=0`` makes each batch in the consuming
thread, when it is asked for.  Every batch is a function of its index alone (its image indices and
its own augmentation seed, ``batch_seeds``), so the batches are the same, bit for bit, whatever
the number of workers.

Threads, not processes: Pillow's decoders and resampling, numpy's array operations and h5py release
the GIL where the time goes, threads share the dataset with nothing to pickle or copy back, and
they start in microseconds; a forked worker process is unsafe beside Numba's OpenMP threads, and a
spawned one pays the package's import (a second or more) before its first batch.
An error in a worker (a corrupt image) is raised where its batch is consumed.
"""
from __future__ import annotations

import collections
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np


def default_workers() -> int:
    """Threads for decoding image files: the machine's cores, at most 4."""
    return max(1, min(4, os.cpu_count() or 1))


def batch_seeds(rng, n: int) -> np.ndarray:
    """``n`` seeds drawn from ``rng`` (int64 >= 0): batch j's augmentation draws from ``Generator(PCG64(seeds[j]))``."""
    return rng.integers(0, np.iinfo(np.int64).max, size=n, dtype=np.int64)


def augment_batch(augment, x, seed) -> np.ndarray:
    """``augment(x, rng)`` with batch ``seed``'s own generator, checked to keep the shape; C-contiguous float32."""
    shape = x.shape
    out = augment(x, np.random.Generator(np.random.PCG64(int(seed))))
    if tuple(np.shape(out)) != shape:
        raise ValueError(f"augment returned shape {np.shape(out)} for a batch of shape {shape}")
    return np.ascontiguousarray(out, dtype=np.float32)


class BatchStream:
    """Iterate ``make(0) ... make(n - 1)`` in order, made by ``workers`` threads up to ``prefetch`` ahead."""

    def __init__(self, make, n: int, workers: int = 0, prefetch: int | None = None):
        if int(workers) < 0:
            raise ValueError(f"workers must be >= 0, got {workers}")
        self.make, self.n, self.workers = make, int(n), int(workers)
        self.prefetch = max(1, int(prefetch) if prefetch is not None else 2 * self.workers)
        self._pool = None
        self._pending = collections.deque()

    def __iter__(self):
        if self.workers == 0:
            for j in range(self.n):
                yield self.make(j)
            return
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="numbacnn-data")
        try:
            nxt = 0
            for _ in range(self.n):
                while nxt < self.n and len(self._pending) < self.prefetch:
                    self._pending.append(self._pool.submit(self.make, nxt))
                    nxt += 1
                yield self._pending.popleft().result()
        finally:
            self.close()

    def close(self):
        """Cancel the batches not started and wait for the running ones (threads cannot be killed)."""
        for f in self._pending:
            f.cancel()
        self._pending.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


__all__ = ["BatchStream", "batch_seeds", "augment_batch", "default_workers"]
