"""The ``numbacnn`` command line (click).

    numbacnn train [--model lenet5] [--data builtin] [--epochs N] ... [--out model.h5]
    numbacnn evaluate MODEL.h5 --data SPEC [--json FILE] [--roc FILE.csv]
    numbacnn predict MODEL.h5 INPUT... [--top-k 3] [--csv FILE] [--save-outputs OUT.npz]
    numbacnn summary MODEL          numbacnn time MODEL          numbacnn models
    numbacnn import-onnx MODEL.onnx --out MODEL.h5      numbacnn export-onnx MODEL.h5 --out MODEL.onnx

Errors: every problem a user can cause (a missing or corrupt file, an unknown
model, bad data, an option out of range, shapes that do not fit) ends with
one line ``Error: ...`` on stderr and exit status 1 (2 for usage errors);
anything unexpected prints one line too, and ``NUMBACNN_DEBUG=1`` shows the
traceback.  The handler lives in ``_CLI.main`` so that click's ``CliRunner``
sees exactly what a shell sees.

Model files written by ``train`` carry, besides the graph and weights, a
``/metadata`` group: ``class_names``, ``train_options`` (so ``--resume`` can
rebuild the same data and options), ``test_accuracy`` and, with
``--standardize``, the per-channel ``mean``/``std`` that evaluate and predict
apply to their inputs.  Training checkpoints every epoch into
``<out stem>.ckpt.h5`` and writes ``--out`` only when the run succeeds, so a
failed or interrupted run never replaces a good model file.
"""
from __future__ import annotations

import csv
import json
import os
import sys
import time
import traceback

import click
import numpy as np

from . import __version__, config

DEVICES = ("cpu", "cuda", "auto")
AUGMENTS = ("flip", "contrast", "zoom", "noise")
DEFAULT_LR = {"sgd": 0.01, "adam": 1e-3}


# ====================================================================== errors
def _one_line(msg) -> str:
    return " ".join(str(msg).split())


def _fail(msg, code=1):
    click.echo(f"Error: {_one_line(msg)}", err=True)
    sys.exit(code)


class _CLI(click.Group):
    """A click group whose ``main`` turns every exception into one ``Error:`` line."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.Abort:
            _fail("interrupted", 130)
        except click.ClickException as e:
            msg = e.format_message()
            ctx = getattr(e, "ctx", None)
            if isinstance(e, click.UsageError) and ctx is not None:
                msg += f" (see '{ctx.command_path} --help')"
            _fail(msg, e.exit_code)
        except (ValueError, OSError, ArithmeticError) as e:
            if config.DEBUG:
                traceback.print_exc()
            _fail(e if str(e) else type(e).__name__)
        except Exception as e:  # noqa: BLE001 - the whole point: no traceback for users
            if config.DEBUG:
                traceback.print_exc()
            _fail(f"unexpected {type(e).__name__}: {e} (run with NUMBACNN_DEBUG=1 to see the traceback)")
        sys.exit(rv if isinstance(rv, int) else 0)


# ====================================================================== shared helpers
def _backend(device):
    from .backends import get_backend
    try:
        return get_backend(device)
    except RuntimeError as e:
        raise click.BadParameter(f"{device}: {e}", param_hint="'--device'") from None


def _stem(path) -> str:
    root, ext = os.path.splitext(os.fspath(path))
    return root if ext.lower() in (".h5", ".hdf5") else os.fspath(path)


def _check_writable(path, option):
    """Fail before any work when ``path`` cannot be written (a directory, or no such parent directory)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise click.BadParameter(f"{path} is a directory", param_hint=option)
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise click.BadParameter(f"{path}: directory {parent} does not exist", param_hint=option)


