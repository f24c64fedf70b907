"""Timing helpers shared by the benchmark scripts (docs/ARCHITECTURE.md, "Benchmarks").

A benchmark warms up (so JIT compilation stays out of the timing), calls a
synchronisation hook before stopping the clock (``backend.synchronize`` on a
GPU), reports the median of several runs and prints a table with PyTorch's
figure and the ratio beside ours when PyTorch is installed.
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time


def median_time(fn, repeats: int = 10, warmup: int = 2, sync=None) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeats`` runs after ``warmup`` untimed runs.

    ``sync`` (optional) is called after every run, inside the timed region, so
    queued GPU work is counted.
    """
    for _ in range(warmup):
        fn()
        if sync is not None:
            sync()
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        if sync is not None:
            sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def median_times(fns, repeats: int = 10, warmup: int = 2, sync=None, rounds: int = 3,
                 clock=time.perf_counter, settle: float = 0.0) -> list:
    """Median wall times (seconds) of several functions, measured in alternating rounds.

    Each round runs every function in turn: one untimed call (so a thread
    pool left spinning by the previous function settles), then its share of
    the ``repeats`` timed calls.  Alternating exposes every function to the
    same background load, so the ratios stay fair on a shared machine.
    ``None`` entries give None.  ``clock=time.process_time`` measures CPU
    time instead of wall time (meaningful single-threaded on a busy machine).
    ``settle`` seconds of sleep precede each function's turn, so that worker
    threads left spinning by the previous function park first (PyTorch's
    OpenMP workers spin about 10 ms after each call, taking a core from
    whatever runs next on a 2-core machine).
    """
    live = [f for f in fns if f is not None]
    for f in live:
        for _ in range(warmup):
            f()
            if sync is not None:
                sync()
    times = {id(f): [] for f in live}
    per_round = max(1, -(-repeats // rounds))
    for _ in range(rounds):
        for f in live:
            time.sleep(settle)
            f()
            if sync is not None:
                sync()
            for _ in range(per_round):
                t0 = clock()
                f()
                if sync is not None:
                    sync()
                times[id(f)].append(clock() - t0)
    return [None if f is None else statistics.median(times[id(f)]) for f in fns]


def load_torch(threads: int | None = None):
    """Return the ``torch`` module set to ``threads`` threads, or None when it is not installed."""
    try:
        import torch
    except ImportError:
        return None
    if threads is not None:
        torch.set_num_threads(int(threads))
    return torch


def torch_label(torch) -> str:
    """'torch VERSION (threads=N, ATen parallel backend: OpenMP)': what PyTorch's CPU side ran on."""
    info = torch.__config__.parallel_info().strip().splitlines()
    backend = next((ln.split(":", 1)[1].strip() for ln in info if "parallel backend" in ln), "?")
    return f"torch {torch.__version__} (threads={torch.get_num_threads()}, ATen parallel backend {backend})"


def numba_layer() -> str:
    """Numba's threading layer in this process, or 'not started' before its first parallel call."""
    import numba
    try:
        return numba.threading_layer()
    except ValueError:
        return "not started"


def run_json_child(script, argv) -> dict:
    """Run ``python script *argv`` in a fresh process and return the JSON object on its last stdout line.

    The benchmarks time the other engine (PyTorch, ONNX Runtime) this way, so
    neither process holds the other's thread pool: an OpenMP pool left
    spinning in the same process slows whatever runs beside it (PyTorch's
    LeNet-5 step: 22-26 ms beside ours, 13.8 ms alone), and numbacnn picks
    its threading layer from what was imported before it (numbacnn/config.py).
    The child's stderr (progress lines) goes straight to ours.
    """
    r = subprocess.run([sys.executable, str(script), *argv], stdout=subprocess.PIPE, text=True)
    lines = r.stdout.strip().splitlines()
    if r.returncode != 0 or not lines:
        raise RuntimeError(f"{script} {' '.join(argv)}: child process failed (exit {r.returncode})")
    return json.loads(lines[-1])


def ratio(torch_s, ours_s) -> str:
    """PyTorch time / our time as text ('n/a' when either is missing); > 1 means we are faster."""
    if torch_s is None or ours_s is None or ours_s <= 0:
        return "n/a"
    return f"{torch_s / ours_s:.2f}"


def ms(seconds) -> str:
    """Seconds as milliseconds text, 'n/a' for None."""
    return "n/a" if seconds is None else f"{seconds * 1e3:.2f}"


def gflops(flops, seconds) -> str:
    """GFLOP/s as text, 'n/a' when either is missing."""
    if flops is None or seconds is None or seconds <= 0:
        return "n/a"
    return f"{flops / seconds / 1e9:.1f}"


def format_table(headers, rows) -> str:
    """A plain-text table: columns right-aligned, except the first, left-aligned."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r):
        return "  ".join(c.ljust(wd) if i == 0 else c.rjust(wd) for i, (c, wd) in enumerate(zip(r, widths)))

    rule = "  ".join("-" * wd for wd in widths)
    return "\n".join([line(cells[0]), rule] + [line(r) for r in cells[1:]])
