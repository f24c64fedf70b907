"""Grid search of hyper-parameters, scored on a validation split or by k-fold cross-validation.

``numbacnn search`` and ``GridSearch`` (the same thing from Python)::

    numbacnn search --model lenet5 --grid lr=1e-3,3e-3,1e-2 --grid l2=0,1e-4 --grid dropout=0,0.3 --epochs 4
    numbacnn search ... --folds 5           # k-fold cross-validation of the training part instead

1. The data is split once, exactly as ``train`` splits it (``run.plan_data``): a test part held out, the
   rest the *training part*.  The test part is not read again until step 4.
2. Every combination of the ``--grid`` values (a *trial*) trains a fresh model with the same seed on the
   training part less its validation split (``--val-split``, 0.2 by default) and is scored on that split;
   with ``--folds K`` it trains K times, each fold held out once, and scores the mean (± std) over folds.
   Standardisation statistics come from each trial's own training rows.
3. Trials are ranked (validation accuracy, or loss: ``--metric``; regression: loss) and written to
   ``DIR/trials.csv`` and ``DIR/trials.json`` after every trial, so that an interrupted search resumes: a
   trial already in ``trials.json`` (same options, same data, same split) is skipped.
4. The best trial is trained again on the whole training part (validation split or folds included) and
   tested once on the test part (``DIR/best.h5``); its test score is reported apart from the ranking,
   which it never influenced.

Under ``mpiexec -n K`` the trials are shared out over the ranks (trial i on rank i mod K, one at a time
each, ``distributed``); rank 0 writes the files and retrains the best.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import itertools
import json
import math
import os
import time
from dataclasses import dataclass, field

import numpy as np

from .run import RunConfig, TrainingRun, load_sources, plan_data

# ---------------------------------------------------------------------------- the grid
_SCHEDULES = ("constant", "step", "multistep", "cosine", "plateau")


def _positive(v):
    return v > 0


def _at_least_0(v):
    return v >= 0


def _fraction(v):
    return 0 <= v < 1


#: --grid names: the RunConfig field, the value type, a check and what the check means
HYPER = {
    "lr": ("lr", float, _positive, "> 0"),
    "l2": ("weight_decay", float, _at_least_0, ">= 0"),
    "weight_decay": ("weight_decay", float, _at_least_0, ">= 0"),
    "l1": ("l1", float, _at_least_0, ">= 0"),
    "momentum": ("momentum", float, _fraction, "in [0, 1)"),
    "dropout": ("dropout", float, _fraction, "in [0, 1)"),
    "lr_factor": ("lr_factor", float, lambda v: 0 < v < 1, "in (0, 1)"),
    "batch_size": ("batch_size", int, _positive, ">= 1"),
    "epochs": ("epochs", int, _positive, ">= 1"),
    "lr_step": ("lr_step", int, _positive, ">= 1"),
    "optimizer": ("optimizer", str, lambda v: v in ("sgd", "adam"), "sgd or adam"),
    "schedule": ("schedule", str, lambda v: v in _SCHEDULES, " or ".join(_SCHEDULES)),
    "augment": ("augment", str, None, "comma-free augmentation names joined by '+' (or none)"),
    "loss": ("loss", str, lambda v: v in ("cross_entropy", "mse", "mae", "huber"), "cross_entropy, mse, mae "
             "or huber"),
    "model": ("model", str, None, "a zoo name, .json or .h5"),
}


def _value(name: str, text: str):
    field_name, kind, check, meaning = HYPER[name]
    text = text.strip()
    if name == "augment":
        from .data.augment import TRANSFORMS
        parts = [] if text in ("", "none") else text.split("+")
        bad = [p for p in parts if p not in TRANSFORMS]
        if bad:
            raise ValueError(f"--grid augment: unknown augmentation {', '.join(bad)} (choose from "
                             f"{', '.join(TRANSFORMS)}; join several with '+', e.g. flip+noise)")
        return ",".join(parts)
    try:
        value = kind(float(text)) if kind is int and float(text).is_integer() else kind(text)
    except ValueError:
        raise ValueError(f"--grid {name}: {text!r} is not {'an integer' if kind is int else 'a number'}") from None
    if check is not None and not check(value):
        raise ValueError(f"--grid {name}: {text!r} must be {meaning}")
    return value


def parse_grid(specs) -> dict:
    """``["lr=1e-3,3e-3", "l2=0,1e-4"]`` -> ``{"lr": [0.001, 0.003], "l2": [0.0, 0.0001]}`` (names as given, in
    order; values typed and checked).  ValueError names the --grid entry at fault."""
    grid = {}
    for spec in specs:
        name, eq, values = str(spec).partition("=")
        name = name.strip().replace("-", "_")
        if not eq or not values.strip():
            raise ValueError(f"--grid {spec!r}: expected NAME=V1,V2,... (e.g. lr=1e-3,1e-2)")
        if name not in HYPER:
            raise ValueError(f"--grid {spec!r}: unknown hyper-parameter {name!r} (choose from {', '.join(HYPER)})")
        if name in grid or HYPER[name][0] in {HYPER[n][0] for n in grid}:
            raise ValueError(f"--grid {name}: given twice")
        vals = [_value(name, v) for v in values.split(",")]
        if len(set(map(repr, vals))) != len(vals):
            raise ValueError(f"--grid {name}: a value repeats ({values})")
        grid[name] = vals
    if not grid:
        raise ValueError("search needs at least one --grid NAME=V1,V2,...")
    return grid


def trials_of(grid: dict) -> list:
    """Every combination, in grid order: [{name: value}]."""
    names = list(grid)
    return [dict(zip(names, combo)) for combo in itertools.product(*(grid[n] for n in names))]


def _label(params: dict) -> str:
    return " ".join(f"{k}={v if v != '' else 'none'}" if not isinstance(v, float) else f"{k}={v:g}"
                    for k, v in params.items())


def _key(params: dict) -> str:
    return json.dumps(params, sort_keys=True)


# ---------------------------------------------------------------------------- results
@dataclass
class Trial:
    """One combination's result: the score (mean over folds), its std, the per-fold scores and losses."""

    params: dict
    score: float
    std: float
    fold_scores: list
    val_loss: float
    val_accuracy: float | None
    seconds: float
    error: str | None = None

    def sort_key(self, higher_is_better: bool):
        bad = self.error is not None or not math.isfinite(self.score)
        return (bad, -self.score if higher_is_better else self.score)


