"""Layer benchmark: every benchmark case of the op table (``numbacnn/ops.py``), forward and
forward+backward on the CPU backend.

It first prints the machine: CPU model, the vector width the blocked convolutions use, threads, and the
measured peak (a large numpy sgemm in a subprocess; its OpenBLAS kernel named through threadpoolctl).
For every shape it prints our median time (compile excluded), GFLOP/s, the share of that peak,
PyTorch's time measured in the same run with the same thread count, and the
ratio PyTorch time / ours (> 1: we are faster).  Backward means the input,
weight and bias gradients.  It then prints the first-call compile time (a
fresh Numba cache in a subprocess) and the cached start-up time (the same
cache, a second subprocess).

    python benchmarks/bench_layers.py [--quick] [--shapes lenet,alexnet] [--no-startup]
    python benchmarks/bench_layers.py --threads 1 --cpu-time     # steadier on a shared machine

PyTorch runs in its own process (this script again, with ``--torch-only``:
the same shapes, seeds, thread count and repeats; it prints its medians as
JSON), started before our side: two OpenMP pools in one process slow each
other (each one's workers spin after a call), and numbacnn must be imported
before numpy or torch to get its default threading layer
(numbacnn/config.py).  On a shared 2-core VM the second core comes and goes,
so compare 2-thread figures from a quiet moment only.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's numbacnn, whatever is installed

if __name__ == "__main__" and "--torch-only" in sys.argv:   # PyTorch's process: torch first, no Numba pool
    import torch  # noqa: F401
import numbacnn  # noqa: E402,F401  (our process: before numpy, so Numba gets numbacnn's threading defaults)
import numba  # noqa: E402
import numpy as np  # noqa: E402

from common import (format_table, gflops, load_torch, median_times, ms, numba_layer, op_cases,  # noqa: E402
                    our_op_fns, ratio, run_json_child, torch_label, torch_op_fns)
from numbacnn.backends import get_backend  # noqa: E402

_STARTUP_SCRIPT = """
import time
t0 = time.perf_counter()
import numpy as np
from numbacnn.kernels.cpu import conv2d as be
rng = np.random.default_rng(0)
x = rng.standard_normal((2, 3, 9, 9)).astype(np.float32)
w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
b = np.zeros(4, np.float32)
geo = ((1, 1), (1, 1), (1, 1), 1)
y = be.conv2d_forward(x, w, b, *geo)
be.conv2d_backward_input(y, w, x.shape, *geo)
be.conv2d_backward_weight(y, x, w.shape, *geo)
be.conv2d_backward_bias(y)
print(time.perf_counter() - t0)
"""


_PEAK_SCRIPT = """
import json, sys, time
import numpy as np
from threadpoolctl import threadpool_info
n = int(sys.argv[1])
a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
a @ b
best = float("inf")
for _ in range(3):
    t0 = time.perf_counter()
    a @ b
    best = min(best, time.perf_counter() - t0)
blas = [p for p in threadpool_info() if p["user_api"] == "blas"] or [{}]
print(json.dumps({"gflops": 2.0 * n ** 3 / best / 1e9, "library": blas[0].get("internal_api", "?"),
                  "kernel": blas[0].get("architecture", "?"), "threads": blas[0].get("num_threads", "?")}))
