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

``save_model`` writes a temporary file in the destination's directory, fsyncs
it and ``os.replace``s it over the destination, so a crash leaves either the
old file or the new one, never half of one.  ``load_model`` turns every way a
file can be wrong (missing, truncated, not HDF5, not ours, weights that do not
fit the architecture) into one ``ModelFileError`` naming the file.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field

import h5py
import numpy as np

FORMAT_VERSION = 1


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


def _file_mode(path):
    try:
        return os.stat(path).st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def atomic_write_hdf5(path, write):
    """Call ``write(h5py.File)`` on a temporary file next to ``path``, then move it into place."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ValueError(f"cannot save {path}: directory {directory} does not exist")
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        os.chmod(tmp, _file_mode(path))   # mkstemp makes 0600; give the usual permissions
        with h5py.File(tmp, "w") as f:
            write(f)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
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

    atomic_write_hdf5(path, write)


# ---------------------------------------------------------------- reading
def _read_attr(value):
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if isinstance(value, str):
        return json.loads(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def _read_arrays(group):
    out = {}
    for layer, g in group.items():
        if not isinstance(g, h5py.Group):
            raise ValueError(f"{group.name}/{layer} should be a group of datasets")
        out[layer] = {name: np.asarray(d[()], dtype=np.float32) for name, d in g.items()}
    return out


def _read_optimizer(g):
    arrays = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            arrays[name] = np.asarray(obj[()])

    g.visititems(visit)
    class_name = g.attrs["class_name"]
    return {"class_name": class_name.decode() if isinstance(class_name, bytes) else str(class_name),
            "config": json.loads(g.attrs["config"]), "iterations": int(g.attrs.get("iterations", 0)),
            "arrays": arrays}


def _read_training(g, path):
    from .state import check_training_state
    state = {k: _read_attr(v) for k, v in g.attrs.items()}
    state["best_weights"] = _read_arrays(g["best_weights"]) if "best_weights" in g else None
    try:
        return check_training_state(state)
    except ValueError as exc:
        raise ModelFileError(f"model file {path}: {exc}") from None


def _read_metadata(g):
    meta = {k: _read_attr(v) for k, v in g.attrs.items()}
    for k, d in g.items():
        if isinstance(d, h5py.Dataset):
            meta[k] = np.asarray(d[()], dtype=np.int64 if np.issubdtype(d.dtype, np.integer) else np.float32)
    return meta


def _open(path):
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ModelFileError(f"model file {path}: no such file")
    if os.path.isdir(path):
        raise ModelFileError(f"model file {path}: is a directory")
    if not h5py.is_hdf5(path):
        raise ModelFileError(f"model file {path}: not an HDF5 file")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise ModelFileError(f"model file {path}: unreadable HDF5 (truncated or corrupt): {exc}") from None


def read_weights(path) -> dict:
    """``{layer: {name: float32 array}}`` from a model file's ``/model_weights``."""
    path = os.fspath(path)
    with _open(path) as f:
        try:
            if "model_weights" not in f:
                raise ModelFileError(f"model file {path}: no /model_weights group (not a numbacnn model file)")
            return _read_arrays(f["model_weights"])
        except (OSError, KeyError, ValueError, RuntimeError) as exc:
            if isinstance(exc, ModelFileError):
                raise
            raise ModelFileError(f"model file {path}: cannot read weights (truncated or corrupt): {exc}") from None


def _check_fit(path, model, weights):
    expected = model.get_weights()
    for layer, arrays in expected.items():
        if layer not in weights:
            raise ModelFileError(f"model file {path}: weights do not fit the architecture: "
                                 f"no weights for layer {layer!r}")
        for name, a in arrays.items():
            if name not in weights[layer]:
                raise ModelFileError(f"model file {path}: weights do not fit the architecture: "
                                     f"layer {layer!r} has no {name!r}")
            if weights[layer][name].shape != a.shape:
                raise ModelFileError(f"model file {path}: weights do not fit the architecture: layer {layer!r} "
                                     f"{name!r} has shape {weights[layer][name].shape} in the file, "
                                     f"the architecture expects {a.shape}")
        extra = sorted(set(weights[layer]) - set(arrays))
        if extra:
            raise ModelFileError(f"model file {path}: weights do not fit the architecture: layer {layer!r} "
                                 f"has unexpected arrays {extra}")
    extra = sorted(set(weights) - set(expected))
    if extra:
        raise ModelFileError(f"model file {path}: weights do not fit the architecture: unknown layers {extra}")


def load_model(path, backend="cpu") -> ModelFile:
    """Rebuild the model of a file on ``backend`` with its weights; also read the saved states.

    Returns a ``ModelFile`` (``model, optimizer_state, training_state``; the
    states are ``None`` when the file has none).  Raises ``ModelFileError``.
    """
    from ..graph import Model

    path = os.fspath(path)
    with _open(path) as f:
        try:
            if "model_config" not in f.attrs:
                raise ModelFileError(f"model file {path}: not a numbacnn model file (no model_config attribute)")
            version = int(f.attrs.get("format_version", -1))
            if version != FORMAT_VERSION:
                raise ModelFileError(f"model file {path}: format_version {version} is not supported "
                                     f"(this numbacnn reads {FORMAT_VERSION})")
            try:
                config = json.loads(f.attrs["model_config"])
            except (TypeError, json.JSONDecodeError) as exc:
                raise ModelFileError(f"model file {path}: model_config is not valid JSON: {exc}") from None
            try:
                model = Model.from_config(config)
                model.build(backend=backend, seed=0, initialize=False)
            except (ValueError, KeyError, TypeError) as exc:
                raise ModelFileError(f"model file {path}: invalid model_config: {exc}") from None
            if "model_weights" not in f:
                raise ModelFileError(f"model file {path}: no /model_weights group")
            weights = _read_arrays(f["model_weights"])
            _check_fit(path, model, weights)
            model.set_weights(weights)
            opt_state = _read_optimizer(f["optimizer_state"]) if "optimizer_state" in f else None
            training_state = _read_training(f["training_state"], path) if "training_state" in f else None
            metadata = _read_metadata(f["metadata"]) if "metadata" in f else {}
        except ModelFileError:
            raise
        except (OSError, KeyError, ValueError, RuntimeError, TypeError) as exc:
            raise ModelFileError(f"model file {path}: cannot be read (truncated or corrupt): {exc}") from None
    return ModelFile(model, opt_state, training_state, path, metadata)


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
           "atomic_write_hdf5", "FORMAT_VERSION"]
