"""Image files for ``predict``: PGM/PPM and PNG readers, resizing, a writer.

No imaging library is needed: Netpbm (P2/P3/P5/P6, 8 or 16 bit) is parsed by
hand and PNG by a small decoder built on ``zlib`` (8-bit grey, grey+alpha,
RGB, RGBA and palette images, non-interlaced; anything else is a
``DataError``).  ``load_image(path, (C, H, W))`` returns a float32 array in
[0, 1] converted to C channels (grey <-> RGB by ITU-R 601 luma or by
repetition; alpha is dropped) and resized with bilinear or nearest sampling.
"""
from __future__ import annotations

import struct
import zlib

import numpy as np

from ..io import limits
from .loaders import DataError, read_file_bytes

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}     # colour type -> samples per pixel


# ----------------------------------------------------------------------------- Netpbm

def _check_pixels(path, count):
    """Refuse from the header an image whose samples, as float32, would take more than memory allows."""
    try:
        limits.check_declared(16 * count, f"{path}: an image of {count:,} samples")
    except ValueError as exc:
        raise DataError(str(exc)) from None


def _pnm_tokens(data: bytes, count: int, path: str):
    """The first ``count`` whitespace-separated header tokens (skipping # comments) and the offset after them."""
    tokens, i = [], 0
    while len(tokens) < count:
        while i < len(data) and data[i:i + 1].isspace():
            i += 1
        if i < len(data) and data[i:i + 1] == b"#":
            while i < len(data) and data[i:i + 1] not in (b"\n", b"\r"):
                i += 1
            continue
        j = i
        while j < len(data) and not data[j:j + 1].isspace() and data[j:j + 1] != b"#":
            j += 1
        if j == i:
            raise DataError(f"{path}: truncated Netpbm header")
        tokens.append(data[i:j])
        i = j
    return tokens, i


def decode_pnm(data: bytes, path: str = "<bytes>") -> np.ndarray:
    """Decode PGM/PPM (P2, P3, P5, P6) to ``(H, W, C)`` float32 in [0, 1]."""
    magic = data[:2]
    if magic not in (b"P2", b"P3", b"P5", b"P6"):
        raise DataError(f"{path}: not a PGM/PPM file (magic {magic!r}; P1/P4 bitmaps are not supported)")
    (_, w, h, maxval), offset = _pnm_tokens(data, 4, path)
    try:
        w, h, maxval = int(w), int(h), int(maxval)
    except ValueError:
        raise DataError(f"{path}: malformed Netpbm header") from None
    if w < 1 or h < 1 or not 0 < maxval < 65536:
        raise DataError(f"{path}: bad Netpbm size {w}x{h} or maxval {maxval}")
    c = 3 if magic in (b"P3", b"P6") else 1
    count = w * h * c
    _check_pixels(path, count)
    if magic in (b"P5", b"P6"):
        dtype = np.dtype(">u2") if maxval > 255 else np.dtype(np.uint8)
        body = data[offset + 1:]                      # exactly one whitespace byte after maxval
        if len(body) < count * dtype.itemsize:
            raise DataError(f"{path}: truncated pixel data ({len(body)} bytes, need {count * dtype.itemsize})")
        pixels = np.frombuffer(body, dtype, count).astype(np.float32)
    else:
        try:
            pixels = np.array(data[offset:].split()[:count], dtype=np.float32)
        except ValueError:
            raise DataError(f"{path}: non-numeric pixel value in ASCII Netpbm data") from None
        if pixels.size < count:
            raise DataError(f"{path}: truncated pixel data ({pixels.size} values, need {count})")
    return np.clip(pixels / maxval, 0.0, 1.0).reshape(h, w, c)


# ----------------------------------------------------------------------------- PNG

def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


