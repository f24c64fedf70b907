"""Files written whole or not at all: a temporary file beside the destination, then ``os.replace``.

    atomic_write("trials.json", lambda f: json.dump(doc, f))          # text
    atomic_write("curves.png", lambda f: fig.savefig(f, format="png"), binary=True)

A crash or an exception while writing leaves the old file (or none) and no temporary file.
"""
from __future__ import annotations

import os
import tempfile


def atomic_write(path, write, binary: bool = False, newline: str | None = None) -> str:
    """Call ``write(file)`` on a temporary file next to ``path``, then move it over ``path``; returns ``path``."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ValueError(f"cannot write {path}: directory {directory} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"newline": newline,
                                                                           "encoding": "utf-8"})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, file_mode(path))     # mkstemp makes 0600; keep the old file's mode, else the usual one
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    return path


def file_mode(path) -> int:
    """The permission bits of ``path``, or those a new file gets (0666 less the umask)."""
    try:
        return os.stat(path).st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


__all__ = ["atomic_write", "file_mode"]
