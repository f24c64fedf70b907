"""Layer benchmark: conv2d and max-pool forward and forward+backward on the CPU backend.

For every shape it prints our median time (compile excluded), GFLOP/s,
PyTorch's time measured in the same run with the same thread count, and the
ratio PyTorch time / ours (> 1: we are faster).  Backward means the input,
weight and bias gradients.  It then prints the first-call compile time (a
fresh Numba cache in a subprocess) and the cached start-up time (the same
cache, a second subprocess).

    python benchmarks/bench_layers.py [--quick] [--shapes lenet,alexnet] [--no-startup]
    python benchmarks/bench_layers.py --threads 1 --cpu-time     # steadier on a shared machine

Ours and PyTorch's runs alternate in rounds (``common.median_times``) so both
see the same background load, with a short sleep before each turn so that
PyTorch's OpenMP workers, which spin about 10 ms after each call, do not
take the second core from the next timed runs; still, on a shared 2-core VM
the second core comes and goes, so compare 2-thread figures from a quiet
moment only.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's numbacnn, whatever is installed

import numbacnn  # noqa: E402,F401  (sets Numba's threading defaults before numba loads)
import numba  # noqa: E402
import numpy as np  # noqa: E402

from common import format_table, gflops, load_torch, median_times, ms, ratio  # noqa: E402
from numbacnn.backends import get_backend  # noqa: E402
from numbacnn.kernels.reference import conv_out_size  # noqa: E402

# name: (N, C, H, W), K, kernel, stride, padding
CONV_SHAPES = {
    "lenet-c1": ((64, 1, 28, 28), 6, 5, 1, 2),
    "lenet-c2": ((64, 6, 14, 14), 16, 5, 1, 0),
    "c16-32x32-3x3": ((64, 16, 32, 32), 16, 3, 1, 1),
    "c32-16x16-3x3": ((64, 32, 16, 16), 32, 3, 1, 1),
    "c64-8x8-3x3": ((64, 64, 8, 8), 64, 3, 1, 1),
    "c64-16x16-1x1": ((64, 64, 16, 16), 32, 1, 1, 0),
    "alexnet-c1": ((16, 3, 224, 224), 64, 11, 4, 2),
}
POOL_SHAPES = {"maxpool-2x2": ((64, 16, 32, 32), 2, 2)}
SETTLE = 0.05  # s of sleep before each function's turn: PyTorch's OpenMP workers spin ~10 ms after a call

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


def _torch_conv(torch, x, w, b, stride, padding):
    F = torch.nn.functional
    tx, tw, tb = (torch.from_numpy(a.copy()).requires_grad_(True) for a in (x, w, b))

    def fwd():
        with torch.no_grad():
            F.conv2d(tx, tw, tb, stride, padding)

    def fwd_bwd(dy=None):
        for t in (tx, tw, tb):
            t.grad = None
        y = F.conv2d(tx, tw, tb, stride, padding)
        y.backward(torch.ones_like(y) if dy is None else dy)

    return fwd, fwd_bwd


def bench_conv(be, torch, name, shape, K, k, s, p, repeats, warmup, clock):
    rng = np.random.default_rng(0)
    N, C, H, W = shape
    OH, OW = conv_out_size(H, k, s, p), conv_out_size(W, k, s, p)
    x = rng.standard_normal(shape).astype(np.float32)
    w = (rng.standard_normal((K, C, k, k)) * 0.1).astype(np.float32)
    b = rng.standard_normal(K).astype(np.float32)
    dy = rng.standard_normal((N, K, OH, OW)).astype(np.float32)

    def fwd():
        return be.conv2d_forward(x, w, b, s, p)

    def fwd_bwd():
        be.conv2d_forward(x, w, b, s, p)
        return be.conv2d_backward(dy, x, w, s, p, has_bias=True)

    flops = 2.0 * N * K * OH * OW * C * k * k
    tf = tfb = None
    if torch is not None:
        tf, tfb_dy = _torch_conv(torch, x, w, b, s, p)
        tdy = torch.from_numpy(dy)

        def tfb():
            tfb_dy(tdy)
    t_f, tt_f = median_times([fwd, tf], repeats, warmup, clock=clock, settle=SETTLE)
    t_fb, tt_fb = median_times([fwd_bwd, tfb], repeats, warmup, clock=clock, settle=SETTLE)
    desc = f"{name} {N}x{C}x{H}x{W}->{K} {k}x{k} s{s} p{p}"
    return [desc, ms(t_f), gflops(flops, t_f), ms(tt_f), ratio(tt_f, t_f),
            ms(t_fb), gflops(3 * flops, t_fb), ms(tt_fb), ratio(tt_fb, t_fb)]


def bench_pool(be, torch, name, shape, k, s, repeats, warmup, clock):
    desc = f"{name} {'x'.join(map(str, shape))} s{s}"
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    y, arg = be.max_pool2d_forward(x, k, s)
    dy = rng.standard_normal(y.shape).astype(np.float32)

    def fwd_bwd():
        _, a = be.max_pool2d_forward(x, k, s)
        return be.max_pool2d_backward(dy, a, x.shape)

    tfwd = tfwd_bwd = None
    if torch is not None:
        F = torch.nn.functional
        tx = torch.from_numpy(x.copy()).requires_grad_(True)
        tdy = torch.from_numpy(dy)

        def tfwd():
            with torch.no_grad():
                F.max_pool2d(tx, k, s)

        def tfwd_bwd():
            tx.grad = None
            F.max_pool2d(tx, k, s).backward(tdy)

    t_f, tt_f = median_times([lambda: be.max_pool2d_forward(x, k, s), tfwd], repeats, warmup, clock=clock, settle=SETTLE)
    t_fb, tt_fb = median_times([fwd_bwd, tfwd_bwd], repeats, warmup, clock=clock, settle=SETTLE)
    return [desc, ms(t_f), "-", ms(tt_f), ratio(tt_f, t_f), ms(t_fb), "-", ms(tt_fb), ratio(tt_fb, t_fb)]


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
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats (3 instead of 15)")
    ap.add_argument("--repeats", type=int, default=None, help="timed runs per measurement")
    ap.add_argument("--shapes", default="", help="comma-separated substrings of shape names to run "
                    f"(names: {', '.join(list(CONV_SHAPES) + list(POOL_SHAPES))})")
    ap.add_argument("--threads", type=int, default=None,
                    help="threads for Numba and PyTorch alike (default: Numba's default)")
    ap.add_argument("--cpu-time", action="store_true",
                    help="time CPU seconds instead of wall seconds (needs --threads 1): "
                         "steadier figures on a machine shared with other jobs")
    ap.add_argument("--no-startup", action="store_true", help="skip the compile/start-up subprocesses")
    args = ap.parse_args(argv)
    if args.cpu_time and args.threads != 1:
        ap.error("--cpu-time needs --threads 1 (CPU time of several threads is not a duration)")
    clock = time.process_time if args.cpu_time else time.perf_counter
    repeats = args.repeats or (3 if args.quick else 15)
    warmup = 1 if args.quick else 3
    wanted = [s.strip() for s in args.shapes.split(",") if s.strip()]

    def selected(name):
        return not wanted or any(s in name for s in wanted)

    if args.threads:
        numba.set_num_threads(args.threads)
    threads = numba.get_num_threads()
    torch = load_torch(threads)
    be = get_backend("cpu")
    be.conv2d_forward(np.zeros((1, 1, 3, 3), np.float32), np.zeros((1, 1, 1, 1), np.float32))  # starts the pool
    print(f"numba {numba.__version__} (threads={threads}, layer {numba.threading_layer()}), "
          f"torch {'n/a' if torch is None else torch.__version__ + f' (threads={torch.get_num_threads()})'}, "
          f"repeats={repeats}, median {'CPU' if args.cpu_time else 'wall'} ms, "
          f"load average {os.getloadavg()[0]:.1f} (timings need an idle machine)")
    rows = []
    for name, (shape, K, k, s, p) in CONV_SHAPES.items():
        if selected(name):
            rows.append(bench_conv(be, torch, name, shape, K, k, s, p, repeats, warmup, clock))
            print(rows[-1][0], "done", file=sys.stderr, flush=True)
    for name, (shape, k, s) in POOL_SHAPES.items():
        if selected(name):
            rows.append(bench_pool(be, torch, name, shape, k, s, repeats, warmup, clock))
    headers = ["layer", "fwd ms", "GF/s", "torch ms", "ratio", "fwd+bwd ms", "GF/s", "torch ms", "ratio"]
    print(format_table(headers, rows))
    print("ratio = PyTorch time / ours (> 1: we are faster); fwd+bwd = forward + input, weight, bias grads")
    if not args.no_startup:
        (cold, cold_wall), (warm, warm_wall) = startup_times()
        print(f"start-up (import + first conv forward/backward, new process): "
              f"fresh cache {cold:.2f} s (process {cold_wall:.2f} s), "
              f"cached {warm:.2f} s (process {warm_wall:.2f} s)")


if __name__ == "__main__":
    main()
