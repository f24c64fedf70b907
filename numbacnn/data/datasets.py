"""Batch sources: what the training loop, evaluation and the input pipeline read images from.

A ``Dataset`` is anything with ``len()``, ``shape`` (N, C, H, W), labels ``y`` (N,) known up front,
and ``batch(indices) -> (x float32, y)``.  Three kinds satisfy it::

    ArrayDataset(x, y)            arrays in memory (what the IDX, CIFAR-10, npz and built-in loaders give)
    FileDataset(root, paths, y, prep)   image files decoded on demand (a class folder, a list file), kept
                                  decoded after the first time where they fit (NUMBACNN_IMAGE_CACHE_MIB)
    PackedDataset(path)           a packed HDF5 file read from disk (``data.packed``)

``ds[indices]`` is a ``Subset`` (a view: nothing is read), so a run splits a streamed source by
indices exactly as it splits arrays.  ``ds.normalized(mean, std)`` is the same dataset whose batches are
standardised per channel.  Datasets decoding files record ``workers`` (threads the pipeline uses for
them, ``data.pipeline``); arrays take none.

With ``skip_bad=True`` a file that cannot be decoded is left out of its batch (the batch is one image
shorter, its labels too), logged once and counted in ``bad``; otherwise its ``DataError`` stops the run.
"""
from __future__ import annotations

import copy
import os
import threading

import numpy as np

from .. import config
from .images import decode, to_float
from .loaders import DataError, standardize


class Dataset:
    """The interface (see the module docstring); subclasses implement ``load(indices) -> (x, y)`` with x
    uint8 (scaled to [0, 1] here) or float32."""

    y: np.ndarray
    shape: tuple
    mean = std = None
    workers = 0

    def __len__(self) -> int:
        return int(self.shape[0])

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def input_shape(self) -> tuple:
        return tuple(int(s) for s in self.shape[1:])

    def load(self, indices):
        raise NotImplementedError

    def batch(self, indices):
        """(x (n, C, H, W) float32, y (n,)) for ``indices`` (fewer when bad files are skipped)."""
        x, y = self.load(np.asarray(indices, np.int64))
        x = to_float(x) if x.dtype == np.uint8 else np.asarray(x, np.float32)
        if self.mean is not None and len(x):
            x = standardize(x, self.mean, self.std)
        return np.ascontiguousarray(x), y

    def normalized(self, mean, std) -> "Dataset":
        """This dataset with batches standardised per channel: (x - mean) / std."""
        out = copy.copy(self)
        out.mean, out.std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
        return out

    def __getitem__(self, indices) -> "Subset":
        idx = np.arange(len(self))[indices] if isinstance(indices, slice) else np.asarray(indices, np.int64)
        if idx.ndim != 1:
            raise TypeError(f"a dataset is indexed by an array of image indices, not {indices!r}")
        return Subset(self, idx)

    def __array__(self, *args, **kwargs):
        raise TypeError(f"{type(self).__name__} streams its images: read them with batch(indices), not as one array")


class ArrayDataset(Dataset):
    """Images (N, ...) float32 and labels (N,) in memory."""

    def __init__(self, x, y=None):
        self.x = x
        self.y = np.zeros(len(x), np.int64) if y is None else np.asarray(y)
        self.shape = tuple(x.shape)

    def load(self, indices):
        return self.x[indices], self.y[indices]


class Subset(Dataset):
    """The images ``indices`` of ``base``, in that order (a view)."""

    def __init__(self, base: Dataset, indices):
        if isinstance(base, Subset):
            base, indices = base.base, base.indices[indices]
        self.base, self.indices = base, np.asarray(indices, np.int64)
        if self.indices.size and (self.indices.min() < 0 or self.indices.max() >= len(base)):
            raise IndexError(f"subset indices outside the {len(base)} images of the dataset")
        self.y = base.y[self.indices]
        self.shape = (len(self.indices), *base.shape[1:])
        self.mean, self.std, self.workers = base.mean, base.std, base.workers

    def load(self, indices):
        return self.base.load(self.indices[indices])

    def __getattr__(self, name):            # the base's description: class names, bad files, ...
        if name.startswith("__") or name == "base":
            raise AttributeError(name)
        return getattr(self.base, name)