def _shape_option(value, option="'--input-shape'"):
    if value is None:
        return None
    try:
        shape = tuple(int(v) for v in value.replace("x", ",").split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not C,H,W (e.g. 3,32,32)", param_hint=option) from None
    if len(shape) != 3 or min(shape) < 1:
        raise click.BadParameter(f"{value!r} must be three positive integers C,H,W", param_hint=option)
    return shape


def _num_outputs(model) -> int:
    return int(np.prod(model.output_shapes[model.output]))


def _model_from_spec(spec, input_shape=None, num_classes=None):
    """An unbuilt Model from a zoo name or a ``.json`` architecture (``.h5`` goes through load_model)."""
    from .graph import Model
    from .models import ZOO, build_model
    if spec.lower().endswith(".json"):
        if not os.path.isfile(spec):
            raise ValueError(f"model architecture {spec}: no such file")
        return Model.from_json_file(spec)
    if spec in ZOO:
        kwargs = {}
        if input_shape is not None:
            kwargs["input_shape"] = tuple(input_shape)
        if num_classes is not None:
            kwargs["num_classes"] = int(num_classes)
        return build_model(spec, **kwargs)
    if os.path.exists(spec):
        raise ValueError(f"model {spec}: expected a zoo name, a .json architecture or an .h5 model file")
    raise ValueError(f"unknown model {spec!r}: use a zoo name ({', '.join(ZOO)}), a .json architecture "
                     f"or an .h5 model file (see 'numbacnn models')")


def _is_h5(spec) -> bool:
    return os.fspath(spec).lower().endswith((".h5", ".hdf5"))


def _load_any_model(spec, backend, input_shape=None, num_classes=None, seed=0):
    """(built Model, metadata dict) from a zoo name, .json or .h5."""
    if _is_h5(spec):
        from .io.hdf5 import load_model
        mf = load_model(spec, backend=backend)
        return mf.model, mf.metadata
    model = _model_from_spec(spec, input_shape, num_classes)
    model.build(backend, seed=seed)
    return model, {}


def _class_names(meta, k, fallback=None):
    for names in (meta.get("class_names"), fallback):
        if names is not None and len(names) == k:
            return [str(n) for n in names]
    return [str(i) for i in range(k)]


def _check_fits(model, model_label, x, y, data_label):
    """One clear error when the data does not fit the model's input or its number of outputs."""
    shape = tuple(int(s) for s in x.shape[1:])
    if shape != tuple(model.input_shape):
        raise ValueError(f"model {model_label} takes inputs of shape {tuple(model.input_shape)} but {data_label} "
                         f"has images of shape {shape}")
    k = _num_outputs(model)
    if y is not None and len(y) and int(y.max()) >= k:
        raise ValueError(f"model {model_label} has {k} outputs but {data_label} has labels up to {int(y.max())}")


def _load_part(spec, prefer):
    """(x, y, names) of a dataset's ``prefer`` part ("train"/"test") when it has one, else all of it."""
    from .data import DataError, load_dataset
    try:
        return load_dataset(spec, prefer)
    except DataError as e:
        if f"has no {prefer} part" not in str(e):
            raise
    return load_dataset(spec, "all")


# ====================================================================== the group
@click.group(cls=_CLI, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="numbacnn")
def cli():
    """numbacnn: train, evaluate and run convolutional networks whose kernels are Numba code.

    Start with 'numbacnn train' (no options: LeNet-5 on the built-in shapes
    dataset, about a minute), then 'numbacnn evaluate model.h5 --data builtin'.
    Set NUMBACNN_DEBUG=1 to see Python tracebacks of unexpected errors.
    """


def main():
    """Console-script entry point (``numbacnn``)."""
    cli.main(prog_name="numbacnn")


device_option = click.option("--device", type=click.Choice(DEVICES), default=config.DEVICE, show_default=True,
                              help="Where to compute: cpu, cuda (an NVIDIA GPU), or auto (cuda when present). "
                                   "Default from NUMBACNN_DEVICE.")


# ====================================================================== train
class HistoryCSV:
    """Callback: rewrite ``path`` (epoch, loss, accuracy, val_loss, val_accuracy, lr, time) after every epoch."""

    FIELDS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "time")

    def __init__(self, path, previous=()):
        self.path, self.rows = os.fspath(path), list(previous)

    def on_epoch_end(self, logs):
        self.rows.append(dict(logs))
        tmp = self.path + ".tmp"
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(self.FIELDS)
            for r in self.rows:
                w.writerow(["" if r.get(k) is None else r.get(k) for k in self.FIELDS])
        os.replace(tmp, self.path)


def _validate_augment(ctx, param, value):
    if not value:
        return ""
    names = [s.strip() for s in value.split(",") if s.strip()]
    bad = [n for n in names if n not in AUGMENTS]
    if bad:
        raise click.BadParameter(f"unknown augmentation {', '.join(bad)} (choose from {', '.join(AUGMENTS)})")
    return ",".join(names)


