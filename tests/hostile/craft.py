"""Builders of damaged and hostile files, each small on disk (issue 12).

Model files are edits of a valid one (``h5py``), re-sealed with fresh checksums
(``guard.seal``) unless the point is a damage the checksums must catch, so that
each structural check is what stops its file.  Files that must not be read
(external storage, external links, virtual datasets) point at files in an
``outside`` directory that the tests watch with inotify.
"""
from __future__ import annotations

import gzip
import json
import os
import shutil
import struct
import zipfile
import zlib

import h5py
import numpy as np

from numbacnn.io import guard

WEIGHT = "model_weights/fc3/weight"     # LeNet-5's classifier: (10, 84)
BIAS = "model_weights/fc3/bias"         # (10,)


# ---------------------------------------------------------------- model files
def seal_tolerant(f):
    """``guard.seal``, skipping datasets that cannot (an unavailable filter) or should not (a bomb) be read:
    checksums elsewhere stay right, so the structural check is what refuses the file."""
    def stamp(_, obj):
        if isinstance(obj, h5py.Dataset):
            if obj.size > 10 ** 7:
                return
            try:
                obj.attrs[guard.CHECKSUM] = guard.array_digest(obj[()])
            except OSError:
                pass
        else:
            try:
                obj.attrs[guard.CHECKSUM] = guard.group_digest(dict(obj.attrs), list(obj.keys()))
            except ValueError:      # an attribute no model file has (an array): refused before its checksum
                pass
    f.visititems(stamp)
    stamp("/", f)


def edited(valid, dst, edit, seal=True):
    """A copy of ``valid`` at ``dst`` changed by ``edit(h5py.File)`` (then re-sealed)."""
    shutil.copy(valid, dst)
    with h5py.File(dst, "a") as f:
        edit(f)
        if seal:
            seal_tolerant(f)
    return dst


def replace(f, path, **create):
    """Put a new dataset (``create_dataset`` arguments) where ``path`` was."""
    if "shape" not in create:
        create = {"data": f[path][()], **create}
    del f[path]
    return f.create_dataset(path, **create)


def set_array(path, fn):
    """An edit that sets dataset ``path`` to ``fn(its values)`` (same dtype and shape)."""
    def edit(f):
        f[path][...] = fn(f[path][()])
    return edit


def set_attr(group, name, value, as_json=True):
    def edit(f):
        f[group].attrs[name] = json.dumps(value) if as_json else value
    return edit


def set_config(fn):
    """An edit of the architecture: ``fn(model_config dict)`` changes it in place."""
    def edit(f):
        cfg = json.loads(f.attrs["model_config"])
        fn(cfg)
        f.attrs["model_config"] = json.dumps(cfg)
    return edit


def layer_config(cfg, name):
    return next(n for n in cfg["nodes"] if n["name"] == name)["config"]


def other_file(outside):
    """``outside/other.h5``: arrays a hostile file points at (they must never be read)."""
    path = os.path.join(outside, "other.h5")
    if not os.path.exists(path):
        with h5py.File(path, "w") as f:
            f["fc3/weight"] = np.ones((10, 84), np.float32)
            f["fc3/bias"] = np.ones(10, np.float32)
    return path


def sentinel(outside):
    """``outside/sentinel.bin``: bytes external storage points at (they must never be read)."""
    path = os.path.join(outside, "sentinel.bin")
    if not os.path.exists(path):
        with open(path, "wb") as fh:
            fh.write(b"\x3f" * 4096)
    return path


def external_storage(outside):
    def edit(f):
        del f[BIAS]
        f.create_dataset(BIAS, shape=(10,), dtype=np.float32, external=[(sentinel(outside), 0, 40)])
    return edit


def external_link(outside):
    def edit(f):
        del f["model_weights/fc3"]
        f["model_weights/fc3"] = h5py.ExternalLink(other_file(outside), "/fc3")
    return edit


def soft_link(f):
    del f["model_weights/fc3"]
    f["model_weights/fc3"] = h5py.SoftLink("/training_state/best_weights/fc3")


def virtual_dataset(outside):
    def edit(f):
        layout = h5py.VirtualLayout(shape=(10,), dtype=np.float32)
        layout[:] = h5py.VirtualSource(other_file(outside), "fc3/bias", shape=(10,))
        del f[BIAS]
        f.create_virtual_dataset(BIAS, layout)
    return edit


