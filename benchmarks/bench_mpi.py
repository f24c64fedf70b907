"""Data-parallel training over MPI: measured on this machine, then modelled on a cluster (alpha-beta).

    python benchmarks/bench_mpi.py [--quick] [--batch 32] [--steps 8] [--bucket-mib 4]

Measured: LeNet-5 and ResNet-20 training steps (``train.Trainer`` with ``distributed.MPIStrategy``, random
data) in 1 process and in ``mpiexec -n 2`` ranks, 1 thread each (NUMBA_NUM_THREADS=1), ``--batch`` images
per rank (weak scaling: the 2 ranks train a global batch twice as large).  Per configuration: the median
step time, images/s, the scaling efficiency (images/s of K ranks / K x those of 1 process), a blocking
``Allreduce`` of the whole gradient alone, the time the gradient sum took after the last rank's backward
pass ended (exposed communication), the overlap achieved (1 - exposed / alone) and the spread of the
ranks' backward ends (load imbalance: a rank waiting for a slower one, not for the network).

Modelled: the same step on a cluster, from the measured compute time per image and the gradient size
(ResNet-50 at 32 images per rank), with the alpha-beta cost of one allreduce of n bytes over K ranks
(alpha: latency per message, beta: seconds per byte, gamma: seconds per byte of the reduction, measured
here)::

    ring                 2 (K-1) alpha + 2 (K-1)/K n beta + (K-1)/K n gamma
    recursive doubling   log2(K) (alpha + n beta + n gamma)

paid once per bucket.  A step overlaps communication with the backward pass (2/3 of the compute):
``fwd + max(bwd, comm) + the last bucket``; without overlap ``compute + comm``.  Efficiency = compute / step.

Run on a quiet machine: other processes on the 2 cores distort the 2-rank figures most.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
sys.path.insert(0, HERE)

# numbacnn before numpy: its threading defaults (the omp layer, BLAS on one thread) apply only then; a process that
# imported numpy first keeps Numba's workqueue layer, whose ~100 us launches made the 1-process row 2-3x slower
# than each rank (LeNet-5: 7.6-10 ms a step against 3.0 ms with omp) and the efficiencies over 100%
import numbacnn  # noqa: E402,F401,I001  (first: see above)
import numpy as np  # noqa: E402

from common import format_table  # noqa: E402

#: (name, alpha s, beta s/byte): a 100 Gb/s InfiniBand-class network (HDR100/EDR: ~1-2 us MPI latency,
#: 12.5 GB/s line rate, ~12 GB/s achieved) and 10 Gb Ethernet with TCP (~30 us, ~1.1 GB/s achieved)
NETWORKS = (("InfiniBand 100 Gb/s", 2e-6, 1 / 12e9), ("10 GbE", 30e-6, 1 / 1.1e9))
KS = (8, 16, 32, 64, 128, 256, 512, 1024)
SHAPES = {"lenet5": (1, 28, 28), "resnet20": (3, 32, 32), "resnet50": (3, 224, 224)}


# ---------------------------------------------------------------- child: one configuration, under mpiexec
def child(model_name, batch, steps, bucket_mib):
    """Train ``steps`` + 2 warm-up steps; rank 0 prints one JSON line of timings."""
    from numbacnn import distributed
    from numbacnn.callbacks import LambdaCallback
    from numbacnn.models import build_model
    from numbacnn.optim import SGD
    from numbacnn.train import Trainer
    strategy = distributed.from_environment()
    if strategy.size > 1:
        strategy.bucket_bytes = int(bucket_mib * 2 ** 20)
    else:                   # BLAS on one thread, as in each rank (numpy was imported before numbacnn here)
        distributed.set_threads(1)
    model = build_model(model_name).build("cpu", seed=0)
    k, n = strategy.size, batch * strategy.size * (steps + 2)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, *SHAPES[model_name])).astype(np.float32)
    y = rng.integers(0, 10, n)
    marks = []
    timing = getattr(strategy, "timing", {"wait_s": 0.0, "pack_s": 0.0, "buckets": 0})
    strategy.trace = []
    record = LambdaCallback(on_batch_end=lambda b, logs: marks.append((time.perf_counter(), dict(timing))))
    Trainer(model, SGD(lr=0.01, momentum=0.9), batch_size=batch * k, shuffle=False, strategy=strategy,
            callbacks=[record]).fit(x, y, 1)
    step_s = statistics.median(b[0] - a[0] for a, b in zip(marks[1:], marks[2:]))
    exposed, imbalance = _exposed(strategy.gather(strategy.trace)) if k > 1 else (0.0, 0.0)
    grad = np.zeros(sum(int(np.prod(p.shape)) for layer in model.layers.values() for p in layer.params.values()),
                    np.float32)
    alone = _allreduce_alone(strategy, grad) if k > 1 else 0.0
    buckets = (marks[-1][1]["buckets"] - marks[1][1]["buckets"]) / max(1, len(marks) - 2)
    if strategy.is_writer:
        print(json.dumps({"model": model_name, "ranks": k, "batch": batch, "step_s": step_s,
                          "images_per_s": batch * k / step_s, "wait_s": exposed, "imbalance_s": imbalance,
                          "alone_s": alone, "grad_bytes": grad.nbytes, "buckets": buckets}), flush=True)


def _exposed(traces):
    """Medians over the timed steps of (the gradient sum's time after the last rank's backward ended, the spread
    of the ranks' backward ends): perf_counter is CLOCK_MONOTONIC, one clock for the processes of one machine."""
    exposed, spread = [], []
    for step in list(zip(*traces))[2:]:
        ready = [t0 for t0, _ in step]
        exposed.append(max(0.0, step[0][1] - max(ready)))
        spread.append(max(ready) - min(ready))
    return statistics.median(exposed), statistics.median(spread)


def _allreduce_alone(strategy, grad, repeats=10):
    """Median time of a blocking Allreduce of the whole gradient (after a barrier)."""
    from mpi4py import MPI
    times = []
    for _ in range(repeats):
        strategy.comm.Barrier()
        t0 = time.perf_counter()
        strategy.comm.Allreduce(MPI.IN_PLACE, grad, MPI.SUM)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def step_time_one_image(model_name, repeats=2):
    """Seconds of one training step on one image (1 thread), median of ``repeats`` after a warm-up."""
    from numbacnn.losses import get_loss
    from numbacnn.models import build_model
    model = build_model(model_name).build("cpu", seed=0)
    be, loss = model.backend, get_loss("cross_entropy")
    x = np.random.default_rng(0).standard_normal((2, *SHAPES[model_name])).astype(np.float32)

    def step():
        out = model.forward(be.asarray(x), training=True)
        model.backward(loss(be, out, be.asarray(np.array([0, 1]), np.int64))[1], input_grad=False)

    step()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) / 2


