"""Files written whole or not at all: a temporary file beside the destination, then ``os.replace``.

    atomic_write("trials.json", lambda f: json.dump(doc, f))          # text
    atomic_write("curves.png", lambda f: fig.savefig(f, format="png"), binary=True)

A crash or an exception while writing leaves the old file (or none) and no temporary file.
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager


@contextmanager
def replacing(path, prefix: str | None = None):
    """Yield a new empty temporary file's path beside ``path`` (``prefix``: its name's start, default
    ``.<name>.``); when the block ends normally, fsync it, give it ``path``'s mode (or the usual one) and move it
    over ``path``; when it raises, remove it."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ValueError(f"cannot write {path}: directory {directory} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=prefix or f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, file_mode(path))     # mkstemp makes 0600; keep the old file's mode, else the usual one
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise


def atomic_write(path, write, binary: bool = False, newline: str | None = None) -> str:
    """Call ``write(file)`` on a temporary file next to ``path``, then move it over ``path``; returns ``path``."""
    with replacing(path) as tmp:
        with open(tmp, "wb" if binary else "w", **({} if binary else {"newline": newline, "encoding": "utf-8"})) as f:
            write(f)
    return os.fspath(path)


def file_mode(path) -> int:
    """The permission bits of ``path``, or those a new file gets (0666 less the umask)."""
    try:
        return os.stat(path).st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


__all__ = ["atomic_write", "replacing", "file_mode"]
