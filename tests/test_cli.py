"""The command line: every command, and every kind of bad input ending in one ``Error:`` line.

Tiny datasets (.npz files of a few hundred built-in images) keep this file
to about a minute; run it with ``pytest tests/test_cli.py``.
"""
from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from numbacnn import cli as cli_module
from numbacnn.data import make_shapes, save_image
from numbacnn.io.hdf5 import load_model
from numbacnn.progress import ProgressBar
from numbacnn.train import predict as predict_model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


from cli_run import run  # noqa: E402  (tests/ is on sys.path)


def assert_one_line_error(result, *fragments):
    """Non-zero exit, exactly one stderr line starting with 'Error:', naming ``fragments``, no traceback."""
    assert result.exit_code != 0, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: "), lines[0]
    assert "Traceback" not in result.output
    for f in fragments:
        assert f in lines[0], (f, lines[0])


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    x, y, names = make_shapes(240, seed=3)
    np.savez(d / "tiny.npz", images=(x * 255).round().astype(np.uint8), labels=y, class_names=np.array(names))
    xr, yr, _ = make_shapes(40, seed=4, rgb=True)
    np.savez(d / "rgb.npz", images=xr, labels=yr)
    return d


@pytest.fixture(scope="module")
def trained(data_dir):
    """A LeNet-5 trained for 2 epochs on tiny.npz with --standardize."""
    out = data_dir / "m.h5"
    res = run("train", "--data", data_dir / "tiny.npz", "--epochs", 2, "--batch-size", 16, "--standardize",
              "--out", out)
    return out, res


