"""Image collections streamed from disk (issue 15): class folders with given splits, list files, the input
pipeline (same batches whatever the workers, exact resume), bad files stopped at or skipped, packed HDF5
datasets and their checks, and train / evaluate / predict on all of them from the command line."""
from __future__ import annotations

import os
import shutil

import h5py
import numpy as np
import pytest
from PIL import Image

from numbacnn.data import DataError, Preprocessing, make_augment
from numbacnn.data.datasets import FileDataset, dataset_stats
from numbacnn.data.folders import is_image_list, scan_folder, scan_list
from numbacnn.data.packed import PackedDataset
from numbacnn.data.pipeline import BatchStream
from numbacnn.data.sources import ImageOptions
from numbacnn.data.splits import load_source
from numbacnn.io.hdf5 import load_model

CLASSES = ["cat", "dog", "fish"]
EXTS = ["jpg", "png", "bmp", "jpg", "webp"]


from cli_run import run  # noqa: E402  (tests/ is on sys.path)


def error_line(result, *fragments):
    assert result.exit_code != 0, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in result.output, result.output
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


def photo(label, i, rng):
    """A class-coloured image of a random size and aspect ratio with a bright square somewhere."""
    h, w = int(rng.integers(30, 50)), int(rng.integers(30, 60))
    a = rng.integers(0, 60, (h, w, 3)).astype(np.uint8)
    a[..., label] += 150
    y, x = rng.integers(0, h - 8), rng.integers(0, w - 8)
    a[y:y + 8, x:x + 8] = 250
    return a


def write_folder(root, counts, seed=0):
    """root/<part>/<class>/<i>.<ext> for counts {part: per-class count} ('' for no parts)."""
    rng = np.random.default_rng(seed)
    for part, n in counts.items():
        for label, name in enumerate(CLASSES):
            d = os.path.join(root, part, name)
            os.makedirs(d, exist_ok=True)
            for i in range(n):
                ext = EXTS[i % len(EXTS)]
                Image.fromarray(photo(label, i, rng)).save(os.path.join(d, f"{i:03d}.{ext}"))
    return root


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """photos/{train,val,test}/{cat,dog,fish}/ with 12/3/4 images each, a hidden file and a README."""
    root = write_folder(str(tmp_path_factory.mktemp("streams") / "photos"), {"train": 12, "val": 3, "test": 4})
    open(os.path.join(root, "train", "cat", ".DS_Store"), "w").write("x")
    open(os.path.join(root, "train", "README.txt"), "w").write("not an image")
    os.makedirs(os.path.join(root, "train", "dog", "more"))
    Image.fromarray(photo(1, 0, np.random.default_rng(9))).save(os.path.join(root, "train", "dog", "more", "x.png"))
    return root


