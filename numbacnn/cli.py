"""The ``numbacnn`` command line (click): options in, lines out; the work is done elsewhere.

    numbacnn train [--model lenet5] [--data builtin] [--epochs N] ... [--out model.h5]   (numbacnn.run)
    numbacnn evaluate MODEL.h5 [--data SPEC] [--split auto|test|all] [--json FILE] [--roc FILE.csv]
    numbacnn predict MODEL.h5 INPUT... [--top-k 3] [--csv FILE] [--save-outputs OUT.npz]
    numbacnn summary MODEL          numbacnn time MODEL          numbacnn models
    numbacnn import-onnx MODEL.onnx [--out MODEL.h5]      numbacnn export-onnx MODEL.h5 [--out MODEL.onnx]
    numbacnn pack PHOTOS/ PHOTOS.h5 --size 64              (image files decoded once into a packed dataset)

Errors: every problem a user can cause (a missing or corrupt file, an unknown
model, bad data, an option out of range, shapes that do not fit) ends with
one line ``Error: ...`` on stderr and exit status 1 (2 for usage errors, 130
when interrupted); anything unexpected prints one line too, and
``NUMBACNN_DEBUG=1`` shows the traceback.  The handler lives in ``_CLI.main``
so that click's ``CliRunner`` sees exactly what a shell sees.

Model files written by ``train`` carry, besides the graph and weights, a
``/metadata`` group: ``class_names``, ``train_options`` (so ``--resume`` can
rebuild the same run), ``data_record`` and the split indices (so ``evaluate``
recognises the training data and scores only the held-out images),
``test_accuracy`` and, with ``--standardize``, the per-channel ``mean``/``std``
that evaluate and predict apply to their inputs.
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
from .scoring import check_finite as _check_finite, class_names as _class_names
from .summary import shape_text as _shape_text, table as _table

DEVICES = ("cpu", "cuda", "auto")


# ====================================================================== errors
def _one_line(msg) -> str:
    return " ".join(str(msg).split())


def _fail(msg, code=1):
    click.echo(f"Error: {_one_line(msg)}", err=True)
    sys.exit(code)


class _CLI(click.Group):
    """A click group whose ``main`` turns every exception into one ``Error:`` line."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        from .run import RunInterrupted
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except (click.exceptions.Abort, KeyboardInterrupt):
            _fail("interrupted", 130)
        except RunInterrupted as e:
            _fail(e, 130)
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


