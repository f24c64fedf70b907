"""Image files through Pillow (numbacnn/data/images.py): every format and mode, EXIF orientation, the
shorter-side resize and centre crop, and one DataError naming the file for everything that cannot be read."""
from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from numbacnn import config
from numbacnn.data import DataError, Preprocessing, decode, load_image, load_images, read_image, resize, save_image
from numbacnn.data.images import color_name, open_image, to_float

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (12, 10, 3), dtype=np.uint8)           # (H, W, 3)


def luma(rgb):
    """ITU-R 601 luma as Pillow computes it (fixed point, rounded)."""
    r, g, b = (rgb[..., i].astype(np.int64) for i in range(3))
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.uint8)


def smooth(h=48, w=40, seed=1):
    """A smooth RGB image (compresses well as JPEG, so lossy formats stay close)."""
    yy, xx = np.mgrid[0:h, 0:w]
    c = np.random.default_rng(seed).uniform(0.2, 1.0, 3)
    return np.stack([(127 + 100 * np.sin(xx / 7 * c[i] + yy / 9 + i)) for i in range(3)], -1).astype(np.uint8)


def same(prep_h, prep_w, color="rgb"):
    return Preprocessing(prep_h, prep_w, color)


# ----------------------------------------------------------------------------- formats and modes
LOSSLESS_RGB = [("png", {}), ("bmp", {}), ("tif", {}), ("ppm", {}), ("webp", {"lossless": True})]


@pytest.mark.parametrize("ext, kw", LOSSLESS_RGB)
def test_lossless_rgb_formats_give_their_pixels(tmp_path, ext, kw):
    p = tmp_path / f"x.{ext}"
    Image.fromarray(RGB).save(p, **kw)
    out = decode(p, same(12, 10))
    assert out.dtype == np.uint8 and out.shape == (3, 12, 10)
    assert np.array_equal(out, RGB.transpose(2, 0, 1))
    assert np.array_equal(decode(p, same(12, 10, "grey"))[0], luma(RGB))      # grey by ITU-R 601 luma


@pytest.mark.parametrize("ext", ["png", "pgm", "bmp", "tif", "gif", "jpg"])
def test_grey_files_and_grey_to_rgb(tmp_path, ext):
    g = RGB[..., 0]
    p = tmp_path / f"g.{ext}"
    Image.fromarray(g, "L").save(p, **({"quality": 100} if ext == "jpg" else {}))
    out = decode(p, same(12, 10, "grey"))[0].astype(int)
    assert np.abs(out - g).max() <= (3 if ext == "jpg" else 0)
    rgb = decode(p, same(12, 10))
    assert np.array_equal(rgb[0], rgb[1]) and np.array_equal(rgb[1], rgb[2])    # grey repeated


def test_alpha_is_dropped_and_palettes_expanded(tmp_path):
    rgba = np.concatenate([RGB, RNG.integers(0, 256, (12, 10, 1), dtype=np.uint8)], axis=2)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.webp", lossless=True, exact=True)
    for name in ("a.png", "a.webp"):
        assert np.array_equal(decode(tmp_path / name, same(12, 10)), RGB.transpose(2, 0, 1)), name
    la = Image.fromarray(rgba[..., [0, 3]], "LA")
    la.save(tmp_path / "la.png")
    assert np.array_equal(decode(tmp_path / "la.png", same(12, 10, "grey"))[0], rgba[..., 0])
    pal = Image.fromarray(RGB).quantize(colors=16)                       # mode P
    pal.save(tmp_path / "p.png")
    pal.save(tmp_path / "p.gif")
    pal.save(tmp_path / "p.bmp")
    want = np.asarray(pal.convert("RGB")).transpose(2, 0, 1)
    for name in ("p.png", "p.gif", "p.bmp"):
        assert Image.open(tmp_path / name).mode == "P"
        assert np.array_equal(decode(tmp_path / name, same(12, 10)), want), name
    pal.info["transparency"] = 0                                         # palette with transparency: no warning
    pal.save(tmp_path / "pt.png", transparency=0)
    with __import__("warnings").catch_warnings():
        __import__("warnings").simplefilter("error")
        assert np.array_equal(decode(tmp_path / "pt.png", same(12, 10)), want)


