"""Pictures of a model: ``numbacnn plot KIND MODEL.h5 --out FILE.png`` (matplotlib, the ``plot`` extra).

    curves       loss and accuracy per epoch, training and validation (the history in the model file)
    confusion    the confusion matrix, counts and row-normalised, of the images ``evaluate`` scores
    roc          one-vs-rest ROC curve per class, AUC in the legend (the numbers ``evaluate`` prints)
    filters      a convolution's weights as an image grid (default: the first convolution)
    features     the feature maps of a named layer (``--layer``) for one input image
    predictions  test images with predicted and true labels, mistakes first

Each ``*_figure`` function takes numbers and returns a matplotlib Figure (headless: the Agg backend);
``figure(kind, model_file, ...)`` computes the numbers as ``evaluate`` and ``predict`` do and returns
``(Figure, the numbers drawn)``; ``save`` writes a PNG atomically.
"""
from __future__ import annotations

import math

import numpy as np

KINDS = ("curves", "confusion", "roc", "filters", "features", "predictions")
MAX_TILES = 64


def pyplot():
    """matplotlib.pyplot on the Agg backend, or a one-line error saying how to install it."""
    try:
        import matplotlib
    except ImportError:
        raise ValueError("numbacnn plot needs matplotlib: pip install 'numbacnn[plot]'") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


def save(fig, path, dpi: int = 100) -> str:
    """Write ``fig`` as a PNG to ``path`` (atomically) and close it."""
    from .io.atomic import atomic_write
    try:
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=dpi, bbox_inches="tight"), binary=True)
    finally:
        pyplot().close(fig)
    return path


# ---------------------------------------------------------------------------- figures from numbers
def curves_figure(history: list, title: str = ""):
    """history: one dict per epoch (loss, accuracy, val_loss, val_accuracy; missing or None where not
    measured).  Loss on the left, accuracy on the right (absent for regression)."""
    plt = pyplot()
    epochs = [int(h.get("epoch", i + 1)) for i, h in enumerate(history)]
    panels = [("loss", "Loss")] + ([("accuracy", "Accuracy")] if any(h.get("accuracy") is not None
                                                                     for h in history) else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for ax, (key, label) in zip(axes[0], panels):
        for prefix, name, style in (("", "training", "-o"), ("val_", "validation", "-s")):
            ys = [h.get(prefix + key) for h in history]
            if any(v is not None for v in ys):
                ax.plot(epochs, [math.nan if v is None else float(v) for v in ys], style, ms=3, label=name)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title or "Learning curves")
    return fig


