"""The built-in "shapes" dataset: procedurally drawn glyphs, no download needed.

Ten classes of stroked or filled figures (ring, disk, triangle, square, plus,
cross, line, tee, bullseye, stripes), each drawn at a random position, scale,
rotation and stroke width, with small per-image jitter of its vertices, on a
background with a brightness gradient, a few distracting specks and Gaussian
noise.  Position and rotation vary, so a linear classifier on raw pixels
does clearly worse than a small CNN.

Every random number comes from one ``numpy.random.Generator(PCG64(seed))``,
so a seed gives the same images everywhere; images are quantised to 8 bits
(like MNIST) so that last-ulp differences between math libraries do not show.

Rendering is vectorised per class: every figure is a union of primitives
(segments, circle outlines, filled circles) given in the figure's local
frame; the pixel grid is mapped into each image's local frame and the
distance to the nearest primitive, times the image's scale, is the distance
in pixels, which an anti-aliased stroke turns into coverage.
"""
from __future__ import annotations

import hashlib
import os
import zipfile

import numpy as np

from .. import config

CLASS_NAMES = ["ring", "disk", "triangle", "square", "plus",
               "cross", "line", "tee", "bullseye", "stripes"]


def _polygon(k, phase=np.pi / 2):
    ang = phase + 2 * np.pi * np.arange(k + 1) / k
    pts = np.stack([np.cos(ang), np.sin(ang)], 1)
    return [(pts[i], pts[i + 1]) for i in range(k)]


def _seg(x0, y0, x1, y1):
    return (np.array([x0, y0], float), np.array([x1, y1], float))


_D = np.sqrt(0.5)
# Per class: segments, circle outlines (radius), filled circles (radius),
# maximum rotation in radians (pi = any orientation).
_FIGURES = [
    dict(segs=[], rings=[1.0], disks=[], rot=np.pi),                                     # ring
    dict(segs=[], rings=[], disks=[0.75], rot=np.pi),                                    # disk
    dict(segs=_polygon(3), rings=[], disks=[], rot=np.pi),                               # triangle
    dict(segs=[(1.1 * a, 1.1 * b) for a, b in _polygon(4, np.pi / 4)], rings=[], disks=[], rot=np.pi),  # square
    dict(segs=[_seg(-1, 0, 1, 0), _seg(0, -1, 0, 1)], rings=[], disks=[], rot=0.35),     # plus
    dict(segs=[_seg(-_D, -_D, _D, _D), _seg(-_D, _D, _D, -_D)], rings=[], disks=[], rot=0.35),  # cross
    dict(segs=[_seg(-1, 0, 1, 0)], rings=[], disks=[], rot=np.pi),                       # line
    dict(segs=[_seg(-1, -0.9, 1, -0.9), _seg(0, -0.9, 0, 1)], rings=[], disks=[], rot=np.pi),  # tee
    dict(segs=[], rings=[1.0], disks=[0.3], rot=np.pi),                                  # bullseye
    dict(segs=[_seg(-1, y, 1, y) for y in (-0.8, 0.0, 0.8)], rings=[], disks=[], rot=np.pi),  # stripes
]


def _segment_distance(px, py, a, b):
    """Distance from points (px, py) (n, H, W) to segments a->b, a/b (n, 1, 1, 2)."""
    ax, ay = a[..., 0], a[..., 1]
    dx, dy = b[..., 0] - ax, b[..., 1] - ay
    t = ((px - ax) * dx + (py - ay) * dy) / np.maximum(dx * dx + dy * dy, np.float32(1e-12))
    t = np.clip(t, 0, 1)
    return np.hypot(px - ax - t * dx, py - ay - t * dy)


