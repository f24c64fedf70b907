"""Image files through Pillow: decoding, EXIF orientation, colour mode, resize and centre crop.

Every format Pillow reads (JPEG, PNG, BMP, GIF, TIFF, WebP, PGM/PPM, ...) in every mode (grey, RGB,
RGBA, palette, 16-bit).  A ``Preprocessing`` says how a file becomes a model input, and the model
file records it, so ``predict`` and ``evaluate`` apply exactly what training applied::

    1. EXIF orientation applied (a phone's portrait photo stands upright)
    2. colour: grey (ITU-R 601 luma, Pillow's ``convert('L')``) or rgb; alpha dropped; 16-bit samples
       scaled to 8 bits (x * 255 / 65535, rounded)
    3. resized (keeping its aspect ratio) as little as lets the ``height x width`` crop fit, or so that
       its shorter side is ``resize`` when that is larger (torchvision's Resize(256) + CenterCrop(224)),
       then the centre crop: one bilinear resampling (Pillow's, antialiased when shrinking) of just the
       cropped region
    4. uint8 (C, H, W); as float32, divided by 255 (``to_float``)

JPEG files are decoded at a reduced scale (libjpeg's DCT scaling, Pillow's ``draft``) when that is
still at least the size step 3 resizes to: the same pixels at training and prediction, a faster decode.

Pillow's decompression-bomb limit stays on (``PIL.Image.MAX_IMAGE_PIXELS``: a warning above it, an
error above twice it), and the pixels a header declares are checked against ``NUMBACNN_MAX_GIB``
(``io.limits``) before anything is decoded.  A missing, corrupt or truncated file is one
``DataError`` naming it.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from ..io import limits
from .loaders import DataError

#: the file names read as images in folders (other files are left alone)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pnm",
                  ".pbm")
COLORS = {"grey": 1, "rgb": 3}
_ALIASES = {"gray": "grey", "l": "grey", "rgb": "rgb", "grey": "grey", "color": "rgb", "colour": "rgb"}
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_ORIENTATION = 0x0112


def is_image_name(name) -> bool:
    """True when the file name ends in one of ``IMAGE_SUFFIXES`` (any case)."""
    return os.fspath(name).lower().endswith(IMAGE_SUFFIXES)


def color_name(value, where: str = "--color") -> str:
    """'grey' or 'rgb' for the names people use (gray, grey, L, rgb, colour); DataError otherwise."""
    name = _ALIASES.get(str(value).strip().lower())
    if name is None:
        raise DataError(f"{where}: unknown colour mode {value!r} (use grey or rgb)")
    return name


@dataclass(frozen=True)
class Preprocessing:
    """How an image file becomes a model input (see the module docstring); stored in model files."""

    height: int
    width: int
    color: str = "rgb"
    resize: int | None = None       # the shorter side before the centre crop; None: just what the crop needs

    @property
    def channels(self) -> int:
        return COLORS[self.color]

    @property
    def shape(self) -> tuple:
        return self.channels, self.height, self.width

    def scale(self, w: int, h: int) -> float:
        """The factor a ``w x h`` image is resized by before the centre crop."""
        return max(self.height / h, self.width / w, (self.resize or 0) / min(w, h))

    @classmethod
    def for_shape(cls, shape, resize=None) -> "Preprocessing":
        """The preprocessing that gives a model input of ``shape`` (C, H, W), C = 1 (grey) or 3 (rgb)."""
        c, h, w = (int(s) for s in shape)
        if c not in (1, 3):
            raise DataError(f"a model input of {c} channels cannot be made from image files (1: grey, 3: rgb)")
        return cls(h, w, "grey" if c == 1 else "rgb", resize)

    def to_json(self) -> dict:
        return {"size": [self.height, self.width], "color": self.color, "resize": self.resize}

    @classmethod
    def from_json(cls, doc, where: str = "preprocessing") -> "Preprocessing":
        """A stored preprocessing, every field checked (DataError names ``where`` and the field)."""
        def ok_int(v, lo=1, hi=1 << 16):
            return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi

        if not isinstance(doc, dict) or set(doc) - {"size", "color", "resize"}:
            raise DataError(f"{where}: damaged preprocessing record {str(doc)[:60]!r}")
        size = doc.get("size")
        if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(ok_int(s) for s in size)):
            raise DataError(f"{where}: preprocessing size {size!r} is not [height, width] (1..65536)")
        if doc.get("color") not in COLORS:
            raise DataError(f"{where}: preprocessing colour {doc.get('color')!r} is not grey or rgb")
        resize = doc.get("resize")
        if resize is not None and not ok_int(resize):
            raise DataError(f"{where}: preprocessing resize {resize!r} is not a side in 1..65536")
        return cls(int(size[0]), int(size[1]), doc["color"], resize)

    def describe(self) -> str:
        resize = f"shorter side resized to {self.resize}, " if self.resize else ""
        return f"{self.color}, {resize}centre {self.height}x{self.width} crop"


# ----------------------------------------------------------------------------- decoding

def _why(exc, path) -> str:
    """Pillow's message without the file name (the error names it once, first)."""
    text = " ".join(str(exc).replace(repr(path), "").replace(path, "").split()).rstrip(" :")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def open_image(path) -> Image.Image:
    """The Pillow image of ``path``, header read and sizes checked, pixels not yet decoded."""
    path = os.fspath(path)
    try:
        limits.regular_file(path)
    except ValueError as exc:
        raise DataError(str(exc)) from None
    try:
        im = Image.open(path)
    except Image.DecompressionBombError as exc:
        raise DataError(f"{path}: refused as a decompression bomb ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - Pillow's plugins raise many types on damaged headers
        raise DataError(f"{path}: not a readable image ({_why(exc, path)})") from None
    w, h = im.size
    try:
        limits.check_declared(4 * w * h * max(len(im.getbands()), 1), f"{path}: an image of {w}x{h} pixels")
    except ValueError as exc:
        im.close()
        raise DataError(str(exc)) from None
    return im


def _draft(im, prep, color):
    """Ask a JPEG decoder for a reduced scale still at least as large as the resize needs."""
    if im.format != "JPEG":
        return
    w, h = im.size
    turned = im.getexif().get(_ORIENTATION, 1) in (5, 6, 7, 8)
    tw, th = (h, w) if turned else (w, h)                       # the upright size
    scale = prep.scale(tw, th)
    need = (math.ceil(tw * scale), math.ceil(th * scale))
    im.draft("L" if color == "grey" else "RGB", need[::-1] if turned else need)


def _convert(im, color):
    """``im`` in mode L (grey) or RGB: 16-bit samples scaled, palettes expanded, alpha dropped."""
    if im.mode in _SIXTEEN_BIT:
        a = np.clip(np.asarray(im, dtype=np.int64), 0, 65535)
        im = Image.fromarray(((a * 255 + 32767) // 65535).astype(np.uint8), "L")
    elif im.mode in ("P", "PA"):
        im = im.convert("RGBA")                # transparency included, without Pillow's warning
    target = "L" if color == "grey" else "RGB"
    if im.mode == target:
        return im
    try:
        return im.convert(target)
    except ValueError:                         # a conversion Pillow has no direct path for
        return im.convert("RGB").convert(target)


def _resize_crop(im, prep):
    """One bilinear resampling of the centre region that becomes the ``height x width`` crop."""
    w, h = im.size
    scale = prep.scale(w, h)
    bw, bh = prep.width / scale, prep.height / scale
    left, top = (w - bw) / 2, (h - bh) / 2
    return im.resize((prep.width, prep.height), Image.Resampling.BILINEAR, box=(left, top, left + bw, top + bh))


def decode(path, prep: Preprocessing) -> np.ndarray:
    """Read ``path`` as ``prep.shape`` (C, H, W) uint8 (see the module docstring)."""
    path = os.fspath(path)
    with open_image(path) as im:
        try:
            _draft(im, prep, prep.color)
            im.load()
            ImageOps.exif_transpose(im, in_place=True)
            out = _resize_crop(_convert(im, prep.color), prep)
            a = np.asarray(out, dtype=np.uint8)
        except DataError:
            raise
        except Exception as exc:  # noqa: BLE001 - truncated or corrupt data: OSError, SyntaxError, ValueError, ...
            raise DataError(f"{path}: cannot decode ({_why(exc, path)})") from None
    a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    return np.ascontiguousarray(a)


def to_float(a) -> np.ndarray:
    """uint8 pixels as float32 in [0, 1] (x / 255, as every loader of numbacnn scales them)."""
    return np.asarray(a).astype(np.float32) / np.float32(255.0)


def _prep(shape_or_prep, resize=None) -> Preprocessing:
    if isinstance(shape_or_prep, Preprocessing):
        return shape_or_prep
    return Preprocessing.for_shape(shape_or_prep, resize)


def load_image(path, shape_or_prep) -> np.ndarray:
    """An image file as float32 (C, H, W) in [0, 1]: ``shape_or_prep`` is a ``Preprocessing`` or a shape
    (C, H, W) (then: resized as little as lets the centre crop fit, grey for C = 1, rgb for C = 3)."""
    return to_float(decode(path, _prep(shape_or_prep)))


def load_images(paths, shape_or_prep) -> np.ndarray:
    """Several image files as one float32 (N, C, H, W) batch (see ``load_image``)."""
    prep = _prep(shape_or_prep)
    limits.check_declared(4 * len(paths) * math.prod(prep.shape), f"{len(paths):,} images of shape {prep.shape}")
    return np.stack([load_image(p, prep) for p in paths]) if len(paths) else np.zeros((0, *prep.shape), np.float32)


def read_image(path) -> np.ndarray:
    """An image file at its own size, upright, as (H, W, C) float32 in [0, 1]: C = 1 for grey (and 16-bit
    grey) files, 3 for every other mode (alpha dropped)."""
    path = os.fspath(path)
    with open_image(path) as im:
        try:
            im.load()
            ImageOps.exif_transpose(im, in_place=True)
            grey = im.mode in ("1", "L", "LA", "I", "F") or im.mode.startswith("I;16")
            a = np.asarray(_convert(im, "grey" if grey else "rgb"), dtype=np.uint8)
        except Exception as exc:  # noqa: BLE001 - as in decode
            raise DataError(f"{path}: cannot decode ({_why(exc, path)})") from None
    return to_float(a[..., None] if a.ndim == 2 else a)


def save_image(path, img) -> None:
    """Write ``img (C, H, W)`` in [0, 1] (C = 1 or 3) in the format its name says (PNG, JPEG, PGM, ...),
    atomically (a temporary file, then a rename)."""
    path = os.fspath(path)
    a = np.clip(np.rint(np.asarray(img, np.float32) * 255.0), 0, 255).astype(np.uint8)
    if a.ndim != 3 or a.shape[0] not in (1, 3):
        raise ValueError(f"save_image: expected (C, H, W) with C = 1 or 3, got {a.shape}")
    fmt = Image.registered_extensions().get(os.path.splitext(path)[1].lower(), "PNG")
    im = Image.fromarray(a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0), "L" if a.shape[0] == 1 else "RGB")
    from ..io.atomic import atomic_write
    atomic_write(path, lambda f: im.save(f, format=fmt), binary=True)


def resize(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize float ``img (C, H, W)`` to ``(C, height, width)`` with Pillow's bilinear filter (per channel,
    in float32: no rounding to 8 bits)."""
    img = np.asarray(img, np.float32)
    if img.shape[1:] == (height, width):
        return img.copy()
    return np.stack([np.asarray(Image.fromarray(c, "F").resize((width, height), Image.Resampling.BILINEAR))
                     for c in img]).astype(np.float32)


__all__ = ["Preprocessing", "IMAGE_SUFFIXES", "COLORS", "is_image_name", "color_name", "open_image", "decode",
           "to_float", "load_image", "load_images", "read_image", "save_image", "resize"]