def confusion_figure(cm, names, title: str = ""):
    """cm: (K, K) counts, rows true, columns predicted.  Counts on the left, row-normalised on the right;
    every cell written out when K <= 20."""
    plt = pyplot()
    cm = np.asarray(cm, np.int64)
    k = len(cm)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0)
    size = min(14.0, 2.5 + 0.45 * k)
    fig, axes = plt.subplots(1, 2, figsize=(2 * size + 1.5, size), layout="constrained")
    for ax, data, fmt, label in ((axes[0], cm, "d", "count"), (axes[1], norm, ".2f", "fraction of the row")):
        im = ax.imshow(data, cmap="Blues", vmin=0)
        fig.colorbar(im, ax=ax, fraction=0.046, label=label)
        ax.set_xticks(range(k), names, rotation=90 if k > 6 else 0)
        ax.set_yticks(range(k), names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        if k <= 20:
            top = data.max() if data.size else 0
            for i in range(k):
                for j in range(k):
                    ax.text(j, i, format(data[i, j], fmt), ha="center", va="center", fontsize=8,
                            color="white" if data[i, j] > 0.6 * top else "black")
    axes[0].set_title("counts")
    axes[1].set_title("row-normalised (recall on the diagonal)")
    fig.suptitle(title or "Confusion matrix")
    return fig


def roc_figure(curves: list, title: str = ""):
    """curves: [{name, fpr, tpr, auc}] (``metrics.classification_report``'s roc entries with their auc).
    A class without positives or negatives has no curve and says so in the legend."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 6))
    for c in curves:
        if c["auc"] is None:
            ax.plot([], [], label=f"{c['name']} (AUC undefined: one kind of label only)")
            continue
        fpr = [math.nan if v is None else v for v in c["fpr"]]
        tpr = [math.nan if v is None else v for v in c["tpr"]]
        ax.plot(fpr, tpr, label=f"{c['name']} (AUC {c['auc']:.4f})")
    ax.plot([0, 1], [0, 1], ":", color="grey", label="chance")
    ax.set_xlabel("false positive rate (1 - specificity)")
    ax.set_ylabel("true positive rate (recall)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title or "ROC curves, one class against the rest")
    return fig


def _grid(n):
    cols = int(math.ceil(math.sqrt(n)))
    return int(math.ceil(n / cols)), cols


def _show(ax, img):
    """img (C, H, W) with C 1 or 3, any range: scaled to [0, 1] for display."""
    img = np.asarray(img, np.float32)
    lo, hi = float(img.min()), float(img.max())
    img = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
    if img.shape[0] == 3:
        ax.imshow(img.transpose(1, 2, 0), interpolation="nearest")
    else:
        ax.imshow(img[0], cmap="gray", interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def tiles_figure(tiles, labels, title: str):
    """A grid of (C, H, W) tiles (C 1 or 3), each scaled to its own range, with a label under each."""
    plt = pyplot()
    rows, cols = _grid(len(tiles))
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.75 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, tile, label in zip(axes.ravel(), tiles, labels):
        ax.axis("on")
        _show(ax, tile)
        ax.set_xlabel(label, fontsize=7)
    fig.suptitle(title)
    return fig


def filters_figure(weight, layer: str):
    """weight: (O, I, KH, KW).  With 3 input channels each filter is one colour tile; otherwise one grey
    tile per (output, input) pair, at most 64."""
    w = np.asarray(weight, np.float32)
    if w.shape[1] == 3:
        tiles, labels = list(w[:MAX_TILES]), [f"{o}" for o in range(min(len(w), MAX_TILES))]
    else:
        pairs = [(o, i) for o in range(w.shape[0]) for i in range(w.shape[1])][:MAX_TILES]
        tiles, labels = [w[o, i][None] for o, i in pairs], [f"{o}" if w.shape[1] == 1 else f"{o}<-{i}"
                                                             for o, i in pairs]
    shown = f", the first {len(tiles)} shown" if len(tiles) < w.shape[0] * (1 if w.shape[1] == 3 else w.shape[1]) \
        else ""
    return tiles_figure(tiles, labels, f"{layer}: {w.shape[0]} filters of {w.shape[1]}x{w.shape[2]}x{w.shape[3]}"
                                       f"{shown}")


def features_figure(maps, layer: str, image=None, caption: str = ""):
    """maps: one image's output of ``layer``: (C, H, W) as a grid of channels (at most 64, the input image
    first when given), or (F,) as a bar chart."""
    maps = np.asarray(maps, np.float32)
    if maps.ndim == 1:
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(8, 3.5))
        ax.bar(range(len(maps)), maps)
        ax.set_xlabel("unit")
        ax.set_ylabel("activation")
        ax.set_title(f"{layer}: {len(maps)} activations {caption}".strip())
        return fig
    if maps.ndim != 3:
        raise ValueError(f"--layer {layer}: its output has shape {maps.shape}, not (C, H, W) maps or (F,) units")
    tiles = ([image] if image is not None else []) + [m[None] for m in maps[:MAX_TILES]]
    labels = (["input"] if image is not None else []) + [f"ch {c}" for c in range(min(len(maps), MAX_TILES))]
    more = f" (the first {MAX_TILES} of {len(maps)})" if len(maps) > MAX_TILES else ""
    return tiles_figure(tiles, labels, f"{layer}: {len(maps)} feature maps of {maps.shape[1]}x{maps.shape[2]}{more}"
                                       f" {caption}".rstrip())


def prediction_order(y_true, y_pred, count: int):
    """Indices of ``count`` images to show: the mistakes first (in order), then correct ones."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    wrong = np.flatnonzero(y_true != y_pred)
    right = np.flatnonzero(y_true == y_pred)
    return np.concatenate([wrong, right])[:count]


