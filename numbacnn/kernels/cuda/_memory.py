"""Device memory and the stream of the CUDA kernels: one caching allocator, one stream, one readback.

Every launcher takes its outputs and scratch arrays from ``empty`` (never ``cuda.device_array``):

* on a GPU, ``empty`` is ``cuda.device_array`` on the backend's stream, and the memory comes from
  ``CachingMemoryManager``, a Numba External Memory Management (EMM) plugin installed by the backend
  before the CUDA context exists: a freed array's block goes back to a free list of its size class
  instead of ``cuMemFree``, and the next request of that class takes it without ``cuMemAlloc``.  Numba's
  reference counting of device pointers decides when a block is free (every view of an array keeps
  it), and every kernel and copy runs on one stream, so a block handed out again is only written by
  work queued after the work that last read it.
* under Numba's CUDA simulator (no device, no EMM), ``empty`` hands out numpy views of host blocks
  from the same ``BlockCache``; a block returns to its free list when the last view of it dies.

A training step therefore allocates nothing once the first steps have filled the free lists:
``CACHE.misses`` counts real allocations (``numbacnn.backends.cuda_count`` reads it).

Readbacks (``readback``): a device array is copied into a cached pinned host buffer on the stream
without waiting; ``Readback.get()`` synchronises the stream once for every readback queued before
it (``synchronize`` counts epochs), so a training step's loss and argmax come back with one
synchronisation.
"""
from __future__ import annotations

import ctypes
import weakref

import numpy as np
from numba import cuda

from numba.core import config as _numba_config

SIMULATOR = bool(_numba_config.ENABLE_CUDASIM)
GRANULE = 512          # bytes: every block is a multiple (and at least one)
_raw_device_array = cuda.device_array   # the allocation ``empty`` makes (a counting shim patches the module's)
_raw_pinned_array = cuda.pinned_array


