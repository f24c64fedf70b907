"""The training-run core: a configuration in, a trained model file and its history out.

``numbacnn train`` is a thin layer over this module (it parses options into a
``RunConfig`` and prints what the run reports); grid search, data-parallel
training and the Keras-style API reuse the same pieces::

    cfg = RunConfig(model="lenet5", data="builtin", epochs=4, val_split=0.1)
    result = TrainingRun(cfg, log=print).run()          # RunResult: model, history, test accuracy, ...

A run has four steps, each a function of its own:

1. ``plan_data``: load the source, split it by indices (its own test part, or a
   seeded stratified hold-out; a stratified validation hold-out; ``--limit``
   subsets) and record the split (``data.splits.SplitRecord``) for the model file.
2. ``prepare_model``: build a zoo/JSON model or load an ``.h5`` one (rebuilding
   its classifier head when the number of classes differs), load ``--init-from``
   weights by name, freeze layers, decide whether frozen features can be
   pre-computed.
3. ``make_optimizer`` / ``make_schedule``: new, or restored and re-planned on resume.
4. ``TrainingRun.train``: a ``train.Trainer`` with the callbacks (early stopping,
   progress, history CSV, checkpoint), then the test evaluation and the atomic
   write of the model file.

Every message for the person at the terminal goes through ``log`` (one line each).
"""
from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field

import numpy as np

from . import __version__
from .data.loaders import DataError

DEFAULT_LR = {"sgd": 0.01, "adam": 1e-3}
#: the options a recipe sets (``models.recipes``), and their values for models without one
RECIPE_FIELDS = ("optimizer", "lr", "momentum", "nesterov", "weight_decay", "batch_size", "schedule", "lr_milestones",
                 "lr_step", "lr_factor", "augment")
DEFAULTS = dict(optimizer="adam", momentum=0.9, nesterov=False, weight_decay=0.0, batch_size=32, schedule="cosine",
                lr_milestones=(0.5, 0.75), lr_step=None, lr_factor=0.1, augment="")


class RunInterrupted(Exception):
    """Ctrl-C during training; the message says where the last completed epoch is."""


@dataclass
class RunConfig:
    """Everything ``numbacnn train`` takes (its options, by the same names); JSON-able."""

    model: str = "lenet5"
    data: str = "builtin"
    test_data: str | None = None
    test_split: float = 0.2
    val_split: float = 0.0
    limit: int | None = None
    limit_test: int | None = None
    classes: int | None = None
    epochs: int = 4
    loss: str | None = None              # None: cross_entropy for class labels, mse for float targets
    recipe: str = "auto"
    batch_size: int | None = None       # None: from the model's recipe (see ``resolved``)
    optimizer: str | None = None
    lr: float | None = None
    momentum: float | None = None
    nesterov: bool | None = None
    weight_decay: float | None = None
    l1: float = 0.0
    dropout: float | None = None          # None: the zoo model's own dropout rate
    schedule: str | None = None
    lr_milestones: tuple | None = None
    lr_step: int | None = None
    lr_factor: float | None = None
    lr_patience: int = 2
    augment: str | None = None
    early_stop: int | None = None
    monitor: str = "val_loss"
    sync_bn: bool = False                # data-parallel runs: batch norm over the global batch (distributed)
    freeze: str | None = None
    init_from: str | None = None
    seed: int = 0
    standardize: bool = False
    image_size: str | None = None        # image files: HxW (default: the model's input), --color, --resize
    color: str | None = None
    resize: int | None = None
    mean: tuple | None = None            # given per-channel normalisation (else --standardize computes it)
    std: tuple | None = None
    skip_bad_images: bool = False
    workers: int | None = None           # threads decoding image files (None: data.pipeline.default_workers)
    device: str = "auto"
    out: str = "model.h5"

    #: options that decide which images are trained and tested on (fixed for a resumed run)
    DATA_OPTIONS = ("data", "test_data", "test_split", "val_split", "limit", "limit_test", "seed", "standardize",
                    "classes", "image_size", "color", "resize", "mean", "std")
    #: options not stored with the model (where it runs, where it is written)
    LOCAL = ("device", "out", "workers")

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.optimizer]

    def recipe_of_model(self):
        """The ``models.recipes.Recipe`` that fills unset options, or None (``recipe`` none, or no recipe)."""
        from .models.recipes import RECIPES
        if self.recipe == "none":
            return None
        if self.recipe != "auto":
            return RECIPES.lookup(self.recipe)
        return RECIPES.get(self.model) if isinstance(self.model, str) else None

    def resolved(self) -> "RunConfig":
        """A copy with every unset option (None) taken from the model's recipe, else from ``DEFAULTS``; the
        recipe's learning rate only when the optimizer is the recipe's."""
        recipe = self.recipe_of_model()
        given = {k: getattr(self, k) for k in RECIPE_FIELDS if getattr(self, k) is not None}
        base = {**DEFAULTS, **(recipe.options() if recipe else {}), **given}
        if self.lr is None:
            same = recipe is not None and base["optimizer"] == recipe.optimizer
            base["lr"] = recipe.lr if same else DEFAULT_LR[base["optimizer"]]
        base["lr_milestones"] = tuple(float(m) for m in base["lr_milestones"] or ())
        return dataclasses.replace(self, **base)

    def stored(self) -> dict:
        """The options as stored in a model file's ``train_options`` (paths made absolute)."""
        doc = {k: v for k, v in dataclasses.asdict(self).items() if k not in self.LOCAL}
        doc["lr"] = self.learning_rate
        doc["lr_milestones"] = list(doc["lr_milestones"] or ())
        for key in ("data", "test_data", "init_from", "model"):
            if doc[key] and not str(doc[key]).startswith("builtin") and os.path.exists(doc[key]):
                doc[key] = os.path.abspath(doc[key])
        return doc

    @classmethod
    def from_stored(cls, doc: dict, **overrides) -> "RunConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{**{k: v for k, v in doc.items() if k in names}, **overrides})