@pytest.mark.parametrize("ext", ["png", "tif"])
def test_sixteen_bit_grey_is_scaled_to_eight(tmp_path, ext):
    v = RNG.integers(0, 65536, (12, 10)).astype(np.uint16)
    p = tmp_path / f"d.{ext}"
    Image.fromarray(v).save(p)
    assert Image.open(p).mode.startswith("I")
    want = ((v.astype(np.int64) * 255 + 32767) // 65535).astype(np.uint8)
    assert np.array_equal(decode(p, same(12, 10, "grey"))[0], want)
    assert read_image(p).shape == (12, 10, 1)


def test_lossy_and_cmyk_jpeg_and_webp_stay_close(tmp_path):
    img = smooth(48, 40)
    Image.fromarray(img).save(tmp_path / "s.jpg", quality=95)
    Image.fromarray(img).convert("CMYK").save(tmp_path / "c.jpg", quality=95)
    Image.fromarray(img).save(tmp_path / "s.webp", quality=95)
    for name in ("s.jpg", "c.jpg", "s.webp"):
        out = decode(tmp_path / name, same(48, 40)).astype(int)
        assert np.abs(out - img.transpose(2, 0, 1)).mean() < 4, name


# ----------------------------------------------------------------------------- EXIF, resize, crop
@pytest.mark.parametrize("orientation, turn", [(1, lambda a: a), (3, lambda a: np.rot90(a, 2)),
                                               (6, lambda a: np.rot90(a, -1)), (8, lambda a: np.rot90(a, 1))])
def test_exif_orientation_is_applied(tmp_path, orientation, turn):
    img = smooth(24, 40)                                    # landscape as stored
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(img).save(tmp_path / "o.png", exif=exif)
    Image.fromarray(img).save(tmp_path / "o.jpg", exif=exif, quality=95)
    up = turn(img)                                          # as it is meant to be seen
    h, w = up.shape[:2]
    assert np.array_equal(decode(tmp_path / "o.png", same(h, w)), up.transpose(2, 0, 1))
    assert np.abs(decode(tmp_path / "o.jpg", same(h, w)).astype(int) - up.transpose(2, 0, 1)).mean() < 4
    assert read_image(tmp_path / "o.png").shape == (h, w, 3)


def test_shorter_side_resize_and_centre_crop(tmp_path):
    img = np.zeros((40, 80), np.uint8)
    img[:, 20:60] = 255                                     # the centre square is white, the sides black
    Image.fromarray(img, "L").save(tmp_path / "wide.png")
    out = decode(tmp_path / "wide.png", Preprocessing(20, 20, "grey"))        # 40x80 -> 20x40 -> centre 20x20
    assert out.shape == (1, 20, 20) and out[0, :, 2:-2].min() == 255 and out.mean() > 230
    # resize larger than the crop: the scale is 1 here, so the crop is the centre pixels exactly
    ramp = np.arange(40 * 80, dtype=np.int64).reshape(40, 80) % 251
    Image.fromarray(ramp.astype(np.uint8), "L").save(tmp_path / "ramp.png")
    exact = decode(tmp_path / "ramp.png", Preprocessing(20, 30, "grey", resize=40))
    assert np.array_equal(exact[0], ramp[10:30, 25:55])
    tall = decode(tmp_path / "wide.png", Preprocessing(30, 10, "grey"))       # crop wider than the shorter side
    assert tall.shape == (1, 30, 10)
    # a large JPEG decoded at reduced scale (draft) gives what the full decode + resize gives, within rounding
    big = np.kron(smooth(32, 48), np.ones((8, 8, 1), np.uint8))
    Image.fromarray(big).save(tmp_path / "big.jpg", quality=95)
    Image.fromarray(big).save(tmp_path / "big.png")
    a, b = (decode(tmp_path / n, Preprocessing(32, 32)).astype(int) for n in ("big.jpg", "big.png"))
    assert np.abs(a - b).mean() < 4


def test_load_image_helpers_and_save_image(tmp_path):
    rgb = RNG.random((3, 10, 12)).astype(np.float32)
    save_image(tmp_path / "x.png", rgb)
    save_image(tmp_path / "x.ppm", rgb)
    q = np.rint(rgb * 255) / 255
    for name in ("x.png", "x.ppm"):
        assert np.allclose(load_image(tmp_path / name, (3, 10, 12)), q)
        assert np.allclose(read_image(tmp_path / name), q.transpose(1, 2, 0))
    assert load_images([tmp_path / "x.png"] * 2, (1, 5, 6)).shape == (2, 1, 5, 6)
    assert [n for n in os.listdir(tmp_path) if n.endswith(".tmp")] == []         # written atomically
    assert to_float(np.array([0, 255], np.uint8)).tolist() == [0.0, 1.0]
    assert np.allclose(resize(np.full((2, 3, 5), 0.3, np.float32), 7, 2), 0.3)
    with pytest.raises(ValueError, match="C = 1 or 3"):
        save_image(tmp_path / "y.png", np.zeros((2, 4, 4)))


def test_preprocessing_record_round_trips_and_is_checked():
    p = Preprocessing(64, 48, "grey", resize=73)
    assert Preprocessing.from_json(p.to_json()) == p and p.shape == (1, 64, 48)
    assert Preprocessing.for_shape((3, 32, 32)).to_json() == {"size": [32, 32], "color": "rgb", "resize": None}
    assert color_name("Gray") == "grey" and color_name("RGB") == "rgb"
    for doc, msg in [({"size": [0, 4], "color": "rgb"}, "size"), ({"size": [4, 4], "color": "cmyk"}, "colour"),
                     ({"size": [4, 4], "color": "rgb", "resize": -1}, "resize"), ([1, 2], "damaged"),
                     ({"size": [4, 4], "color": "rgb", "evil": 1}, "damaged")]:
        with pytest.raises(DataError, match=msg):
            Preprocessing.from_json(doc, "m.h5")
    with pytest.raises(DataError, match="4 channels"):
        Preprocessing.for_shape((4, 8, 8))


# ----------------------------------------------------------------------------- what cannot be read
def _png_header(width, height):
    import struct
    import zlib

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b""))


