"""Device benchmark: per-layer forward and backward, and end-to-end training, on the CPU and the GPU.

For every device present (the CPU always; the GPU when ``numba.cuda`` sees
one) it prints, beside PyTorch on the same device when PyTorch is installed
(cuDNN on the GPU):

* per layer, on the shapes of ``bench_layers.py``: forward and backward
  (input, weight and bias gradients) median milliseconds, the inputs already
  on the device;
* training throughput of LeNet-5 (batch 256, 1x28x28) and ResNet-20 (batch
  128, 3x32x32): one SGD-momentum step as ``train.fit`` takes it (host batch
  to the device, forward, softmax cross-entropy, backward, optimizer step,
  loss and argmax back to the host), in ms per step and images/s.  PyTorch
  runs the same graph (converted layer by layer from ours).

Ratios are PyTorch time / ours (> 1: we are faster).  Every timed run ends
with a device synchronisation (``backend.synchronize()``,
``torch.cuda.synchronize()``) before the clock stops; ours and PyTorch's
runs alternate in rounds (``common.median_times``), medians after warm-up.
``--cpu-time --threads 1`` times CPU seconds of the CPU part, steadier on a
shared machine.  Without a GPU the GPU part is skipped, and the script says so.

    python benchmarks/bench_devices.py [--quick] [--devices cpu,cuda] [--shapes lenet,c16]
                                       [--models lenet5,resnet20] [--no-layers] [--no-train]
                                       [--threads N] [--cpu-time]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numbacnn  # noqa: E402,F401  (sets Numba's threading defaults before numba loads)
import numba  # noqa: E402
import numpy as np  # noqa: E402

from bench_layers import CONV_SHAPES, POOL_SHAPES  # noqa: E402
from common import format_table, load_torch, median_times, ms, ratio  # noqa: E402
from numbacnn.backends import cuda_available, get_backend  # noqa: E402
from numbacnn.kernels.reference import conv_out_size  # noqa: E402
from numbacnn.losses import get_loss  # noqa: E402
from numbacnn.models import build_model  # noqa: E402
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
        return f"torch {t.__version__} cpu (threads={t.get_num_threads()})"


def synced(fn, sync):
    """``fn`` followed by ``sync`` (the device's synchronisation), so the timing includes queued work."""
    if fn is None:
        return None

    def run():
        fn()
        sync()
    return run


# s of sleep before each function's turn: PyTorch's OpenMP workers spin ~10 ms after a call and
# would take our second core (see bench_layers.py)
SETTLE = 0.05


def time_pair(be, tt, ours, theirs, repeats, warmup, clock):
    """(our median seconds, PyTorch's or None), measured in alternating rounds, each synchronised."""
    return median_times([synced(ours, be.synchronize), synced(theirs, tt.sync) if tt else None],
                        repeats, warmup, clock=clock, settle=SETTLE)


# ---------------------------------------------------------------- layers
def bench_conv(be, tt, name, shape, K, k, s, p, repeats, warmup, clock):
    rng = np.random.default_rng(0)
    N, C, H, W = shape
    OH, OW = conv_out_size(H, k, s, p), conv_out_size(W, k, s, p)
    xh = rng.standard_normal(shape).astype(np.float32)
    wh = (rng.standard_normal((K, C, k, k)) * 0.1).astype(np.float32)
    bh = rng.standard_normal(K).astype(np.float32)
    dyh = rng.standard_normal((N, K, OH, OW)).astype(np.float32)
    x, w, b, dy = (be.asarray(a) for a in (xh, wh, bh, dyh))
    tfwd = tbwd = None
    if tt is not None:
        F = tt.torch.nn.functional
        tx, tw, tb = tt.tensor(xh, True), tt.tensor(wh, True), tt.tensor(bh, True)
        tdy = tt.tensor(dyh)

        def tfwd():
            with tt.torch.no_grad():
                F.conv2d(tx, tw, tb, s, p)

        ty = F.conv2d(tx, tw, tb, s, p)

        def tbwd():   # backward alone: the graph is kept, the grads reset
            tx.grad = tw.grad = tb.grad = None
            ty.backward(tdy, retain_graph=True)

    t_f, tt_f = time_pair(be, tt, lambda: be.conv2d_forward(x, w, b, s, p), tfwd, repeats, warmup, clock)
    t_b, tt_b = time_pair(be, tt, lambda: be.conv2d_backward(dy, x, w, s, p, has_bias=True), tbwd, repeats,
                          warmup, clock)
    desc = f"{name} {N}x{C}x{H}x{W}->{K} {k}x{k} s{s} p{p}"
    return [desc, ms(t_f), ms(tt_f), ratio(tt_f, t_f), ms(t_b), ms(tt_b), ratio(tt_b, t_b)]


def bench_pool(be, tt, name, shape, k, s, repeats, warmup, clock):
    rng = np.random.default_rng(0)
    xh = rng.standard_normal(shape).astype(np.float32)
    x = be.asarray(xh)
    y, arg = be.max_pool2d_forward(x, k, s)
    dyh = rng.standard_normal(tuple(y.shape)).astype(np.float32)
    dy = be.asarray(dyh)
    tfwd = tbwd = None
    if tt is not None:
        F = tt.torch.nn.functional
        tx, tdy = tt.tensor(xh, True), tt.tensor(dyh)

        def tfwd():
            with tt.torch.no_grad():
                F.max_pool2d(tx, k, s)

        ty = F.max_pool2d(tx, k, s)

        def tbwd():
            tx.grad = None
            ty.backward(tdy, retain_graph=True)

    t_f, tt_f = time_pair(be, tt, lambda: be.max_pool2d_forward(x, k, s), tfwd, repeats, warmup, clock)
    t_b, tt_b = time_pair(be, tt, lambda: be.max_pool2d_backward(dy, arg, shape), tbwd, repeats, warmup, clock)
    desc = f"{name} {'x'.join(map(str, shape))} s{s}"
    return [desc, ms(t_f), ms(tt_f), ratio(tt_f, t_f), ms(t_b), ms(tt_b), ratio(tt_b, t_b)]


# ---------------------------------------------------------------- training
def torch_net(torch, model):
    """The same graph as our ``model`` (built) in PyTorch, layer by layer (its own initial weights)."""
    nn, F = torch.nn, torch.nn.functional

    class Merge(nn.Module):
        def __init__(self, kind, before=0, after=0):
            super().__init__()
            self.kind, self.before, self.after = kind, before, after

        def forward(self, *xs):
            if self.kind == "Add":
                return sum(xs[1:], xs[0])
            if self.kind == "Concatenate":
                return torch.cat(xs, dim=1)
            return F.pad(xs[0], (0, 0, 0, 0, self.before, self.after))   # ChannelPad

    def convert(layer):
        kind, shape = type(layer).__name__, layer.input_shapes[0]
        if kind == "Conv2D":
            return nn.Conv2d(shape[0], layer.filters, layer._k, layer._s, layer._p, layer._d, layer.groups,
                             layer.use_bias)
        if kind == "Dense":
            return nn.Linear(shape[0], layer.units, layer.use_bias)
        if kind == "BatchNorm":
            return (nn.BatchNorm2d if len(shape) == 3 else nn.BatchNorm1d)(shape[0], layer.eps, layer.momentum)
        if kind == "MaxPool2D":
            return nn.MaxPool2d(layer._k, layer._s, layer._p)
        if kind == "AvgPool2D":
            return nn.AvgPool2d(layer._k, layer._s, layer._p, count_include_pad=layer.count_include_pad)
        if kind == "GlobalAvgPool2D":
            return nn.AdaptiveAvgPool2d(1)
        if kind == "Dropout":
            return nn.Dropout(layer.rate)
        if kind == "LRN":
            return nn.LocalResponseNorm(layer.size, layer.alpha, layer.beta, layer.k)
        if kind in ("Add", "Concatenate", "ChannelPad"):
            return Merge(kind, getattr(layer, "before", 0), getattr(layer, "after", 0))
        simple = {"ReLU": nn.ReLU, "Tanh": nn.Tanh, "Sigmoid": nn.Sigmoid, "Flatten": nn.Flatten}
        if kind not in simple:
            raise ValueError(f"bench_devices: no PyTorch twin for {layer.describe()}")
        return simple[kind]()

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.names = list(model.layers)
            self.inputs = [model.inputs_of(n) for n in self.names]
            self.mods = nn.ModuleList(convert(layer) for layer in model.layers.values())

        def forward(self, x):
            acts = {"input": x}
            for name, ins, mod in zip(self.names, self.inputs, self.mods):
                acts[name] = mod(*(acts[i] for i in ins))
            return acts[self.names[-1]]

    return Net()


def bench_train(device, tt, name, repeats, warmup, clock):
    batch, in_shape = TRAIN_MODELS[name]
    rng = np.random.default_rng(0)
    xh = rng.standard_normal((batch,) + in_shape).astype(np.float32)
    yh = rng.integers(0, 10, batch)
    model = build_model(name, num_classes=10, input_shape=in_shape).build(device, seed=0)
    be, loss_fn, opt = model.backend, get_loss("cross_entropy"), SGD(lr=0.01, momentum=0.9)

    def step():   # as train.fit: host batch in, loss and argmax out
        out = model.forward(be.asarray(xh), training=True)
        loss, dout, probs = loss_fn(be, out, be.asarray(yh, dtype=np.int64))
        model.backward(dout)
        opt.step(model)
        be.to_host(be.argmax(probs))
        return loss

    tstep = None
    if tt is not None:
        torch = tt.torch
        net = torch_net(torch, model).to(tt.device).train()
        topt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)

        def tstep():
            xb = torch.from_numpy(xh).to(tt.device)
            yb = torch.from_numpy(yh).to(tt.device)
            topt.zero_grad(set_to_none=True)
            out = net(xb)
            loss = torch.nn.functional.cross_entropy(out, yb)
            loss.backward()
            topt.step()
            out.argmax(1).cpu()
            return loss.item()

    t, tt_t = time_pair(be, tt, step, tstep, repeats, warmup, clock)

    def ips(s):
        return "n/a" if s is None else f"{batch / s:.0f}"

    return [f"{name} (batch {batch})", ms(t), ips(t), ms(tt_t), ips(tt_t), ratio(tt_t, t)]