@dataclass
class DataPlan:
    """The arrays of a run and where they came from (``plan_data``)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray | None
    y_val: np.ndarray | None
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list
    record: object                       # data.splits.SplitRecord
    test_label: str
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    notes: list = field(default_factory=list)
    preprocessing: object = None         # data.images.Preprocessing of image files (x_* are then Datasets)

    @property
    def num_classes(self) -> int:
        """Classes (labels), or outputs (float targets: ``class_names`` holds the target names)."""
        return len(self.class_names)

    @property
    def regression(self) -> bool:
        return self.y_train.dtype.kind == "f"


# ====================================================================== 1. data
def _split_source(cfg: RunConfig, src):
    """(train pool, validation, test or None, test label) index arrays into ``src``."""
    from .data.splits import holdout
    test, label = None, None
    if src.predefined_test is not None:
        pool = np.setdiff1d(np.arange(len(src)), src.predefined_test)
        if not cfg.test_data:
            test, label = src.predefined_test, f"{len(src.predefined_test):,} images of its own test part"
    elif cfg.test_data or src.predefined_val is not None:
        pool = np.arange(len(src))
    else:
        pool, test = holdout(src.y, cfg.test_split, cfg.seed, "test", cfg.data)
        how = "stratified, " if src.y.dtype.kind in "iu" else ""
        label = f"{len(test):,} {_kind(src.x)} held out ({cfg.test_split:g} of the data, {how}seed {cfg.seed})"
    val = np.zeros(0, np.int64)
    if src.predefined_val is not None:          # its own val/ folder; a test part held out of train/ if none
        pool, val = np.setdiff1d(pool, src.predefined_val), src.predefined_val
        if test is None and not cfg.test_data:
            keep, held = holdout(src.y[pool], cfg.test_split, cfg.seed, "test", cfg.data)
            pool, test = pool[keep], pool[held]
            label = f"{len(test):,} images held out ({cfg.test_split:g} of train/, stratified, seed {cfg.seed})"
    elif cfg.val_split:
        keep, held = holdout(src.y[pool], cfg.val_split, cfg.seed, "val", cfg.data)
        pool, val = pool[keep], pool[held]
    return pool, val, test, label


def _kind(x) -> str:
    """What a dataset's samples are called in messages: images (N, C, H, W), or samples (feature rows)."""
    return "images" if np.ndim(x) == 4 else "samples"


def _new_record(cfg, src, test_src):
    from .data.splits import SplitRecord, subset
    pool, val, test, label = _split_source(cfg, src)
    if test is None:
        test = test_src.predefined_test if test_src.predefined_test is not None else np.arange(len(test_src))
        label = f"{len(test):,} images of --test-data {cfg.test_data}"
    train = subset(pool, src.y, cfg.limit, cfg.seed, "limit")
    return SplitRecord(src.spec, src.fingerprint, len(src), test_src.spec, test_src.fingerprint, len(test_src),
                       train, val, test, cfg.seed, None if cfg.test_data else cfg.test_split, cfg.val_split), label


def _check_same_data(record, src, test_src, cfg):
    for what, s, fp in (("--data", src, record.train_fingerprint), ("--test-data", test_src, record.test_fingerprint)):
        if s.fingerprint != fp:
            raise DataError(f"{what} {s.spec}: the images differ from those the run started with (fingerprint "
                            f"{s.fingerprint[:12]} vs {fp[:12]} recorded); resume needs the same data")