@dataclass
class SearchResult:
    """What ``GridSearch.run`` returns: the ranked trials, the best parameters and the retrained model's run."""

    trials: list                 # ranked, best first
    best: dict
    metric: str
    final: dict = field(default_factory=dict)   # test scores of the best, retrained (and where it is)


class GridSearch:
    """A grid search (see the module docstring).

    config  : the ``RunConfig`` every trial starts from (``--grid`` values replace its fields)
    grid    : ``parse_grid``'s dict
    folds   : None (score on the validation split) or K >= 2 (k-fold cross-validation of the training part)
    metric  : "accuracy" (higher is better) or "loss"; default accuracy for labels, loss for float targets
    out_dir : where trials.csv, trials.json and best.h5 go (created)
    log     : receives every line for the user
    callbacks : extra callbacks (a progress bar) of the best model's final training
    strategy  : ``distributed`` strategy: trials are shared out over its ranks
    """

    def __init__(self, config: RunConfig, grid: dict, folds=None, metric=None, out_dir="search", log=print,
                 callbacks=(), strategy=None):
        from .distributed import LocalStrategy
        if config.early_stop is not None:
            raise ValueError("search: every trial trains --epochs epochs (early stopping would choose its epoch "
                             "on the data that scores it); drop --early-stop")
        if folds is not None and config.val_split:
            raise ValueError("search: --folds and --val-split are alternatives (the folds are the validation)")
        if metric not in (None, "accuracy", "loss"):
            raise ValueError(f"search: --metric must be accuracy or loss, got {metric!r}")
        if folds is None and not config.val_split:
            config = dataclasses.replace(config, val_split=0.2)
        self.cfg, self.grid, self.folds, self.metric = config, dict(grid), folds, metric
        self.out_dir, self.extra_callbacks = os.fspath(out_dir), list(callbacks)
        self.strategy = strategy if strategy is not None else LocalStrategy()
        self.log = self.strategy.writer_log(log)
        self.json_path = os.path.join(self.out_dir, "trials.json")
        self.csv_path = os.path.join(self.out_dir, "trials.csv")
        self.best_path = os.path.join(self.out_dir, "best.h5")

    # ------------------------------------------------------------ data
    def _split(self):
        """Sources, the run's split record, the parts each trial trains and is scored on, and the classes."""
        from .data.splits import kfold
        cfg = self.cfg
        sources = load_sources(cfg, self.log)
        plan = plan_data(cfg, None, self.log, sources)
        rec = plan.record
        if self.folds is None and not len(rec.val):
            raise ValueError(f"search: --data {cfg.data} leaves no validation images (use --val-split or --folds)")
        if self.folds is None:
            parts = [(rec.train, rec.val)]
        else:
            pool = np.sort(np.concatenate([rec.train, rec.val]))
            held = kfold(sources[0].y[pool], self.folds, cfg.seed, f"--data {cfg.data}")
            parts = [(np.setdiff1d(pool, pool[h]), pool[h]) for h in held]
        return sources, plan, parts

    def _describe(self, plan, parts, n_trials):
        kind = "images" if np.ndim(plan.x_train) == 4 else "samples"
        n_train = len(plan.record.train) + len(plan.record.val)
        how = (f"validation split of {len(parts[0][1]):,} {kind} ({len(parts[0][0]):,} trained on)"
               if self.folds is None else f"{self.folds}-fold cross-validation of {n_train:,} {kind}")
        sizes = " x ".join(f"{n} {len(v)}" for n, v in self.grid.items())
        return (f"Search: {n_trials} trial(s) ({sizes}) of {self.cfg.model}, scored by {self.metric} on a {how}; "
                f"the test part ({len(plan.y_test):,} {kind}) is used once, by the best trial retrained")

    def identity(self, plan) -> dict:
        """What a resumed search must share with the one that wrote trials.json: the options other than the
        grid's, the metric, the folds and the data split."""
        grid_fields = {HYPER[n][0] for n in self.grid}
        opts = {k: v for k, v in dataclasses.asdict(self.cfg).items()
                if k not in grid_fields and k not in RunConfig.LOCAL and k not in ("data", "test_data")}
        r = plan.record
        h = hashlib.sha256()
        for a in (r.train, r.val, r.test):
            h.update(np.asarray(a, np.int64).tobytes() + b"|")
        doc = {"options": opts, "metric": self.metric, "folds": self.folds,
               "data": {"train": r.train_fingerprint, "test": r.test_fingerprint, "split": h.hexdigest()}}
        return json.loads(json.dumps(doc))          # as it reads back from trials.json (tuples as lists)

    # ------------------------------------------------------------ one trial
    def _trial_config(self, params, classes):
        fields = {HYPER[n][0]: v for n, v in params.items()}
        return dataclasses.replace(self.cfg, **fields, **({"classes": classes} if classes else {}))

    def run_trial(self, params, sources, parts, classes) -> Trial:
        """Train ``params`` on every part (one, or the folds) and score it on the part's held-out images."""
        from .distributed import LocalStrategy
        t0, scores, losses, accs = time.perf_counter(), [], [], []
        cfg = self._trial_config(params, classes)
        try:
            for train_idx, held_idx in parts:
                rec = dataclasses.replace(self._record, train=train_idx, val=held_idx, test=np.zeros(0, np.int64))
                plan = plan_data(cfg, rec, lambda m: None, sources)
                run = TrainingRun(cfg, log=lambda m: None, strategy=LocalStrategy(), plan=plan).prepare()
                with np.errstate(all="ignore"):
                    last = run.trainer().fit(plan.x_train, plan.y_train, run.cfg.epochs,
                                             (plan.x_val, plan.y_val))[-1]
                losses.append(float(last["val_loss"]))
                accs.append(last.get("val_accuracy"))
                scores.append(losses[-1] if self.metric == "loss" else float(accs[-1]))
        except ArithmeticError as e:          # a diverging combination ranks last; the search goes on
            return Trial(params, math.nan, math.nan, scores, math.nan, None, time.perf_counter() - t0, str(e))
        acc = None if any(a is None for a in accs) else float(np.mean(accs))
        return Trial(params, float(np.mean(scores)), float(np.std(scores)), scores, float(np.mean(losses)), acc,
                     time.perf_counter() - t0)

    def _line(self, i, n, t: Trial) -> str:
        if t.error:
            return f"[{i}/{n}] {_label(t.params)}: failed ({t.error}) in {t.seconds:.1f}s"
        spread = f" ± {t.std:.4f} over {len(t.fold_scores)} folds" if self.folds else ""
        extra = f" (loss {t.val_loss:.4f})" if self.metric == "accuracy" else (
            f" (accuracy {t.val_accuracy:.4f})" if t.val_accuracy is not None else "")
        return f"[{i}/{n}] {_label(t.params)}: val {self.metric} {t.score:.4f}{spread}{extra} in {t.seconds:.1f}s"

    # ------------------------------------------------------------ the search
    def run(self) -> SearchResult:
        with self.strategy.agreement():
            os.makedirs(self.out_dir, exist_ok=True)
            sources, plan, parts = self._split()
            self._record = plan.record
            if self.metric is None:
                self.metric = "loss" if plan.regression else "accuracy"
            classes = None if plan.regression else plan.num_classes
            trials = trials_of(self.grid)
            identity = self.identity(plan)
            done = self._previous(identity)
        self.log(self._describe(plan, parts, len(trials)))
        results = {k: t for k, t in done.items() if k in {_key(p) for p in trials}}
        if results:
            self.log(f"Resuming: {len(results)} of {len(trials)} trial(s) already in {self.json_path}")
        pending = [p for p in trials if _key(p) not in results]
        mine, first = [], len(trials) - len(pending) + 1
        for i, params in self.strategy.assign(pending):
            t = self.run_trial(params, sources, parts, classes)
            mine.append((i, t))
            results[_key(params)] = t
            if self.strategy.size == 1:
                self.log(self._line(first + i, len(trials), t))
                self._save(identity, results, None)
            else:                               # every rank reports its own trials as they end
                print(self._line(first + i, len(trials), t) + f" (rank {self.strategy.rank})", flush=True)
        for t in self.strategy.collect(mine):
            results[_key(t.params)] = t
        ranked = sorted((results[_key(p)] for p in trials), key=lambda t: t.sort_key(self.metric == "accuracy"))
        self.strategy.write(lambda: self._save(identity, results, None))
        self.log(self.table(ranked))
        self.log(f"Wrote {self.csv_path} and {self.json_path}")
        if ranked[0].error is not None or not math.isfinite(ranked[0].score):
            raise ArithmeticError("search: every trial failed; nothing to retrain")
        final = self._final(ranked[0].params, identity, results, sources, classes)
        return SearchResult(ranked, ranked[0].params, self.metric, final)

    def _final(self, best, identity, results, sources, classes) -> dict:
        """Train the best on the whole training part and test it once (the writer alone); its scores."""
        previous = self._previous_final(identity)
        if previous and previous.get("params") == best and os.path.exists(self.best_path):
            self.log(f"Best: {_label(best)}; already retrained and tested: {self.best_path} ({_scores(previous)})")
            return previous
        final = {}

        def retrain():
            r = self._record
            record = dataclasses.replace(r, train=np.concatenate([r.train, r.val]), val=np.zeros(0, np.int64),
                                         val_split=0.0)
            cfg = dataclasses.replace(self._trial_config(best, classes), val_split=0.0, limit=None,
                                      out=self.best_path)       # the rows are the record's: --limit was applied
            self.log(f"Best: {_label(best)}; trained again on the whole training part ({len(record.train):,}) and "
                     f"tested once")
            from .distributed import LocalStrategy
            res = TrainingRun(cfg, self.log, self.extra_callbacks, strategy=LocalStrategy(),
                              plan=plan_data(cfg, record, self.log, sources)).run()
            final.update(params=best, out=self.best_path, test_loss=float(res.test_loss),
                         **({} if res.test_accuracy is None else {"test_accuracy": float(res.test_accuracy)}))
            self._save(identity, results, final)

        self.strategy.write(retrain)
        return final

    # ------------------------------------------------------------ files
    def _load_json(self):
        if not os.path.exists(self.json_path):
            return None
        try:
            with open(self.json_path, encoding="utf-8") as f:
                doc = json.load(f)
            if not isinstance(doc, dict) or not isinstance(doc.get("trials"), list):
                raise ValueError("not a search record")
            return doc
        except (OSError, ValueError) as e:
            raise ValueError(f"{self.json_path}: cannot resume from it ({e}); remove it or choose another "
                             f"--out-dir") from None

    def _previous(self, identity) -> dict:
        """{key: Trial} of an earlier search with the same identity in ``out_dir`` (ValueError if it differs)."""
        doc = self._load_json()
        if doc is None:
            return {}
        if doc.get("identity") != identity:
            diff = _differences(doc.get("identity") or {}, identity)
            raise ValueError(f"{self.json_path}: holds a search with other options or data ({diff}); use another "
                             f"--out-dir or remove it")
        try:
            return {_key(t["params"]): Trial(**{**t, **{k: math.nan for k in ("score", "std", "val_loss")
                                                         if t.get(k) is None}}) for t in doc["trials"]}
        except (TypeError, KeyError) as e:
            raise ValueError(f"{self.json_path}: damaged trial record ({e}); remove it or choose another "
                             f"--out-dir") from None

    def _previous_final(self, identity) -> dict | None:
        doc = self._load_json()
        return doc.get("final") if doc and doc.get("identity") == identity else None

    def _save(self, identity, results, final):
        from .io.atomic import atomic_write
        ranked = sorted(results.values(), key=lambda t: t.sort_key(self.metric == "accuracy"))
        doc = {"identity": identity, "grid": self.grid, "metric": self.metric,
               "trials": [_jsonable(dataclasses.asdict(t)) for t in ranked]}
        old = self._previous_final(identity) if final is None else None
        if final or old:
            doc["final"] = final or old
        atomic_write(self.json_path, lambda f: json.dump(doc, f, indent=1))
        atomic_write(self.csv_path, lambda f: f.write(self.csv_text(ranked)), newline="")

    def csv_text(self, ranked) -> str:
        buf = io.StringIO()
        w = csv.writer(buf)
        names = list(self.grid)
        folds = [f"fold{i + 1}" for i in range(self.folds or 0)]
        w.writerow(["rank", *names, f"score ({self.metric})", "std", "val_loss", "val_accuracy", *folds,
                    "seconds", "error"])
        for i, t in enumerate(ranked):
            w.writerow([i + 1, *(t.params.get(n) for n in names), t.score, t.std if self.folds else "", t.val_loss,
                        "" if t.val_accuracy is None else t.val_accuracy,
                        *(t.fold_scores + [""] * (len(folds) - len(t.fold_scores)))[:len(folds)],
                        round(t.seconds, 2), t.error or ""])
        return buf.getvalue()

    def table(self, ranked) -> str:
        """The ranked trials as a plain-text table."""
        names = list(self.grid)
        other = "val_loss" if self.metric == "accuracy" else "val_accuracy"
        shown = [other] if any(getattr(t, other) is not None for t in ranked) else []
        head = ["rank", *names, f"val_{self.metric}"] + (["std"] if self.folds else []) + shown + ["time"]
        rows = []
        for i, t in enumerate(ranked):
            v = getattr(t, other)
            rows.append([str(i + 1), *(_fmt(t.params[n]) for n in names),
                         "failed" if t.error else f"{t.score:.4f}", *([f"{t.std:.4f}"] if self.folds else []),
                         *(["" if v is None or t.error else f"{v:.4f}"] if shown else []), f"{t.seconds:.1f}s"])
        widths = [max(len(r[j]) for r in [head] + rows) for j in range(len(head))]
        lines = [f"Ranked by validation {self.metric} ({'higher' if self.metric == 'accuracy' else 'lower'} is "
                 f"better):"]
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [head] + rows]
        return "\n".join(lines)


