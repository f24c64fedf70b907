"""What ``numbacnn predict`` reads: image files, ``.npz`` arrays and IDX files, as one batch."""
from __future__ import annotations

import os

import numpy as np

from .images import load_image
from .loaders import DataError, as_images, read_idx, read_npz

IMAGE_SUFFIXES = (".png", ".pgm", ".ppm", ".pnm")
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


def read_prediction_inputs(paths, input_shape, raw=False):
    """(images (N, C, H, W) float32, a label per image) from image files (resized to the model input),
    .npz files (array ``images``, or ``inputs``: features) and IDX files, or feature rows (N, F) from CSV
    tables and .npz ``inputs``; ``raw`` feeds arrays unscaled."""
    arrays, labels = [], []
    for p in map(os.fspath, paths):
        if not os.path.exists(p):
            raise DataError(f"{p}: no such file")
        if os.path.isdir(p):
            raise DataError(f"{p}: is a directory (give .npz, IDX, CSV or image files)")
        if p.lower().endswith(".csv") or (p.lower().endswith(".npz") and "inputs" in read_npz(p, ())[1]):
            a = _features(p, input_shape)
            arrays.append(a)
            labels.extend(f"{p}[{i}]" for i in range(len(a)))
            continue
        if p.lower().endswith(IMAGE_SUFFIXES) or _looks_like_image(p):
            arrays.append(load_image(p, input_shape)[None])
            labels.append(p)
            continue
        a = _array_images(p, input_shape, raw)
        arrays.append(a)
        labels.extend(f"{p}[{i}]" for i in range(len(a)))
    return np.concatenate(arrays), labels


def _looks_like_image(path) -> bool:
    """True for files whose name says JPEG/GIF/BMP/TIFF/WebP: load_image then names the format."""
    return path.lower().endswith((".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp"))


__all__ = ["read_prediction_inputs"]
