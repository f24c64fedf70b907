"""On-the-fly augmentation of a host batch ``x (N, C, H, W)`` float32.

``make_augment("flip,contrast,zoom,noise", **params)`` returns
``augment(batch, rng) -> batch``, which applies the named transforms in the
given order, each with independent random draws per image from the numpy
``Generator`` ``rng``.  The input batch is never modified.  Values are not
clipped, so the transforms work on raw [0, 1] images and on standardised
ones alike.

Transforms and their parameters (defaults in ``DEFAULTS``)::

    flip      mirror left-right with probability flip_p
    contrast  x -> mean + f * (x - mean), f ~ U(1 - contrast, 1 + contrast), mean per image and channel
    zoom      random crop of side s * (H, W), s ~ U(1 - zoom, 1), resized back with bilinear sampling
    noise     add N(0, noise_std^2) to every value
"""
from __future__ import annotations

import numpy as np


DEFAULTS = {"flip_p": 0.5, "contrast": 0.3, "zoom": 0.2, "noise_std": 0.05}


def sample_bilinear(x: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Bilinear samples of ``x (N, C, H, W)`` at rows ``ys (N, Ho)`` and columns ``xs (N, Wo)``.

    Coordinates are in pixel units with pixel centres at integers; samples
    outside are clamped to the border.  Returns ``(N, C, Ho, Wo)`` float32.
    """
    n, _, h, w = x.shape
    ys = np.clip(ys, 0, h - 1)
    xs = np.clip(xs, 0, w - 1)
    y0 = np.minimum(np.floor(ys).astype(np.int64), h - 2 if h > 1 else 0)
    x0 = np.minimum(np.floor(xs).astype(np.int64), w - 2 if w > 1 else 0)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    fy = (ys - y0)[:, None, :, None].astype(np.float32)
    fx = (xs - x0)[:, None, None, :].astype(np.float32)
    b = np.arange(n)[:, None, None, None]
    c = np.arange(x.shape[1])[None, :, None, None]

    def at(yi, xi):
        return x[b, c, yi[:, None, :, None], xi[:, None, None, :]]

    top = at(y0, x0) * (1 - fx) + at(y0, x1) * fx
    bottom = at(y1, x0) * (1 - fx) + at(y1, x1) * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


def flip(x, rng, flip_p=0.5):
    """Mirror each image left-right with probability ``flip_p``."""
    out = x.copy()
    sel = rng.random(x.shape[0]) < flip_p
    out[sel] = x[sel, :, :, ::-1]
    return out


def contrast(x, rng, contrast=0.3):
    """Scale each image's deviation from its per-channel mean by a factor in [1 - contrast, 1 + contrast]."""
    f = rng.uniform(1.0 - contrast, 1.0 + contrast, (x.shape[0], 1, 1, 1)).astype(np.float32)
    mean = x.mean(axis=(2, 3), keepdims=True)
    return (mean + f * (x - mean)).astype(np.float32)


def zoom(x, rng, zoom=0.2):
    """Random resized crop: a window of ``s`` times the image side (s ~ U(1 - zoom, 1)) at a
    random place, resampled bilinearly to the original size (a zoom-in of up to 1 / (1 - zoom))."""
    n, _, h, w = x.shape
    s = rng.uniform(1.0 - zoom, 1.0, n)
    top = rng.uniform(0.0, 1.0, n) * (1.0 - s) * h
    left = rng.uniform(0.0, 1.0, n) * (1.0 - s) * w
    # output pixel centre i + 0.5 maps to top + (i + 0.5) * s in input coordinates
    ys = top[:, None] + (np.arange(h)[None, :] + 0.5) * s[:, None] - 0.5
    xs = left[:, None] + (np.arange(w)[None, :] + 0.5) * s[:, None] - 0.5
    return sample_bilinear(x, ys, xs)


def noise(x, rng, noise_std=0.05):
    """Add Gaussian noise of standard deviation ``noise_std``."""
    return (x + rng.normal(0.0, noise_std, x.shape)).astype(np.float32)


TRANSFORMS = {"flip": (flip, "flip_p"), "contrast": (contrast, "contrast"),
              "zoom": (zoom, "zoom"), "noise": (noise, "noise_std")}


def make_augment(names: str, **params):
    """Compose the comma-separated transforms ``names`` into ``augment(batch, rng) -> batch``.

    ``params`` override ``DEFAULTS`` (flip_p, contrast, zoom, noise_std).
    An empty string gives the identity (a copy).  Unknown names or
    parameters raise ``ValueError`` naming them.
    """
    chosen = [s.strip() for s in str(names).split(",") if s.strip()]
    for name in chosen:
        if name not in TRANSFORMS:
            raise ValueError(f"unknown augmentation {name!r} (choose from {', '.join(TRANSFORMS)})")
    for key in params:
        if key not in DEFAULTS:
            raise ValueError(f"unknown augmentation parameter {key!r} (choose from {', '.join(DEFAULTS)})")
    values = {**DEFAULTS, **params}
    if not 0.0 <= values["flip_p"] <= 1.0:
        raise ValueError(f"flip_p must be in [0, 1], got {values['flip_p']}")
    if not 0.0 <= values["contrast"] < 1.0:
        raise ValueError(f"contrast must be in [0, 1), got {values['contrast']}")
    if not 0.0 <= values["zoom"] < 1.0:
        raise ValueError(f"zoom must be in [0, 1), got {values['zoom']}")
    if values["noise_std"] < 0.0:
        raise ValueError(f"noise_std must be >= 0, got {values['noise_std']}")
    steps = [(TRANSFORMS[name][0], values[TRANSFORMS[name][1]]) for name in chosen]

    def augment(batch, rng):
        x = np.asarray(batch, np.float32)
        if x.ndim != 4:
            raise ValueError(f"augment: batch must be (N, C, H, W), got shape {x.shape}")
        x = x.copy() if not steps else x
        for fn, value in steps:
            x = fn(x, rng, value)
        return x

    augment.names = chosen
    return augment
