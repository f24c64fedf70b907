"""Compilation as the user sees it: one line while kernels compile, rates without the compile time, and no
recompilation for a new batch size."""
import io
import os
import subprocess
import sys
import time

import numpy as np
from numba import njit

from numbacnn.graph import Model
from numbacnn.layers import Dense, Flatten, ReLU
from numbacnn.models import lenet5
from numbacnn.optim import Adam
from numbacnn.progress import CompileClock, ProgressBar, compile_clock, compile_text
from numbacnn.train import Trainer

from small_models import small  # noqa: E402  (tests/ is on sys.path)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

BEGIN = {"epochs": 2, "start_epoch": 0, "samples": 64, "batches": 2, "batch_size": 32, "val_samples": 0}


def batch(b, elapsed, rate):
    return {"epoch": 1, "batch": b, "batches": 2, "size": 32, "loss": 1.0, "accuracy": 0.5, "epoch_loss": 1.0,
            "epoch_accuracy": 0.5, "images_per_s": rate, "elapsed": elapsed, "lr": 0.1}


def drive(bar, clock, compile_s):
    """An epoch of two batches of 32 images, 0.1 s each, the first also compiling for ``compile_s``."""
    bar.on_train_begin(BEGIN)
    bar.on_epoch_begin(0, {"lr": 0.1})
    clock.enter()
    clock.compiling()
    clock.compiling()                   # a kernel's callee: still one line
    time.sleep(compile_s)
    clock.leave()
    took = compile_s + 0.1
    bar.on_batch_end(0, batch(1, took, 32 / took))
    bar.on_batch_end(1, batch(2, took + 0.1, 64 / (took + 0.1)))
    bar.on_epoch_end(0, {"epoch": 1, "loss": 1.0, "accuracy": 0.5, "val_loss": None, "val_accuracy": None,
                         "lr": 0.1, "time": took + 0.1})
    bar.on_train_end({})
    return bar.stream.getvalue()


def test_compile_line_once_and_rates_without_compile_time():
    clock = CompileClock()
    plain = drive(ProgressBar(io.StringIO(), tty=False, clock=clock), clock, 0.3)
    lines = plain.splitlines()
    assert sum(line.startswith("compiling CPU kernels (first run only; cached in ") for line in lines) == 1
    epoch = [line for line in lines if line.startswith("epoch 1/2")][0]
    assert "compiling) - " in epoch
    rate = float(epoch.split(" img/s")[0].split(" - ")[-1].replace(",", ""))
    assert 250 < rate < 400, epoch     # 64 images in 0.2 s of running, not in the 0.5 s with compiling
    assert "left 0:00" in epoch        # the next epoch will not compile

    clock = CompileClock()
    tty = drive(ProgressBar(io.StringIO(), tty=True, min_interval=0.0, clock=clock), clock, 0.3)
    assert "\rcompiling CPU kernels" in tty and "): 0.3s\n" in tty
    assert tty.count("first run only") >= 2          # the spinner redraws it
    assert "ETA 0:00" in tty

    clock = CompileClock()                           # a warm run: nothing said, the cache loads excluded quietly
    bar = ProgressBar(io.StringIO(), tty=False, clock=clock)
    bar.on_train_begin(BEGIN)
    bar.on_epoch_begin(0, {"lr": 0.1})
    clock.enter()
    clock.leave()
    bar.on_batch_end(0, batch(1, 0.1, 320.0))
    assert "compiling" not in bar.stream.getvalue()


def test_the_clock_hears_numba():
    clock = compile_clock()
    before, seconds = clock.compiles, clock.seconds

    @njit
    def fresh(a):
        return a + 1

    assert fresh(1) == 2
    assert clock.compiles > before and clock.seconds > seconds
    assert compile_text(lenet5()).startswith("compiling CPU kernels for lenet5 (first run only; cached in ")


def train_step(m, x, y):
    be = m.backend
    logits = m.forward(be.asarray(x), training=True)
    labels = y.astype(np.int64)
    _, probs = be.softmax_cross_entropy_forward(logits, labels)
    m.backward(be.softmax_cross_entropy_backward(probs, labels), input_grad=False)
    m.forward(be.asarray(x), training=False)


def signatures():
    """Signatures of every Numba dispatcher of the CPU kernels' modules (the blocked convolutions' cached
    factories included, through the modules' globals)."""
    from numba.core.registry import CPUDispatcher
    seen, count = set(), 0
    for name, mod in list(sys.modules.items()):
        if name.startswith("numbacnn.kernels.cpu"):
            for obj in list(vars(mod).values()):
                if isinstance(obj, CPUDispatcher) and id(obj) not in seen:
                    seen.add(id(obj))
                    count += len(obj.signatures)
    return count


def test_no_recompilation_for_a_new_batch_size():
    """Array shapes are not part of a kernel's signature: every batch size runs the kernels compiled for the
    first (the last batch of an epoch is smaller, evaluation batches larger)."""
    rng = np.random.default_rng(0)
    for m, shape in ((small(), (1, 8, 8)), (lenet5().build("cpu"), (1, 28, 28))):
        train_step(m, rng.standard_normal((8,) + shape).astype(np.float32), rng.integers(0, 3, 8))
        clock = compile_clock()
        before, sigs = clock.entries, signatures()
        for n in (5, 1, 2, 33):
            train_step(m, rng.standard_normal((n,) + shape).astype(np.float32), rng.integers(0, 3, n))
        assert clock.entries == before     # not even a new signature loaded from the disk cache
        assert signatures() == sigs