def _check_writable(path, option, force=True):
    """Fail before any work when ``path`` cannot be written (a directory, no such parent directory, or an
    existing file without --force)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise click.BadParameter(f"{path} is a directory", param_hint=option)
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise click.BadParameter(f"{path}: directory {parent} does not exist", param_hint=option)
    if not force and os.path.exists(path):
        raise click.BadParameter(f"{path} exists (add --force to overwrite it)", param_hint=option)


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


# ====================================================================== the group
@click.group(cls=_CLI, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="numbacnn")
def cli():
    """numbacnn: train, evaluate and run convolutional networks whose kernels are Numba code.

    Start with 'numbacnn train' (no options: LeNet-5 on the built-in shapes
    dataset, under a minute), then 'numbacnn evaluate model.h5' (the images
    held out at training). Set NUMBACNN_DEBUG=1 to see Python tracebacks of
    unexpected errors.
    """


def main():
    """Console-script entry point (``numbacnn``)."""
    cli.main(prog_name="numbacnn")


device_option = click.option("--device", type=click.Choice(DEVICES), default=config.DEVICE, show_default=True,
                              help="Where to compute: cpu, cuda (an NVIDIA GPU), or auto (cuda when present). "
                                   "Default from NUMBACNN_DEVICE.")
batch_option = click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True,
                            help="Images per forward pass (memory, not results).")


# ====================================================================== train
def _validate_augment(ctx, param, value):
    if value is None:
        return None
    if not value or value == "none":
        return ""
    from .data.augment import TRANSFORMS
    names = [s.strip() for s in value.split(",") if s.strip()]
    bad = [n for n in names if n not in TRANSFORMS]
    if bad:
        raise click.BadParameter(f"unknown augmentation {', '.join(bad)} (choose from {', '.join(TRANSFORMS)})")
    return ",".join(names)


def _validate_milestones(ctx, param, value):
    if value is None:
        return None
    try:
        fractions = tuple(float(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of fractions (e.g. 0.5,0.75)") from None
    if not fractions or not all(0 < f < 1 for f in fractions):
        raise click.BadParameter(f"{value!r}: milestones are fractions of the epochs, each in (0, 1)")
    return fractions


#: the options of ``train``: one per ``run.RunConfig`` field, plus --resume
TRAIN_OPTIONS = [
    click.option("--model", default="lenet5", show_default=True,
                 help="A zoo name (see 'numbacnn models'; adapted to the data's image shape and classes), a "
                      ".json architecture, or an .h5 model file to fine-tune (its classifier is rebuilt when "
                      "the number of classes differs)."),
    click.option("--data", default="builtin", show_default=True,
                 help="builtin (generated 28x28 gray shapes, 12,000 images), builtin:rgb (32x32 colour), a "
                      "directory of MNIST-style IDX files, a CIFAR-10 binary directory, an .npz file with "
                      "arrays images, labels (and optionally class_names), a folder of image files with one "
                      "subfolder per class (train/, val/, test/ inside it are used as given splits), a .csv/.txt "
                      "list of path,label rows, or a packed .h5 dataset ('numbacnn pack')."),
    click.option("--test-data", default=None,
                 help="Dataset to test on (same forms as --data; its own test part when it has one, else all "
                      "of it). Default: --data's own test part, else a held-out split of --data."),
    click.option("--test-split", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.2,
                 show_default=True, help="Fraction of --data held out for testing (stratified by class, seeded) "
                                         "when it has no test part of its own."),
    click.option("--val-split", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True,
                 help="Fraction of the training part held out (stratified, seeded) for validation after each "
                      "epoch (0: none)."),
    click.option("--limit", type=click.IntRange(min=2), default=None, metavar="N",
                 help="Train on N images of the training part (a seeded, stratified subset)."),
    click.option("--limit-test", type=click.IntRange(min=1), default=None, metavar="N",
                 help="Test on N images of the test part (a seeded, stratified subset)."),
    click.option("--classes", type=click.IntRange(min=2), default=None, metavar="K",
                 help="Number of classes (default: from the data's class names or labels; needed when some "
                      "labels in 0..K-1 have no images)."),
    click.option("--epochs", type=click.IntRange(min=1), default=4, show_default=True,
                 help="Training epochs (in total: a resumed run continues up to this number)."),
    click.option("--loss", type=click.Choice(["cross_entropy", "mse", "mae", "huber"]), default=None,
                 help="cross_entropy (classification; the default for labels) or a regression loss on float "
                      "targets: mse (the default for them), mae, huber."),
    click.option("--recipe", default="auto", show_default=True, metavar="auto|none|MODEL",
                 help="Training recipe for the options below that are not given: auto = the zoo model's paper "
                      "recipe (see 'numbacnn models --recipe NAME'), none = numbacnn's defaults (Adam 0.001, "
                      "cosine, batch 32), or the recipe of another zoo name."),
    click.option("--batch-size", type=click.IntRange(min=1), default=None,
                 help="Images per training step (default: the recipe's, else 32)."),
    click.option("--optimizer", type=click.Choice(["sgd", "adam"]), default=None,
                 help="sgd (with --momentum, --nesterov) or adam (default: the recipe's, else adam)."),
    click.option("--lr", type=click.FloatRange(0, min_open=True), default=None,
                 help="Learning rate (default: the recipe's for its optimizer, else 0.001 for adam, 0.01 for sgd)."),
    click.option("--momentum", type=click.FloatRange(0, 1, max_open=True), default=None,
                 help="SGD momentum (default: the recipe's, else 0.9)."),
    click.option("--nesterov/--no-nesterov", default=None, help="Nesterov momentum (SGD; default: the recipe's)."),
    click.option("--weight-decay", type=click.FloatRange(0), default=None,
                 help="L2 penalty on weights (not biases): adds weight_decay * W to the gradient (default: the "
                      "recipe's, else 0)."),
    click.option("--l1", type=click.FloatRange(0), default=0.0, show_default=True,
                 help="L1 penalty on weights: adds l1 * sign(W) to the gradient."),
    click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), default=None,
                 help="Dropout rate of a zoo model that takes one (lenet5 adds Dropout after its hidden dense "
                      "layers when > 0; default: the model's own rate)."),
    click.option("--schedule", type=click.Choice(["constant", "step", "multistep", "cosine", "plateau"]),
                 default=None,
                 help="Learning-rate schedule per epoch (default: the recipe's, else cosine): constant; step "
                      "(x --lr-factor every --lr-step epochs); multistep (x --lr-factor at the --lr-milestones); "
                      "cosine (down to 0 at the last epoch); plateau (x --lr-factor after --lr-patience epochs "
                      "without improvement of val_loss, or loss without --val-split)."),
    click.option("--lr-step", type=click.IntRange(min=1), default=None,
                 help="Epochs between step decays (default: the recipe's, else a third of --epochs)."),
    click.option("--lr-milestones", default=None, callback=_validate_milestones, metavar="F1,F2,...",
                 help="Fractions of --epochs where the multistep schedule multiplies the rate by --lr-factor "
                      "(default: the recipe's, else 0.5,0.75)."),
    click.option("--lr-factor", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=None,
                 help="Decay factor of the step, multistep and plateau schedules (default: the recipe's, else 0.1)."),
    click.option("--lr-patience", type=click.IntRange(min=0), default=2, show_default=True,
                 help="Plateau schedule patience in epochs."),
    click.option("--augment", default=None, callback=_validate_augment,
                 help="Comma-separated training augmentations: flip, contrast, zoom, noise; 'none' for none "
                      "(default: the recipe's, else none)."),
    click.option("--early-stop", type=click.IntRange(min=0), default=None, metavar="PATIENCE",
                 help="Stop after PATIENCE epochs without improvement of --monitor; keep the best weights."),
    click.option("--monitor", type=click.Choice(["val_loss", "val_accuracy", "loss", "accuracy"]),
                 default="val_loss", show_default=True,
                 help="Metric watched by --early-stop (val_* need --val-split)."),
    click.option("--sync-bn", is_flag=True,
                 help="Under mpiexec: batch norm normalises with the statistics of the global batch, summed over "
                      "the ranks (then K ranks train as one process does); default: each rank's own, as "
                      "PyTorch's DDP."),
    click.option("--freeze", default=None, metavar="NAMES",
                 help="Comma-separated layer names whose parameters stay fixed (see 'numbacnn summary MODEL')."),
    click.option("--init-from", type=click.Path(dir_okay=False), default=None, metavar="FILE.h5",
                 help="Copy weights from a model file into layers with the same name and shapes (the others "
                      "are listed as skipped; an error when none matches)."),
    click.option("--resume", type=click.Path(dir_okay=False), default=None, metavar="FILE.h5",
                 help="Continue a run from its model or checkpoint file exactly (model, data split, options, "
                      "optimizer state and schedule come from the file; a larger --epochs extends it, "
                      "re-planning a cosine or step schedule, and --lr/--schedule start a new schedule)."),
    click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
                 help="Seeds the weights, the held-out splits, shuffling and augmentation."),
    click.option("--standardize", is_flag=True,
                 help="Standardise images per channel with the training part's mean and std (stored in the "
                      "model file and applied by evaluate and predict)."),
    click.option("--image-size", default=None, metavar="SIDE|HxW",
                 help="Image files: the crop fed to the model (default: the model's input size)."),
    click.option("--color", type=click.Choice(["grey", "gray", "rgb"]), default=None,
                 help="Image files: colour mode (default: grey for a 1-channel model input, else rgb)."),
    click.option("--resize", type=click.IntRange(min=1), default=None, metavar="SIDE",
                 help="Image files: the shorter side is resized to SIDE before the centre crop (default: as "
                      "little as the crop needs). All three are stored in the model file and applied by evaluate "
                      "and predict."),
    click.option("--mean", default=None, callback=lambda c, p, v: _floats(v, "'--mean'"), metavar="M1,M2,...",
                 help="Given per-channel means (in [0, 1] units) to standardise with, instead of --standardize's "
                      "(with --std; e.g. ImageNet's 0.485,0.456,0.406)."),
    click.option("--std", default=None, callback=lambda c, p, v: _floats(v, "'--std'"), metavar="S1,S2,...",
                 help="Given per-channel standard deviations (with --mean)."),
    click.option("--skip-bad-images", is_flag=True,
                 help="Leave out (and count) image files that cannot be decoded, instead of stopping there."),
    click.option("--workers", type=click.IntRange(min=0), default=None,
                 help="Threads decoding image files ahead of training (default: the cores, at most 4; 0: in "
                      "the training loop)."),
    device_option,
    click.option("--out", default=None, metavar="FILE.h5",
                 help="Model file to write (default model.h5, or the --resume file). The history goes to "
                      "<stem>.history.csv beside it, a checkpoint to <stem>.ckpt.h5 during training."),
]


def _floats(value, option):
    if value is None:
        return None
    try:
        return tuple(float(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of numbers", param_hint=option) from None


def _train_options(f=None, without=()):
    """Apply ``TRAIN_OPTIONS`` (less those named in ``without``) to ``f``."""
    if f is None:
        return lambda g: _train_options(g, without)
    for opt in reversed(TRAIN_OPTIONS):
        if opt(lambda: None).__click_params__[0].name not in without:
            f = opt(f)
    return f


threads_option = click.option(
    "--threads", type=click.IntRange(min=1), default=None,
    help="Kernel threads of this process (default: NUMBA_NUM_THREADS if set, else the cores; under mpiexec the "
         "cores / the ranks on each machine, so that ranks do not oversubscribe it).")


@cli.command()
@_train_options
@threads_option
@click.pass_context
def train(ctx, resume, threads, **opts):
    """Train a model and test it on held-out images; write the model file and its history CSV.

    With no options: LeNet-5 on the built-in dataset (9,600 training images,
    2,400 held out), 4 epochs of Adam with a cosine schedule, then the test
    accuracy; writes model.h5 and model.history.csv.

    Under an MPI launcher (mpiexec -n K numbacnn train ..., srun) the K
    processes train data-parallel: --batch-size is the global batch, rank 0
    prints and writes the files (see numbacnn.distributed).
    """
    from .distributed import from_environment

    strategy = from_environment(sync_bn=opts["sync_bn"], threads=threads)
    with strategy.guard():
        with strategy.agreement():      # options, --out, the --resume file: one rank's failure stops every rank
            run = _train_run(ctx, resume, opts, strategy)
        run.run()


def _train_run(ctx, resume, opts, strategy):
    """The checked options as a ``TrainingRun`` (``train``'s body)."""
    from click.core import ParameterSource

    from .progress import ProgressBar
    from .run import RunConfig, TrainingRun

    given = {k: v for k, v in opts.items() if ctx.get_parameter_source(k) == ParameterSource.COMMANDLINE}
    out = opts["out"] or resume or "model.h5"
    _check_writable(out, "'--out'")
    if not resume and opts["early_stop"] is not None and opts["monitor"].startswith("val_") and not opts["val_split"]:
        raise click.UsageError(f"--early-stop watching {opts['monitor']} needs --val-split (or --monitor loss)")
    if not resume:
        if opts["recipe"] not in ("auto", "none"):
            from .models.recipes import RECIPES
            if RECIPES.get(opts["recipe"]) is None:
                raise click.BadParameter(f"{opts['recipe']!r} is not auto, none or a zoo name "
                                         f"({', '.join(RECIPES)})", param_hint="'--recipe'")
        if RunConfig(**{**opts, "out": out}).resolved().optimizer == "adam" and {"momentum", "nesterov"} & set(given):
            raise click.UsageError("--momentum and --nesterov apply to --optimizer sgd")
    _backend(opts["device"])
    bar = ProgressBar()
    if resume:
        return TrainingRun.resumed(resume, {**given, "out": out}, opts["device"], click.echo, [bar], strategy)
    return TrainingRun(RunConfig(**{**opts, "out": out}), click.echo, [bar], strategy=strategy)


# ====================================================================== search
@cli.command()
@click.option("--grid", "grids", multiple=True, required=True, metavar="NAME=V1,V2,...",
              help="Values of one hyper-parameter to try (repeat for several; every combination is a trial): lr, "
                   "l2 (= weight_decay), l1, momentum, dropout, batch_size, epochs, optimizer, schedule, "
                   "lr_factor, lr_step, augment (flip+noise, none), loss, model.")
@click.option("--folds", type=click.IntRange(min=2), default=None, metavar="K",
              help="Score each trial by K-fold cross-validation of the training part (mean +- std over the "
                   "folds) instead of on a validation split.")
@click.option("--metric", type=click.Choice(["accuracy", "loss"]), default=None,
              help="Validation score that ranks the trials (default: accuracy; loss for regression data).")
@click.option("--out-dir", default="search", show_default=True, metavar="DIR",
              help="Where trials.csv, trials.json (a re-run resumes from it, skipping finished trials) and "
                   "best.h5 (the best trial retrained on the whole training part) are written.")
@_train_options(without=("resume", "out", "early_stop", "monitor"))
@threads_option
def search(grids, folds, metric, out_dir, threads, **opts):
    """Grid search: train every combination of the --grid values on the training part, rank them by their
    validation score (--val-split, 0.2 by default, or --folds K), retrain the best on the whole training part
    and test it once on the held-out test part.

    The other options are train's, for every trial. Under mpiexec the trials are shared out over the ranks.
    """
    from .distributed import from_environment
    from .progress import ProgressBar
    from .run import RunConfig
    from .search import GridSearch, parse_grid

    strategy = from_environment(threads=threads)
    with strategy.guard():
        with strategy.agreement():
            try:
                grid = parse_grid(grids)
            except ValueError as e:
                raise click.BadParameter(str(e).removeprefix("--grid "), param_hint="'--grid'") from None
            if os.path.exists(out_dir) and not os.path.isdir(out_dir):
                raise click.BadParameter(f"{out_dir} is a file, not a directory", param_hint="'--out-dir'")
            if not os.path.isdir(out_dir):
                _check_writable(out_dir, "'--out-dir'")         # its parent directory exists
            _backend(opts["device"])
        GridSearch(RunConfig(**{**opts, "early_stop": None}), grid, folds, metric, out_dir, click.echo,
                   [ProgressBar()], strategy).run()


# ====================================================================== evaluate
def _write_csv(path, header, rows):
    """A CSV file written whole or not at all."""
    from .io.atomic import atomic_write

    def write(f):
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    atomic_write(path, write, newline="")


def _write_json(path, doc):
    from .io.atomic import atomic_write
    atomic_write(path, lambda f: json.dump(doc, f, indent=2))
    click.echo(f"Wrote {path}")


def _write_roc(path, report):
    _write_csv(path, ["class", "threshold", "fpr", "tpr"],
               [[c["name"], "inf" if t is None else t, "" if fp is None else fp, "" if tp is None else tp]
                for c in report["roc"] for t, fp, tp in zip(c["thresholds"], c["fpr"], c["tpr"])])


def _regression_loss(meta) -> str | None:
    """The regression loss a model was trained with (from its file's metadata), or None for a classifier."""
    loss = (meta.get("train_options") or {}).get("loss") or (meta.get("keras") or {}).get("loss")
    return loss if loss in ("mse", "mae", "huber") else None


def _evaluate_regression(model_file, model, meta, x, y, names, where, batch_size, json_path):
    """MSE, MAE and R^2 of a regression model (no classification metrics), and its loss."""
    from .metrics import format_regression_report, regression_report
    from .train import evaluate as evaluate_model, predict as predict_model
    loss_name = _regression_loss(meta) or "mse"
    with np.errstate(all="ignore"):
        pred = predict_model(model, x, batch_size=batch_size)
        loss, _, _ = evaluate_model(model, x, y, batch_size=batch_size, loss=loss_name)
    _check_finite(model_file, pred, len(x))
    report = {**regression_report(y, pred, names), "loss": float(loss), "loss_name": loss_name}
    click.echo(f"{model_file} on {where}: {loss_name} loss {loss:.4f}")
    click.echo(format_regression_report(report))
    if json_path:
        _write_json(json_path, report)


def _aux_report(model, x, y, batch_size) -> dict:
    """Loss and accuracy of every auxiliary output (trained, dropped for inference), printed one per line."""
    from .train import evaluate_outputs
    out = {}
    for node, (loss, acc, _) in evaluate_outputs(model, x, y, batch_size).items():
        if node in model.aux_outputs:
            out[node] = {"loss": float(loss), "accuracy": float(acc), "weight": model.aux_outputs[node]}
            click.echo(f"auxiliary output {node} (loss weight {model.aux_outputs[node]:g} in training, dropped "
                       f"for inference): loss {loss:.4f}, accuracy {acc:.4f}")
    return out


@cli.command()
@click.argument("model_file", metavar="MODEL.h5")
@click.option("--data", default=None,
              help="Dataset (same forms as 'train --data'). Default: the data the model was tested on at training.")
@click.option("--split", type=click.Choice(["auto", "test", "all"]), default="auto", show_default=True,
              help="Which images: on the data the model was trained on, auto and test mean the images held out at "
                   "training (recorded in the model file); on other data, its own test part (test) or every image "
                   "(auto when it has no test part); all = every image, saying how many were trained on.")
@click.option("--limit", type=click.IntRange(min=1), default=None, metavar="N",
              help="Score N of those images (a seeded, stratified subset).")
@batch_option
@click.option("--json", "json_path", default=None, metavar="FILE", help="Also write the report as JSON.")
@click.option("--roc", "roc_path", default=None, metavar="FILE.csv",
              help="Write the one-vs-rest ROC points (class, threshold, fpr, tpr).")
@click.option("--skip-bad-images", is_flag=True,
              help="Image files: leave out (and count) files that cannot be decoded, instead of stopping there.")
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="Image files: threads decoding them (default: the cores, at most 4).")
@device_option
def evaluate(model_file, data, split, limit, batch_size, json_path, roc_path, skip_bad_images, workers, device):
    """Accuracy, per-class precision/recall/specificity/F1/AUC and the confusion matrix of MODEL.h5."""
    from .compile import warm_up_inference
    from .io.hdf5 import load_model
    from .metrics import format_report
    from .scoring import classify, evaluation_inputs

    for p, opt in ((json_path, "'--json'"), (roc_path, "'--roc'")):
        if p:
            _check_writable(p, opt)
    mf = load_model(model_file, backend=_backend(device))
    model, meta = mf.model, mf.metadata
    x, _, y, names, part = evaluation_inputs(model_file, mf, data, split, limit, skip_bad_images, workers,
                                             click.echo)
    warm_up_inference(model, classify=y.dtype.kind != "f")
    if y.dtype.kind == "f":
        return _evaluate_regression(model_file, model, meta, x, y, names, f"{data or 'its test data'} ({part})",
                                    batch_size, json_path)
    report, _, y = classify(model_file, mf, x, y, names, batch_size, include_roc=bool(roc_path))
    loss = report["loss"]
    click.echo(f"{model_file} on {data or 'its test data'} ({part}): loss {loss:.4f}")
    click.echo(format_report(report))
    if model.aux_outputs:
        report["aux_outputs"] = _aux_report(model, x, y, batch_size)
    if json_path:
        _write_json(json_path, {k: v for k, v in report.items() if k != "roc"})
    if roc_path:
        _write_roc(roc_path, report)
        click.echo(f"Wrote {roc_path}")