def _render_class(cls, n, size, rng):
    """Coverage in [0, 1] of ``n`` figures of class ``cls``: (n, size, size) float64."""
    fig = _FIGURES[cls]
    scale = rng.uniform(0.28, 0.38, n) * size            # figure radius in pixels
    half_width = rng.uniform(0.7, 1.4, n)                # stroke half-width in pixels
    # centre within +-9% of the side around the middle, figure kept on the canvas
    margin = scale + half_width + 1.0
    cx = np.clip(size / 2 + rng.uniform(-0.09, 0.09, n) * size, margin, size - margin)
    cy = np.clip(size / 2 + rng.uniform(-0.09, 0.09, n) * size, margin, size - margin)
    theta = rng.uniform(-fig["rot"], fig["rot"], n)
    jitter = 0.05                                         # vertex jitter, local units

    f32 = np.float32                                      # render in float32: half the memory traffic
    grid = np.arange(size, dtype=f32) + f32(0.5)
    gx = grid[None, None, :] - cx[:, None, None].astype(f32)
    gy = grid[None, :, None] - cy[:, None, None].astype(f32)
    c, s = np.cos(theta)[:, None, None].astype(f32), np.sin(theta)[:, None, None].astype(f32)
    scale, half_width = scale.astype(f32), half_width.astype(f32)
    # pixel -> local frame: rotate by -theta, divide by scale (y axis points down)
    lx = (c * gx + s * gy) / scale[:, None, None]
    ly = (-s * gx + c * gy) / scale[:, None, None]

    dist = np.full((n, size, size), np.inf, f32)
    for a, b in fig["segs"]:
        aj = (a + rng.normal(0.0, jitter, (n, 1, 1, 2))).astype(f32)
        bj = (b + rng.normal(0.0, jitter, (n, 1, 1, 2))).astype(f32)
        dist = np.minimum(dist, _segment_distance(lx, ly, aj, bj))
    r = np.hypot(lx, ly)
    for radius in fig["rings"]:
        rj = (radius * rng.uniform(0.9, 1.05, (n, 1, 1))).astype(f32)
        dist = np.minimum(dist, np.abs(r - rj))
    for radius in fig["disks"]:
        rj = (radius * rng.uniform(0.85, 1.1, (n, 1, 1))).astype(f32)
        dist = np.minimum(dist, np.maximum(r - rj, f32(0.0)))
    dist_px = dist * scale[:, None, None]
    return np.clip(half_width[:, None, None] + f32(0.5) - dist_px, f32(0.0), f32(1.0))


def _specks(n, size, rng, max_specks=3):
    """Coverage of 0..max_specks small faint blobs per image: (n, size, size)."""
    grid = np.arange(size, dtype=np.float32) + np.float32(0.5)
    out = np.zeros((n, size, size), np.float32)
    count = rng.integers(0, max_specks + 1, n)
    for k in range(max_specks):
        x, y = rng.uniform(0, size, n), rng.uniform(0, size, n)
        x, y = x.astype(np.float32), y.astype(np.float32)
        sigma = rng.uniform(0.6, 1.2, n)[:, None, None].astype(np.float32)
        amp = (rng.uniform(0.3, 0.7, n) * (count > k)).astype(np.float32)
        d2 = (grid[None, None, :] - x[:, None, None]) ** 2 + (grid[None, :, None] - y[:, None, None]) ** 2
        out = np.maximum(out, amp[:, None, None] * np.exp(-d2 / (2 * sigma ** 2)))
    return out


