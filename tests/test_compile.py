"""Compilation as the user sees it: one line while kernels compile, rates without the compile time, and no
recompilation for a new batch size."""
import io
import time

import numpy as np
from numba import njit

from numbacnn.models import lenet5
from numbacnn.progress import CompileClock, ProgressBar, compile_clock, compile_text

from small_models import small  # noqa: E402  (tests/ is on sys.path)

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


def test_no_recompilation_for_a_new_batch_size():
    """Array shapes are not part of a kernel's signature: every batch size runs the kernels compiled for the
    first (the last batch of an epoch is smaller, evaluation batches larger)."""
    rng = np.random.default_rng(0)
    m = small()
    train_step(m, rng.standard_normal((8, 1, 8, 8)).astype(np.float32), rng.integers(0, 3, 8))
    clock = compile_clock()
    before = clock.entries
    for n in (5, 1, 2, 33):
        train_step(m, rng.standard_normal((n, 1, 8, 8)).astype(np.float32), rng.integers(0, 3, n))
    assert clock.entries == before     # not even a new signature loaded from the disk cache