def _make_schedule(opts, lr):
    from .schedules import get_schedule
    sched = {"constant": {}, "cosine": {"total_epochs": opts["epochs"]},
             "step": {"step_size": opts["lr_step"] or max(1, opts["epochs"] // 3), "gamma": opts["lr_factor"]},
             "plateau": {"monitor": "val_loss" if opts["val_split"] else "loss", "factor": opts["lr_factor"],
                         "patience": opts["lr_patience"]}}[opts["schedule"]]
    return get_schedule(opts["schedule"], lr, **sched)


# options a resumed run takes from the model file unless given again on the command line
_RESUMABLE = ("model", "data", "test_data", "test_split", "epochs", "batch_size", "optimizer", "lr", "momentum",
              "nesterov", "weight_decay", "l1", "schedule", "lr_step", "lr_factor", "lr_patience", "augment",
              "val_split", "early_stop", "monitor", "freeze", "init_from", "seed", "standardize")


@cli.command()
@click.option("--model", "model_spec", default="lenet5", show_default=True,
              help="A zoo name (see 'numbacnn models'; adapted to the data's image shape and classes), a .json "
                   "architecture, or an .h5 model file to fine-tune.")
@click.option("--data", default="builtin", show_default=True,
              help="builtin (generated 28x28 gray shapes, 12,000 images), builtin:rgb (32x32 colour), a directory of "
                   "MNIST-style IDX files, a CIFAR-10 binary directory, or an .npz file with arrays images, labels "
                   "(and optionally class_names).")
@click.option("--test-data", default=None,
              help="Dataset to test on (same forms as --data). Default: the data's own test part (IDX, CIFAR-10), "
                   "else a seeded stratified held-out split of --data.")
@click.option("--test-split", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.2,
              show_default=True, help="Fraction of --data held out for testing when it has no test part.")
@click.option("--epochs", type=click.IntRange(min=1), default=4, show_default=True,
              help="Training epochs (in total: a resumed run continues up to this number).")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--optimizer", type=click.Choice(["sgd", "adam"]), default="adam", show_default=True)
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=None,
              help="Learning rate (default: 0.001 for adam, 0.01 for sgd).")
@click.option("--momentum", type=click.FloatRange(0, 1, max_open=True), default=0.9, show_default=True,
              help="SGD momentum.")
@click.option("--nesterov", is_flag=True, help="Nesterov momentum (SGD).")
@click.option("--weight-decay", type=click.FloatRange(0), default=0.0, show_default=True,
              help="L2 penalty on weights (not biases): adds weight_decay * W to the gradient.")
@click.option("--l1", type=click.FloatRange(0), default=0.0, show_default=True,
              help="L1 penalty on weights: adds l1 * sign(W) to the gradient.")
@click.option("--schedule", type=click.Choice(["constant", "step", "cosine", "plateau"]), default="cosine",
              show_default=True,
              help="Learning-rate schedule per epoch: constant; step (x --lr-factor every --lr-step epochs); "
                   "cosine (down to 0 at the last epoch); plateau (x --lr-factor after --lr-patience epochs "
                   "without improvement of val_loss, or loss without --val-split).")
@click.option("--lr-step", type=click.IntRange(min=1), default=None,
              help="Epochs between step decays (default: a third of --epochs).")
@click.option("--lr-factor", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.1,
              show_default=True, help="Decay factor of the step and plateau schedules.")
@click.option("--lr-patience", type=click.IntRange(min=0), default=2, show_default=True,
              help="Plateau schedule patience in epochs.")
@click.option("--augment", default="", callback=_validate_augment,
              help="Comma-separated training augmentations: flip, contrast, zoom, noise.")
@click.option("--val-split", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True,
              help="Fraction of the training part used for validation after each epoch (0: none).")
@click.option("--early-stop", "early_stop", type=click.IntRange(min=0), default=None, metavar="PATIENCE",
              help="Stop after PATIENCE epochs without improvement of --monitor; keep the best weights.")
@click.option("--monitor", type=click.Choice(["val_loss", "val_accuracy", "loss", "accuracy"]), default="val_loss",
              show_default=True, help="Metric watched by --early-stop (val_* need --val-split).")
@click.option("--freeze", default=None, metavar="NAMES",
              help="Comma-separated layer names whose parameters stay fixed (see 'numbacnn summary MODEL').")
@click.option("--init-from", type=click.Path(dir_okay=False), default=None, metavar="FILE.h5",
              help="Copy weights from a model file into layers with the same name and shapes (others are "
                   "reported as skipped).")
@click.option("--resume", type=click.Path(dir_okay=False), default=None, metavar="FILE.h5",
              help="Continue a run from its model or checkpoint file exactly (data, options, optimizer state and "
                   "schedule come from the file; options given again override them: a larger --epochs, or "
                   "--schedule/--lr for a new schedule).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seeds the weights, the held-out split, shuffling and augmentation.")
@click.option("--standardize", is_flag=True,
              help="Standardise images per channel with the training part's mean and std (stored in the model "
                   "file and applied by evaluate and predict).")
@device_option
@click.option("--out", default=None, metavar="FILE.h5",
              help="Model file to write (default model.h5, or the --resume file). The history goes to "
                   "<stem>.history.csv beside it.")
@click.pass_context
def train(ctx, **opts):
    """Train a model and test it; write the model file and its history CSV.

    With no options: LeNet-5 on the built-in dataset (9,600 training images,
    2,400 held out), 4 epochs of Adam with a cosine schedule, then the test
    accuracy; writes model.h5 and model.history.csv.
    """
    from click.core import ParameterSource

    from .data import channel_stats, load_splits, make_augment, standardize
    from .io.hdf5 import load_model, load_weights_by_name, save_model
    from .optim import get_optimizer, optimizer_from_state
    from .progress import ProgressBar
    from .train import evaluate, fit, frozen_prefix_split, resume

    given = {k for k in opts if ctx.get_parameter_source(k) == ParameterSource.COMMANDLINE}
    be = _backend(opts["device"])

    # ---- a resumed run: the options of the original run, overridden by those given again
    resumed = None
    if opts["resume"]:
        for bad in ("model_spec", "init_from"):
            if bad in given:
                raise click.UsageError(f"--resume continues the file's model: it cannot be combined with "
                                       f"--{bad.replace('_spec', '').replace('_', '-')}")
        resumed = load_model(opts["resume"], backend=be)
        if resumed.training_state is None or resumed.optimizer_state is None:
            raise ValueError(f"{opts['resume']}: has no training state to resume from (write one with "
                             f"'numbacnn train')")
        saved = resumed.metadata.get("train_options") or {}
        for k in _RESUMABLE:
            key = "model_spec" if k == "model" else k
            if key not in given and k in saved:
                opts[key] = saved[k]
        if opts["out"] is None:
            opts["out"] = opts["resume"]
        click.echo(f"Resuming {opts['resume']} after epoch {resumed.training_state.get('epoch', 0)}")
    out = opts["out"] or "model.h5"
    _check_writable(out, "'--out'")
    if opts["early_stop"] is not None and opts["monitor"].startswith("val_") and not opts["val_split"]:
        raise click.UsageError(f"--early-stop watching {opts['monitor']} needs --val-split (or --monitor loss)")
    if opts["optimizer"] == "adam" and ({"momentum", "nesterov"} & given):
        raise click.UsageError("--momentum and --nesterov apply to --optimizer sgd")
    lr = opts["lr"] if opts["lr"] is not None else DEFAULT_LR[opts["optimizer"]]
    augment = make_augment(opts["augment"]) if opts["augment"] else None

    # ---- data
    t_start = time.perf_counter()
    if opts["test_data"]:
        x_tr, y_tr, names = _load_part(opts["data"], "train")
        x_te, y_te, _ = _load_part(opts["test_data"], "test")
        test_label = f"--test-data {opts['test_data']}"
        mean = std = None
        if opts["standardize"]:
            mean, std = channel_stats(x_tr)
            x_tr, x_te = standardize(x_tr, mean, std), standardize(x_te, mean, std)
    else:
        s = load_splits(opts["data"], test_fraction=opts["test_split"], seed=opts["seed"],
                        standardize_images=opts["standardize"])
        x_tr, y_tr, x_te, y_te, names, mean, std = (s.x_train, s.y_train, s.x_test, s.y_test, s.class_names,
                                                    s.mean, s.std)
        test_label = "the test part" if s.predefined else f"the held-out split ({opts['test_split']:g})"
    data_label = f"--data {opts['data']}"
    k = max(len(names), int(max(y_tr.max(), y_te.max())) + 1)
    names = _class_names({}, k, names)

    # ---- model
    if resumed is not None:
        model, model_label = resumed.model, opts["resume"]
    else:
        model_label = opts["model_spec"]
        model, meta = _load_any_model(opts["model_spec"], be, input_shape=x_tr.shape[1:], num_classes=k,
                                      seed=opts["seed"])
        names = _class_names(meta, _num_outputs(model), names)
    _check_fits(model, model_label, x_tr, y_tr, data_label)
    _check_fits(model, model_label, x_te, y_te, test_label if opts["test_data"] else data_label)
    names = _class_names({}, _num_outputs(model), names)
    if opts["freeze"] and resumed is None:
        model.freeze([n.strip() for n in opts["freeze"].split(",") if n.strip()])
    if opts["init_from"] and resumed is None:
        loaded, skipped = load_weights_by_name(model, opts["init_from"])
        click.echo(f"init-from {opts['init_from']}: loaded {len(loaded)} layer(s)"
                   + (f" ({', '.join(loaded)})" if loaded else ""))
        for layer, why in skipped:
            click.echo(f"  skipped {layer}: {why}")
    precompute = False
    if augment is None and any(not layer.trainable for layer in model.layers.values()):
        try:
            frozen_prefix_split(model)
            precompute = True         # run the frozen prefix once, train only the head
        except ValueError:
            pass

    # ---- optimizer and schedule
    if resumed is None:
        kw = {"lr": lr, "weight_decay": opts["weight_decay"], "l1": opts["l1"]}
        if opts["optimizer"] == "sgd":
            kw.update(momentum=opts["momentum"], nesterov=opts["nesterov"])
        optimizer = get_optimizer(opts["optimizer"], **kw)
        schedule = _make_schedule(opts, lr)
    else:
        optimizer = optimizer_from_state(resumed.optimizer_state)
        schedule = None
        if given & {"schedule", "lr", "lr_step", "lr_factor", "lr_patience"}:   # a new schedule was asked for
            schedule = _make_schedule(opts, lr)

    train_options = {k: opts["model_spec" if k == "model" else k] for k in _RESUMABLE}
    train_options["lr"] = lr
    for key in ("data", "test_data", "init_from", "model"):     # paths keep working from another directory
        if train_options[key] and os.path.exists(train_options[key]):
            train_options[key] = os.path.abspath(train_options[key])
    metadata = {"class_names": names, "train_options": train_options, "library_version": __version__}
    if mean is not None:
        metadata.update(mean=np.asarray(mean, np.float32), std=np.asarray(std, np.float32))

    stem = _stem(out)
    ckpt, history_path = stem + ".ckpt.h5", stem + ".history.csv"
    previous = resumed.training_state.get("history", []) if resumed is not None else []
    callbacks = [ProgressBar(), HistoryCSV(history_path, previous)]
    click.echo(f"Model {model.name} ({model.count_params()[0]:,} parameters) on {be.name}; data {opts['data']}: "
               f"{len(x_tr):,} training images {tuple(x_tr.shape[1:])}, {len(x_te):,} test images, {k} classes "
               f"({time.perf_counter() - t_start:.1f}s to load)")
    common = dict(batch_size=opts["batch_size"], optimizer=optimizer, val_split=opts["val_split"],
                  early_stopping=opts["early_stop"], monitor=opts["monitor"], augment=augment,
                  callbacks=callbacks, checkpoint=ckpt, precompute_frozen=precompute, metadata=metadata)
    if resumed is not None and schedule is not None:
        common["schedule"] = schedule
    try:
        with np.errstate(all="ignore"):   # divergence is reported by fit itself, not by numpy warnings
            if resumed is None:
                history = fit(model, x_tr, y_tr, epochs=opts["epochs"], schedule=schedule, seed=opts["seed"],
                              **common)
            else:
                model, history = resume(opts["resume"], x_tr, y_tr, epochs=opts["epochs"], backend=be, **common)
    except KeyboardInterrupt:
        click.echo("", err=True)
        if os.path.exists(ckpt):
            _fail(f"interrupted; the last completed epoch is in {ckpt} (continue with: numbacnn train --resume "
                  f"{ckpt} --out {out}); {out} was not written", 130)
        _fail(f"interrupted before the first epoch ended; {out} was not written", 130)
    except (ArithmeticError, ValueError) as e:
        kept = f"; the last completed epoch is in {ckpt}" if os.path.exists(ckpt) else ""
        raise type(e)(f"{e}{kept}; {out} was not written") from None

    # ---- test, then write the model file (training state from the last checkpoint, for --resume)
    test_loss, test_acc, _ = evaluate(model, x_te, y_te, batch_size=256)
    metadata.update(test_accuracy=float(test_acc), test_loss=float(test_loss))
    if os.path.exists(ckpt):
        ck = load_model(ckpt, backend="reference")
        state, opt_state = ck.training_state, ck.optimizer_state
    else:                          # nothing trained (a resumed run already at --epochs)
        state, opt_state = resumed.training_state, resumed.optimizer_state
    save_model(out, model, opt_state, training_state=state, metadata=metadata)
    if os.path.exists(ckpt):
        os.remove(ckpt)
    total = sum(h["time"] for h in history[len(previous):])
    click.echo(f"Test accuracy {test_acc:.4f} (loss {test_loss:.4f}) on {len(x_te):,} images of {test_label}")
    click.echo(f"Wrote {out} and {history_path} ({len(history) - len(previous)} epoch(s) in {total:.1f}s, "
               f"{time.perf_counter() - t_start:.1f}s in all)")


# ====================================================================== evaluate
@cli.command()
@click.argument("model_file", metavar="MODEL.h5")
@click.option("--data", required=True, help="Dataset (same forms as 'train --data').")
@click.option("--split", type=click.Choice(["auto", "test", "all"]), default="auto", show_default=True,
              help="Which images: test = the data's own test part, or the held-out split recorded in the model "
                   "file when it was trained on this data; all = every image; auto = test when there is one, "
                   "else all.")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--json", "json_path", default=None, metavar="FILE", help="Also write the report as JSON.")
@click.option("--roc", "roc_path", default=None, metavar="FILE.csv",
              help="Write the one-vs-rest ROC points (class, threshold, fpr, tpr).")
@device_option
def evaluate(model_file, data, split, batch_size, json_path, roc_path, device):
    """Accuracy, per-class precision/recall/specificity/F1/AUC and the confusion matrix of MODEL.h5 on --data."""
    from .data import standardize
    from .io.hdf5 import load_model
    from .metrics import classification_report, format_report
    from .train import evaluate as evaluate_model

    for p, opt in ((json_path, "'--json'"), (roc_path, "'--roc'")):
        if p:
            _check_writable(p, opt)
    mf = load_model(model_file, backend=_backend(device))
    model, meta = mf.model, mf.metadata
    x, y, names, part = _evaluation_data(data, split, meta)
    _check_fits(model, model_file, x, y, f"--data {data}")
    if "mean" in meta:
        x = standardize(x, meta["mean"], meta["std"])
    loss, acc, probs = evaluate_model(model, x, y, batch_size=batch_size)
    names = _class_names(meta, probs.shape[1], names)
    report = classification_report(y, probs, names, include_roc=bool(roc_path))
    report["loss"] = float(loss)
    click.echo(f"{model_file} on {data} ({part}): loss {loss:.4f}")
    click.echo(format_report(report))
    if json_path:
        doc = {k: v for k, v in report.items() if k != "roc"}
        with open(json_path, "w") as f:
            json.dump(doc, f, indent=2)
        click.echo(f"Wrote {json_path}")
    if roc_path:
        with open(roc_path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["class", "threshold", "fpr", "tpr"])
            for c in report["roc"]:
                for t, fp, tp in zip(c["thresholds"], c["fpr"], c["tpr"]):
                    w.writerow([c["name"], "inf" if t is None else t, "" if fp is None else fp,
                                "" if tp is None else tp])
        click.echo(f"Wrote {roc_path}")


def _evaluation_data(spec, split, meta):
    """(x, y, class names, description of the part) for evaluate's --split."""
    from .data import DataError, load_dataset, load_splits
    if split == "all":
        x, y, names = load_dataset(spec, "all")
        return x, y, names, f"all {len(x):,} images"
    try:
        x, y, names = load_dataset(spec, "test")
        return x, y, names, f"its test part, {len(x):,} images"
    except DataError as e:
        if "has no test part" not in str(e):
            raise
    opts = meta.get("train_options") or {}
    same = opts.get("data") is not None and not opts.get("test_data") and (
        opts["data"] == spec or (os.path.exists(spec) and os.path.abspath(spec) == opts["data"]))
    if same:
        s = load_splits(spec, test_fraction=opts["test_split"], seed=opts["seed"])
        return s.x_test, s.y_test, s.class_names, (f"the held-out split of training ({opts['test_split']:g}, "
                                                   f"seed {opts['seed']}), {len(s.x_test):,} images")
    if split == "test":
        raise DataError(f"{spec}: has no test part and the model was not trained on it with a held-out split "
                        f"(use --split all)")
    x, y, names = load_dataset(spec, "all")
    return x, y, names, f"all {len(x):,} images"


# ====================================================================== predict
def _read_inputs(paths, input_shape, raw):
    """(images (N, C, H, W) float32, labels for each image) from .npz, IDX and image files."""
    from .data import DataError, load_image, read_idx
    from .data.loaders import as_images
    arrays, labels = [], []
    for p in paths:
        low = p.lower()
        if not os.path.exists(p):
            raise DataError(f"{p}: no such file")
        if os.path.isdir(p):
            raise DataError(f"{p}: is a directory (give .npz, IDX or image files)")
        if low.endswith((".png", ".pgm", ".ppm", ".pnm")):
            arrays.append(load_image(p, input_shape)[None])
            labels.append(p)
            continue
        if low.endswith(".npz"):
            try:
                with np.load(p, allow_pickle=False) as z:
                    if "images" not in z.files:
                        raise DataError(f"{p}: no array named 'images' (found: {', '.join(z.files) or 'none'})")
                    a = z["images"]
            except DataError:
                raise
            except Exception as e:  # BadZipFile, ValueError...
                raise DataError(f"{p}: cannot read as .npz ({type(e).__name__}: {e})") from None
        else:
            a = read_idx(p)          # raises DataError naming the file when it is not IDX
        if raw:
            a = np.asarray(a, np.float32)
            a = a[:, None] if a.ndim == 3 else a
        else:
            a = as_images(a, p)
        if a.ndim != 4 or tuple(a.shape[1:]) != tuple(input_shape):
            raise DataError(f"{p}: images of shape {tuple(a.shape[1:])} do not fit the model input "
                            f"{tuple(input_shape)}")
        arrays.append(np.ascontiguousarray(a, np.float32))
        labels.extend(f"{p}[{i}]" for i in range(len(a)))
    return np.concatenate(arrays), labels


def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@cli.command()
@click.argument("model_file", metavar="MODEL.h5")
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option("--top-k", type=click.IntRange(min=1), default=3, show_default=True,
              help="Classes listed per input.")
@click.option("--csv", "csv_path", default=None, metavar="FILE", help="Write input, rank, class, probability rows.")
@click.option("--save-outputs", default=None, metavar="OUT.npz",
              help="Write the graph's raw outputs (key 'outputs', float32, no softmax) and the inputs it got "
                   "(key 'inputs').")
@click.option("--raw", is_flag=True,
              help="Feed .npz/IDX arrays to the graph unchanged (no scaling to [0, 1], no standardisation).")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True)