# ====================================================================== plot
@cli.command()
@click.argument("kind", type=click.Choice(["curves", "confusion", "roc", "filters", "features", "predictions"]))
@click.argument("model_file", metavar="MODEL.h5")
@click.option("--out", required=True, metavar="FILE.png", help="The PNG to write.")
@click.option("--data", default=None,
              help="confusion, roc, predictions, features: the dataset, as for 'evaluate' (default: the data the "
                   "model was tested on at training).")
@click.option("--split", type=click.Choice(["auto", "test", "all"]), default="auto", show_default=True,
              help="Which of its images, as for 'evaluate'.")
@click.option("--limit", type=click.IntRange(min=1), default=None, metavar="N",
              help="N of those images (a seeded, stratified subset), as for 'evaluate'.")
@click.option("--layer", default=None,
              help="filters, features: the layer (default: the first convolution; see 'numbacnn summary').")
@click.option("--index", type=click.IntRange(min=0), default=0, show_default=True,
              help="features: which image of the data.")
@click.option("--input", "input_file", default=None, metavar="IMAGE",
              help="features: an image file (or .npz) instead of an image of the data.")
@click.option("--count", type=click.IntRange(1, 100), default=16, show_default=True,
              help="predictions: images shown (mistakes first).")
@batch_option
@device_option
def plot(kind, model_file, out, data, split, limit, layer, index, input_file, count, batch_size, device):
    """Pictures of MODEL.h5 as a PNG (needs matplotlib: pip install 'numbacnn[plot]').

    \b
    curves       loss and accuracy per epoch, training and validation
    confusion    confusion matrix (counts and row-normalised): the numbers evaluate prints
    roc          one-vs-rest ROC curve per class with its AUC
    filters      the first convolution's filters (or --layer's) as an image grid
    features     the feature maps of --layer for one image (--index of the data, or --input FILE)
    predictions  images with predicted and true labels, mistakes first
    """
    from .plot import figure, save

    _check_writable(out, "'--out'")
    fig, numbers = figure(kind, model_file, data, split, limit, layer, index, input_file, count, batch_size,
                          _backend(device), click.echo)
    save(fig, out)
    click.echo(f"Wrote {out}: {_plot_summary(kind, numbers)}")


