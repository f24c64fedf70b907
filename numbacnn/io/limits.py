"""How much a file may declare before anything is read, and which files may be read at all.

Every reader of numbacnn (model files, IDX, CIFAR-10, ``.npz``, images) checks a
file's declared sizes against ``max_bytes()`` *from its header*, before it
allocates or decompresses anything, and reads only regular files (never a
device such as ``/dev/zero``, a pipe or a socket, which can be endless or
block forever).

``max_bytes()``: the ``NUMBACNN_MAX_GIB`` environment flag (``config.MAX_GIB``)
when set; else 16 GiB or the machine's physical memory, whichever is smaller.
"""
from __future__ import annotations

import math
import os
import stat

from .. import config

GIB = 1 << 30
DEFAULT_GIB = 16
FLAG = "NUMBACNN_MAX_GIB"
#: the most deflate (gzip, zip) can expand its input: 1032 to 1 (zlib's technical details)
MAX_DEFLATE_RATIO = 1032


def physical_memory() -> int | None:
    """Bytes of physical memory, or None where the platform does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return None


def max_bytes() -> int:
    """The most memory a file may declare (see the module docstring)."""
    gib = config.MAX_GIB
    if gib is not None:
        if not math.isfinite(gib) or gib <= 0:
            raise ValueError(f"environment variable {FLAG}={gib!r} must be a positive number of GiB")
        return int(gib * GIB)
    phys = physical_memory()
    return DEFAULT_GIB * GIB if phys is None else min(DEFAULT_GIB * GIB, phys)


def size_text(n: int) -> str:
    """``n`` bytes for people: 512 bytes, 3.2 MiB, 1.5 GiB, 4.0 TiB."""
    n = int(n)
    if n < 1024:
        return f"{n} bytes"
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        n /= 1024
        if n < 1024 or unit == "PiB":
            return f"{n:,.1f} {unit}"
    return ""  # pragma: no cover


def check_declared(nbytes: int, what: str) -> None:
    """Raise ValueError when ``nbytes`` (what a header declares ``what`` needs) is over ``max_bytes()``."""
    limit = max_bytes()
    if nbytes > limit:
        raise ValueError(f"{what} would take {size_text(nbytes)}, over the {size_text(limit)} limit "
                         f"(set {FLAG} to allow more)")


def model_sizes(model) -> tuple:
    """(parameter and buffer bytes, activation bytes for one image, the layer with most parameters) of a
    model whose shapes are inferred (``infer_shapes``); float32, counted without numpy's int64 overflow."""
    params = acts = 0
    biggest, most = None, -1
    for name, layer in model.layers.items():
        n = sum(math.prod(s) for s in (*layer.param_shapes.values(), *layer.buffer_shapes.values()))
        params += n
        acts += math.prod(layer.output_shape)
        if n > most:
            biggest, most = name, n
    return 4 * params, 4 * (acts + math.prod(model.input_shape)), biggest


def check_model_size(model) -> None:
    """Infer ``model``'s shapes and refuse it (ValueError) when its parameters, or its activations for one
    image, would take more than ``max_bytes()``: checked before any array is allocated."""
    shape = model.input_shape
    if not shape or any(d < 1 for d in shape):
        raise ValueError(f"input shape {shape} must be positive integers")
    model.infer_shapes()
    params, acts, biggest = model_sizes(model)
    check_declared(params, f"the architecture's parameters (most in layer {biggest!r})")
    check_declared(acts, "the activations of one image")


def regular_file(path) -> os.stat_result:
    """``os.stat`` of ``path`` when it is a regular file; ValueError naming the file otherwise.

    Devices (``/dev/zero``), pipes and sockets are refused before they are opened: they can be
    endless, or block the reader forever.
    """
    path = os.fspath(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({exc.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ValueError(f"{path}: is a directory")
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"{path}: not a regular file (a device, pipe or socket is not read)")
    return st


__all__ = ["GIB", "FLAG", "MAX_DEFLATE_RATIO", "max_bytes", "check_declared", "check_model_size", "model_sizes",
           "regular_file", "size_text", "physical_memory"]
