"""Every environment flag numbacnn reads, in one place (tinygrad's ``getenv``).

Nothing else in the package reads ``os.environ``.  Flags that Numba itself
reads at import time (its threading layer) get their defaults here, and
``numbacnn/__init__.py`` imports this module before anything imports numba.

Flags
-----
NUMBACNN_DEVICE            default device for the CLI's ``--device auto`` (cpu|cuda|auto)
NUMBACNN_DEBUG             1: the CLI shows the Python traceback of an unexpected error
NUMBACNN_CACHE_DIR         where the built-in dataset's drawn images are kept (data/builtin.py; default
                           $XDG_CACHE_HOME/numbacnn, else ~/.cache/numbacnn)
NUMBACNN_MAX_GIB           the most memory (GiB) a model file or dataset may declare before anything is
                           read: a model's parameters, or its activations for one image, and a dataset's
                           images as float32.  Default: 16 or the machine's memory, whichever is smaller;
                           larger declarations are refused naming this flag (``numbacnn.io.limits``)
NUMBA_THREADING_LAYER_PRIORITY  defaulted to ``omp workqueue tbb`` (Numba's own default order
                           is tbb first): starting a parallel kernel costs ~2 us
                           there against ~100 us with ``workqueue``, and a training
                           step calls dozens of small kernels (LeNet-5 batch 32: 5.4 ms
                           a step with workqueue, 2.0 ms with omp).  A priority list, not a
                           fixed layer, so a machine without GNU OpenMP (libgomp) falls back
                           to workqueue instead of failing; NUMBA_THREADING_LAYER still wins
                           when the user sets it
OPENBLAS_NUM_THREADS       defaulted to 1 with it: OpenBLAS's threads and the spinning
                           OpenMP workers fight for the 2 cores (28 ms a LeNet-5 step);
                           BLAS only serves Dense layers.  Where numpy (so OpenBLAS) was
                           imported before numbacnn this comes too late, so that process
                           alone (not its child processes) keeps ``workqueue``, whose
                           workers do not spin
GOMP_SPINCOUNT             defaulted to 1000: GNU OpenMP workers spin only briefly before
                           sleeping.  With libgomp's default (long spinning) two numbacnn
                           processes on 2 cores collapse (LeNet-5 batch 32: 60 ms a step
                           each, against 2.1 ms alone); with 1000: 2.3-2.5 ms alone, 5.4-6.2
                           ms each for two processes, 5.1-5.4 ms beside a busy core
                           (workqueue: 6.6, 5.6 and 5.0 ms)
OPENBLAS_THREAD_TIMEOUT    defaulted to 4 (short spinning where OpenBLAS is threaded)
NUMBA_ENABLE_CUDASIM       set by the CUDA-simulator test process; read here only
NUMBACNN_MPI               auto (default): train data-parallel over MPI when an MPI launcher (mpiexec,
                           srun) started this process with more than one rank (``mpi_launcher``);
                           0: never (each process trains alone); 1: always initialise MPI
NUMBACNN_MPI_TIMEOUT       seconds a rank waits for the others in one collective before it stops the
                           job with an error naming itself (default 300): a rank that hangs ends the job
NUMBACNN_BUCKET_MIB        size of the gradient buckets allreduced during the backward pass (default 4)
NUMBACNN_CHECK_SYNC        N > 0: every N steps the ranks compare a checksum of their parameters (default:
                           100 with NUMBACNN_DEBUG=1, else never)
NUMBA_NUM_THREADS          read here only to know whether the user chose it: without it a rank of a
                           data-parallel run uses the cores of its machine / the ranks on it
MALLOC_MMAP_THRESHOLD_     when unset, numbacnn has glibc serve allocations up to 64 MiB from its heap and keep
MALLOC_TRIM_THRESHOLD_     up to 256 MiB freed there (``mallopt``, Linux): a training step frees and allocates
                           the same activation arrays every step, and with glibc's defaults each one came as
                           fresh zeroed pages, a page fault every 4 KiB (LeNet-5, batch 256, a process's first
                           steps: 35 ms a step, against 15 ms with them kept); setting either keeps glibc's
                           own policy
NUMBACNN_IMAGE_CACHE_MIB   decoded images of a folder or list dataset kept in memory after their first decode,
                           when all of them fit in this many MiB (default 1024; 0: never): epochs after the
                           first read no file (``data.datasets.FileDataset``)
NUMBACNN_CPU_CONV          the CPU convolutions: auto (1x1 kernels on NCHW, kernels/cpu/conv1x1.py, and
                           channel-blocked where it pays, kernels/cpu/blocked.py), blocked (wherever it applies)
                           or planes (the phase-plane kernels only)
NUMBACNN_CPU_VECTOR        fp32 lanes of the CPU convolutions' vectors: 8 or 16 (default: 16 where the CPU has
                           AVX-512, else 8; 8 on an AVX-512 host runs the AVX2 kernels, as the tests do)
"""
from __future__ import annotations

