"""Packed datasets: image files decoded once into one HDF5 file, streamed back with no decode cost.

``numbacnn pack photos/ photos.h5 --size 64`` writes (``pack``)::

    /images   uint8 (N, C, H, W), chunked (whole images, about 1 MiB a chunk), no compression or filter
    /labels   int64 (N,)
    attributes (fixed-length strings and integers): numbacnn_packed = 1, class_names, preprocessing
              (the ``images.Preprocessing`` applied), parts (images of the given train/val/test splits,
              in that order), source (the folder or list), source_fingerprint, content (sha256 of
              the labels and every pixel, computed while packing)

``PackedDataset(path)`` checks the file in the spirit of ``io/guard.py`` before reading a pixel:
a regular file; hard links only (no soft or external links); exactly the two datasets, of
the dtypes and shapes above, contiguous or chunked in whole images, with no external storage,
virtual mapping or filter; every chunk allocated, unfiltered, of the size it should be and inside
the file; attributes scalar integers or fixed-length strings (never a variable-length string, whose
global heap is what sends HDF5's parser into an endless loop when damaged); labels in range.  The
images are then read straight from the file (a read-only memory map at the chunks' offsets): a
batch costs a copy, not an HDF5 call.

The fingerprint of a packed file is a sha256 of its ``content`` attribute, shape and labels: it is
not recomputed from the pixels at every open (that would read the whole file), so a pixel edited
outside numbacnn goes unseen, as an edited JPEG of the same size does in a folder.
"""
from __future__ import annotations

import hashlib
import json
import math
import mmap
import os
import threading
import time

import h5py
import numpy as np
from h5py import h5d

from ..io import guard, limits
from .datasets import Dataset, FileDataset
from .images import Preprocessing
from .loaders import DataError
from .pipeline import BatchStream

FORMAT_KEY = "numbacnn_packed"
VERSION = 1
CHUNK_BYTES = 1 << 20
_STRINGS = ("class_names", "preprocessing", "parts", "source", "source_fingerprint", "content")


def is_packed(spec) -> bool:
    """True for a name a packed dataset has (.h5, .hdf5): ``PackedDataset`` then says whether it is one."""
    return os.fspath(spec).lower().endswith((".h5", ".hdf5"))


# ----------------------------------------------------------------------------- writing

def _string(value) -> np.bytes_:
    """A fixed-length string attribute (JSON when not a str; ASCII, so never a variable-length one)."""
    text = value if isinstance(value, str) else json.dumps(value)
    return np.bytes_(text.encode("ascii", "backslashreplace"))


