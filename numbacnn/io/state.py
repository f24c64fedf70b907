"""The training state of a checkpoint: its schema, checked field by field when a file is read.

A training state is what ``Trainer.training_state()`` returns and ``save_model``
writes under ``/training_state``::

    epoch          int, epochs completed (0 .. MAX_EPOCHS)
    step           int >= 0, optimizer steps taken
    seed           int >= 0, the run's seed
    history        list of per-epoch dicts: epoch (1-based int) and numbers or None
    rng_state      the shuffling Generator's bit-generator state (PCG64)
    schedule       {"name", "config", "state"} of the learning-rate schedule, or None
    dropout        {layer: [base seed, step]}
    batch_size     int >= 1 or None
    loss           a loss name or None
    early_stopping {monitor, patience, best, best_epoch, wait, stopped_epoch} or None
    best_weights   {layer: {name: float32 array}} or None (early stopping's best epoch)

``check_training_state`` returns the state normalised (files written before
early stopping became a callback kept its fields at the top level) or raises a
ValueError naming the field; ``load_model`` turns it into a ``ModelFileError``
naming the file.  Nothing in a file is trusted: an epoch of -5 or 10^18 is
refused here, not discovered by the training loop.
"""
from __future__ import annotations

import math

import numpy as np

MAX_EPOCHS = 1_000_000
_INT_FIELDS = {"epoch": (0, MAX_EPOCHS), "step": (0, 2 ** 62), "seed": (0, 2 ** 63 - 1)}
_OLD_EARLY_STOP = ("monitor", "best", "best_epoch", "wait", "stopped_early")


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_number(v) -> bool:
    return (_is_int(v) or isinstance(v, (float, np.floating))) and not isinstance(v, (bool, np.bool_))


def _fail(field, value, want):
    text = repr(value)
    raise ValueError(f"training state field {field!r} is {text[:60]}{'...' if len(text) > 60 else ''}: "
                     f"expected {want}")


def _check_ints(state):
    for name, (lo, hi) in _INT_FIELDS.items():
        v = state.get(name, 0)
        if not _is_int(v) or not lo <= int(v) <= hi:
            _fail(name, v, f"an integer in [{lo}, {hi}]")
        state[name] = int(v)
    bs = state.get("batch_size")
    if bs is not None and (not _is_int(bs) or not 1 <= int(bs) <= 2 ** 31):
        _fail("batch_size", bs, "an integer >= 1 or null")


def _check_history(state):
    history = state.get("history", [])
    if not isinstance(history, list):
        _fail("history", history, "a list of per-epoch entries")
    for i, h in enumerate(history):
        if not isinstance(h, dict) or not _is_int(h.get("epoch")) or h["epoch"] != i + 1:
            _fail(f"history[{i}]", h, f"an entry with epoch {i + 1}")
        for k, v in h.items():
            if v is not None and not (_is_number(v) and math.isfinite(float(v))):
                _fail(f"history[{i}].{k}", v, "a finite number or null")
    if len(history) != state["epoch"]:
        _fail("history", f"{len(history)} entries", f"one entry per completed epoch ({state['epoch']})")


def _check_rng(state):
    rs = state.get("rng_state")
    if rs is None:
        return
    try:
        g = np.random.Generator(np.random.PCG64())
        g.bit_generator.state = rs
    except (TypeError, ValueError, KeyError, OverflowError) as e:
        _fail("rng_state", rs, f"a PCG64 bit-generator state ({type(e).__name__})")


def _check_schedule(state):
    doc = state.get("schedule")
    if doc is None:
        return
    from ..schedules import schedule_from_json
    try:
        schedule_from_json(doc)
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        _fail("schedule", doc, f"a schedule document ({type(e).__name__}: {e})")


def _check_dropout(state):
    d = state.get("dropout") or {}
    if not isinstance(d, dict) or not all(
            isinstance(v, list) and len(v) == 2 and all(_is_int(a) and 0 <= a < 2 ** 63 for a in v)
            for v in d.values()):
        _fail("dropout", d, "{layer: [base seed, step]} with non-negative integers")
    state["dropout"] = d


def _check_loss(state):
    from ..losses import LOSSES
    loss = state.get("loss")
    if loss is not None and (not isinstance(loss, str) or loss not in LOSSES):
        _fail("loss", loss, f"one of {', '.join(sorted(LOSSES))} or null")


def _check_early_stopping(state):
    if "early_stopping" not in state and state.get("monitor") is not None:   # files before the callback
        state["early_stopping"] = {"monitor": state["monitor"], "best": state.get("best"),
                                   "best_epoch": state.get("best_epoch"), "wait": state.get("wait", 0)}
    for k in _OLD_EARLY_STOP:
        state.pop(k, None)
    es = state.get("early_stopping")
    if es is None:
        return
    if not isinstance(es, dict):
        _fail("early_stopping", es, "a dict")
    if es.get("best") is not None and not _is_number(es["best"]):
        _fail("early_stopping.best", es["best"], "a number or null")
    for k in ("best_epoch", "stopped_epoch"):
        if es.get(k) is not None and (not _is_int(es[k]) or not 1 <= es[k] <= state["epoch"]):
            _fail(f"early_stopping.{k}", es[k], f"an epoch in [1, {state['epoch']}] or null")
    if not _is_int(es.get("wait", 0)) or not 0 <= es.get("wait", 0) <= MAX_EPOCHS:
        _fail("early_stopping.wait", es.get("wait"), "an integer >= 0")


def check_training_state(state) -> dict:
    """The training state, validated and normalised (see the module docstring); ValueError names the field."""
    if not isinstance(state, dict):
        raise ValueError(f"training state is {type(state).__name__}, expected a dict")
    state = dict(state)
    for check in (_check_ints, _check_history, _check_rng, _check_schedule, _check_dropout, _check_loss,
                  _check_early_stopping):
        check(state)
    return state


__all__ = ["check_training_state", "MAX_EPOCHS"]
