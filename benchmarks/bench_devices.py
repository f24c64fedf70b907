"""Device benchmark: per-layer forward and backward, and end-to-end training, on the CPU and the GPU.

For every device present (the CPU always; the GPU when ``numba.cuda`` sees
one) it prints, beside PyTorch on the same device when PyTorch is installed
(cuDNN on the GPU):

* per layer, on the benchmark cases of the op table (``numbacnn/ops.py``): forward and backward
  (input, weight and bias gradients) median milliseconds, the inputs already
  on the device;
* training throughput of LeNet-5 (batch 256, 1x28x28) and ResNet-20 (batch
  128, 3x32x32): one SGD-momentum step as ``train.fit`` takes it (host batch
  to the device, forward, softmax cross-entropy, backward, optimizer step,
  loss and argmax back to the host), in ms per step and images/s.  PyTorch
  runs the same graph (``numbacnn.torch_twin.torch_model``).

Ratios are PyTorch time / ours (> 1: we are faster).  Every timed run ends
with a device synchronisation (``backend.synchronize()``,
``torch.cuda.synchronize()``) before the clock stops; medians after warm-up.
PyTorch runs in its own process (this script again, with ``--torch-only``,
the same shapes, seeds, batches, thread count and repeats; it prints its
medians as JSON), started before our side: two OpenMP pools in one process
slow each other, and numbacnn must be imported before numpy or torch to get
its default threading layer (numbacnn/config.py).  Each side's threading
layer is printed.  ``--cpu-time --threads 1`` times CPU seconds of the CPU
part, steadier on a shared machine.  Without a GPU the GPU part is skipped,
and the script says so.

    python benchmarks/bench_devices.py [--quick] [--devices cpu,cuda] [--shapes lenet,c16]
                                       [--models lenet5,resnet20] [--no-layers] [--no-train]
                                       [--threads N] [--cpu-time]
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

if "--torch-only" in sys.argv:   # PyTorch's process: torch first; numbacnn only builds model graphs here
    import torch  # noqa: F401
import numbacnn  # noqa: E402,F401  (our process: before numpy, so Numba gets numbacnn's threading defaults)
import numba  # noqa: E402
import numpy as np  # noqa: E402

from common import (format_table, load_torch, median_times, ms, numba_layer, op_cases, our_op_fns,  # noqa: E402
                    ratio, run_json_child, torch_label, torch_op_fns, torch_train_step)
from numbacnn.backends import cuda_available, get_backend  # noqa: E402
from numbacnn.losses import get_loss  # noqa: E402
from numbacnn.models import build_model  # noqa: E402
from numbacnn.kernels.cpu import blocked  # noqa: E402
from numbacnn.optim import SGD  # noqa: E402

# model: (batch size, input shape)
TRAIN_MODELS = {"lenet5": (256, (1, 28, 28)), "resnet20": (128, (3, 32, 32))}


# ---------------------------------------------------------------- devices
def gpu_description():
    """'NAME (compute capability X.Y)' of the current CUDA device, or None with the reason it is skipped."""
    if not cuda_available():
        return None, "no CUDA GPU visible to numba.cuda"
    from numba import cuda

    dev = cuda.get_current_device()
    name = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
    return f"{name} (compute capability {dev.compute_capability[0]}.{dev.compute_capability[1]})", None


class Torch:
    """PyTorch on one device: tensors from numpy, a synchronisation hook, a label."""

    def __init__(self, torch, device):
        self.torch, self.device = torch, device
        if device == "cuda":
            torch.backends.cudnn.benchmark = True

    @classmethod
    def on(cls, torch, device):
        """A Torch for ``device``, or None (PyTorch missing, or no CUDA in this PyTorch build)."""
        if torch is None or (device == "cuda" and not torch.cuda.is_available()):
            return None
        return cls(torch, device)

    def tensor(self, a, grad=False):
        return self.torch.from_numpy(np.ascontiguousarray(a)).to(self.device).requires_grad_(grad)

    def sync(self):
        if self.device == "cuda":
            self.torch.cuda.synchronize()

    def label(self):
        t = self.torch
        if self.device == "cuda":
            return f"torch {t.__version__} cuda, cuDNN {t.backends.cudnn.version()}"
        return torch_label(t) + " on the cpu"


def timed(fn, sync, repeats, warmup, clock):
    """Median seconds of ``fn`` followed by ``sync`` (the device's synchronisation, so queued work counts)."""
    def run():
        fn()
        sync()
    return median_times([run], repeats, warmup, clock=clock)[0]


# ---------------------------------------------------------------- layers
def layer_times(fns, sync, repeats, warmup, clock):
    """(forward, backward) median seconds of an op case's (forward, backward, forward+backward) callables."""
    fwd, bwd, _ = fns
    return timed(fwd, sync, repeats, warmup, clock), timed(bwd, sync, repeats, warmup, clock)


# ---------------------------------------------------------------- training
def train_case(name):
    """(batch, input shape, seeded host images, seeded labels) of one training benchmark."""
    batch, in_shape = TRAIN_MODELS[name]
    rng = np.random.default_rng(0)
    return batch, in_shape, rng.standard_normal((batch,) + in_shape).astype(np.float32), rng.integers(0, 10, batch)


def ours_train(device, name, repeats, warmup, clock):
    """(median seconds of our training step, as train.fit takes it: host batch in, loss and argmax out; the
    layout conversions of one step on the CPU, ``blocked.CONVERSIONS``, else None)."""
    batch, in_shape, xh, yh = train_case(name)
    model = build_model(name, num_classes=10, input_shape=in_shape).build(device, seed=0)
    be, loss_fn, opt = model.backend, get_loss("cross_entropy"), SGD(lr=0.01, momentum=0.9)

    def step():
        out = model.forward(be.asarray(xh), training=True)
        loss, dout, probs = loss_fn(be, out, be.asarray(yh, dtype=np.int64))
        model.backward(dout, input_grad=False)      # as train.fit: no gradient for the images
        opt.step(model)
        be.to_host(be.argmax(probs))
        return loss

    t = timed(step, be.synchronize, repeats, warmup, clock)
    if device != "cpu":
        return t, None
    blocked.CONVERSIONS.clear()
    step()
    return t, dict(blocked.CONVERSIONS)


def conversions(c):
    """'in N / out M, X MiB' of a training step's layout conversions (None: not the CPU)."""
    if c is None:
        return "-"
    mib = (c.get("in bytes", 0) + c.get("out bytes", 0)) / 2**20
    return f"in {c.get('in', 0)} / out {c.get('out', 0)}, {mib:.0f} MiB"


def torch_train(tt, name, repeats, warmup, clock):
    """Median seconds of PyTorch's step on the same graph (our model built on the numpy reference
    backend only for its structure: this process never starts Numba's thread pool)."""
    torch = tt.torch
    batch, in_shape, xh, yh = train_case(name)
    model = build_model(name, num_classes=10, input_shape=in_shape).build("reference", seed=0)
    step = torch_train_step(torch, model, xh, yh, tt.device)
    return timed(step, tt.sync, repeats, warmup, clock)


# ---------------------------------------------------------------- main
def parse(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats (3 instead of 10) and one warm-up")
    ap.add_argument("--repeats", type=int, default=None, help="timed runs per measurement")
    ap.add_argument("--devices", default="cpu,cuda", help="comma-separated: cpu, cuda (default both)")
    ap.add_argument("--shapes", default="", help="comma-separated substrings of layer case labels "
                    f"(names: {', '.join(key for key, _, _ in op_cases())})")
    ap.add_argument("--models", default=",".join(TRAIN_MODELS), help="models for the training part")
    ap.add_argument("--no-layers", action="store_true", help="skip the per-layer part")
    ap.add_argument("--no-train", action="store_true", help="skip the training part")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads for Numba and PyTorch alike")
    ap.add_argument("--cpu-time", action="store_true", help="time CPU seconds in the CPU part (needs --threads 1): "
                    "steadier on a shared machine; the GPU part always times wall seconds")
    ap.add_argument("--torch-only", action="store_true", help="internal: time PyTorch alone, print JSON medians")
    args = ap.parse_args(argv)
    if args.cpu_time and args.threads != 1:
        ap.error("--cpu-time needs --threads 1 (CPU time of several threads is not a duration)")
    args.repeats = args.repeats or (3 if args.quick else 10)
    args.warmup = 1 if args.quick else 3
    args.wanted = [s.strip() for s in args.shapes.split(",") if s.strip()]
    args.model_list = [m.strip() for m in args.models.split(",") if m.strip()]
    args.device_list = [d.strip() for d in args.devices.split(",") if d.strip()]
    for m in args.model_list:
        if m not in TRAIN_MODELS:
            ap.error(f"--models: unknown model {m!r}; choose from {', '.join(TRAIN_MODELS)}")
    for d in args.device_list:
        if d not in ("cpu", "cuda"):
            ap.error(f"--devices: unknown device {d!r}")
    return args


def clock_for(args, device):
    return time.process_time if args.cpu_time and device == "cpu" else time.perf_counter


def torch_only(args):
    """PyTorch's side, in its own process: {device: {label, layers: {name: [fwd, bwd]}, train: {name: s}}}."""
    torch = load_torch(args.threads)
    out = {}
    for device in args.device_list:
        tt = Torch.on(torch, device)
        if tt is None:
            continue
        clock, res = clock_for(args, device), {"label": tt.label(), "layers": {}, "train": {}}
        if not args.no_layers:
            for key, op, bench in op_cases(args.wanted):
                res["layers"][key] = layer_times(torch_op_fns(torch, op, bench, tt.device), tt.sync, args.repeats,
                                                 args.warmup, clock)
                print(f"torch {device} {bench.label} done", file=sys.stderr, flush=True)
        if not args.no_train:
            for name in args.model_list:
                res["train"][name] = torch_train(tt, name, args.repeats, args.warmup, clock)
                print(f"torch {device} {name} done", file=sys.stderr, flush=True)
        out[device] = res
    return {"devices": out, "numba_layer_in_torch_process": numba_layer()}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse(argv)
    if args.torch_only:
        import json
        print(json.dumps(torch_only(args)))
        return
    if args.threads:
        numba.set_num_threads(args.threads)
    threads = numba.get_num_threads()
    gpu, why_not = gpu_description()
    devices = [d for d in args.device_list if d == "cpu" or gpu is not None]
    theirs, their_layer = {}, None
    if importlib.util.find_spec("torch") is not None and devices:   # PyTorch first, before our pool starts
        load = os.getloadavg()[0]
        child = run_json_child(__file__, argv + ["--torch-only", "--threads", str(threads),
                                                 "--devices", ",".join(devices)])
        theirs, their_layer = child["devices"], child["numba_layer_in_torch_process"]
        print(f"PyTorch measured in its own process (load average {load:.1f} at its start; "
              f"Numba's pool there: {their_layer})", file=sys.stderr)
    cpu = get_backend("cpu")
    cpu.conv2d_forward(np.zeros((1, 1, 3, 3), np.float32), np.zeros((1, 1, 1, 1), np.float32))  # starts the pool
    print(f"numba {numba.__version__}, CPU: {os.cpu_count()} cores (numba threads={threads}, "
          f"threading layer {numba_layer()}), GPU: {gpu or 'none'}, "
          f"PyTorch: {'not installed' if their_layer is None else 'own process'}, repeats={args.repeats}, "
          f"median {'CPU' if args.cpu_time else 'wall'} ms on the CPU, load average {os.getloadavg()[0]:.1f}")
    for device in args.device_list:
        if device == "cuda" and gpu is None:
            print(f"\n== cuda: GPU part skipped ({why_not})")
            continue
        be, tt, clock = get_backend(device), theirs.get(device), clock_for(args, device)
        where = gpu if device == "cuda" else f"CPU, {threads} threads, layer {numba_layer()}"
        print(f"\n== {device}: numbacnn on {where}; beside it "
              f"{tt['label'] if tt else 'no PyTorch for this device'}")
        if not args.no_layers:
            rows = []
            for key, op, bench in op_cases(args.wanted):
                t_f, t_b = layer_times(our_op_fns(be, op, bench), be.synchronize, args.repeats, args.warmup, clock)
                tt_f, tt_b = tt["layers"][key] if tt else (None, None)
                rows.append([bench.label, ms(t_f), ms(tt_f), ratio(tt_f, t_f), ms(t_b), ms(tt_b), ratio(tt_b, t_b)])
                print(bench.label, "done", file=sys.stderr, flush=True)
            print(format_table(["layer", "fwd ms", "torch", "ratio", "bwd ms", "torch", "ratio"], rows))
        if not args.no_train:
            rows = []
            for name in args.model_list:
                batch = TRAIN_MODELS[name][0]
                t, conv = ours_train(device, name, args.repeats, args.warmup, clock)
                tt_t = tt["train"][name] if tt else None
                rows.append([f"{name} (batch {batch})", ms(t), f"{batch / t:.0f}", ms(tt_t),
                             "n/a" if tt_t is None else f"{batch / tt_t:.0f}", ratio(tt_t, t), conversions(conv)])
                print(rows[-1][0], "done", file=sys.stderr, flush=True)
            print(format_table(["training step", "ms", "img/s", "torch ms", "torch img/s", "ratio",
                                "layout conversions a step"], rows))
    print("\nratio = PyTorch time / ours (> 1: we are faster); bwd = input, weight and bias gradients; "
          "a training step = batch to device, forward, loss, backward, SGD-momentum update, loss + argmax back; "
          "PyTorch timed in its own process, started first (same shapes, seeds, threads, repeats); layout "
          "conversions: tensors the CPU's blocked convolutions move into their channel-blocked layout and back to "
          "NCHW, image by image through the cache (kernels/cpu/blocked.py)")


if __name__ == "__main__":
    main()
