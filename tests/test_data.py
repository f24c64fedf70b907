"""Datasets, loaders and augmentation (numbacnn/data; image files: test_images.py, folders and packed files:
test_data_streams.py)."""
import gzip
import os
import struct

import numpy as np
import pytest

from numbacnn.data import (BUILTIN_CLASS_NAMES, DataError, channel_stats, load_dataset, load_splits, make_augment,
                           make_shapes, read_idx, standardize, train_test_split)

MNIST_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "mnist")


# ----------------------------------------------------------------------------- builtin

def test_builtin_shapes_range_and_balance():
    x, y, names = make_shapes(205, seed=3)
    assert x.shape == (205, 1, 28, 28) and x.dtype == np.float32
    assert y.shape == (205,) and y.dtype == np.int64
    assert names == BUILTIN_CLASS_NAMES and len(names) == 10
    assert 0.0 <= x.min() and x.max() <= 1.0
    counts = np.bincount(y, minlength=10)
    assert counts.min() == 20 and counts.max() == 21
    assert np.allclose(x * 255, np.rint(x * 255), atol=1e-3)      # 8-bit quantised
    xr, yr, _ = make_shapes(30, seed=3, rgb=True)
    assert xr.shape == (30, 3, 32, 32)
    assert make_shapes(10, size=20)[0].shape == (10, 1, 20, 20)


def test_builtin_is_deterministic_and_seeded():
    a, ya, _ = make_shapes(50, seed=7)
    b, yb, _ = make_shapes(50, seed=7)
    c, yc, _ = make_shapes(50, seed=8)
    assert np.array_equal(a, b) and np.array_equal(ya, yb)
    assert not np.array_equal(a, c)


def test_builtin_needs_more_than_a_linear_model():
    """A ridge-regression classifier is far above chance, yet far from perfect."""
    x, y, _ = make_shapes(3000, seed=1)
    a = np.c_[x.reshape(len(x), -1), np.ones(len(x))]
    onehot = np.eye(10)[y]
    w = np.linalg.solve(a[:2400].T @ a[:2400] + np.eye(a.shape[1]), a[:2400].T @ onehot[:2400])
    acc = np.mean((a[2400:] @ w).argmax(1) == y[2400:])
    assert 0.3 < acc < 0.9


def test_builtin_bad_arguments():
    with pytest.raises(ValueError, match="n must be"):
        make_shapes(0)
    with pytest.raises(ValueError, match="size"):
        make_shapes(5, size=8)


# ----------------------------------------------------------------------------- IDX