def _plot_summary(kind, n) -> str:
    """One line saying what a plot shows (the numbers ``evaluate`` would print for the same images)."""
    if kind == "curves":
        last = n["history"][-1]
        return f"{len(n['history'])} epochs, last loss {last['loss']:.4f}" + (
            f", val_loss {last['val_loss']:.4f}" if last.get("val_loss") is not None else "")
    if kind in ("confusion", "roc"):
        auc = n["macro"]["auc"]
        return f"{n['n']:,} images, accuracy {n['accuracy']:.4f}" + (f", macro AUC {auc:.4f}" if auc else "")
    if kind == "filters":
        return f"{n['layer']}, weights {tuple(n['weight'].shape)}"
    if kind == "features":
        return f"{n['layer']}, output {tuple(n['maps'].shape)}"
    return f"{len(n['indices'])} images, {n['wrong']:,} mistakes in all"


# ====================================================================== predict
def _probabilities(model, outputs):
    """(N, K) class probabilities: the outputs themselves when the graph ends in a probability layer."""
    flat = outputs.reshape(len(outputs), -1)
    if model.outputs_probabilities():
        return flat
    z = flat.astype(np.float64) - flat.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _write_predictions(csv_path, save_outputs, rows, outputs, x, header=("input", "rank", "class", "probability")):
    if csv_path:
        _write_csv(csv_path, header, rows)
        click.echo(f"Wrote {csv_path}")
    if save_outputs:
        from .io.atomic import atomic_write
        atomic_write(save_outputs, lambda f: np.savez(f, outputs=outputs, inputs=x.astype(np.float32)), binary=True)
        click.echo(f"Wrote {save_outputs} (outputs {outputs.shape})")


