"""Data-parallel training over MPI (mpi4py): the strategy object the training-run core calls.

``mpiexec -n K numbacnn train ...`` starts K processes (ranks).  Each builds the same model from the same
seed (and takes rank 0's parameters besides), draws the same shuffled order, and takes its part of every
global batch of ``--batch-size`` images.  Its gradients are summed with the other ranks' in buckets of a
few MiB (``NUMBACNN_BUCKET_MIB``), in reverse layer order: a bucket's non-blocking ``Iallreduce`` on a
numpy buffer starts as soon as the backward pass has filled it, and every layer's backward that follows
drives MPI's progress (``Testall``), so the last layers' communication overlaps the backward pass of the
first ones.  Every rank then takes the same optimizer step: the parameters stay identical on every rank
(``NUMBACNN_CHECK_SYNC=N`` compares a checksum of them every N steps).

Gradients are weighted by the images each rank had: a rank packs ``n_k * grad_k`` (its gradient is the
mean over its ``n_k`` images), bucket 0 carries ``n_k`` in one extra slot, and after the sum every rank
divides by the global ``N``: the mean over the global batch, also when a last batch or a dataset that
skips unreadable images splits unevenly.

The core never asks which rank it is; it calls a strategy::

    strategy.check_batch_size(b)          the global batch must divide by the ranks (the error says so)
    strategy.shard(indices)               this rank's part of a global batch's indices
    strategy.augment_seed(seed)           the augmentation seed of this rank's part of a batch
    strategy.broadcast_initial_state(m)   rank 0's parameters and buffers everywhere
    strategy.attach(m)                    batch norms synchronised (``sync_bn``) or not
    hook = strategy.begin_step(m, n)      model.backward(..., hook=hook): buckets start during backward
    strategy.end_step(m)                  wait for the buckets; gradients = the global batch's mean
    strategy.reduce_batch(loss, k, n)     the global batch's loss, correct count and size
    strategy.shard_range(n), reduce_sums(v), gather(obj)      sharded evaluation
    strategy.sync_buffers(m)              rank 0's running statistics everywhere (before validation)
    strategy.is_writer                    the one process that prints and writes files
    with strategy.agreement(): ...        a block (without collectives) after which every rank knows
                                          whether one failed, and raises the failing rank's message
    with strategy.guard(): ...            around a whole command: any other failure on a rank prints
                                          its message and stops every rank (MPI_Abort), never a hang
    strategy.assign(trials), collect(r)   independent jobs (search trials) spread over the ranks

``LocalStrategy`` (one process) does nothing; ``MPIStrategy`` does it over mpi4py;
``from_environment()`` picks one.  Batch norm: per-rank statistics by default (as PyTorch's DDP);
``sync_bn`` sums the statistics of the global batch over the ranks (``layers.norm.BatchNorm.stats_sync``),
so K ranks compute what one process computes on the whole batch.
"""
from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback
import zlib

import numpy as np

from . import config
from .layers.base import assign as copy_into

#: bytes of the first bucket relative to the others: the last layers' gradients start travelling early
FIRST_BUCKET = 0.25
#: bytes of a failure message sent from the failing rank to the others
MESSAGE_BYTES = 2048


class RankFailure(ValueError):
    """The error every rank raises when one rank failed inside ``agreement()``: that rank's message."""


def _one_line(error) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    if isinstance(error, KeyboardInterrupt):
        return "interrupted"
    if not isinstance(error, (ValueError, OSError, ArithmeticError)):
        return f"unexpected {type(error).__name__}: {text}"
    return text


def set_threads(n: int, what="--threads"):
    """Kernels of this process use ``n`` threads (at most Numba's pool, NUMBA_NUM_THREADS), and numpy's BLAS
    (dense layers only) one, as ``config`` arranges at import: where numpy was imported before numbacnn (the
    Python API, a benchmark) OpenBLAS had already started a thread per core, and ranks sharing a machine fought
    over its cores (LeNet-5 on 2 ranks of 2 cores: 8x slower a step)."""
    import numba
    from threadpoolctl import threadpool_limits
    most = numba.config.NUMBA_NUM_THREADS
    if not 1 <= int(n) <= most:
        raise ValueError(f"{what} {n}: this process has 1 to {most} threads (NUMBA_NUM_THREADS={most})")
    numba.set_num_threads(int(n))
    threadpool_limits(1, user_api="blas")


