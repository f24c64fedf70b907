"""Model files: architecture, weights, optimizer state and training state in one HDF5 file.

The layout is plain h5py (no pickle anywhere; numbers and strings only)::

    /                        attrs: format_version (int), model_config (JSON str), library (str)
    /model_weights/<layer>/<name>        float32 datasets: params and buffers
                                         (batch-norm running_mean / running_var included)
    /optimizer_state                     attrs: class_name, config (JSON), iterations,
                                         and each hyper-parameter (lr, momentum, ...)
    /optimizer_state/<layer>/<param>/<slot>   float32 buffers (velocity, m, v), int64 step
    /training_state          attrs: ints and floats as numbers (epoch, step, ...), everything
                             else (history, rng_state, schedule, ...) as JSON strings
    /training_state/best_weights/<layer>/<name>   float32 (early stopping's best weights)
    /metadata                attrs: what using the model needs besides the graph (the CLI's class
                             names, training options), numbers as numbers, else JSON strings
    /metadata/<name>         float32 datasets (e.g. the standardisation mean and std) and int64
                             ones (split_train/split_val/split_test: the run's data split indices)
    every group and dataset  attrs: crc32 (format 2 on; ``io.guard``): a flipped byte is an error

A model file holds nothing else: no links, no external storage, no virtual or
filtered (compressed) datasets, no non-scalar attributes.  ``load_model`` checks
every object before it reads it (``io.guard``: links, layout, dtype, the shape
the architecture expects, stored size), refuses an architecture whose
parameters or activations exceed ``io.limits.max_bytes()`` before building it,
refuses NaN or infinite weights, and validates the optimizer state, the
training state and the metadata (``io.state``).

``save_model`` writes a temporary file in the destination's directory, fsyncs
it and ``os.replace``s it over the destination, so a crash leaves either the
old file or the new one, never half of one (and the next save removes the
temporary file a killed writer left).  ``load_model`` turns every way a file
can be wrong (missing, truncated, not HDF5, not ours, damaged, hostile, weights
that do not fit the architecture) into one ``ModelFileError`` naming the file.
"""
from __future__ import annotations

import json
import os
import re
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import h5py
import numpy as np

from . import guard, limits
from .architecture import architecture, expected_weights
from .atomic import replacing

FORMAT_VERSION = 2          # 2: every group and dataset carries a crc32 (io.guard)


class ModelFileError(ValueError):
    """A model file that cannot be used; the message names the file and the problem."""


@dataclass
class ModelFile:
    """What ``load_model`` returns; unpacks as ``model, optimizer_state, training_state``."""

    model: object
    optimizer_state: dict | None
    training_state: dict | None
    path: str = ""
    metadata: dict = field(default_factory=dict)

    def __iter__(self):
        return iter((self.model, self.optimizer_state, self.training_state))


# ---------------------------------------------------------------- writing
def _check_name(kind, name):
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"{kind} name {name!r} cannot be stored in a model file (empty, '.', '..' or contains '/')")


def _write_arrays(group, nested):
    """nested: {layer: {name: array}} -> group/<layer>/<name> float32 datasets."""
    for layer, arrays in nested.items():
        _check_name("layer", layer)
        g = group.create_group(layer)
        for name, a in arrays.items():
            _check_name(f"layer {layer!r} array", name)
            g.create_dataset(name, data=np.ascontiguousarray(a, dtype=np.float32))


def _write_attr(group, key, value):
    """Numbers as numeric attributes; anything else (str, bool, None, lists, dicts) as a JSON string."""
    numeric = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    group.attrs[key] = value if numeric else json.dumps(value)


def _write_optimizer(f, state):
    g = f.create_group("optimizer_state")
    g.attrs["class_name"] = state["class_name"]
    g.attrs["config"] = json.dumps(state.get("config", {}))
    g.attrs["iterations"] = int(state.get("iterations", 0))
    for k, v in state.get("config", {}).items():
        _write_attr(g, k, v)
    for name, a in state.get("arrays", {}).items():
        a = np.asarray(a)
        g.create_dataset(name, data=a.astype(np.int64) if np.issubdtype(a.dtype, np.integer) else a.astype(np.float32))


def _write_training(f, state):
    g = f.create_group("training_state")
    for k, v in state.items():
        if k == "best_weights":
            if v is not None:
                _write_arrays(g.create_group("best_weights"), v)
        else:
            _write_attr(g, k, v)


def _fsync_dir(directory):
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