@pytest.fixture(scope="module")
def trained(photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("streams_model") / "m.h5"
    res = run("train", "--data", photos, "--model", "lenet5", "--image-size", 24, "--color", "rgb", "--resize", 28,
              "--standardize", "--augment", "flip,zoom", "--epochs", 2, "--batch-size", 8, "--out", out)
    return out, res


# ----------------------------------------------------------------------------- scanning
def test_class_folders_with_given_splits(photos):
    c = scan_folder(photos)
    assert c.class_names == CLASSES and sorted(c.parts) == ["test", "train", "val"]
    assert [len(c.parts[p]) for p in ("train", "val", "test")] == [37, 9, 12]         # the nested x.png too
    assert c.paths[0] == os.path.join("train", "cat", "000.jpg") and ".DS_Store" not in "".join(c.paths)
    assert os.path.join("train", "dog", "more", "x.png") in c.paths
    assert np.bincount(c.labels[c.parts["test"]]).tolist() == [4, 4, 4]
    src = load_source(photos, ImageOptions(size=16, color="grey"))
    assert src.x.shape == (58, 1, 16, 16) and len(src.predefined_test) == 12 and len(src.predefined_val) == 9
    assert src.preprocessing == Preprocessing(16, 16, "grey")


def test_folder_fingerprint_from_names_classes_and_sizes(tmp_path):
    root = write_folder(str(tmp_path / "p"), {"": 3})
    fp = scan_folder(root).fingerprint()
    some = os.path.join(root, "cat", "000.jpg")
    os.utime(some, (1, 1))                                  # a copy without its times is the same data
    assert scan_folder(root).fingerprint() == fp
    shutil.copy(os.path.join(root, "dog", "000.jpg"), os.path.join(root, "cat", "000.jpg"))
    assert scan_folder(root).fingerprint() != fp            # replaced (other size)
    os.rename(os.path.join(root, "cat", "001.png"), os.path.join(root, "dog", "009.png"))
    assert len({scan_folder(root).fingerprint(), fp}) == 2


def test_a_long_scan_prints_progress_lines(tmp_path, monkeypatch):
    from numbacnn.data import folders
    root = write_folder(str(tmp_path / "p"), {"": 2})
    monkeypatch.setattr(folders, "PROGRESS_EVERY", 0.0)
    lines = []
    scan_folder(root, lines.append)
    assert lines[0].startswith(f"scanning {root}: 1 images so far") and len(lines) == 7
    assert lines[-1] == f"scanned {root}: 6 images in 3 classes"


def test_folder_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "loose").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "loose" / "a.png")
    (tmp_path / "mixed" / "train" / "a").mkdir(parents=True)
    (tmp_path / "mixed" / "test" / "a").mkdir(parents=True)
    (tmp_path / "mixed" / "extra").mkdir()
    (tmp_path / "noimg" / "a").mkdir(parents=True)
    (tmp_path / "noimg" / "a" / "x.txt").write_text("x")
    for name, msg in [("empty", "no class folders"), ("loose", "the images here have no class"),
                      ("mixed", "beside other folders"), ("noimg", "holds no image files")]:
        with pytest.raises(DataError, match=msg):
            scan_folder(tmp_path / name)


def test_list_files(tmp_path):
    write_folder(str(tmp_path / "p"), {"": 2})
    rows = [(f"p/{c}/00{i}.{EXTS[i]}", c) for c in CLASSES for i in range(2)]
    (tmp_path / "list.csv").write_text("path,label\n" + "".join(f"{p},{c}\n" for p, c in rows))
    (tmp_path / "list.txt").write_text("".join(f"{p} {CLASSES.index(c)}\n" for p, c in rows))
    a, b = scan_list(tmp_path / "list.csv"), scan_list(tmp_path / "list.txt")
    assert a.class_names == CLASSES and b.class_names == ["0", "1", "2"]
    assert a.labels.tolist() == b.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert is_image_list(tmp_path / "list.csv") and is_image_list(tmp_path / "list.txt")
    (tmp_path / "table.csv").write_text("x,target\n1,2\n")
    assert not is_image_list(tmp_path / "table.csv")                  # a regression table stays tabular
    (tmp_path / "bad.csv").write_text("path,label\np/cat/000.jpg,cat\nnope.jpg,dog\n")
    with pytest.raises(DataError, match=r"bad.csv: line 3: .*nope.jpg: no such file"):
        scan_list(tmp_path / "bad.csv")
    src = load_source(tmp_path / "list.csv", ImageOptions(size="8x12", color="rgb"))
    assert src.x.shape == (6, 3, 8, 12) and src.predefined_test is None
    res = run("train", "--data", tmp_path / "list.txt", "--image-size", 12, "--test-split", 0.5, "--epochs", 1,
              "--out", tmp_path / "m.h5")
    assert "Data " in res.stdout and "6 images (1, 12, 12), 3 classes" in res.stdout
    res = run("predict", tmp_path / "m.h5", tmp_path / "p" / "dog")
    assert res.stdout.count("p/dog/") == 2 and "(0." in res.stdout