@device_option
def predict(model_file, inputs, top_k, csv_path, save_outputs, raw, batch_size, device):
    """Top-k classes of MODEL.h5 for each INPUT: .npz files (array 'images'), IDX image files, or PNG/PGM images
    (resized to the model input)."""
    from .data import standardize
    from .io.hdf5 import load_model
    from .train import predict as predict_model

    for p, opt in ((csv_path, "'--csv'"), (save_outputs, "'--save-outputs'")):
        if p:
            _check_writable(p, opt)
    mf = load_model(model_file, backend=_backend(device))
    model, meta = mf.model, mf.metadata
    x, labels = _read_inputs(inputs, model.input_shape, raw)
    if "mean" in meta and not raw:
        x = standardize(x, meta["mean"], meta["std"])
    outputs = predict_model(model, x, batch_size=batch_size).astype(np.float32)
    flat = outputs.reshape(len(outputs), -1)
    last = model.layers[model.output]
    probs = flat if type(last).__name__ == "Softmax" else _softmax(flat.astype(np.float64))
    names = _class_names(meta, flat.shape[1])
    k = min(top_k, flat.shape[1])
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    rows = []
    for i, label in enumerate(labels):
        picks = [(names[j], float(probs[i, j])) for j in order[i]]
        click.echo(f"{label}: " + ", ".join(f"{n} ({p:.4f})" for n, p in picks))
        rows.extend((label, r + 1, n, p) for r, (n, p) in enumerate(picks))
    if csv_path:
        with open(csv_path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["input", "rank", "class", "probability"])
            w.writerows(rows)
        click.echo(f"Wrote {csv_path}")
    if save_outputs:
        with open(save_outputs, "wb") as f:
            np.savez(f, outputs=outputs, inputs=x.astype(np.float32))
        click.echo(f"Wrote {save_outputs} (outputs {outputs.shape})")


