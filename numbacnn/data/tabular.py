"""Regression data: float targets for the regression losses (``--loss mse|mae|huber``).

Three sources, each giving ``({"all": (x, y)}, target names)`` like the image loaders:

    builtin:poly[:DEGREE]   the course's 1-D polynomial fit: 40 points t ~ U(-1, 1), y = sin(pi t) + N(0, 0.25^2),
                            features t, t^2, ..., t^DEGREE (12 by default): over-fits without L1/L2 penalties
    FILE.csv                a numeric table, one row per sample; the target columns are those named
                            target* or y (else the last column), the other columns are the features
    FILE.npz                arrays ``targets`` ((N,) or (N, K) float) and ``inputs`` ((N, ...) float features)
                            or ``images``; optionally ``target_names``

x is float32 (N, F) (or (N, C, H, W) images), y float32 (N,) or (N, K).
"""
from __future__ import annotations

import csv
import os

import numpy as np

from .loaders import DataError, as_images, read_npz

POLY_SPEC = "builtin:poly"


def make_polynomial(n: int = 40, degree: int = 12, noise: float = 0.25, seed: int = 0):
    """(x (n, degree) float32 with columns t^1 .. t^degree, y (n,) float32 = sin(pi t) + noise, ["y"])."""
    if not 1 <= int(degree) <= 30:
        raise DataError(f"{POLY_SPEC}: degree must be in 1..30, got {degree}")
    rng = np.random.Generator(np.random.PCG64(seed))
    t = rng.uniform(-1.0, 1.0, n)
    y = np.sin(np.pi * t) + rng.normal(0.0, noise, n)
    x = np.stack([t ** k for k in range(1, int(degree) + 1)], axis=1)
    return x.astype(np.float32), y.astype(np.float32), ["y"]


def _targets(t, n, where):
    t = np.asarray(t)
    if t.dtype.kind not in "fiu" or t.shape[:1] != (n,) or t.ndim > 2:
        raise DataError(f"{where}: targets must be numbers of shape ({n},) or ({n}, K), got {t.dtype} {t.shape}")
    t = t.astype(np.float32)
    if not np.all(np.isfinite(t)):
        raise DataError(f"{where}: targets contain NaN or infinite values")
    return t


def _csv_rows(path: str) -> list:
    """The non-empty rows of a CSV file (a regular file whose size the memory limit allows)."""
    from ..io import limits
    try:
        limits.check_declared(8 * limits.regular_file(path).st_size, f"{path}: a CSV table")
        with open(path, newline="", encoding="utf-8") as f:
            return [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: cannot read as CSV ({type(e).__name__}: {e})") from None


def load_csv(path: str):
    """(x (N, F) float32, y (N,) or (N, K) float32, target names) from a numeric CSV table."""
    rows = _csv_rows(path)
    header = None
    if rows and not _numeric(rows[0]):
        header, rows = [c.strip() for c in rows[0]], rows[1:]
    if not rows or any(not _numeric(r) or len(r) != len(rows[0]) for r in rows):
        raise DataError(f"{path}: expected a table of numbers, one row per sample, all rows of equal length")
    table = np.array([[float(c) for c in r] for r in rows], dtype=np.float64)
    names = header or [f"x{i}" for i in range(table.shape[1] - 1)] + ["y"]
    is_target = [n.lower().startswith("target") or n.lower() == "y" for n in names]
    if not any(is_target):
        is_target[-1] = True
    if all(is_target):
        raise DataError(f"{path}: every column is a target; the features are missing")
    cols = np.array(is_target)
    y = table[:, cols]
    return (table[:, ~cols].astype(np.float32), _targets(y[:, 0] if y.shape[1] == 1 else y, len(y), path),
            [n for n, t in zip(names, is_target) if t])


def csv_features(path: str) -> np.ndarray:
    """The feature columns of a CSV table (those not named target* or y): (N, F) float32, for predict."""
    rows = _csv_rows(path)
    header = [c.strip().lower() for c in rows[0]] if rows and not _numeric(rows[0]) else None
    rows = rows[1:] if header else rows
    if not rows or any(not _numeric(r) or len(r) != len(rows[0]) for r in rows):
        raise DataError(f"{path}: expected a table of numbers, one row per sample, all rows of equal length")
    keep = [not (h.startswith("target") or h == "y") for h in header] if header else [True] * len(rows[0])
    return np.array([[float(c) for c, k in zip(r, keep) if k] for r in rows], dtype=np.float32)


def _numeric(row) -> bool:
    try:
        [float(c) for c in row]
        return True
    except ValueError:
        return False


def load_npz_targets(path: str):
    """(x, y, target names) from an .npz with ``targets`` and ``inputs`` or ``images``."""
    arrays, found = read_npz(path, ("inputs", "images", "targets", "target_names"))
    if "inputs" in arrays:
        x = np.asarray(arrays["inputs"])
        if x.dtype.kind not in "fiu" or x.ndim < 2:
            raise DataError(f"{path}: inputs must be numbers of shape (N, features...), got {x.dtype} {x.shape}")
        x = x.astype(np.float32)
    elif "images" in arrays:
        x = as_images(arrays["images"], path)
    else:
        raise DataError(f"{path}: has targets but neither inputs nor images (found: {', '.join(found)})")
    y = _targets(arrays["targets"], len(x), path)
    k = 1 if y.ndim == 1 else y.shape[1]
    names = [str(s) for s in np.asarray(arrays["target_names"]).ravel()] if "target_names" in arrays else (
        ["y"] if k == 1 else [f"y{i}" for i in range(k)])
    if len(names) != k:
        raise DataError(f"{path}: {len(names)} target_names for {k} targets")
    return x, y, names


def is_tabular(spec: str) -> bool:
    """True for the specs of this module (an .npz is tabular when it holds ``targets``)."""
    if spec.startswith(POLY_SPEC) or spec.lower().endswith(".csv"):
        return True
    if spec.lower().endswith(".npz") and os.path.isfile(spec):
        return "targets" in read_npz(spec, ())[1]
    return False


def parts(spec: str, seed: int = 0):
    """({"all": (x, y)}, target names) of a regression spec."""
    if spec.startswith(POLY_SPEC):
        degree = spec[len(POLY_SPEC) + 1:] if spec != POLY_SPEC else "12"
        if not degree.isdigit():
            raise DataError(f"{spec}: unknown built-in dataset (use {POLY_SPEC} or {POLY_SPEC}:DEGREE)")
        x, y, names = make_polynomial(degree=int(degree), seed=seed)
    elif spec.lower().endswith(".csv"):
        if not os.path.isfile(spec):
            raise DataError(f"{spec}: no such file")
        x, y, names = load_csv(spec)
    else:
        x, y, names = load_npz_targets(spec)
    return {"all": (x, y)}, names


__all__ = ["make_polynomial", "load_csv", "load_npz_targets", "is_tabular", "parts", "POLY_SPEC"]
