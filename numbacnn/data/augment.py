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

The per-pixel loops (zoom's bilinear sampling, contrast) are compiled with Numba and release the GIL,
so the input pipeline's worker threads (``data.pipeline``) augment batches side by side.
"""
from __future__ import annotations

import numpy as np
from numba import njit

DEFAULTS = {"flip_p": 0.5, "contrast": 0.3, "zoom": 0.2, "noise_std": 0.05}


@njit(cache=True, nogil=True)
def _taps(coords, size):
    """Lower and upper neighbours and the upper one's weight of each coordinate (clamped to the border)."""
    lo = np.empty(coords.size, np.int64)
    hi = np.empty(coords.size, np.int64)
    f = np.empty(coords.size, np.float32)
    for i in range(coords.size):
        c = min(max(coords[i], 0.0), size - 1.0)
        lo[i] = min(int(np.floor(c)), max(size - 2, 0))
        hi[i] = min(lo[i] + 1, size - 1)
        f[i] = np.float32(c - lo[i])
    return lo, hi, f


@njit(cache=True, nogil=True)
def _bilinear(x, ys, xs):
    """The loops of ``sample_bilinear`` (compiled, without the GIL: worker threads run them side by side).

    Each source row an image's samples touch is interpolated along the row once (float64, as the blend of
    the two rows is), then every output row blends two of those: the same arithmetic as blending per output
    pixel, without redoing a row's horizontal pass for each output row that reads it."""
    n, c, h, w = x.shape
    ho, wo = ys.shape[1], xs.shape[1]
    out = np.empty((n, c, ho, wo), np.float32)
    for b in range(n):
        y0, y1, fy = _taps(ys[b], h)
        x0, x1, fx = _taps(xs[b], w)
        r0, r1 = y0.min(), y1.max()
        rows = np.empty((r1 - r0 + 1, wo), np.float64)
        for k in range(c):
            img = x[b, k]
            for r in range(r0, r1 + 1):
                src = img[r]
                for j in range(wo):
                    rows[r - r0, j] = src[x0[j]] * (1 - fx[j]) + src[x1[j]] * fx[j]
            for i in range(ho):
                top, bottom, wy = rows[y0[i] - r0], rows[y1[i] - r0], fy[i]
                for j in range(wo):
                    out[b, k, i, j] = top[j] * (1 - wy) + bottom[j] * wy
    return out


def sample_bilinear(x: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Bilinear samples of ``x (N, C, H, W)`` at rows ``ys (N, Ho)`` and columns ``xs (N, Wo)``.

    Coordinates are in pixel units with pixel centres at integers; samples
    outside are clamped to the border.  Returns ``(N, C, Ho, Wo)`` float32.
    """
    return _bilinear(np.ascontiguousarray(x, np.float32), np.asarray(ys, np.float64), np.asarray(xs, np.float64))


@njit(cache=True, nogil=True)
def _contrast(x, f):
    n, c, h, w = x.shape
    out = np.empty_like(x)
    for b in range(n):
        for k in range(c):
            plane = x[b, k].ravel()
            s0 = s1 = s2 = s3 = 0.0      # float64, four interleaved partial sums (four adds in flight)
            m = plane.size - plane.size % 4
            for i in range(0, m, 4):
                s0 += np.float64(plane[i])
                s1 += np.float64(plane[i + 1])
                s2 += np.float64(plane[i + 2])
                s3 += np.float64(plane[i + 3])
            for i in range(m, plane.size):
                s0 += np.float64(plane[i])
            mean = np.float32(((s0 + s1) + (s2 + s3)) / plane.size)
            for i in range(h):
                for j in range(w):
                    out[b, k, i, j] = mean + f[b] * (x[b, k, i, j] - mean)
    return out


@njit(cache=True, nogil=True)
def _flip(x, sel):
    out = np.empty_like(x)
    for b in range(x.shape[0]):
        if sel[b]:
            out[b] = x[b, :, :, ::-1]
        else:
            out[b] = x[b]
    return out


def flip(x, rng, flip_p=0.5):
    """Mirror each image left-right with probability ``flip_p``."""
    sel = rng.random(x.shape[0]) < flip_p
    return _flip(np.ascontiguousarray(x, np.float32), sel)


def contrast(x, rng, contrast=0.3):
    """Scale each image's deviation from its per-channel mean by a factor in [1 - contrast, 1 + contrast]."""
    f = rng.uniform(1.0 - contrast, 1.0 + contrast, x.shape[0]).astype(np.float32)
    return _contrast(np.ascontiguousarray(x, np.float32), f)


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
    return (x + np.float32(noise_std) * rng.standard_normal(x.shape, dtype=np.float32)).astype(np.float32)


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