def predictions_figure(images, y_true, probs, names, title: str = ""):
    """images (n, C, H, W) as read; y_true (n,); probs (n, K).  Titles 'predicted (p) / true', mistakes in red."""
    plt = pyplot()
    rows, cols = _grid(len(images))
    fig, axes = plt.subplots(rows, cols, figsize=(2.0 * cols, 2.2 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    pred = np.asarray(probs).argmax(axis=1)
    for ax, img, t, p, pr in zip(axes.ravel(), images, y_true, pred, probs):
        ax.axis("on")
        _show(ax, img)
        ok = int(t) == int(p)
        ax.set_title(f"{names[p]} ({pr[p]:.2f})" + ("" if ok else f"\ntrue: {names[t]}"), fontsize=8,
                     color="black" if ok else "red")
    fig.suptitle(title or "Predictions (mistakes first, in red)")
    return fig


# ---------------------------------------------------------------------------- figures of a model file
def _rows(x, indices):
    """Rows ``indices`` of an array or a streamed ``Dataset`` (images as they are fed or read)."""
    from .data.datasets import as_dataset
    return as_dataset(x).batch(np.asarray(indices, np.int64))[0]


def _classifier_inputs(ctx):
    from .scoring import evaluation_inputs
    x, raw, y, names, part = evaluation_inputs(ctx["model_file"], ctx["mf"], ctx["data"], ctx["split"],
                                               ctx["limit"], log=ctx["log"])
    if y.dtype.kind == "f":
        raise ValueError(f"{ctx['model_file']}: a regression model has no classes to plot ({ctx['kind']} is for "
                         f"classifiers; curves, filters and features work for any model)")
    return x, raw, y, names, part


def _curves(ctx):
    state = ctx["mf"].training_state
    history = (state or {}).get("history") or []
    if not history:
        raise ValueError(f"{ctx['model_file']}: has no training history to plot (not written by numbacnn train "
                         f"or fit)")
    return curves_figure(history, f"Learning curves of {ctx['model_file']}"), {"history": history}


def _confusion(ctx):
    from .scoring import classify
    x, _, y, names, part = _classifier_inputs(ctx)
    report, _, _ = classify(ctx["model_file"], ctx["mf"], x, y, names, ctx["batch_size"])
    title = f"{ctx['model_file']} on {ctx['data'] or 'its test data'} ({part}): accuracy {report['accuracy']:.4f}"
    return confusion_figure(report["confusion_matrix"], report["class_names"], title), report


def _roc(ctx):
    from .scoring import classify
    x, _, y, names, part = _classifier_inputs(ctx)
    report, _, _ = classify(ctx["model_file"], ctx["mf"], x, y, names, ctx["batch_size"], include_roc=True)
    curves = [{**c, "auc": cls["auc"]} for c, cls in zip(report["roc"], report["classes"])]
    return roc_figure(curves, f"ROC of {ctx['model_file']} on {ctx['data'] or 'its test data'} ({part})"), report


def _conv_layer(ctx) -> str:
    """--layer, else the first layer whose weight is 4-D (a convolution)."""
    weights = ctx["mf"].model.get_weights()
    if ctx["layer"]:
        if ctx["layer"] not in ctx["mf"].model.layers:
            raise ValueError(f"--layer {ctx['layer']}: {ctx['model_file']} has no such layer (see 'numbacnn summary "
                             f"{ctx['model_file']}')")
        return ctx["layer"]
    convs = [n for n, w in weights.items() if np.ndim(w.get("weight")) == 4]
    if not convs:
        raise ValueError(f"{ctx['model_file']}: has no convolution layer (give --layer)")
    return convs[0]


def _filters(ctx):
    layer = _conv_layer(ctx)
    w = ctx["mf"].model.get_weights().get(layer, {}).get("weight")
    if np.ndim(w) != 4:
        raise ValueError(f"--layer {layer}: has no 4-D weight (filters are a convolution's)")
    return filters_figure(w, layer), {"layer": layer, "weight": w}


def _one_input(ctx):
    """(x (1, ...) as the model takes it, x as read, its label or None, its description)."""
    mf = ctx["mf"]
    if ctx["inputs"]:
        from .data.inputs import model_inputs
        x, labels = model_inputs([ctx["inputs"]], mf.model.input_shape, mf.metadata)
        unscaled = {k: v for k, v in mf.metadata.items() if k not in ("mean", "std")}
        raw, _ = model_inputs([ctx["inputs"]], mf.model.input_shape, unscaled)
        return x[:1], raw[:1], None, labels[0]
    from .scoring import evaluation_inputs
    x, raw, y, _, part = evaluation_inputs(ctx["model_file"], mf, ctx["data"], ctx["split"], ctx["limit"],
                                           log=ctx["log"])
    i = ctx["index"]
    if not 0 <= i < len(y):
        raise ValueError(f"--index {i}: the data has {len(y):,} images ({part}); use 0..{len(y) - 1}")
    return _rows(x, [i]), _rows(raw, [i]), y[i], f"image {i} of {ctx['data'] or 'its test data'} ({part})"


def _features(ctx):
    model = ctx["mf"].model
    layer = _conv_layer(ctx)
    x, raw, label, what = _one_input(ctx)
    be = model.backend
    maps = np.array(be.to_host(model.forward(be.asarray(x), training=False, until=layer)))[0]
    fig = features_figure(maps, layer, raw[0] if raw.shape[1] in (1, 3) else None, f"for {what}")
    return fig, {"layer": layer, "maps": maps, "label": label}


def _predictions(ctx):
    from .scoring import classify
    x, raw, y, names, part = _classifier_inputs(ctx)
    report, probs, y = classify(ctx["model_file"], ctx["mf"], x, y, names, ctx["batch_size"])
    order = prediction_order(y, probs.argmax(axis=1), ctx["count"])
    wrong = int((y != probs.argmax(axis=1)).sum())
    title = (f"{ctx['model_file']} on {ctx['data'] or 'its test data'} ({part}): {wrong:,} of {len(y):,} wrong; "
             f"mistakes first, in red")
    fig = predictions_figure(_rows(raw, order), y[order], probs[order], report["class_names"], title)
    return fig, {"indices": order, "y_true": y[order], "y_pred": probs[order].argmax(axis=1), "wrong": wrong}


_MAKERS = {"curves": _curves, "confusion": _confusion, "roc": _roc, "filters": _filters, "features": _features,
           "predictions": _predictions}


def figure(kind, model_file, data=None, split="auto", limit=None, layer=None, index=0, inputs=None, count=16,
           batch_size=256, device="cpu", log=None):
    """(Figure, the numbers drawn) of ``kind`` (``KINDS``) for ``model_file``; the data options are
    ``evaluate``'s (confusion, roc, predictions, features), ``layer`` names a layer (filters, features),
    ``inputs`` an image file and ``index`` an image of the data (features), ``count`` the images shown
    (predictions)."""
    from .io.hdf5 import load_model
    if kind not in _MAKERS:
        raise ValueError(f"unknown plot {kind!r} (choose from {', '.join(KINDS)})")
    pyplot()                               # the missing-matplotlib error before any work
    mf = load_model(model_file, backend=device)
    ctx = dict(kind=kind, model_file=model_file, mf=mf, data=data, split=split, limit=limit, layer=layer,
               index=int(index), inputs=inputs, count=int(count), batch_size=int(batch_size), log=log)
    return _MAKERS[kind](ctx)


__all__ = ["figure", "KINDS", "pyplot", "save", "curves_figure", "confusion_figure", "roc_figure", "filters_figure",
           "features_figure", "predictions_figure", "tiles_figure", "prediction_order"]
