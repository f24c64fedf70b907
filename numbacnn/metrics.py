"""Classification metrics: accuracy, confusion matrix, per-class scores, ROC/AUC.

Conventions: ``y_true`` (N,) integer labels in ``[0, K)``; ``probs`` (N, K)
class scores (probabilities or logits: only their order matters for ROC);
``y_pred`` (N,) integer labels.  The confusion matrix has true classes as
rows and predicted classes as columns.  A ratio whose denominator is zero
(precision of a class never predicted, recall of a class absent from
``y_true``...) is 0, as in scikit-learn's ``zero_division=0``; the AUC of a
class with no positives or no negatives is undefined (NaN in arrays, None in
the report) and left out of the macro average.
"""
from __future__ import annotations

import math

import numpy as np


def _labels(y, name):
    y = np.asarray(y)
    if y.ndim != 1 or (y.size and y.dtype.kind not in "iu"):
        raise ValueError(f"{name} must be a 1-D integer array, got shape {y.shape} dtype {y.dtype}")
    return y.astype(np.int64)


def accuracy(y_true, y_pred) -> float:
    """Fraction of ``y_pred`` equal to ``y_true``."""
    y_true, y_pred = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    if y_true.shape != y_pred.shape or y_true.size == 0:
        raise ValueError(f"accuracy: y_true {y_true.shape} and y_pred {y_pred.shape} must be equal, non-empty")
    return float(np.mean(y_true == y_pred))