"""


def machine(threads, quick):
    """One line on the machine: CPU model, the blocked convolutions' vector width, threads, and the measured peak:
    a large sgemm in numpy (its BLAS kernel named by threadpoolctl) in a subprocess with ``threads`` BLAS threads
    and the BLAS core-type overrides unset.  Returns (text, peak GFLOP/s or None)."""
    from numbacnn.kernels.cpu import blocked
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "unknown CPU") if Path("/proc/cpuinfo").exists() else "unknown CPU"
    isa = "AVX-512" if blocked.host_vector_width() == 16 else "AVX2"
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    env.update(OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    n = 2048 if quick else 4096
    r = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, str(n)], env=env, capture_output=True, text=True)
    peak, what = None, f"peak not measured ({(r.stderr.strip().splitlines() or ['?'])[-1]})"
    if r.returncode == 0:
        p = json.loads(r.stdout.strip().splitlines()[-1])
        peak = p["gflops"]
        what = (f"peak {peak:.0f} GFLOP/s (numpy sgemm {n}x{n}, {p['library']} {p['kernel']} kernel, "
                f"{p['threads']} threads)")
    return (f"CPU: {model} ({isa}); blocked convolutions on {blocked.vector_width()} fp32 lanes; {threads} threads; "
            f"{what}"), peak


def cases(wanted):
    """[(key, description, FLOPs of a forward or None, fns(be, torch))]: every benchmark case of the op table."""
    def fns(op, bench):
        def make(be, torch):
            f, _, fb = our_op_fns(be, op, bench) if torch is None else torch_op_fns(torch, op, bench)
            return f, fb
        return make
    return [(key, bench.label, bench.flops, fns(op, bench)) for key, op, bench in op_cases(wanted)]


def measure(fns, repeats, warmup, clock):
    """[forward, forward+backward] median seconds."""
    return [median_times([f], repeats, warmup, clock=clock)[0] for f in fns]


def startup_times():
    """(first-call seconds with a fresh Numba cache, seconds with that cache warm), each in a new process."""
    out = []
    with tempfile.TemporaryDirectory(prefix="numbacnn-cache-") as cache:
        root = str(Path(__file__).resolve().parent.parent)
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, PYTHONPATH=path)  # the child's environment, not flags read here
        for _ in range(2):
            t0 = time.perf_counter()
            r = subprocess.run([sys.executable, "-c", _STARTUP_SCRIPT], env=env, capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError(f"start-up subprocess failed: {r.stderr.strip().splitlines()[-1]}")
            out.append((float(r.stdout.strip().splitlines()[-1]), time.perf_counter() - t0))
    return out


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats (3 instead of 15)")
    ap.add_argument("--repeats", type=int, default=None, help="timed runs per measurement")
    ap.add_argument("--shapes", default="", help="comma-separated substrings of case labels to run "
                    f"(names: {', '.join(key for key, _, _ in op_cases())})")
    ap.add_argument("--threads", type=int, default=None,
                    help="threads for Numba and PyTorch alike (default: Numba's default)")
    ap.add_argument("--cpu-time", action="store_true",
                    help="time CPU seconds instead of wall seconds (needs --threads 1): "
                         "steadier figures on a machine shared with other jobs")
    ap.add_argument("--no-startup", action="store_true", help="skip the compile/start-up subprocesses")
    ap.add_argument("--torch-only", action="store_true", help="internal: time PyTorch alone, print JSON medians")
    args = ap.parse_args(argv)
    if args.cpu_time and args.threads != 1:
        ap.error("--cpu-time needs --threads 1 (CPU time of several threads is not a duration)")
    clock = time.process_time if args.cpu_time else time.perf_counter
    repeats = args.repeats or (3 if args.quick else 15)
    warmup = 1 if args.quick else 3
    wanted = [s.strip() for s in args.shapes.split(",") if s.strip()]
    if args.torch_only:
        torch = load_torch(args.threads)
        times = {name: measure(fns(None, torch), repeats, warmup, clock) for name, _, _, fns in cases(wanted)}
        print(json.dumps({"label": torch_label(torch), "times": times, "numba_layer": numba_layer()}))
        return

    if args.threads:
        numba.set_num_threads(args.threads)
    threads = numba.get_num_threads()
    theirs = {"label": "n/a (not installed)", "times": {}}
    if importlib.util.find_spec("torch") is not None:   # PyTorch first, in its own process, before our pool starts
        theirs = run_json_child(__file__, argv + ["--torch-only", "--threads", str(threads)])
    be = get_backend("cpu")
    be.conv2d_forward(np.zeros((1, 1, 3, 3), np.float32), np.zeros((1, 1, 1, 1), np.float32))  # starts the pool
    header, peak = machine(threads, args.quick)
    print(header)
    print(f"numba {numba.__version__} (threads={threads}, layer {numba_layer()}), "
          f"{theirs['label']} in its own process, measured first, "
          f"repeats={repeats}, median {'CPU' if args.cpu_time else 'wall'} ms, "
          f"load average {os.getloadavg()[0]:.1f} (timings need an idle machine)")
    rows = []
    for name, desc, flops, fns in cases(wanted):
        t_f, t_fb = measure(fns(be, None), repeats, warmup, clock)
        tt_f, tt_fb = theirs["times"].get(name, (None, None))
        gf = (lambda n, t: "-") if flops is None else (lambda n, t: gflops(n * flops, t))
        share = "-" if flops is None or peak is None or not t_f else f"{100 * flops / t_f / 1e9 / peak:.0f}%"
        rows.append([desc, ms(t_f), gf(1, t_f), share, ms(tt_f), ratio(tt_f, t_f),
                     ms(t_fb), gf(3, t_fb), ms(tt_fb), ratio(tt_fb, t_fb)])
        print(desc, "done", file=sys.stderr, flush=True)
    headers = ["layer", "fwd ms", "GF/s", "% peak", "torch ms", "ratio", "fwd+bwd ms", "GF/s", "torch ms", "ratio"]
    print(format_table(headers, rows))
    print("ratio = PyTorch time / ours (> 1: we are faster); fwd+bwd = forward + input, weight, bias grads; "
          "% peak: forward GFLOP/s over the sgemm peak above")
    if not args.no_startup:
        (cold, cold_wall), (warm, warm_wall) = startup_times()
        print(f"start-up (import + first conv forward/backward, new process): "
              f"fresh cache {cold:.2f} s (process {cold_wall:.2f} s), "
              f"cached {warm:.2f} s (process {warm_wall:.2f} s)")


if __name__ == "__main__":
    main()
