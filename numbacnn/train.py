"""The training loop: ``fit``, ``evaluate``, ``predict`` and ``resume``.

One epoch::

    lr = schedule.lr_for_epoch(epoch)
    for each shuffled batch:   x (host) -> augment(x, rng) -> backend -> forward -> loss
                               -> backward -> optimizer.step         (only loss and the
                                                                      batch's correct count
                                                                      come back to the host)
    validation -> history entry -> schedule.on_epoch_end -> early stopping -> checkpoint

Determinism: weights come from ``model.build(seed=...)``; ``fit``'s ``seed``
seeds one numpy ``Generator`` that shuffles every epoch and is handed to the
augmentation callable; dropout layers derive each step's mask seed from
their base seed and step counter.  The same seeds give the same weights bit
for bit on the CPU.  The checkpoint (an HDF5 model file, written atomically
after every epoch) holds the weights, the optimizer buffers, the schedule, the
generator state, the dropout counters, the early-stopping state and the
history, so ``resume(path, ...)`` continues exactly where the run stopped:
1 epoch + save + load + 1 epoch equals 2 epochs in one run.

Transfer learning: ``model.freeze(names)`` fixes those layers' parameters and
batch-norm statistics (the optimizer skips them, batch norm runs in
evaluation mode).  With ``precompute_frozen=True`` the frozen layers are run
once over the data and only the rest (the "head") is trained on their
output.  This needs the frozen layers to be a prefix of the graph that ends
at a single node: every frozen layer takes only the model input or frozen
layers, exactly one frozen layer feeds the trainable ones, no trainable layer
reads the model input, and the output layer is trainable.  Augmentation
cannot be combined with it (the features are computed once).
"""
from __future__ import annotations

import json
import math
import os
import time

import numpy as np

from .graph import INPUT, Model
from .losses import get_loss
from .optim import SGD, optimizer_from_state
from .schedules import Constant, schedule_from_json