STALE_AFTER_S = 3600        # a temporary file of another machine's (or an older numbacnn's) writer is stale after


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:         # PermissionError: it runs, as another user
        return True
    return True


def clean_stale_temporaries(path) -> list:
    """Remove the temporary files ``atomic_write_hdf5`` left beside ``path`` when its writer died (kill -9,
    power loss): ``.<name>.<host>.<pid>.<random>.tmp`` of a process of this machine that no longer runs, and
    any such file (or ``.<name>.<random>.tmp`` of older numbacnn versions) not modified for an hour.
    Returns the names removed; a file that cannot be removed is left alone."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    pattern = re.compile(rf"\.{re.escape(os.path.basename(path))}\.(?:(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.)?"
                         r"[a-z0-9_]{8}\.tmp")
    removed, host, now = [], _host(), time.time()
    for name in os.listdir(directory):
        m = pattern.fullmatch(name)
        if m is None:
            continue
        full = os.path.join(directory, name)
        try:
            st = os.lstat(full)
            dead = m["pid"] is not None and m["host"] == host and not _alive(int(m["pid"]))
            if os.path.isfile(full) and not os.path.islink(full) and (dead or now - st.st_mtime > STALE_AFTER_S):
                os.remove(full)
                removed.append(name)
        except OSError:
            continue
    return removed


def atomic_write_hdf5(path, write):
    """Call ``write(h5py.File)`` on a temporary file next to ``path``, then move it into place.

    The temporary file is ``.<name>.<host>.<pid>.<random>.tmp``; stale ones of earlier writers that died
    are removed first (``clean_stale_temporaries``).
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ValueError(f"cannot save {path}: directory {directory} does not exist")
    clean_stale_temporaries(path)
    with replacing(path, prefix=f".{os.path.basename(path)}.{_host()}.{os.getpid()}.") as tmp:
        with h5py.File(tmp, "w") as f:
            write(f)
    _fsync_dir(directory)


def _write_metadata(f, metadata):
    g = f.create_group("metadata")
    for k, v in metadata.items():
        _check_name("metadata", k)
        if isinstance(v, np.ndarray):
            dtype = np.int64 if np.issubdtype(v.dtype, np.integer) else np.float32
            g.create_dataset(k, data=np.ascontiguousarray(v, dtype=dtype))
        else:
            _write_attr(g, k, v)


def save_model(path, model, optimizer=None, training_state=None, metadata=None):
    """Save ``model`` (architecture + weights), optionally an optimizer and a training state.

    optimizer      : an ``optim.Optimizer`` or its ``state_dict()``
    training_state : dict (see ``train.fit``): ints/floats/JSON-able values and
                     optionally ``best_weights`` ({layer: {name: array}})
    metadata       : dict of JSON-able values and numpy arrays (float32 datasets; integer arrays as int64)
    The write is atomic (temporary file, fsync, ``os.replace``).
    """
    config = model.to_config()
    weights = model.get_weights()
    opt_state = optimizer.state_dict() if hasattr(optimizer, "state_dict") else optimizer

    def write(f):
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["model_config"] = json.dumps(config)
        f.attrs["library"] = "numbacnn"
        _write_arrays(f.create_group("model_weights"), weights)
        if opt_state is not None:
            _write_optimizer(f, opt_state)
        if training_state is not None:
            _write_training(f, training_state)
        if metadata:
            _write_metadata(f, metadata)
        guard.seal(f)

    atomic_write_hdf5(path, write)


# ---------------------------------------------------------------- reading
READ_VERSIONS = (1, 2)      # 1: files written before checksums (read without them)


def _decoded(value, what):
    """An attribute as written by ``_write_attr``: numbers as numbers, strings parsed as JSON."""
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if isinstance(value, str):
        try:
            return json.loads(value)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise ValueError(f"{what} is not valid JSON ({type(exc).__name__}: {str(exc)[:80]})") from None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


class _Source:
    """An open model file: every group, attribute and array read through ``guard`` (checked first)."""

    def __init__(self, f, size):
        self.f, self.size = f, size
        root = guard.attributes(f, "/", size)
        if "model_config" not in root:
            raise ValueError("not a numbacnn model file (no model_config attribute)")
        version = root.get("format_version", -1)
        if not isinstance(version, (int, np.integer)) or int(version) not in READ_VERSIONS:
            raise ValueError(f"format_version {version} is not supported (this numbacnn reads "
                             f"{', '.join(map(str, READ_VERSIONS))})")
        self.checksums = int(version) >= 2
        self.root = self.attrs(f, "/")

    def attrs(self, group, where) -> dict:
        return guard.group_attributes(group, where, self.size, self.checksums)

    def group(self, parent, name, where):
        """The subgroup ``name`` (its attributes and member names verified), or None."""
        g = guard.member(parent, name, h5py.Group, where)
        if g is not None:
            self.attrs(g, f"{where.rstrip('/')}/{name}")
        return g

    def array(self, group, name, where, dtype, shape):
        return guard.array(group, name, where, dtype, shape, self.size, self.checksums)


