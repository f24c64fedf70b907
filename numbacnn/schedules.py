"""Learning-rate schedules, stepped once per epoch.

The training loop calls ``lr = schedule.lr_for_epoch(epoch)`` before each
epoch (epochs count from 0) and ``schedule.on_epoch_end(epoch, logs)`` after
it (``logs`` is that epoch's history entry, e.g. ``{"loss": .., "val_loss": ..}``).
``get_config()`` rebuilds a schedule, ``state_dict()`` / ``load_state_dict()``
carry the JSON-able state a resumed run needs (only reduce-on-plateau has any).

The formulas are PyTorch's: ``StepLR``, ``MultiStepLR``, ``CosineAnnealingLR`` and
``ReduceLROnPlateau`` (relative threshold, no cooldown).
"""
from __future__ import annotations

import math

from .registry import Registry

SCHEDULES = Registry("schedule", normalize=str.lower)


def _register(cls):
    return SCHEDULES.register(cls.name)(cls)


class Schedule:
    name = "base"

    def __init__(self, lr):
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr >= 0):
            raise ValueError(f"{self.name} schedule lr must be a finite number >= 0, got {lr!r}")
        self.lr = float(lr)

    def lr_for_epoch(self, epoch: int) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        """Observe an epoch's metrics (only reduce-on-plateau uses them)."""

    def get_config(self) -> dict:
        return {"lr": self.lr}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        if state:
            raise ValueError(f"{self.name} schedule has no state, got {sorted(state)}")

    def to_json(self) -> dict:
        """``{"name", "config", "state"}``: everything needed to rebuild and resume."""
        return {"name": self.name, "config": self.get_config(), "state": self.state_dict()}

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_config().items())})"


@_register
class Constant(Schedule):
    """The same learning rate every epoch."""

    name = "constant"

    def lr_for_epoch(self, epoch):
        return self.lr


