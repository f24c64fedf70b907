"""What ``evaluate`` scores and how, shared by ``numbacnn evaluate`` and ``numbacnn plot`` (so that a plotted
confusion matrix or ROC curve is exactly the one ``evaluate`` prints)::

    x, x_raw, y, names, part = evaluation_inputs(model_file, mf, data, split, limit)
    report = classify(model_file, mf, x, y, names, batch_size=256, include_roc=True)
"""
from __future__ import annotations

import numpy as np


def class_names(meta: dict, k: int, fallback=None) -> list:
    """The model file's class names when it has k of them, else ``fallback``'s, else "0" .. "k-1"."""
    for names in (meta.get("class_names"), fallback):
        if names is not None and len(names) == k:
            return [str(n) for n in names]
    return [str(i) for i in range(k)]


def check_finite(model_file, outputs, n):
    """Refuse outputs with NaN or infinite values (damaged or overflowing weights) instead of printing them."""
    bad = ~np.isfinite(np.asarray(outputs).reshape(n, -1)).all(axis=1)
    if bad.any():
        raise ValueError(f"model {model_file}: its outputs are NaN or infinite for {int(bad.sum()):,} of {n:,} "
                         f"input(s) (weights too large or damaged, or inputs out of range)")


def evaluation_inputs(model_file, mf, data=None, split="auto", limit=None, skip_bad=False, workers=None, log=None):
    """(x as the model takes it, x as read, labels or targets, class/target names, description) of the images
    ``evaluate`` scores (``run.evaluation_data``), standardised as the model file records."""
    from .data import standardize
    from .run import evaluation_data
    model, meta = mf.model, mf.metadata
    x, y, names, part = evaluation_data(meta, data, split, limit, model_file, model.input_shape, skip_bad, workers,
                                        log)
    if tuple(x.shape[1:]) != tuple(model.input_shape):
        raise ValueError(f"model {model_file} takes inputs of shape {tuple(model.input_shape)} but --data {data} "
                         f"has images of shape {tuple(x.shape[1:])}")
    raw = x
    if "mean" in meta:
        x = standardize(x, meta["mean"], meta["std"])
    return x, raw, y, names, part


def classify(model_file, mf, x, y, names, batch_size=256, include_roc=False) -> tuple:
    """(``metrics.classification_report`` with its ``loss`` and ``probs``, the labels of the images scored) of a
    classifier on (x, y)."""
    from .metrics import classification_report
    from .train import evaluate_data
    with np.errstate(all="ignore"):      # a non-finite output is reported below, not warned about
        loss, _, probs, y = evaluate_data(mf.model, x, y, batch_size=batch_size)
    check_finite(model_file, probs, len(y))        # the images scored (unreadable ones skipped)
    report = classification_report(y, probs, class_names(mf.metadata, probs.shape[1], names), include_roc)
    report["loss"] = float(loss)
    return report, probs, y


__all__ = ["class_names", "check_finite", "evaluation_inputs", "classify"]