def confusion_matrix(y_true, y_pred, num_classes: int | None = None) -> np.ndarray:
    """``(K, K)`` int64 counts; entry [i, j] counts samples of true class i predicted as j."""
    y_true, y_pred = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    if y_true.shape != y_pred.shape:
        raise ValueError(f"confusion_matrix: y_true {y_true.shape} and y_pred {y_pred.shape} differ in shape")
    k = num_classes if num_classes is not None else int(max(y_true.max(initial=-1), y_pred.max(initial=-1)) + 1)
    if y_true.size and (min(y_true.min(), y_pred.min()) < 0 or max(y_true.max(), y_pred.max()) >= k):
        raise ValueError(f"confusion_matrix: labels must be in [0, {k})")
    cm = np.zeros((k, k), np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def _ratio(num, den):
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def per_class_scores(cm: np.ndarray) -> dict:
    """Per-class precision, recall (sensitivity), specificity, F1 and support from a confusion matrix.

    Returns a dict of (K,) arrays: ``precision, recall, specificity, f1, support``.
    """
    cm = np.asarray(cm, np.float64)
    tp = np.diag(cm)
    fn = cm.sum(axis=1) - tp
    fp = cm.sum(axis=0) - tp
    tn = cm.sum() - tp - fn - fp
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    return {"precision": precision, "recall": recall, "specificity": _ratio(tn, tn + fp),
            "f1": _ratio(2 * tp, 2 * tp + fp + fn), "support": cm.sum(axis=1).astype(np.int64)}


def roc_curve(y_binary, scores):
    """ROC curve of binary labels (1 = positive) against ``scores`` (higher = more positive).

    Returns ``(thresholds, fpr, tpr)``: one point per distinct score, in
    decreasing threshold order, preceded by (inf, 0, 0); a point (t, f, r)
    means "predict positive when score >= t".  Tied scores form one point, so
    the curve between points is a straight line (tie-correct AUC).  With no
    positives tpr is NaN, with no negatives fpr is NaN.
    """
    y = np.asarray(y_binary).astype(bool)
    s = np.asarray(scores, np.float64)
    if y.shape != s.shape or y.ndim != 1:
        raise ValueError(f"roc_curve: labels {y.shape} and scores {s.shape} must be equal 1-D shapes")
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last_of_run = np.r_[np.flatnonzero(np.diff(s) != 0), s.size - 1] if s.size else np.array([], int)
    tps = np.cumsum(y)[last_of_run]
    fps = (last_of_run + 1) - tps
    pos, neg = int(y.sum()), int(y.size - y.sum())
    tpr = np.r_[0.0, tps / pos] if pos else np.full(tps.size + 1, np.nan)
    fpr = np.r_[0.0, fps / neg] if neg else np.full(fps.size + 1, np.nan)
    return np.r_[np.inf, s[last_of_run]], fpr, tpr


def auc(fpr, tpr) -> float:
    """Area under a curve by the trapezoid rule (``fpr`` non-decreasing); NaN if undefined."""
    fpr, tpr = np.asarray(fpr, np.float64), np.asarray(tpr, np.float64)
    if fpr.size < 2 or np.isnan(fpr).any() or np.isnan(tpr).any():
        return float("nan")
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def roc_auc_ovr(y_true, probs):
    """One-vs-rest ROC for every class: ``(curves, aucs)``.

    ``curves[k] = (thresholds, fpr, tpr)`` of class k's score against
    "is class k"; ``aucs`` (K,) float64, NaN for a class with no positive or
    no negative sample.
    """
    y_true = _labels(y_true, "y_true")
    probs = np.asarray(probs, np.float64)
    if probs.ndim != 2 or probs.shape[0] != y_true.shape[0]:
        raise ValueError(f"roc_auc_ovr: probs must be (N, K) with N = {y_true.shape[0]}, got {probs.shape}")
    curves = [roc_curve(y_true == k, probs[:, k]) for k in range(probs.shape[1])]
    return curves, np.array([auc(f, t) for _, f, t in curves])


def _nan_to_none(values):
    return [None if (isinstance(v, float) and math.isnan(v)) else v for v in values]


def classification_report(y_true, probs, class_names=None, include_roc: bool = False) -> dict:
    """A JSON-able summary of predictions ``argmax(probs)`` against ``y_true``.

    Keys: ``n, accuracy, class_names, confusion_matrix`` (rows true, columns
    predicted), ``classes`` (one dict per class: name, support, precision,
    recall, specificity, f1, auc), ``macro`` (unweighted means; auc over the
    classes where it is defined, None if none) and, with ``include_roc``,
    ``roc`` (per class: thresholds, fpr, tpr lists; the +inf threshold is
    written as None).
    """
    y_true = _labels(y_true, "y_true")
    probs = np.asarray(probs, np.float64)
    if probs.ndim != 2 or probs.shape[0] != y_true.shape[0] or y_true.size == 0:
        raise ValueError(f"classification_report: probs must be (N, K) with N = {y_true.shape[0]} > 0, "
                         f"got {probs.shape}")
    k = probs.shape[1]
    names = [str(i) for i in range(k)] if class_names is None else [str(c) for c in class_names]
    if len(names) != k:
        raise ValueError(f"classification_report: {len(names)} class names for {k} score columns")
    if y_true.min() < 0 or y_true.max() >= k:
        raise ValueError(f"classification_report: labels must be in [0, {k}), found {y_true.min()}..{y_true.max()}")
    y_pred = probs.argmax(axis=1)
    cm = confusion_matrix(y_true, y_pred, k)
    sc = per_class_scores(cm)
    curves, aucs = roc_auc_ovr(y_true, probs)
    classes = [{"name": names[i], "support": int(sc["support"][i]),
                **{m: float(sc[m][i]) for m in ("precision", "recall", "specificity", "f1")},
                "auc": None if math.isnan(aucs[i]) else float(aucs[i])} for i in range(k)]
    defined = aucs[~np.isnan(aucs)]
    report = {
        "n": int(y_true.size),
        "accuracy": accuracy(y_true, y_pred),
        "class_names": names,
        "confusion_matrix": cm.tolist(),
        "classes": classes,
        "macro": {**{m: float(np.mean(sc[m])) for m in ("precision", "recall", "specificity", "f1")},
                  "auc": float(defined.mean()) if defined.size else None},
    }
    if include_roc:
        report["roc"] = [{"name": names[i],
                          "thresholds": [None] + curves[i][0][1:].tolist(),
                          "fpr": _nan_to_none(curves[i][1].tolist()),
                          "tpr": _nan_to_none(curves[i][2].tolist())} for i in range(k)]
    return report


def format_report(report: dict) -> str:
    """Plain-text rendering of ``classification_report``: scores table and confusion matrix."""
    names = report["class_names"]
    w = max(8, max(len(n) for n in names) + 1)

    def num(v):
        return "   n/a" if v is None else f"{v:6.4f}"

    lines = [f"accuracy {report['accuracy']:.4f} on {report['n']} samples", "",
             f"{'class':<{w}} {'prec':>6} {'recall':>6} {'spec':>6} {'f1':>6} {'auc':>6} {'support':>8}"]
    for c in report["classes"]:
        lines.append(f"{c['name']:<{w}} {num(c['precision'])} {num(c['recall'])} {num(c['specificity'])} "
                     f"{num(c['f1'])} {num(c['auc'])} {c['support']:>8}")
    m = report["macro"]
    lines.append(f"{'macro':<{w}} {num(m['precision'])} {num(m['recall'])} {num(m['specificity'])} "
                 f"{num(m['f1'])} {num(m['auc'])} {report['n']:>8}")
    cm = report["confusion_matrix"]
    cw = max(5, max(len(n) for n in names) + 1, len(str(max(max(r) for r in cm))) + 1)
    lines += ["", "confusion matrix (rows: true class, columns: predicted class)",
              " " * w + "".join(f"{n[:cw - 1]:>{cw}}" for n in names)]
    for name, row in zip(names, cm):
        lines.append(f"{name:<{w}}" + "".join(f"{v:>{cw}}" for v in row))
    return "\n".join(lines)


# ---------------------------------------------------------------- regression
def regression_report(y_true, y_pred, target_names=None) -> dict:
    """MSE, MAE and R^2 (coefficient of determination, 1 - SSE / SST) overall and per target.

    y_true, y_pred : (N,) or (N, K) numbers.  R^2 is None for a target whose true values are all equal.
    """
    t = np.asarray(y_true, np.float64).reshape(len(y_true), -1)
    p = np.asarray(y_pred, np.float64).reshape(len(y_true), -1)
    if t.shape != p.shape:
        raise ValueError(f"regression_report: predictions of shape {p.shape} for targets of shape {t.shape}")
    names = list(target_names) if target_names is not None and len(target_names) == t.shape[1] else [
        f"y{i}" for i in range(t.shape[1])]
    d = p - t
    sst = ((t - t.mean(axis=0)) ** 2).sum(axis=0)
    r2 = [None if s == 0 else float(1.0 - (d[:, j] ** 2).sum() / s) for j, s in enumerate(sst)]
    total_sst = float(sst.sum())
    return {"n": int(len(t)), "mse": float(np.mean(d ** 2)), "mae": float(np.mean(np.abs(d))),
            "r2": None if total_sst == 0 else float(1.0 - (d ** 2).sum() / total_sst),
            "targets": [{"name": n, "mse": float(np.mean(d[:, j] ** 2)), "mae": float(np.mean(np.abs(d[:, j]))),
                         "r2": r2[j]} for j, n in enumerate(names)]}


def format_regression_report(report: dict) -> str:
    """Plain-text rendering of ``regression_report``: overall, then one line per target."""
    def num(v):
        return "n/a" if v is None else f"{v:.4f}"
    lines = [f"mse {num(report['mse'])}  mae {num(report['mae'])}  r2 {num(report['r2'])} on {report['n']} samples"]
    if len(report["targets"]) > 1:
        w = max(len(t["name"]) for t in report["targets"])
        lines += [f"  {t['name']:<{w}}  mse {num(t['mse'])}  mae {num(t['mae'])}  r2 {num(t['r2'])}"
                  for t in report["targets"]]
    return "\n".join(lines)