def _print_values(labels, outputs, meta, csv_path, save_outputs, x):
    """A regression model's predictions: one line of values per input (and the CSV / npz files)."""
    flat = outputs.reshape(len(outputs), -1)
    names = _class_names(meta, flat.shape[1])
    rows = []
    for label, values in zip(labels, flat):
        click.echo(f"{label}: " + ", ".join(f"{n} {v:.6g}" for n, v in zip(names, values)))
        rows.extend((label, n, float(v)) for n, v in zip(names, values))
    _write_predictions(csv_path, save_outputs, rows, outputs, x, header=("input", "target", "value"))


@cli.command()
@click.argument("model_file", metavar="MODEL.h5")
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option("--top-k", type=click.IntRange(min=1), default=3, show_default=True,
              help="Classes listed per input.")
@click.option("--csv", "csv_path", default=None, metavar="FILE", help="Write input, rank, class, probability rows.")
@click.option("--save-outputs", default=None, metavar="OUT.npz",
              help="Write the graph's raw outputs (key 'outputs', float32) and the inputs it got (key 'inputs').")
@click.option("--raw", is_flag=True,
              help="Feed .npz/IDX arrays to the graph unchanged (no scaling to [0, 1], no standardisation).")
@batch_option
@device_option
def predict(model_file, inputs, top_k, csv_path, save_outputs, raw, batch_size, device):
    """Top-k classes of MODEL.h5 for each INPUT: .npz files (array 'images'), IDX image files, image files
    (JPEG, PNG, BMP, GIF, TIFF, WebP, PGM/PPM) or folders of them, read with the resize, crop and colour mode
    the model was trained with."""
    from .data import standardize
    from .compile import warm_up_inference
    from .data.inputs import read_prediction_inputs
    from .io.hdf5 import load_model
    from .train import predict as predict_model

    for p, opt in ((csv_path, "'--csv'"), (save_outputs, "'--save-outputs'")):
        if p:
            _check_writable(p, opt)
    mf = load_model(model_file, backend=_backend(device))
    model, meta = mf.model, mf.metadata
    x, labels = read_prediction_inputs(inputs, model.input_shape, raw, meta.get("preprocessing"))
    if "mean" in meta and not raw:
        x = standardize(x, meta["mean"], meta["std"])
    warm_up_inference(model)
    with np.errstate(all="ignore"):      # a non-finite output is reported below, not warned about
        outputs = predict_model(model, x, batch_size=batch_size).astype(np.float32)
        probs = _probabilities(model, outputs)
    _check_finite(model_file, outputs, len(x))
    if _regression_loss(meta):
        return _print_values(labels, outputs, meta, csv_path, save_outputs, x)
    _check_finite(model_file, probs, len(x))
    names = _class_names(meta, probs.shape[1])
    order = np.argsort(-probs, axis=1, kind="stable")[:, :min(top_k, probs.shape[1])]
    rows = []
    for i, label in enumerate(labels):
        picks = [(names[j], float(probs[i, j])) for j in order[i]]
        click.echo(f"{label}: " + ", ".join(f"{n} ({p:.4f})" for n, p in picks))
        rows.extend((label, r + 1, n, p) for r, (n, p) in enumerate(picks))
    _write_predictions(csv_path, save_outputs, rows, outputs, x)


