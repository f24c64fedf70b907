"""A counting shim around the CUDA backend's host side: kernel launches, allocations, copies, synchronisations.

    with count_device_calls() as counts:
        ...one training step...
    counts.launches       # Counter {kernel name: launches}
    counts.allocations    # device blocks allocated (the caching allocator's misses) + any allocation
                          # made around it (cuda.device_array, to_device, pinned_array ...: none is expected)
    counts.copies         # Counter {"h2d" | "d2h" | "d2d": copies}
    counts.syncs          # synchronisations: cuda.synchronize, Stream.synchronize and copies to the host
                          # that wait (no stream given)

Works on a GPU (it wraps numba-cuda's launch configuration, device arrays and streams) and under
Numba's CUDA simulator, where ``execute=False`` records the launches without running the kernels
(the simulator runs one Python thread per CUDA thread: a ResNet-20 step would take minutes; the host
side, which is what is counted, does not depend on the values).  ``tests/cuda/test_cuda_host.py``
asserts the budgets of one ResNet-20 training step; ``benchmarks/device_check.py`` reports them.
"""
from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass, field

import numpy as np


@dataclass
class DeviceCounts:
    launches: Counter = field(default_factory=Counter)
    copies: Counter = field(default_factory=Counter)
    syncs: int = 0
    raw_allocations: Counter = field(default_factory=Counter)
    misses_before: int = 0
    misses_after: int | None = None

    @property
    def allocations(self) -> int:
        """Device blocks allocated, plus allocations made around the caching allocator."""
        from ..kernels.cuda._memory import CACHE
        after = CACHE.misses if self.misses_after is None else self.misses_after
        return after - self.misses_before + sum(self.raw_allocations.values())

    @property
    def total_launches(self) -> int:
        return sum(self.launches.values())

    def summary(self) -> dict:
        return {"launches": self.total_launches, "allocations": self.allocations, "syncs": self.syncs,
                "copies": dict(self.copies), "launches_by_kernel": dict(sorted(self.launches.items()))}


def _is_device(a) -> bool:
    return hasattr(a, "copy_to_host")


def _patch(stack, owner, name, make):
    """Replace ``owner.name`` by ``make(original)`` until the stack closes."""
    original = getattr(owner, name)
    setattr(owner, name, make(original))
    stack.callback(setattr, owner, name, original)


def _wrap_arrays(stack, counts, array_cls):
    def to_host(orig):
        def copy_to_host(self, ary=None, stream=0):
            counts.copies["d2h"] += 1
            counts.syncs += not stream
            return orig(self, ary, stream=stream)
        return copy_to_host

    def to_device(orig):
        def copy_to_device(self, ary, stream=0):
            counts.copies["d2d" if _is_device(ary) else "h2d"] += 1
            return orig(self, ary, stream=stream)
        return copy_to_device

    _patch(stack, array_cls, "copy_to_host", to_host)
    _patch(stack, array_cls, "copy_to_device", to_device)


def _wrap_allocators(stack, counts, cuda):
    def counted(name):
        def make(orig):
            def alloc(*args, **kwargs):
                counts.raw_allocations[name] += 1
                return orig(*args, **kwargs)
            return alloc
        return make

    for name in ("device_array", "device_array_like", "to_device", "pinned_array", "mapped_array", "managed_array"):
        if hasattr(cuda, name):
            _patch(stack, cuda, name, counted(name))


def _wrap_sync(stack, counts, cuda, stream_cls):
    def make(orig):
        def synchronize(*args, **kwargs):
            counts.syncs += 1
            return orig(*args, **kwargs)
        return synchronize

    _patch(stack, cuda, "synchronize", make)
    _patch(stack, stream_cls, "synchronize", make)


def _wrap_simulated_launches(stack, counts, execute):
    from numba.cuda.simulator import kernel as sim

    def make(orig):
        def call(self, *args):
            if self._device:
                return orig(self, *args)
            counts.launches[self.fn.__name__] += 1
            return orig(self, *args) if execute else None
        return call

    _patch(stack, sim.FakeCUDAKernel, "__call__", make)


def _wrap_gpu_launches(stack, counts):
    from numba.cuda.dispatcher import _LaunchConfiguration

    def make(orig):
        def call(self, *args):
            counts.launches[self.dispatcher.py_func.__name__] += 1
            return orig(self, *args)
        return call

    _patch(stack, _LaunchConfiguration, "__call__", make)


@contextlib.contextmanager
def count_device_calls(execute: bool = True):
    """Count the CUDA backend's launches, allocations, copies and synchronisations inside the block
    (``execute=False``: under the simulator, launches are counted but not run)."""
    from numba import cuda

    from .. import config
    from ..kernels.cuda._memory import CACHE

    counts = DeviceCounts(misses_before=CACHE.misses)
    with contextlib.ExitStack() as stack:
        if config.CUDASIM:
            from numba.cuda.simulator import api
            from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray
            _wrap_arrays(stack, counts, FakeCUDAArray)
            _wrap_sync(stack, counts, cuda, api.stream)
            _wrap_simulated_launches(stack, counts, execute)
        else:
            from numba.cuda.cudadrv.devicearray import DeviceNDArrayBase
            from numba.cuda.cudadrv.driver import Stream
            _wrap_arrays(stack, counts, DeviceNDArrayBase)
            _wrap_sync(stack, counts, cuda, Stream)
            _wrap_gpu_launches(stack, counts)
        _wrap_allocators(stack, counts, cuda)
        try:
            yield counts
        finally:
            counts.misses_after = CACHE.misses


def _snapshot(counts) -> dict:
    from ..kernels.cuda._memory import CACHE
    return {"launches": Counter(counts.launches), "copies": Counter(counts.copies), "syncs": counts.syncs,
            "allocations": CACHE.misses + sum(counts.raw_allocations.values())}


def _difference(a: dict, b: dict) -> dict:
    launches = b["launches"] - a["launches"]
    return {"launches": sum(launches.values()), "allocations": b["allocations"] - a["allocations"],
            "syncs": b["syncs"] - a["syncs"], "copies": dict(b["copies"] - a["copies"]),
            "launches_by_kernel": dict(sorted(launches.items()))}


def count_training_steps(model, x, y, steps: int = 3, execute: bool = True) -> list:
    """[{launches, allocations, syncs, copies, launches_by_kernel} of each of ``steps`` training steps] of
    ``model`` (built on the CUDA backend) on (x, y), one full batch a step, as ``train.fit`` runs them
    (SGD with momentum; the first steps warm the caching allocator up)."""
    from ..optim import SGD
    from ..train import fit

    snaps = []

    class Snapshot:
        def on_batch_end(self, batch, info):
            snaps.append(_snapshot(counts))

    xs, ys = np.concatenate([x] * steps), np.concatenate([np.asarray(y)] * steps)
    with count_device_calls(execute) as counts:
        snaps.append(_snapshot(counts))
        fit(model, xs, ys, epochs=1, batch_size=len(x), optimizer=SGD(lr=0.01, momentum=0.9), shuffle=False,
            callbacks=[Snapshot()])
    return [_difference(a, b) for a, b in zip(snaps, snaps[1:])]
