"""The kernels a model needs, compiled before it runs (``numbacnn train``, ``evaluate``, ``predict``, ``time``).

Numba compiles a kernel the first time it is called with a new signature (the array types, never their
shapes: a new batch size reuses it) and caches the machine code on disk (``kernels.cpu.cache_dir()``); a
later process loads it in milliseconds.  Before the first batch of a command, a throwaway copy of the model
runs once on a tiny batch, so that every kernel the model needs (and only those) is compiled, or loaded from
the cache, before anything is timed.  When something does compile, one line says so, with a spinner on a
terminal and the seconds it took at its end::

    compiling CPU kernels for lenet5 (first run only; cached in /home/me/numbacnn/kernels/cpu/__pycache__): 9.8s

A warm run (everything in the cache) prints nothing.  ``warm_up_inference`` is the inference pass (evaluate,
predict); the training step's warm-up is ``train.Trainer``'s, announced by the progress bar.
"""
from __future__ import annotations

import contextlib
import sys

import numpy as np

from .losses import get_loss
from .progress import CompileNotice, compile_clock, compile_text


def compiles(backend) -> bool:
    """Whether ``backend`` compiles its kernels on first use (the CPU's Numba kernels, a real GPU's CUDA
    kernels), so that a warm-up pays off; the reference backend and the CUDA simulator compile nothing."""
    from . import config

    return backend.name == "cpu" or (backend.name == "cuda" and not config.CUDASIM)


def throwaway_copy(model):
    """A copy of the built ``model`` on its backend, with zero parameters and the same frozen layers: running
    it compiles the same kernels and leaves the model's weights, statistics and random state untouched."""
    from .graph import Model

    copy = Model.from_config(model.to_config()).build(model.backend, initialize=False)
    frozen = [name for name, layer in model.layers.items() if not layer.trainable]
    if frozen:
        copy.freeze(frozen)
    return copy


@contextlib.contextmanager
def announcing(model, stream=None, tty: bool | None = None):
    """Within the block, the first compilation prints ``compile_text(model)`` on ``stream`` (stdout), with a
    spinner on a terminal; leaving it ends the line with the seconds spent compiling.  Nothing when all loads
    from the cache."""
    stream = sys.stdout if stream is None else stream
    if tty is None:
        isatty = getattr(stream, "isatty", None)
        tty = bool(isatty()) if isatty is not None else False
    clock = compile_clock()
    notice = CompileNotice(stream, tty, compile_text(model, model.backend), clock)
    clock.watch(notice.begin)
    try:
        yield notice
    finally:
        clock.unwatch(notice.begin)
        notice.finish()


def warm_up_inference(model, classify: bool = False, stream=None, tty: bool | None = None, batch: int = 2):
    """Compile (or load) the kernels of ``model``'s inference pass on a copy of it and a batch of ``batch``
    random inputs, announcing a compilation (see ``announcing``); ``classify``: also those of the scores of
    ``evaluate`` (softmax cross-entropy of the logits, argmax)."""
    if not compiles(model.backend):
        return
    with announcing(model, stream, tty):
        copy = throwaway_copy(model)
        be = copy.backend
        x = be.asarray(np.random.default_rng(0).standard_normal((batch,) + tuple(model.input_shape),
                                                                dtype=np.float32))
        copy.forward(x, inference=True)
        if classify:
            logits = copy.forward(x, until=copy.logits_node(), inference=True)
            labels = be.asarray(np.zeros(batch, np.int64), dtype=np.int64)
            _, probs = get_loss("cross_entropy").value(be, logits, labels)
            be.readback(be.argmax(probs.reshape(batch, probs.size // batch))).get()


__all__ = ["announcing", "compiles", "throwaway_copy", "warm_up_inference"]