def size_class(nbytes: int) -> int:
    """The block size serving ``nbytes``: a multiple of 512 B below 1 MiB, else of 1/16 of its power of two."""
    n = max(int(nbytes), 1)
    if n <= 1 << 20:
        step = GRANULE
    else:
        step = 1 << (n - 1).bit_length() - 4
    return -(-n // step) * step


class BlockCache:
    """Free lists of memory blocks by size class, with counters (the same for a GPU and the simulator).

    ``allocate(nbytes) -> block`` makes a new block; ``free(block)`` releases one (``trim``).
    """

    def __init__(self):
        self.free = {}
        self.misses = 0        # blocks allocated (cuMemAlloc on a GPU)
        self.hits = 0          # requests served from a free list
        self.reserved = 0      # bytes held in blocks, in use or free

    def take(self, cls: int, allocate):
        """A block of size class ``cls``: a free one, else ``allocate(cls)`` (a miss)."""
        blocks = self.free.get(cls)
        if blocks:
            self.hits += 1
            return blocks.pop()
        block = allocate(cls)
        self.misses += 1
        self.reserved += cls
        return block

    def give(self, cls: int, block):
        self.free.setdefault(cls, []).append(block)

    def trim(self, release=None):
        """Drop every free block (``release(block)`` each, e.g. ``cuMemFree``); returns the bytes dropped."""
        dropped = 0
        for cls, blocks in self.free.items():
            for block in blocks:
                if release is not None:
                    release(block)
                dropped += cls
            blocks.clear()
        self.reserved -= dropped
        return dropped

    def stats(self) -> dict:
        return {"misses": self.misses, "hits": self.hits, "reserved_bytes": self.reserved,
                "free_bytes": sum(c * len(b) for c, b in self.free.items())}


CACHE = BlockCache()


# ---------------------------------------------------------------- the GPU: an EMM plugin
def _manager_class():
    """The EMM plugin class (built lazily: the simulator has no driver)."""
    from numba.cuda.cudadrv import driver as drv

    class CachingMemoryManager(cuda.GetIpcHandleMixin, cuda.HostOnlyCUDAMemoryManager):
        """Device memory from ``CACHE``'s free lists; ``cuMemAlloc`` only when a size class has none free."""

        def memalloc(self, size):
            cls = size_class(size)
            ptr = CACHE.take(cls, self._allocate)
            key = int(ptr)
            allocations = self.allocations

            def release():
                allocations.pop(key, None)
                CACHE.give(cls, ptr)

            mem = drv.AutoFreePointer(weakref.proxy(self.context), ptr, size, finalizer=release)
            allocations[key] = mem
            return mem.own()

        def _allocate(self, nbytes):
            try:
                return drv.driver.cuMemAlloc(nbytes)
            except drv.CudaAPIError:        # out of memory: give the cached blocks back and retry once
                CACHE.trim(drv.driver.cuMemFree)
                return self._attempt_allocation(lambda: drv.driver.cuMemAlloc(nbytes))

        def initialize(self):
            pass

        def get_memory_info(self):
            free, total = drv.driver.cuMemGetInfo()
            return drv.MemoryInfo(free=free, total=total)

        def reset(self):
            super().reset()
            CACHE.trim(drv.driver.cuMemFree)

        @property
        def interface_version(self):
            return 1

    return CachingMemoryManager


_STATE = {"installed": False, "stream": 0, "epoch": 0, "synced": 0}


def install() -> bool:
    """Make the caching allocator Numba's memory manager (before any CUDA context exists) and create the
    stream.  Returns whether the allocator serves this process's context (False when a context was made
    before, e.g. by other code; arrays are then allocated by Numba's own manager)."""
    if not _STATE["installed"]:
        if not SIMULATOR:
            cuda.set_memory_manager(_manager_class())
        _STATE["installed"] = True
        _STATE["stream"] = cuda.stream()
    return caching_active()


def caching_active() -> bool:
    """True when device arrays come from ``CACHE`` (always under the simulator)."""
    if SIMULATOR:
        return True
    mm = getattr(cuda.current_context(), "memory_manager", None)
    return type(mm).__name__ == "CachingMemoryManager"


def stream():
    """The stream every launch and copy of the kernels runs on (0, the default stream, before ``install``)."""
    return _STATE["stream"]


# ---------------------------------------------------------------- arrays
def _sim_block(nbytes):
    return np.zeros(nbytes, dtype=np.uint8)


def empty(shape, dtype=np.float32):
    """An uninitialised C-contiguous device array from the caching allocator."""
    if isinstance(shape, (int, np.integer)):
        shape = (int(shape),)
    shape = tuple(int(s) for s in shape)
    dtype = np.dtype(dtype)
    if not SIMULATOR:
        return _raw_device_array(shape, dtype=dtype, stream=_STATE["stream"])
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    cls = size_class(nbytes)
    block = CACHE.take(cls, _sim_block)
    owner = (ctypes.c_char * max(nbytes, 1)).from_buffer(block)   # every view of the array keeps it
    weakref.finalize(owner, CACHE.give, cls, block)
    return _raw_device_array(shape, dtype=dtype, buffer=owner)


def to_device(host, dtype=None):
    """A device copy of host data (one host-to-device copy into a cached block)."""
    a = np.ascontiguousarray(host, dtype=dtype)
    out = empty(a.shape, a.dtype)
    if a.size:
        out.copy_to_device(a, stream=_STATE["stream"])
    return out


def copy(a):
    """A new device array equal to ``a`` (one device-to-device copy)."""
    out = empty(a.shape, a.dtype)
    if a.size:
        out.copy_to_device(a, stream=_STATE["stream"])
    return out


# ---------------------------------------------------------------- synchronisation and readbacks
_PINNED: dict = {}


def synchronize():
    """Wait for everything queued; every readback queued before is then ready."""
    s = _STATE["stream"]
    if s:
        s.synchronize()
    else:
        cuda.synchronize()
    _STATE["synced"] = _STATE["epoch"]


class Readback:
    """A device array on its way to the host (a pinned buffer); ``get()`` waits at most once for all."""

    __slots__ = ("_host", "_epoch", "_key", "_value")

    def __init__(self, a):
        key = (tuple(int(s) for s in a.shape), np.dtype(a.dtype).str)
        free = _PINNED.setdefault(key, [])
        self._host = free.pop() if free else _raw_pinned_array(key[0], dtype=np.dtype(a.dtype))
        self._key, self._value = key, None
        a.copy_to_host(self._host, stream=_STATE["stream"])
        _STATE["epoch"] += 1
        self._epoch = _STATE["epoch"]

    def get(self) -> np.ndarray:
        """The host copy (synchronises the stream unless a synchronisation came after the copy was queued)."""
        if self._value is None:
            if _STATE["synced"] < self._epoch:
                synchronize()
            self._value = np.array(self._host, copy=True)
            _PINNED[self._key].append(self._host)
            self._host = None
        return self._value


class ReadbackMean:
    """The mean of a device vector, read when first converted with ``float()``."""

    __slots__ = ("_rb",)

    def __init__(self, a):
        self._rb = Readback(a)

    def __float__(self):
        return float(self._rb.get().mean())


def readback(a) -> Readback:
    return Readback(a)
