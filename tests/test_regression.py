"""Regression on the same engine: float targets (npz, CSV, the built-in polynomial fit), the mse/mae/huber
losses, regression metrics in evaluate, values from predict, and the course's over-fitting and its cure."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from numbacnn.io.hdf5 import load_model
from numbacnn.losses import get_loss
from numbacnn.metrics import regression_report

POLY = ["--model", "linear", "--data", "builtin:poly", "--test-split", "0.5", "--standardize", "--epochs", 1500,
        "--batch-size", 20, "--lr", 0.05, "--schedule", "constant"]


from cli_run import run  # noqa: E402  (tests/ is on sys.path)


def test_polynomial_fit_overfits_and_l1_l2_cure_it(tmp_path):
    """The course's example: degree-12 features of 20 noisy points; penalties lower the test error."""
    mse = {}
    for name, extra in (("plain", []), ("ridge", ["--weight-decay", 0.01]), ("lasso", ["--l1", 0.01])):
        res = run("train", *POLY, *extra, "--out", tmp_path / f"{name}.h5")
        assert "1 float target(s)" in res.stdout and "Test MSE" in res.stdout and "accuracy" not in res.stdout
        mse[name] = load_model(tmp_path / f"{name}.h5").metadata["test_mse"]
    train_plain = float(list(csv.DictReader(open(tmp_path / "plain.history.csv")))[-1]["loss"])
    assert train_plain < 0.5 * mse["plain"]                          # over-fitting: the test error is far higher
    assert mse["ridge"] < 0.5 * mse["plain"] and mse["lasso"] < 0.5 * mse["plain"]
    w = load_model(tmp_path / "lasso.h5").model.get_weights()["fc"]["weight"]
    assert np.sum(np.abs(w) < 0.02) >= 4                             # lasso zeroes many coefficients
    res = run("evaluate", tmp_path / "ridge.h5", "--json", tmp_path / "r.json")
    assert "mse" in res.stdout and "r2" in res.stdout and "confusion" not in res.stdout
    assert "accuracy" not in res.stdout
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["n"] == 20 and rep["mse"] == pytest.approx(mse["ridge"], rel=1e-5) and rep["loss_name"] == "mse"


def test_npz_targets_on_images_and_csv_tables(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.random((60, 1, 12, 12), dtype=np.float32)
    targets = np.stack([images.mean(axis=(1, 2, 3)), images[:, 0, :6].mean(axis=(1, 2))], 1).astype(np.float32)
    np.savez(tmp_path / "img.npz", images=images, targets=targets, target_names=np.array(["mean", "top"]))
    res = run("train", "--model", "mlp", "--data", tmp_path / "img.npz", "--epochs", 3, "--out", tmp_path / "i.h5")
    assert "2 float target(s)" in res.stdout
    res = run("evaluate", tmp_path / "i.h5")
    assert "  mean  mse" in res.stdout and "  top   mse" in res.stdout
    x = rng.normal(size=(50, 3))
    y = x @ np.array([1.0, -2.0, 0.5]) + 0.3
    with open(tmp_path / "t.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["a", "b", "c", "target"])
        w.writerows(np.column_stack([x, y]).round(6))
    run("train", "--model", "linear", "--data", tmp_path / "t.csv", "--loss", "huber", "--epochs", 200,
        "--batch-size", 40, "--lr", 0.05, "--schedule", "constant", "--out", tmp_path / "t.h5")
    assert load_model(tmp_path / "t.h5").metadata["test_r2"] > 0.9
    with open(tmp_path / "new.csv", "w", newline="") as f:
        csv.writer(f).writerows([["a", "b", "c"], [1, 0, 0], [0, 1, 0]])
    res = run("predict", tmp_path / "t.h5", tmp_path / "new.csv", "--csv", tmp_path / "p.csv")
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith(str(tmp_path / "new.csv"))]
    values = [float(ln.split("target ")[1]) for ln in lines]
    assert values == pytest.approx([1.3, -1.7], abs=0.25)
    assert list(csv.DictReader(open(tmp_path / "p.csv")))[0].keys() == {"input", "target", "value"}


def test_float_targets_refuse_cross_entropy(tmp_path):
    np.savez(tmp_path / "f.npz", inputs=np.zeros((10, 3), np.float32), targets=np.zeros(10, np.float32))
    res = run("train", "--model", "linear", "--data", tmp_path / "f.npz", "--loss", "cross_entropy", ok=False)
    assert "float targets" in res.stderr and "--loss mse" in res.stderr


@pytest.mark.parametrize("name, torch_loss", [("mse", "MSELoss"), ("mae", "L1Loss"), ("huber", "HuberLoss")])
def test_regression_losses_match_pytorch(name, torch_loss):
    torch = pytest.importorskip("torch")
    from numbacnn.backends import get_backend
    be = get_backend("cpu")
    rng = np.random.default_rng(1)
    y, t = (rng.normal(size=(6, 3)) * 2).astype(np.float32), rng.normal(size=(6, 3)).astype(np.float32)
    loss, grad, _ = get_loss(name)(be, y, t)
    ty = torch.from_numpy(y).requires_grad_(True)
    ref = getattr(torch.nn, torch_loss)()(ty, torch.from_numpy(t))
    ref.backward()
    assert loss == pytest.approx(ref.item(), rel=1e-6)
    np.testing.assert_allclose(grad, ty.grad.numpy(), rtol=1e-5, atol=1e-7)
    assert not get_loss(name).classification and get_loss("cross_entropy").classification


def test_regression_report():
    rep = regression_report(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 2.5, 2.5, 4.0]), ["y"])
    assert rep["mse"] == pytest.approx(0.125) and rep["mae"] == pytest.approx(0.25)
    assert rep["r2"] == pytest.approx(1 - 0.5 / 5.0)
    assert regression_report(np.ones(3), np.zeros(3))["r2"] is None     # no spread: R^2 undefined
