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
    best_weights   {layer: {name: float32 array}} or None (early stopping's best epoch; its shapes are
                   checked against the architecture, and its values finite, as the file is read)

``check_optimizer_state`` does the same for the optimizer state (class, hyper-parameters,
iterations, and every parameter's slots: the parameter's shape, a step count within the
iterations) and ``check_metadata`` for the metadata (standardisation, class names, training
options, the recorded data split).

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
    kind = "field" if field.startswith(("optimizer_state", "metadata")) else "training state field"
    raise ValueError(f"{kind} {field!r} is {text[:60]}{'...' if len(text) > 60 else ''}: expected {want}")


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
    from ..callbacks import MONITORS
    if es.get("monitor") not in MONITORS:
        _fail("early_stopping.monitor", es.get("monitor"), f"one of {', '.join(MONITORS)}")
    if es.get("patience") is not None and (not _is_int(es["patience"]) or not 0 <= es["patience"] <= MAX_EPOCHS):
        _fail("early_stopping.patience", es["patience"], "an integer >= 0")
    if es.get("best") is not None and not (_is_number(es["best"]) and math.isfinite(es["best"])):
        _fail("early_stopping.best", es["best"], "a finite number or null")
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


# ---------------------------------------------------------------- the optimizer state
def check_optimizer_state(state: dict, param_shapes: dict) -> dict:
    """An optimizer state as read from a file (``Optimizer.state_dict()``'s form), checked against the
    model's parameters (``{"layer/param": shape}``); ValueError names the field."""
    from ..optim import optimizer_from_state
    name, config = state.get("class_name"), state.get("config")
    if isinstance(name, bytes):
        name = state["class_name"] = name.decode("utf-8", "replace")
    if not isinstance(name, str):
        _fail("optimizer_state.class_name", name, "an optimizer name")
    if not isinstance(config, dict) or not all(
            isinstance(v, bool) or (_is_number(v) and math.isfinite(v)) for v in config.values()):
        _fail("optimizer_state.config", config, "a dict of finite numbers and booleans")
    iterations = state.get("iterations", 0)
    if not _is_int(iterations) or not 0 <= iterations <= 2 ** 62:
        _fail("optimizer_state.iterations", iterations, "an integer >= 0")
    state = {**state, "iterations": int(iterations)}
    try:
        opt = optimizer_from_state(state)
    except (ValueError, TypeError, KeyError) as e:
        _fail("optimizer_state", {"class_name": name, "config": config}, f"a valid optimizer ({e})")
    arrays = state.get("arrays", {})
    for key in {k.rpartition("/")[0] for k in arrays}:
        for slot in (*opt.slots, "step"):
            a = arrays.get(f"{key}/{slot}")
            want = () if slot == "step" else param_shapes.get(key)
            if a is None or np.shape(a) != want:
                _fail(f"optimizer_state {key}/{slot}", "missing" if a is None else f"shape {np.shape(a)}",
                      f"shape {want} (the parameter's)" if want != () else "a scalar step count")
        step = int(arrays[f"{key}/step"])
        if not 0 <= step <= state["iterations"]:
            _fail(f"optimizer_state {key}/step", step, f"an integer in [0, iterations = {state['iterations']}]")
    return state


# ---------------------------------------------------------------- the metadata
def _check_standardisation(meta, channels):
    if ("mean" in meta) != ("std" in meta):
        _fail("metadata mean/std", sorted(k for k in ("mean", "std") if k in meta), "both or neither")
    for name in ("mean", "std"):
        a = meta.get(name)
        if a is None:
            continue
        if np.shape(a) != (channels,) or not np.all(np.isfinite(a)):
            _fail(f"metadata {name}", f"{np.shape(a)} array", f"{channels} finite values (one per input channel)")
    if "std" in meta and not np.all(np.asarray(meta["std"]) > 0):
        _fail("metadata std", np.asarray(meta["std"]).tolist(), "standard deviations > 0 (dividing by 0 gives "
                                                                 "infinite inputs)")


def check_metadata(meta: dict, model) -> dict:
    """A model file's metadata, checked where numbacnn uses it: the standardisation (finite, std > 0, one
    value per input channel), the class names, the training options and the recorded data split
    (``data.splits.SplitRecord``).  ValueError names the field."""
    from ..data.splits import SplitRecord
    _check_standardisation(meta, int(model.input_shape[0]))
    names = meta.get("class_names")
    if names is not None and (not isinstance(names, list) or not names or
                              not all(isinstance(n, str) for n in names)):
        _fail("metadata class_names", names, "a non-empty list of strings")
    opts = meta.get("train_options")
    if opts is not None and not isinstance(opts, dict):
        _fail("metadata train_options", opts, "a dict of training options")
    for k in ("test_accuracy", "test_loss"):
        if k in meta and not _is_number(meta[k]):
            _fail(f"metadata {k}", meta[k], "a number")
    if "preprocessing" in meta:                     # how image files become inputs (data.images)
        from ..data.images import Preprocessing
        prep = Preprocessing.from_json(meta["preprocessing"], "metadata")
        if prep.shape != tuple(model.input_shape):
            _fail("metadata preprocessing", meta["preprocessing"], f"images of the model's input shape "
                                                                   f"{tuple(model.input_shape)}")
    SplitRecord.from_metadata(meta, "metadata")
    return meta


__all__ = ["check_training_state", "check_optimizer_state", "check_metadata", "MAX_EPOCHS"]