# ---------------------------------------------------------------- parent: measure, then model
def run_child(model, ranks, args, mpiexec):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", model, "--batch", str(args.batch),
           "--steps", str(args.steps), "--bucket-mib", str(args.bucket_mib)]
    env = {**os.environ, "NUMBA_NUM_THREADS": "1", "NUMBACNN_MPI": "auto"}
    if ranks > 1:
        cmd = [mpiexec, "-n", str(ranks)] + cmd
    r = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=env, timeout=1800)
    lines = r.stdout.strip().splitlines()
    if r.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(cmd)}: failed (exit {r.returncode})")
    return json.loads(lines[-1])


def measured_table(results) -> str:
    rows = []
    for r in results:
        one = next(o for o in results if o["model"] == r["model"] and o["ranks"] == 1)
        eff = r["images_per_s"] / (r["ranks"] * one["images_per_s"])
        overlap = f"{max(0.0, 1 - r['wait_s'] / r['alone_s']):.0%}" if r["alone_s"] else "-"
        rows.append([r["model"], r["ranks"], r["batch"] * r["ranks"], f"{r['step_s'] * 1e3:.1f}",
                     f"{r['images_per_s']:.1f}", f"{eff:.1%}", f"{r['grad_bytes'] / 2 ** 20:.2f}",
                     f"{r['buckets']:.0f}" if r["ranks"] > 1 else "-", f"{r['alone_s'] * 1e3:.2f}",
                     f"{r['wait_s'] * 1e3:.2f}", overlap, f"{r['imbalance_s'] * 1e3:.2f}"])
    return format_table(["model", "ranks", "global batch", "step ms", "images/s", "efficiency", "grad MiB",
                         "buckets", "allreduce alone ms", "exposed ms", "overlap", "imbalance ms"], rows)


def allreduce_s(algorithm, k, n, alpha, beta, gamma) -> float:
    """alpha-beta(-gamma) time of one allreduce of ``n`` bytes over ``k`` ranks."""
    if algorithm == "ring":
        return 2 * (k - 1) * alpha + 2 * (k - 1) / k * n * beta + (k - 1) / k * n * gamma
    return math.ceil(math.log2(k)) * (alpha + n * (beta + gamma))


