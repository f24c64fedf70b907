"""Which files of a directory were opened or read, by any process: Linux inotify through ctypes.

    with Watch(directory) as w:
        ...                      # run something
    w.touched                    # names of the files opened or read meanwhile (empty: none)

Used to show that no hostile model file makes numbacnn open a file outside its
own (external storage, external links, virtual datasets point into the watched
directory).  ``Watch.available()`` is False off Linux; the tests then skip.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import struct
import sys

IN_ACCESS, IN_OPEN = 0x001, 0x020
_EVENT = struct.Struct("iIII")


def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        return libc if hasattr(libc, "inotify_init1") else None
    except OSError:
        return None


class Watch:
    """An inotify watch on one directory for IN_OPEN and IN_ACCESS of its files."""

    def __init__(self, directory):
        self.directory, self.touched, self.fd = os.fspath(directory), set(), -1

    @staticmethod
    def available() -> bool:
        return _libc() is not None

    def __enter__(self):
        libc = _libc()
        self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0 or libc.inotify_add_watch(self.fd, os.fsencode(self.directory), IN_OPEN | IN_ACCESS) < 0:
            raise OSError(ctypes.get_errno(), "inotify failed")
        return self

    def __exit__(self, *exc):
        self.read()
        os.close(self.fd)

    def read(self):
        """Collect the events so far into ``touched``."""
        while True:
            try:
                data = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                return self.touched
            pos = 0
            while pos < len(data):
                _, mask, _, length = _EVENT.unpack_from(data, pos)
                name = data[pos + _EVENT.size:pos + _EVENT.size + length].rstrip(b"\0").decode()
                self.touched.add(name or ".")
                pos += _EVENT.size + length
