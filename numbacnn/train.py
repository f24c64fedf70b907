"""The training loop (``Trainer``) and ``fit``, ``evaluate``, ``predict``, ``resume`` built on it.

One epoch::

    lr = schedule.lr_for_epoch(epoch)
    for each shuffled batch:   x (host) -> augment(x, rng) -> backend -> forward -> loss
                               -> backward -> optimizer.step         (only the loss and the
                                                                      batch's correct count
                                                                      come back to the host)
    validation -> history entry -> schedule.on_epoch_end -> callbacks.on_epoch_end
                                   (early stopping, checkpoint, history CSV, progress)

Determinism: weights come from ``model.build(seed=...)``; the trainer's
``seed`` seeds one numpy ``Generator`` that shuffles every epoch and is handed
to the augmentation callable; dropout layers derive each step's mask seed from
their base seed and step counter.  The same seeds give the same weights bit
for bit on the CPU.  ``training_state()`` (what ``ModelCheckpoint`` writes
after every epoch) holds the epoch and step counters, the generator state, the
schedule, the dropout counters, the history and the state of every stateful
callback (early stopping), so a run resumed from it continues exactly:
1 epoch + save + load + 1 epoch equals 2 epochs in one run.

Loss on logits: a graph that ends in a layer producing probabilities (a
``Softmax``, as imported ONNX classifiers do) is trained and evaluated with the
cross-entropy on that layer's input, so softmax is never applied twice.

Transfer learning: ``model.freeze(names)`` fixes those layers' parameters and
batch-norm statistics.  With ``precompute_frozen=True`` the fixed part of the
graph (see ``frozen_prefix_split``) runs once over the data and only the rest
(the "head") is trained on its output.
"""
from __future__ import annotations

import math
import time

import numpy as np

from .callbacks import CallbackList, EarlyStopping, ModelCheckpoint
from .compile import compiles, throwaway_copy
from .data.datasets import ArrayDataset, Dataset, as_dataset
from .data.pipeline import BatchStream, augment_batch, batch_seeds
from .distributed import LocalStrategy
from .graph import INPUT, Model
from .losses import get_loss
from .optim import SGD, optimizer_from_state
from .schedules import Constant, schedule_from_json


# ---------------------------------------------------------------- helpers
#: the strategy of a run in one process (``distributed``): every hook passes its values through
LOCAL = LocalStrategy()