@contextmanager
def _reading(path):
    """An open ``_Source``; any way the file is wrong becomes one ModelFileError naming it."""
    path = os.fspath(path)
    try:
        try:
            size = limits.regular_file(path).st_size
        except ValueError as exc:
            raise ModelFileError(f"model file {exc}") from None
        if not h5py.is_hdf5(path):
            raise ModelFileError(f"model file {path}: not an HDF5 file")
        try:
            f = h5py.File(path, "r")
        except OSError as exc:
            raise ModelFileError(f"model file {path}: unreadable HDF5 (truncated or corrupt): {exc}") from None
        with f:
            guard.check_global_heaps(path, f)
            yield _Source(f, size)
    except ModelFileError:
        raise
    except (ValueError, RecursionError, OverflowError) as exc:
        raise ModelFileError(f"model file {path}: {exc}") from None
    except MemoryError:
        raise ModelFileError(f"model file {path}: not enough memory to read it") from None
    except (OSError, KeyError, RuntimeError, TypeError, IndexError) as exc:
        raise ModelFileError(f"model file {path}: cannot be read (truncated or corrupt): "
                             f"{type(exc).__name__}: {exc}") from None


def _architecture(src):
    text = src.root["model_config"]
    if not isinstance(text, (str, bytes)):
        raise ValueError("model_config is not a JSON string")
    try:
        config = json.loads(text)
    except (json.JSONDecodeError, RecursionError, UnicodeDecodeError) as exc:
        raise ValueError(f"model_config is not valid JSON: {str(exc)[:120]}") from None
    return architecture(config)


def _finite(a, path):
    bad = a.size - int(np.count_nonzero(np.isfinite(a)))
    if bad:
        raise ValueError(f"{path} holds {bad:,} NaN or infinite value(s): the file is damaged")
    return a


def _fits(layer, name, shape):
    def check(got, path):
        if got != tuple(shape):
            raise ValueError(f"weights do not fit the architecture: {path} (layer {layer!r} {name!r}) has shape "
                             f"{got} in the file, the architecture expects {tuple(shape)}")
    return check


def _read_weights(src, group, where, expected) -> dict:
    """{layer: {name: float32 array}}: exactly the arrays of ``expected``, each checked before it is read."""
    unknown = sorted(set(guard.names(group)) - set(expected))
    if unknown:
        raise ValueError(f"weights do not fit the architecture: unknown layers {unknown[:10]}")
    out = {}
    for layer, shapes in expected.items():
        g = src.group(group, layer, where)
        if g is None:
            raise ValueError(f"weights do not fit the architecture: no weights for layer {layer!r}")
        extra = sorted(set(guard.names(g)) - set(shapes))
        if extra:
            raise ValueError(f"weights do not fit the architecture: layer {layer!r} has unexpected arrays {extra[:10]}")
        lw, out[layer] = f"{where}/{layer}", {}
        for name, shape in shapes.items():
            a = src.array(g, name, lw, np.float32, _fits(layer, name, shape))
            if a is None:
                raise ValueError(f"weights do not fit the architecture: layer {layer!r} has no {name!r}")
            out[layer][name] = _finite(a, f"{lw}/{name}")
    return out


def _read_optimizer(src, g, model):
    from .state import check_optimizer_state
    where = "/optimizer_state"
    attrs = src.attrs(g, where)
    shapes = {f"{n}/{p}": s for n, layer in model.layers.items() for p, s in layer.param_shapes.items()}
    arrays = {}
    for ln in guard.names(g):
        lg = src.group(g, ln, where)
        for pn in guard.names(lg):
            key, pw = f"{ln}/{pn}", f"{where}/{ln}/{pn}"
            if key not in shapes:
                raise ValueError(f"{pw}: the architecture has no parameter {key!r}")
            pg = src.group(lg, pn, f"{where}/{ln}")
            for slot in guard.names(pg):
                if slot == "step":
                    arrays[f"{key}/step"] = src.array(pg, slot, pw, np.int64, ())
                else:
                    arrays[f"{key}/{slot}"] = _finite(src.array(pg, slot, pw, np.float32, shapes[key]),
                                                      f"{pw}/{slot}")
    state = {"class_name": attrs.get("class_name"), "config": _decoded(attrs.get("config", "{}"), f"{where} config"),
             "iterations": attrs.get("iterations", 0), "arrays": arrays}
    return check_optimizer_state(state, shapes)