# ====================================================================== summary, models
def _model_for_inspection(spec, input_shape, classes):
    """An unbuilt-or-built Model with shapes inferred, from a zoo name, .json or .h5."""
    if _is_h5(spec):
        from .io.hdf5 import load_model
        return load_model(spec, backend="cpu").model
    model = _model_from_spec(spec, input_shape, classes)
    model.infer_shapes()
    return model


def _shape_text(shape) -> str:
    return "(" + ", ".join(str(int(s)) for s in shape) + ")"


@cli.command()
@click.argument("model_spec", metavar="MODEL")
@click.option("--input-shape", default=None, metavar="C,H,W", help="Input shape for a zoo model (e.g. 3,32,32).")
@click.option("--classes", type=click.IntRange(min=1), default=None, help="Number of classes for a zoo model.")
def summary(model_spec, input_shape, classes):
    """A table of MODEL's layers (a zoo name, .json or .h5): output shape, inputs, parameters, FLOPs."""
    model = _model_for_inspection(model_spec, _shape_option(input_shape), classes)
    rows = model.summary_rows()
    frozen = {n for n, layer in model.layers.items() if not layer.trainable}
    table = [("Layer (type)", "Output shape", "Inputs", "Params", "FLOPs")]
    for r in rows:
        table.append((f"{r['name']} ({r['type']})" + (" [frozen]" if r["name"] in frozen else ""),
                      _shape_text(r["output_shape"]), ", ".join(r["inputs"]), f"{r['params']:,}",
                      f"{r['flops']:,}"))
    widths = [max(len(t[i]) for t in table) for i in range(5)]
    line = "-" * (sum(widths) + 8)

    def fmt(t):
        return "  ".join([t[0].ljust(widths[0]), t[1].ljust(widths[1]), t[2].ljust(widths[2]),
                          t[3].rjust(widths[3]), t[4].rjust(widths[4])])

    total, trainable = model.count_params()
    flops = sum(r["flops"] for r in rows)
    click.echo(f'Model "{model.name}"  input {_shape_text(model.input_shape)}')
    click.echo(line)
    click.echo(fmt(table[0]))
    click.echo(line.replace("-", "="))
    for t in table[1:]:
        click.echo(fmt(t))
    click.echo(line.replace("-", "="))
    click.echo(f"Total params: {total:,}")
    click.echo(f"Trainable params: {trainable:,}")
    click.echo(f"Frozen params: {total - trainable:,}")
    click.echo(f"FLOPs per image (forward): {flops:,} ({flops / 1e6:,.1f} MFLOPs)")


