"""Keras-like training feedback: a progress bar per epoch, or one plain line per epoch.

``ProgressBar`` is a callback (``numbacnn.callbacks``).  On a terminal it redraws one line
per epoch while the batches run (at most ten times a second)::

    Epoch 3/10
     120/150 [=======================>......] - ETA 0:02 - loss 0.0712 - accuracy 0.9781 - 3,412 img/s

and ends the epoch with its summary (time, loss, accuracy, validation
figures, learning rate).  When the stream is not a terminal (a log file, a
pipe, CI) there is no bar: each epoch prints one line (at most one a second;
the first and the last always), with the estimated time left for the run::

    epoch 3/10 - 4.2s - loss 0.0712 - accuracy 0.9781 - 3,412 img/s - lr 0.001 - left 0:29

Numba compiles a kernel the first time it runs (then loads it from its disk cache).  The trainer
runs its kernels once on a throwaway copy of the model before the first batch (``Trainer._warm_up``,
``numbacnn.compile``); when anything compiles then (or later), one line says so, with a spinner on a
terminal, ended by the seconds it took::

    compiling CPU kernels for lenet5 (first run only; cached in /home/me/numbacnn/kernels/cpu/__pycache__): 9.8s

and the rate, the ETA and the time left leave out the seconds spent compiling
(``CompileClock``: the time Numba holds its compiler lock, from its ``numba:compiler_lock`` events).
A warm run (every kernel in the cache) prints nothing of it.
"""
from __future__ import annotations

import sys
import threading
import time


def format_duration(seconds: float) -> str:
    """0:07, 1:05, 1:02:03."""
    s = int(round(max(0.0, seconds)))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def format_metrics(logs: dict) -> str:
    """``loss 0.0712 - accuracy 0.9781 - val_loss ...`` from a history entry (None values left out)."""
    parts = [f"{k} {logs[k]:.4f}" for k in ("loss", "accuracy", "val_loss", "val_accuracy")
             if logs.get(k) is not None]
    return " - ".join(parts)


class CompileClock:
    """Seconds this process spent in Numba's compiler (compiling, or loading and saving its disk cache).

    ``seconds`` counts the time Numba's compiler lock was held or waited for by any thread (overlaps once);
    ``compiles`` counts compilations (a kernel's callees too), which a warm disk cache avoids; ``entries``
    counts every entry into the compiler (a new signature, compiled or loaded from the disk cache).
    ``watch(fn)`` calls ``fn()`` when a compilation starts (in the compiling thread) until ``unwatch(fn)``.
    One clock per process: ``compile_clock()``.
    """

    def __init__(self):
        self.seconds, self.compiles, self.entries, self.active, self._t0 = 0.0, 0, 0, 0, 0.0
        self._lock = threading.Lock()
        self._watchers: list = []

    def enter(self):
        with self._lock:
            if self.active == 0:
                self._t0 = time.perf_counter()
            self.active += 1
            self.entries += 1

    def leave(self):
        with self._lock:
            self.active -= 1
            if self.active == 0:
                self.seconds += time.perf_counter() - self._t0

    def compiling(self):
        self.compiles += 1
        for fn in list(self._watchers):
            fn()

    def watch(self, fn):
        self._watchers.append(fn)

    def unwatch(self, fn):
        if fn in self._watchers:
            self._watchers.remove(fn)


_CLOCK = None


def compile_clock() -> CompileClock:
    """The process's ``CompileClock``, listening to Numba's events from the first call on."""
    global _CLOCK
    if _CLOCK is None:
        from numba.core import event

        clock = CompileClock()

        class _Lock(event.Listener):
            def on_start(self, ev):
                clock.enter()

            def on_end(self, ev):
                clock.leave()

        class _Compile(event.Listener):
            def on_start(self, ev):
                clock.compiling()

            def on_end(self, ev):
                pass

        event.register("numba:compiler_lock", _Lock())
        event.register("numba:compile", _Compile())
        _CLOCK = clock
    return _CLOCK


