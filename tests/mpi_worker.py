"""Run under ``mpiexec -n 2`` by tests/test_mpi.py: a small data-parallel training where rank 1 misbehaves.

    python tests/mpi_worker.py MODE

MODE: ok (train 3 epochs: batch norm per rank, dropout, validation), fail (rank 1 raises at its 3rd
batch), kill (rank 1 kills itself with SIGKILL there), hang (rank 1 sleeps there), agree (rank 1 fails
inside ``agreement()``, as loading data does), search (independent trials spread with assign/collect).
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time

import numpy as np

from numbacnn import distributed
from numbacnn.callbacks import LambdaCallback
from numbacnn.graph import Model
from numbacnn.layers import BatchNorm, Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU
from numbacnn.optim import SGD
from numbacnn.train import Trainer


def misbehave(mode, rank):
    def on_batch_end(batch, logs):
        if rank != 1 or batch != 2:
            return
        if mode == "fail":
            raise ValueError("rank 1 cannot go on (a test failure)")
        if mode == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if mode == "hang":
            time.sleep(3600)

    return LambdaCallback(on_batch_end=on_batch_end)


def small_model():
    return Model.sequential("s", (1, 8, 8), [
        Conv2D(4, 3, padding=1, name="conv"), BatchNorm(name="bn"), ReLU(name="relu"), MaxPool2D(2, name="pool"),
        Flatten(name="flat"), Dropout(0.3, name="drop"), Dense(3, name="fc")]).build("cpu", seed=0)


def main(mode):
    strategy = distributed.from_environment()
    with strategy.guard():
        with strategy.agreement():
            if mode == "agree" and strategy.rank == 1:
                raise ValueError("rank 1 cannot read its data (a test failure)")
        if mode == "search":
            trials = [{"lr": lr} for lr in (0.1, 0.03, 0.01, 0.003, 0.001)]
            done = [(i, {"lr": t["lr"], "rank": strategy.rank}) for i, t in strategy.assign(trials)]
            results = strategy.collect(done)
            if strategy.is_writer:
                print(json.dumps(results))
            return
        rng = np.random.default_rng(0)
        x, y = rng.standard_normal((96, 1, 8, 8)).astype(np.float32), rng.integers(0, 3, 96)
        trainer = Trainer(small_model(), SGD(lr=0.1), batch_size=16, strategy=strategy,
                          callbacks=[misbehave(mode, strategy.rank)])
        history = trainer.fit(x, y, 3, validation_data=(x[:40], y[:40]))
    if strategy.is_writer:
        print("finished", json.dumps([h["val_loss"] for h in history]), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