@cli.command()
def models():
    """List the model zoo: name, default input shape, parameters, description."""
    import inspect

    from .models import DESCRIPTIONS, ZOO
    rows = []
    for name, fn in ZOO.items():
        shape = inspect.signature(fn).parameters["input_shape"].default
        total, _ = fn().count_params()
        rows.append((name, _shape_text(shape), f"{total:,}", DESCRIPTIONS.get(name, "")))
    w = [max(len(r[i]) for r in rows + [("name", "input", "params", "")]) for i in range(3)]
    click.echo(f"{'name':<{w[0]}}  {'input':<{w[1]}}  {'params':>{w[2]}}  description")
    for r in rows:
        click.echo(f"{r[0]:<{w[0]}}  {r[1]:<{w[1]}}  {r[2]:>{w[2]}}  {r[3]}")


# ====================================================================== time
@cli.command(name="time")
@click.argument("model_spec", metavar="MODEL")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--iterations", type=click.IntRange(min=1), default=10, show_default=True,
              help="Timed forward-backward passes (after one untimed warm-up pass that compiles the kernels).")
@click.option("--input-shape", default=None, metavar="C,H,W", help="Input shape for a zoo model.")
@click.option("--classes", type=click.IntRange(min=1), default=None, help="Number of classes for a zoo model.")
@device_option
def time_(model_spec, batch_size, iterations, input_shape, classes, device):
    """Per-layer forward and backward time of MODEL (like 'caffe time'): median milliseconds over
    --iterations training passes on random data, then totals and images/s."""
    from .graph import INPUT
    from .losses import get_loss

    be = _backend(device)
    model, _ = _load_any_model(model_spec, be, _shape_option(input_shape), classes)
    rng = np.random.default_rng(0)
    x = be.asarray(rng.random((batch_size,) + tuple(model.input_shape), dtype=np.float32))
    k = _num_outputs(model)
    y = be.asarray(rng.integers(0, k, batch_size), dtype=np.int64)
    loss_fn = get_loss("cross_entropy")
    names = list(model.layers)
    fwd = {n: [] for n in names}
    bwd = {n: [] for n in names}
    layers = model.layers
    click.echo(f"Timing {model.name} on {be.name}: batch {batch_size}, {iterations} iteration(s) "
               f"(warm-up pass first)")
    for it in range(iterations + 1):
        acts = {INPUT: x}
        for n in names:
            t0 = time.perf_counter()
            acts[n] = layers[n].forward([acts[i] for i in model.inputs_of(n)], True)
            be.synchronize()
            if it:
                fwd[n].append(time.perf_counter() - t0)
        _, dout, _ = loss_fn(be, acts[model.output], y)
        grads, owned = {model.output: dout}, set()
        for n in reversed(names):         # the executor's backward, one layer at a time
            t0 = time.perf_counter()
            dxs = layers[n].backward(grads.pop(n))
            be.synchronize()
            if it:
                bwd[n].append(time.perf_counter() - t0)
            for src, dx in zip(model.inputs_of(n), dxs):
                if src not in grads:
                    grads[src] = dx
                    continue
                if src not in owned:
                    grads[src] = be.copy(grads[src])
                    owned.add(src)
                be.add_inplace(grads[src], dx)
    w = max(len(n) + len(type(layers[n]).__name__) + 3 for n in names)
    click.echo(f"{'layer (type)':<{w}}  {'forward ms':>10}  {'backward ms':>11}")
    for n in names:
        click.echo(f"{n + ' (' + type(layers[n]).__name__ + ')':<{w}}  {np.median(fwd[n]) * 1e3:>10.3f}  "
                   f"{np.median(bwd[n]) * 1e3:>11.3f}")
    f_tot = np.median(np.sum([fwd[n] for n in names], axis=0))
    b_tot = np.median(np.sum([bwd[n] for n in names], axis=0))
    click.echo(f"Average forward pass: {f_tot * 1e3:.3f} ms")
    click.echo(f"Average backward pass: {b_tot * 1e3:.3f} ms")
    click.echo(f"Average forward-backward: {(f_tot + b_tot) * 1e3:.3f} ms")
    click.echo(f"Images/s: {batch_size / (f_tot + b_tot):,.0f} training (forward+backward), "
               f"{batch_size / f_tot:,.0f} forward only")