# ----------------------------------------------------------------------------- the pipeline
def test_batch_stream_order_bounded_and_errors():
    seen = []

    def make(j):
        seen.append(j)
        if j == 5:
            raise DataError("x.jpg: cannot decode")
        return j

    for workers in (0, 1, 3):
        with BatchStream(lambda j: j * j, 20, workers, prefetch=4) as s:
            assert list(s) == [j * j for j in range(20)]
        seen.clear()
        with pytest.raises(DataError, match="x.jpg"):
            with BatchStream(make, 50, workers, prefetch=4) as s:
                for _ in s:
                    pass
        assert max(seen) < 5 + 4 + 1                       # nothing made beyond the prefetch window


def test_same_batches_and_weights_whatever_the_workers(photos):
    from numbacnn.models import build_model
    from numbacnn.train import Trainer
    src = load_source(photos, ImageOptions(size=16, color="rgb"))
    data = src.x[src.predefined_test]
    weights = []
    for workers in (0, 2):
        model = build_model("lenet5", input_shape=(3, 16, 16), num_classes=3).build("cpu", seed=0)
        Trainer(model, batch_size=5, augment=make_augment("flip,zoom,noise"), seed=3, workers=workers).fit(
            data, None, 2)
        weights.append(model.get_weights())
    assert all(np.array_equal(weights[0][k][p], weights[1][k][p]) for k in weights[0] for p in weights[0][k])
    mean, std = dataset_stats(data)
    x = data.batch(np.arange(len(data)))[0]
    assert np.allclose(mean, x.mean(axis=(0, 2, 3)), atol=1e-5) and np.allclose(std, x.std(axis=(0, 2, 3)), atol=1e-5)


def test_decoded_images_are_kept_where_they_fit(photos, monkeypatch):
    """A folder dataset decodes each image once and then serves it from memory (the same bits; every batch still
    augmented anew by the pipeline); with NUMBACNN_IMAGE_CACHE_MIB too small for all of them, or cache=False,
    every read decodes again."""
    from numbacnn import config
    from numbacnn.data import datasets
    coll = scan_folder(os.path.join(photos, "train"))
    decodes = []
    real = datasets.decode
    monkeypatch.setattr(datasets, "decode", lambda p, prep: decodes.append(p) or real(p, prep))
    prep, idx = Preprocessing(16, 16, "rgb"), np.arange(len(coll.paths))
    kept = FileDataset(coll.root, coll.paths, coll.labels, prep)
    first = kept.batch(idx)
    assert len(decodes) == len(idx)
    again = kept[idx[::-1]].batch(np.arange(len(idx)))          # a Subset reads through to the kept images
    assert len(decodes) == len(idx)
    np.testing.assert_array_equal(again[0], first[0][::-1])
    np.testing.assert_array_equal(again[1], first[1][::-1])
    for ds in (FileDataset(coll.root, coll.paths, coll.labels, prep, cache=False),
               monkeypatch.setattr(config, "IMAGE_CACHE_MIB", 3 * 16 * 16 * (len(idx) - 1) / 2**20)
               or FileDataset(coll.root, coll.paths, coll.labels, prep)):
        decodes.clear()
        np.testing.assert_array_equal(ds.batch(idx)[0], first[0])
        np.testing.assert_array_equal(ds.batch(idx)[0], first[0])
        assert len(decodes) == 2 * len(idx)


# ----------------------------------------------------------------------------- the command line
def test_train_on_a_folder_records_preprocessing(trained, photos):
    out, res = trained
    assert "Data " in res.stdout and "3 classes; training 37, validation 9 (its own val part); test 12 images of " \
                                      "its own test part" in res.stdout
    assert "rgb, shorter side resized to 28, centre 24x24 crop" in res.stdout
    meta = load_model(out).metadata
    assert meta["class_names"] == CLASSES
    assert meta["preprocessing"] == {"size": [24, 24], "color": "rgb", "resize": 28}
    assert meta["mean"].shape == (3,) and meta["train_options"]["image_size"] == "24"
    res = run("evaluate", out)
    assert "test split: 12 images held out at training" in res.stdout and "cat " in res.stdout