def _class_names(cfg, src, ys):
    """Class names: the source's, checked against the labels and ``--classes`` (regression: target names)."""
    if ys[0].dtype.kind == "f":
        return list(src.class_names)
    top = max(int(y.max()) + 1 if len(y) else 0 for y in ys)
    k = cfg.classes or max(len(src.class_names), top)
    if top > k:
        raise DataError(f"{cfg.data}: labels go up to {top - 1} but --classes is {k}")
    present = np.unique(np.concatenate(ys))
    numbered = list(src.class_names) == [str(i) for i in range(len(src.class_names))]
    if cfg.classes is None and numbered and len(present) < top:
        raise DataError(f"{cfg.data}: labels run from 0 to {top - 1} but only {len(present)} distinct values "
                        f"appear ({', '.join(map(str, present[:8]))}{', ...' if len(present) > 8 else ''}): "
                        f"pass --classes {top} if {top} classes are meant")
    names = list(src.class_names)[:k]
    return names + [str(i) for i in range(len(names), k)]


def load_sources(cfg: RunConfig, log=lambda m: None) -> tuple:
    """(source, test source) of ``cfg.data`` and ``cfg.test_data`` (the same source without it)."""
    from .data.splits import load_source
    src = load_source(cfg.data, image_options(cfg, log))
    test_src = load_source(cfg.test_data, image_options(cfg, log, src.preprocessing)) if cfg.test_data else src
    return src, test_src


def plan_data(cfg: RunConfig, record=None, log=lambda m: None, sources=None) -> DataPlan:
    """Load ``cfg.data`` (and ``cfg.test_data``; ``sources`` when already loaded by ``load_sources``), split it
    (or re-use ``record``'s split) and standardise with the training part's statistics."""
    from .data import channel_stats, standardize
    from .data.splits import subset
    src, test_src = sources or load_sources(cfg, log)
    if record is None:
        record, label = _new_record(cfg, src, test_src)
    else:
        _check_same_data(record, src, test_src, cfg)
        label = f"{len(record.test):,} {_kind(src.x)} held out (as recorded)"
    test = subset(record.test, test_src.y, cfg.limit_test, cfg.seed, "limit_test")
    plan = DataPlan(src.x[record.train], src.y[record.train], None, None, test_src.x[test], test_src.y[test],
                    [], record, label + (f", {len(test):,} of them used (--limit-test)" if len(test) < len(
                        record.test) else ""))
    if len(record.val):
        plan.x_val, plan.y_val = src.x[record.val], src.y[record.val]
    plan.class_names = _class_names(cfg, src, [plan.y_train, plan.y_test])
    plan.preprocessing = src.preprocessing
    if cfg.standardize or cfg.mean is not None:
        from .data.sources import given_stats
        given = given_stats(cfg.mean, cfg.std, plan.x_train.shape[1])
        plan.mean, plan.std = given if given is not None else channel_stats(plan.x_train)
        for name in ("x_train", "x_val", "x_test"):
            if getattr(plan, name) is not None:
                setattr(plan, name, standardize(getattr(plan, name), plan.mean, plan.std))
    return plan


def image_options(cfg: RunConfig, log=None, fixed=None):
    """How ``cfg.data``'s image files (if it has any) become inputs: the options given, else the model's input
    shape (``data.sources.ImageOptions``)."""
    from .data.sources import ImageOptions
    return ImageOptions(cfg.image_size, cfg.color, cfg.resize, lambda: model_input_shape(cfg.model), fixed,
                        cfg.skip_bad_images, cfg.workers, log)


def model_input_shape(spec) -> tuple:
    """The input shape of a zoo model (its default), a .json architecture or an .h5 model file."""
    import inspect

    from .models import ZOO
    if _is_h5(spec):
        from .io.hdf5 import load_model
        return tuple(load_model(spec, backend="cpu").model.input_shape)
    if isinstance(spec, str) and spec in ZOO:
        return tuple(inspect.signature(ZOO[spec]).parameters["input_shape"].default)
    return tuple(model_from_spec(spec).input_shape)


def describe_data(cfg, plan) -> str:
    r = plan.record
    how = "" if plan.regression else "stratified, "
    val = (f", validation {len(r.val):,} " + (f"({cfg.val_split:g} of the rest, {how}seed {cfg.seed})" if
                                              cfg.val_split else "(its own val part)") if len(r.val) else "")
    limit = f" (--limit {cfg.limit:,})" if cfg.limit and len(r.train) < r.train_size else ""
    what = f"{plan.num_classes} float target(s)" if plan.regression else f"{plan.num_classes} classes"
    kind = _kind(plan.x_train)
    files = f"; image files read as {plan.preprocessing.describe()}" if plan.preprocessing is not None else ""
    return (f"Data {cfg.data}: {r.train_size:,} {kind} {tuple(plan.x_train.shape[1:])}, {what}; "
            f"training {len(r.train):,}{limit}{val}; test {plan.test_label}{files}")


# ====================================================================== 2. model
def _is_h5(spec) -> bool:
    return os.fspath(spec).lower().endswith((".h5", ".hdf5"))