def step_model(compute_s, grad_bytes, bucket_bytes, k, net, algorithm, gamma):
    """(step with overlap, step without, communication) seconds of one data-parallel step."""
    _, alpha, beta = net
    full, rest = divmod(grad_bytes, bucket_bytes)
    sizes = [bucket_bytes] * int(full) + ([rest] if rest else [])
    comm = sum(allreduce_s(algorithm, k, s, alpha, beta, gamma) for s in sizes)
    last = allreduce_s(algorithm, k, sizes[-1], alpha, beta, gamma)
    fwd, bwd = compute_s / 3, 2 * compute_s / 3
    return fwd + max(bwd, comm) + last, compute_s + comm, comm


def model_tables(img_s, grad_bytes, bucket_bytes, gamma, per_rank=32) -> str:
    """Efficiency per K for each network and algorithm, for ranks of several speeds."""
    out = []
    speeds = (("measured: 1 core of this machine", img_s), ("a 32-core node (measured / 32)", img_s / 32),
              ("a GPU-class rank (1,000 images/s, assumed)", 1e-3))
    for label, t in speeds:
        compute = per_rank * t
        rows, dominate = [], {}
        for k in KS:
            row = [k]
            for net in NETWORKS:
                for alg in ("ring", "recursive doubling"):
                    over, plain, comm = step_model(compute, grad_bytes, bucket_bytes, k, net, alg, gamma)
                    row.append(f"{compute / over:.1%} ({compute / plain:.0%})")
                    if comm > compute and (net[0], alg) not in dominate:
                        dominate[(net[0], alg)] = k
            rows.append(row)
        heads = ["K"] + [f"{n[0]} {a}" for n in NETWORKS for a in ("ring", "rec. doubling")]
        where = "; ".join(f"{n} {a}: K={k}" for (n, a), k in dominate.items()) or "not up to K=1024"
        out.append(f"ResNet-50, {per_rank} images per rank, {label}: compute {compute * 1e3:.0f} ms a step\n"
                   f"efficiency with overlap (without)\n{format_table(heads, rows)}\n"
                   f"communication longer than compute from: {where}")
    return "\n\n".join(out)


def measure_gamma() -> float:
    """Seconds per byte of summing float32 arrays here (the reduction's cost in the model)."""
    a, b = np.ones(2 ** 23, np.float32), np.ones(2 ** 23, np.float32)
    np.add(a, b, out=a)
    t0 = time.perf_counter()
    for _ in range(5):
        np.add(a, b, out=a)
    return (time.perf_counter() - t0) / 5 / a.nbytes


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="few steps; ResNet-50's step estimated from ResNet-20's")
    p.add_argument("--batch", type=int, default=32, help="images per rank")
    p.add_argument("--steps", type=int, default=8, help="timed steps (after 2 warm-up steps)")
    p.add_argument("--bucket-mib", type=float, default=4.0)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args.child, args.batch, args.steps, args.bucket_mib)
    if args.quick:
        args.steps = min(args.steps, 3)
    mpiexec = shutil.which("mpiexec") or shutil.which("mpiexec", path=os.path.dirname(sys.executable))
    if mpiexec is None:
        sys.exit("bench_mpi: mpiexec not found (pip install 'numbacnn[mpi]')")
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; {args.batch} images per rank, "
          f"{args.steps} steps, buckets of {args.bucket_mib:g} MiB, 1 thread per rank\n")
    results = [run_child(m, k, args, mpiexec) for m in ("lenet5", "resnet20") for k in (1, 2)]
    print(measured_table(results))
    r20 = next(r for r in results if r["model"] == "resnet20" and r["ranks"] == 1)
    from numbacnn.models import build_model
    flops20, flops50 = (sum(row["flops"] for row in build_model(m).summary_rows()) for m in ("resnet20", "resnet50"))
    params50 = build_model("resnet50").count_params()[0]
    if args.quick:
        img_s, how = r20["step_s"] / r20["batch"] * flops50 / flops20, "estimated from ResNet-20's FLOP rate"
    else:
        img_s, how = step_time_one_image("resnet50"), "measured (batch 2, 1 thread)"
    gamma = measure_gamma()
    print(f"\nResNet-50: {params50 * 4 / 2 ** 20:.1f} MiB of gradients, {img_s:.2f} s per training image on "
          f"1 thread ({how}); reduction gamma {gamma * 1e9:.3f} ns/byte (measured); buckets of "
          f"{args.bucket_mib:g} MiB")
    for name, alpha, beta in NETWORKS:
        print(f"{name}: alpha {alpha * 1e6:g} us, beta {beta * 1e9:.3f} ns/byte ({1 / beta / 1e9:.1f} GB/s)")
    print()
    print(model_tables(img_s, params50 * 4, int(args.bucket_mib * 2 ** 20), gamma))


if __name__ == "__main__":
    main()