def _fmt(v) -> str:
    return f"{v:g}" if isinstance(v, float) else ("none" if v == "" else str(v))


def _scores(final: dict) -> str:
    if "test_accuracy" in final:
        return f"test accuracy {final['test_accuracy']:.4f}, loss {final['test_loss']:.4f}"
    return f"test loss {final.get('test_loss', math.nan):.4f}"


def _jsonable(d: dict) -> dict:
    """NaN as None (JSON has no NaN)."""
    def fix(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        return [fix(x) for x in v] if isinstance(v, list) else v
    return {k: fix(v) for k, v in d.items()}


def _differences(old: dict, new: dict) -> str:
    out = []
    for section in ("options", "data"):
        a, b = old.get(section) or {}, new.get(section) or {}
        out += [f"{section[:-1] if section == 'options' else 'data'} {k}: {a.get(k)!r} then, {b.get(k)!r} now"
                for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    out += [f"{k}: {old.get(k)!r} then, {new.get(k)!r} now" for k in ("metric", "folds") if old.get(k) != new.get(k)]
    return "; ".join(out[:3]) + ("; ..." if len(out) > 3 else "") if out else "unreadable record"


__all__ = ["GridSearch", "SearchResult", "Trial", "parse_grid", "trials_of", "HYPER"]