# ====================================================================== summary, models
def _model_for_inspection(spec, input_shape, classes):
    """A Model with shapes inferred, from a zoo name, .json or .h5."""
    from .run import _is_h5, model_from_spec
    if _is_h5(spec):
        from .io.hdf5 import load_model
        return load_model(spec, backend="cpu").model
    model = model_from_spec(spec, input_shape, classes)
    model.infer_shapes()
    return model


@cli.command()
@click.argument("model_spec", metavar="MODEL")
@click.option("--input-shape", default=None, metavar="C,H,W", help="Input shape for a zoo model (e.g. 3,32,32).")
@click.option("--classes", type=click.IntRange(min=1), default=None, help="Number of classes for a zoo model.")
@click.option("--batch-size", type=click.IntRange(min=1), default=1, show_default=True,
              help="Batch size for the activation memory column and the totals.")
@click.option("--optimizer", type=click.Choice(["sgd", "adam"]), default=None,
              help="Optimizer whose state the training memory counts (default: the model's recipe's, else adam).")
def summary(model_spec, input_shape, classes, batch_size, optimizer):
    """A table of MODEL's layers (a zoo name, .json or .h5): output shape, inputs, parameters, multiply-adds,
    activation memory at --batch-size; then totals and the memory a training step needs (like torchinfo)."""
    from .run import RunConfig
    from .summary import summary_text
    model = _model_for_inspection(model_spec, _shape_option(input_shape), classes)
    optimizer = optimizer or RunConfig(model=model_spec).resolved().optimizer
    click.echo(summary_text(model, batch_size, optimizer))


