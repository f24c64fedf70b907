"""numbacnn search: the grid, k-fold splits, trials scored on validation only, the ranked table and files,
resume, the best retrained and tested once, and a test part that never influences the choice."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from numbacnn.data import make_shapes
from numbacnn.data.splits import kfold
from numbacnn.io.hdf5 import load_model
from numbacnn.run import RunConfig, TrainingRun
from numbacnn.search import GridSearch, parse_grid, trials_of


from cli_run import run  # noqa: E402  (tests/ is on sys.path)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """A small image dataset (train part) and a separate test file, plus the same test images relabelled."""
    d = tmp_path_factory.mktemp("shapes")
    x, y, names = make_shapes(420, seed=5)
    np.savez(d / "train.npz", images=x[:300], labels=y[:300], class_names=np.array(names))
    np.savez(d / "test.npz", images=x[300:], labels=y[300:], class_names=np.array(names))
    np.savez(d / "test_relabelled.npz", images=x[300:], labels=(y[300:] + 3) % 10, class_names=np.array(names))
    return d


SMALL = ["--epochs", 1, "--batch-size", 32, "--model", "lenet5"]


def test_parse_grid_types_checks_and_errors():
    grid = parse_grid(["lr=1e-3,0.01", "l2=0,1e-4", "batch_size=16,32", "optimizer=sgd,adam",
                       "augment=none,flip+noise"])
    assert grid == {"lr": [0.001, 0.01], "l2": [0.0, 1e-4], "batch_size": [16, 32], "optimizer": ["sgd", "adam"],
                    "augment": ["", "flip,noise"]}
    assert len(trials_of(grid)) == 32 and trials_of(grid)[1] == {"lr": 0.001, "l2": 0.0, "batch_size": 16,
                                                                 "optimizer": "sgd", "augment": "flip,noise"}
    for specs, message in [(["lr"], "expected NAME=V1,V2"), (["lr="], "expected NAME=V1,V2"),
                           (["foo=1"], "unknown hyper-parameter 'foo'"), (["lr=a"], "'a' is not a number"),
                           (["lr=0"], "must be > 0"), (["dropout=1"], r"must be in \[0, 1\)"),
                           (["batch_size=2.5"], "not an integer"), (["l2=0", "weight_decay=1"], "given twice"),
                           (["lr=1,1"], "a value repeats"), (["augment=spin"], "unknown augmentation spin"),
                           (["optimizer=rmsprop"], "sgd or adam"), ([], "at least one --grid")]:
        with pytest.raises(ValueError, match=message):
            parse_grid(specs)


def test_kfold_partitions_stratified_and_seeded():
    y = np.repeat(np.arange(3), [10, 20, 31])
    folds = kfold(y, 5, seed=1)
    assert sorted(np.concatenate(folds).tolist()) == list(range(len(y)))      # disjoint and complete
    for f in folds:
        counts = np.bincount(y[f], minlength=3)
        assert np.all(np.abs(counts - np.array([2, 4, 6.2])) <= 1)             # every class in its share
    assert all(np.array_equal(a, b) for a, b in zip(folds, kfold(y, 5, seed=1)))
    assert not all(np.array_equal(a, b) for a, b in zip(folds, kfold(y, 5, seed=2)))
    assert sum(len(f) for f in kfold(np.linspace(0, 1, 13), 4, 0)) == 13         # float targets: a plain draw
    with pytest.raises(ValueError, match="empty fold"):
        kfold(y[:3], 5, 0)


def test_search_ranks_on_validation_writes_files_and_tests_the_best_once(tmp_path, shapes):
    out = tmp_path / "s"
    res = run("search", "--data", shapes / "train.npz", "--test-data", shapes / "test.npz", *SMALL,
              "--grid", "lr=3e-4,3e-3", "--grid", "l2=0,0.01", "--out-dir", out)
    lines = res.stdout.splitlines()
    assert sum(line.startswith("[") and "] lr=" in line for line in lines) == 4
    assert "scored by accuracy on a validation split of 60 images (240 trained on)" in res.stdout
    rows = list(csv.DictReader(open(out / "trials.csv")))
    scores = [float(r["score (accuracy)"]) for r in rows]
    assert scores == sorted(scores, reverse=True) and [r["rank"] for r in rows] == ["1", "2", "3", "4"]
    doc = json.loads((out / "trials.json").read_text())
    best = doc["trials"][0]["params"]
    assert best == {"lr": float(rows[0]["lr"]), "l2": float(rows[0]["l2"])}
    # the best, retrained on the whole training part (train + validation), tested once on the test file
    mf = load_model(out / "best.h5")
    opts = mf.metadata["train_options"]
    assert opts["lr"] == best["lr"] and opts["weight_decay"] == best["l2"] and opts["val_split"] == 0
    assert len(mf.metadata["split_train"]) == 300 and len(mf.metadata["split_val"]) == 0
    assert doc["final"]["test_accuracy"] == pytest.approx(mf.metadata["test_accuracy"])
    ev = run("evaluate", out / "best.h5", "--json", tmp_path / "e.json")
    assert json.loads((tmp_path / "e.json").read_text())["accuracy"] == pytest.approx(doc["final"]["test_accuracy"])
    assert "Test accuracy" in res.stdout and "240 trained on" not in ev.stdout


def test_trial_score_is_the_validation_score_of_the_same_training(tmp_path, shapes):
    """A trial is exactly a train run with --val-split: its score is that run's last validation accuracy."""
    cfg = RunConfig(data=str(shapes / "train.npz"), test_data=str(shapes / "test.npz"), epochs=2, batch_size=32,
                    val_split=0.25, seed=3, standardize=True)
    result = GridSearch(cfg, parse_grid(["lr=2e-3"]), out_dir=tmp_path / "s", log=lambda m: None).run()
    import dataclasses
    ref = TrainingRun(dataclasses.replace(cfg, lr=2e-3, out=str(tmp_path / "ref.h5")), log=lambda m: None).run()
    assert result.trials[0].score == pytest.approx(ref.history[-1]["val_accuracy"], abs=0)
    assert result.trials[0].val_loss == pytest.approx(ref.history[-1]["val_loss"], rel=1e-6)