def make_shapes(n: int = 12000, seed: int = 0, rgb: bool = False, size: int | None = None):
    """Generate the built-in dataset.

    Returns ``(images, labels, class_names)``: images ``(n, 1, 28, 28)``
    float32 in [0, 1] (``rgb=True``: ``(n, 3, 32, 32)``), labels ``(n,)``
    int64 with classes balanced (``n // 10`` or one more each) and shuffled.
    ``size`` overrides the side length.
    """
    n = int(n)
    if n < 1:
        raise ValueError(f"builtin dataset: n must be >= 1, got {n}")
    size = int(size if size is not None else (32 if rgb else 28))
    if size < 12:
        raise ValueError(f"builtin dataset: size must be >= 12, got {size}")
    rng = np.random.Generator(np.random.PCG64(seed))
    labels = rng.permutation(np.arange(n) % len(CLASS_NAMES)).astype(np.int64)

    cover = np.empty((n, size, size), np.float32)
    for cls in range(len(CLASS_NAMES)):
        idx = np.flatnonzero(labels == cls)
        if idx.size:
            cover[idx] = _render_class(cls, idx.size, size, rng)
    clutter = _specks(n, size, rng)

    # background: base level plus a linear gradient in a random direction
    grid = (np.arange(size) + 0.5) / size - 0.5
    ang = rng.uniform(0, 2 * np.pi, n)[:, None, None]
    ramp = np.cos(ang) * grid[None, None, :] + np.sin(ang) * grid[None, :, None]
    ramp = ramp * rng.uniform(0.0, 0.25, n)[:, None, None]
    channels = 3 if rgb else 1
    if rgb:
        bg = rng.uniform(0.0, 0.4, (n, 3))
        fg = rng.uniform(0.6, 1.0, (n, 3))
        swap = rng.random(n) < 0.5                      # dark figure on a light ground
        bg[swap], fg[swap] = fg[swap].copy(), bg[swap].copy()
    else:
        bg = rng.uniform(0.0, 0.25, (n, 1))
        fg = rng.uniform(0.65, 1.0, (n, 1))
    noise_sigma = rng.uniform(0.02, 0.05, n)[:, None, None, None]

    alpha = np.maximum(cover, clutter)[:, None]                       # (n, 1, S, S)
    img = (bg[:, :, None, None] + ramp[:, None]).astype(np.float32)
    img = img * (1 - alpha) + fg[:, :, None, None].astype(np.float32) * alpha
    img += noise_sigma.astype(np.float32) * rng.standard_normal((n, channels, size, size), np.float32)
    img = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
    return img.astype(np.float32) / np.float32(255.0), labels, list(CLASS_NAMES)


def cache_dir() -> str:
    """Where drawn datasets are kept: NUMBACNN_CACHE_DIR, else $XDG_CACHE_HOME/numbacnn or ~/.cache/numbacnn."""
    if config.CACHE_DIR:
        return config.CACHE_DIR
    return os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "numbacnn")


def _cache_path(n, seed, rgb, size) -> str:
    """The cache file of one dataset; its name holds a digest of this module's source, so images drawn by other
    code are never read back."""
    with open(__file__, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    return os.path.join(cache_dir(), f"shapes-{digest}-{n}-{seed}-{'rgb' if rgb else 'gray'}-{size}.npz")


def cached_shapes(n: int = 12000, seed: int = 0, rgb: bool = False):
    """``make_shapes(n, seed=seed, rgb=rgb)``, kept after the first call as 8-bit pixels in ``cache_dir()``: drawing
    12,000 images takes ~3 s of every run otherwise.  The same values as ``make_shapes`` (pixels / 255); a cache
    file that cannot be read or holds anything else is drawn again, and one that cannot be written is skipped."""
    size = 32 if rgb else 28
    path = _cache_path(int(n), int(seed), bool(rgb), size)
    shape = (int(n), 3 if rgb else 1, size, size)
    try:
        with np.load(path, allow_pickle=False) as f:
            pixels, labels = f["pixels"], f["labels"]
        if pixels.dtype == np.uint8 and pixels.shape == shape and labels.dtype == np.int64 and \
                labels.shape == shape[:1] and int(labels.min()) >= 0 and int(labels.max()) < len(CLASS_NAMES):
            return pixels.astype(np.float32) / np.float32(255.0), labels, list(CLASS_NAMES)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        pass
    x, y, names = make_shapes(n, seed=seed, rgb=rgb)
    try:
        from ..io.atomic import atomic_write
        os.makedirs(cache_dir(), exist_ok=True)
        pixels = np.rint(x * np.float32(255.0)).astype(np.uint8)
        atomic_write(path, lambda f: np.savez(f, pixels=pixels, labels=y), binary=True)
    except OSError:
        pass
    return x, y, names
