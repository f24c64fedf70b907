"""Image collections on disk: class folders and list files, scanned without decoding a pixel.

A **class folder** is the layout of Keras' ``image_dataset_from_directory`` and torchvision's
``ImageFolder``: every subfolder of ``photos/`` is a class (sorted by name: the first is label 0),
holding image files at any depth.  When ``photos/`` holds ``train/`` and ``test/`` (and ``val/``,
``valid/`` or ``validation/``) folders, each with the class subfolders, those are the given
splits.  A **list file** (``.csv`` or ``.txt``) has one ``path,label`` row per image (``path label``
in a ``.txt`` too, as Caffe's image lists); paths are relative to the list's folder, labels are class
names, or integers 0..K-1; a first row ``path,label`` is a header.

Only files whose names end in an image suffix (``images.IMAGE_SUFFIXES``) are taken; hidden files
and folders (``.DS_Store``, ``.git``) are left alone; symbolic links to folders are not followed.

The **fingerprint** of a collection is a sha256 of every image's relative path, class and size in
bytes (and the class names and parts), from ``stat`` alone: a scan of a million files takes seconds,
where hashing the contents would read every byte at every train, evaluate and resume, and decoding
them is what streaming avoids.  Modification times are left out on purpose: ``cp``, ``unzip`` or
``git checkout`` change them, and a copy of the training data would then look like new data to
``evaluate`` (which would score the training images as unseen).  An edit that keeps a compressed
image's size to the byte goes unseen; adding, removing, renaming, relabelling or replacing files does not.
"""
from __future__ import annotations

import csv
import hashlib
import os
import time
from dataclasses import dataclass, field

import numpy as np

from ..io import limits
from .images import is_image_name
from .loaders import DataError

#: folder names that mark given splits, and the part each one is
SPLIT_FOLDERS = {"train": "train", "test": "test", "val": "val", "valid": "val", "validation": "val"}
#: how often (seconds) a long scan prints a progress line
PROGRESS_EVERY = 2.0
_HEADERS = ("path", "file", "filename", "filepath", "image", "images")


@dataclass
class Collection:
    """Image files (relative to ``root``), their labels and sizes, and the parts they came from."""

    spec: str
    root: str
    paths: list
    labels: np.ndarray
    sizes: np.ndarray
    class_names: list
    parts: dict = field(default_factory=dict)      # part name -> index array (train, val, test)

    def fingerprint(self) -> str:
        h = hashlib.sha256(b"numbacnn image collection 1\0")
        h.update(("\0".join(self.class_names) + "\0\0").encode("utf-8", "surrogateescape"))
        for name in sorted(self.parts):
            h.update(f"{name}:{len(self.parts[name])};".encode())
        for p, label, size in zip(self.paths, self.labels.tolist(), self.sizes.tolist()):
            h.update(f"{p}\0{label}\0{size}\n".encode("utf-8", "surrogateescape"))
        return h.hexdigest()


class _Progress:
    """Calls ``log`` with a line every PROGRESS_EVERY seconds of a scan (and not at all for a quick one)."""

    def __init__(self, log, what):
        self.log, self.what, self.t0 = log, what, time.perf_counter()
        self.last, self.count = self.t0, 0

    def tick(self, n=1):
        self.count += n
        now = time.perf_counter()
        if self.log is not None and now - self.last >= PROGRESS_EVERY:
            self.last = now
            self.log(f"scanning {self.what}: {self.count:,} images so far ({now - self.t0:.0f}s)")


def _visible_dirs(path) -> list:
    try:
        with os.scandir(path) as it:
            return sorted(e.name for e in it if not e.name.startswith(".") and e.is_dir(follow_symlinks=False))
    except OSError as exc:
        raise DataError(f"{path}: cannot list ({exc.strerror})") from None


