"""Callbacks: what happens around the training loop (Keras' callback protocol).

A callback is any object with some of these methods; the ``Trainer`` calls
them in order and sets ``callback.trainer`` (and ``callback.model``, as Keras
does) before training starts::

    on_train_begin(logs)          logs: epochs, start_epoch, samples, batches, batch_size, val_samples
    on_epoch_begin(epoch, logs)   epoch counts from 0; logs: lr
    on_batch_end(batch, logs)     logs: epoch, batch, batches, size, loss, accuracy (this batch),
                                  epoch_loss, epoch_accuracy (running means), images_per_s, elapsed, lr
    on_epoch_end(epoch, logs)     logs: the epoch's history entry (epoch 1-based, loss, accuracy,
                                  val_loss, val_accuracy, lr, time)
    on_train_end(logs)            logs: history (the list of history entries)

A callback stops training by setting ``self.trainer.stop_training = True``.
A callback whose state must survive ``--resume`` (early stopping's best value
and weights) names it with ``state_key`` and implements ``state_dict()`` /
``load_state_dict(state)``; the trainer stores that state in checkpoints.
A callback with ``writer_only = True`` (checkpoints, the history CSV, the
progress bar) runs only in the process that writes: in a data-parallel run
(``numbacnn.distributed``) every rank has the same history, and one writes it.

Here: ``EarlyStopping``, ``ModelCheckpoint``, ``HistoryCSV``, ``LambdaCallback``;
the progress bar is ``numbacnn.progress.ProgressBar``.
"""
from __future__ import annotations

import csv
import math
import os


class Callback:
    """Base class (optional: any object with the hooks works)."""

    state_key: str | None = None
    writer_only = False
    trainer = None
    model = None

    def set_trainer(self, trainer):
        self.trainer, self.model = trainer, trainer.model


class CallbackList:
    """Calls a hook on every callback that has it."""

    def __init__(self, callbacks=(), trainer=None):
        writer = getattr(getattr(trainer, "strategy", None), "is_writer", True)
        self.callbacks = [c for c in callbacks if c is not None and (writer or not getattr(c, "writer_only", False))]
        for c in self.callbacks:
            if hasattr(c, "set_trainer"):
                c.set_trainer(trainer)
            else:
                c.trainer, c.model = trainer, trainer.model

    def call(self, hook, *args):
        for c in self.callbacks:
            fn = getattr(c, hook, None)
            if fn is not None:
                fn(*args)

    def stateful(self):
        return [c for c in self.callbacks if getattr(c, "state_key", None)]


class LambdaCallback(Callback):
    """A callback from plain functions: ``LambdaCallback(on_epoch_end=lambda epoch, logs: ...)``."""

    HOOKS = ("on_train_begin", "on_epoch_begin", "on_batch_end", "on_epoch_end", "on_train_end")

    def __init__(self, **hooks):
        unknown = sorted(set(hooks) - set(self.HOOKS))
        if unknown:
            raise ValueError(f"LambdaCallback: unknown hook(s) {unknown}; known: {', '.join(self.HOOKS)}")
        for name, fn in hooks.items():
            setattr(self, name, fn)


