"""Reading HDF5 that may be damaged or hostile: every object is checked before it is touched.

A model file holds plain arrays and scalar attributes, and nothing is read from
it that a damaged or hostile file could turn into a read of another file, a
hang, a memory bomb or silent garbage:

* links: hard links only.  Soft links and external links (which open other
  files) are refused where they are met, before they are followed.
* datasets: contiguous, chunked or compact layout; no external storage
  (bytes of another file), no virtual dataset (data of other files), no filter
  (compression or a user-defined filter: a plain array is what numbacnn
  writes); the dtype and shape the caller expects, checked before the read;
  and at least as many stored bytes as the shape needs, within the file, so a
  read never makes up fill values and never takes more memory than the file
  is long.
* attributes: scalar numbers and strings, no bigger than the file; the global
  heap collections holding the strings are walked first (``check_global_heaps``:
  a damaged one sends HDF5's own parser into an endless loop).
* checksums (files of format 2 on): every dataset carries ``crc32`` (of its
  shape and little-endian bytes) and every group ``crc32`` (of its other
  attributes and its members' names), written by ``seal`` and verified as each
  object is read, so a flipped byte anywhere in what numbacnn reads is an
  error, not a changed weight.

Errors are ValueErrors whose message names the object (``/model_weights/fc/weight``);
``io.hdf5`` adds the file's name.
"""
from __future__ import annotations

import math
import mmap
import zlib

import h5py
import numpy as np
from h5py import h5d, h5l

CHECKSUM = "crc32"
_LAYOUTS = {h5d.CONTIGUOUS: "contiguous", h5d.CHUNKED: "chunked", h5d.COMPACT: "compact"}
_LINKS = {h5l.TYPE_SOFT: "soft", h5l.TYPE_EXTERNAL: "external"}
_FILTERS = {1: "deflate (gzip)", 2: "shuffle", 3: "fletcher32", 4: "szip", 5: "nbit", 6: "scaleoffset"}


def _join(where: str, name: str) -> str:
    return f"{where.rstrip('/')}/{name}"


# ---------------------------------------------------------------- links and members
def member(group, name: str, kind, where: str):
    """``group[name]`` when it is a hard link to a ``kind`` (h5py.Group or h5py.Dataset); None when absent."""
    key = name.encode("utf-8", "surrogateescape")
    if not group.id.links.exists(key):
        return None
    path = _join(where, name)
    link = group.id.links.get_info(key).type
    if link != h5l.TYPE_HARD:
        raise ValueError(f"{path} is {'an' if link == h5l.TYPE_EXTERNAL else 'a'} "
                         f"{_LINKS.get(link, 'user-defined')} link: a model file holds no links (nothing is read "
                         f"through them)")
    obj = group[name]
    if not isinstance(obj, kind):
        raise ValueError(f"{path} should be a {'group' if kind is h5py.Group else 'dataset'}")
    return obj


def names(group) -> list:
    """The names of a group's members (links are not followed)."""
    return list(group.keys())


# ---------------------------------------------------------------- global heaps
_GCOL = b"GCOL\x01"            # a global heap collection: signature and version, as HDF5 looks for them
MAX_HEAPS = 10_000


def _heap_problem(mm, pos: int):
    """What is wrong with the global heap collection at ``pos`` (None: nothing), walking its objects the way
    HDF5 does: every object must fit, and advance the walk (HDF5 loops forever on a free-space object of size
    0, and runs past the collection on an object larger than it)."""
    if pos + 16 > len(mm):
        return "is truncated", 0
    size = int.from_bytes(mm[pos + 8:pos + 16], "little")
    if size < 16 or pos + size > len(mm):
        return f"declares {size:,} bytes, more than the file holds", 0
    p, steps = 16, 0
    while p + 16 <= size:
        idx = int.from_bytes(mm[pos + p:pos + p + 2], "little")
        length = int.from_bytes(mm[pos + p + 8:pos + p + 16], "little")
        need = 16 + (length + 7) // 8 * 8 if idx else length
        if (need < 16 if idx else need != size - p) or p + need > size:
            return f"holds a {'free-space ' if not idx else ''}object of {length:,} bytes at {p} that does not fit", 0
        p, steps = p + need, steps + 1
    return None, steps