def test_the_test_part_never_influences_the_choice(tmp_path, shapes):
    docs = {}
    for name in ("test", "test_relabelled"):
        run("search", "--data", shapes / "train.npz", "--test-data", shapes / f"{name}.npz", *SMALL,
            "--grid", "lr=1e-3,3e-3,1e-2", "--out-dir", tmp_path / name)
        docs[name] = json.loads((tmp_path / name / "trials.json").read_text())
    a, b = docs["test"], docs["test_relabelled"]
    assert [t["params"] for t in a["trials"]] == [t["params"] for t in b["trials"]]
    assert [t["score"] for t in a["trials"]] == [t["score"] for t in b["trials"]]
    assert a["final"]["params"] == b["final"]["params"]
    assert a["final"]["test_accuracy"] != b["final"]["test_accuracy"]          # only the reported test score moved


def trials(out_dir):
    return json.loads((out_dir / "trials.json").read_text())["trials"]


def test_resume_skips_finished_trials_and_refuses_other_options(tmp_path, shapes):
    base = ["search", "--data", shapes / "train.npz", "--test-data", shapes / "test.npz", *SMALL,
            "--out-dir", tmp_path / "s"]
    run(*base, "--grid", "lr=1e-3,3e-3")
    first = {json.dumps(t["params"]): t["score"] for t in trials(tmp_path / "s")}
    res = run(*base, "--grid", "lr=1e-3,3e-3,1e-2")
    assert "Resuming: 2 of 3 trial(s) already in" in res.stdout
    assert sum("] lr=" in line for line in res.stdout.splitlines()) == 1                     # one trial trained
    again = {json.dumps(t["params"]): t["score"] for t in trials(tmp_path / "s")}
    assert all(again[k] == v for k, v in first.items()) and len(again) == 3
    res = run(*base, "--grid", "lr=1e-3,3e-3,1e-2")
    assert "already retrained and tested" in res.stdout and "] lr=" not in res.stdout
    res = run(*base, "--epochs", 2, "--grid", "lr=1e-3", ok=False)
    assert res.exit_code != 0 and "holds a search with other options or data (option epochs: 1 then, 2 now)" in \
        res.output


def test_folds_cross_validate_a_regression(tmp_path):
    res = run("search", "--data", "builtin:poly", "--model", "linear", "--test-split", 0.5, "--standardize",
              "--epochs", 30, "--batch-size", 20, "--lr", 0.05, "--folds", 4, "--grid", "l2=0,0.01",
              "--out-dir", tmp_path / "p")
    assert "scored by loss on a 4-fold cross-validation of 20 samples" in res.stdout
    assert "± " in res.stdout and "Test MSE" in res.stdout
    doc = json.loads((tmp_path / "p/trials.json").read_text())
    for t in doc["trials"]:
        assert len(t["fold_scores"]) == 4 and t["val_accuracy"] is None
        assert t["score"] == pytest.approx(np.mean(t["fold_scores"])) and t["std"] == pytest.approx(
            np.std(t["fold_scores"]))
    assert doc["trials"][0]["score"] <= doc["trials"][1]["score"] and doc["metric"] == "loss"
    assert len(load_model(tmp_path / "p/best.h5").metadata["split_train"]) == 20


def test_search_errors_and_a_diverging_trial(tmp_path, shapes):
    data = ["--data", shapes / "train.npz", "--test-data", shapes / "test.npz"]
    res = run("search", *data, "--grid", "lr=0.1", "--folds", 3, "--val-split", 0.1, ok=False)
    assert res.exit_code != 0 and "--folds and --val-split are alternatives" in res.output
    res = run("search", *data, "--grid", "lr=0.1", "--early-stop", 2, ok=False)
    assert res.exit_code == 2 and "No such option '--early-stop'" in res.output
    res = run("search", *data, "--grid", "dropout=0.2", "--model", "resnet20", ok=False)
    assert "--dropout: model resnet20 has no dropout rate to set" in res.output
    res = run("search", *data, *SMALL, "--optimizer", "sgd", "--grid", "lr=1e-2,1e12", "--out-dir", tmp_path / "d")
    table = res.stdout.split("Ranked by")[1].split("Wrote")[0].strip().splitlines()
    assert table[-1].startswith("2     1e+12  failed") and "lr=1e+12: failed (training diverged" in res.stdout
    assert json.loads((tmp_path / "d/trials.json").read_text())["final"]["params"] == {"lr": 0.01}