def _write_images(f, files: FileDataset, order, workers, log):
    """Decode ``order`` of ``files`` into /images batch by batch; returns (kept indices, content sha256)."""
    c, h, w = files.prep.shape
    per_chunk = max(1, min(len(order), CHUNK_BYTES // (c * h * w)))
    d = f.create_dataset("images", (len(order), c, h, w), np.uint8, maxshape=(None, c, h, w),
                         chunks=(per_chunk, c, h, w))
    batches = [order[s:s + 256] for s in range(0, len(order), 256)]
    digest, kept, t0, last = hashlib.sha256(), [], time.perf_counter(), time.perf_counter()

    def make(j):
        x, _ = files.load(batches[j])
        return x, [i for i in batches[j] if files.path(i) not in files.bad]

    with BatchStream(make, len(batches), workers) as stream:
        for x, idx in stream:
            d[len(kept):len(kept) + len(x)] = x
            digest.update(np.ascontiguousarray(x).data)
            kept.extend(idx)
            if time.perf_counter() - last >= 2.0:
                last = time.perf_counter()
                log(f"packing: {len(kept):,} of {len(order):,} images ({len(kept) / (last - t0):,.0f}/s)")
    if len(kept) < len(order):
        d.resize((len(kept), c, h, w))
    return np.asarray(kept, np.int64), digest


def pack(collection, out, prep: Preprocessing, skip_bad=False, workers=1, log=print) -> dict:
    """Decode every image of ``collection`` (``folders.Collection``) with ``prep`` into the packed file ``out``
    (written atomically); returns {images, skipped, classes, parts, seconds}."""
    from ..io.hdf5 import atomic_write_hdf5
    t0 = time.perf_counter()
    files = FileDataset(collection.root, collection.paths, collection.labels, prep, skip_bad, workers, log,
                        cache=False)                 # each image is decoded once here anyway
    order = np.arange(len(files))
    result = {}

    def write(f):
        kept, digest = _write_images(f, files, order, workers, log)
        if not len(kept):
            raise DataError(f"{collection.spec}: no image could be decoded")
        labels = collection.labels[kept]
        digest.update(labels.astype("<i8").tobytes())
        f.create_dataset("labels", data=labels)
        parts = {p: int(np.isin(idx, kept).sum()) for p, idx in collection.parts.items()}
        for key, value in (("class_names", collection.class_names), ("preprocessing", prep.to_json()),
                           ("parts", parts), ("source", os.path.abspath(collection.spec)),
                           ("source_fingerprint", collection.fingerprint()), ("content", digest.hexdigest())):
            f.attrs[key] = _string(value)
        f.attrs[FORMAT_KEY] = np.int64(VERSION)
        result.update(images=len(kept), skipped=len(order) - len(kept), classes=len(collection.class_names),
                      parts=parts)

    atomic_write_hdf5(out, write)
    return {**result, "seconds": time.perf_counter() - t0}


# ----------------------------------------------------------------------------- reading and checking

def _attributes(f, path, file_size) -> dict:
    out = {}
    for name in f.attrs.keys():
        aid = f.attrs.get_id(name)
        dt = aid.dtype
        if aid.shape != () or not (dt.kind in "iu" and dt.itemsize <= 8 or dt.kind == "S"):
            raise DataError(f"{path}: attribute {name!r} is not a scalar integer or fixed-length string "
                            f"(shape {aid.shape}, type {dt}): not a packed dataset numbacnn wrote")
        if dt.itemsize > min(file_size, 1 << 26):
            raise DataError(f"{path}: attribute {name!r} declares {dt.itemsize:,} bytes, more than the file holds")
        value = f.attrs[name]
        out[name] = value.decode("ascii", "replace") if isinstance(value, bytes) else int(value)
    return out


def _json(attrs, key, path, kind):
    try:
        value = json.loads(attrs[key])
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{path}: packed dataset lacks a readable {key!r} attribute") from None
    if not isinstance(value, kind):
        raise DataError(f"{path}: packed dataset attribute {key!r} is not a {kind.__name__}")
    return value


def _check_layout(d, where, nbytes, file_size):
    plist = d.id.get_create_plist()
    layout = plist.get_layout()
    if layout == h5d.VIRTUAL:
        raise DataError(f"{where} is a virtual dataset (its data lives in other files): not read")
    if layout not in (h5d.CONTIGUOUS, h5d.CHUNKED):
        raise DataError(f"{where} has storage layout {layout}: packed images are contiguous or chunked")
    if plist.get_external_count():
        raise DataError(f"{where} keeps its data in external files: not read")
    if plist.get_nfilters():
        raise DataError(f"{where} is stored through HDF5 filters (compression?): packed images are stored plain")
    if d.id.get_storage_size() < nbytes or d.id.get_storage_size() > file_size:
        raise DataError(f"{where} stores {d.id.get_storage_size():,} bytes for {nbytes:,} bytes of images in a "
                        f"file of {file_size:,}: the file is damaged or truncated")
    return layout, plist


def _image_offsets(d, where, file_size) -> np.ndarray:
    """The byte offset in the file of every image of /images, each checked to lie inside the file."""
    n, per = d.shape[0], math.prod(d.shape[1:])
    layout, plist = _check_layout(d, where, n * per, file_size)
    if layout == h5d.CONTIGUOUS:
        start = d.id.get_offset()
        if start is None or start + n * per > file_size:
            raise DataError(f"{where}: its data lies outside the file")
        return start + per * np.arange(n, dtype=np.int64)
    chunk = plist.get_chunk()
    if tuple(chunk[1:]) != tuple(d.shape[1:]):
        raise DataError(f"{where}: chunks {chunk} do not hold whole images {tuple(d.shape[1:])}")
    k, count = chunk[0], math.ceil(n / chunk[0]) if n else 0
    if d.id.get_num_chunks() != count:
        raise DataError(f"{where}: {d.id.get_num_chunks()} chunks stored for {count}: the file is damaged")
    starts = np.full(count, -1, np.int64)
    for i in range(count):
        info = d.id.get_chunk_info(i)
        row = info.chunk_offset[0]
        if (info.filter_mask or info.size != k * per or row % k or not 0 <= row < n
                or info.byte_offset + info.size > file_size or starts[row // k] >= 0):
            raise DataError(f"{where}: chunk {i} (row {row}, {info.size:,} bytes at {info.byte_offset:,}) does not "
                            f"fit the file: it is damaged")
        starts[row // k] = info.byte_offset
    rows = np.arange(n, dtype=np.int64)
    return starts[rows // k] + (rows % k) * per


class PackedDataset(Dataset):
    """The images of a packed file (see the module docstring), read from a memory map of it."""

    def __init__(self, path, workers=1):
        path = os.fspath(path)
        try:
            size = limits.regular_file(path).st_size
        except ValueError as exc:
            raise DataError(str(exc)) from None
        self.path, self.workers, self.bad = path, int(workers), {}
        self._file = open(path, "rb")
        try:
            with h5py.File(self._file, "r") as f:
                self._read_header(f, size)
        except DataError:
            self._file.close()
            raise
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
            self._file.close()
            raise DataError(f"{path}: not a readable packed dataset ({type(exc).__name__}: {exc})") from None
        self._mm, self._lock = None, threading.Lock()

    def _read_header(self, f, size):
        path = self.path
        attrs = _attributes(f, path, size)
        if attrs.get(FORMAT_KEY) != VERSION:
            raise DataError(f"{path}: not a packed dataset of version {VERSION} (numbacnn pack writes them)")
        members = sorted(guard.names(f))
        if members != ["images", "labels"]:
            raise DataError(f"{path}: a packed dataset holds /images and /labels only, found {', '.join(members)}")
        try:
            images = guard.member(f, "images", h5py.Dataset, "/")
            self.prep = Preprocessing.from_json(_json(attrs, "preprocessing", path, dict), f"{path}: preprocessing")
        except ValueError as exc:
            raise DataError(f"{path}: {exc}") from None
        if images.dtype != np.uint8 or images.ndim != 4 or tuple(images.shape[1:]) != self.prep.shape:
            raise DataError(f"{path}: /images is {images.dtype} {images.shape}, expected uint8 (N, "
                            f"{', '.join(map(str, self.prep.shape))})")
        self.shape = tuple(int(s) for s in images.shape)
        self.offsets = _image_offsets(images, f"{path}: /images", size)
        try:
            limits.check_declared(8 * len(self.offsets), f"{path}: {len(self.offsets):,} labels")
            self.y = guard.array(f, "labels", "/", np.int64, (self.shape[0],), size, False)
        except ValueError as exc:
            raise DataError(f"{path}: {exc}") from None
        self._read_names(attrs)

    def _read_names(self, attrs):
        path = self.path
        self.class_names = _json(attrs, "class_names", path, list)
        if not all(isinstance(n, str) for n in self.class_names):
            raise DataError(f"{path}: class_names is not a list of strings")
        if len(self.y) and (self.y.min() < 0 or self.y.max() >= len(self.class_names)):
            raise DataError(f"{path}: labels run from {int(self.y.min())} to {int(self.y.max())} but there are "
                            f"{len(self.class_names)} class names")
        parts = _json(attrs, "parts", path, dict)
        if (set(parts) - {"train", "val", "test"} or not all(isinstance(v, int) and v >= 0 for v in parts.values())
                or sum(parts.values()) not in (0, len(self.y))):
            raise DataError(f"{path}: parts {parts} do not divide its {len(self.y):,} images")
        self.parts, start = {}, 0
        for name in ("train", "val", "test"):
            if name in parts:
                self.parts[name] = np.arange(start, start + parts[name])
                start += parts[name]
        h = hashlib.sha256(b"numbacnn packed dataset 1\0")
        h.update(f"{attrs.get('content')};{self.shape};".encode())
        h.update(self.y.astype("<i8").tobytes())
        self.fingerprint = h.hexdigest()

    def load(self, indices):
        if self._mm is None:
            with self._lock:
                if self._mm is None:
                    self._mm = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
        per = math.prod(self.shape[1:])
        out = np.empty((len(indices), per), np.uint8)
        for j, o in enumerate(self.offsets[indices].tolist()):
            out[j] = np.frombuffer(self._mm, np.uint8, per, o)
        return out.reshape(len(indices), *self.shape[1:]), self.y[indices]

    def close(self):
        if self._mm is not None:
            self._mm.close()
            self._mm = None
        self._file.close()


__all__ = ["pack", "PackedDataset", "is_packed", "FORMAT_KEY"]
