"""Dataset loaders: MNIST-style IDX, CIFAR-10 binary batches, ``.npz``, built-in.

Every loader returns ``(images, labels, class_names)``: images ``(N, C, H, W)``
float32 scaled to [0, 1], labels ``(N,)`` int64, class names a list of str.
Any problem with the input raises ``DataError`` (a ``ValueError``) whose
message is one line naming the file or spec and what is wrong.

``load_dataset(spec)`` picks the loader from the spec::

    builtin | builtin:gray | builtin:rgb    the generated shapes dataset (builtin.py)
    DIR with *-images-idx3-ubyte[.gz]       MNIST-style IDX (train and/or test pair)
    DIR with data_batch_*.bin/test_batch.bin CIFAR-10 binary version
    FILE.npz with arrays images, labels     (optional class_names)

``load_splits(spec)`` returns a ``Splits`` with a train and a test part: the
source's own split where it has one, else a seeded stratified split; with
``standardize=True`` images are standardised per channel using the mean and
standard deviation of the training part, which ``Splits`` keeps so that they
can be stored with the model and applied again at prediction time.
"""
from __future__ import annotations

import gzip
import math
import os
import zipfile
import zlib
from dataclasses import dataclass

import numpy as np

from ..io import limits
from .builtin import cached_shapes

#: labels must lie below this (a label of 2**31 - 1 would otherwise make as many class names)
MAX_CLASSES = 1 << 20


class DataError(ValueError):
    """A dataset or image that cannot be used; the message names the file or spec."""


# ----------------------------------------------------------------------------- checks

def as_images(images, where: str) -> np.ndarray:
    """Validate and convert an image array to ``(N, C, H, W)`` float32 in [0, 1].

    Accepts ``(N, H, W)`` or ``(N, C, H, W)``; uint8 (divided by 255), other
    integers in [0, 255] (same), floats in [0, 1] (kept) or [0, 255] (divided).
    """
    a = np.asarray(images)
    if a.ndim == 3:
        a = a[:, None]
    if a.ndim != 4:
        raise DataError(f"{where}: images must have shape (N, H, W) or (N, C, H, W), got {a.shape}")
    if a.shape[1] not in (1, 2, 3, 4) and a.shape[3] in (1, 3):
        raise DataError(f"{where}: images of shape {a.shape} look channels-last; store them as (N, C, H, W)")
    if min(a.shape) == 0:
        raise DataError(f"{where}: images array is empty, shape {a.shape}")
    if a.dtype == np.uint8:
        return a.astype(np.float32) / np.float32(255.0)
    if a.dtype.kind in "iu":
        lo, hi = int(a.min()), int(a.max())
        if lo < 0 or hi > 255:
            raise DataError(f"{where}: integer images must lie in [0, 255], found [{lo}, {hi}]")
        return a.astype(np.float32) / np.float32(255.0)
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)):
            raise DataError(f"{where}: images contain NaN or infinite values")
        lo, hi = float(a.min()), float(a.max())
        if lo < 0.0 or hi > 255.0:
            raise DataError(f"{where}: float images must lie in [0, 1] or [0, 255], found [{lo:g}, {hi:g}]")
        a = a.astype(np.float32)
        return a / np.float32(255.0) if hi > 1.0 else a
    raise DataError(f"{where}: images have unsupported dtype {a.dtype}")


def as_labels(labels, n: int, where: str) -> np.ndarray:
    """Validate labels: ``(n,)`` non-negative integers (integral floats accepted) -> int64."""
    y = np.asarray(labels)
    if y.ndim != 1:
        raise DataError(f"{where}: labels must have shape (N,), got {y.shape}")
    if y.shape[0] != n:
        raise DataError(f"{where}: {y.shape[0]} labels for {n} images")
    if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
        y = y.astype(np.int64)
    if y.dtype.kind not in "iu":
        raise DataError(f"{where}: labels must be integers, got dtype {y.dtype}")
    if y.size and y.min() < 0:
        raise DataError(f"{where}: labels must be >= 0, found {int(y.min())}")
    if y.size and int(y.max()) >= MAX_CLASSES:
        present = np.unique(y)
        raise DataError(f"{where}: labels run from 0 to {int(y.max())} but only {len(present):,} distinct values "
                        f"appear ({', '.join(map(str, present[:8]))}{', ...' if len(present) > 8 else ''}): "
                        f"more than the {MAX_CLASSES:,} classes a model may have")
    return y.astype(np.int64)


