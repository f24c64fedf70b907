"""The training-run core (numbacnn.run) through the CLI: results a user can trust.

No test-set leak (evaluation recognises the training data and scores only
the held-out images), stratified shuffled splits, resume that extends a
schedule, classifier heads rebuilt for a new number of classes, transfer
learning that says what it did, and the rough edges of a first session.
"""
from __future__ import annotations

import gzip
import os

import numpy as np
import pytest

from numbacnn.cli import cli
from numbacnn.data import make_shapes
from numbacnn.data.splits import SplitRecord, holdout, load_source, subset
from numbacnn.io.hdf5 import load_model
from numbacnn.run import evaluation_data

MNIST = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data", "mnist")


from cli_run import run  # noqa: E402  (tests/ is on sys.path)


def error_line(result):
    assert result.exit_code != 0, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def write_idx_test_pair(d, n=300, seed=5):
    """An MNIST-style directory holding only the t10k pair (as ../shared/data/mnist does)."""
    x, y, _ = make_shapes(n, seed=seed)
    u8 = (x[:, 0] * 255).round().astype(np.uint8)
    with gzip.open(d / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(bytes([0, 0, 8, 3]) + np.array(u8.shape, ">u4").tobytes() + u8.tobytes())
    with gzip.open(d / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(bytes([0, 0, 8, 1]) + np.array([n], ">u4").tobytes() + y.astype(np.uint8).tobytes())
    return d


@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory):
    return write_idx_test_pair(tmp_path_factory.mktemp("idx"))


@pytest.fixture(scope="module")
def leak_model(idx_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("leak") / "m.h5"
    res = run("train", "--data", idx_dir, "--test-split", 0.2, "--val-split", 0.1, "--epochs", 1, "--out", out)
    return out, res


# ---------------------------------------------------------------- no test-set leak
def test_evaluate_scores_only_the_images_held_out_at_training(leak_model, idx_dir):
    out, train_res = leak_model
    meta = load_model(out).metadata
    rec = SplitRecord.from_metadata(meta)
    assert len(rec.test) == 60 and len(rec.val) + len(rec.train) == 240
    assert not set(rec.test) & set(rec.train) and not set(rec.test) & set(rec.val) and not set(rec.train) & set(rec.val)
    assert "test 60 images held out (0.2 of the data, stratified, seed 0)" in train_res.stdout
    for args in ([], ["--data", idx_dir], ["--data", idx_dir, "--split", "test"]):
        res = run("evaluate", out, *args)
        assert "test split: 60 images held out at training" in res.stdout and "on 60 samples" in res.stdout
    x, y, _, _ = evaluation_data(meta, os.fspath(idx_dir))
    src = load_source(idx_dir)
    np.testing.assert_array_equal(x, src.x[rec.test])
    np.testing.assert_array_equal(y, src.y[rec.test])
    res = run("evaluate", out, "--data", idx_dir, "--split", "all")
    assert "all 300 images, 240 of which were used in training" in res.stdout and "on 300 samples" in res.stdout
    assert "on 40 samples" in run("evaluate", out, "--limit", 40).stdout


def test_evaluate_on_changed_data_is_other_data(leak_model, tmp_path):
    out, _ = leak_model
    other = write_idx_test_pair(tmp_path, n=120, seed=9)               # same layout, other images
    res = run("evaluate", out, "--data", other)
    assert "all 120 images" in res.stdout and "held out" not in res.stdout
    assert "no test part" in error_line(run("evaluate", out, "--data", other, "--split", "test", ok=False))


def test_evaluate_refuses_the_training_source_of_a_separate_test_set(tmp_path):
    x, y, names = make_shapes(200, seed=1)
    np.savez(tmp_path / "train.npz", images=x, labels=y)
    xt, yt, _ = make_shapes(60, seed=2)
    np.savez(tmp_path / "test.npz", images=xt, labels=yt)
    out = tmp_path / "m.h5"
    run("train", "--data", tmp_path / "train.npz", "--test-data", tmp_path / "test.npz", "--epochs", 1, "--out", out)
    line = error_line(run("evaluate", out, "--data", tmp_path / "train.npz", ok=False))
    assert "was trained on these images" in line and "test.npz" in line
    assert "on 60 samples" in run("evaluate", out).stdout


@pytest.mark.skipif(not os.path.isdir(MNIST), reason="../shared/data/mnist is not present")
def test_real_mnist_split_is_held_out(tmp_path):
    out = tmp_path / "mnist.h5"
    run("train", "--data", MNIST, "--test-split", 0.2, "--limit", 600, "--epochs", 1, "--out", out)
    res = run("evaluate", out, "--data", MNIST)
    assert "test split: 2,000 images held out at training" in res.stdout and "on 2000 samples" in res.stdout


# ---------------------------------------------------------------- splits
def test_holdout_is_stratified_seeded_and_shuffled():
    y = np.repeat(np.arange(5), [40, 30, 20, 10, 2])            # sorted by class, unbalanced
    keep, held = holdout(y, 0.2, seed=3, purpose="val")
    counts = np.bincount(y[held], minlength=5)
    np.testing.assert_array_equal(counts, [8, 6, 4, 2, 1])      # every class, in proportion (at least one)
    assert len(keep) + len(held) == len(y) and not set(keep) & set(held)
    k2, h2 = holdout(y, 0.2, seed=3, purpose="val")
    np.testing.assert_array_equal(held, h2)
    assert not np.array_equal(holdout(y, 0.2, seed=4, purpose="val")[1], held)
    assert not np.array_equal(holdout(y, 0.2, seed=3, purpose="test")[1], held)   # independent draws
    sub = subset(np.arange(len(y)), y, 25, seed=0, purpose="limit")
    assert len(sub) == 25 and len(np.unique(y[sub])) >= 4


def test_val_split_of_class_sorted_data_sees_every_class(tmp_path):
    x, y, _ = make_shapes(300, seed=4)
    order = np.argsort(y, kind="stable")                            # sorted by class: the tail is one class
    np.savez(tmp_path / "sorted.npz", images=x[order], labels=y[order])
    out = tmp_path / "m.h5"
    run("train", "--data", tmp_path / "sorted.npz", "--val-split", 0.2, "--epochs", 2, "--out", out)
    rec = SplitRecord.from_metadata(load_model(out).metadata)
    y_sorted = y[order]
    assert len(np.unique(y_sorted[rec.val])) == 10
    hist = open(tmp_path / "m.history.csv").read().splitlines()
    val_acc = float(hist[-1].split(",")[4])
    assert val_acc > 0.15                                           # was 0: the tail held a single class


# ---------------------------------------------------------------- resume
def test_resume_extends_a_finished_cosine_run(tmp_path):
    x, y, _ = make_shapes(160, seed=6)
    np.savez(tmp_path / "d.npz", images=x, labels=y)
    out = tmp_path / "c.h5"
    run("train", "--data", tmp_path / "d.npz", "--epochs", 2, "--schedule", "cosine", "--out", out)
    res = run("train", "--resume", out, "--epochs", 4)
    assert "cosine schedule re-planned from 2 to 4 epochs" in res.stdout
    rows = open(tmp_path / "c.history.csv").read().splitlines()[1:]
    lrs = [float(r.split(",")[5]) for r in rows]
    assert len(lrs) == 4 and lrs[2] > 1e-4 and lrs[3] > 0          # not stuck at 0
    line = error_line(run("train", "--resume", out, "--epochs", 5, "--limit", 50, ok=False))
    assert "--limit" in line and "--resume" in line


# ---------------------------------------------------------------- transfer learning
@pytest.fixture(scope="module")
def base_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("tl")
    x, y, _ = make_shapes(200, seed=7)
    np.savez(d / "ten.npz", images=x, labels=y)
    keep = y < 4
    np.savez(d / "four.npz", images=x[keep], labels=y[keep], class_names=np.array(["a", "b", "c", "d"]))
    run("train", "--data", d / "ten.npz", "--epochs", 1, "--out", d / "base.h5")
    return d


def test_fine_tuning_on_fewer_classes_rebuilds_the_head(base_model, tmp_path):
    d = base_model
    out = tmp_path / "ft.h5"
    res = run("train", "--model", d / "base.h5", "--data", d / "four.npz", "--epochs", 1, "--out", out)
    assert "re-initialised layer 'fc3' (Dense 10 -> 4 outputs) for 4 classes" in res.stdout
    mf = load_model(out)
    assert mf.model.output_shapes["fc3"] == (4,) and mf.metadata["class_names"] == ["a", "b", "c", "d"]
    base = load_model(d / "base.h5").model.get_weights()
    np.testing.assert_array_equal(mf.model.get_weights()["conv1"]["weight"].shape, base["conv1"]["weight"].shape)


def test_init_from_reports_counts_and_refuses_no_match(base_model, tmp_path):
    d = base_model
    res = run("train", "--data", d / "four.npz", "--init-from", d / "base.h5", "--freeze", "conv1,conv2",
              "--epochs", 1, "--out", tmp_path / "a.h5")
    assert "loaded 4 layer(s)" in res.stdout and "skipped 1" in res.stdout and "skipped fc3" in res.stdout
    assert "froze 2 layer(s) (conv1, conv2): 2,572 parameters fixed" in res.stdout
    assert "pre-computing the frozen layers' output (conv1, relu1, pool1, conv2, relu2, pool2, flatten)" in res.stdout
    res = run("train", "--data", d / "four.npz", "--init-from", d / "base.h5", "--freeze", "conv1,conv2",
              "--augment", "flip", "--epochs", 1, "--out", tmp_path / "b.h5")
    assert "computed every step, not once: --augment" in res.stdout
    from numbacnn.graph import Model
    from numbacnn.layers import Dense, Flatten
    other = Model.sequential("other", (1, 28, 28), [Flatten(name="f"), Dense(10, name="head")])
    (tmp_path / "other.json").write_text(other.to_json())
    line = error_line(run("train", "--model", tmp_path / "other.json", "--data", d / "ten.npz", "--init-from",
                          d / "base.h5", "--out", tmp_path / "c.h5", ok=False))
    assert "--init-from" in line and "no layer" in line and "base.h5" in line


def test_early_stopping_says_which_epoch_it_restored(base_model, tmp_path):
    res = run("train", "--data", base_model / "ten.npz", "--val-split", 0.2, "--epochs", 12, "--early-stop", 0,
              "--monitor", "val_loss", "--optimizer", "sgd", "--lr", 0.5, "--schedule", "constant",
              "--out", tmp_path / "e.h5")
    assert "Restored the weights of epoch" in res.stdout


# ---------------------------------------------------------------- graphs ending in softmax (imported)
def test_predict_and_time_on_imported_squeezenet(tmp_path):
    onnx = pytest.importorskip("onnx")
    from numbacnn.onnx.light import light_graph
    onnx.save(light_graph("light_squeezenet"), tmp_path / "sq.onnx")
    res = run("import-onnx", tmp_path / "sq.onnx", "--out", tmp_path / "sq.h5")
    assert "Reading and checking" in res.stdout and "Converting" in res.stdout
    x = np.random.default_rng(0).random((2, 3, 224, 224), dtype=np.float32)
    np.savez(tmp_path / "x.npz", images=x)
    res = run("predict", tmp_path / "sq.h5", tmp_path / "x.npz", "--top-k", 1, "--save-outputs", tmp_path / "o.npz")
    out = np.load(tmp_path / "o.npz")["outputs"].reshape(2, -1)
    np.testing.assert_allclose(out.sum(1), 1.0, rtol=1e-4)            # the graph's own softmax
    top = out.max(1)
    assert f"({top[0]:.4f})" in res.stdout.splitlines()[0]           # not softmax applied twice (~0.001)
    res = run("time", tmp_path / "sq.h5", "--batch-size", 1, "--iterations", 1, "--device", "cpu")
    assert "Images/s" in res.stdout
    line = error_line(run("import-onnx", tmp_path / "sq.onnx", "--out", tmp_path / "sq.h5", ok=False))
    assert "exists" in line and "--force" in line
    run("import-onnx", tmp_path / "sq.onnx", "--out", tmp_path / "sq.h5", "--force")
    line = error_line(run("export-onnx", tmp_path / "sq.h5", "--out", tmp_path / "sq.onnx", ok=False))
    assert "--force" in line


# ---------------------------------------------------------------- rough edges
def test_limit_and_limit_test(base_model, tmp_path):
    res = run("train", "--data", base_model / "ten.npz", "--limit", 50, "--limit-test", 20, "--epochs", 1,
              "--out", tmp_path / "l.h5")
    assert "training 50 (--limit 50)" in res.stdout and "20 of them used (--limit-test)" in res.stdout
    assert "Test accuracy" in res.stdout


def test_every_option_of_every_command_has_help():
    missing = [f"{name} {p.opts[0]}" for name, cmd in cli.commands.items() for p in cmd.params
               if p.param_type_name == "option" and not p.help and p.opts[0] != "--help"]
    assert not missing, missing


def test_models_lists_exactly_the_names_model_accepts():
    from numbacnn.models import ZOO
    lines = run("models").stdout.splitlines()[1:]
    names = [ln.split()[0] for ln in lines]
    assert names == list(ZOO)
    for name in names:
        assert run("summary", name).exit_code == 0
    assert "depth" not in run("models").stdout


def test_errors_that_help(base_model, tmp_path):
    model = base_model / "base.h5"
    (tmp_path / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 64)
    line = error_line(run("predict", model, tmp_path / "photo.jpg", ok=False))
    assert "photo.jpg" in line and "not a readable image" in line
    np.savez(tmp_path / "big.npz", images=np.full((2, 28, 28), 300.0, np.float32))
    line = error_line(run("predict", model, tmp_path / "big.npz", ok=False))
    assert "big.npz" in line and "--raw" in line
    from numbacnn.backends import cuda_available
    if not cuda_available():
        line = error_line(run("predict", model, tmp_path / "big.npz", "--device", "cuda", ok=False))
        assert "--device" in line and ("NUMBA_ENABLE_CUDASIM=1" in line or "numba-cuda" in line)


def test_labels_with_gaps_need_classes(tmp_path):
    x, y, _ = make_shapes(60, seed=3)
    y = y.copy()
    y[:3] = 255                                                     # a few stray labels of 255
    np.savez(tmp_path / "gaps.npz", images=x, labels=y)
    line = error_line(run("train", "--data", tmp_path / "gaps.npz", "--out", tmp_path / "g.h5", ok=False))
    assert "gaps.npz" in line and "--classes 256" in line