def _image_files(folder, progress):
    """(relative path, size) of every image file under ``folder``, sorted, recursively."""
    found = []
    for here, dirs, files in os.walk(folder, onerror=None, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or not is_image_name(name):
                continue
            full = os.path.join(here, name)
            try:
                size = os.stat(full).st_size
            except OSError as exc:
                raise DataError(f"{full}: cannot read ({exc.strerror})") from None
            found.append((os.path.relpath(full, folder), size))
            progress.tick()
    return found


def _split_layout(root, names) -> dict:
    """{part: folder} when ``root`` holds given splits (train/ and test/ or val/), else {}."""
    parts = [n for n in names if n.lower() in SPLIT_FOLDERS]
    if "train" not in [n.lower() for n in parts] or len(parts) < 2:
        return {}
    others = sorted(set(names) - set(parts))
    if others:
        raise DataError(f"{root}: holds split folders ({', '.join(parts)}) beside other folders "
                        f"({', '.join(others[:4])}): put every class folder inside train/, val/ and test/")
    layout = {}
    for n in parts:
        part = SPLIT_FOLDERS[n.lower()]
        if part in layout:
            raise DataError(f"{root}: has two {part} folders ({os.path.basename(layout[part])}, {n})")
        layout[part] = os.path.join(root, n)
    return layout


def scan_folder(root, log=None) -> Collection:
    """The images of a class folder (see the module docstring), with the given splits as ``parts``."""
    root = os.fspath(root)
    layout = _split_layout(root, _visible_dirs(root)) or {"all": root}
    classes = sorted({c for folder in layout.values() for c in _visible_dirs(folder)})
    if not classes:
        loose = any(is_image_name(n) for n in os.listdir(root))
        raise DataError(f"{root}: no class folders (each class is a subfolder of images"
                        f"{'; the images here have no class' if loose else ''})")
    progress = _Progress(log, root)
    paths, labels, sizes, parts = [], [], [], {}
    for part in ("all", "train", "val", "test"):
        if part not in layout:
            continue
        start = len(paths)
        for label, name in enumerate(classes):
            folder = os.path.join(layout[part], name)
            if not os.path.isdir(folder):
                continue
            rel = os.path.relpath(folder, root)
            for p, size in _image_files(folder, progress):
                paths.append(os.path.join(rel, p))
                labels.append(label)
                sizes.append(size)
        if len(paths) == start:
            raise DataError(f"{layout[part]}: holds no image files (JPEG, PNG, BMP, GIF, TIFF, WebP, PGM/PPM) "
                            "in its class folders")
        parts[part] = np.arange(start, len(paths))
    if log is not None and progress.count and time.perf_counter() - progress.t0 >= PROGRESS_EVERY:
        log(f"scanned {root}: {progress.count:,} images in {len(classes)} classes")
    parts.pop("all", None)
    return Collection(root, root, paths, np.asarray(labels, np.int64), np.asarray(sizes, np.int64), classes, parts)


# ----------------------------------------------------------------------------- list files

def _list_rows(path) -> list:
    """[(line number, path, label)] of a list file."""
    try:
        limits.check_declared(40 * limits.regular_file(path).st_size, f"{path}: an image list")
        with open(path, newline="", encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read as an image list ({type(exc).__name__}: {exc})") from None
    except ValueError as exc:                       # not a regular file, or over the memory limit
        raise DataError(str(exc)) from None
    rows = []
    lines = text.splitlines()
    comma = path.lower().endswith(".csv") or any("," in ln for ln in lines[:5])
    reader = csv.reader(lines) if comma else (ln.rsplit(None, 1) for ln in lines)
    for n, row in enumerate(reader, 1):
        cells = [c.strip() for c in row]
        if not any(cells):
            continue
        if len(cells) != 2 or not cells[0] or not cells[1]:
            raise DataError(f"{path}: line {n} is not 'path,label' ({','.join(cells)[:60]!r})")
        if not rows and cells[0].lower() in _HEADERS:
            continue
        rows.append((n, cells[0], cells[1]))
    if not rows:
        raise DataError(f"{path}: lists no images")
    return rows


def _list_labels(path, rows):
    """(labels, class names): integers 0..K-1 as given, or class names sorted."""
    given = [r[2] for r in rows]
    if all(g.isdigit() for g in given):
        labels = np.asarray([int(g) for g in given], np.int64)
        if labels.max() >= 1 << 20:
            raise DataError(f"{path}: label {int(labels.max())} is more than a model's {1 << 20:,} classes")
        return labels, [str(i) for i in range(int(labels.max()) + 1)]
    names = sorted(set(given))
    index = {n: i for i, n in enumerate(names)}
    return np.asarray([index[g] for g in given], np.int64), names


def is_image_list(spec) -> bool:
    """True for a .csv/.txt file whose first listed path is an image file name."""
    spec = os.fspath(spec)
    if not spec.lower().endswith((".csv", ".txt")) or not os.path.isfile(spec):
        return False
    try:
        with open(spec, encoding="utf-8", errors="replace") as f:
            head = f.read(4096).splitlines()
    except OSError:
        return False
    for line in head:
        cell = line.split(",")[0].strip() if "," in line else (line.split() or [""])[0]
        if cell and cell.lower() not in _HEADERS:
            return is_image_name(cell)
    return False


def scan_list(path, log=None) -> Collection:
    """The images a list file names (see the module docstring); every file must exist."""
    path = os.fspath(path)
    rows = _list_rows(path)
    labels, names = _list_labels(path, rows)
    root = os.path.dirname(os.path.abspath(path))
    progress = _Progress(log, path)
    sizes = []
    for n, p, _ in rows:
        full = os.path.join(root, p)
        try:
            sizes.append(limits.regular_file(full).st_size)
        except ValueError as exc:
            raise DataError(f"{path}: line {n}: {exc}") from None
        progress.tick()
    return Collection(path, root, [r[1] for r in rows], labels, np.asarray(sizes, np.int64), names, {})


__all__ = ["Collection", "scan_folder", "scan_list", "is_image_list", "SPLIT_FOLDERS"]
