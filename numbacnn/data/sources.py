"""Sources of image files for ``splits.load_source``: class folders, list files and packed datasets.

``image_source(spec, options)`` gives a ``splits.Source`` whose ``x`` is a streamed dataset
(``datasets.FileDataset`` or ``packed.PackedDataset``) for these specs, or None for every other
spec (the array loaders take those).  ``ImageOptions`` says how the files become model inputs:
explicit ``size``/``color``/``resize`` (train's ``--image-size``, ``--color``, ``--resize``), else
``default_shape`` (the model's input shape, asked for only when needed), or ``fixed`` (the
preprocessing a model file recorded: evaluate uses exactly that).  A packed file was decoded with
its own preprocessing: options that differ from it are an error.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .images import COLORS, Preprocessing, color_name
from .loaders import DataError


def parse_size(value, where="--image-size") -> tuple | None:
    """(height, width) from '64' or '64x48' (or '64,48'); None for None."""
    if value is None:
        return None
    if isinstance(value, (tuple, list)):
        parts = [str(v) for v in value]
    else:
        parts = str(value).lower().replace(",", "x").split("x")
    try:
        size = tuple(int(p) for p in parts)
    except ValueError:
        raise DataError(f"{where}: {value!r} is not SIDE or HEIGHTxWIDTH (e.g. 64 or 64x48)") from None
    size = size * 2 if len(size) == 1 else size
    if len(size) != 2 or not all(1 <= s <= 65536 for s in size):
        raise DataError(f"{where}: {value!r} must be one or two sides in 1..65536")
    return size


@dataclass
class ImageOptions:
    """How image files become model inputs, and how they are read (see the module docstring)."""

    size: object = None                  # '64', '64x48', (h, w) or None
    color: str | None = None             # grey | rgb | None
    resize: int | None = None            # the shorter side before the centre crop
    default_shape: object = None         # (C, H, W), or a callable giving it, for what is not given
    fixed: Preprocessing | None = None   # a model file's recorded preprocessing (nothing else is asked)
    skip_bad: bool = False
    workers: int | None = None
    log: object = None

    def given(self) -> bool:
        return self.size is not None or self.color is not None or self.resize is not None

    def preprocessing(self, spec) -> Preprocessing:
        if self.fixed is not None:
            return self.fixed
        size, color = parse_size(self.size), None if self.color is None else color_name(self.color)
        shape = None
        if size is None or color is None:
            shape = self.default_shape() if callable(self.default_shape) else self.default_shape
            if shape is None or len(shape) != 3:
                raise DataError(f"{spec}: image files need a size and colour mode (give --image-size and --color)")
        if size is None:
            size = tuple(int(s) for s in shape[1:])
        if color is None:
            color = "grey" if int(shape[0]) == 1 else "rgb"
        if self.resize is not None and int(self.resize) < 1:
            raise DataError(f"--resize {self.resize}: must be a positive side")
        return Preprocessing(size[0], size[1], color, self.resize)

    def check_packed(self, spec, prep: Preprocessing):
        """Refuse options (or a model's recorded preprocessing) that differ from a packed file's own."""
        want = self.fixed
        if want is None and self.given():
            size, color = parse_size(self.size), self.color and color_name(self.color)
            want = Preprocessing(*(size or (prep.height, prep.width)), color or prep.color, self.resize or prep.resize)
        if want is not None and want.to_json() != prep.to_json():
            raise DataError(f"{spec}: packed as {prep.describe()}, not {want.describe()} (pack it again with "
                            f"those options, or leave them out)")

    def workers_for(self, default) -> int:
        return int(default if self.workers is None else self.workers)


def given_stats(mean, std, channels, where="--mean/--std"):
    """(mean, std) (C,) float32 from given values (one per channel, std > 0), or None when not given."""
    if mean is None and std is None:
        return None
    if mean is None or std is None:
        raise DataError(f"{where}: give both a mean and a standard deviation per channel")
    m, s = np.asarray(mean, np.float64).ravel(), np.asarray(std, np.float64).ravel()
    if len(m) != channels or len(s) != channels or not (np.isfinite(m).all() and np.isfinite(s).all()):
        raise DataError(f"{where}: need {channels} finite value(s) each (one per channel), got {len(m)} and {len(s)}")
    if not (s > 0).all():
        raise DataError(f"{where}: standard deviations must be > 0")
    return m.astype(np.float32), s.astype(np.float32)


def model_image_options(meta, input_shape=None, where="the model", skip_bad=False, workers=None, log=None):
    """How evaluate and predict read image files for a model: the preprocessing its file records, else the one
    made for its ``input_shape``."""
    doc = (meta or {}).get("preprocessing")
    fixed = None if doc is None else Preprocessing.from_json(doc, f"{where}: metadata")
    return ImageOptions(default_shape=input_shape, fixed=fixed, skip_bad=skip_bad, workers=workers, log=log)


def _is_folder(spec) -> bool:
    from .loaders import _cifar_files, _cifar_root, _idx_pairs
    if not os.path.isdir(spec):
        return False
    try:
        return not _idx_pairs(spec) and not _cifar_files(_cifar_root(spec))
    except DataError:
        return False


def image_source(spec, options: ImageOptions | None):
    """A ``splits.Source`` over the image files of ``spec`` (class folder, list file, packed file), or None."""
    from . import folders, packed
    from .datasets import FileDataset
    from .pipeline import default_workers
    from .splits import Source, canonical_spec
    spec = os.fspath(spec)
    options = options or ImageOptions()
    if packed.is_packed(spec):
        ds = packed.PackedDataset(spec, options.workers_for(1))
        options.check_packed(spec, ds.prep)
        coll_parts, names, prep, fp = ds.parts, ds.class_names, ds.prep, ds.fingerprint
    elif _is_folder(spec) or folders.is_image_list(spec):
        coll = folders.scan_folder(spec, options.log) if os.path.isdir(spec) else folders.scan_list(spec, options.log)
        prep = options.preprocessing(spec)
        ds = FileDataset(coll.root, coll.paths, coll.labels, prep, options.skip_bad,
                         options.workers_for(default_workers()), options.log)
        coll_parts, names, fp = coll.parts, coll.class_names, coll.fingerprint()
    else:
        return None
    return Source(canonical_spec(spec), ds, ds.y, list(names), coll_parts.get("test"), fp,
                  predefined_val=coll_parts.get("val"), preprocessing=prep)


__all__ = ["ImageOptions", "image_source", "parse_size", "given_stats", "model_image_options", "COLORS"]