class CompileNotice:
    """The one line shown when kernels compile during training (see the module docstring).

    ``begin()`` (a compilation starts) prints it once; on a terminal a spinner turns at its end until
    ``finish()``, which ends the line with the time spent compiling.
    """

    SPIN = "|/-\\"

    def __init__(self, stream, tty: bool, text: str, clock: CompileClock):
        self.stream, self.tty, self.text, self.clock = stream, tty, text, clock
        self.shown = self._done = False
        self._stop = threading.Event()
        self._thread = None
        self._c0 = clock.seconds

    def begin(self):
        if self.shown:
            return
        self.shown, self._c0 = True, self.clock.seconds
        if not self.tty:                # a plain line, ended by ``finish``
            self.stream.write(self.text)
            self.stream.flush()
            return
        self._thread = threading.Thread(target=self._spin, daemon=True, name="numbacnn-compile-spinner")
        self._thread.start()

    def _spin(self):
        i = 0
        while not self._stop.wait(0.0 if i == 0 else 0.1):
            self.stream.write(f"\r{self.text} {self.SPIN[i % len(self.SPIN)]}")
            self.stream.flush()
            i += 1

    def finish(self):
        if not self.shown or self._done:
            return
        self._done = True
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        self.stream.write(f"{chr(13) + self.text if self.tty else ''}: {self.clock.seconds - self._c0:.1f}s\n")
        self.stream.flush()


def compile_text(model=None, backend=None) -> str:
    """``compiling CPU kernels for lenet5 (first run only; cached in DIR)``."""
    name = getattr(backend, "name", "cpu")
    text = f"compiling {name.upper()} kernels" + (f" for {model.name}" if getattr(model, "name", None) else "")
    if name != "cpu":
        return text
    from .kernels.cpu import cache_dir
    return f"{text} (first run only; cached in {cache_dir()})"