# ---------------------------------------------------------------- main
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats (3 instead of 10) and one warm-up")
    ap.add_argument("--repeats", type=int, default=None, help="timed runs per measurement")
    ap.add_argument("--devices", default="cpu,cuda", help="comma-separated: cpu, cuda (default both)")
    ap.add_argument("--shapes", default="", help="comma-separated substrings of layer shape names "
                    f"(names: {', '.join(list(CONV_SHAPES) + list(POOL_SHAPES))})")
    ap.add_argument("--models", default=",".join(TRAIN_MODELS), help="models for the training part")
    ap.add_argument("--no-layers", action="store_true", help="skip the per-layer part")
    ap.add_argument("--no-train", action="store_true", help="skip the training part")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads for Numba and PyTorch alike")
    ap.add_argument("--cpu-time", action="store_true", help="time CPU seconds in the CPU part (needs --threads 1): "
                    "steadier on a shared machine; the GPU part always times wall seconds")
    args = ap.parse_args(argv)
    if args.cpu_time and args.threads != 1:
        ap.error("--cpu-time needs --threads 1 (CPU time of several threads is not a duration)")
    repeats = args.repeats or (3 if args.quick else 10)
    warmup = 1 if args.quick else 3
    wanted = [s.strip() for s in args.shapes.split(",") if s.strip()]
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    for m in models:
        if m not in TRAIN_MODELS:
            ap.error(f"--models: unknown model {m!r}; choose from {', '.join(TRAIN_MODELS)}")

    def selected(name):
        return not wanted or any(s in name for s in wanted)

    if args.threads:
        numba.set_num_threads(args.threads)
    threads = numba.get_num_threads()
    torch = load_torch(threads)
    gpu, why_not = gpu_description()
    devices = [d.strip() for d in args.devices.split(",") if d.strip()]
    print(f"numba {numba.__version__}, CPU: {os.cpu_count()} cores (numba threads={threads}), "
          f"GPU: {gpu or 'none'}, torch {'not installed' if torch is None else torch.__version__}, "
          f"repeats={repeats}, median {'CPU' if args.cpu_time else 'wall'} ms on the CPU, load average {os.getloadavg()[0]:.1f}")
    for device in devices:
        if device == "cuda" and gpu is None:
            print(f"\n== cuda: GPU part skipped ({why_not})")
            continue
        if device not in ("cpu", "cuda"):
            ap.error(f"--devices: unknown device {device!r}")
        be = get_backend(device)
        tt = Torch.on(torch, device)
        clock = time.process_time if args.cpu_time and device == "cpu" else time.perf_counter
        where = gpu if device == "cuda" else f"CPU, {threads} threads"
        print(f"\n== {device}: numbacnn on {where}; beside it "
              f"{tt.label() if tt else 'no PyTorch for this device'}")
        if not args.no_layers:
            rows = []
            for name, (shape, K, k, s, p) in CONV_SHAPES.items():
                if selected(name):
                    rows.append(bench_conv(be, tt, name, shape, K, k, s, p, repeats, warmup, clock))
                    print(rows[-1][0], "done", file=sys.stderr, flush=True)
            for name, (shape, k, s) in POOL_SHAPES.items():
                if selected(name):
                    rows.append(bench_pool(be, tt, name, shape, k, s, repeats, warmup, clock))
            print(format_table(["layer", "fwd ms", "torch", "ratio", "bwd ms", "torch", "ratio"], rows))
        if not args.no_train:
            rows = []
            for name in models:
                rows.append(bench_train(device, tt, name, repeats, warmup, clock))
                print(rows[-1][0], "done", file=sys.stderr, flush=True)
            print(format_table(["training step", "ms", "img/s", "torch ms", "torch img/s", "ratio"], rows))
    print("\nratio = PyTorch time / ours (> 1: we are faster); bwd = input, weight and bias gradients; "
          "a training step = batch to device, forward, loss, backward, SGD-momentum update, loss + argmax back")


if __name__ == "__main__":
    main()
