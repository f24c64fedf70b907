"""LeNet-5 on MNIST, trained FROM THE COMMAND LINE, against PyTorch on the same model and batches.

The data is the MNIST test set in ``../shared/data/mnist`` (10,000 images,
IDX, by Yann LeCun and Corinna Cortes, CC BY-SA 3.0): the first 8,000
images train, the other 2,000 test.  Our run is one ``numbacnn train``
subprocess; its figures come from the files it writes (the history CSV's
epoch times, the model file's test accuracy).  PyTorch, when installed,
trains the same LeNet-5 from the same initial weights on the very same
batches (the permutation ``fit`` draws each epoch), with the same Adam and
cosine schedule, on the same number of threads.

    python benchmarks/bench_mnist.py [--epochs 5] [--batch-size 32] [--threads 2]

Images/s are steady-state: training images divided by the median epoch time
of epochs 2..E (epoch 1 includes Numba's compilation, or loading its cache).
"""
from __future__ import annotations

import argparse
import csv
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
sys.path.insert(0, HERE)

from common import format_table, load_torch  # noqa: E402

MNIST = os.path.normpath(os.path.join(REPO, "..", "shared", "data", "mnist"))
N_TRAIN, N_TEST = 8000, 2000


def batch_bounds(n, batch_size):
    """The batches ``train.fit`` makes (a final batch of one sample is folded into the previous one)."""
    bounds = [(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2] = (bounds[-2][0], n)
        bounds.pop()
    return bounds


def run_cli(workdir, epochs, batch_size, lr, seed):
    """Train with the CLI; returns (test accuracy, epoch times, wall seconds of the command)."""
    from numbacnn.io.hdf5 import load_model
    out = os.path.join(workdir, "lenet5_mnist.h5")
    cmd = [sys.executable, os.path.join(REPO, "bin", "numbacnn"), "train", "--model", "lenet5",
           "--data", os.path.join(workdir, "train.npz"), "--test-data", os.path.join(workdir, "test.npz"),
           "--epochs", str(epochs), "--batch-size", str(batch_size), "--optimizer", "adam", "--lr", str(lr),
           "--schedule", "cosine", "--seed", str(seed), "--device", "cpu", "--out", out]
    print("$ " + " ".join(os.path.relpath(c) if os.path.isabs(c) and c.startswith(REPO) else c for c in cmd))
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    print("\n".join("    " + ln for ln in proc.stdout.strip().splitlines()))
    if proc.returncode != 0:
        sys.exit(f"numbacnn train failed (exit {proc.returncode}): {proc.stderr.strip()}")
    with open(os.path.join(workdir, "lenet5_mnist.history.csv")) as f:
        times = [float(r["time"]) for r in csv.DictReader(f)]
    return load_model(out).metadata["test_accuracy"], times, wall


def run_torch(torch, x_tr, y_tr, x_te, y_te, epochs, batch_size, lr, seed):
    """The same LeNet-5, initial weights, batches and optimizer in PyTorch: (test accuracy, epoch times)."""
    from numbacnn.models import lenet5
    nn = torch.nn
    net = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
    ours = lenet5().build("cpu", seed=seed).get_weights()
    with torch.no_grad():
        for module, name in zip([net[0], net[3], net[7], net[9], net[11]], ["conv1", "conv2", "fc1", "fc2", "fc3"]):
            module.weight.copy_(torch.from_numpy(ours[name]["weight"]))
            module.bias.copy_(torch.from_numpy(ours[name]["bias"]))
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
    rng = np.random.default_rng(seed)                    # fit's shuffling generator: the same batches
    bounds = batch_bounds(len(x_tr), batch_size)
    times = []
    for epoch in range(epochs):
        for g in opt.param_groups:
            g["lr"] = lr * (1 + math.cos(math.pi * epoch / epochs)) / 2
        order = torch.from_numpy(rng.permutation(len(x_tr)))
        net.train()
        t0 = time.perf_counter()
        for s, e in bounds:
            idx = order[s:e]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - t0)
    net.eval()
    with torch.no_grad():
        pred = net(torch.from_numpy(x_te)).argmax(1).numpy()
    return float((pred == y_te).mean()), times


def steady(times):
    return statistics.median(times[1:] if len(times) > 1 else times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2, help="PyTorch threads (match the cores Numba uses)")
    args = ap.parse_args()
    if not os.path.isdir(MNIST):
        print(f"skipped: MNIST not found at {MNIST} (this benchmark needs the shared MNIST test set)")
        return
    from numbacnn.data import load_dataset
    x, y, _ = load_dataset(MNIST, "test")
    if len(x) < N_TRAIN + N_TEST:
        print(f"skipped: {MNIST} has {len(x)} images, the benchmark needs {N_TRAIN + N_TEST}")
        return
    x_tr, y_tr = x[:N_TRAIN], y[:N_TRAIN]
    x_te, y_te = x[N_TRAIN:N_TRAIN + N_TEST], y[N_TRAIN:N_TRAIN + N_TEST]
    print(f"MNIST ({MNIST}): {N_TRAIN:,} training images, {N_TEST:,} test images; LeNet-5, {args.epochs} epochs, "
          f"batch {args.batch_size}, Adam lr {args.lr:g} with a cosine schedule\n")
    with tempfile.TemporaryDirectory() as tmp:
        np.savez(os.path.join(tmp, "train.npz"), images=x_tr, labels=y_tr)
        np.savez(os.path.join(tmp, "test.npz"), images=x_te, labels=y_te)
        acc, times, wall = run_cli(tmp, args.epochs, args.batch_size, args.lr, args.seed)

    rows = [["numbacnn (CLI)", f"{acc:.4f}", f"{sum(times):.1f}", f"{times[0]:.1f}", f"{steady(times):.2f}",
             f"{N_TRAIN / steady(times):,.0f}", "1.00x"]]
    torch = load_torch(args.threads)
    if torch is not None:
        t_acc, t_times = run_torch(torch, x_tr, y_tr, x_te, y_te, args.epochs, args.batch_size, args.lr, args.seed)
        rows.append([f"PyTorch {torch.__version__} ({args.threads} threads)", f"{t_acc:.4f}", f"{sum(t_times):.1f}",
                     f"{t_times[0]:.1f}", f"{steady(t_times):.2f}", f"{N_TRAIN / steady(t_times):,.0f}",
                     f"{steady(times) / steady(t_times):.2f}x"])
    print()
    print(format_table(["", "test acc", "train s", "epoch 1 s", "epoch s (median 2..)", "images/s",
                        "speed vs numbacnn"], rows))
    print(f"\nnumbacnn train command: {wall:.1f}s wall (data loading, compilation or cache loading, training, "
          f"testing, saving); target test accuracy >= 0.97: {'met' if acc >= 0.97 else 'NOT met'}")


if __name__ == "__main__":
    main()