@cli.command()
@click.option("--recipe", default=None, metavar="NAME", help="Print the training recipe of zoo model NAME.")
def models(recipe):
    """List the model zoo: every name --model accepts, its default input shape, parameters, forward FLOPs per
    image, description; or one model's training recipe."""
    import inspect

    from .models import DESCRIPTIONS, ZOO
    from .models.recipes import RECIPES
    if recipe:
        click.echo(f"{recipe}: training recipe ('numbacnn train --model {recipe}' uses it for the options not "
                   f"given)\n" + RECIPES.lookup(recipe).describe())
        return
    rows = [("name", "input", "params", "FLOPs", "description")]
    for name, fn in ZOO.items():
        shape = inspect.signature(fn).parameters["input_shape"].default
        m = fn()
        m.infer_shapes()
        flops = sum(layer.flops() for n, layer in m.layers.items() if n in set(m.plan()))
        rows.append((name, _shape_text(shape), f"{m.count_params()[0]:,}",
                     f"{flops / 1e9:.2f} G" if flops >= 1e8 else f"{flops / 1e6:.2f} M",
                     DESCRIPTIONS.get(name, "")))
    click.echo("\n".join(_table(rows, right=(2, 3))))


# ====================================================================== time
@cli.command(name="time")
@click.argument("model_spec", metavar="MODEL")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="Images per timed pass.")
@click.option("--iterations", type=click.IntRange(min=1), default=10, show_default=True,
              help="Timed forward-backward passes (after one untimed warm-up pass that compiles the kernels).")
@click.option("--input-shape", default=None, metavar="C,H,W", help="Input shape for a zoo model.")
@click.option("--classes", type=click.IntRange(min=1), default=None, help="Number of classes for a zoo model.")
@device_option
def time_(model_spec, batch_size, iterations, input_shape, classes, device):
    """Per-layer forward and backward time of MODEL (like 'caffe time'): median milliseconds over
    --iterations training passes on random data (no gradient for the input images, as in training), then totals
    and images/s."""
    from .compile import announcing, compiles, throwaway_copy
    from .profile import time_layers
    from .run import load_any_model

    be = _backend(device)
    model, _ = load_any_model(model_spec, be, _shape_option(input_shape), classes)
    click.echo(f"Timing {model.name} on {be.name}: batch {batch_size}, {iterations} iteration(s) "
               f"(warm-up pass first)")
    if compiles(be):
        with announcing(model):         # compile (or load) the kernels on a copy, outside the timed passes
            time_layers(throwaway_copy(model), 2, 0)
    fwd, bwd = time_layers(model, batch_size, iterations)
    layers = model.layers
    rows = [("layer (type)", "forward ms", "backward ms")] + [
        (f"{n} ({type(layers[n]).__name__})", f"{np.median(fwd[n]) * 1e3:.3f}", f"{np.median(bwd[n]) * 1e3:.3f}")
        for n in fwd]
    click.echo("\n".join(_table(rows, right=(1, 2))))
    f_tot = np.median(np.sum(list(fwd.values()), axis=0))
    b_tot = np.median(np.sum(list(bwd.values()), axis=0))
    click.echo(f"Average forward pass: {f_tot * 1e3:.3f} ms")
    click.echo(f"Average backward pass: {b_tot * 1e3:.3f} ms")
    click.echo(f"Average forward-backward: {(f_tot + b_tot) * 1e3:.3f} ms")
    click.echo(f"Images/s: {batch_size / (f_tot + b_tot):,.0f} training (forward+backward), "
               f"{batch_size / f_tot:,.0f} forward only")


# ====================================================================== ONNX
force_option = click.option("--force", is_flag=True, help="Overwrite the output file if it exists.")