import os
import sys


def getenv(name: str, default=None, cast=str):
    """Return environment flag ``name`` converted by ``cast``, or ``default``."""
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return cast(value)
    except ValueError as exc:  # pragma: no cover - message only
        raise ValueError(f"environment variable {name}={value!r} is not a valid {cast.__name__}") from exc


def _setdefault(name: str, value: str) -> None:
    if name not in os.environ:
        os.environ[name] = value


def _keep_freed_memory() -> bool:
    """Have glibc keep the arrays a training step frees for the next step (MALLOC_*_THRESHOLD_ above); False
    where that is not glibc on Linux or the user set either threshold."""
    if not sys.platform.startswith("linux") or any(os.environ.get(v) for v in ("MALLOC_MMAP_THRESHOLD_",
                                                                              "MALLOC_TRIM_THRESHOLD_")):
        return False
    import ctypes
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    return bool(mallopt(M_MMAP_THRESHOLD, 64 << 20)) and bool(mallopt(M_TRIM_THRESHOLD, 256 << 20))


MEMORY_KEPT = _keep_freed_memory()

# Numba reads these when it starts its thread pool / OpenBLAS when it loads.
_blas_threads_fixed = "numpy" in sys.modules and "OPENBLAS_NUM_THREADS" not in os.environ
_layer_chosen_here = "NUMBA_THREADING_LAYER" not in os.environ
_setdefault("NUMBA_THREADING_LAYER_PRIORITY", "omp workqueue tbb")
_setdefault("OPENBLAS_NUM_THREADS", "1")
_setdefault("GOMP_SPINCOUNT", "1000")
_setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
if _blas_threads_fixed and _layer_chosen_here:
    import numba  # numpy came first: OpenBLAS keeps its threads, so this process avoids spinning OpenMP
    numba.config.THREADING_LAYER = "workqueue"

DEVICE = getenv("NUMBACNN_DEVICE", "auto")
DEBUG = getenv("NUMBACNN_DEBUG", "0") not in ("0", "false", "False", "no")
CACHE_DIR = getenv("NUMBACNN_CACHE_DIR", None)         # None: $XDG_CACHE_HOME/numbacnn or ~/.cache/numbacnn
MAX_GIB = getenv("NUMBACNN_MAX_GIB", None, float)     # None: the default of io.limits.max_bytes()
CUDASIM = getenv("NUMBA_ENABLE_CUDASIM", 0, int) == 1
MPI = getenv("NUMBACNN_MPI", "auto")
MPI_TIMEOUT = getenv("NUMBACNN_MPI_TIMEOUT", 300.0, float)
BUCKET_MIB = getenv("NUMBACNN_BUCKET_MIB", 4.0, float)
CHECK_SYNC = getenv("NUMBACNN_CHECK_SYNC", 100 if DEBUG else 0, int)
THREADS_GIVEN = getenv("NUMBA_NUM_THREADS") is not None
CPU_VECTOR = getenv("NUMBACNN_CPU_VECTOR", None, int)     # None: the host's (kernels/cpu/blocked.py)
CPU_CONV = getenv("NUMBACNN_CPU_CONV", "auto", str)
IMAGE_CACHE_MIB = getenv("NUMBACNN_IMAGE_CACHE_MIB", 1024.0, float)

#: (rank variable, size variable) of the MPI launchers: MPICH/Intel MPI (hydra) and Slurm's PMI, Open MPI,
#: MVAPICH, Cray PALS; PMIx (Open MPI 5, srun --mpi=pmix) gives a rank only
MPI_LAUNCHER_VARS = (("PMI_RANK", "PMI_SIZE"), ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
                     ("MV2_COMM_WORLD_RANK", "MV2_COMM_WORLD_SIZE"), ("PALS_RANKID", "PALS_SIZE"),
                     ("PMIX_RANK", None))


def mpi_launcher():
    """(the variable showing that an MPI launcher started this process, the number of ranks or None when the
    launcher does not say), or None for a process started otherwise."""
    for rank_var, size_var in MPI_LAUNCHER_VARS:
        if getenv(rank_var) is not None:
            return rank_var, getenv(size_var, None, int) if size_var else None
    return None