def _read_training(src, g, model):
    from .state import check_training_state
    where = "/training_state"
    state = {k: _decoded(v, f"{where} attribute {k!r}") for k, v in src.attrs(g, where).items()}
    bw = src.group(g, "best_weights", where)
    state["best_weights"] = None if bw is None else _read_weights(src, bw, f"{where}/best_weights",
                                                                  expected_weights(model))
    return check_training_state(state)


def _metadata_shape(name):
    def check(got, path):
        if name.startswith("split_") and len(got) != 1:
            raise ValueError(f"{path} has shape {got}, expected a list of indices")
    return check


def _read_metadata(src, g, model):
    from .state import check_metadata
    where = "/metadata"
    meta = {k: _decoded(v, f"{where} attribute {k!r}") for k, v in src.attrs(g, where).items()}
    for name in guard.names(g):
        d = guard.member(g, name, h5py.Dataset, where)
        dtype = np.int64 if d.dtype.kind in "iu" else np.float32
        meta[name] = src.array(g, name, where, dtype, _metadata_shape(name))
    return check_metadata(meta, model)


def read_weights(path) -> dict:
    """``{layer: {name: float32 array}}`` from a model file's ``/model_weights`` (checked against its own
    architecture before anything is read)."""
    with _reading(path) as src:
        model = _architecture(src)
        wg = src.group(src.f, "model_weights", "/")
        if wg is None:
            raise ValueError("no /model_weights group (not a numbacnn model file)")
        return _read_weights(src, wg, "/model_weights", expected_weights(model))


def load_model(path, backend="cpu") -> ModelFile:
    """Rebuild the model of a file on ``backend`` with its weights; also read the saved states.

    Returns a ``ModelFile`` (``model, optimizer_state, training_state``; the
    states are ``None`` when the file has none).  Raises ``ModelFileError``
    naming the file and what is wrong; nothing is read before it is checked
    (``io.guard``), and the weights, states and metadata are validated.
    """
    path = os.fspath(path)
    with _reading(path) as src:
        model = _architecture(src)
        wg = src.group(src.f, "model_weights", "/")
        if wg is None:
            raise ValueError("no /model_weights group")
        weights = _read_weights(src, wg, "/model_weights", expected_weights(model))
        model.build(backend=backend, seed=0, initialize=False)
        model.set_weights(weights)
        parts = {}
        for name, read in (("optimizer_state", _read_optimizer), ("training_state", _read_training),
                           ("metadata", _read_metadata)):
            g = src.group(src.f, name, "/")
            parts[name] = None if g is None else read(src, g, model)
    return ModelFile(model, parts["optimizer_state"], parts["training_state"], path, parts["metadata"] or {})


def load_weights_by_name(model, path):
    """Copy into ``model`` the weights of every layer whose name and shapes match the file.

    For transfer learning: layers missing from the file, or whose arrays have
    other shapes (a new classifier head), keep their current weights.
    Returns ``(loaded, skipped)``: lists of layer names, and of
    ``(layer name, reason)``.
    """
    path = os.fspath(path)
    weights = read_weights(path)
    current = model.get_weights()
    loaded, skipped, take = [], [], {}
    for layer, arrays in current.items():
        if not arrays:
            continue
        src = weights.get(layer)
        if src is None:
            skipped.append((layer, "not in the file"))
            continue
        bad = [f"{n} {src[n].shape if n in src else 'missing'} vs {a.shape}"
               for n, a in arrays.items() if n not in src or src[n].shape != a.shape]
        if bad:
            skipped.append((layer, "shapes differ: " + ", ".join(bad)))
            continue
        take[layer] = {n: src[n] for n in arrays}
        loaded.append(layer)
    if take:
        model.set_weights(take, strict=False)
    return loaded, skipped


__all__ = ["ModelFileError", "ModelFile", "save_model", "load_model", "load_weights_by_name", "read_weights",
           "atomic_write_hdf5", "clean_stale_temporaries", "architecture", "expected_weights", "FORMAT_VERSION",
           "READ_VERSIONS"]