def _numbered_names(*label_arrays) -> list[str]:
    k = max(int(y.max()) + 1 if y.size else 0 for y in label_arrays)
    return [str(i) for i in range(k)]


# ----------------------------------------------------------------------------- IDX

_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _regular(path: str):
    """``os.stat`` of a regular file (devices such as /dev/zero, pipes and sockets are refused unopened)."""
    try:
        return limits.regular_file(path)
    except ValueError as exc:
        raise DataError(str(exc).replace("no such file", "file not found")) from None


def _check_declared(nbytes: int, what: str) -> None:
    try:
        limits.check_declared(nbytes, what)
    except ValueError as exc:
        raise DataError(str(exc)) from None


def read_file_bytes(path: str) -> bytes:
    """All of a regular file (not a device or pipe) whose bytes, as float32 samples, fit the memory limit."""
    st = _regular(path)
    _check_declared(5 * st.st_size, f"{path}: {st.st_size:,} bytes read as float32 images")
    try:
        with open(path, "rb") as f:
            return f.read(st.st_size + 1)
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None


def _idx_header(f, path: str):
    """(dtype, shape, header bytes) from the start of an IDX stream."""
    head = f.read(4)
    if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _IDX_TYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number {head[:4].hex() or 'empty'})")
    ndim = head[3]
    dims = f.read(4 * ndim)
    if ndim == 0 or len(dims) < 4 * ndim:
        raise DataError(f"{path}: truncated IDX header ({4 + len(dims)} bytes, {ndim} dimensions)")
    return np.dtype(_IDX_TYPES[head[2]]), tuple(int(d) for d in np.frombuffer(dims, ">u4")), 4 + 4 * ndim


def _check_idx_size(path, shape, header, nbytes, size, gz):
    """Refuse from the header an IDX file that declares more than it can hold or than memory allows."""
    expected = header + nbytes
    if not gz and size != expected:
        raise DataError(f"{path}: IDX data size mismatch: shape {shape} needs {expected} bytes, file has {size}")
    if gz and expected > limits.MAX_DEFLATE_RATIO * size + 1024:
        raise DataError(f"{path}: IDX header declares shape {shape} ({expected:,} bytes), more than a gzip file "
                        f"of {size:,} bytes can hold")
    _check_declared(nbytes + 4 * math.prod(shape), f"{path}: IDX data of shape {shape} (as float32)")


def read_idx(path: str) -> np.ndarray:
    """Read one IDX file (raw or ``.gz``) into an array of its stored dtype and shape.

    The header is checked before the data is read (the declared size against the file's, and
    against ``io.limits.max_bytes()``), and exactly the declared bytes are read: a gzip stream is
    never inflated beyond them.
    """
    size = _regular(path).st_size
    gz = path.endswith(".gz")
    try:
        with (gzip.open if gz else open)(path, "rb") as f:
            dtype, shape, header = _idx_header(f, path)
            nbytes = math.prod(shape) * dtype.itemsize
            _check_idx_size(path, shape, header, nbytes, size, gz)
            data = f.read(nbytes)
            more = f.read(1)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    if len(data) != nbytes or more:
        raise DataError(f"{path}: IDX data size mismatch: shape {shape} needs {header + nbytes} bytes, the file "
                        f"{'inflates to' if gz else 'has'} {'more' if more else header + len(data)}")
    return np.frombuffer(data, dtype).reshape(shape).astype(dtype.newbyteorder("="))


def _idx_pairs(directory: str) -> dict[str, tuple[str, str]]:
    """Find {'train': (images, labels), 'test': (...)} among a directory's IDX files."""
    found: dict[tuple[str, str], str] = {}
    for name in sorted(os.listdir(directory)):
        low = name.lower()
        kind = ("images" if ("images" in low and "idx3" in low) else
                "labels" if ("labels" in low and "idx1" in low) else None)
        part = "train" if low.startswith("train") else "test" if low.startswith(("t10k", "test")) else None
        if kind and part and (part, kind) not in found:
            found[(part, kind)] = os.path.join(directory, name)
    pairs = {}
    for part in ("train", "test"):
        if (part, "images") in found and (part, "labels") in found:
            pairs[part] = (found[(part, "images")], found[(part, "labels")])
        elif (part, "images") in found or (part, "labels") in found:
            have = found.get((part, "images")) or found.get((part, "labels"))
            raise DataError(f"{directory}: {os.path.basename(have)} has no matching {part} "
                            f"{'labels' if (part, 'images') in found else 'images'} file")
    return pairs