MONITORS = ("val_loss", "val_accuracy", "loss", "accuracy")


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved for ``patience`` epochs; optionally restore the best weights.

    monitor   : val_loss, val_accuracy, loss or accuracy (accuracies are maximised)
    patience  : epochs without improvement tolerated before stopping
    min_delta : an improvement must exceed this
    restore_best_weights : put back the weights of the best epoch when training ends (False, as in Keras;
                           ``numbacnn train --early-stop`` and ``train.fit(early_stopping=...)`` set it)
    log       : a function that receives one line when training stops early / weights are restored

    After training, ``best_epoch`` (1-based), ``best`` and ``stopped_epoch`` tell what happened.
    """

    state_key = "early_stopping"

    def __init__(self, monitor="val_loss", patience=0, min_delta=0.0, restore_best_weights=False, log=None):
        if monitor not in MONITORS:
            raise ValueError(f"EarlyStopping monitor must be one of {', '.join(MONITORS)}, got {monitor!r}")
        if int(patience) < 0:
            raise ValueError(f"EarlyStopping patience must be >= 0, got {patience!r}")
        self.monitor, self.patience, self.min_delta = monitor, int(patience), float(min_delta)
        self.restore_best_weights, self.log = bool(restore_best_weights), log
        self.maximise = monitor.endswith("accuracy")
        self.best = self.best_epoch = self.best_weights = None
        self.wait, self.stopped_epoch = 0, None

    def on_train_begin(self, logs):
        if self.monitor.startswith("val_") and not logs.get("val_samples"):
            raise ValueError(f"early stopping on {self.monitor} needs validation data (a validation split)")

    def _improved(self, value) -> bool:
        if self.best is None:
            return True
        return value > self.best + self.min_delta if self.maximise else value < self.best - self.min_delta

    def on_epoch_end(self, epoch, logs):
        value = logs.get(self.monitor)
        if value is None or not math.isfinite(value):
            return
        if self._improved(value):
            self.best, self.best_epoch, self.wait = float(value), epoch + 1, 0
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            return
        self.wait += 1
        if self.wait > self.patience:
            self.stopped_epoch = epoch + 1
            self.trainer.stop_training = True

    def on_train_end(self, logs):
        if self.stopped_epoch is not None and self.log:
            self.log(f"Early stopping: {self.monitor} did not improve for {self.wait} epoch(s) after epoch "
                     f"{self.best_epoch}; stopped after epoch {self.stopped_epoch}")
        if self.restore_best_weights and self.best_weights is not None:
            last = logs["history"][-1]["epoch"] if logs.get("history") else None
            if last != self.best_epoch:
                self.model.set_weights(self.best_weights)
            if self.log:
                self.log(f"Restored the weights of epoch {self.best_epoch} (best {self.monitor} "
                         f"{self.best:.4f})" + ("" if last != self.best_epoch else ": the last epoch"))

    # ------------------------------------------------------------ resume
    def state_dict(self) -> dict:
        return {"monitor": self.monitor, "patience": self.patience, "best": self.best,
                "best_epoch": self.best_epoch, "wait": self.wait, "stopped_epoch": self.stopped_epoch,
                "best_weights": self.best_weights}

    def load_state_dict(self, state: dict):
        if state.get("monitor", self.monitor) != self.monitor:
            raise ValueError(f"the saved early stopping watched {state['monitor']}, this run watches {self.monitor}")
        self.best, self.best_epoch = state.get("best"), state.get("best_epoch")
        self.wait, self.stopped_epoch = int(state.get("wait") or 0), state.get("stopped_epoch")
        self.best_weights = state.get("best_weights")


class ModelCheckpoint(Callback):
    """Write the model, optimizer and training state to ``path`` after every epoch (atomically).

    ``metadata`` (a dict, or a function of the trainer returning one) is written with it.
    ``--resume``/``train.resume`` continue from such a file exactly.
    """

    writer_only = True

    def __init__(self, path, metadata=None):
        self.path, self.metadata = os.fspath(path), metadata

    def on_epoch_end(self, epoch, logs):
        from .io.hdf5 import save_model
        meta = self.metadata(self.trainer) if callable(self.metadata) else self.metadata
        save_model(self.path, self.model, self.trainer.optimizer, training_state=self.trainer.training_state(),
                   metadata=meta)


class HistoryCSV(Callback):
    """Rewrite ``path`` (epoch, loss, accuracy, val_loss, val_accuracy, lr, time) after every epoch."""

    FIELDS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "time")
    writer_only = True

    def __init__(self, path, previous=()):
        self.path, self.rows = os.fspath(path), list(previous)

    def on_epoch_end(self, epoch, logs):
        from .io.atomic import atomic_write
        self.rows.append(dict(logs))
        atomic_write(self.path, self._write, newline="")

    def _write(self, f):
        w = csv.writer(f)
        w.writerow(self.FIELDS)
        for r in self.rows:
            w.writerow(["" if r.get(k) is None else r.get(k) for k in self.FIELDS])


__all__ = ["Callback", "CallbackList", "LambdaCallback", "EarlyStopping", "ModelCheckpoint", "HistoryCSV",
           "MONITORS"]