class FileDataset(Dataset):
    """Image files ``root/paths[i]`` with labels ``y``, decoded by ``prep`` (``images.Preprocessing``).

    With ``cache`` (default) and when every decoded image together fits in NUMBACNN_IMAGE_CACHE_MIB, each image
    is kept after its first decode (uint8, before augmentation, which every batch draws anew): epochs after the
    first read no file and decode nothing, as from memory.  Decoding is deterministic, so the batches are the
    same bits either way."""

    def __init__(self, root, paths, y, prep, skip_bad=False, workers=1, log=None, cache=True):
        self.root, self.paths, self.y, self.prep = root, np.asarray(paths, object), np.asarray(y, np.int64), prep
        self.shape = (len(self.paths), *prep.shape)
        self.skip_bad, self.workers, self.log = bool(skip_bad), int(workers), log
        self.bad = {}                      # path -> reason, the files skipped
        self._lock = threading.Lock()
        fits = int(np.prod(self.shape, dtype=np.int64)) <= config.IMAGE_CACHE_MIB * 2**20
        # decoded images by index (pages are touched only as images arrive) and which ones are there
        self._decoded = np.empty(self.shape, np.uint8) if cache and fits and len(self.paths) else None
        self._have = np.zeros(len(self.paths), bool)

    def path(self, i) -> str:
        return os.path.join(self.root, self.paths[i])

    def load(self, indices):
        out = np.empty((len(indices), *self.prep.shape), np.uint8)
        kept = []
        for j, i in enumerate(indices):
            if self._have[i]:
                out[len(kept)] = self._decoded[i]
                kept.append(j)
                continue
            p = self.path(i)
            if p in self.bad:
                continue
            try:
                out[len(kept)] = decode(p, self.prep)
            except DataError as exc:
                if not self.skip_bad:
                    raise DataError(f"{exc} (pass --skip-bad-images to leave such files out)") from None
                self._skip(p, str(exc))
                continue
            if self._decoded is not None:      # image i is written before it is marked: a reader sees it whole
                self._decoded[i] = out[len(kept)]
                self._have[i] = True
            kept.append(j)
        return out[:len(kept)], self.y[np.asarray(indices, np.int64)[kept]]

    def _skip(self, path, reason):
        with self._lock:
            if path in self.bad:
                return
            self.bad[path] = reason
            count = len(self.bad)
        if self.log is not None:
            self.log(f"skipped {reason} ({count:,} bad image(s) so far, --skip-bad-images)")


def dataset_stats(ds: Dataset, batch_size: int = 256):
    """Per-channel mean and standard deviation (two (C,) float32 arrays, in [0, 1] units) of every image of
    ``ds``, in one pass through the input pipeline; exact integer sums for uint8 pixels, so the result does
    not depend on the batching or the number of workers.  A channel with zero spread gets std 1."""
    from .pipeline import BatchStream
    c = ds.shape[1]
    order = np.arange(len(ds))
    batches = [order[s:s + batch_size] for s in range(0, len(ds), batch_size)]
    hist, total, squares, count = np.zeros((c, 256), np.int64), np.zeros(c), np.zeros(c), 0
    with BatchStream(lambda j: ds.load(batches[j])[0], len(batches), ds.workers) as stream:
        for x in stream:
            if x.dtype == np.uint8:
                hist += np.stack([np.bincount(x[:, k].ravel(), minlength=256) for k in range(c)])
            else:
                x = x.astype(np.float64)
                total += x.sum(axis=(0, 2, 3))
                squares += (x * x).sum(axis=(0, 2, 3))
            count += x.shape[0] * x.shape[2] * x.shape[3]
    if not count:
        raise DataError("no image could be read to compute the channel statistics")
    v = np.arange(256, dtype=np.float64) / 255.0
    mean = (total + hist @ v) / count
    std = np.sqrt(np.maximum((squares + hist @ (v * v)) / count - mean * mean, 0.0))
    std[std < 1e-6] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)


def as_dataset(x, y=None, name="data", model_shape=None) -> Dataset:
    """``x`` itself when it is a Dataset (checked against ``model_shape``; ``y`` is not used: a dataset carries
    its labels, and gives those of the images it could read with each batch), else ``ArrayDataset(x, y)``."""
    if isinstance(x, Dataset):
        if model_shape is not None and x.input_shape != tuple(model_shape):
            raise ValueError(f"{name} images of shape {x.input_shape} do not match the model input "
                             f"{tuple(model_shape)}")
        if len(x) == 0:
            raise ValueError(f"{name} is empty")
        return x
    from ..train import check_data
    return ArrayDataset(check_data(name, x, y, model_shape), y)


__all__ = ["Dataset", "ArrayDataset", "Subset", "FileDataset", "as_dataset", "dataset_stats"]