def load_idx_pair(images_path: str, labels_path: str):
    """Images (N, 1, H, W) float32 and labels (N,) int64 from an IDX image/label file pair."""
    raw = read_idx(images_path)
    if raw.ndim != 3:
        raise DataError(f"{images_path}: IDX images must have 3 dimensions (N, H, W), got shape {raw.shape}")
    labels = read_idx(labels_path)
    where = f"{labels_path}"
    if labels.ndim != 1:
        raise DataError(f"{where}: IDX labels must have 1 dimension, got shape {labels.shape}")
    if labels.shape[0] != raw.shape[0]:
        raise DataError(f"{where}: {labels.shape[0]} labels for {raw.shape[0]} images in {images_path}")
    return as_images(raw, images_path), as_labels(labels, raw.shape[0], where)


# ----------------------------------------------------------------------------- CIFAR-10

_CIFAR_RECORD = 1 + 3 * 32 * 32


def _cifar_root(directory: str) -> str:
    sub = os.path.join(directory, "cifar-10-batches-bin")
    return sub if os.path.isdir(sub) else directory


def _cifar_files(directory: str) -> dict[str, list[str]]:
    names = sorted(os.listdir(directory))
    train = [os.path.join(directory, n) for n in names if n.startswith("data_batch_") and n.endswith(".bin")]
    test = [os.path.join(directory, n) for n in names if n == "test_batch.bin"]
    return {k: v for k, v in (("train", train), ("test", test)) if v}


def load_cifar_batch(path: str):
    """One CIFAR-10 binary batch: images (N, 3, 32, 32) float32, labels (N,) int64."""
    data = read_file_bytes(path)
    if len(data) == 0 or len(data) % _CIFAR_RECORD:
        raise DataError(f"{path}: not a CIFAR-10 batch ({len(data)} bytes is not a multiple of {_CIFAR_RECORD})")
    rec = np.frombuffer(data, np.uint8).reshape(-1, _CIFAR_RECORD)
    labels = rec[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise DataError(f"{path}: CIFAR-10 label {int(labels.max())} out of range 0..9")
    return as_images(rec[:, 1:].reshape(-1, 3, 32, 32), path), labels


def _cifar_names(directory: str) -> list[str]:
    meta = os.path.join(directory, "batches.meta.txt")
    if not os.path.exists(meta):
        return [str(i) for i in range(10)]
    with open(meta, encoding="utf-8", errors="replace") as f:
        names = [line.strip() for line in f if line.strip()]
    if len(names) < 10:
        raise DataError(f"{meta}: expected 10 class names, found {len(names)}")
    return names[:10]


# ----------------------------------------------------------------------------- NPZ

def _npy_header(fh, path, name):
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(fh)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(fh)
    raise DataError(f"{path}: array {name!r} has an unsupported .npy format version {version}")


def _npz_member(zf, info, path, name):
    """One array of an open .npz, its header checked before its data is read."""
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise DataError(f"{path}: array {name!r} uses zip compression method {info.compress_type} (only stored "
                        "or deflated arrays are read)")
    if info.file_size > limits.MAX_DEFLATE_RATIO * info.compress_size + 1024:
        raise DataError(f"{path}: array {name!r} declares {info.file_size:,} bytes, more than its "
                        f"{info.compress_size:,} compressed bytes can hold")
    with zf.open(info) as fh:
        shape, fortran, dtype = _npy_header(fh, path, name)
        if dtype.hasobject:
            raise DataError(f"{path}: array {name!r} holds Python objects (pickles are never read)")
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes > info.file_size:
            raise DataError(f"{path}: array {name!r} declares shape {shape} ({nbytes:,} bytes) but the archive "
                            f"holds {info.file_size:,} bytes for it")
        _check_declared(nbytes + 4 * math.prod(shape), f"{path}: array {name!r} of shape {shape} (as float32)")
        data = fh.read(nbytes)
    if len(data) != nbytes:
        raise DataError(f"{path}: array {name!r} is truncated ({len(data):,} of {nbytes:,} bytes)")
    return np.frombuffer(data, dtype).reshape(shape, order="F" if fortran else "C")


def read_npz(path: str, names) -> dict:
    """The arrays ``names`` (those present) of an ``.npz`` file, and the names of all its arrays.

    Only ``.npy`` members are read, each checked from its header first (no pickles, a declared size
    the archive can hold and memory allows); returns ``({name: array}, all array names)``.
    """
    _regular(path)
    try:
        with zipfile.ZipFile(path) as zf:
            members = {i.filename[:-4]: i for i in zf.infolist() if i.filename.endswith(".npy")}
            arrays = {n: _npz_member(zf, members[n], path, n) for n in names if n in members}
    except DataError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, zlib.error, RuntimeError, NotImplementedError,
            KeyError) as exc:
        raise DataError(f"{path}: cannot read as .npz ({type(exc).__name__}: {exc})") from None
    return arrays, sorted(members)


