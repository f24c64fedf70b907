"""One command for a fresh GPU machine: what the CUDA backend does there, written as it goes.

    pip install -e '.[cuda,test]' torch       # from a bare machine with only the repository
    python benchmarks/device_check.py --out device_check_out      # under 8 minutes on an H200

Phases, each recorded in ``OUT/results.json`` (rewritten atomically after every phase) and appended to
``OUT/summary.txt``, so a run cut off still leaves what it measured:

1. ``env``: GPU, compute capability, driver and CUDA versions, numba / numba-cuda / PyTorch versions;
2. ``host``: the host counts of one ResNet-20 training step (launches, allocations, copies, synchronisations:
   ``numbacnn.backends.cuda_count``);
3. ``ceilings``: measured memory bandwidth (a copy kernel) and fp32 FMA throughput (independent FMA chains);
4. ``correctness``: every op of the op table on the GPU against the CPU backend (``tests/kernels``' strategies
   and ``check_op``; hypothesis from the ``test`` extra);
5. ``layers``: per-layer forward and backward times of the op table's benchmark cases, PyTorch+cuDNN beside;
6. ``train``: training steps of LeNet-5 (batch 256) and ResNet-20 (batch 128), ours and PyTorch's;
7. ``inference``: ResNet-50 at batch 1 and 16, ours and PyTorch's;
8. ``cpu_gpu``: our CPU backend's ResNet-20 training step against the GPU's.

A phase that fails records its error and the next one runs; a phase that would pass the time budget
(``--budget`` seconds, default 420) is skipped and says so.  ``--tiny`` runs every phase under Numba's CUDA
simulator (set NUMBA_ENABLE_CUDASIM=1) at toy sizes in seconds, the timed phases with the kernels counted
but not run: CI runs it (tests/test_device_check.py), so the script is known to work before a GPU runs it.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))

import numbacnn  # noqa: E402,F401  (before numpy: Numba's threading defaults)
import numpy as np  # noqa: E402

from common import load_torch, median_time, op_cases, our_op_fns, torch_op_fns, torch_train_step  # noqa: E402

#: ops checked by --tiny (the simulator runs one Python thread per CUDA thread)
TINY_OPS = ("conv2d", "batch_norm", "fused_batch_norm", "relu", "add", "add_relu", "dense", "max_pool2d",
            "softmax_cross_entropy", "sgd_update")


class Report:
    """results.json and summary.txt in ``out``, written after every phase."""

    def __init__(self, out: Path, mode: str):
        self.out, self.t0 = out, time.perf_counter()
        out.mkdir(parents=True, exist_ok=True)
        self.data = {"mode": mode, "started": time.strftime("%Y-%m-%d %H:%M:%S"), "phases": {}, "errors": {}}
        (out / "summary.txt").write_text(f"numbacnn device check ({mode}), {self.data['started']}\n")
        self.flush()

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def flush(self):
        self.data["elapsed_s"] = round(self.elapsed(), 2)
        tmp = self.out / "results.json.tmp"
        tmp.write_text(json.dumps(self.data, indent=1, default=str))
        os.replace(tmp, self.out / "results.json")

    def line(self, text: str):
        print(text, flush=True)
        with open(self.out / "summary.txt", "a") as f:
            f.write(text + "\n")

    def phase(self, name, fn, budget):
        """Run ``fn()`` -> (result, summary lines); record it (or its error, or a skip past the budget)."""
        if self.elapsed() > budget:
            self.data["phases"][name] = {"skipped": f"time budget of {budget:.0f} s spent"}
            self.line(f"== {name}: skipped (time budget spent)")
            return self.flush()
        t = time.perf_counter()
        try:
            result, lines = fn()
            self.data["phases"][name] = result
            self.line(f"== {name} ({time.perf_counter() - t:.1f} s)")
            for text in lines:
                self.line("  " + text)
        except Exception as exc:   # a failed phase is recorded; the next one runs
            self.data["errors"][name] = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            self.line(f"== {name}: ERROR {self.data['errors'][name].splitlines()[0][:300]}")
            traceback.print_exc()
        self.flush()


# ---------------------------------------------------------------- phases
def env_phase(args):
    import numba
    from numba import cuda

    from numbacnn.backends import get_backend
    info = {"python": platform.python_version(), "numba": numba.__version__, "simulator": bool(args.tiny),
            "cpu_count": os.cpu_count()}
    info["numba_cuda"] = _version("numba-cuda")
    be = get_backend("cuda")     # first: installs the caching allocator before any CUDA context exists
    info["caching_allocator"] = be.caching
    if not args.tiny:
        dev = cuda.get_current_device()
        info["gpu"] = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
        info["compute_capability"] = ".".join(map(str, dev.compute_capability))
        info["driver"] = cuda.cudadrv.driver.driver.get_version()
        info["cuda_runtime"] = cuda.runtime.get_version()
    torch = load_torch()
    info["torch"] = None if torch is None else torch.__version__
    if torch is not None and torch.cuda.is_available():
        info["torch_gpu"], info["cudnn"] = torch.cuda.get_device_name(0), torch.backends.cudnn.version()
    return info, [f"{k}: {v}" for k, v in info.items()]


def _version(dist):
    from importlib import metadata
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def host_phase(args):
    from numbacnn.backends.cuda_count import count_training_steps
    from numbacnn.models import build_model

    size, batch = (8, 2) if args.tiny else (32, 8)
    model = build_model("resnet20", num_classes=10, input_shape=(3, size, size)).build("cuda", seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 3, size, size)).astype(np.float32)
    step = count_training_steps(model, x, rng.integers(0, 10, batch), steps=3, execute=not args.tiny)[-1]
    return step, [f"ResNet-20 training step: {step['launches']} launches, {step['allocations']} allocations, "
                  f"{step['syncs']} synchronisations, copies {step['copies']}"]


def ceilings_phase(args):
    import ceilings
    n, iters = (4096, 4) if args.tiny else (1 << 28, 4096)
    bw = ceilings.bandwidth(n, repeats=1 if args.tiny else 10)
    fma = ceilings.fma_throughput(iters, blocks=4 if args.tiny else 132 * 32, repeats=1 if args.tiny else 5)
    result = {"bandwidth_gb_s": bw, "fp32_tflops": fma}
    return result, [f"memory bandwidth (copy): {bw:.1f} GB/s", f"fp32 FMA throughput: {fma:.2f} TFLOP/s"]


def correctness_phase(args):
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st
    from kernels.check import check_op
    from kernels.strategies import CASES, EDGES

    from numbacnn.ops import OPS
    results = {}
    for name in (TINY_OPS if args.tiny else sorted(OPS)):
        @settings(max_examples=1 if args.tiny else 4, derandomize=True, database=None, deadline=None,
                  phases=[Phase.generate], suppress_health_check=list(HealthCheck))
        @given(data=st.data())
        def prop(data):
            case = data.draw(CASES[name](small=args.tiny), label="case")
            check_op("cuda", name, case.inputs, case.kwargs, **case.tol, seed=case.seed, oracle="cpu")
        try:
            prop()
            for case in ([] if args.tiny else EDGES.get(name, [])):
                check_op("cuda", name, case.inputs, case.kwargs, **case.tol, seed=case.seed, oracle="cpu")
            results[name] = "ok"
        except Exception as exc:  # noqa: BLE001 - recorded per op
            results[name] = "FAIL: " + str(exc).strip().splitlines()[0][:400]
    bad = {k: v for k, v in results.items() if v != "ok"}
    return results, [f"{len(results) - len(bad)} of {len(results)} ops agree with the CPU backend"] + \
        [f"{k}: {v}" for k, v in bad.items()]


# ---------------------------------------------------------------- timed phases
class Timing:
    """Repeats, the devices, and under --tiny the kernels counted but not run."""

    def __init__(self, args):
        from numbacnn.backends import get_backend
        self.tiny, self.be = args.tiny, get_backend("cuda")
        self.repeats, self.warmup = (1, 1) if args.tiny else (args.repeats, 2)
        self.torch = load_torch()
        cuda_torch = self.torch is not None and self.torch.cuda.is_available()
        self.tdev = "cuda" if cuda_torch else "cpu"
        if self.torch is not None and cuda_torch:
            self.torch.backends.cudnn.benchmark = True

    def kernels(self):
        """A context: under --tiny the launches are counted, not run (the simulator would take minutes)."""
        import contextlib

        from numbacnn.backends.cuda_count import count_device_calls
        return count_device_calls(execute=False) if self.tiny else contextlib.nullcontext()

    def ours(self, fn):
        return median_time(fn, self.repeats, self.warmup, self.be.synchronize)

    def theirs(self, fn):
        if self.torch is None:
            return None
        sync = self.torch.cuda.synchronize if self.tdev == "cuda" else None
        return median_time(fn, self.repeats, self.warmup, sync)


def _ms(t):
    return None if t is None else round(t * 1e3, 4)


def _tiny_cases():
    """[(key, op, bench)]: toy cases of a convolution, a ReLU and a dense layer for --tiny."""
    from numbacnn.ops import OPS, Bench

    def conv(rng):
        return [rng.standard_normal(s).astype(np.float32) for s in ((2, 3, 6, 6), (4, 3, 3, 3), (4,))], \
            {"stride": 1, "padding": 1}

    def relu(rng):
        return [rng.standard_normal((2, 4, 6, 6)).astype(np.float32)], {}

    def dense(rng):
        return [rng.standard_normal(s).astype(np.float32) for s in ((2, 8), (3, 8), (3,))], {}

    return [("conv", OPS["conv2d"], Bench("conv tiny", conv, 2 * 2 * 4 * 36 * 27)),
            ("relu", OPS["relu"], Bench("relu tiny", relu)), ("dense", OPS["dense"], Bench("dense tiny", dense))]


def layers_phase(args, timing):
    rows, lines = [], []
    with timing.kernels():
        for key, op, bench in (_tiny_cases() if args.tiny else op_cases()):
            fwd, bwd, _ = our_op_fns(timing.be, op, bench)
            row = {"label": bench.label, "fwd_ms": _ms(timing.ours(fwd)), "bwd_ms": _ms(timing.ours(bwd))}
            if timing.torch is not None and op.torch is not None:
                tf, tb, _ = torch_op_fns(timing.torch, op, bench, timing.tdev)
                row["torch_fwd_ms"], row["torch_bwd_ms"] = _ms(timing.theirs(tf)), _ms(timing.theirs(tb))
            if bench.flops:
                row["fwd_tflops"] = round(bench.flops / (row["fwd_ms"] * 1e-3) / 1e12, 3)
            rows.append(row)
            lines.append(", ".join(f"{k} {v}" for k, v in row.items()))
    return rows, lines


def _our_train_step(model, xh, yh):
    from numbacnn.losses import get_loss
    from numbacnn.optim import SGD
    be, loss_fn, opt = model.backend, get_loss("cross_entropy"), SGD(lr=0.01, momentum=0.9)

    def step():
        out = model.forward(be.asarray(xh), training=True)
        loss, dout, probs = loss_fn(be, out, be.asarray(yh, dtype=np.int64))
        model.backward(dout, input_grad=False)
        opt.step(model)
        be.readback(be.argmax(probs)).get()
        return float(loss)
    return step


def _case(name, batch, shape):
    from numbacnn.models import build_model
    rng = np.random.default_rng(0)
    model = build_model(name, num_classes=10, input_shape=shape)
    return model, rng.standard_normal((batch,) + shape).astype(np.float32), rng.integers(0, 10, batch)


def train_phase(args, timing):
    models = {"lenet5": (2, (1, 28, 28)), "resnet20": (2, (3, 8, 8))} if args.tiny else \
        {"lenet5": (256, (1, 28, 28)), "resnet20": (128, (3, 32, 32))}
    result, lines = {}, []
    for name, (batch, shape) in models.items():
        model, xh, yh = _case(name, batch, shape)
        with timing.kernels():
            ours = timing.ours(_our_train_step(model.build("cuda", seed=0), xh, yh))
        theirs = None
        if timing.torch is not None:
            theirs = timing.theirs(torch_train_step(timing.torch, model.build("reference", seed=0), xh, yh,
                                                     timing.tdev))
        result[name] = {"batch": batch, "ms": _ms(ours), "torch_ms": _ms(theirs),
                        "torch_over_ours": None if theirs is None else round(theirs / ours, 3)}
        lines.append(f"{name} batch {batch}: {result[name]}")
    return result, lines


def inference_phase(args, timing):
    shape, batches = ((3, 32, 32), (1, 2)) if args.tiny else ((3, 224, 224), (1, 16))
    result, lines = {}, []
    for batch in batches:
        model, xh, _ = _case("resnet50", batch, shape)
        ours_model = model.build("cuda", seed=0)
        with timing.kernels():
            ours = timing.ours(lambda: ours_model.forward(ours_model.backend.asarray(xh)))
        theirs = None
        if timing.torch is not None:
            from numbacnn.torch_twin import torch_model
            torch = timing.torch
            net = torch_model(torch, model.build("reference", seed=0)).to(timing.tdev).eval()
            x = torch.from_numpy(xh).to(timing.tdev)

            def run():
                with torch.no_grad():
                    net(x)
            theirs = timing.theirs(run)
        result[f"resnet50_b{batch}"] = {"ms": _ms(ours), "torch_ms": _ms(theirs)}
        lines.append(f"ResNet-50 inference batch {batch}: {result[f'resnet50_b{batch}']}")
    return result, lines


def cpu_gpu_phase(args, timing):
    batch, shape = (2, (3, 8, 8)) if args.tiny else (128, (3, 32, 32))
    model, xh, yh = _case("resnet20", batch, shape)
    cpu = median_time(_our_train_step(model.build("cpu", seed=0), xh, yh), 1 if args.tiny else 3, 1)
    with timing.kernels():
        gpu = timing.ours(_our_train_step(model.build("cuda", seed=0), xh, yh))
    result = {"batch": batch, "cpu_ms": _ms(cpu), "gpu_ms": _ms(gpu), "cpu_over_gpu": round(cpu / gpu, 2)}
    return result, [f"ResNet-20 training step batch {batch}: {result}"]


# ---------------------------------------------------------------- main
def parse(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="device_check_out", help="folder of results.json and summary.txt")
    ap.add_argument("--tiny", action="store_true", help="every phase at toy sizes under the CUDA simulator "
                    "(needs NUMBA_ENABLE_CUDASIM=1)")
    ap.add_argument("--budget", type=float, default=420.0, help="seconds after which the phases left are skipped")
    ap.add_argument("--repeats", type=int, default=10, help="timed runs per measurement")
    ap.add_argument("--phases", default="", help="comma-separated subset of the phases (default: all)")
    return ap.parse_args(argv)


def main(argv=None):
    args = parse(sys.argv[1:] if argv is None else argv)
    from numbacnn import config
    if args.tiny and not config.CUDASIM:
        raise SystemExit("--tiny runs under the CUDA simulator: set NUMBA_ENABLE_CUDASIM=1")
    report = Report(Path(args.out), "tiny (CUDA simulator)" if args.tiny else "gpu")
    report.phase("env", lambda: env_phase(args), args.budget)
    timing = Timing(args)
    phases = {"host": lambda: host_phase(args), "ceilings": lambda: ceilings_phase(args),
              "correctness": lambda: correctness_phase(args), "layers": lambda: layers_phase(args, timing),
              "train": lambda: train_phase(args, timing), "inference": lambda: inference_phase(args, timing),
              "cpu_gpu": lambda: cpu_gpu_phase(args, timing)}
    wanted = [p.strip() for p in args.phases.split(",") if p.strip()] or list(phases)
    for name in wanted:
        report.phase(name, phases[name], args.budget)
    report.line(f"done in {report.elapsed():.1f} s; errors: {sorted(report.data['errors']) or 'none'}")
    return 1 if report.data["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