def model_from_spec(spec, input_shape=None, num_classes=None, dropout=None):
    """An unbuilt Model from a zoo name or a ``.json`` architecture (``.h5`` goes through load_model);
    ``dropout`` sets the rate of a zoo model that takes one."""
    from .models import ZOO, build_model
    if dropout is not None:
        _check_dropout(spec)
    if spec.lower().endswith(".json"):
        from .io.architecture import read_architecture     # sized before anything is built
        if not os.path.isfile(spec):
            raise ValueError(f"model architecture {spec}: no such file")
        return read_architecture(spec)
    if spec in ZOO:
        kwargs = {} if input_shape is None else {"input_shape": tuple(input_shape)}
        if num_classes is not None:
            kwargs["num_classes"] = int(num_classes)
        if dropout is not None:
            kwargs["dropout"] = float(dropout)
        from .io.limits import check_model_size
        model = build_model(spec, **kwargs)
        try:
            check_model_size(model)         # sized (NUMBACNN_MAX_GIB) before anything is allocated
        except ValueError as e:
            raise ValueError(f"model {spec} with input {tuple(model.input_shape)}: {e}") from None
        return model
    if os.path.exists(spec):
        raise ValueError(f"model {spec}: expected a zoo name, a .json architecture or an .h5 model file")
    raise ValueError(f"unknown model {spec!r}: use a zoo name ({', '.join(ZOO)}), a .json architecture "
                     f"or an .h5 model file (see 'numbacnn models')")


def _check_dropout(spec):
    import inspect

    from .models import ZOO
    takes = [name for name, f in ZOO.items() if "dropout" in inspect.signature(f).parameters]
    if spec not in takes:
        raise ValueError(f"--dropout: model {spec} has no dropout rate to set (zoo models that take one: "
                         f"{', '.join(takes)})")


def load_any_model(spec, backend, input_shape=None, num_classes=None, seed=0, dropout=None):
    """(built Model, metadata dict) from a zoo name, .json or .h5 (``dropout``: see ``model_from_spec``)."""
    if dropout is not None:
        _check_dropout(spec)
    if _is_h5(spec):
        from .io.hdf5 import load_model
        mf = load_model(spec, backend=backend)
        return mf.model, mf.metadata
    model = model_from_spec(spec, input_shape, num_classes, dropout)
    model.build(backend, seed=seed)
    return model, {}


def num_outputs(model) -> int:
    return int(np.prod(model.output_shapes[model.logits_node()]))


def rebuild_head(model, k: int, seed: int = 0) -> str:
    """Give the output and every auxiliary output of ``model`` a new classifier layer with ``k`` outputs (fresh
    weights); returns a description."""
    return "; ".join(_rebuild_classifier(model, node, k, seed) for node in [model.output, *model.aux_outputs])


def _rebuild_classifier(model, output, k: int, seed: int) -> str:
    """The classifier of ``output`` is the last layer with an ``outputs_key`` (Dense units, Conv2D filters) on
    the way back from it through single-input, parameter-free layers (Softmax, Flatten, ...)."""
    from .graph import INPUT
    name = output
    while model.layers[name].outputs_key is None:
        layer, ins = model.layers[name], model.inputs_of(name)
        if layer.param_shapes or len(ins) != 1 or ins[0] == INPUT:
            raise ValueError(f"model {model.name!r}: cannot find its classifier layer to give it {k} outputs")
        name = ins[0]
    old = model.layers[name]
    cfg = old.get_config()
    before, cfg[old.outputs_key] = cfg[old.outputs_key], int(k)
    model.replace(name, type(old)(**cfg))
    model.reinitialize([name], seed)
    return f"re-initialised layer {name!r} ({old.registered_name} {before} -> {k} outputs) for {k} classes"


def _transfer(cfg, model, log):
    """--init-from and --freeze; prints what was loaded, skipped and frozen."""
    from .io.hdf5 import load_weights_by_name
    if cfg.init_from:
        loaded, skipped = load_weights_by_name(model, cfg.init_from)
        if not loaded:
            reasons = "; ".join(f"{n}: {why}" for n, why in skipped[:3])
            raise ValueError(f"--init-from {cfg.init_from}: no layer of model {model.name!r} matches a layer of "
                             f"the file by name and shapes ({reasons}{'; ...' if len(skipped) > 3 else ''})")
        log(f"init-from {cfg.init_from}: loaded {len(loaded)} layer(s) ({', '.join(loaded)}), skipped "
            f"{len(skipped)}")
        for layer, why in skipped:
            log(f"  skipped {layer}: {why}")
    if cfg.freeze:
        names = [n.strip() for n in cfg.freeze.split(",") if n.strip()]
        model.freeze(names)
        frozen = sum(model.layers[n].count_params() for n in names)
        log(f"froze {len(names)} layer(s) ({', '.join(names)}): {frozen:,} parameters fixed")