def load_npz(path: str):
    """``.npz`` with ``images`` ((N,H,W) or (N,C,H,W)) and ``labels`` ((N,)); optional ``class_names``."""
    arrays, found = read_npz(path, ("images", "labels", "class_names"))
    missing = [k for k in ("images", "labels") if k not in arrays]
    if missing:
        raise DataError(f"{path}: missing array(s) {', '.join(missing)} (found: {', '.join(found) or 'none'})")
    x = as_images(arrays["images"], path)
    y = as_labels(arrays["labels"], x.shape[0], path)
    if "class_names" in arrays:
        names = [str(s) for s in np.asarray(arrays["class_names"]).ravel()]
        if len(names) <= int(y.max()):
            raise DataError(f"{path}: {len(names)} class_names but labels go up to {int(y.max())}")
    else:
        names = _numbered_names(y)
    return x, y, names


# ----------------------------------------------------------------------------- entry points

def _parts(spec, n=None, seed=0) -> tuple[dict, list[str]]:
    """{'train': (x, y), 'test': (x, y)} (one or both) and class names (target names for regression data,
    see ``tabular``) for a spec."""
    from . import tabular
    spec = str(spec)
    if tabular.is_tabular(spec):
        return tabular.parts(spec)
    if spec.startswith("builtin"):
        variant = spec.partition(":")[2] or "gray"
        if spec.count(":") > 1 or variant not in ("gray", "rgb"):
            raise DataError(f"{spec}: unknown built-in dataset (use builtin, builtin:gray or builtin:rgb)")
        x, y, names = cached_shapes(12000 if n is None else n, seed=seed, rgb=variant == "rgb")
        return {"all": (x, y)}, names
    if not os.path.exists(spec):
        raise DataError(f"{spec}: no such file or directory (expected builtin, builtin:rgb, an IDX or "
                        "CIFAR-10 directory, an .npz or a .csv file)")
    if not os.path.isdir(spec):
        _regular(spec)                      # a device, pipe or socket is refused unopened
        if not spec.endswith(".npz"):
            raise DataError(f"{spec}: unknown dataset file type (expected an .npz or .csv file or a directory)")
        x, y, names = load_npz(spec)
        return {"all": (x, y)}, names
    pairs = _idx_pairs(spec)
    if pairs:
        parts = {part: load_idx_pair(*files) for part, files in pairs.items()}
        return parts, _numbered_names(*(y for _, y in parts.values()))
    root = _cifar_root(spec)
    files = _cifar_files(root)
    if files:
        parts = {}
        for part, paths in files.items():
            loaded = [load_cifar_batch(p) for p in paths]
            parts[part] = (np.concatenate([a for a, _ in loaded]), np.concatenate([b for _, b in loaded]))
        return parts, _cifar_names(root)
    raise DataError(f"{spec}: directory holds neither MNIST-style IDX files (*-images-idx3-ubyte[.gz]) "
                    "nor CIFAR-10 batches (data_batch_*.bin, test_batch.bin)")


def load_dataset(spec, split: str = "all", n: int | None = None, seed: int = 0):
    """Load a dataset: ``(images (N,C,H,W) float32 in [0,1], labels (N,) int64, class_names)``.

    ``split``: ``all`` (train and test parts together), ``train`` or ``test``
    (only for sources with their own split).  ``n`` and ``seed`` apply to the
    built-in dataset (default 12,000 images).
    """
    if split not in ("all", "train", "test"):
        raise DataError(f"{spec}: unknown split {split!r} (use all, train or test)")
    parts, names = _parts(spec, n=n, seed=seed)
    if split == "all":
        keys = [k for k in ("all", "train", "test") if k in parts]
        x = np.concatenate([parts[k][0] for k in keys]) if len(keys) > 1 else parts[keys[0]][0]
        y = np.concatenate([parts[k][1] for k in keys]) if len(keys) > 1 else parts[keys[0]][1]
        _check_same_shape(spec, [parts[k][0] for k in keys])
        return x, y, names
    if split not in parts:
        raise DataError(f"{spec}: has no {split} part (it has: {', '.join(sorted(parts))})")
    return parts[split][0], parts[split][1], names


