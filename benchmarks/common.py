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


# ---------------------------------------------------------------- ops of the op table, ours and PyTorch's
def op_cases(wanted=()):
    """[(key, op, bench case)] of every benchmark case the op table declares (``numbacnn.ops``), filtered by
    substrings of their labels."""
    from numbacnn.ops import OPS
    return [(bench.label.split()[0], op, bench) for op in OPS.values() for bench in op.bench
            if not wanted or any(w in bench.label for w in wanted)]


def _host_case(op, bench):
    """(inputs, kwargs, dy) on the host, seeded: the same in both processes."""
    import numpy as np
    rng = np.random.default_rng(0)
    inputs, kwargs = bench.make(rng)
    from numbacnn.backends import get_backend
    out = getattr(get_backend("reference"), op.forward)(*inputs, **kwargs)
    y = out[0] if isinstance(out, tuple) else out
    return inputs, kwargs, rng.standard_normal(y.shape).astype(np.float32)


def our_op_fns(be, op, bench):
    """(forward, backward alone, forward + backward) callables of ``op`` on backend ``be``, inputs on it."""
    import numpy as np
    inputs, kwargs, dy_host = _host_case(op, bench)
    xs = [None if a is None else be.asarray(a) if isinstance(a, np.ndarray) else a for a in inputs]
    dy = be.asarray(dy_host)
    forward, backward = getattr(be, op.forward), getattr(be, f"{op.name}_backward")
    outs = forward(*xs, **kwargs)

    def fwd_bwd():
        args, kw = op.grad(dy, xs, forward(*xs, **kwargs), kwargs)
        return backward(*args, **kw)

    args, kw = op.grad(dy, xs, outs, kwargs)
    return (lambda: forward(*xs, **kwargs)), (lambda: backward(*args, **kw)), fwd_bwd


def torch_op_fns(torch, op, bench, device="cpu"):
    """The same three callables with PyTorch's twin of ``op`` (``Op.torch``), autograd for the backward."""
    import numpy as np
    inputs, kwargs, dy_host = _host_case(op, bench)
    F = torch.nn.functional
    ts = [None if a is None else torch.from_numpy(a.copy()).to(device).requires_grad_(True)
          if isinstance(a, np.ndarray) else a for a in inputs]
    tdy = torch.from_numpy(dy_host).to(device)

    def fwd():
        with torch.no_grad():
            op.torch(F, *ts, **kwargs)

    def fwd_bwd():
        for t in ts:
            if t is not None:
                t.grad = None
        op.torch(F, *ts, **kwargs).backward(tdy)

    ty = op.torch(F, *ts, **kwargs)

    def bwd():   # backward alone: the graph is kept, the grads reset
        for t in ts:
            if t is not None:
                t.grad = None
        ty.backward(tdy, retain_graph=True)

    return fwd, bwd, fwd_bwd


def torch_train_step(torch, model, xh, yh, device="cpu"):
    """PyTorch's training step on ``model``'s graph (``numbacnn.torch_twin``): the batch to ``device``, forward,
    cross-entropy, backward, SGD-momentum update, the argmax back to the host; returns step() -> the loss."""
    from numbacnn.torch_twin import torch_model
    net = torch_model(torch, model).to(device).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)

    def step():
        xb, yb = torch.from_numpy(xh).to(device), torch.from_numpy(yh).to(device)
        opt.zero_grad(set_to_none=True)
        out = net(xb)
        loss = torch.nn.functional.cross_entropy(out, yb)
        loss.backward()
        opt.step()
        out.argmax(1).cpu()
        return loss.item()
    return step