def _stats_layers(model):
    """The layers whose batch statistics a strategy can synchronise (they have a public ``stats_sync``)."""
    return [layer for layer in model.layers.values() if hasattr(layer, "stats_sync")]


def _set_random_streams(model, rank: int):
    """Layers drawing random numbers per sample (dropout, ``random_stream``) draw rank ``rank``'s."""
    for layer in model.layers.values():
        if hasattr(layer, "random_stream"):
            layer.random_stream = rank


class LocalStrategy:
    """One process: every hook passes its values through (``Trainer``'s and ``TrainingRun``'s default)."""

    rank, size, is_writer, sync_bn = 0, 1, True, False

    def describe(self) -> str:
        return "1 process"

    def check_batch_size(self, batch_size: int):
        pass

    @property
    def min_batch(self) -> int:
        """The smallest batch trained: a smaller last batch is folded into the one before it (batch norm needs
        two images on every rank)."""
        return 2 * self.size

    def shard(self, indices):
        return indices

    def shard_range(self, n: int) -> tuple:
        return 0, n

    def augment_seed(self, seed):
        return seed

    def empty_part(self, batch: int):
        """No image of this rank's part of ``batch`` could be read (one process skips the batch)."""

    def attach(self, model):
        """Batch norms synchronised over the ranks (``sync_bn``) or not; dropout masks drawn per rank."""
        for layer in _stats_layers(model):
            layer.stats_sync = None
        _set_random_streams(model, 0)

    def broadcast_initial_state(self, model):
        pass

    def sync_buffers(self, model):
        pass

    def begin_step(self, model, n: int):
        return None

    def end_step(self, model):
        pass

    def reduce_batch(self, loss: float, correct: int, n: int) -> tuple:
        return loss, correct, n

    def reduce_sums(self, values) -> np.ndarray:
        return np.asarray(values, dtype=np.float64)

    def gather(self, obj) -> list:
        """[every rank's ``obj``] in rank order, on every rank."""
        return [obj]

    def assign(self, items) -> list:
        """[(index, item)] of the items this rank runs: item i goes to rank i mod K (one at a time each)."""
        return [(i, item) for i, item in enumerate(items) if i % self.size == self.rank]

    def collect(self, results) -> list:
        """Every rank's [(index, result)] of ``assign``'s items, gathered: [result] in item order, on every rank."""
        pairs = [p for part in self.gather(list(results)) for p in part]
        return [r for _, r in sorted(pairs, key=lambda p: p[0])]

    def fail_together(self, error):
        """``error``, known to every rank at once (computed from reduced values): raise it everywhere."""
        return error

    def writer_log(self, log):
        """``log``, in the writer (in the other ranks: a function that prints nothing)."""
        return log

    def write(self, fn):
        """Run ``fn`` (which writes files) in the writer; every rank raises if it fails."""
        fn()

    @contextlib.contextmanager
    def agreement(self):
        yield

    @contextlib.contextmanager
    def guard(self):
        yield