# ---------------------------------------------------------------- helpers
def _batch_bounds(n: int, batch_size: int) -> list:
    """[(start, stop)] covering n samples; a final batch of 1 is folded into the previous one
    (batch norm cannot train on a single sample)."""
    bounds = [(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2] = (bounds[-2][0], n)
        bounds.pop()
    return bounds


def _targets_to_backend(be, y):
    y = np.asarray(y)
    if np.issubdtype(y.dtype, np.integer):
        return be.asarray(y, dtype=np.int64)
    return be.asarray(y, dtype=np.float32)


def _count_correct(be, preds, y_host) -> int:
    """Correct predictions of a batch: argmax of the (N, K) output vs the labels (or the target's argmax).

    The argmax runs on the backend: only the N indices come back to the host.
    """
    n = len(y_host)
    p = be.to_host(be.argmax(preds.reshape(n, preds.size // n)))
    y = np.asarray(y_host)
    t = y if y.ndim == 1 else y.reshape(len(y), -1).argmax(axis=1)
    return int((p == t).sum())


def _check_data(name, x, y, model_shape=None):
    x = np.asarray(x)
    if x.ndim < 2:
        raise ValueError(f"{name} x must be (N, ...) with N samples, got shape {x.shape}")
    if y is not None and len(y) != len(x):
        raise ValueError(f"{name} has {len(x)} samples but {len(y)} labels")
    if model_shape is not None and tuple(x.shape[1:]) != tuple(model_shape):
        raise ValueError(f"{name} x shape {x.shape} does not match the model input (N, "
                         f"{', '.join(map(str, model_shape))})")
    if len(x) == 0:
        raise ValueError(f"{name} is empty")
    return np.ascontiguousarray(x, dtype=np.float32)


def _call(callbacks, hook, *args):
    stop = False
    for cb in callbacks:
        fn = getattr(cb, hook, None)
        if fn is not None and fn(*args):
            stop = True
    return stop


def _dropout_state(model) -> dict:
    """{layer: [base seed, step]} of every layer that draws random masks."""
    return {n: [int(l._base_seed), int(l.step)] for n, l in model.layers.items()
            if hasattr(l, "_base_seed") and hasattr(l, "step")}


def _set_dropout_state(model, state: dict):
    for n, (base, step) in state.items():
        layer = model.layers.get(n)
        if layer is not None:
            layer._base_seed, layer.step = int(base), int(step)


class Callback:
    """Progress and control hooks; every method is optional, a true return value stops training.

    on_train_begin(info)      info: epochs, start_epoch, samples, batches, batch_size, val_samples
    on_epoch_begin(epoch, lr)
    on_batch_end(info)        info: epoch, batch, batches, size, loss, accuracy (this batch),
                              epoch_loss, epoch_accuracy (running means), images_per_s, elapsed, lr
    on_epoch_end(logs)        logs: the epoch's history entry
    on_train_end(history)
    """


# ---------------------------------------------------------------- frozen prefix
def frozen_prefix_split(model):
    """(prefix node names, boundary node, head Model sharing the trainable layers) or a ValueError.

    See the module docstring for the conditions.  The head model takes the
    boundary node's output as its input and shares its Layer objects (and so
    its parameters) with ``model``.
    """
    layers = model.layers
    frozen = [n for n, l in layers.items() if not l.trainable]
    if not frozen:
        raise ValueError(f"model {model.name!r}: precompute_frozen needs frozen layers (model.freeze(...))")
    fset = set(frozen)
    for n in frozen:
        bad = [i for i in model.inputs_of(n) if i != INPUT and i not in fset]
        if bad:
            raise ValueError(f"model {model.name!r}: frozen layer {n!r} takes trainable layer(s) {bad}: the "
                             f"frozen layers must be a prefix of the graph")
    feeding = set()
    for n, l in layers.items():
        if n in fset:
            continue
        for i in model.inputs_of(n):
            if i == INPUT:
                raise ValueError(f"model {model.name!r}: trainable layer {n!r} reads the model input: the "
                                 f"frozen layers must be a prefix of the graph")
            if i in fset:
                feeding.add(i)
    if model.output in fset:
        raise ValueError(f"model {model.name!r}: the output layer {model.output!r} is frozen: nothing to train")
    if len(feeding) != 1:
        raise ValueError(f"model {model.name!r}: the frozen prefix must end at a single node, but "
                         f"{sorted(feeding)} feed the trainable layers")
    boundary = feeding.pop()
    head = Model(model.name + "_head", model.output_shapes[boundary])
    for n, l in layers.items():
        if n not in fset:
            head.add(l, [INPUT if i == boundary else i for i in model.inputs_of(n)], n)
    head.output = model.output
    head.infer_shapes()          # same shapes: the layers keep their parameters
    head.backend = model.backend
    return frozen, boundary, head


def _run_prefix(model, prefix, boundary, x, batch_size):
    """The boundary node's output for every sample of x (evaluation mode), on the host."""
    be, out = model.backend, []
    layers = model.layers
    for s in range(0, len(x), batch_size):
        acts = {INPUT: be.asarray(x[s:s + batch_size])}
        for n in prefix:
            acts[n] = layers[n].forward([acts[i] for i in model.inputs_of(n)], False)
        out.append(np.array(be.to_host(acts[boundary]), dtype=np.float32))
    return np.concatenate(out)


# ---------------------------------------------------------------- evaluate / predict
def predict(model, x, batch_size: int = 256) -> np.ndarray:
    """The model's raw outputs (N, ...) for x (N, C, H, W), in evaluation mode, on the host."""
    x = _check_data("predict", x, None, model.input_shape)
    be = model.backend
    outs = [np.array(be.to_host(model.forward(be.asarray(x[s:s + batch_size]), training=False)))
            for s in range(0, len(x), int(batch_size))]
    return np.concatenate(outs)


def evaluate(model, x, y, batch_size: int = 256, loss="cross_entropy"):
    """(mean loss, accuracy, probabilities (N, K) on the host) of ``model`` on (x, y)."""
    x = _check_data("evaluate", x, y, model.input_shape)
    return _evaluate(model, x, np.asarray(y), int(batch_size), get_loss(loss), keep_probs=True)


def _evaluate(model, x, y, batch_size, loss_fn, keep_probs=False):
    be = model.backend
    total_loss, correct, probs = 0.0, 0, []
    for s in range(0, len(x), batch_size):
        xb, yb = x[s:s + batch_size], y[s:s + batch_size]
        out = model.forward(be.asarray(xb), training=False)
        loss, p = loss_fn.value(be, out, _targets_to_backend(be, yb))
        total_loss += loss * len(xb)
        correct += _count_correct(be, p, yb)
        if keep_probs:
            probs.append(np.array(be.to_host(p), dtype=np.float32))
    n = len(x)
    return total_loss / n, correct / n, (np.concatenate(probs) if keep_probs else None)


# ---------------------------------------------------------------- fit
def fit(model, x_train, y_train, *, epochs=1, batch_size=32, optimizer=None, schedule=None,
        loss="cross_entropy", val_split=0.0, validation_data=None, early_stopping=None, monitor="val_loss",
        augment=None, seed=0, callbacks=(), checkpoint=None, shuffle=True, precompute_frozen=False,
        initial_state=None, metadata=None):
    """Train ``model`` (built) on host arrays; returns the history (list of per-epoch dicts).

    x_train : (N, C, H, W) float32, y_train : (N,) integer labels (or (N, K) float targets for mse)
    epochs          : the total number of epochs (a resumed run continues up to it)
    optimizer       : an ``optim.Optimizer`` (default SGD(lr=0.01)); its ``lr`` is set by the schedule
    schedule        : a ``schedules.Schedule`` (default: constant at the optimizer's lr)
    val_split       : fraction of the training data held out (the last samples) for validation,
                      or ``validation_data=(x_val, y_val)``
    early_stopping  : patience in epochs on ``monitor`` (val_loss, val_accuracy, loss or accuracy);
                      the best weights are restored when training ends
    augment         : ``aug(batch_x, rng) -> batch_x`` applied to each training batch on the host
    callbacks       : objects with ``Callback``'s hooks
    checkpoint      : path of a model file written atomically after every epoch (for ``resume``)
    precompute_frozen : run the frozen prefix once and train only the head (see the module docstring)
    initial_state   : a saved training state (``load_model(...).training_state``) to continue from
    metadata        : extra values written into every checkpoint (``save_model``'s ``metadata``)

    History entries: epoch (1-based), loss, accuracy, val_loss, val_accuracy (None without
    validation data), lr, time (seconds).
    """
    from .io.hdf5 import save_model

    be = model._require_built()
    epochs, batch_size = int(epochs), int(batch_size)
    if epochs < 0 or batch_size < 1:
        raise ValueError(f"fit needs epochs >= 0 and batch_size >= 1, got epochs={epochs}, batch_size={batch_size}")
    loss_fn = get_loss(loss)
    optimizer = optimizer if optimizer is not None else SGD(lr=0.01)
    schedule = schedule if schedule is not None else Constant(optimizer.lr)
    callbacks = list(callbacks or ())
    x = _check_data("training data", x_train, y_train, model.input_shape)
    y = np.asarray(y_train)

    # ---- validation data
    if validation_data is not None and val_split:
        raise ValueError("fit takes either val_split or validation_data, not both")
    if validation_data is not None:
        x_val = _check_data("validation data", validation_data[0], validation_data[1], model.input_shape)
        y_val = np.asarray(validation_data[1])
    elif val_split:
        if not 0.0 < val_split < 1.0:
            raise ValueError(f"val_split must be in (0, 1), got {val_split!r}")
        n_val = int(round(len(x) * val_split))
        if n_val < 1 or n_val >= len(x):
            raise ValueError(f"val_split={val_split} of {len(x)} samples leaves an empty training or validation set")
        x, y, x_val, y_val = x[:-n_val], y[:-n_val], x[-n_val:], y[-n_val:]
    else:
        x_val = y_val = None

    # ---- early stopping
    if early_stopping is not None:
        if monitor not in ("val_loss", "val_accuracy", "loss", "accuracy"):
            raise ValueError(f"monitor must be val_loss, val_accuracy, loss or accuracy, got {monitor!r}")
        if monitor.startswith("val_") and x_val is None:
            raise ValueError(f"early stopping on {monitor} needs val_split or validation_data")
        if int(early_stopping) < 0:
            raise ValueError(f"early_stopping patience must be >= 0, got {early_stopping!r}")
    maximise = monitor.endswith("accuracy")

    # ---- transfer learning: train only the head on precomputed features
    train_model = model
    if precompute_frozen:
        if augment is not None:
            raise ValueError("precompute_frozen cannot be combined with augment (features are computed once)")
        prefix, boundary, train_model = frozen_prefix_split(model)
        x = _run_prefix(model, prefix, boundary, x, 256)
        if x_val is not None:
            x_val = _run_prefix(model, prefix, boundary, x_val, 256)

    # ---- state: fresh, or continued from a checkpoint
    rng = np.random.default_rng(seed)
    st = {"epoch": 0, "step": 0, "seed": int(seed), "best": None, "best_epoch": None, "wait": 0,
          "history": [], "stopped_early": False}
    best_weights = None
    if initial_state is not None:
        st.update({k: initial_state[k] for k in st if k in initial_state})
        rng.bit_generator.state = initial_state["rng_state"]
        if initial_state.get("schedule"):
            saved = schedule_from_json(initial_state["schedule"])
            if type(schedule) is type(saved):   # continue its state (plateau counters)
                schedule.load_state_dict(saved.state_dict())
        _set_dropout_state(model, initial_state.get("dropout") or {})
        best_weights = initial_state.get("best_weights")
    history = st["history"]

    n, bounds = len(x), _batch_bounds(len(x), batch_size)
    _call(callbacks, "on_train_begin", {"epochs": epochs, "start_epoch": st["epoch"], "samples": n,
                                        "batches": len(bounds), "batch_size": batch_size,
                                        "val_samples": 0 if x_val is None else len(x_val)})
    stop = False
    while st["epoch"] < epochs and not stop:
        epoch = st["epoch"]
        optimizer.lr = float(schedule.lr_for_epoch(epoch))
        _call(callbacks, "on_epoch_begin", epoch, optimizer.lr)
        order = rng.permutation(n) if shuffle else np.arange(n)
        t0 = time.perf_counter()
        seen, loss_sum, correct = 0, 0.0, 0
        for b, (s, e) in enumerate(bounds):
            idx = order[s:e]
            xb, yb = x[idx], y[idx]
            if augment is not None:
                xb = augment(xb, rng)
                if tuple(np.shape(xb)) != (e - s,) + tuple(x.shape[1:]):
                    raise ValueError(f"augment returned shape {np.shape(xb)} for a batch of shape "
                                     f"{(e - s,) + tuple(x.shape[1:])}")
                xb = np.ascontiguousarray(xb, dtype=np.float32)
            out = train_model.forward(be.asarray(xb), training=True)
            batch_loss, dout, preds = loss_fn(be, out, _targets_to_backend(be, yb))
            if not math.isfinite(batch_loss):
                raise FloatingPointError(f"training diverged: loss is {batch_loss} at epoch {epoch + 1}, "
                                         f"batch {b + 1} (lower the learning rate?)")
            train_model.backward(dout)
            optimizer.step(train_model)
            st["step"] += 1
            k = _count_correct(be, preds, yb)
            seen += e - s
            loss_sum += batch_loss * (e - s)
            correct += k
            elapsed = time.perf_counter() - t0
            if callbacks:
                _call(callbacks, "on_batch_end", {
                    "epoch": epoch + 1, "batch": b + 1, "batches": len(bounds), "size": e - s,
                    "loss": batch_loss, "accuracy": k / (e - s), "epoch_loss": loss_sum / seen,
                    "epoch_accuracy": correct / seen, "images_per_s": seen / elapsed if elapsed > 0 else 0.0,
                    "elapsed": elapsed, "lr": optimizer.lr})
        logs = {"epoch": epoch + 1, "loss": loss_sum / seen, "accuracy": correct / seen,
                "val_loss": None, "val_accuracy": None, "lr": optimizer.lr}
        if x_val is not None:
            logs["val_loss"], logs["val_accuracy"], _ = _evaluate(train_model, x_val, y_val, 256, loss_fn)
        logs["time"] = time.perf_counter() - t0
        history.append(logs)
        schedule.on_epoch_end(epoch, logs)
        st["epoch"] = epoch + 1

        if early_stopping is not None:
            value = logs[monitor]
            better = st["best"] is None or (value > st["best"] if maximise else value < st["best"])
            if better:
                st["best"], st["best_epoch"], st["wait"] = float(value), epoch + 1, 0
                best_weights = model.get_weights()
            else:
                st["wait"] += 1
                if st["wait"] > int(early_stopping):
                    stop = st["stopped_early"] = True
        if _call(callbacks, "on_epoch_end", logs):
            stop = True
        if checkpoint is not None:
            save_model(checkpoint, model, optimizer, training_state=_training_state(
                st, rng, schedule, model, best_weights, monitor if early_stopping is not None else None,
                batch_size, loss_fn.name), metadata=metadata)

    if early_stopping is not None and best_weights is not None:
        model.set_weights(best_weights)
    _call(callbacks, "on_train_end", history)
    return history


def _training_state(st, rng, schedule, model, best_weights, monitor, batch_size, loss_name) -> dict:
    state = dict(st)
    state.update({"rng_state": rng.bit_generator.state, "schedule": schedule.to_json(),
                  "dropout": _dropout_state(model), "monitor": monitor, "batch_size": batch_size,
                  "loss": loss_name, "best_weights": best_weights})
    json.dumps({k: v for k, v in state.items() if k != "best_weights"})   # fail here, not half-way through a save
    return state


def resume(path, x_train, y_train, *, epochs, backend="cpu", **fit_kwargs):
    """Continue a run from its checkpoint ``path`` up to ``epochs`` in total.

    The model, optimizer (hyper-parameters and buffers), schedule, shuffling
    generator, dropout counters, early-stopping state and history come from
    the file; the other ``fit`` arguments (data, batch_size, augment, ...)
    should be the ones of the original run for an exact continuation.
    Checkpoints keep going to ``path`` unless ``checkpoint=`` says otherwise.
    Returns ``(model, history)``.
    """
    from .io.hdf5 import ModelFileError, load_model

    mf = load_model(path, backend=backend)
    ts = mf.training_state
    if ts is None or mf.optimizer_state is None:
        raise ModelFileError(f"model file {os.fspath(path)}: no training state to resume from "
                             f"(save it with fit(..., checkpoint=path))")
    fit_kwargs.setdefault("optimizer", optimizer_from_state(mf.optimizer_state))
    if ts.get("schedule"):
        fit_kwargs.setdefault("schedule", schedule_from_json(ts["schedule"]))
    fit_kwargs.setdefault("seed", ts.get("seed", 0))
    fit_kwargs.setdefault("checkpoint", path)      # keep checkpointing into the same file
    if ts.get("batch_size"):
        fit_kwargs.setdefault("batch_size", ts["batch_size"])
    if ts.get("monitor"):
        fit_kwargs.setdefault("monitor", ts["monitor"])
    if ts.get("loss"):
        fit_kwargs.setdefault("loss", ts["loss"])
    history = fit(mf.model, x_train, y_train, epochs=epochs, initial_state=ts, **fit_kwargs)
    return mf.model, history


__all__ = ["fit", "evaluate", "predict", "resume", "Callback", "frozen_prefix_split"]