def batch_bounds(n: int, batch_size: int, min_batch: int = 2) -> list:
    """[(start, stop)] covering n samples; a final batch smaller than ``min_batch`` (2; twice the ranks of a
    data-parallel run) is folded into the previous one (batch norm cannot train on a single sample)."""
    bounds = [(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < min_batch:
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

    The argmax runs on the backend: only the N indices come back to the host (``readback``: on a GPU
    one synchronisation serves it and every readback queued before, such as the step's losses).
    """
    n = len(y_host)
    p = be.readback(be.argmax(preds.reshape(n, preds.size // n))).get()
    y = np.asarray(y_host)
    t = y if y.ndim == 1 else y.reshape(len(y), -1).argmax(axis=1)
    return int((p == t).sum())


def check_data(name, x, y, model_shape=None):
    """x as C-contiguous float32 (N, ...), checked against y's length and the model's input shape."""
    x = np.asarray(x)
    if x.ndim < 2:
        raise ValueError(f"{name} x must be (N, ...) with N samples, got shape {x.shape}")
    if y is not None and len(y) != len(x):
        raise ValueError(f"{name} has {len(x)} samples but {len(y)} labels")
    if model_shape is not None and tuple(x.shape[1:]) != tuple(model_shape):
        hint = ""
        if x.ndim == 4 and tuple(x.shape[1:]) == tuple(model_shape[1:]) + tuple(model_shape[:1]):
            hint = " (the array looks channels-last: numbacnn takes (N, C, H, W); use x.transpose(0, 3, 1, 2))"
        raise ValueError(f"{name} x shape {x.shape} does not match the model input (N, "
                         f"{', '.join(map(str, model_shape))}){hint}")
    if len(x) == 0:
        raise ValueError(f"{name} is empty")
    return np.ascontiguousarray(x, dtype=np.float32)


# ---------------------------------------------------------------- frozen prefix
def _fixed_nodes(model) -> set:
    """Nodes whose output does not change during training: frozen layers and deterministic parameter-free
    layers (not dropout), all of whose inputs are the model input or fixed nodes."""
    fixed = set()
    for n, layer in model.layers.items():
        constant = not layer.trainable or (not layer.param_shapes and not layer.random)
        if constant and all(i == INPUT or i in fixed for i in model.inputs_of(n)):
            fixed.add(n)
    return fixed


def frozen_prefix_split(model):
    """(prefix node names, boundary node, head Model sharing the trainable layers) or a ValueError saying why.

    The prefix is every fixed node (see ``_fixed_nodes``) of the graph; it must contain a frozen
    layer with parameters, end at a single node that feeds the rest, and leave the output
    trainable.  The head model takes the boundary's output as its input and shares its Layer
    objects (so its parameters) with ``model``.
    """
    layers = model.layers
    if not any(not l.trainable and l.param_shapes for l in layers.values()):
        raise ValueError(f"model {model.name!r}: precompute_frozen needs frozen layers (model.freeze(...))")
    fixed = _fixed_nodes(model)
    if model.output in fixed:
        raise ValueError(f"model {model.name!r}: the output layer {model.output!r} is frozen: nothing to train")
    feeding = set()
    for n in layers:
        if n in fixed:
            continue
        for i in model.inputs_of(n):
            if i == INPUT:
                raise ValueError(f"trainable layer {n!r} reads the model input directly")
            if i in fixed:
                feeding.add(i)
    if len(feeding) != 1:
        raise ValueError(f"the frozen part ends at several nodes ({', '.join(sorted(feeding))}) that feed "
                         f"trainable layers")
    boundary = feeding.pop()
    prefix = [n for n in layers if n in fixed]
    head = Model(model.name + "_head", model.output_shapes[boundary])
    for n, l in layers.items():
        if n not in fixed:
            head.add(l, [INPUT if i == boundary else i for i in model.inputs_of(n)], n)
    head.output = model.output
    head.aux_outputs = {n: w for n, w in model.aux_outputs.items() if n in head}
    head.infer_shapes()          # same shapes: the layers keep their parameters
    head.backend = model.backend
    return prefix, boundary, head


def _batches(data: Dataset, batch_size: int, part=None):
    """The batches (x, y) of ``data`` in order, through the input pipeline with the dataset's workers;
    ``part``: (start, stop), this rank's samples of a sharded evaluation (default: all)."""
    order = np.arange(*(part or (0, len(data))))
    bounds = [order[s:s + batch_size] for s in range(0, len(order), int(batch_size))]
    return BatchStream(lambda j: data.batch(bounds[j]), len(bounds), data.workers)


def _prefix_features(model, boundary, data: Dataset, batch_size=256):
    """(the boundary node's output, the labels) for every sample of ``data`` (evaluation mode), on the host."""
    be, out, ys = model.backend, [], []
    with _batches(data, batch_size) as stream:
        for xb, yb in stream:
            acts = model.forward(be.asarray(xb), until=boundary, inference=True)
            out.append(np.array(be.to_host(acts), dtype=np.float32))
            ys.append(yb)
    return np.concatenate(out), np.concatenate(ys)


def run_prefix(model, prefix, boundary, x, batch_size=256):
    """The boundary node's output for every sample of x (arrays or a ``Dataset``; evaluation mode), on the host."""
    return _prefix_features(model, boundary, as_dataset(x), batch_size)[0]


# ---------------------------------------------------------------- evaluate / predict
def predict(model, x, batch_size: int = 256, strategy=None) -> np.ndarray:
    """The model's raw outputs (N, ...) for x (N, C, H, W) (or a ``Dataset``), in evaluation mode, on the host;
    ``strategy`` (``distributed``): each rank computes its part, every rank gets all of them."""
    data, be, outs = as_dataset(x, None, "predict", model.input_shape), model.backend, []
    strategy = strategy or LOCAL
    with _batches(data, int(batch_size), strategy.shard_range(len(data))) as stream:
        for xb, _ in stream:
            outs.append(np.array(be.to_host(model.forward(be.asarray(xb), inference=True))))
    return _gathered(strategy, outs)


def evaluate(model, x, y=None, batch_size: int = 256, loss="cross_entropy", strategy=None):
    """(mean loss, accuracy, probabilities (N, K) on the host) of ``model``'s output on (x, y) (or on a
    ``Dataset`` x); ``strategy``: sharded over the ranks of a data-parallel run and reduced."""
    return evaluate_data(model, x, y, batch_size, loss, strategy)[:3]


def evaluate_data(model, x, y=None, batch_size: int = 256, loss="cross_entropy", strategy=None):
    """``evaluate``'s (loss, accuracy, probabilities) and the labels of the images scored (a dataset that skips
    unreadable files scores fewer than it holds)."""
    data = as_dataset(x, y, "evaluate", model.input_shape)
    return _scores(model, data, int(batch_size), get_loss(loss), True, [(model.logits_node(), 1.0)], strategy)


def _gathered(strategy, arrays):
    """This rank's ``arrays`` and every other rank's, concatenated in rank order."""
    parts = strategy.gather(np.concatenate(arrays) if arrays else None)
    return np.concatenate([a for a in parts if a is not None])


def _evaluate(model, x, y, batch_size, loss_fn, keep_probs=False, outputs=None):
    """(loss, accuracy, probabilities or None) of the first of ``outputs`` ([(logits node, weight)], default
    ``model.training_outputs()``); the loss is the weighted sum over all of them (the training objective).
    ``x`` is an array (with labels ``y``) or a ``Dataset``."""
    return _scores(model, as_dataset(x, None if isinstance(x, Dataset) else y), batch_size, loss_fn, keep_probs,
                   outputs)[:3]


def _scores(model, data, batch_size, loss_fn, keep_probs=False, outputs=None, strategy=None):
    be, strategy = model.backend, strategy or LOCAL
    outputs = model.training_outputs() if outputs is None else outputs
    nodes = [n for n, _ in outputs]
    total_loss, correct, probs, ys = 0.0, 0, [], []
    with _batches(data, batch_size, strategy.shard_range(len(data))) as stream:
        for xb, yb in stream:
            if not len(yb):
                continue
            acts = model.forward(be.asarray(xb), until=nodes, inference=True)
            targets = _targets_to_backend(be, yb)
            values = [loss_fn.value(be, a, targets) for a in acts]
            total_loss += sum(w * v for (_, w), (v, _) in zip(outputs, values)) * len(xb)
            p = values[0][1]
            correct += _count_correct(be, p, yb) if loss_fn.classification else 0
            ys.append(yb)
            if keep_probs:
                probs.append(np.array(be.to_host(p), dtype=np.float32).reshape(len(xb), -1))
    total_loss, correct, n = strategy.reduce_sums([total_loss, correct, sum(len(b) for b in ys)]).tolist()
    if not n:
        raise strategy.fail_together(ValueError("no image could be read to evaluate"))
    accuracy = int(correct) / n if loss_fn.classification else None
    return total_loss / n, accuracy, (_gathered(strategy, probs) if keep_probs else None), _gathered(strategy, ys)


def evaluate_outputs(model, x, y, batch_size: int = 256, loss="cross_entropy") -> dict:
    """{output node: (loss, accuracy, probabilities)} for the model output and every auxiliary output,
    each on its own (unweighted)."""
    data = as_dataset(x, y, "evaluate", model.input_shape)
    out = {}
    for node in [model.output, *model.aux_outputs]:
        out[node] = _scores(model, data, int(batch_size), get_loss(loss), True, [(model.logits_node(node), 1.0)])[:3]
    return out


# ---------------------------------------------------------------- the trainer
class Trainer:
    """One training run's loop: epochs of shuffled batches, with callbacks around them (Keras' ``fit``).

    model     : a built ``Model``
    optimizer : an ``optim.Optimizer`` (default SGD(lr=0.01)); its ``lr`` is set by the schedule
    schedule  : a ``schedules.Schedule`` (default: constant at the optimizer's lr)
    loss      : a loss name or object (``losses.get_loss``)
    augment   : ``aug(batch_x, rng) -> batch_x`` applied to each training batch on the host, with a generator
                seeded for that batch (``data.pipeline.batch_seeds``: the same whatever the workers)
    callbacks : objects with the hooks of ``callbacks.Callback``
    precompute_frozen : run the fixed (frozen) part of the graph once and train only the head
    workers   : threads making batches ahead of the loop (``data.pipeline``); None: the dataset's own (none
                for arrays, some for image files)
    strategy  : ``distributed.LocalStrategy()`` (one process, the default) or ``MPIStrategy`` (data-parallel:
                ``batch_size`` is the global batch, each rank trains on its part and the gradients are summed)

    ``fit(x, y, epochs, validation_data, initial_state)`` returns the history; x and the validation
    data are arrays or ``data.datasets.Dataset``s (batches read on demand: image files, packed
    files); ``stop_training`` set by a callback ends the run after the current epoch.
    """

    def __init__(self, model, optimizer=None, schedule=None, loss="cross_entropy", batch_size=32, augment=None,
                 seed=0, shuffle=True, callbacks=(), precompute_frozen=False, workers=None, strategy=None):
        self.model = model
        self.strategy = strategy if strategy is not None else LOCAL
        self.backend = model.require_built()
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        self.optimizer = optimizer if optimizer is not None else SGD(lr=0.01)
        self.schedule = schedule if schedule is not None else Constant(self.optimizer.lr)
        self.loss_fn, self.batch_size, self.augment = get_loss(loss), int(batch_size), augment
        self.strategy.check_batch_size(self.batch_size)
        self.seed, self.shuffle, self.precompute_frozen = int(seed), bool(shuffle), bool(precompute_frozen)
        if precompute_frozen and augment is not None:
            raise ValueError("precompute_frozen cannot be combined with augment (features are computed once)")
        self.rng = np.random.default_rng(self.seed)
        self.workers = None if workers is None else int(workers)
        self.epoch, self.step, self.history = 0, 0, []
        self.stop_training = False
        self.callbacks = CallbackList(callbacks, self)

    # ------------------------------------------------------------ state for checkpoints
    def training_state(self) -> dict:
        """Everything a resumed run needs besides the weights and the optimizer (see ``io.state``)."""
        state = {"epoch": self.epoch, "step": self.step, "seed": self.seed, "history": list(self.history),
                 "rng_state": self.rng.bit_generator.state, "schedule": self.schedule.to_json(),
                 "dropout": self.model.random_state(), "batch_size": self.batch_size, "loss": self.loss_fn.name}
        for cb in self.callbacks.stateful():
            cb_state = dict(cb.state_dict())
            if "best_weights" in cb_state:
                state["best_weights"] = cb_state.pop("best_weights")
            state[cb.state_key] = cb_state
        return state

    def restore(self, state: dict):
        """Continue from ``training_state()``'s output (as read back from a checkpoint)."""
        self.epoch, self.step, self.seed = int(state["epoch"]), int(state.get("step", 0)), int(state["seed"])
        self.history = list(state.get("history", []))
        self.rng.bit_generator.state = state["rng_state"]
        if state.get("schedule"):
            saved = schedule_from_json(state["schedule"])
            if type(self.schedule) is type(saved):   # continue its state (plateau counters)
                self.schedule.load_state_dict(saved.state_dict())
        self.model.set_random_state(state.get("dropout") or {})
        for cb in self.callbacks.stateful():
            if state.get(cb.state_key) is not None:
                cb.load_state_dict({**state[cb.state_key], "best_weights": state.get("best_weights")})

    # ------------------------------------------------------------ the loop
    def fit(self, x, y, epochs, validation_data=None, initial_state=None) -> list:
        """Train up to ``epochs`` in total on arrays or a ``Dataset``; returns the history (per-epoch dicts)."""
        data = as_dataset(x, y, "training data", self.model.input_shape)
        val = None if validation_data is None else as_dataset(*validation_data, "validation data",
                                                                  self.model.input_shape)
        if initial_state is not None:
            self.restore(initial_state)
        train_model = self.model
        if self.precompute_frozen:
            _, boundary, train_model = frozen_prefix_split(self.model)
            data = ArrayDataset(*_prefix_features(self.model, boundary, data))
            val = None if val is None else ArrayDataset(*_prefix_features(self.model, boundary, val))
        self.strategy.attach(train_model)
        self.strategy.broadcast_initial_state(train_model)
        bounds = batch_bounds(len(data), self.batch_size, self.strategy.min_batch)
        with self.strategy.agreement():
            self.callbacks.call("on_train_begin", {"epochs": int(epochs), "start_epoch": self.epoch,
                                                   "samples": len(data), "batches": len(bounds),
                                                   "batch_size": self.batch_size,
                                                   "images": len(self.model.input_shape) == 3,
                                                   "val_samples": 0 if val is None else len(val)})
        if self.epoch < int(epochs) and compiles(self.backend):
            self._warm_up(train_model, data)
            self.callbacks.call("on_warm_up_end", {})
        self.stop_training = False
        while self.epoch < int(epochs) and not self.stop_training:
            self._epoch(train_model, data, bounds, val)
        self.callbacks.call("on_train_end", {"history": self.history})
        return self.history

    def _stream(self, data, order, bounds):
        """The epoch's batches (x, y) in order, augmented with one seed per batch drawn from the trainer's generator."""
        batches = [self.strategy.shard(order[s:e]) for s, e in bounds]     # this rank's part of each batch
        seeds = batch_seeds(self.rng, len(batches)) if self.augment is not None else None

        def make(j):
            xb, yb = data.batch(batches[j])
            if seeds is not None and len(yb):
                xb = augment_batch(self.augment, xb, self.strategy.augment_seed(seeds[j]))
            return xb, yb

        return BatchStream(make, len(batches), data.workers if self.workers is None else self.workers)

    def _epoch(self, model, data, bounds, val):
        epoch = self.epoch
        self.optimizer.lr = float(self.schedule.lr_for_epoch(epoch))
        self.callbacks.call("on_epoch_begin", epoch, {"lr": self.optimizer.lr})
        order = self.rng.permutation(len(data)) if self.shuffle else np.arange(len(data))
        t0, seen, loss_sum, correct = time.perf_counter(), 0, 0.0, 0
        ratio = (lambda k, n: k / n) if self.loss_fn.classification else (lambda k, n: None)
        with self._stream(data, order, bounds) as stream:
            for b, (xb, yb) in enumerate(stream):
                if not len(yb):                 # every image of the batch skipped as unreadable
                    self.strategy.empty_part(b)
                    continue
                batch_loss, k, n = self._train_step(model, xb, yb, epoch, b)     # the (global) batch's
                seen, loss_sum, correct = seen + n, loss_sum + batch_loss * n, correct + k
                elapsed = time.perf_counter() - t0
                self.callbacks.call("on_batch_end", b, {
                    "epoch": epoch + 1, "batch": b + 1, "batches": len(bounds), "size": n, "loss": batch_loss,
                    "accuracy": ratio(k, n), "epoch_loss": loss_sum / seen,
                    "epoch_accuracy": ratio(correct, seen), "images_per_s": seen / elapsed if elapsed > 0 else 0.0,
                    "elapsed": elapsed, "lr": self.optimizer.lr})
        if not seen:
            raise self.strategy.fail_together(ValueError(f"no image of the training data could be read in epoch "
                                                         f"{epoch + 1}"))
        logs = {"epoch": epoch + 1, "loss": loss_sum / seen, "accuracy": ratio(correct, seen),
                "val_loss": None, "val_accuracy": None, "lr": self.optimizer.lr}
        if val is not None:
            self.strategy.sync_buffers(model)
            logs["val_loss"], logs["val_accuracy"], _, _ = _scores(model, val, 256, self.loss_fn,
                                                                  strategy=self.strategy)
        logs["time"] = time.perf_counter() - t0
        self.history.append(logs)
        self.schedule.on_epoch_end(epoch, logs)
        self.epoch = epoch + 1
        with self.strategy.agreement():         # a checkpoint the writer failed to write stops every rank
            self.callbacks.call("on_epoch_end", epoch, logs)

    def _train_step(self, model, xb, yb, epoch, b):
        """One forward, backward and optimizer step; returns (loss, correct predictions, images) of the global
        batch (the strategy's backward hook starts summing gradients over the ranks during the backward pass)."""
        be = self.backend
        terms, preds = _forward_backward(model, self.loss_fn, xb, yb, self.strategy.begin_step(model, len(yb)))
        self.strategy.end_step(model)
        self.optimizer.step(model)
        self.step += 1
        # the step's one wait for the device: the argmax and the losses come back together, after the update
        correct = _count_correct(be, preds, yb) if self.loss_fn.classification else 0
        batch_loss, correct, n = self.strategy.reduce_batch(sum(weight * float(loss) for weight, loss in terms),
                                                            correct, len(yb))
        if not math.isfinite(batch_loss):
            raise self.strategy.fail_together(FloatingPointError(
                f"training diverged: loss is {batch_loss} at epoch {epoch + 1}, batch {b + 1} (lower the learning "
                f"rate?)"))
        return batch_loss, correct, n

    def _warm_up(self, model, data):
        """A training step, its accuracy count and the validation scores, run once on a throwaway copy of
        ``model`` (``compile.throwaway_copy``) and the first two samples of ``data`` before the first batch: Numba
        compiles (or loads from its disk cache) every kernel of the run now, outside the timed epochs (the
        progress bar says so when something compiles).  The model, the optimizer and the trainer's generator
        are untouched; nothing is sent between ranks."""
        xb, yb = data.batch(np.arange(min(len(data), 2)))
        if not len(yb):
            return
        if self.augment is not None:
            xb = augment_batch(self.augment, xb, 0)
        copy = throwaway_copy(model)
        _, preds = _forward_backward(copy, self.loss_fn, xb, yb, None)
        type(self.optimizer)(**self.optimizer.get_config()).step(copy)
        if self.loss_fn.classification:
            _count_correct(copy.backend, preds, yb)
        _scores(copy, ArrayDataset(xb, yb), 256, self.loss_fn)


def _forward_backward(model, loss_fn, xb, yb, hook):
    """A training step's forward pass, losses and backward pass (gradients in the layers, ``hook`` called as
    each layer's backward ends); returns ([(loss weight, loss)] per training output, the first's predictions)."""
    be = model.backend
    outputs = model.training_outputs()      # [(logits node, loss weight)]: the output and auxiliary heads
    acts = model.forward(be.asarray(xb), training=True, until=[n for n, _ in outputs])
    targets = _targets_to_backend(be, yb)
    terms, seeds, preds = [], {}, None
    for (node, weight), out in zip(outputs, acts):
        loss, seeds[node], p = loss_fn(be, out, targets, weight)
        terms.append((weight, loss))
        preds = p if preds is None else preds
    model.backward(seeds, input_grad=False, hook=hook)
    return terms, preds


# ---------------------------------------------------------------- fit / resume (functional form)
def validation_split(x, y, fraction, seed):
    """(x_train, y_train, x_val, y_val): a seeded, class-stratified hold-out of ``fraction`` of (x, y)."""
    from .data.splits import holdout
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"val_split must be in (0, 1), got {fraction!r}")
    keep, held = holdout(y, fraction, seed, "val", "training data")
    return x[keep], y[keep], x[held], y[held]


def fit(model, x_train, y_train, *, epochs=1, batch_size=32, optimizer=None, schedule=None,
        loss="cross_entropy", val_split=0.0, validation_data=None, early_stopping=None, monitor="val_loss",
        augment=None, seed=0, callbacks=(), checkpoint=None, shuffle=True, precompute_frozen=False,
        initial_state=None, metadata=None):
    """Train ``model`` (built) on host arrays; returns the history (a ``Trainer`` with the usual callbacks).

    x_train : (N, C, H, W) float32, y_train : (N,) integer labels (or (N, K) float targets for mse)
    val_split       : a seeded, class-stratified fraction of the training data held out for validation,
                      or ``validation_data=(x_val, y_val)``
    early_stopping  : patience in epochs on ``monitor`` (val_loss, val_accuracy, loss or accuracy);
                      the best weights are restored when training ends (``callbacks.EarlyStopping``)
    checkpoint      : path of a model file written atomically after every epoch (``ModelCheckpoint``)
    initial_state   : a saved training state (``load_model(...).training_state``) to continue from
    metadata        : extra values written into every checkpoint (``save_model``'s ``metadata``)
    The other arguments are ``Trainer``'s.
    """
    if validation_data is not None and val_split:
        raise ValueError("fit takes either val_split or validation_data, not both")
    x = x_train if isinstance(x_train, Dataset) else np.asarray(x_train)
    y = x.y if isinstance(x, Dataset) and y_train is None else np.asarray(y_train)
    if val_split:
        x, y, xv, yv = validation_split(x, y, val_split, seed)
        validation_data = (xv, yv)
    cbs = [EarlyStopping(monitor, early_stopping, restore_best_weights=True)] if early_stopping is not None else []
    cbs += list(callbacks or ())
    cbs += [ModelCheckpoint(checkpoint, metadata)] if checkpoint is not None else []
    trainer = Trainer(model, optimizer, schedule, loss, batch_size, augment, seed, shuffle, cbs, precompute_frozen)
    return trainer.fit(x, y, epochs, validation_data, initial_state)


def resume(path, x_train, y_train, *, epochs, backend="cpu", **fit_kwargs):
    """Continue a run from its checkpoint ``path`` up to ``epochs`` in total; returns ``(model, history)``.

    The model, optimizer (hyper-parameters and buffers), schedule, shuffling
    generator, dropout counters, early-stopping state and history come from
    the file; the other ``fit`` arguments (data, augment, val_split, ...)
    should be the ones of the original run for an exact continuation.
    Checkpoints keep going to ``path`` unless ``checkpoint=`` says otherwise.
    """
    from .io.hdf5 import ModelFileError, load_model

    mf = load_model(path, backend=backend)
    ts = mf.training_state
    if ts is None or mf.optimizer_state is None:
        raise ModelFileError(f"model file {path}: no training state to resume from (save it with "
                             f"fit(..., checkpoint=path))")
    fit_kwargs.setdefault("optimizer", optimizer_from_state(mf.optimizer_state))
    if ts.get("schedule"):
        fit_kwargs.setdefault("schedule", schedule_from_json(ts["schedule"]))
    fit_kwargs.setdefault("seed", ts["seed"])
    fit_kwargs.setdefault("checkpoint", path)      # keep checkpointing into the same file
    for key in ("batch_size", "loss"):
        if ts.get(key):
            fit_kwargs.setdefault(key, ts[key])
    if ts.get("early_stopping"):
        fit_kwargs.setdefault("monitor", ts["early_stopping"]["monitor"])
    history = fit(mf.model, x_train, y_train, epochs=epochs, initial_state=ts, **fit_kwargs)
    return mf.model, history


__all__ = ["Trainer", "fit", "evaluate", "evaluate_data", "evaluate_outputs", "predict", "resume",
           "frozen_prefix_split", "run_prefix", "validation_split", "batch_bounds", "check_data"]