def decide_precompute(cfg, model, log) -> bool:
    """Whether the frozen part of the graph can be run once up front; says why when it cannot."""
    from .train import frozen_prefix_split
    if not any(not layer.trainable for layer in model.layers.values()):
        return False
    try:
        prefix, boundary, _ = frozen_prefix_split(model)
    except ValueError as e:
        log(f"frozen features are computed every step, not once: {str(e).split(': ', 1)[-1]}")
        return False
    if cfg.augment:
        log("frozen features are computed every step, not once: --augment changes the inputs every epoch")
        return False
    log(f"pre-computing the frozen layers' output ({', '.join(prefix)}) once; training runs from {boundary!r} on")
    return True


def prepare_model(cfg: RunConfig, plan: DataPlan, backend, log):
    """The built model for a new run (see the module docstring); returns (model, precompute flag)."""
    k = plan.num_classes
    model, meta = load_any_model(cfg.model, backend, plan.x_train.shape[1:], k, cfg.seed, cfg.dropout)
    if tuple(plan.x_train.shape[1:]) != tuple(model.input_shape):
        raise ValueError(f"model {cfg.model} takes inputs of shape {tuple(model.input_shape)} but --data "
                         f"{cfg.data} has images of shape {tuple(plan.x_train.shape[1:])}")
    if _is_h5(cfg.model) and num_outputs(model) != k:
        log(rebuild_head(model, k, cfg.seed))
    elif num_outputs(model) < k:
        raise ValueError(f"model {cfg.model} has {num_outputs(model)} outputs but --data {cfg.data} has {k} "
                         f"classes")
    if meta.get("class_names") and len(meta["class_names"]) == k and plan.class_names == [str(i) for i in range(k)]:
        plan.class_names = list(meta["class_names"])
    _transfer(cfg, model, log)
    return model, decide_precompute(cfg, model, log)


def describe_training(cfg: RunConfig) -> str:
    """One line: optimizer, schedule, batch size, augmentation, and where they come from."""
    recipe = cfg.recipe_of_model()
    where = (f"the {cfg.model if cfg.recipe == 'auto' else cfg.recipe} recipe "
             f"({recipe.source.split(':')[0]}) unless given" if recipe else "numbacnn's defaults unless given")
    opt = f"{cfg.optimizer} lr {cfg.learning_rate:g}" + (f" momentum {cfg.momentum:g}" if cfg.optimizer == "sgd"
                                                          else "")
    return (f"Training: {opt}, weight decay {cfg.weight_decay:g}, {cfg.schedule} schedule, batch {cfg.batch_size}, "
            f"augmentation {cfg.augment or 'none'}, {cfg.epochs} epochs ({where})")


# ====================================================================== 3. optimizer and schedule
def make_optimizer(cfg: RunConfig):
    from .optim import get_optimizer
    kw = {"lr": cfg.learning_rate, "weight_decay": cfg.weight_decay, "l1": cfg.l1}
    if cfg.optimizer == "sgd":
        kw.update(momentum=cfg.momentum, nesterov=cfg.nesterov)
    return get_optimizer(cfg.optimizer, **kw)