def check_global_heaps(path: str, f) -> None:
    """Refuse a file whose global heap (where HDF5 keeps variable-length strings: the JSON attributes)
    would send HDF5's parser into an endless loop or past its end: every collection in the file is walked
    here first, in time linear in the file's size.  Offsets and lengths must be 8 bytes (as h5py writes)."""
    sizes = tuple(f.id.get_create_plist().get_sizes())
    if sizes != (8, 8):
        raise ValueError(f"unsupported HDF5 superblock (offsets and lengths of {sizes} bytes; numbacnn writes 8)")
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        pos, count, budget = mm.find(_GCOL), 0, len(mm) // 4 + 1000
        while pos >= 0:
            problem, steps = _heap_problem(mm, pos)
            count, budget = count + 1, budget - steps
            if problem:
                raise ValueError(f"global heap collection at byte {pos:,} {problem}: the file is damaged")
            if count > MAX_HEAPS or budget < 0:
                raise ValueError("more global heap collections than a model file holds: the file is damaged")
            pos = mm.find(_GCOL, pos + 1)


# ---------------------------------------------------------------- attributes
def attributes(obj, where: str, file_size: int) -> dict:
    """A dict of ``obj``'s attributes as h5py reads them, each checked to be a scalar number or string first."""
    out = {}
    for name in obj.attrs.keys():
        aid = obj.attrs.get_id(name)
        dt = aid.dtype
        string = h5py.check_string_dtype(dt) is not None
        if aid.shape != () or not (string or (dt.kind in "iuf" and dt.itemsize <= 8)):
            raise ValueError(f"attribute {name!r} of {where} is not a scalar number or string "
                             f"(shape {aid.shape}, type {dt})")
        if dt.itemsize > file_size:
            raise ValueError(f"attribute {name!r} of {where} declares {dt.itemsize} bytes, more than the file holds")
        out[name] = obj.attrs[name]
    return out


# ---------------------------------------------------------------- checksums
def _feed(crc: int, *pieces: bytes) -> int:
    for p in pieces:
        crc = zlib.crc32(p, zlib.crc32(len(p).to_bytes(8, "little"), crc))
    return crc


def _token(value) -> bytes:
    if isinstance(value, bytes):
        return b"b" + value
    if isinstance(value, str):
        return b"s" + value.encode("utf-8", "surrogatepass")
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"attribute value {value!r} is a bool: model files store JSON strings")
    if isinstance(value, (int, np.integer)):
        return b"i" + str(int(value)).encode()
    if isinstance(value, (float, np.floating)):
        return b"f" + float(value).hex().encode()
    raise ValueError(f"attribute value of type {type(value).__name__} has no checksum")


def group_digest(attrs: dict, members) -> int:
    """crc32 of a group's attributes (but ``crc32``) and the names of its members, in sorted order."""
    crc = _feed(0, b"group")
    for k in sorted(attrs):
        if k != CHECKSUM:
            crc = _feed(crc, k.encode("utf-8", "surrogatepass"), _token(attrs[k]))
    return _feed(crc, b"members", *(n.encode("utf-8", "surrogatepass") for n in sorted(members)))


def array_digest(a) -> int:
    """crc32 of an array's dtype, shape and bytes in little-endian order."""
    a = np.asarray(a)
    le = a.dtype.newbyteorder("<")
    crc = _feed(0, b"array", le.str.encode(), repr(tuple(int(s) for s in a.shape)).encode())
    return zlib.crc32(np.ascontiguousarray(a, dtype=le).reshape(-1).view(np.uint8), crc)