def _unfilter(raw: bytes, h: int, stride: int, bpp: int, path: str) -> np.ndarray:
    """Undo PNG's per-row filters; returns (h, stride) uint8."""
    if len(raw) != h * (stride + 1):
        raise DataError(f"{path}: PNG image data has {len(raw)} bytes, expected {h * (stride + 1)}")
    rows = np.frombuffer(raw, np.uint8).reshape(h, stride + 1)
    out = np.zeros((h, stride), np.uint8)
    prior = np.zeros(stride, np.uint8)
    for y in range(h):
        ftype, line = rows[y, 0], rows[y, 1:]
        if ftype == 0:
            cur = line.copy()
        elif ftype == 1:      # Sub: running sum along each channel, modulo 256
            cur = np.cumsum(line.reshape(-1, bpp), axis=0, dtype=np.uint8).ravel()
        elif ftype == 2:      # Up
            cur = line + prior
        elif ftype in (3, 4):  # Average, Paeth: depend on the reconstructed left neighbour
            cur = bytearray(line.tobytes())
            up = prior.tolist()
            for i in range(stride):
                left = cur[i - bpp] if i >= bpp else 0
                if ftype == 3:
                    cur[i] = (cur[i] + ((left + up[i]) >> 1)) & 0xFF
                else:
                    upleft = up[i - bpp] if i >= bpp else 0
                    cur[i] = (cur[i] + _paeth(left, up[i], upleft)) & 0xFF
            cur = np.frombuffer(bytes(cur), np.uint8)
        else:
            raise DataError(f"{path}: bad PNG filter type {ftype} on row {y}")
        out[y] = cur
        prior = out[y]
    return out


def decode_png(data: bytes, path: str = "<bytes>") -> np.ndarray:
    """Decode an 8-bit non-interlaced PNG to ``(H, W, C)`` float32 in [0, 1] (C = 1, 2, 3 or 4)."""
    if not data.startswith(PNG_SIGNATURE):
        raise DataError(f"{path}: not a PNG file (bad signature)")
    pos, header, palette, idat = 8, None, None, []
    while True:
        if pos + 8 > len(data):
            raise DataError(f"{path}: truncated PNG (no IEND chunk)")
        length, ctype = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if len(body) != length or pos + 12 + length > len(data):
            raise DataError(f"{path}: truncated PNG chunk {ctype!r}")
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        if zlib.crc32(ctype + body) != crc:
            raise DataError(f"{path}: PNG chunk {ctype!r} fails its CRC check (corrupt file)")
        pos += 12 + length
        if ctype == b"IHDR":
            if length != 13:
                raise DataError(f"{path}: bad PNG IHDR chunk")
            header = struct.unpack(">IIBBBBB", body)
        elif ctype == b"PLTE":
            palette = np.frombuffer(body, np.uint8).reshape(-1, 3)
        elif ctype == b"IDAT":
            idat.append(body)
        elif ctype == b"IEND":
            break
    if header is None:
        raise DataError(f"{path}: PNG has no IHDR chunk")
    w, h, depth, colour, compression, filter_method, interlace = header
    if depth != 8 or colour not in _PNG_CHANNELS:
        raise DataError(f"{path}: unsupported PNG format (bit depth {depth}, colour type {colour}; "
                        "only 8-bit grey, grey+alpha, RGB, RGBA and palette are supported)")
    if interlace != 0 or compression != 0 or filter_method != 0:
        raise DataError(f"{path}: unsupported PNG (interlaced or unknown compression/filter method)")
    if w == 0 or h == 0:
        raise DataError(f"{path}: PNG has zero size {w}x{h}")
    channels = _PNG_CHANNELS[colour]
    _check_pixels(path, w * h * channels)
    try:      # inflate no more than the image needs (+1 byte, to see that there is more)
        raw = zlib.decompressobj().decompress(b"".join(idat), h * (w * channels + 1) + 1)
    except zlib.error as exc:
        raise DataError(f"{path}: corrupt PNG image data ({exc})") from None
    img = _unfilter(raw, h, w * channels, channels, path).reshape(h, w, channels)
    if colour == 3:
        if palette is None:
            raise DataError(f"{path}: palette PNG without a PLTE chunk")
        if img.max() >= len(palette):
            raise DataError(f"{path}: PNG palette index {int(img.max())} out of range")
        img = palette[img[..., 0]]
    return img.astype(np.float32) / np.float32(255.0)