@cli.command(name="import-onnx")
@click.argument("onnx_file", metavar="MODEL.onnx")
@click.option("--out", default=None, metavar="MODEL.h5", help="Model file to write (default: MODEL.h5 beside it).")
@force_option
def import_onnx_cmd(onnx_file, out, force):
    """Convert an ONNX model into a numbacnn model file."""
    from .io.hdf5 import save_model
    from .onnx import import_onnx
    out = out or os.path.splitext(onnx_file)[0] + ".h5"
    _check_writable(out, "'--out'", force)
    if not os.path.isfile(onnx_file):
        raise ValueError(f"{onnx_file}: no such file")
    t0 = time.perf_counter()
    model = import_onnx(onnx_file, backend="cpu", log=click.echo)
    click.echo(f"Writing {out} ...")
    save_model(out, model)
    click.echo(f"Imported {onnx_file}: {len(model.layers)} layers, {model.count_params()[0]:,} parameters, "
               f"input {_shape_text(model.input_shape)}; wrote {out} ({time.perf_counter() - t0:.1f}s)")


@cli.command(name="export-onnx")
@click.argument("model_file", metavar="MODEL.h5")
@click.option("--out", default=None, metavar="MODEL.onnx", help="ONNX file to write (default: MODEL.onnx beside it).")
@click.option("--keep-aux", is_flag=True,
              help="Keep auxiliary training outputs (GoogLeNet's heads) as further graph outputs (default: only "
                   "the inference output).")
@click.option("--opset", type=int, default=None,
              help="ONNX opset to write, 13 or later (default: the lowest every layer needs, 13 for most models).")
@force_option
def export_onnx_cmd(model_file, out, keep_aux, opset, force):
    """Convert a numbacnn model file into an ONNX model (opset 13, or the later one a layer needs)."""
    from .io.hdf5 import load_model
    from .onnx import export_onnx
    from .run import stem
    out = out or stem(model_file) + ".onnx"
    _check_writable(out, "'--out'", force)
    mf = load_model(model_file, backend="cpu")
    proto = export_onnx(mf.model, out, opset=opset, keep_aux=keep_aux)
    click.echo(f"Exported {model_file} to {out} (opset {proto.opset_import[0].version})")
    if "mean" in mf.metadata:
        click.echo("Note: the model was trained on standardised images; the ONNX graph does not include the "
                   f"standardisation (mean {np.round(mf.metadata['mean'], 4).tolist()}, "
                   f"std {np.round(mf.metadata['std'], 4).tolist()}): apply it to its inputs", err=True)


# ====================================================================== pack
@cli.command()
@click.argument("source", metavar="PHOTOS")
@click.argument("out", metavar="OUT.h5")
@click.option("--size", required=True, metavar="SIDE|HxW", help="The crop every image is stored as (e.g. 64).")
@click.option("--color", type=click.Choice(["grey", "gray", "rgb"]), default="rgb", show_default=True,
              help="Colour mode of the stored images.")
@click.option("--resize", type=click.IntRange(min=1), default=None, metavar="SIDE",
              help="The shorter side is resized to SIDE before the centre crop (default: as little as the crop "
                   "needs).")
@click.option("--skip-bad-images", is_flag=True, help="Leave out (and count) files that cannot be decoded.")
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="Threads decoding images (default: the cores, at most 4).")
@force_option
def pack(source, out, size, color, resize, skip_bad_images, workers, force):
    """Decode the images of PHOTOS (a class folder or a path,label list) once into a packed HDF5 dataset OUT.h5
    (uint8 images, labels, class names, the preprocessing; its train/val/test parts kept), which 'train --data
    OUT.h5' and 'evaluate --data OUT.h5' read with no decoding."""
    from .data import folders
    from .data.images import Preprocessing, color_name
    from .data.packed import pack as pack_files
    from .data.pipeline import default_workers
    from .data.sources import parse_size
    _check_writable(out, "'OUT.h5'", force)
    if not out.lower().endswith((".h5", ".hdf5")):
        raise click.BadParameter(f"{out}: a packed dataset's name ends in .h5 or .hdf5", param_hint="'OUT.h5'")
    prep = Preprocessing(*parse_size(size, "--size"), color_name(color), resize)
    if os.path.isdir(source):
        coll = folders.scan_folder(source, click.echo)
    elif folders.is_image_list(source):
        coll = folders.scan_list(source, click.echo)
    else:
        raise ValueError(f"{source}: not a folder of class folders or a list of image files (path,label rows)")
    click.echo(f"Packing {len(coll.paths):,} images of {len(coll.class_names)} classes from {source} as "
               f"{prep.describe()} ...")
    done = pack_files(coll, out, prep, skip_bad_images, default_workers() if workers is None else workers,
                      click.echo)
    parts = ", ".join(f"{k} {v:,}" for k, v in done["parts"].items())
    skipped = f", {done['skipped']:,} unreadable file(s) left out" if done["skipped"] else ""
    click.echo(f"Wrote {out}: {done['images']:,} images {_shape_text(prep.shape)}{' (' + parts + ')' if parts else ''}"
               f"{skipped} in {done['seconds']:.1f}s ({done['images'] / max(done['seconds'], 1e-9):,.0f} images/s)")


if __name__ == "__main__":
    main()