def user_filter(f):
    """fc3/weight through filter 32001 (Blosc, not installed here), declared optional so HDF5 writes it."""
    data = f[WEIGHT][()]
    del f[WEIGHT]
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_chunk((10, 84))
    dcpl.set_filter(32001, h5py.h5z.FLAG_OPTIONAL, ())
    space = h5py.h5s.create_simple((10, 84))
    dsid = h5py.h5d.create(f["model_weights/fc3"].id, b"weight", h5py.h5t.IEEE_F32LE, space, dcpl=dcpl)
    dsid.write(h5py.h5s.ALL, h5py.h5s.ALL, data)


def fill_value_bomb(f):
    """The issue's gzip dataset of fill values: 40 GiB declared, nothing stored."""
    del f[BIAS]
    f.create_dataset(BIAS, shape=(10 * 2 ** 30,), dtype=np.float32, chunks=(2 ** 20,), compression="gzip")


def unallocated(f):
    """fc1/weight with the right shape but no stored bytes (reading would make up fill values)."""
    replace(f, "model_weights/fc1/weight", shape=f["model_weights/fc1/weight"].shape, dtype=np.float32,
            chunks=(40, 40))


def garble_bytes(path, dataset, count=4, seed=0):
    """Flip ``count`` bytes inside a dataset's stored data (no re-seal: the checksum must catch it)."""
    with h5py.File(path, "r") as f:
        offset, size = f[dataset].id.get_offset(), f[dataset].id.get_storage_size()
    data = bytearray(open(path, "rb").read())
    rng = np.random.default_rng(seed)
    for pos in rng.integers(offset, offset + size, count):
        data[pos] ^= 0x5A
    with open(path, "wb") as fh:
        fh.write(data)
    return path


def flip_bytes(src, dst, count, seed, span=None):
    """``src`` with ``count`` random bytes of its first ``span`` bytes (default: all) replaced, seeded."""
    data = bytearray(open(src, "rb").read())
    rng = np.random.default_rng(seed)
    for pos in rng.integers(0, min(span or len(data), len(data)), count):
        data[pos] = int(rng.integers(0, 256))
    with open(dst, "wb") as fh:
        fh.write(data)
    return dst


# ---------------------------------------------------------------- data files
def write_idx(path, array, gz=False, header_shape=None):
    """An IDX file of ``array`` (uint8 or int32); ``header_shape`` overrides the dimensions declared."""
    code = {np.dtype(np.uint8): 0x08, np.dtype(np.int32): 0x0C}[array.dtype]
    shape = array.shape if header_shape is None else header_shape
    head = bytes([0, 0, code, len(shape)]) + b"".join(struct.pack(">I", d) for d in shape)
    body = head + array.astype(array.dtype.newbyteorder(">")).tobytes()
    with (gzip.open(path, "wb", compresslevel=1) if gz else open(path, "wb")) as fh:
        fh.write(body)
    return path


def gzip_of_zeros(path, total, head=b""):
    """A gzip file inflating to ``head`` then zeros up to ``total`` bytes, small on disk: one gzip member of
    16 MiB of zeros, repeated (gzip readers inflate concatenated members as one stream)."""
    block = 16 << 20
    member = gzip.compress(bytes(block), compresslevel=9)
    with open(path, "wb") as fh:
        fh.write(gzip.compress(head + bytes(max(0, min(block, total) - len(head)))))
        for _ in range(max(0, total - block) // block):
            fh.write(member)
    return path


def npy_bytes(shape, dtype="|u1", data=b""):
    """A .npy member whose header declares ``shape`` and whose data is ``data`` (it may be short)."""
    header = repr({"descr": dtype, "fortran_order": False, "shape": tuple(shape)}).encode()
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + data


def write_npz(path, members, compress=zipfile.ZIP_STORED):
    """An .npz (zip) of raw ``{name: .npy bytes}``."""
    with zipfile.ZipFile(path, "w", compress) as zf:
        for name, blob in members.items():
            zf.writestr(name + ".npy", blob)
    return path


def lie_about_size(path, member, size):
    """Patch a zip member's declared uncompressed size (local header and central directory) to ``size``."""
    data = bytearray(open(path, "rb").read())
    name = (member + ".npy").encode()
    for sig, at in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        pos = data.find(sig)
        while pos >= 0:
            name_at = pos + (30 if sig == b"PK\x03\x04" else 46)
            if data[name_at:name_at + len(name)] == name:
                data[pos + at:pos + at + 4] = struct.pack("<I", size)
            pos = data.find(sig, pos + 4)
    with open(path, "wb") as fh:
        fh.write(data)
    return path


def png(width, height, raw):
    """A PNG (8-bit grey) declaring ``width`` x ``height`` whose image data inflates to ``raw``."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