class ProgressBar:
    """Progress and summary lines for ``train.fit`` (see the module docstring).

    stream : where to write (default ``sys.stdout``)
    tty    : draw the bar (True) or print one line per epoch (False); default: ``stream.isatty()``
    width  : characters of the bar itself
    min_line : without a terminal, at most one epoch line every ``min_line`` seconds (the first and the last
               epochs always print), so a run of thousands of short epochs stays readable
    clock    : the ``CompileClock`` whose seconds the rates leave out (default: the process's)
    """

    writer_only = True      # a data-parallel run shows one bar, the writing rank's (callbacks.CallbackList)

    def __init__(self, stream=None, tty: bool | None = None, width: int = 30, min_interval: float = 0.1,
                 min_line: float = 1.0, clock: CompileClock | None = None):
        self.stream = stream if stream is not None else sys.stdout
        if tty is None:
            isatty = getattr(self.stream, "isatty", None)
            tty = bool(isatty()) if isatty is not None else False
        self.tty, self.width, self.min_interval, self.min_line = tty, int(width), float(min_interval), float(min_line)
        self.epochs = self.start_epoch = 0
        self._last_draw = 0.0
        self._line_len = 0
        self._epoch_times: list = []
        self._images_per_s = 0.0
        self._last_line = 0.0
        self.clock = clock if clock is not None else compile_clock()
        self._notice = None
        self._epoch_compiles = self.clock.compiles
        self._epoch_c0 = self.clock.seconds

    def _write(self, text: str):
        self.stream.write(text)
        self.stream.flush()

    # ------------------------------------------------------------ Callback hooks
    def on_train_begin(self, info):
        self.epochs, self.start_epoch = int(info["epochs"]), int(info["start_epoch"])
        val = f", validating on {info['val_samples']:,}" if info.get("val_samples") else ""
        first = "" if self.start_epoch == 0 else f", resuming after epoch {self.start_epoch}"
        kind = "images" if info.get("images", True) else "samples"
        self._write(f"Training on {info['samples']:,} {kind}{val}: {info['batches']:,} batches of "
                    f"{info['batch_size']} per epoch{first}\n")
        self._notice = CompileNotice(self.stream, self.tty, compile_text(getattr(self, "model", None),
                                     getattr(getattr(self, "trainer", None), "backend", None)), self.clock)
        self.clock.watch(self._notice.begin)

    def on_warm_up_end(self, logs):
        """The trainer's warm-up (``Trainer._warm_up``) has compiled or loaded the run's kernels."""
        if self._notice is not None:
            self._notice.finish()

    def on_train_end(self, logs):
        if self._notice is not None:
            self.clock.unwatch(self._notice.begin)
            self._notice.finish()

    def _running(self, elapsed: float) -> float:
        """Seconds of this epoch so far, less the time spent compiling."""
        return max(1e-9, elapsed - (self.clock.seconds - self._epoch_c0))

    def on_epoch_begin(self, epoch, logs):
        self._epoch = epoch + 1
        self._images_per_s = 0.0
        self._last_draw = 0.0
        self._epoch_c0, self._epoch_compiles = self.clock.seconds, self.clock.compiles
        if self.tty:
            self._write(f"Epoch {epoch + 1}/{self.epochs}\n")

    def on_batch_end(self, batch, info):
        if self._notice is not None:
            self._notice.finish()
        running = self._running(info["elapsed"])
        self._images_per_s = info["images_per_s"] * info["elapsed"] / running    # the epoch's images / running
        if not self.tty:
            return
        now = time.perf_counter()
        if info["batch"] < info["batches"] and now - self._last_draw < self.min_interval:
            return
        self._last_draw = now
        done, total = info["batch"], info["batches"]
        filled = int(self.width * done / total)
        arrow = ">" if filled < self.width else ""
        bar = "=" * filled + arrow + "." * (self.width - filled - len(arrow))
        per_batch = running / done
        eta = format_duration(per_batch * (total - done))
        digits = len(str(total))
        acc = "" if info.get("epoch_accuracy") is None else f"accuracy {info['epoch_accuracy']:.4f} - "
        line = (f"{done:>{digits}}/{total} [{bar}] - ETA {eta} - loss {info['epoch_loss']:.4f} - {acc}"
                f"{self._images_per_s:,.0f} img/s")
        pad = max(0, self._line_len - len(line))
        self._line_len = len(line)
        self._write("\r" + line + " " * pad)

    def on_epoch_end(self, epoch, logs):
        if self._notice is not None:
            self._notice.finish()
        compiling = self.clock.seconds - self._epoch_c0
        self._epoch_times.append(max(0.0, logs["time"] - compiling))
        done = logs["epoch"]
        left = (self.epochs - done) * sum(self._epoch_times) / len(self._epoch_times)
        compiled = self.clock.compiles > self._epoch_compiles    # else only cached kernels were loaded
        took = f"{logs['time']:.1f}s" + (f" ({compiling:.1f}s compiling)" if compiled else "")
        summary = f"{took} - {format_metrics(logs)} - {self._images_per_s:,.0f} img/s - lr {logs['lr']:.3g}"
        if self.tty:
            self._write("\r" + " " * self._line_len + "\r")
            self._line_len = 0
            self._write(f"  {summary}" + (f" - left {format_duration(left)}" if done < self.epochs else "") + "\n")
        elif done in (self.start_epoch + 1, self.epochs) or time.perf_counter() - self._last_line >= self.min_line:
            self._last_line = time.perf_counter()
            self._write(f"epoch {done}/{self.epochs} - {summary}"
                        + (f" - left {format_duration(left)}" if done < self.epochs else "") + "\n")


__all__ = ["ProgressBar", "CompileClock", "CompileNotice", "compile_clock", "compile_text", "format_duration",
           "format_metrics"]