def encode_png(img: np.ndarray) -> bytes:
    """Encode ``(H, W)`` or ``(H, W, C)`` (C in 1..4) uint8 as a PNG (filter type 0)."""
    a = np.asarray(img, np.uint8)
    if a.ndim == 2:
        a = a[..., None]
    h, w, c = a.shape
    colour = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    raw = np.concatenate([np.zeros((h, 1), np.uint8), a.reshape(h, w * c)], axis=1).tobytes()

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (PNG_SIGNATURE + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, colour, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


# ----------------------------------------------------------------------------- read, convert, resize

def read_image(path: str) -> np.ndarray:
    """Read a PNG, PGM or PPM file into ``(H, W, C)`` float32 in [0, 1]."""
    data = read_file_bytes(path)
    if data.startswith(PNG_SIGNATURE):
        return decode_png(data, path)
    if data[:1] == b"P":
        return decode_pnm(data, path)
    known = _known_format(data)
    if known:
        raise DataError(f"{path}: {known} images are not supported yet (use PNG, PGM or PPM)")
    raise DataError(f"{path}: unsupported image format (expected PNG, PGM or PPM)")


def _known_format(data: bytes) -> str | None:
    """The name of an image format recognised by its magic bytes (JPEG, GIF, BMP, TIFF, WebP), else None."""
    for magic, name in ((b"\xff\xd8\xff", "JPEG"), (b"GIF8", "GIF"), (b"BM", "BMP"), (b"II*\x00", "TIFF"),
                        (b"MM\x00*", "TIFF")):
        if data.startswith(magic):
            return name
    return "WebP" if data[:4] == b"RIFF" and data[8:12] == b"WEBP" else None


def to_channels(img: np.ndarray, channels: int, path: str = "<image>") -> np.ndarray:
    """(H, W, c) -> (channels, H, W): alpha dropped, grey repeated, RGB -> grey by luma."""
    if img.shape[2] in (2, 4):
        img = img[..., :-1]
    if channels == img.shape[2]:
        out = img
    elif channels == 1 and img.shape[2] == 3:
        out = img @ np.array([0.299, 0.587, 0.114], np.float32)[:, None]
    elif img.shape[2] == 1:
        out = np.repeat(img, channels, axis=2)
    else:
        raise DataError(f"{path}: cannot convert a {img.shape[2]}-channel image to {channels} channels")
    return np.ascontiguousarray(out.transpose(2, 0, 1), dtype=np.float32)


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


def resize(img: np.ndarray, height: int, width: int, method: str = "bilinear") -> np.ndarray:
    """Resize ``img (C, H, W)`` to ``(C, height, width)``: bilinear (half-pixel centres, like
    PyTorch's ``align_corners=False``) or nearest."""
    c, h, w = img.shape
    if (h, w) == (height, width):
        return img.astype(np.float32, copy=True)
    ys = (np.arange(height) + 0.5) * (h / height) - 0.5
    xs = (np.arange(width) + 0.5) * (w / width) - 0.5
    if method == "nearest":
        yi = np.clip(np.floor((np.arange(height) + 0.5) * (h / height)).astype(np.int64), 0, h - 1)
        xi = np.clip(np.floor((np.arange(width) + 0.5) * (w / width)).astype(np.int64), 0, w - 1)
        return img[:, yi][:, :, xi].astype(np.float32)
    if method != "bilinear":
        raise ValueError(f"resize: unknown method {method!r} (use bilinear or nearest)")
    return sample_bilinear(img[None], ys[None], xs[None])[0]


def load_image(path: str, shape, method: str = "bilinear") -> np.ndarray:
    """Read an image file as ``shape = (C, H, W)`` float32 in [0, 1]."""
    c, h, w = (int(s) for s in shape)
    return resize(to_channels(read_image(path), c, path), h, w, method)


def load_images(paths, shape, method: str = "bilinear") -> np.ndarray:
    """Several image files as one ``(N, C, H, W)`` float32 batch."""
    return np.stack([load_image(p, shape, method) for p in paths])


def save_image(path: str, img: np.ndarray) -> None:
    """Write ``img (C, H, W)`` in [0, 1] (C = 1 or 3) as PNG, or PGM/PPM when the name ends in .pgm/.ppm."""
    a = np.clip(np.rint(np.asarray(img, np.float32) * 255.0), 0, 255).astype(np.uint8)
    if a.ndim != 3 or a.shape[0] not in (1, 3):
        raise ValueError(f"save_image: expected (C, H, W) with C = 1 or 3, got {a.shape}")
    hwc = a.transpose(1, 2, 0)
    if path.lower().endswith((".pgm", ".ppm")):
        magic = b"P5" if a.shape[0] == 1 else b"P6"
        data = magic + b"\n%d %d\n255\n" % (a.shape[2], a.shape[1]) + hwc.tobytes()
    else:
        data = encode_png(hwc)
    with open(path, "wb") as f:
        f.write(data)