def make_schedule(cfg: RunConfig):
    from .schedules import get_schedule
    monitor = "val_loss" if cfg.val_split else "loss"
    kwargs = {"constant": {}, "cosine": {"total_epochs": cfg.epochs},
              "step": {"step_size": cfg.lr_step or max(1, cfg.epochs // 3), "gamma": cfg.lr_factor},
              "multistep": {"milestones": milestone_epochs(cfg), "gamma": cfg.lr_factor},
              "plateau": {"monitor": monitor, "factor": cfg.lr_factor, "patience": cfg.lr_patience}}[cfg.schedule]
    return get_schedule(cfg.schedule, cfg.learning_rate, **kwargs)


def milestone_epochs(cfg: RunConfig) -> list:
    """The multistep schedule's milestones as epochs: ``lr_milestones`` (fractions of the run) times ``epochs``."""
    return sorted({max(1, round(f * cfg.epochs)) for f in cfg.lr_milestones or ()})


def replan_schedule(cfg: RunConfig, saved, log):
    """The saved schedule of a resumed run, re-planned when ``--epochs`` changed the length it was planned for.

    A cosine schedule planned for 4 epochs has reached 0 at epoch 4; resumed to 8 epochs it is
    planned again over 8 (a warm restart), and a step schedule whose step was a third of the
    epochs gets a third of the new number.  Either change is printed.
    """
    from .schedules import Cosine, MultiStep, StepDecay
    if isinstance(saved, MultiStep) and cfg.lr_milestones and saved.milestones != milestone_epochs(cfg):
        new = MultiStep(saved.lr, milestone_epochs(cfg), saved.gamma)
        log(f"multistep schedule re-planned for {cfg.epochs} epochs: x{saved.gamma:g} at epochs "
            f"{', '.join(map(str, new.milestones))} (were {', '.join(map(str, saved.milestones))})")
        return new
    if isinstance(saved, Cosine) and saved.total_epochs != cfg.epochs:
        new = Cosine(saved.lr, total_epochs=cfg.epochs, min_lr=saved.min_lr)
        log(f"cosine schedule re-planned from {saved.total_epochs} to {cfg.epochs} epochs (learning rate "
            f"{new.lr_for_epoch(saved.total_epochs):.3g} at epoch {saved.total_epochs + 1})")
        return new
    if isinstance(saved, StepDecay) and not cfg.lr_step and saved.step_size != max(1, cfg.epochs // 3):
        new = StepDecay(saved.lr, step_size=max(1, cfg.epochs // 3), gamma=saved.gamma)
        log(f"step schedule re-planned for {cfg.epochs} epochs: x{saved.gamma:g} every {new.step_size} epoch(s) "
            f"(was every {saved.step_size})")
        return new
    return saved


# ====================================================================== 4. the run
@dataclass
class RunResult:
    model: object
    history: list
    test_loss: float
    test_accuracy: float
    out: str
    history_path: str
    plan: DataPlan


def stem(path) -> str:
    root, ext = os.path.splitext(os.fspath(path))
    return root if ext.lower() in (".h5", ".hdf5") else os.fspath(path)


class TrainingRun:
    """One ``numbacnn train`` run: configuration in, model file and history out (see the module docstring).

    config    : a ``RunConfig``
    log       : receives every line meant for the user (default: print)
    callbacks : extra callbacks (e.g. the progress bar) added to the run's own
    resume    : a ``ModelFile`` to continue (``TrainingRun.resumed`` builds one with its options)
    strategy  : ``distributed.LocalStrategy()`` (the default) or an ``MPIStrategy`` (data-parallel: every rank
                runs the same ``TrainingRun``; the writer alone logs and writes files)
    plan      : a ``DataPlan`` to train on instead of the one ``plan_data`` makes (``search`` gives its folds)
    """

    def __init__(self, config: RunConfig, log=print, callbacks=(), resume=None, strategy=None, plan=None):
        from .distributed import LocalStrategy
        self.strategy = strategy if strategy is not None else LocalStrategy()
        self.cfg, self.extra_callbacks, self.resumed = config.resolved(), list(callbacks), resume
        self.log = self.strategy.writer_log(log)
        self.strategy.sync_bn = bool(self.cfg.sync_bn)
        self.backend = self.model = self.optimizer = self.schedule = None
        self.plan, self.precompute = plan, False

    @classmethod
    def resumed(cls, path, overrides: dict, backend="cpu", log=print, callbacks=(), strategy=None):
        """A run continuing the model or checkpoint file ``path``; ``overrides`` are options given again (a
        checkpoint resumes with any number of ranks: its state does not depend on them)."""
        from .io.hdf5 import load_model
        bad = sorted(set(overrides) & {"model", "init_from", "freeze", *RunConfig.DATA_OPTIONS})
        if bad:
            raise ValueError(f"--resume continues the file's model and data split: it cannot be combined with "
                             f"{', '.join('--' + b.replace('_', '-') for b in bad)}")
        mf = load_model(path, backend=backend)
        if mf.training_state is None or mf.optimizer_state is None:
            raise ValueError(f"{path}: has no training state to resume from (write one with 'numbacnn train')")
        saved = mf.metadata.get("train_options") or {}
        cfg = RunConfig.from_stored(saved, **{"out": os.fspath(path), **overrides})
        run = cls(cfg, log, callbacks, mf, strategy)
        run.log(f"Resuming {path} after epoch {mf.training_state['epoch']}")
        return run

    # ------------------------------------------------------------ steps
    def prepare(self):
        """Data, model, optimizer and schedule (steps 1-3)."""
        from .backends import get_backend
        from .data.splits import SplitRecord
        self.strategy.check_batch_size(self.cfg.batch_size)
        self.backend = get_backend(self.cfg.device)
        t0 = time.perf_counter()
        record = None if self.resumed is None else SplitRecord.from_metadata(self.resumed.metadata, self.cfg.out)
        if self.resumed is not None and record is None:
            self.log(f"note: {self.cfg.out} records no data split (an older model file): the split is drawn again")
        self.plan = self.plan or plan_data(self.cfg, record, self.log)
        self.log(describe_data(self.cfg, self.plan) + f" ({time.perf_counter() - t0:.1f}s to load)")
        self._choose_loss()
        if self.resumed is None:
            self.model, self.precompute = prepare_model(self.cfg, self.plan, self.backend, self.log)
            self.optimizer, self.schedule = make_optimizer(self.cfg), make_schedule(self.cfg)
        else:
            self._prepare_resumed()
        self.log(f"Model {self.model.name} ({self.model.count_params()[0]:,} parameters) on {self.backend.name}")
        self.log(describe_training(self.cfg))
        if self.strategy.size > 1:
            self.log(f"Data-parallel over {self.strategy.describe()}: global batch {self.cfg.batch_size} = "
                     f"{self.cfg.batch_size // self.strategy.size} per rank")
        return self

    def _choose_loss(self):
        """--loss by the data when not given (cross-entropy for labels, mse for float targets), and checked."""
        from .losses import get_loss
        if self.cfg.loss is None:
            self.cfg = dataclasses.replace(self.cfg, loss="mse" if self.plan.regression else "cross_entropy")
        if self.plan.regression and get_loss(self.cfg.loss).classification:
            raise ValueError(f"--data {self.cfg.data} has float targets (regression): use --loss mse, mae or huber, "
                             f"not {self.cfg.loss}")

    def _prepare_resumed(self):
        from .optim import optimizer_from_state
        from .schedules import schedule_from_json
        mf = self.resumed
        self.model = mf.model
        if self.plan.num_classes > num_outputs(self.model):
            raise ValueError(f"model {self.cfg.out} has {num_outputs(self.model)} outputs but the data has "
                             f"{self.plan.num_classes} classes")
        self.optimizer = optimizer_from_state(mf.optimizer_state)
        saved = mf.training_state.get("schedule")
        self.schedule = (replan_schedule(self.cfg, schedule_from_json(saved), self.log) if saved
                         else make_schedule(self.cfg))
        self.precompute = decide_precompute(self.cfg, self.model, self.log)

    def metadata(self) -> dict:
        meta = {"class_names": self.plan.class_names, "train_options": self.cfg.stored(),
                "library_version": __version__, **self.plan.record.to_metadata()}
        if self.plan.preprocessing is not None:
            meta["preprocessing"] = self.plan.preprocessing.to_json()
        if self.plan.mean is not None:
            meta.update(mean=np.asarray(self.plan.mean, np.float32), std=np.asarray(self.plan.std, np.float32))
        return meta

    def callbacks(self, ckpt=None, history_path=None):
        """The run's callbacks; the history CSV and checkpoint only where their paths are given."""
        from .callbacks import EarlyStopping, HistoryCSV, ModelCheckpoint
        previous = self.resumed.training_state.get("history", []) if self.resumed is not None else []
        cbs = []
        if self.cfg.early_stop is not None:
            cbs.append(EarlyStopping(self.cfg.monitor, self.cfg.early_stop, restore_best_weights=True, log=self.log))
        cbs += self.extra_callbacks
        if history_path:
            cbs.append(HistoryCSV(history_path, previous))
        if ckpt:
            cbs.append(ModelCheckpoint(ckpt, lambda trainer: self.metadata()))
        return cbs

    def trainer(self, ckpt=None, history_path=None):
        from .data import make_augment
        from .train import Trainer
        augment = make_augment(self.cfg.augment) if self.cfg.augment else None
        return Trainer(self.model, self.optimizer, self.schedule, self.cfg.loss, self.cfg.batch_size, augment,
                       self.cfg.seed, callbacks=self.callbacks(ckpt, history_path),
                       precompute_frozen=self.precompute, strategy=self.strategy)

    def train(self) -> RunResult:
        """Train, test, write the model file (step 4); ``prepare()`` first."""
        from .io.hdf5 import save_model
        cfg, plan, out = self.cfg, self.plan, self.cfg.out
        ckpt, history_path = stem(out) + ".ckpt.h5", stem(out) + ".history.csv"
        with self.strategy.agreement():
            trainer = self.trainer(ckpt, history_path)
        validation = None if plan.x_val is None else (plan.x_val, plan.y_val)
        state = None if self.resumed is None else self.resumed.training_state
        start = trainer.epoch if state is None else state["epoch"]
        try:
            with np.errstate(all="ignore"):   # divergence is reported by the trainer itself
                history = trainer.fit(plan.x_train, plan.y_train, cfg.epochs, validation, state)
        except KeyboardInterrupt:
            kept = (f"the last completed epoch is in {ckpt} (continue with: numbacnn train --resume {ckpt} --out "
                    f"{out})" if os.path.exists(ckpt) else "interrupted before the first epoch ended")
            raise RunInterrupted(f"interrupted; {kept}; {out} was not written") from None
        except (ArithmeticError, ValueError) as e:
            kept = f"; the last completed epoch is in {ckpt}" if os.path.exists(ckpt) else ""
            raise type(e)(f"{e}{kept}; {out} was not written") from None
        scores, line = self.test()

        def write():
            save_model(out, self.model, self.optimizer, training_state=trainer.training_state(),
                       metadata={**self.metadata(), **scores})
            if os.path.exists(ckpt):
                os.remove(ckpt)

        self.strategy.write(write)
        self.log(line)
        took = sum(h["time"] for h in history[start:])
        self.log(f"Wrote {out} and {history_path} ({len(history) - start} epoch(s) in {took:.1f}s)")
        return RunResult(self.model, history, scores["test_loss"], scores.get("test_accuracy"), out, history_path,
                         plan)

    def test(self):
        """Scores on the test part: (metadata entries, the line to print)."""
        from .train import evaluate, predict
        plan, strategy = self.plan, self.strategy
        strategy.sync_buffers(self.model)          # the writer's running statistics, which its file keeps
        loss, acc, _ = evaluate(self.model, plan.x_test, plan.y_test, batch_size=256, loss=self.cfg.loss,
                                strategy=strategy)
        if not plan.regression:
            return ({"test_accuracy": float(acc), "test_loss": float(loss)},
                    f"Test accuracy {acc:.4f} (loss {loss:.4f}) on {plan.test_label}")
        from .metrics import regression_report
        rep = regression_report(plan.y_test, predict(self.model, plan.x_test, strategy=strategy), plan.class_names)
        return ({"test_loss": float(loss), "test_mse": rep["mse"], "test_mae": rep["mae"], "test_r2": rep["r2"]},
                f"Test MSE {rep['mse']:.4f}, MAE {rep['mae']:.4f}, R^2 {rep['r2']:.4f} on {plan.test_label}")

    def run(self) -> RunResult:
        with self.strategy.agreement():     # a rank that cannot load its data or model stops every rank
            self.prepare()
        return self.train()


# ====================================================================== evaluation data
def _same_as_recorded(src, record, meta) -> str | None:
    """'test' / 'train' when ``src`` holds the images a model was tested / trained on, else None."""
    if record is not None:
        if src.fingerprint == record.test_fingerprint:
            return "test"
        return "train" if src.fingerprint == record.train_fingerprint else None
    opts = meta.get("train_options") or {}
    return "unrecorded" if opts.get("data") in (src.spec, os.path.basename(src.spec)) else None


def _evaluation_indices(src, record, meta, split, model_label):
    """(indices into ``src``, description) of the images ``evaluate`` scores."""
    n, seen, kind = len(src), _same_as_recorded(src, record, meta), _kind(src.x)
    used = 0 if record is None else len(record.train) + len(record.val)
    if seen == "test" and split != "all":
        return record.test, f"test split: {len(record.test):,} {kind} held out at training"
    if seen == "test" or (seen == "train" and split == "all"):
        trained = used if seen == "train" or record.same_test_source() else 0
        return np.arange(n), f"all {n:,} {kind}" + (f", {trained:,} of which were used in training" if trained else "")
    if seen == "train":
        raise DataError(f"--data {src.spec}: {model_label} was trained on these images (its test images are in "
                        f"{record.test_spec}: evaluate without --data to use them, or pass --split all)")
    if seen == "unrecorded" and split != "all":
        raise DataError(f"--data {src.spec}: {model_label} was trained on this data but does not record which "
                        f"images were held out (an older model file): retrain it, or pass --split all")
    if split == "all" or (split == "auto" and src.predefined_test is None):
        return np.arange(n), f"all {n:,} {kind}"
    if src.predefined_test is None:
        raise DataError(f"--data {src.spec}: has no test part of its own and is not the data {model_label} was "
                        f"trained on (use --split all)")
    return src.predefined_test, f"its own test part, {len(src.predefined_test):,} images"


def evaluation_data(meta: dict, spec, split="auto", limit=None, model_label="the model", input_shape=None,
                    skip_bad=False, workers=None, log=None):
    """(x, y, class names, description) for ``numbacnn evaluate``.

    Data a model was trained on is recognised by its fingerprint: ``auto``/``test`` then score
    only the images held out at training; ``all`` scores everything and says how many were
    trained on.  Without ``spec`` the model's recorded test data is used.  Image files are read
    with the preprocessing the model file records (else made for ``input_shape``); x is then a
    streamed ``data.datasets.Dataset``.
    """
    from .data.sources import model_image_options
    from .data.splits import SplitRecord, load_source, subset
    record = SplitRecord.from_metadata(meta, model_label)
    if spec is None:
        if record is None:
            raise DataError(f"{model_label} does not record the data it was trained on: give --data")
        spec = record.test_spec
    src = load_source(spec, model_image_options(meta, input_shape, model_label, skip_bad, workers, log))
    idx, part = _evaluation_indices(src, record, meta, split, model_label)
    if limit is not None and limit < len(idx):
        idx = subset(idx, src.y, limit, 0, "limit_test")
        part += f", {len(idx):,} of them used (--limit)"
    return src.x[idx], src.y[idx], src.class_names, part


__all__ = ["RunConfig", "DataPlan", "RunResult", "TrainingRun", "RunInterrupted", "plan_data", "load_sources",
           "prepare_model", "make_optimizer", "make_schedule", "replan_schedule", "rebuild_head", "evaluation_data",
           "load_any_model", "model_from_spec", "num_outputs", "stem", "DEFAULT_LR"]