def test_predict_applies_the_recorded_preprocessing(trained, photos, tmp_path):
    out, _ = trained
    files = [os.path.join(photos, "test", "dog", "001.png"), os.path.join(photos, "test", "fish", "002.bmp")]
    res = run("predict", out, *files, os.path.join(photos, "test", "cat"), "--save-outputs", tmp_path / "o.npz")
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith(photos)]
    assert len(lines) == 6 and any(n in lines[0] for n in CLASSES)          # class names, not numbers
    got = np.load(tmp_path / "o.npz")["inputs"]
    meta = load_model(out).metadata
    ds = FileDataset("/", [os.path.abspath(f) for f in files], [1, 2], Preprocessing(24, 24, "rgb", 28))
    want = ds.normalized(meta["mean"], meta["std"]).batch([0, 1])[0]       # what evaluate and training read
    assert np.array_equal(got[:2], want)
    rough = np.asarray(Image.open(files[0]).convert("RGB").resize((24, 24)), np.float32) / 255   # no crop, no std
    assert not np.allclose(got[0], rough.transpose(2, 0, 1), atol=0.05)


def test_resume_on_a_streamed_dataset_is_bit_identical(photos, tmp_path):
    common = ["--data", photos, "--image-size", 16, "--augment", "flip,contrast,zoom", "--batch-size", 8,
              "--val-split", 0.2, "--workers", 2]
    run("train", *common, "--epochs", 2, "--out", tmp_path / "two.h5")
    run("train", *common, "--epochs", 1, "--out", tmp_path / "one.h5")
    res = run("train", "--resume", tmp_path / "one.h5", "--epochs", 2, "--workers", 0)
    assert "Resuming" in res.stdout
    a, b = load_model(tmp_path / "two.h5").model.get_weights(), load_model(tmp_path / "one.h5").model.get_weights()
    assert all(np.array_equal(a[k][p], b[k][p]) for k in a for p in a[k])