def test_corrupt_truncated_and_bomb_files_are_one_error_naming_them(tmp_path, monkeypatch):
    Image.fromarray(smooth(64, 64)).save(tmp_path / "ok.jpg", quality=90)
    Image.fromarray(smooth(64, 64)).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.jpg").read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(data[:len(data) // 2])
    (tmp_path / "trunc.png").write_bytes((tmp_path / "ok.png").read_bytes()[:300])
    (tmp_path / "junk.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)
    (tmp_path / "text.png").write_text("not an image at all")
    (tmp_path / "bomb.png").write_bytes(_png_header(30_000, 30_000))          # 9e8 pixels: over 2x Pillow's limit
    (tmp_path / "big.png").write_bytes(_png_header(5000, 5000))
    cases = [("trunc.jpg", "cannot decode"), ("trunc.png", "cannot decode"), ("junk.jpg", "not a readable image"),
             ("text.png", "not a readable image"), ("bomb.png", "decompression bomb")]
    for name, message in cases:
        with pytest.raises(DataError, match=message) as e:
            decode(tmp_path / name, same(8, 8))
        assert str(tmp_path / name) in str(e.value) and "\n" not in str(e.value)
        assert str(e.value).count(str(tmp_path / name)) == 1
    monkeypatch.setattr(config, "MAX_GIB", 0.01)
    with pytest.raises(DataError, match=r"big.png: an image of 5000x5000 pixels .* NUMBACNN_MAX_GIB"):
        open_image(tmp_path / "big.png")
    for path, message in [(tmp_path / "none.png", "no such file"), (tmp_path, "is a directory")]:
        with pytest.raises(DataError, match=message):
            decode(path, same(8, 8))
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "fifo.png")
        with pytest.raises(DataError, match="not a regular file"):
            decode(tmp_path / "fifo.png", same(8, 8))
