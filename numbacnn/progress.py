"""Keras-like training feedback: a progress bar per epoch, or one plain line per epoch.

``ProgressBar`` is a callback (``numbacnn.callbacks``).  On a terminal it redraws one line
per epoch while the batches run (at most ten times a second)::

    Epoch 3/10
     120/150 [=======================>......] - ETA 0:02 - loss 0.0712 - accuracy 0.9781 - 3,412 img/s

and ends the epoch with its summary (time, loss, accuracy, validation
figures, learning rate).  When the stream is not a terminal (a log file, a
pipe, CI) there is no bar: each epoch prints one line (at most one a second;
the first and the last always), with the estimated time left for the run::

    epoch 3/10 - 4.2s - loss 0.0712 - accuracy 0.9781 - val_loss 0.0651 - val_accuracy 0.9800 - 3,412 img/s - lr 0.001 - left 0:29
"""
from __future__ import annotations

import sys
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


class ProgressBar:
    """Progress and summary lines for ``train.fit`` (see the module docstring).

    stream : where to write (default ``sys.stdout``)
    tty    : draw the bar (True) or print one line per epoch (False); default: ``stream.isatty()``
    width  : characters of the bar itself
    min_line : without a terminal, at most one epoch line every ``min_line`` seconds (the first and the last
               epochs always print), so a run of thousands of short epochs stays readable
    """

    writer_only = True      # a data-parallel run shows one bar, the writing rank's (callbacks.CallbackList)

    def __init__(self, stream=None, tty: bool | None = None, width: int = 30, min_interval: float = 0.1,
                 min_line: float = 1.0):
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

    def on_epoch_begin(self, epoch, logs):
        self._epoch = epoch + 1
        self._images_per_s = 0.0
        self._last_draw = 0.0
        if self.tty:
            self._write(f"Epoch {epoch + 1}/{self.epochs}\n")

    def on_batch_end(self, batch, info):
        self._images_per_s = info["images_per_s"]
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
        per_batch = info["elapsed"] / done
        eta = format_duration(per_batch * (total - done))
        digits = len(str(total))
        acc = "" if info.get("epoch_accuracy") is None else f"accuracy {info['epoch_accuracy']:.4f} - "
        line = (f"{done:>{digits}}/{total} [{bar}] - ETA {eta} - loss {info['epoch_loss']:.4f} - {acc}"
                f"{info['images_per_s']:,.0f} img/s")
        pad = max(0, self._line_len - len(line))
        self._line_len = len(line)
        self._write("\r" + line + " " * pad)

    def on_epoch_end(self, epoch, logs):
        self._epoch_times.append(logs["time"])
        done = logs["epoch"]
        left = (self.epochs - done) * sum(self._epoch_times) / len(self._epoch_times)
        summary = (f"{logs['time']:.1f}s - {format_metrics(logs)} - {self._images_per_s:,.0f} img/s - "
                   f"lr {logs['lr']:.3g}")
        if self.tty:
            self._write("\r" + " " * self._line_len + "\r")
            self._line_len = 0
            self._write(f"  {summary}" + (f" - left {format_duration(left)}" if done < self.epochs else "") + "\n")
        elif done in (self.start_epoch + 1, self.epochs) or time.perf_counter() - self._last_line >= self.min_line:
            self._last_line = time.perf_counter()
            self._write(f"epoch {done}/{self.epochs} - {summary}"
                        + (f" - left {format_duration(left)}" if done < self.epochs else "") + "\n")


__all__ = ["ProgressBar", "format_duration", "format_metrics"]