def test_nothing_compiles_at_import():
    """Importing numbacnn (the command line, the CPU backend, every kernel module) compiles no kernel: a command
    compiles only what its model runs."""
    code = ("from numba.core import event\n"
            "seen = []\n"
            "class L(event.Listener):\n"
            "    def on_start(self, ev): seen.append(ev.data['dispatcher'].py_func.__qualname__)\n"
            "    def on_end(self, ev): pass\n"
            "event.register('numba:compile', L())\n"
            "import importlib, pkgutil, numbacnn.kernels.cpu as k\n"
            "for m in pkgutil.iter_modules(k.__path__): importlib.import_module('numbacnn.kernels.cpu.' + m.name)\n"
            "import numbacnn.cli, numbacnn.backends.cpu, numbacnn.models, numbacnn.run, numbacnn.data.augment\n"
            "print(seen)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_a_machine_without_a_gpu_device_never_loads_numba_cuda():
    """``--device auto`` on a machine with no GPU device node picks the CPU without importing numba.cuda (2.4 s
    of a CPU-only start-up against 0.9 s without it)."""
    code = ("import sys\n"
            "from numbacnn import backends\n"
            "backends.no_gpu_device = lambda: True\n"
            "print(backends.get_backend('auto').name, 'numba.cuda' in sys.modules)\n")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO, env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["cpu", "False"]


def tiny(classes=3):
    return Model.sequential("tiny", (1, 8, 8), [Flatten(name="flat"), Dense(8, name="fc1"), ReLU(name="relu"),
                                                Dense(classes, name="fc2")])


def test_trainer_compiles_before_the_first_epoch(monkeypatch):
    """The trainer's warm-up (on a copy of the model) runs after 'Training on ...' and before the first epoch:
    the compile line comes there, ended by its seconds, and the epoch's time, rate and ETA leave it out; the
    model trained is the one a run without warm-up trains."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((40, 1, 8, 8)).astype(np.float32), rng.integers(0, 3, 40)
    clock, delay = CompileClock(), 0.5
    warm_up = Trainer._warm_up
    calls = []

    def slow_warm_up(self, model, data):        # what a cold cache does: the compiler holds the lock a while
        clock.enter()
        clock.compiling()
        time.sleep(delay)
        clock.leave()
        calls.append(model)
        warm_up(self, model, data)

    monkeypatch.setattr(Trainer, "_warm_up", slow_warm_up)
    runs = []
    for warm in (True, False):
        if not warm:
            monkeypatch.setattr(Trainer, "_warm_up", lambda self, model, data: None)
        m = tiny().build("cpu", seed=1)
        bar = ProgressBar(io.StringIO(), tty=False, clock=clock)
        t = Trainer(m, Adam(1e-2), batch_size=16, seed=3, callbacks=[bar])
        history = t.fit(x, y, epochs=2)
        runs.append((bar.stream.getvalue(), history, m.get_weights()))
    out, history, weights = runs[0]
    lines = out.splitlines()
    assert lines[0].startswith("Training on 40 images")
    assert lines[1].startswith("compiling CPU kernels for tiny (first run only; cached in ") and lines[1].endswith("s")
    assert float(lines[1].rsplit(": ", 1)[1][:-1]) >= delay
    assert lines[2].startswith("epoch 1/2 - ") and "compiling" not in out.split("\n", 2)[2]
    assert len(calls) == 1 and calls[0] is not runs[0][2] and "(0." not in lines[2]
    for name, params in weights.items():        # the warm-up changed nothing of the model trained
        for k, v in params.items():
            assert np.array_equal(v, runs[1][2][name][k]), (name, k)
    assert [h["loss"] for h in history] == [h["loss"] for h in runs[1][1]]


def test_a_cold_run_says_it_compiles_once_and_a_warm_run_says_nothing(tmp_path):
    """The command line in fresh processes with an empty NUMBA_CACHE_DIR: 'train' prints the compile line once
    (naming the model and the cache directory, with the seconds it took), a second 'train' nothing; 'evaluate'
    and 'predict' likewise with a cache of their own."""
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", images=rng.integers(0, 256, (48, 8, 8), dtype=np.uint8),
             labels=rng.integers(0, 3, 48))
    (tmp_path / "tiny.json").write_text(tiny().to_json())
    exe = [sys.executable, os.path.join(REPO, "bin", "numbacnn")]

    def run(args, cache):
        env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / cache)}
        res = subprocess.run(exe + [str(a) for a in args], capture_output=True, text=True, timeout=300, env=env,
                             cwd=tmp_path)
        assert res.returncode == 0, res.stdout + res.stderr
        return [line for line in res.stdout.splitlines() if line.startswith("compiling ")]

    train = ["train", "--model", "tiny.json", "--data", "d.npz", "--epochs", 1, "--batch-size", 8, "--device",
             "cpu", "--out", "t.h5", "--optimizer", "sgd"]
    lines = run(train, "a")
    assert len(lines) == 1, lines
    head = f"compiling CPU kernels for tiny (first run only; cached in {tmp_path / 'a'}"
    assert lines[0].startswith(head) and lines[0].endswith("s")
    assert run(train, "a") == []
    evaluate = ["evaluate", "t.h5", "--data", "d.npz", "--device", "cpu"]
    lines = run(evaluate, "b")
    assert len(lines) == 1 and lines[0].startswith(head.replace("'a'", "'b'").replace(str(tmp_path / "a"),
                                                                                          str(tmp_path / "b")))
    assert run(evaluate, "b") == []
    assert run(["predict", "t.h5", "d.npz", "--device", "cpu"], "b") == []
