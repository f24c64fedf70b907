"""What ``numbacnn predict`` reads: image files and folders of them, ``.npz`` arrays and IDX files, as one batch.

Image files go through the preprocessing the model file records (``images.Preprocessing``: the resize,
centre crop and colour mode training applied), else the one made for the model's input shape;
``model_inputs`` also applies the recorded standardisation, so a caller (``predict``, plots) feeds
the model exactly what training fed it.
"""
from __future__ import annotations

import os

import numpy as np

from .images import Preprocessing, is_image_name, load_images
from .loaders import DataError, as_images, read_idx, read_npz

RAW_HINT = " (pass --raw to feed the arrays to the model unchanged)"


def _npz_images(path):
    arrays, found = read_npz(path, ("images",))
    if "images" not in arrays:
        raise DataError(f"{path}: no array named 'images' (found: {', '.join(found) or 'none'})")
    return arrays["images"]


def _array_images(path, input_shape, raw):
    a = _npz_images(path) if path.lower().endswith(".npz") else read_idx(path)
    if raw:
        if a.dtype.kind not in "iuf":
            raise DataError(f"{path}: arrays of dtype {a.dtype} cannot be fed to a model")
        with np.errstate(over="ignore", invalid="ignore"):
            a = np.asarray(a, np.float32)
        a = a[:, None] if a.ndim == 3 else a
        if not np.all(np.isfinite(a)):
            raise DataError(f"{path}: the arrays hold NaN or infinite values (or values beyond float32)")
    else:
        try:
            a = as_images(a, path)
        except DataError as e:
            raise DataError(f"{e}{RAW_HINT if 'must lie in' in str(e) else ''}") from None
    if a.ndim >= 1 and a.shape[0] == 0:
        raise DataError(f"{path}: holds no images (shape {tuple(a.shape)})")
    if a.ndim != 4 or tuple(a.shape[1:]) != tuple(input_shape):
        raise DataError(f"{path}: images of shape {tuple(a.shape[1:])} do not fit the model input "
                        f"{tuple(input_shape)}")
    return np.ascontiguousarray(a, np.float32)


def _features(path, input_shape):
    """Feature rows (N, F) for a regression or dense model: a CSV table (target columns, if any, dropped) or an
    .npz array ``inputs``."""
    from .tabular import csv_features
    if path.lower().endswith(".csv"):
        a = csv_features(path)
    else:
        arrays, _ = read_npz(path, ("inputs",))
        a = np.asarray(arrays["inputs"], np.float32)
    if a.ndim < 2 or tuple(a.shape[1:]) != tuple(input_shape):
        raise DataError(f"{path}: inputs of shape {tuple(a.shape[1:])} do not fit the model input {tuple(input_shape)}")
    return np.ascontiguousarray(a, np.float32)


def folder_images(folder) -> list:
    """Every image file under ``folder`` (recursively, sorted; hidden files and folders left out)."""
    found = []
    for here, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [os.path.join(here, f) for f in sorted(files) if is_image_name(f) and not f.startswith(".")]
    if not found:
        raise DataError(f"{folder}: is a directory without image files (give .npz, IDX, CSV or image files)")
    return found


def _expand(paths) -> list:
    out = []
    for p in map(os.fspath, paths):
        if not os.path.exists(p):
            raise DataError(f"{p}: no such file")
        out += folder_images(p) if os.path.isdir(p) else [p]
    return out


def read_prediction_inputs(paths, input_shape, raw=False, preprocessing=None):
    """(images (N, C, H, W) float32, a label per image) from image files and folders of them (read as
    ``preprocessing`` says: a ``Preprocessing`` or its stored form; default: made for the model input),
    .npz files (array ``images``, or ``inputs``: features) and IDX files, or feature rows (N, F) from CSV
    tables and .npz ``inputs``; ``raw`` feeds arrays unscaled."""
    arrays, labels, pending = [], [], []
    for p in _expand(paths):
        if is_image_name(p):
            pending.append(p)
            continue
        _flush_images(pending, input_shape, preprocessing, arrays, labels)
        if p.lower().endswith(".csv") or (p.lower().endswith(".npz") and "inputs" in read_npz(p, ())[1]):
            a = _features(p, input_shape)
            arrays.append(a)
            labels.extend(f"{p}[{i}]" for i in range(len(a)))
            continue
        a = _array_images(p, input_shape, raw)
        arrays.append(a)
        labels.extend(f"{p}[{i}]" for i in range(len(a)))
    _flush_images(pending, input_shape, preprocessing, arrays, labels)
    return np.concatenate(arrays), labels


def _preprocessing(preprocessing, input_shape) -> Preprocessing:
    if isinstance(preprocessing, Preprocessing):
        return preprocessing
    if preprocessing is not None:
        return Preprocessing.from_json(preprocessing, "the model file's preprocessing")
    return Preprocessing.for_shape(input_shape)


def _flush_images(pending, input_shape, preprocessing, arrays, labels):
    """Decode the image files collected so far (in order) into ``arrays``."""
    if pending:
        arrays.append(load_images(pending, _preprocessing(preprocessing, input_shape)))
        labels.extend(pending)
        pending.clear()


def model_inputs(paths, input_shape, meta=None, raw=False):
    """(x, labels): ``read_prediction_inputs`` with the model file's preprocessing, then its standardisation
    (``meta``: the model file's metadata), as ``numbacnn predict`` feeds the model."""
    from .loaders import standardize
    meta = meta or {}
    x, labels = read_prediction_inputs(paths, input_shape, raw, meta.get("preprocessing"))
    if "mean" in meta and not raw:
        x = standardize(x, meta["mean"], meta["std"])
    return x, labels


__all__ = ["read_prediction_inputs", "model_inputs", "folder_images"]