# ---------------------------------------------------------------- train
def test_train_writes_model_history_and_metadata(trained):
    out, res = trained
    assert "epoch 1/2 - " in res.stdout and "epoch 2/2 - " in res.stdout      # plain lines: not a terminal
    assert "img/s" in res.stdout and "Test accuracy" in res.stdout
    mf = load_model(out)
    meta = mf.metadata
    assert meta["class_names"][:3] == ["ring", "disk", "triangle"]
    assert meta["mean"].shape == (1,) and meta["std"].shape == (1,) and meta["std"][0] > 0
    assert 0.0 <= meta["test_accuracy"] <= 1.0
    assert meta["train_options"]["epochs"] == 2 and meta["train_options"]["standardize"] is True
    assert mf.training_state["epoch"] == 2
    with open(out.parent / "m.history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert float(rows[1]["loss"]) < float(rows[0]["loss"])
    assert not os.path.exists(out.parent / "m.ckpt.h5")          # the checkpoint is removed on success


def test_resume_continues_exactly(data_dir, tmp_path):
    common = ["--data", data_dir / "tiny.npz", "--batch-size", 16, "--schedule", "constant", "--optimizer", "sgd",
              "--augment", "flip,noise"]
    run("train", *common, "--epochs", 2, "--out", tmp_path / "two.h5")
    run("train", *common, "--epochs", 1, "--out", tmp_path / "one.h5")
    res = run("train", "--resume", tmp_path / "one.h5", "--epochs", 2)       # options come from the file
    assert "Resuming" in res.stdout and "epoch 2/2" in res.stdout
    a, b = load_model(tmp_path / "two.h5").model.get_weights(), load_model(tmp_path / "one.h5").model.get_weights()
    for layer in a:
        for name in a[layer]:
            np.testing.assert_array_equal(a[layer][name], b[layer][name], err_msg=f"{layer}/{name}")
    with open(tmp_path / "one.history.csv") as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["1", "2"]


def test_train_options_val_split_early_stop_schedules(data_dir, tmp_path):
    out = tmp_path / "e.h5"
    res = run("train", "--data", data_dir / "tiny.npz", "--epochs", 3, "--batch-size", 32, "--val-split", 0.25,
              "--early-stop", 0, "--monitor", "val_loss", "--schedule", "step", "--lr-step", 1, "--optimizer", "sgd",
              "--lr", 0.05, "--nesterov", "--weight-decay", 1e-4, "--l1", 1e-5, "--out", out)
    assert "val_loss" in res.stdout
    rows = list(csv.DictReader(open(tmp_path / "e.history.csv")))
    assert rows[0]["val_accuracy"] != ""
    assert float(rows[1]["lr"]) == pytest.approx(0.005)              # step decay x0.1 every epoch
    ts = load_model(out).training_state
    assert ts["early_stopping"]["monitor"] == "val_loss"


def test_freeze_and_init_from(trained, data_dir, tmp_path):
    src, _ = trained
    out = tmp_path / "ft.h5"
    res = run("train", "--data", data_dir / "tiny.npz", "--epochs", 1, "--init-from", src,
              "--freeze", "conv1,conv2", "--out", out)
    assert "init-from" in res.stdout and "loaded 5 layer(s)" in res.stdout
    a, b = load_model(src).model.get_weights(), load_model(out).model.get_weights()
    np.testing.assert_array_equal(a["conv1"]["weight"], b["conv1"]["weight"])   # frozen: unchanged
    assert not np.array_equal(a["fc3"]["weight"], b["fc3"]["weight"])           # trained
    summary = run("summary", out).stdout
    assert "conv1 (Conv2D) [frozen]" in summary and "Frozen params: 2,572" in summary
    # a model with another number of classes: the head is reported as skipped
    res = run("train", "--data", data_dir / "rgb.npz", "--epochs", 1, "--init-from", src, "--out", tmp_path / "x.h5")
    assert "skipped conv1" in res.stdout and "shapes differ" in res.stdout


def test_train_json_architecture_and_h5_model(trained, data_dir, tmp_path):
    arch = tmp_path / "net.json"
    arch.write_text(load_model(trained[0]).model.to_json())
    run("train", "--model", arch, "--data", data_dir / "tiny.npz", "--epochs", 1, "--out", tmp_path / "j.h5")
    res = run("train", "--model", trained[0], "--data", data_dir / "tiny.npz", "--epochs", 1,
              "--out", tmp_path / "h.h5")
    assert "Test accuracy" in res.stdout


# ---------------------------------------------------------------- evaluate
def test_evaluate_report_json_and_roc(trained, data_dir, tmp_path):
    out, train_res = trained
    res = run("evaluate", out, "--data", data_dir / "tiny.npz", "--json", tmp_path / "r.json",
              "--roc", tmp_path / "roc.csv")
    assert "test split: 50 images held out at training" in res.stdout
    assert "confusion matrix" in res.stdout and "macro" in res.stdout
    rep = json.loads((tmp_path / "r.json").read_text())
    assert f"on {rep['n']:,} images held out" in train_res.stdout   # the same held-out images
    assert len(rep["confusion_matrix"]) == 10 and np.sum(rep["confusion_matrix"]) == rep["n"] == 50
    assert rep["accuracy"] == pytest.approx(load_model(out).metadata["test_accuracy"])
    for key in ("precision", "recall", "specificity", "f1", "auc"):
        assert key in rep["classes"][0] and key in rep["macro"]
    assert rep["class_names"][0] == "ring"
    rows = list(csv.DictReader(open(tmp_path / "roc.csv")))
    assert {r["class"] for r in rows} == set(rep["class_names"])
    assert rows[0]["threshold"] == "inf" and float(rows[0]["fpr"]) == 0.0
    res = run("evaluate", out, "--data", data_dir / "tiny.npz", "--split", "all")
    assert "accuracy" in res.stdout and "on 240 samples" in res.stdout
    assert "all 240 images, 190 of which were used in training" in res.stdout
    res = run("evaluate", out)                                   # no --data: the data it was tested on
    assert "on its test data (test split: 50 images held out at training)" in res.stdout


# ---------------------------------------------------------------- predict
def test_predict_npz_images_idx_csv_and_outputs(trained, data_dir, tmp_path):
    out, _ = trained
    x, _, _ = make_shapes(3, seed=9)
    png, pgm = tmp_path / "a.png", tmp_path / "b.pgm"
    save_image(str(png), x[0])
    save_image(str(pgm), x[1])
    idx = tmp_path / "t10k-images-idx3-ubyte"
    u8 = (x * 255).round().astype(np.uint8)[:, 0]
    idx.write_bytes(bytes([0, 0, 8, 3]) + np.array(u8.shape, ">u4").tobytes() + u8.tobytes())
    res = run("predict", out, png, pgm, idx, "--top-k", 2,
              "--csv", tmp_path / "p.csv", "--save-outputs", tmp_path / "o.npz")
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith(str(tmp_path))]
    assert len(lines) == 5 and lines[0].startswith(f"{png}: ") and lines[0].count("(") == 2
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    assert len(rows) == 10 and {r["rank"] for r in rows} == {"1", "2"}
    z = np.load(tmp_path / "o.npz")
    assert z["outputs"].dtype == np.float32 and z["outputs"].shape == (5, 10)
    model = load_model(out).model
    np.testing.assert_allclose(z["outputs"], predict_model(model, z["inputs"]), rtol=1e-6, atol=1e-6)
    assert abs(float(z["outputs"][0].sum()) - 1.0) > 1e-3            # raw logits, not probabilities
    probs = np.exp(z["outputs"] - z["outputs"].max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    assert f"({probs[0].max():.4f})" in lines[0]
    # the IDX images equal the PNG one pixel for pixel (both standardised the same way)
    np.testing.assert_allclose(z["inputs"][0], z["inputs"][2], atol=1e-5)
    res = run("predict", out, data_dir / "tiny.npz", "--raw", "--save-outputs", tmp_path / "raw.npz")
    raw = np.load(tmp_path / "raw.npz")
    assert raw["inputs"].max() > 1.0                                  # uint8 values fed unchanged


# ---------------------------------------------------------------- summary, models, time
def test_models_lists_the_zoo():
    res = run("models")
    for name in ("lenet5", "alexnet", "vgg", "inception", "resnet20", "resnet18"):
        assert f"\n{name} " in "\n" + res.stdout
    assert "61,706" in res.stdout and "11,689,512" in res.stdout


def test_summary_zoo_and_json(tmp_path):
    res = run("summary", "lenet5")
    assert "conv1 (Conv2D)" in res.stdout and "(6, 28, 28)" in res.stdout and "Total params: 61,706" in res.stdout
    assert "Trainable params: 61,706" in res.stdout and "Frozen params: 0" in res.stdout and "FLOPs" in res.stdout
    res = run("summary", "resnet20", "--input-shape", "3,32,32", "--classes", 100)
    assert "add" in res.stdout.lower() and "Total params" in res.stdout
    from numbacnn.models import lenet5
    (tmp_path / "l.json").write_text(lenet5(num_classes=4).to_json())
    assert "Total params: 61,196" in run("summary", tmp_path / "l.json").stdout


def test_time_prints_per_layer_and_totals():
    res = run("time", "lenet5", "--batch-size", 4, "--iterations", 2, "--device", "cpu")
    for name in ("conv1 (Conv2D)", "fc3 (Dense)", "Average forward pass", "Average backward pass", "Images/s"):
        assert name in res.stdout


def test_onnx_round_trip(trained, tmp_path):
    pytest.importorskip("onnx")
    out, _ = trained
    res = run("export-onnx", out, "--out", tmp_path / "m.onnx")
    assert "standardisation" in res.stderr                              # the mean/std are not in the graph
    run("import-onnx", tmp_path / "m.onnx", "--out", tmp_path / "back.h5")
    x = np.random.default_rng(0).random((4, 1, 28, 28), dtype=np.float32)
    a, b = load_model(out).model, load_model(tmp_path / "back.h5").model
    np.testing.assert_allclose(predict_model(a, x), predict_model(b, x), rtol=1e-5, atol=1e-5)
    assert_one_line_error(run("import-onnx", tmp_path / "missing.onnx", ok=False), "missing.onnx")
    (tmp_path / "bad.onnx").write_bytes(b"not onnx at all")
    assert_one_line_error(run("import-onnx", tmp_path / "bad.onnx", ok=False), "bad.onnx")
    res = run("export-onnx", out, "--out", tmp_path / "m21.onnx", "--opset", 21)
    assert "(opset 21)" in res.stdout and onnx_opset(tmp_path / "m21.onnx") == 21
    assert_one_line_error(run("export-onnx", out, "--out", tmp_path / "m12.onnx", "--opset", 12, ok=False), "opset 12")


def onnx_opset(path):
    import onnx
    return onnx.load(str(path)).opset_import[0].version


# ---------------------------------------------------------------- progress bar
def test_progress_bar_terminal_and_plain():
    def drive(bar):
        bar.on_train_begin({"epochs": 2, "start_epoch": 0, "samples": 64, "batches": 2, "batch_size": 32,
                            "val_samples": 0})
        bar.on_epoch_begin(0, {"lr": 0.1})
        for b in (1, 2):
            bar.on_batch_end(b - 1, {"epoch": 1, "batch": b, "batches": 2, "size": 32, "loss": 1.0, "accuracy": 0.5,
                              "epoch_loss": 1.5, "epoch_accuracy": 0.25, "images_per_s": 1000.0,
                              "elapsed": 0.1 * b, "lr": 0.1})
        bar.on_epoch_end(0, {"epoch": 1, "loss": 1.5, "accuracy": 0.25, "val_loss": None, "val_accuracy": None,
                          "lr": 0.1, "time": 0.2})
        return bar.stream.getvalue()

    tty = drive(ProgressBar(io.StringIO(), tty=True, min_interval=0.0))
    assert "Epoch 1/2" in tty and "\r" in tty and "[" in tty and "ETA" in tty and "1,000 img/s" in tty
    assert "2/2 [" + "=" * 30 + "]" in tty and "left 0:00" in tty
    plain = drive(ProgressBar(io.StringIO(), tty=False))
    assert "\r" not in plain and "ETA" not in plain
    assert "epoch 1/2 - 0.2s - loss 1.5000 - accuracy 0.2500 - 1,000 img/s - lr 0.1 - left 0:00" in plain


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("args, fragments", [
    (["--lr", "-1"], ["--lr"]),
    (["--epochs", "0"], ["--epochs"]),
    (["--batch-size", "0"], ["--batch-size"]),
    (["--test-split", "1.5"], ["--test-split"]),
    (["--test-split", "0"], ["--test-split"]),
    (["--val-split", "1"], ["--val-split"]),
    (["--momentum", "1.2", "--optimizer", "sgd"], ["--momentum"]),
    (["--augment", "flip,rotate"], ["--augment", "rotate"]),
    (["--optimizer", "rmsprop"], ["--optimizer"]),
    (["--schedule", "exp"], ["--schedule"]),
    (["--device", "tpu"], ["--device"]),
    (["--early-stop", "2"], ["--early-stop", "--val-split"]),
    (["--optimizer", "adam", "--momentum", "0.5"], ["--momentum"]),
    (["--model", "lenet7"], ["lenet7"]),
    (["--data", "no/such/dir"], ["no/such/dir"]),
    (["--data", "builtin:cmyk"], ["builtin:cmyk"]),
    (["--out", "no/such/dir/m.h5"], ["--out", "no/such/dir"]),
    (["--resume", "missing.h5"], ["missing.h5"]),
])
def test_train_bad_options(args, fragments, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(run("train", *args, ok=False), *fragments)
    assert not os.path.exists(tmp_path / "model.h5")


def test_train_bad_data_and_model_files(trained, data_dir, tmp_path):
    tiny = data_dir / "tiny.npz"
    (tmp_path / "notes.txt").write_text("hello")
    assert_one_line_error(run("train", "--data", tmp_path / "notes.txt", ok=False), "notes.txt")
    np.savez(tmp_path / "nolabels.npz", images=np.zeros((4, 28, 28), np.uint8))
    assert_one_line_error(run("train", "--data", tmp_path / "nolabels.npz", ok=False), "nolabels.npz", "labels")
    (tmp_path / "empty").mkdir()
    assert_one_line_error(run("train", "--data", tmp_path / "empty", ok=False), "empty")
    # an architecture whose input shape does not match the data
    arch = tmp_path / "net.json"
    arch.write_text(load_model(trained[0]).model.to_json())
    assert_one_line_error(run("train", "--model", arch, "--data", data_dir / "rgb.npz", ok=False),
                          "net.json", "(1, 28, 28)", "(3, 32, 32)")
    (tmp_path / "broken.json").write_text("{not json")
    assert_one_line_error(run("train", "--model", tmp_path / "broken.json", "--data", tiny, ok=False), "broken.json")
    (tmp_path / "corrupt.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    assert_one_line_error(run("train", "--model", tmp_path / "corrupt.h5", "--data", tiny, ok=False), "corrupt.h5")
    assert_one_line_error(run("train", "--init-from", tmp_path / "nope.h5", "--data", tiny, ok=False), "nope.h5")
    assert_one_line_error(run("train", "--freeze", "conv9", "--data", tiny, ok=False), "conv9")


def test_cuda_without_gpu_is_one_line():
    from numbacnn.backends import cuda_available
    if cuda_available():
        pytest.skip("a GPU is present")
    assert_one_line_error(run("time", "lenet5", "--device", "cuda", ok=False), "--device", "cuda")


def test_evaluate_and_predict_errors(trained, data_dir, tmp_path):
    out, _ = trained
    assert_one_line_error(run("evaluate", tmp_path / "none.h5", "--data", data_dir / "tiny.npz", ok=False), "none.h5")
    truncated = tmp_path / "trunc.h5"
    truncated.write_bytes(out.read_bytes()[:2000])
    assert_one_line_error(run("evaluate", truncated, "--data", data_dir / "tiny.npz", ok=False), "trunc.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = np.zeros(3)
    assert_one_line_error(run("evaluate", tmp_path / "other.h5", "--data", data_dir / "tiny.npz", ok=False),
                          "other.h5")
    assert_one_line_error(run("evaluate", out, "--data", data_dir / "rgb.npz", ok=False), "(1, 28, 28)", "rgb.npz")
    assert_one_line_error(run("predict", out, tmp_path / "nothing.png", ok=False), "nothing.png")
    (tmp_path / "fake.png").write_bytes(b"GIF89a....")
    assert_one_line_error(run("predict", out, tmp_path / "fake.png", ok=False), "fake.png")
    assert_one_line_error(run("predict", out, data_dir / "rgb.npz", ok=False), "rgb.npz", "(1, 28, 28)")
    assert_one_line_error(run("predict", out, data_dir / "tiny.npz", "--top-k", 0, ok=False), "--top-k")
    assert_one_line_error(run("summary", "nosuchnet", ok=False), "nosuchnet")
    assert_one_line_error(run("summary", "lenet5", "--input-shape", "28,28", ok=False), "--input-shape")


def test_unexpected_error_is_one_line_with_debug_hint(monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(cli_module, "_model_for_inspection", boom)
    assert_one_line_error(run("summary", "lenet5", ok=False), "unexpected RuntimeError: kaboom", "NUMBACNN_DEBUG=1")
    monkeypatch.setattr(cli_module.config, "DEBUG", True)
    res = run("summary", "lenet5", ok=False)
    assert "Traceback" in res.stderr and res.stderr.strip().splitlines()[-1].startswith("Error: ")


def test_failed_train_leaves_a_good_model_file_alone(trained, data_dir, tmp_path):
    good = tmp_path / "good.h5"
    good.write_bytes(trained[0].read_bytes())
    before = good.read_bytes()
    # bad input found before training
    assert_one_line_error(run("train", "--data", data_dir / "rgb.npz", "--model", trained[0], "--out", good,
                              ok=False), "(3, 32, 32)")
    # training that diverges in the second epoch, after a checkpoint was written
    res = run("train", "--data", data_dir / "tiny.npz", "--optimizer", "sgd", "--lr", 1e4, "--epochs", 3,
              "--schedule", "constant", "--out", good, ok=False)
    assert_one_line_error(res, "diverged", "good.h5 was not written")
    assert good.read_bytes() == before
    load_model(good)                                                   # still a readable model file
    leftovers = [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    assert leftovers == []


def test_console_script_and_help():
    exe = [sys.executable, os.path.join(REPO, "bin", "numbacnn")]
    res = subprocess.run(exe + ["--help"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0
    for cmd in ("train", "evaluate", "predict", "summary", "time", "models", "import-onnx", "export-onnx"):
        assert cmd in res.stdout
    res = subprocess.run(exe + ["evaluate", "missing.h5", "--data", "builtin"], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 1 and res.stderr.startswith("Error: ") and res.stderr.count("\n") == 1
    assert "Traceback" not in res.stderr
    help_text = run("train", "--help").stdout
    for opt in ("--model", "--data", "--test-data", "--epochs", "--augment", "--early-stop", "--freeze",
                "--init-from", "--resume", "--standardize", "--device", "--out"):
        assert opt in help_text