class MPIStrategy(LocalStrategy):
    """Data-parallel training over an MPI communicator (default: every rank of the job).

    sync_bn     : batch norms normalise with the global batch's statistics
    bucket_mib  : gradient bucket size (default NUMBACNN_BUCKET_MIB, 4)
    timeout     : seconds one collective may wait before this rank stops the job (NUMBACNN_MPI_TIMEOUT)
    check_every : compare a checksum of the parameters every N steps (NUMBACNN_CHECK_SYNC; 0: never)
    threads     : kernel threads of this rank; default: NUMBA_NUM_THREADS when set, else the cores this
                  rank may use / the ranks sharing them on its machine
    """

    def __init__(self, comm=None, sync_bn=False, bucket_mib=None, timeout=None, check_every=None, threads=None):
        from mpi4py import MPI
        self.MPI = MPI
        self.comm = (MPI.COMM_WORLD if comm is None else comm).Dup()
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.is_writer, self.sync_bn = self.rank == 0, bool(sync_bn)
        self.bucket_bytes = max(4, int((bucket_mib if bucket_mib is not None else config.BUCKET_MIB) * 2 ** 20))
        self.timeout = float(timeout if timeout is not None else config.MPI_TIMEOUT)
        self.check_every = int(check_every if check_every is not None else config.CHECK_SYNC)
        self.failed_together = False
        self.steps = 0
        self.timing = {"pack_s": 0.0, "wait_s": 0.0, "steps": 0, "buckets": 0, "bytes": 0}
        self.trace = None      # a list: end_step appends (backward done, gradients summed) perf_counter times
        self._plans, self._step = {}, None
        local = self.comm.Split_type(MPI.COMM_TYPE_SHARED)
        self.local_size = local.Get_size()
        cores = sorted(os.sched_getaffinity(0))
        shared = all(c == cores for c in local.allgather(cores))   # unbound ranks share the machine's cores
        local.Free()
        if threads:
            set_threads(threads)
        elif config.THREADS_GIVEN:         # the user's NUMBA_NUM_THREADS (and BLAS on one thread)
            set_threads(_pool_threads())
        else:                              # the cores this rank may use, shared with the ranks beside it
            set_threads(min(_pool_threads(), max(1, len(cores) // self.local_size) if shared else len(cores)))

    def describe(self) -> str:
        import numba
        return (f"{self.size} ranks ({self.local_size} on this machine), {numba.get_num_threads()} thread(s) "
                f"each, batch norm {'synchronised' if self.sync_bn else 'per rank'}")

    # ------------------------------------------------------------ batches
    def check_batch_size(self, batch_size: int):
        if int(batch_size) % self.size:
            lo = max(self.size, int(batch_size) // self.size * self.size)
            raise ValueError(f"--batch-size {batch_size} is the global batch: it must divide by the {self.size} "
                             f"ranks (e.g. {lo} or {lo + self.size})")

    def shard(self, indices):
        return np.array_split(np.asarray(indices), self.size)[self.rank]

    def shard_range(self, n: int) -> tuple:
        bounds = np.linspace(0, n, self.size + 1).astype(np.int64)
        return int(bounds[self.rank]), int(bounds[self.rank + 1])

    def augment_seed(self, seed):
        """The batch's seed mixed with the rank: each part of a batch draws its own augmentation."""
        return int(np.random.SeedSequence([int(seed), self.rank]).generate_state(1, np.uint64)[0] >> np.uint64(1))

    def empty_part(self, batch: int):
        raise ValueError(f"no image of rank {self.rank}'s part of batch {batch + 1} could be read: every rank of a "
                         f"data-parallel step needs images (the others wait for its gradients)")

    def attach(self, model):
        for layer in _stats_layers(model):
            layer.stats_sync = self if self.sync_bn else None
        _set_random_streams(model, self.rank)

    # ------------------------------------------------------------ waiting, with a watchdog
    def _wait(self, requests, what: str):
        """Wait for ``requests``; past ``timeout`` seconds raise (the guard then stops the job)."""
        test = self.MPI.Request.Testall
        if test(requests):
            return
        t0 = time.perf_counter()
        while not test(requests):
            waited = time.perf_counter() - t0
            if waited > self.timeout:
                raise TimeoutError(f"rank {self.rank} of {self.size} waited {self.timeout:g} s for the other ranks "
                                   f"while {what}: a rank stopped or hangs (NUMBACNN_MPI_TIMEOUT sets the limit)")
            # spin (as MPI's own wait does), yielding the core to a runnable process after 2 ms; after 1 s (a
            # checkpoint being written) test every millisecond: a sleeping rank would delay each round of the sum
            if waited > 1.0:
                time.sleep(1e-3)
            elif waited > 2e-3:
                os.sched_yield()

    def _allreduce(self, a, what: str, op=None):
        self._wait([self.comm.Iallreduce(self.MPI.IN_PLACE, a, op or self.MPI.SUM)], what)
        return a

    def _broadcast_arrays(self, arrays, what: str):
        """Rank 0's values of backend ``arrays`` (float32) copied into every rank's, in one message."""
        if not arrays:
            return
        host = [np.asarray(a.copy_to_host() if hasattr(a, "copy_to_host") else a, np.float32) for a in arrays]
        flat = np.concatenate([h.reshape(-1) for h in host])
        self._wait([self.comm.Ibcast(flat, 0)], what)
        offset = 0
        for a, h in zip(arrays, host):
            copy_into(a, flat[offset:offset + h.size].reshape(h.shape))
            offset += h.size

    def broadcast_initial_state(self, model):
        self._broadcast_arrays([a for layer in model.layers.values() for a in (*layer.params.values(),
                                                                                *layer.buffers.values())],
                               "broadcasting rank 0's parameters")

    def sync_buffers(self, model):
        """Rank 0's buffers (running statistics) everywhere: without ``sync_bn`` each rank gathered its own."""
        if not self.sync_bn:
            self._broadcast_arrays([a for layer in model.layers.values() for a in layer.buffers.values()],
                                   "broadcasting rank 0's running statistics")

    # ------------------------------------------------------------ a training step
    def _plan_for(self, model):
        nodes = model.plan([n for n, _ in model.training_outputs()])
        key = (id(model), tuple((n, model.layers[n].trainable) for n in nodes))
        if key not in self._plans:
            self._plans = {key: BucketPlan(model, nodes, self.bucket_bytes)}
        return self._plans[key]

    def begin_step(self, model, n: int):
        """The hook for ``model.backward``: packs each layer's gradients as its backward ends, and starts a
        bucket's allreduce when the bucket is full."""
        plan = self._plan_for(model)
        self._step = step = {"plan": plan, "scale": float(n), "left": list(plan.members), "requests": [],
                             "started": [False] * len(plan.buffers), "model": model}
        plan.buffers[0][-1] = n

        def hook(name, dxs):
            t0 = time.perf_counter()
            for b in plan.pack(model, name, step["scale"]):
                step["left"][b] -= 1
                if step["left"][b] == 0:
                    self._start(step, b)
            if step["requests"]:
                self.MPI.Request.Testall(step["requests"])     # drives the transfers under way
            self.timing["pack_s"] += time.perf_counter() - t0

        return hook

    def _start(self, step, b):
        step["started"][b] = True
        step["requests"].append(self.comm.Iallreduce(self.MPI.IN_PLACE, step["plan"].buffers[b], self.MPI.SUM))
        self.timing["buckets"] += 1
        self.timing["bytes"] += step["plan"].buffers[b].nbytes

    def end_step(self, model):
        """Wait for every bucket (a layer not reached contributes zeros) and put the global batch's mean
        gradient into every layer's ``grads``."""
        step, self._step = self._step, None
        plan = step["plan"]
        t0 = time.perf_counter()
        for b, started in enumerate(step["started"]):
            if not started:
                plan.zero_unpacked(b)
                self._start(step, b)
        self._wait(step["requests"], "summing gradients")
        t1 = time.perf_counter()
        self.timing["wait_s"] += t1 - t0
        if self.trace is not None:
            self.trace.append((t0, t1))
        self.timing["steps"] += 1
        plan.unpack(model, 1.0 / float(plan.buffers[0][-1]))
        self.steps += 1
        if self.check_every and self.steps % self.check_every == 0:
            self.check_parameters(model)

    def check_parameters(self, model):
        """Raise on every rank when the ranks' parameters differ (a crc32 of them, compared by allreduce)."""
        crc = 0
        for layer in model.layers.values():
            for p in layer.params.values():
                crc = zlib.crc32(np.ascontiguousarray(model.backend.to_host(p)).tobytes(), crc)
        both = self._allreduce(np.array([crc, -crc], np.int64), "comparing parameters", self.MPI.MAX)
        if both[0] != -both[1]:
            raise self.fail_together(ValueError(f"the ranks' parameters differ after step {self.steps} (checksums "
                                                f"{-both[1]:08x} to {both[0]:08x}): the ranks went out of step"))

    def reduce_batch(self, loss: float, correct: int, n: int) -> tuple:
        total, correct, n = self.reduce_sums([loss * n, correct, n]).tolist()
        return total / n, int(correct), int(n)

    def reduce_sums(self, values) -> np.ndarray:
        return self._allreduce(np.array(values, dtype=np.float64), "summing metrics")

    def gather(self, obj) -> list:
        return self.comm.allgather(obj)

    # ------------------------------------------------------------ synchronised batch norm (layers/norm.py)
    def sum(self, a) -> np.ndarray:
        """Σ over the ranks of host array ``a`` (float64): the global batch's statistics."""
        return self._allreduce(np.array(a, dtype=np.float64), "summing batch statistics")

    def sum_gradients(self, a) -> np.ndarray:
        """Σ over the ranks of a gradient statistic ``a``, in this rank's gradient units: this rank's gradients
        are means over its n_k images, so ``Σ_j n_j a_j / n_k``."""
        scale = self._step["scale"] if self._step else 1.0
        return self._allreduce(np.array(a, dtype=np.float64) * scale, "summing batch-norm gradients") / scale

    # ------------------------------------------------------------ failures
    def fail_together(self, error):
        self.failed_together = True
        return error

    def writer_log(self, log):
        return log if self.is_writer else (lambda *a, **k: None)

    def write(self, fn):
        with self.agreement():
            if self.is_writer:
                fn()

    @contextlib.contextmanager
    def agreement(self):
        """Every rank runs the block (which must start no collective); then they compare: when one failed, all
        raise its message (``RankFailure`` where it did not fail)."""
        try:
            yield
        except Exception as e:    # noqa: BLE001 - any failure is told to the others
            self._agree(e)
            raise
        self._agree(None)

    def _agree(self, error):
        flags = np.zeros(self.size, np.int64)
        flags[self.rank] = error is not None
        if not self._allreduce(flags, "comparing errors").any():
            return
        root = int(np.flatnonzero(flags)[0])
        msg = np.zeros(MESSAGE_BYTES, np.uint8)
        if self.rank == root:
            text = _one_line(error).encode("utf-8")[:MESSAGE_BYTES]
            msg[:len(text)] = np.frombuffer(text, np.uint8)
        self._wait([self.comm.Ibcast(msg, root)], "sharing an error")
        self.failed_together = True
        if self.rank != root:
            text = bytes(msg).rstrip(b"\0").decode("utf-8", "replace")
            raise RankFailure(f"{text} (rank {root} of {self.size})")

    @contextlib.contextmanager
    def guard(self):
        """Around a whole command: an error every rank raised together (``agreement``, ``fail_together``) is
        raised by the writer alone (the others exit quietly, with status 0, so that the launcher reports the
        writer's); any other is printed by its rank, which then ends every rank (``MPI_Abort``) so that none
        waits forever for it."""
        try:
            yield
        except SystemExit:
            raise
        except BaseException as e:  # noqa: BLE001 - a rank must never leave the others waiting
            if self.failed_together:        # the writer reports it, and its exit status is the job's
                if self.is_writer:
                    raise
                raise SystemExit(0) from None
            if config.DEBUG:
                traceback.print_exc()
            print(f"Error: {_one_line(e)} (rank {self.rank} of {self.size}; stopping every rank)", file=sys.stderr,
                  flush=True)
            self.comm.Abort(130 if isinstance(e, KeyboardInterrupt) else 1)


def _pool_threads() -> int:
    import numba
    return numba.config.NUMBA_NUM_THREADS


class BucketPlan:
    """The trainable parameters of a training graph in reverse layer order (the order backward finishes them),
    packed into float32 buffers of about ``bucket_bytes`` (the first a quarter of that); a layer's parameters
    stay in one bucket.  Bucket 0 has one more slot: the number of images of the step."""

    def __init__(self, model, nodes, bucket_bytes: int):
        self.layout = {}                 # node -> [(param name, bucket, offset, size, shape)]
        sizes, members = [0], [0]
        for node in reversed(nodes):
            layer = model.layers[node]
            if not layer.trainable or not layer.params:
                continue
            nbytes = 4 * sum(int(np.prod(p.shape)) for p in layer.params.values())
            limit = bucket_bytes * (FIRST_BUCKET if len(sizes) == 1 else 1.0)
            if members[-1] and sizes[-1] * 4 + nbytes > limit:
                sizes.append(0)
                members.append(0)
            entries = []
            for pname, p in layer.params.items():
                shape = tuple(int(d) for d in p.shape)
                entries.append((pname, len(sizes) - 1, sizes[-1], int(np.prod(shape)), shape))
                sizes[-1] += int(np.prod(shape))
            self.layout[node] = entries
            members[-1] += 1
        self.members = members
        self.buffers = [np.zeros(s + (1 if b == 0 else 0), np.float32) for b, s in enumerate(sizes)]
        self.packed = set()

    def pack(self, model, node, scale: float) -> list:
        """Copy ``node``'s gradients times ``scale`` into their bucket; returns the buckets that gained a layer."""
        entries = self.layout.get(node)
        if entries is None:
            return []
        layer, be = model.layers[node], model.backend
        for pname, b, off, size, _ in entries:
            g = be.to_host(layer.grads[pname])
            np.multiply(np.asarray(g, np.float32).reshape(-1), scale, out=self.buffers[b][off:off + size])
        self.packed.add(node)
        return [entries[0][1]]

    def zero_unpacked(self, b: int):
        """Zeros for the layers of bucket ``b`` whose backward did not run this step."""
        for node, entries in self.layout.items():
            if node not in self.packed and entries[0][1] == b:
                for _, _, off, size, _ in entries:
                    self.buffers[b][off:off + size] = 0.0

    def unpack(self, model, scale: float):
        """Every layer's ``grads`` = its bucket's sums times ``scale``."""
        for node, entries in self.layout.items():
            layer = model.layers[node]
            for pname, b, off, size, shape in entries:
                value = self.buffers[b][off:off + size].reshape(shape)
                g = layer.grads.get(pname)
                if isinstance(g, np.ndarray) and g.flags.writeable and g.shape == shape and g.dtype == np.float32:
                    np.multiply(value, scale, out=g)
                elif g is not None and hasattr(g, "copy_to_device"):
                    copy_into(g, value * np.float32(scale))
                else:
                    layer.grads[pname] = model.backend.asarray(value * np.float32(scale))
        self.packed = set()


def from_environment(sync_bn=False, threads=None) -> LocalStrategy:
    """``MPIStrategy`` when an MPI launcher (mpiexec, srun) started this process with more than one rank, else
    ``LocalStrategy``; NUMBACNN_MPI=0 never uses MPI, =1 always does."""
    launched, forced = config.mpi_launcher(), config.MPI in ("1", "yes", "true")
    var, size = launched or ("NUMBACNN_MPI", None)
    if config.MPI in ("0", "no", "false") or (not forced and (launched is None or size == 1)):
        if threads:
            set_threads(threads)
        return LocalStrategy()
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        raise ValueError(f"an MPI launcher started this process ({var} is set) but mpi4py is not installed: pip "
                         f"install 'numbacnn[mpi]' (or set NUMBACNN_MPI=0 to train in each process alone)") from None
    strategy = MPIStrategy(sync_bn=sync_bn, threads=threads)
    return strategy if strategy.size > 1 or forced else LocalStrategy()


__all__ = ["LocalStrategy", "MPIStrategy", "BucketPlan", "RankFailure", "from_environment", "set_threads"]