# ====================================================================== ONNX
@cli.command(name="import-onnx")
@click.argument("onnx_file", metavar="MODEL.onnx")
@click.option("--out", default=None, metavar="MODEL.h5", help="Model file to write (default: MODEL.h5 beside it).")
def import_onnx_cmd(onnx_file, out):
    """Convert an ONNX model into a numbacnn model file."""
    from .io.hdf5 import save_model
    from .onnx import import_onnx
    out = out or os.path.splitext(onnx_file)[0] + ".h5"
    _check_writable(out, "'--out'")
    if not os.path.isfile(onnx_file):
        raise ValueError(f"{onnx_file}: no such file")
    model = import_onnx(onnx_file, backend="cpu")
    save_model(out, model)
    click.echo(f"Imported {onnx_file}: {len(model.layers)} layers, {model.count_params()[0]:,} parameters, "
               f"input {_shape_text(model.input_shape)}; wrote {out}")


@cli.command(name="export-onnx")
@click.argument("model_file", metavar="MODEL.h5")
@click.option("--out", default=None, metavar="MODEL.onnx", help="ONNX file to write (default: MODEL.onnx beside it).")
def export_onnx_cmd(model_file, out):
    """Convert a numbacnn model file into an ONNX model (opset 13)."""
    from .io.hdf5 import load_model
    from .onnx import export_onnx
    out = out or _stem(model_file) + ".onnx"
    _check_writable(out, "'--out'")
    mf = load_model(model_file, backend="cpu")
    export_onnx(mf.model, out)
    click.echo(f"Exported {model_file} to {out}")
    if "mean" in mf.metadata:
        click.echo("Note: the model was trained on standardised images; the ONNX graph does not include the "
                   f"standardisation (mean {np.round(mf.metadata['mean'], 4).tolist()}, "
                   f"std {np.round(mf.metadata['std'], 4).tolist()}): apply it to its inputs", err=True)


if __name__ == "__main__":
    main()