@_register
class StepDecay(Schedule):
    """lr * gamma ** (epoch // step_size)  (PyTorch's StepLR)."""

    name = "step"

    def __init__(self, lr, step_size=10, gamma=0.1):
        super().__init__(lr)
        if int(step_size) < 1:
            raise ValueError(f"step schedule step_size must be >= 1, got {step_size!r}")
        if not gamma > 0:
            raise ValueError(f"step schedule gamma must be > 0, got {gamma!r}")
        self.step_size, self.gamma = int(step_size), float(gamma)

    def lr_for_epoch(self, epoch):
        return self.lr * self.gamma ** (int(epoch) // self.step_size)

    def get_config(self):
        return {"lr": self.lr, "step_size": self.step_size, "gamma": self.gamma}


@_register
class MultiStep(Schedule):
    """lr * gamma ** (number of milestones <= epoch)  (PyTorch's MultiStepLR): e.g. divided by 10 at the
    epochs of 50% and 75% of the run, He et al.'s CIFAR recipe."""

    name = "multistep"

    def __init__(self, lr, milestones=(), gamma=0.1):
        super().__init__(lr)
        try:
            self.milestones = sorted(int(m) for m in milestones)
        except (TypeError, ValueError):
            raise ValueError(f"multistep schedule milestones must be epoch numbers, got {milestones!r}") from None
        if any(m < 1 for m in self.milestones):
            raise ValueError(f"multistep schedule milestones must be >= 1, got {self.milestones}")
        if not gamma > 0:
            raise ValueError(f"multistep schedule gamma must be > 0, got {gamma!r}")
        self.gamma = float(gamma)

    def lr_for_epoch(self, epoch):
        return self.lr * self.gamma ** sum(1 for m in self.milestones if m <= int(epoch))

    def get_config(self):
        return {"lr": self.lr, "milestones": list(self.milestones), "gamma": self.gamma}


@_register
class Cosine(Schedule):
    """min_lr + (lr - min_lr) * (1 + cos(pi * epoch / total_epochs)) / 2  (CosineAnnealingLR).

    Epoch 0 uses ``lr``; the rate reaches ``min_lr`` at ``total_epochs`` and
    stays there afterwards.
    """

    name = "cosine"

    def __init__(self, lr, total_epochs=10, min_lr=0.0):
        super().__init__(lr)
        if int(total_epochs) < 1:
            raise ValueError(f"cosine schedule total_epochs must be >= 1, got {total_epochs!r}")
        if not 0 <= min_lr <= lr:
            raise ValueError(f"cosine schedule min_lr must be in [0, lr={lr}], got {min_lr!r}")
        self.total_epochs, self.min_lr = int(total_epochs), float(min_lr)

    def lr_for_epoch(self, epoch):
        t = min(int(epoch), self.total_epochs) / self.total_epochs
        return self.min_lr + (self.lr - self.min_lr) * (1.0 + math.cos(math.pi * t)) / 2.0

    def get_config(self):
        return {"lr": self.lr, "total_epochs": self.total_epochs, "min_lr": self.min_lr}


@_register
class ReduceOnPlateau(Schedule):
    """Multiply the rate by ``factor`` when ``monitor`` has not improved for ``patience`` epochs.

    ``mode`` is ``min`` or ``max``; ``auto`` picks ``max`` for metrics named
    like accuracy and ``min`` otherwise.  An improvement must beat the best
    value by the relative ``threshold`` (PyTorch's ``threshold_mode='rel'``).
    If the monitored metric is missing from an epoch's logs (no validation
    data for ``val_loss``), ``loss`` is used instead.
    """

    name = "plateau"

    def __init__(self, lr, monitor="val_loss", factor=0.1, patience=10, mode="auto", threshold=1e-4,
                 min_lr=0.0):
        super().__init__(lr)
        if not 0 < factor < 1:
            raise ValueError(f"plateau schedule factor must be in (0, 1), got {factor!r}")
        if int(patience) < 0:
            raise ValueError(f"plateau schedule patience must be >= 0, got {patience!r}")
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"plateau schedule mode must be auto, min or max, got {mode!r}")
        self.monitor, self.factor, self.patience = str(monitor), float(factor), int(patience)
        self.mode, self.threshold, self.min_lr = mode, float(threshold), float(min_lr)
        self.current_lr, self.best, self.wait = self.lr, None, 0

    def _maximise(self):
        return self.mode == "max" or (self.mode == "auto" and "acc" in self.monitor)

    def lr_for_epoch(self, epoch):
        return self.current_lr

    def on_epoch_end(self, epoch, logs):
        value = logs.get(self.monitor)
        if value is None:
            value = logs.get("loss")
        if value is None or not math.isfinite(value):
            return
        if self.best is None:
            improved = True
        elif self._maximise():
            improved = value > self.best * (1 + self.threshold)
        else:
            improved = value < self.best * (1 - self.threshold)
        if improved:
            self.best, self.wait = float(value), 0
            return
        self.wait += 1
        if self.wait > self.patience:
            self.current_lr = max(self.current_lr * self.factor, self.min_lr)
            self.wait = 0

    def get_config(self):
        return {"lr": self.lr, "monitor": self.monitor, "factor": self.factor, "patience": self.patience,
                "mode": self.mode, "threshold": self.threshold, "min_lr": self.min_lr}

    def state_dict(self):
        return {"current_lr": self.current_lr, "best": self.best, "wait": self.wait}

    def load_state_dict(self, state):
        self.current_lr = float(state["current_lr"])
        self.best = None if state.get("best") is None else float(state["best"])
        self.wait = int(state["wait"])


def get_schedule(name: str, lr: float, **kwargs) -> Schedule:
    """A schedule by name: ``constant`` | ``step`` | ``cosine`` | ``plateau``."""
    return SCHEDULES.lookup(name)(lr=lr, **kwargs)


def schedule_from_json(doc: dict) -> Schedule:
    """Rebuild a schedule and its state from ``Schedule.to_json()`` output."""
    cfg = dict(doc["config"])
    s = get_schedule(doc["name"], cfg.pop("lr"), **cfg)
    s.load_state_dict(doc.get("state") or {})
    return s


__all__ = ["Schedule", "Constant", "StepDecay", "MultiStep", "Cosine", "ReduceOnPlateau", "get_schedule",
           "schedule_from_json", "SCHEDULES"]
