"""Data sources, their fingerprints, and the recorded splits of a training run.

A **source** is everything a ``--data`` spec holds, in one canonical order
(its own train part, then its own test part when it has both), with a
fingerprint of its contents::

    src = load_source("../shared/data/mnist")     # Source(x (N,C,H,W) float32, y (N,) int64, ...)
    src.fingerprint                                # sha256 of shapes, labels and pixels
    src.predefined_test                            # indices of its own test part, or None

Image files (a class folder, a list file, a packed .h5: ``data.sources``) give a Source whose ``x``
is a streamed ``datasets.Dataset`` (indexed by index arrays like an array, read batch by batch),
fingerprinted from file names, classes and sizes (``data.folders``), with the given val/ part in
``predefined_val``.

A training run splits a source by **indices**, never by copying: the test part
(the source's own test part, or a seeded stratified hold-out), the validation
part (a seeded stratified hold-out of what is left), and the training part
(the rest, or a seeded subset of it with ``--limit``).  ``SplitRecord`` keeps
those indices with the source's spec and fingerprint; the model file stores
it, so that ``evaluate`` can recognise the same data later and use only the
images that were held out, and ``--resume`` can rebuild the exact split.

Every hold-out is stratified by class (each class gives ``round(fraction *
count)`` images, at least one where the class has two or more) and drawn from
a ``numpy.random.Generator`` seeded by ``(seed, purpose)``, so the test and
validation splits do not depend on each other's draws.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

import numpy as np

from .loaders import DataError, _check_same_shape, _parts

#: seeds of the independent hold-out draws: ``Generator([seed, purpose])``
PURPOSE = {"test": 1, "val": 2, "limit": 3, "limit_test": 4, "folds": 5}


@dataclass
class Source:
    """All images of a dataset spec in canonical order, with a fingerprint of them."""

    spec: str
    x: np.ndarray
    y: np.ndarray
    class_names: list
    predefined_test: np.ndarray | None = None   # indices of the source's own test part
    fingerprint: str = ""
    predefined_val: np.ndarray | None = None    # indices of its own validation part (a val/ folder)
    preprocessing: object = None                # images.Preprocessing of image files (x is then a Dataset)

    def __len__(self):
        return len(self.y)

    @property
    def input_shape(self) -> tuple:
        return tuple(int(s) for s in self.x.shape[1:])


def fingerprint(x: np.ndarray, y: np.ndarray) -> str:
    """sha256 (hex) of the image and label arrays: shapes, dtypes and bytes."""
    h = hashlib.sha256()
    for a in (np.ascontiguousarray(x), np.ascontiguousarray(y)):
        h.update(f"{a.dtype.str}{a.shape};".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def canonical_spec(spec) -> str:
    """The spec as stored in a model file: an absolute path for files and directories."""
    spec = os.fspath(spec)
    return os.path.abspath(spec) if not spec.startswith("builtin") and os.path.exists(spec) else spec


def load_source(spec, images=None) -> Source:
    """Every image of ``spec`` as a ``Source``: the forms of ``load_dataset`` in memory, or image files (a
    class folder, a list file, a packed .h5) as a streamed dataset read as ``images`` (``sources.ImageOptions``)
    says."""
    from .sources import image_source
    src = image_source(spec, images)
    if src is not None:
        return src
    parts, names = _parts(spec)
    keys = [k for k in ("all", "train", "test") if k in parts]
    _check_same_shape(spec, [parts[k][0] for k in keys])
    x = np.concatenate([parts[k][0] for k in keys]) if len(keys) > 1 else parts[keys[0]][0]
    y = np.concatenate([parts[k][1] for k in keys]) if len(keys) > 1 else parts[keys[0]][1]
    test = None
    if "train" in parts and "test" in parts:      # a test pair alone is not a split: it is all there is
        test = np.arange(len(parts["train"][1]), len(y))
    return Source(canonical_spec(spec), x, y, list(names), test, fingerprint(x, y))


def holdout(y, fraction: float, seed: int, purpose: str, where: str = "data"):
    """``(kept, held)``: sorted index arrays; ``held`` is a seeded stratified ``fraction`` of ``y``.

    y may be integer labels (stratified by class) or anything else (float targets: a plain
    random draw).  Raises DataError when either part would be empty.
    """
    y = np.asarray(y)
    n = len(y)
    if not 0.0 < float(fraction) < 1.0:
        raise DataError(f"{where}: a {purpose} fraction must be in (0, 1), got {fraction}")
    rng = np.random.Generator(np.random.PCG64([int(seed), PURPOSE[purpose]]))
    if y.ndim == 1 and np.issubdtype(y.dtype, np.integer):
        held = []
        for c in np.unique(y):
            idx = rng.permutation(np.flatnonzero(y == c))
            k = int(round(fraction * idx.size))
            held.append(idx[:max(k, 1) if idx.size > 1 else k])
        held = np.concatenate(held)
    else:
        held = rng.permutation(n)[:int(round(fraction * n))]
    mask = np.zeros(n, bool)
    mask[held] = True
    if mask.all() or not mask.any():
        raise DataError(f"{where}: a {purpose} fraction of {fraction:g} of {n} images leaves an empty part")
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def kfold(y, k: int, seed: int, where: str = "data") -> list:
    """k held-out parts of ``range(len(y))`` (sorted index arrays, disjoint, together all of it) for k-fold
    cross-validation: each class dealt round-robin from a seeded permutation (integer labels; a plain seeded
    draw for float targets), so every fold has its share of each class.  DataError when a fold would be empty."""
    y = np.asarray(y)
    if not isinstance(k, (int, np.integer)) or k < 2:
        raise DataError(f"{where}: --folds must be an integer >= 2, got {k!r}")
    if len(y) < k:
        raise DataError(f"{where}: {k} folds of {len(y)} images leave an empty fold")
    rng = np.random.Generator(np.random.PCG64([int(seed), PURPOSE["folds"]]))
    if y.ndim == 1 and np.issubdtype(y.dtype, np.integer):
        order = np.concatenate([rng.permutation(np.flatnonzero(y == c)) for c in np.unique(y)])
    else:
        order = rng.permutation(len(y))
    return [np.sort(order[i::k]) for i in range(k)]


def subset(indices, y, limit: int | None, seed: int, purpose: str):
    """A seeded, class-stratified subset of ``limit`` of ``indices`` (sorted); all of them if limit is None."""
    indices = np.asarray(indices)
    if limit is None or limit >= len(indices):
        return indices
    kept, held = holdout(np.asarray(y)[indices], limit / len(indices), seed, purpose)
    rng = np.random.Generator(np.random.PCG64([int(seed), PURPOSE[purpose], 1]))
    held = rng.permutation(held)[:limit]                 # per-class rounding may overshoot ...
    if len(held) < limit:                                # ... or fall short by a few
        held = np.concatenate([held, rng.permutation(kept)[:limit - len(held)]])
    return indices[np.sort(held)]


def _check_record_doc(doc, where):
    """The JSON part of a stored SplitRecord: the right type and range for every field (DataError names it)."""
    def ok(k, v):
        if k in ("train_spec", "test_spec", "train_fingerprint", "test_fingerprint"):
            return isinstance(v, str)
        if k in ("train_size", "test_size", "seed"):
            return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2 ** 63
        if k == "test_split":
            return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 1)
        return isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1     # val_split

    if not isinstance(doc, dict):
        raise DataError(f"{where}: damaged data record (a {type(doc).__name__}, not a dict)")
    for k in ("train_spec", "train_fingerprint", "train_size", "test_spec", "test_fingerprint", "test_size",
              "seed", "test_split", "val_split"):
        if k in doc and not ok(k, doc[k]):
            raise DataError(f"{where}: damaged data record: field {k!r} is {str(doc[k])[:40]!r}")


@dataclass
class SplitRecord:
    """Which images of which sources a run trained, validated and tested on (stored in the model file).

    ``train_spec``/``train_fingerprint``/``train_size`` describe the training source; ``train``
    and ``val`` index into it.  ``test_*`` describe the test source (the same one unless
    ``--test-data`` was given) and ``test`` indexes into it: the images never trained on.
    """

    train_spec: str
    train_fingerprint: str
    train_size: int
    test_spec: str
    test_fingerprint: str
    test_size: int
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    seed: int = 0
    test_split: float | None = None
    val_split: float = 0.0
    extra: dict = field(default_factory=dict)

    ARRAYS = ("train", "val", "test")

    def to_metadata(self) -> dict:
        """(JSON-able description, {name: int array}) for ``save_model``'s metadata."""
        doc = {k: getattr(self, k) for k in ("train_spec", "train_fingerprint", "train_size", "test_spec",
                                              "test_fingerprint", "test_size", "seed", "test_split", "val_split")}
        arrays = {f"split_{k}": np.asarray(getattr(self, k), np.int64) for k in self.ARRAYS}
        return {"data_record": doc, **arrays}

    @classmethod
    def from_metadata(cls, meta: dict, where: str = "model file"):
        """The record stored by ``to_metadata``, or None when the file has none (older files)."""
        doc = meta.get("data_record")
        if doc is None:
            return None
        _check_record_doc(doc, where)
        try:
            arrays = {k: np.asarray(meta[f"split_{k}"], np.int64).ravel() for k in cls.ARRAYS}
            rec = cls(**{k: doc[k] for k in ("train_spec", "train_fingerprint", "train_size", "test_spec",
                                              "test_fingerprint", "test_size")}, **arrays,
                      seed=int(doc.get("seed", 0)), test_split=doc.get("test_split"),
                      val_split=float(doc.get("val_split", 0.0)))
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"{where}: damaged data record ({type(e).__name__}: {e})") from None
        for name, size in (("train", rec.train_size), ("val", rec.train_size), ("test", rec.test_size)):
            a = getattr(rec, name)
            if a.size and (a.min() < 0 or a.max() >= int(size)):
                raise DataError(f"{where}: data record's {name} indices fall outside its {size} images")
            if len(np.unique(a)) != len(a):
                raise DataError(f"{where}: data record's {name} indices repeat an image")
        if np.intersect1d(rec.train, rec.val).size:
            raise DataError(f"{where}: data record's train and val indices share images")
        return rec

    def same_test_source(self) -> bool:
        return self.test_fingerprint == self.train_fingerprint


__all__ = ["Source", "SplitRecord", "fingerprint", "canonical_spec", "load_source", "holdout", "kfold", "subset",
           "PURPOSE"]
