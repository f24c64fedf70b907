"""numbacnn plot: every kind writes a real PNG, and the numbers drawn are those evaluate prints (the cells
of the confusion matrix, the AUCs in the ROC legend, the curves' points, the feature maps)."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="numbacnn plot needs the plot extra (matplotlib)")

from numbacnn.data import make_shapes  # noqa: E402
from numbacnn.io.hdf5 import load_model  # noqa: E402
from numbacnn.plot import figure, prediction_order  # noqa: E402


from cli_run import run  # noqa: E402  (tests/ is on sys.path)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("plot")
    x, y, names = make_shapes(500, seed=3)
    np.savez(d / "shapes.npz", images=x, labels=y, class_names=np.array(names))
    run("train", "--data", d / "shapes.npz", "--epochs", 3, "--val-split", 0.2, "--standardize",
        "--out", d / "m.h5")
    run("evaluate", d / "m.h5", "--json", d / "e.json")
    return d


def _png(path):
    from PIL import Image
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 250 and im.size[1] > 250
        a = np.asarray(im.convert("L"), np.float32)
    assert a.std() > 5 and len(np.unique(a)) > 20           # not blank: drawn content
    return a


@pytest.mark.parametrize("kind", ["curves", "confusion", "roc", "filters", "features", "predictions"])
def test_every_kind_writes_a_png(trained, kind):
    res = run("plot", kind, trained / "m.h5", "--out", trained / f"{kind}.png")
    assert res.output.startswith(f"Wrote {trained / kind}.png: ")
    _png(trained / f"{kind}.png")


def test_confusion_cells_and_roc_aucs_are_evaluates(trained):
    ev = json.loads((trained / "e.json").read_text())
    fig, report = figure("confusion", str(trained / "m.h5"))
    counts, fractions = fig.axes[:2]                                   # then the two colour bars
    k = len(ev["class_names"])
    cells = np.array([int(t.get_text()) for t in counts.texts]).reshape(k, k)
    assert cells.tolist() == ev["confusion_matrix"]
    shares = np.array([float(t.get_text()) for t in fractions.texts]).reshape(k, k)
    rows = np.array(ev["confusion_matrix"]).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(shares, np.round(np.array(ev["confusion_matrix"]) / rows, 2), atol=1e-9)
    assert [t.get_text() for t in counts.get_yticklabels()] == ev["class_names"]
    fig, _ = figure("roc", str(trained / "m.h5"))
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend[:k] == [f"{c['name']} (AUC {c['auc']:.4f})" for c in ev["classes"]]
    assert len(fig.axes[0].lines) == k + 1                            # a curve per class and the diagonal


def test_curves_are_the_stored_history(trained):
    history = load_model(trained / "m.h5").training_state["history"]
    fig, _ = figure("curves", str(trained / "m.h5"))
    loss_ax, acc_ax = fig.axes
    by_label = {line.get_label(): line.get_ydata() for line in loss_ax.lines}
    np.testing.assert_allclose(by_label["training"], [h["loss"] for h in history])
    np.testing.assert_allclose(by_label["validation"], [h["val_loss"] for h in history])
    by_label = {line.get_label(): line.get_ydata() for line in acc_ax.lines}
    np.testing.assert_allclose(by_label["validation"], [h["val_accuracy"] for h in history])


def test_filters_features_and_predictions_show_the_model(trained):
    mf = load_model(trained / "m.h5")
    fig, n = figure("filters", str(trained / "m.h5"))
    assert n["layer"] == "conv1" and sum(ax.get_images() != [] for ax in fig.axes) == 6     # (6, 1, 5, 5)
    fig, n = figure("features", str(trained / "m.h5"), layer="pool2", index=7)
    x = np.load(trained / "shapes.npz")["images"]
    held = mf.metadata["split_test"][7]
    xs = (x[held:held + 1] - mf.metadata["mean"].reshape(1, -1, 1, 1)) / mf.metadata["std"].reshape(1, -1, 1, 1)
    np.testing.assert_allclose(n["maps"], mf.model.forward(xs.astype(np.float32), until="pool2")[0], rtol=1e-5,
                               atol=1e-6)
    assert n["maps"].shape == (16, 5, 5) and sum(ax.get_images() != [] for ax in fig.axes) == 17   # input + 16
    fig, n = figure("predictions", str(trained / "m.h5"), count=12)
    wrong = n["y_true"] != n["y_pred"]
    assert len(n["indices"]) == 12 and (wrong[:min(n["wrong"], 12)]).all() and not wrong[n["wrong"]:].any()
    reds = [ax.title.get_color() == "red" for ax in fig.axes if ax.get_images()]
    assert reds == list(wrong)
    assert prediction_order([0, 1, 2, 3], [0, 2, 2, 0], 3).tolist() == [1, 3, 0]


def test_plot_errors(trained, tmp_path, monkeypatch):
    res = run("plot", "features", trained / "m.h5", "--layer", "nope", "--out", tmp_path / "f.png", ok=False)
    assert res.exit_code == 1 and "--layer nope: " in res.output and "has no such layer" in res.output
    res = run("plot", "features", trained / "m.h5", "--index", 10 ** 6, "--out", tmp_path / "f.png", ok=False)
    assert "--index 1000000: the data has 100 images" in res.output
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "r.npz", inputs=rng.random((30, 4), dtype=np.float32), targets=rng.random(30))
    run("train", "--model", "linear", "--data", tmp_path / "r.npz", "--epochs", 1, "--out", tmp_path / "r.h5")
    res = run("plot", "roc", tmp_path / "r.h5", "--out", tmp_path / "x.png", ok=False)
    assert "a regression model has no classes to plot" in res.output and not (tmp_path / "x.png").exists()
    run("plot", "curves", tmp_path / "r.h5", "--out", tmp_path / "c.png")
    _png(tmp_path / "c.png")
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    res = run("plot", "curves", trained / "m.h5", "--out", tmp_path / "c2.png", ok=False)
    assert "numbacnn plot needs matplotlib: pip install 'numbacnn[plot]'" in res.output