def _check_same_shape(spec, arrays):
    shapes = {a.shape[1:] for a in arrays}
    if len(shapes) > 1:
        raise DataError(f"{spec}: train and test images differ in shape: {sorted(shapes)}")


def train_test_split(x, y, test_fraction: float = 0.2, seed: int = 0, stratify: bool = True):
    """Seeded split into ``(x_train, y_train, x_test, y_test)``.

    With ``stratify`` each class contributes ``round(test_fraction * count)``
    images to the test part (so class proportions are kept); both parts are
    shuffled.  The same seed gives the same split.
    """
    x, y = np.asarray(x), np.asarray(y)
    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"train_test_split: {x.shape[0]} images but {y.shape[0]} labels")
    rng = np.random.Generator(np.random.PCG64(seed))
    n = y.shape[0]
    if stratify:
        test_idx = []
        for cls in np.unique(y):
            idx = rng.permutation(np.flatnonzero(y == cls))
            test_idx.append(idx[:int(round(test_fraction * idx.size))])
        test_idx = np.concatenate(test_idx)
    else:
        test_idx = rng.permutation(n)[:int(round(test_fraction * n))]
    is_test = np.zeros(n, bool)
    is_test[test_idx] = True
    tr = rng.permutation(np.flatnonzero(~is_test))
    te = rng.permutation(np.flatnonzero(is_test))
    if tr.size == 0 or te.size == 0:
        raise ValueError(f"train_test_split: test_fraction {test_fraction} of {n} images leaves an empty part")
    return x[tr], y[tr], x[te], y[te]


def channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of ``x (N, C, H, W)`` (per feature of ``x (N, F)``): two (C,)
    float32 arrays.  A channel with zero spread gets std 1 so that standardising it is safe.
    """
    from .datasets import Dataset, dataset_stats
    if isinstance(x, Dataset):              # image files: one streamed pass over them
        return dataset_stats(x)
    x = np.asarray(x, np.float32)
    axes = (0,) + tuple(range(2, x.ndim))
    mean = x.mean(axis=axes, dtype=np.float64)
    std = x.std(axis=axes, dtype=np.float64)
    std[std < 1e-6] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)


def standardize(x: np.ndarray, mean, std) -> np.ndarray:
    """``(x - mean) / std`` per channel; x (N, C, H, W) (or (N, F): per feature), mean/std (C,). Returns float32."""
    from .datasets import Dataset
    if isinstance(x, Dataset):              # streamed: its batches are standardised as they are read
        return x.normalized(mean, std)
    shape = (1, -1) + (1,) * (np.ndim(x) - 2)
    mean = np.asarray(mean, np.float32).reshape(shape)
    std = np.asarray(std, np.float32).reshape(shape)
    if mean.shape[1] != x.shape[1] or std.shape[1] != x.shape[1]:
        raise ValueError(f"standardize: mean/std have {mean.shape[1]}/{std.shape[1]} channels, images have "
                         f"{x.shape[1]}")
    return ((np.asarray(x, np.float32) - mean) / std).astype(np.float32)


@dataclass
class Splits:
    """A train and a test part; ``mean``/``std`` (C,) are set when standardised."""
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    predefined: bool = False        # True when the source supplied its own test part

    @property
    def input_shape(self) -> tuple:
        return tuple(int(s) for s in self.x_train.shape[1:])


def load_splits(spec, test_fraction: float = 1 / 6, seed: int = 0, n: int | None = None,
                standardize_images: bool = False) -> Splits:
    """Train and test parts of a dataset (see the module docstring)."""
    parts, names = _parts(spec, n=n, seed=seed)
    if "train" in parts and "test" in parts:
        _check_same_shape(spec, [parts["train"][0], parts["test"][0]])
        s = Splits(*parts["train"], *parts["test"], names, predefined=True)
    else:
        x, y = next(iter(parts.values()))
        try:
            s = Splits(*train_test_split(x, y, test_fraction, seed), names)
        except ValueError as exc:
            raise DataError(f"{spec}: {exc}") from None
    if standardize_images:
        s.mean, s.std = channel_stats(s.x_train)
        s.x_train = standardize(s.x_train, s.mean, s.std)
        s.x_test = standardize(s.x_test, s.mean, s.std)
    return s