def write_idx(path, arr, type_code=0x08):
    arr = np.asarray(arr)
    dt = {0x08: ">u1", 0x0B: ">i2", 0x0D: ">f4"}[type_code]
    data = bytes([0, 0, type_code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.astype(dt).tobytes()
    if str(path).endswith(".gz"):
        data = gzip.compress(data)
    with open(path, "wb") as f:
        f.write(data)


def make_idx_dir(d, n_train=12, n_test=8, gz=True, with_train=True):
    rng = np.random.default_rng(0)
    ext = ".gz" if gz else ""
    parts = {"t10k": n_test, "train": n_train} if with_train else {"t10k": n_test}
    data = {}
    for prefix, n in parts.items():
        imgs = rng.integers(0, 256, (n, 6, 5), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        write_idx(d / f"{prefix}-images-idx3-ubyte{ext}", imgs)
        write_idx(d / f"{prefix}-labels-idx1-ubyte{ext}", labels)
        data[prefix] = (imgs, labels)
    return data


@pytest.mark.parametrize("gz", [True, False])
def test_idx_directory_train_and_test(tmp_path, gz):
    data = make_idx_dir(tmp_path, gz=gz)
    x, y, names = load_dataset(str(tmp_path), split="train")
    assert x.shape == (12, 1, 6, 5) and x.dtype == np.float32
    assert np.allclose(x[:, 0] * 255, data["train"][0])
    assert np.array_equal(y, data["train"][1])
    xt, yt, _ = load_dataset(str(tmp_path), split="test")
    assert np.array_equal(yt, data["t10k"][1])
    xa, ya, _ = load_dataset(str(tmp_path))
    assert xa.shape[0] == 20 and np.array_equal(ya, np.r_[data["train"][1], data["t10k"][1]])
    assert names == [str(i) for i in range(int(ya.max()) + 1)]
    s = load_splits(str(tmp_path))
    assert s.predefined and s.x_train.shape[0] == 12 and s.x_test.shape[0] == 8
    assert s.input_shape == (1, 6, 5)


def test_idx_test_pair_alone_is_split(tmp_path):
    make_idx_dir(tmp_path, n_test=30, with_train=False)
    s = load_splits(str(tmp_path), test_fraction=0.2, seed=1)
    assert not s.predefined
    assert s.x_train.shape[0] + s.x_test.shape[0] == 30
    with pytest.raises(DataError, match="has no train part"):
        load_dataset(str(tmp_path), split="train")


def test_read_idx_dtypes(tmp_path):
    write_idx(tmp_path / "a.idx", np.arange(6).reshape(2, 3), 0x0B)
    write_idx(tmp_path / "b.idx", np.array([0.5, -1.0]), 0x0D)
    assert read_idx(str(tmp_path / "a.idx")).tolist() == [[0, 1, 2], [3, 4, 5]]
    assert read_idx(str(tmp_path / "b.idx")).tolist() == [0.5, -1.0]


def test_idx_errors(tmp_path):
    make_idx_dir(tmp_path, gz=False)
    img = tmp_path / "train-images-idx3-ubyte"
    good = img.read_bytes()
    img.write_bytes(b"\x01\x02" + good[2:])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte: not an IDX file \(bad magic"):
        load_dataset(str(tmp_path))
    img.write_bytes(good[:-7])
    with pytest.raises(DataError, match="size mismatch"):
        load_dataset(str(tmp_path))
    img.write_bytes(good[:6])
    with pytest.raises(DataError, match="truncated IDX header"):
        load_dataset(str(tmp_path))
    write_idx(img, np.zeros((12, 30), np.uint8))
    with pytest.raises(DataError, match="must have 3 dimensions"):
        load_dataset(str(tmp_path))
    write_idx(img, np.zeros((11, 6, 5), np.uint8))
    with pytest.raises(DataError, match="11 labels|12 labels for 11 images"):
        load_dataset(str(tmp_path))
    img.unlink()
    with pytest.raises(DataError, match="no matching train images"):
        load_dataset(str(tmp_path))


def test_idx_corrupt_gzip(tmp_path):
    make_idx_dir(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz: cannot read"):
        load_dataset(str(tmp_path))
    with pytest.raises(DataError, match="file not found"):
        read_idx(str(tmp_path / "missing.gz"))


@pytest.mark.skipif(not os.path.isdir(MNIST_DIR), reason="MNIST test set not available")
def test_real_mnist_test_set():
    x, y, names = load_dataset(MNIST_DIR)
    assert x.shape == (10000, 1, 28, 28) and names == [str(i) for i in range(10)]
    assert np.bincount(y).tolist()[:2] == [980, 1135]
    assert y[:5].tolist() == [7, 2, 1, 0, 4]


# ----------------------------------------------------------------------------- CIFAR-10

def write_cifar(d, n_per_batch=(4, 3), n_test=5, names=True):
    rng = np.random.default_rng(1)
    out = {}
    files = [(f"data_batch_{i + 1}.bin", n) for i, n in enumerate(n_per_batch)] + [("test_batch.bin", n_test)]
    for fname, n in files:
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        pix = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        (d / fname).write_bytes(np.c_[labels, pix].astype(np.uint8).tobytes())
        out[fname] = (labels, pix)
    if names:
        (d / "batches.meta.txt").write_text("\n".join(f"class{i}" for i in range(10)) + "\n\n")
    return out


def test_cifar_directory(tmp_path):
    data = write_cifar(tmp_path)
    s = load_splits(str(tmp_path))
    assert s.predefined and s.x_train.shape == (7, 3, 32, 32) and s.x_test.shape == (5, 3, 32, 32)
    assert s.class_names == [f"class{i}" for i in range(10)]
    labels, pix = data["data_batch_1.bin"]
    assert np.array_equal(s.y_train[:4], labels)
    assert np.allclose(s.x_train[0] * 255, pix[0].reshape(3, 32, 32))
    # the archive's own folder name is found one level down
    nested = tmp_path / "outer"
    (nested / "cifar-10-batches-bin").mkdir(parents=True)
    write_cifar(nested / "cifar-10-batches-bin", names=False)
    x, y, names = load_dataset(str(nested))
    assert x.shape == (12, 3, 32, 32) and names == [str(i) for i in range(10)]


def test_cifar_errors(tmp_path):
    write_cifar(tmp_path)
    (tmp_path / "data_batch_2.bin").write_bytes(b"\x00" * 3000)
    with pytest.raises(DataError, match="data_batch_2.bin: not a CIFAR-10 batch"):
        load_dataset(str(tmp_path))
    (tmp_path / "data_batch_2.bin").write_bytes(b"\x0c" + b"\x00" * 3072)
    with pytest.raises(DataError, match="label 12 out of range"):
        load_dataset(str(tmp_path))
    (tmp_path / "data_batch_2.bin").unlink()
    (tmp_path / "batches.meta.txt").write_text("a\nb\n")
    with pytest.raises(DataError, match="expected 10 class names"):
        load_dataset(str(tmp_path))


# ----------------------------------------------------------------------------- NPZ

def test_npz_variants(tmp_path):
    p = tmp_path / "a.npz"
    imgs = np.random.default_rng(0).integers(0, 256, (6, 5, 4), dtype=np.uint8)
    np.savez(p, images=imgs, labels=np.array([0, 1, 2, 0, 1, 2]), class_names=np.array(["a", "b", "c"]))
    x, y, names = load_dataset(str(p))
    assert x.shape == (6, 1, 5, 4) and np.allclose(x[:, 0] * 255, imgs) and names == ["a", "b", "c"]
    np.savez(p, images=imgs.astype(np.float64).reshape(6, 1, 5, 4), labels=np.arange(6.0))
    x, y, names = load_dataset(str(p))
    assert np.allclose(x[:, 0] * 255, imgs, atol=1e-4) and y.dtype == np.int64 and len(names) == 6
    f = np.random.default_rng(1).random((4, 3, 2, 2)).astype(np.float32)
    np.savez(p, images=f, labels=np.zeros(4, np.int32))
    assert np.array_equal(load_dataset(str(p))[0], f)


@pytest.mark.parametrize("arrays, message", [
    (dict(images=np.zeros((3, 4, 4), np.uint8)), "missing array.*labels"),
    (dict(pixels=np.zeros((3, 4, 4)), labels=np.zeros(3, int)), "missing array.*images"),
    (dict(images=np.zeros((3, 16), np.uint8), labels=np.zeros(3, int)), "images must have shape"),
    (dict(images=np.zeros((3, 4, 4), np.uint8), labels=np.zeros(2, int)), "2 labels for 3 images"),
    (dict(images=np.zeros((3, 4, 4), np.uint8), labels=np.zeros((3, 1), int)), "labels must have shape"),
    (dict(images=np.zeros((3, 4, 4), np.uint8), labels=np.array([0, -1, 2])), "labels must be >= 0"),
    (dict(images=np.zeros((3, 4, 4), np.uint8), labels=np.array([0.5, 1, 2])), "labels must be integers"),
    (dict(images=np.zeros((3, 8, 8, 3), np.uint8), labels=np.zeros(3, int)), "channels-last"),
    (dict(images=np.full((3, 4, 4), 300.0), labels=np.zeros(3, int)), r"\[0, 1\] or \[0, 255\]"),
    (dict(images=np.full((3, 4, 4), np.nan), labels=np.zeros(3, int)), "NaN"),
    (dict(images=np.full((3, 4, 4), 256, np.int32), labels=np.zeros(3, int)), r"\[0, 255\]"),
    (dict(images=np.zeros((3, 4, 4), np.uint8), labels=np.array([0, 1, 2]), class_names=np.array(["a"])),
     "1 class_names but labels go up to 2"),
])
def test_npz_errors(tmp_path, arrays, message):
    p = tmp_path / "bad.npz"
    np.savez(p, **arrays)
    with pytest.raises(DataError, match=f"bad.npz: .*{message}"):
        load_dataset(str(p))


def test_npz_unreadable(tmp_path):
    p = tmp_path / "broken.npz"
    p.write_bytes(b"not a zip file")
    with pytest.raises(DataError, match="broken.npz: cannot read as .npz"):
        load_dataset(str(p))


# ----------------------------------------------------------------------------- entry point, splits

def test_load_dataset_specs_and_errors(tmp_path):
    x, y, names = load_dataset("builtin:rgb", n=20, seed=2)
    assert x.shape == (20, 3, 32, 32)
    assert np.array_equal(load_dataset("builtin", n=20, seed=2)[0], load_dataset("builtin:gray", n=20, seed=2)[0])
    for spec, message in [("builtin:cmyk", "unknown built-in"), (str(tmp_path / "nope"), "no such file"),
                          (str(tmp_path), "neither MNIST-style IDX files .* nor CIFAR-10")]:
        with pytest.raises(DataError, match=message):
            load_dataset(spec)
    (tmp_path / "data.txt").write_text("1,2\n")
    with pytest.raises(DataError, match="data.txt: unknown dataset file type"):
        load_dataset(str(tmp_path / "data.txt"))
    with pytest.raises(DataError, match="unknown split 'valid'"):
        load_dataset("builtin", split="valid", n=10)
    with pytest.raises(DataError, match="builtin: has no test part"):
        load_dataset("builtin", split="test", n=10)
    assert issubclass(DataError, ValueError)


def test_train_test_split_stratified_and_seeded():
    y = np.repeat(np.arange(4), [10, 20, 30, 40])
    x = np.arange(100, dtype=np.float32)[:, None, None, None] * np.ones((1, 1, 2, 2), np.float32)
    xtr, ytr, xte, yte = train_test_split(x, y, 0.2, seed=5)
    assert np.bincount(yte).tolist() == [2, 4, 6, 8]
    ids = np.r_[xtr[:, 0, 0, 0], xte[:, 0, 0, 0]].astype(int)
    assert sorted(ids.tolist()) == list(range(100))                  # disjoint and complete
    assert np.array_equal(y[xtr[:, 0, 0, 0].astype(int)], ytr)      # labels follow images
    again = train_test_split(x, y, 0.2, seed=5)
    assert np.array_equal(again[0], xtr) and np.array_equal(again[3], yte)
    other = train_test_split(x, y, 0.2, seed=6)
    assert not np.array_equal(other[3], yte) or not np.array_equal(other[2], xte)
    plain = train_test_split(x, y, 0.25, seed=0, stratify=False)
    assert plain[2].shape[0] == 25
    with pytest.raises(ValueError, match="test_fraction"):
        train_test_split(x, y, 1.0)
    with pytest.raises(ValueError, match="100 images but 99 labels"):
        train_test_split(x, y[:-1], 0.2)
    with pytest.raises(ValueError, match="empty part"):
        train_test_split(x[:2], y[:2], 0.1)


def test_standardisation_uses_training_statistics():
    s = load_splits("builtin:rgb", n=60, seed=0, standardize_images=True)
    raw = load_splits("builtin:rgb", n=60, seed=0)
    assert s.mean.shape == (3,) and s.std.shape == (3,) and raw.mean is None
    mean, std = channel_stats(raw.x_train)
    assert np.allclose(s.mean, mean) and np.allclose(s.std, std)
    assert np.allclose(s.x_train.mean(axis=(0, 2, 3)), 0, atol=1e-4)
    assert np.allclose(s.x_train.std(axis=(0, 2, 3)), 1, atol=1e-3)
    assert np.allclose(s.x_test, (raw.x_test - mean[:, None, None]) / std[:, None, None], atol=1e-5)
    const = np.full((2, 1, 3, 3), 0.5, np.float32)
    m, sd = channel_stats(const)
    assert sd[0] == 1.0 and np.allclose(standardize(const, m, sd), 0)
    with pytest.raises(ValueError, match="channels"):
        standardize(const, [0, 0], [1, 1])


# ----------------------------------------------------------------------------- augmentation

def test_augment_transforms():
    rng = np.random.default_rng(0)
    x = rng.random((6, 3, 8, 8)).astype(np.float32)
    x0 = x.copy()
    assert np.array_equal(make_augment("flip", flip_p=1.0)(x, rng), x[..., ::-1])
    assert np.array_equal(make_augment("flip", flip_p=0.0)(x, rng), x)
    c = make_augment("contrast", contrast=0.5)(x, rng)
    assert np.allclose(c.mean(axis=(2, 3)), x.mean(axis=(2, 3)), atol=1e-5)
    ratio = c.std(axis=(2, 3)) / x.std(axis=(2, 3))
    assert np.all((ratio > 0.5 - 1e-4) & (ratio < 1.5 + 1e-4))
    assert np.allclose(ratio, ratio[:, :1], atol=1e-4)                 # one factor per image
    assert np.allclose(make_augment("zoom", zoom=0.0)(x, rng), x, atol=1e-6)
    z = make_augment("zoom", zoom=0.5)(x, rng)
    assert z.shape == x.shape and z.dtype == np.float32
    assert z.min() >= x.min() - 1e-6 and z.max() <= x.max() + 1e-6   # bilinear: convex combinations
    assert np.allclose(make_augment("zoom")(np.full((2, 1, 5, 5), 0.7, np.float32), rng), 0.7)
    nz = make_augment("noise", noise_std=0.1)(np.zeros((50, 1, 20, 20), np.float32), rng)
    assert abs(nz.std() - 0.1) < 0.005 and nz.dtype == np.float32
    assert np.array_equal(x, x0)                                       # input untouched


def test_bilinear_sampling_equals_the_per_pixel_formula():
    """sample_bilinear (each touched source row interpolated once, then rows blended) equals the per-pixel blend
    of four neighbours (to float32 rounding): clamped borders, one-pixel images, zooms in and out."""
    from numbacnn.data.augment import sample_bilinear

    rng = np.random.default_rng(5)
    for n, c, h, w, ho, wo in [(2, 3, 7, 9, 7, 9), (1, 1, 1, 5, 3, 4), (3, 2, 6, 1, 2, 2), (1, 2, 12, 10, 20, 3)]:
        x = rng.standard_normal((n, c, h, w)).astype(np.float32)
        ys = rng.uniform(-1.5, h + 0.5, (n, ho))
        xs = rng.uniform(-1.5, w + 0.5, (n, wo))
        expect = np.empty((n, c, ho, wo), np.float32)
        for b in range(n):
            yc, xc = np.clip(ys[b], 0, h - 1.0), np.clip(xs[b], 0, w - 1.0)
            y0 = np.minimum(np.floor(yc).astype(int), max(h - 2, 0))
            x0 = np.minimum(np.floor(xc).astype(int), max(w - 2, 0))
            y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
            fy = (yc - y0).astype(np.float32).astype(np.float64)[:, None]
            fx = (xc - x0).astype(np.float32).astype(np.float64)[None, :]
            img = x[b].astype(np.float64)
            top = img[:, y0][:, :, x0] * (1 - fx) + img[:, y0][:, :, x1] * fx
            bottom = img[:, y1][:, :, x0] * (1 - fx) + img[:, y1][:, :, x1] * fx
            expect[b] = top * (1 - fy) + bottom * fy
        np.testing.assert_allclose(sample_bilinear(x, ys, xs), expect, rtol=1e-6, atol=1e-6)


def test_augment_zoom_crops_a_window():
    """Zooming an image with one bright pixel in the middle spreads it (magnifies)."""
    x = np.zeros((1, 1, 21, 21), np.float32)
    x[0, 0, 8:13, 8:13] = 1.0
    z = make_augment("zoom", zoom=0.5)(x, np.random.default_rng(3))
    assert (z > 0.5).sum() > (x > 0.5).sum()


def test_make_augment_composition_and_errors():
    x = np.random.default_rng(1).random((4, 1, 6, 6)).astype(np.float32)
    aug = make_augment(" flip, contrast ,zoom,noise ")
    assert aug.names == ["flip", "contrast", "zoom", "noise"]
    a = aug(x, np.random.default_rng(9))
    b = aug(x, np.random.default_rng(9))
    assert np.array_equal(a, b) and not np.allclose(a, x)
    ident = make_augment("")(x, np.random.default_rng(0))
    assert np.array_equal(ident, x) and ident is not x
    with pytest.raises(ValueError, match="unknown augmentation 'rotate'"):
        make_augment("flip,rotate")
    with pytest.raises(ValueError, match="unknown augmentation parameter 'sigma'"):
        make_augment("noise", sigma=0.1)
    with pytest.raises(ValueError, match="zoom must be"):
        make_augment("zoom", zoom=1.0)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        aug(x[0], np.random.default_rng(0))


def test_the_builtin_dataset_is_drawn_once_then_read_from_the_cache(tmp_path, monkeypatch):
    """cached_shapes keeps the drawn images (8-bit) in NUMBACNN_CACHE_DIR: the same values as make_shapes, read back
    without drawing; a damaged cache file is drawn again and replaced."""
    from numbacnn import config
    from numbacnn.data import builtin

    monkeypatch.setattr(config, "CACHE_DIR", str(tmp_path))
    x, y, names = builtin.cached_shapes(50, seed=3)
    ref = builtin.make_shapes(50, seed=3)
    assert np.array_equal(x, ref[0]) and np.array_equal(y, ref[1]) and names == ref[2]
    (path,) = tmp_path.glob("shapes-*-50-3-gray-28.npz")

    def no_drawing(*args, **kwargs):
        raise AssertionError("drawn again")
    monkeypatch.setattr(builtin, "make_shapes", no_drawing)
    x2, y2, _ = builtin.cached_shapes(50, seed=3)
    assert np.array_equal(x2, x) and np.array_equal(y2, y)
    monkeypatch.undo()
    monkeypatch.setattr(config, "CACHE_DIR", str(tmp_path))
    path.write_bytes(path.read_bytes()[:100])                  # truncated
    x3, _, _ = builtin.cached_shapes(50, seed=3)
    assert np.array_equal(x3, x) and path.stat().st_size > 100