def seal(f) -> None:
    """Stamp every group (the root too) and dataset of an open, writable h5py file with its ``crc32``."""
    def stamp(_, obj):
        if isinstance(obj, h5py.Dataset):
            obj.attrs[CHECKSUM] = array_digest(obj[()])
        else:
            obj.attrs[CHECKSUM] = group_digest(dict(obj.attrs), list(obj.keys()))

    f.visititems(stamp)
    stamp("/", f)


def _check_sum(attrs: dict, got: int, where: str) -> None:
    want = attrs.get(CHECKSUM)
    if want is None:
        raise ValueError(f"{where} has no checksum (every object of this format carries one): the file is damaged")
    if not isinstance(want, (int, np.integer)) or int(want) != got:
        raise ValueError(f"{where} fails its checksum: the file is damaged (or was edited outside numbacnn)")


def group_attributes(group, where: str, file_size: int, checksums: bool) -> dict:
    """A group's attributes (checked, and with ``checksums`` verified with its member names), without ``crc32``."""
    attrs = attributes(group, where, file_size)
    if checksums:
        _check_sum(attrs, group_digest(attrs, names(group)), where)
    attrs.pop(CHECKSUM, None)
    return attrs


# ---------------------------------------------------------------- datasets
def _check_storage(d, path: str, nbytes: int, file_size: int) -> None:
    plist = d.id.get_create_plist()
    layout = plist.get_layout()
    if layout == h5d.VIRTUAL:
        raise ValueError(f"{path} is a virtual dataset (its data lives in other files): not read")
    if layout not in _LAYOUTS:
        raise ValueError(f"{path} has an unknown storage layout ({layout})")
    if plist.get_external_count():
        raise ValueError(f"{path} keeps its data in external files: not read")
    if plist.get_nfilters():
        used = [_FILTERS.get(plist.get_filter(i)[0], f"user-defined filter {plist.get_filter(i)[0]}")
                for i in range(plist.get_nfilters())]
        raise ValueError(f"{path} is stored through HDF5 filter(s) {', '.join(used)}: model files hold plain "
                         f"arrays")
    if layout == h5d.CHUNKED and math.prod(plist.get_chunk()) * d.dtype.itemsize > max(nbytes, 1 << 20):
        raise ValueError(f"{path} declares chunks {plist.get_chunk()} larger than the array")
    stored = d.id.get_storage_size()
    if stored < nbytes:
        raise ValueError(f"{path} declares {nbytes:,} bytes of data ({d.shape}) but stores {stored:,}")
    if stored > file_size:
        raise ValueError(f"{path} declares {stored:,} bytes of storage, more than the file's {file_size:,}")


def array(group, name: str, where: str, dtype, shape, file_size: int, checksums: bool):
    """The dataset ``group[name]`` as a native-order array of ``dtype`` (None when absent).

    ``dtype`` is np.float32 or np.int64 (either byte order accepted, nothing cast); ``shape`` the
    expected shape, or a callable that gets the stored shape and raises ValueError when it is wrong.
    Everything is checked before a byte of data is read (see the module docstring).
    """
    d = member(group, name, h5py.Dataset, where)
    if d is None:
        return None
    path = _join(where, name)
    want = np.dtype(dtype)
    if d.shape is None:
        raise ValueError(f"{path} has no dataspace (an empty dataset)")
    if d.dtype.kind != want.kind or d.dtype.itemsize != want.itemsize:
        raise ValueError(f"{path} is stored as {d.dtype}, expected {want.name}")
    if callable(shape):
        shape(tuple(d.shape), path)
    elif tuple(d.shape) != tuple(shape):
        raise ValueError(f"{path} has shape {tuple(d.shape)}, expected {tuple(shape)}")
    nbytes = math.prod(d.shape) * want.itemsize
    _check_storage(d, path, nbytes, file_size)
    a = np.empty(d.shape, d.dtype)
    if a.size:
        d.read_direct(a)
    if checksums:
        _check_sum(attributes(d, path, file_size), array_digest(a), path)
    return a.astype(want, copy=False)


__all__ = ["CHECKSUM", "check_global_heaps", "member", "names", "attributes", "group_attributes", "array", "seal",
           "group_digest", "array_digest"]