def test_bad_images_stop_the_run_or_are_skipped(tmp_path):
    root = write_folder(str(tmp_path / "p"), {"": 6})
    good = os.path.join(root, "dog", "000.jpg")
    data = open(good, "rb").read()
    open(os.path.join(root, "cat", "trunc.jpg"), "wb").write(data[:len(data) // 3])
    open(os.path.join(root, "fish", "junk.png"), "wb").write(b"\x89PNG\r\n\x1a\n" + bytes(40))
    args = ["train", "--data", root, "--image-size", 16, "--epochs", 1, "--batch-size", 4, "--out", tmp_path / "m.h5"]
    line = error_line(run(*args, ok=False), "--skip-bad-images")
    assert "trunc.jpg" in line or "junk.png" in line
    res = run(*args, "--skip-bad-images")
    skipped = [ln for ln in res.stdout.splitlines() if ln.startswith("skipped ")]
    assert len(skipped) == 2 and "bad image(s) so far" in skipped[-1]
    assert "Test accuracy" in res.stdout
    error_line(run("evaluate", tmp_path / "m.h5", "--data", root, "--split", "all", ok=False), "--skip-bad-images")
    res = run("evaluate", tmp_path / "m.h5", "--data", root, "--split", "all", "--skip-bad-images")
    assert "on 18 samples" in res.stdout and res.stdout.count("skipped ") == 2     # 20 files, 2 unreadable


def test_pack_then_train_and_evaluate_from_the_packed_file(photos, tmp_path):
    out = tmp_path / "photos.h5"
    res = run("pack", photos, out, "--size", 20, "--resize", 24)
    assert "Wrote" in res.stdout and "58 images" in res.stdout and "(train 37, val 9, test 12)" in res.stdout
    packed = PackedDataset(out)
    files = load_source(photos, ImageOptions(fixed=Preprocessing(20, 20, "rgb", 24)))
    idx = np.array([5, 0, 57, 23, 23])
    assert np.array_equal(packed.batch(idx)[0], files.x.batch(idx)[0])        # the same pixels, no decoding
    assert packed.class_names == CLASSES and len(packed.parts["val"]) == 9
    run("train", "--data", out, "--epochs", 1, "--batch-size", 8, "--out", tmp_path / "m.h5")
    assert load_model(tmp_path / "m.h5").metadata["preprocessing"] == {"size": [20, 20], "color": "rgb", "resize": 24}
    res = run("evaluate", tmp_path / "m.h5", "--data", photos, "--split", "test")   # the folder, read the same way
    assert "its own test part, 12 images" in res.stdout
    error_line(run("train", "--data", out, "--image-size", 32, "--out", tmp_path / "x.h5", ok=False),
               "packed as rgb, shorter side resized to 24, centre 20x20 crop")
    error_line(run("pack", photos, out, "--size", 20, ok=False), "exists")


def test_a_damaged_preprocessing_record_is_refused_on_load(trained, tmp_path):
    import json

    from numbacnn.io import guard
    out, _ = trained
    bad = tmp_path / "bad.h5"
    shutil.copy(out, bad)
    with h5py.File(bad, "r+") as f:
        f["metadata"].attrs["preprocessing"] = json.dumps({"size": [32, 32], "color": "rgb", "resize": None})
        guard.seal(f)                                   # checksums right: the content check is what refuses it
    error_line(run("predict", bad, out, ok=False), "bad.h5", "metadata preprocessing", "(3, 24, 24)")


def _repack(src, dst, **kw):
    """Copy a packed file with h5py, changing one thing."""
    with h5py.File(src, "r") as f, h5py.File(dst, "w") as g:
        for k, v in f.attrs.items():
            g.attrs[k] = v
        if kw.get("labels", True):
            g.create_dataset("labels", data=f["labels"][()])
        g.create_dataset("images", data=f["images"][()], **kw.get("images", {}))
        if "extra" in kw:
            kw["extra"](g)


def test_packed_files_are_checked_before_reading(photos, tmp_path):
    good = tmp_path / "good.h5"
    run("pack", photos, good, "--size", 8)
    _repack(good, tmp_path / "gzip.h5", images={"compression": "gzip", "chunks": (4, 3, 8, 8)})
    _repack(good, tmp_path / "link.h5", labels=False,
            extra=lambda g: g.__setitem__("labels", h5py.ExternalLink("/etc/x.h5", "/labels")))
    _repack(good, tmp_path / "more.h5", extra=lambda g: g.create_group("more"))
    _repack(good, tmp_path / "vlen.h5", extra=lambda g: g.attrs.__setitem__("note", "a variable-length string"))
    _repack(good, tmp_path / "chunks.h5", images={"chunks": (4, 3, 8, 4)})
    data = good.read_bytes()
    (tmp_path / "short.h5").write_bytes(data[:len(data) - 4000])
    with h5py.File(tmp_path / "labels.h5", "w") as g:
        with h5py.File(good, "r") as f:
            for k, v in f.attrs.items():
                g.attrs[k] = v
            g.create_dataset("images", data=f["images"][()])
            g.create_dataset("labels", data=f["labels"][()] + 5)
    cases = [("gzip.h5", "filters"), ("link.h5", "external link"), ("more.h5", "/images and /labels only"),
             ("vlen.h5", "fixed-length string"),
             ("chunks.h5", "whole images"), ("short.h5", "packed"), ("labels.h5", "class names")]
    for name, msg in cases:
        with pytest.raises(DataError, match=msg) as e:
            PackedDataset(tmp_path / name)
        assert name in str(e.value)
    run("train", "--epochs", 1, "--limit", 50, "--out", tmp_path / "model.h5")
    error_line(run("train", "--data", tmp_path / "model.h5", "--out", tmp_path / "x.h5", ok=False),
               "model.h5", "not a packed dataset")
