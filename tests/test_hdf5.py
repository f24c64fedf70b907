"""Model files: layout readable with plain h5py, round trips, atomic saves, clear errors."""
import contextlib
import json
import os

import h5py
import numpy as np
import pytest

from numbacnn.io import ModelFileError, load_model, load_weights_by_name, save_model
from numbacnn.io import guard
from numbacnn.io import hdf5 as hdf5_module
from numbacnn.optim import Adam, optimizer_from_state


from small_models import BE, small  # noqa: E402  (tests/ is on sys.path)


def _trained(tmp_path):
    """A model whose batch-norm statistics moved, and an Adam optimizer with state."""
    m = small()
    rng = np.random.default_rng(1)
    x = rng.standard_normal((16, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 3, 16)
    opt = Adam(lr=1e-2, weight_decay=1e-4)
    be = m.backend
    for _ in range(2):
        out = m.forward(x, training=True)
        _, probs = be.softmax_cross_entropy_forward(out, be.asarray(y, dtype=np.int64))
        m.backward(be.softmax_cross_entropy_backward(probs, be.asarray(y, dtype=np.int64)))
        opt.step(m)
    return m, opt, x


def test_round_trip_and_plain_h5py_layout(tmp_path):
    m, opt, x = _trained(tmp_path)
    path = tmp_path / "m.h5"
    state = {"epoch": 2, "step": 7, "early_stopping": {"monitor": "loss", "best": 0.5, "best_epoch": 1, "wait": 1},
             "history": [{"epoch": 1, "loss": 1.0}, {"epoch": 2, "loss": 0.9}],
             "rng_state": np.random.default_rng(3).bit_generator.state, "best_weights": m.get_weights()}
    save_model(path, m, opt, training_state=state)

    with h5py.File(path, "r") as f:           # what any h5py user sees
        assert f.attrs["format_version"] == hdf5_module.FORMAT_VERSION
        assert json.loads(f.attrs["model_config"]) == m.to_config()
        assert f["model_weights/conv/weight"].dtype == np.float32
        np.testing.assert_array_equal(f["model_weights/bn/running_var"][()], m.get_weights()["bn"]["running_var"])
        assert f["optimizer_state"].attrs["class_name"] == "Adam"
        assert f["optimizer_state"].attrs["lr"] == pytest.approx(1e-2)
        assert f["optimizer_state/fc/weight/step"][()] == 2
        assert f["training_state"].attrs["epoch"] == 2
        assert json.loads(f["training_state"].attrs["history"]) == state["history"]

    loaded, opt_state, ts = load_model(path, backend=BE)
    assert loaded.to_config() == m.to_config()
    for layer, arrays in m.get_weights().items():
        for name, a in arrays.items():
            np.testing.assert_array_equal(loaded.get_weights()[layer][name], a, err_msg=f"{layer}/{name}")
    np.testing.assert_array_equal(loaded.forward(x), m.forward(x))
    assert ts["epoch"] == 2 and ts["step"] == 7 and ts["early_stopping"]["best"] == 0.5
    assert ts["history"] == state["history"]
    assert ts["rng_state"] == state["rng_state"]
    np.testing.assert_array_equal(ts["best_weights"]["conv"]["weight"], state["best_weights"]["conv"]["weight"])
    opt2 = optimizer_from_state(opt_state)
    assert opt2.get_config() == opt.get_config() and opt2.iterations == opt.iterations
    ref = opt.state_dict()["arrays"]
    assert set(opt_state["arrays"]) == set(ref)
    for k, a in ref.items():
        np.testing.assert_array_equal(opt_state["arrays"][k], a, err_msg=k)


def test_model_only_file_has_no_states(tmp_path):
    m = small()
    save_model(tmp_path / "w.h5", m)
    mf = load_model(tmp_path / "w.h5", backend=BE)
    assert mf.optimizer_state is None and mf.training_state is None
    with h5py.File(tmp_path / "w.h5", "r") as f:
        assert set(f) == {"model_weights"}


def test_save_is_atomic_when_a_write_fails(tmp_path, monkeypatch):
    m = small()
    path = tmp_path / "m.h5"
    save_model(path, m)
    before = path.read_bytes()
    other = small(seed=5)

    real = hdf5_module._write_arrays

    def crash(group, nested):
        real(group, nested)
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(hdf5_module, "_write_arrays", crash)
    with pytest.raises(OSError, match="simulated"):
        save_model(path, other)
    assert path.read_bytes() == before                 # the old file is intact
    assert sorted(os.listdir(tmp_path)) == ["m.h5"]      # and no temporary file remains
    monkeypatch.undo()
    loaded = load_model(path, backend=BE).model
    np.testing.assert_array_equal(loaded.get_weights()["fc"]["weight"], m.get_weights()["fc"]["weight"])


def test_save_is_atomic_when_replace_fails(tmp_path, monkeypatch):
    m = small()
    path = tmp_path / "m.h5"
    save_model(path, m)
    before = path.read_bytes()
    monkeypatch.setattr(hdf5_module.os, "replace", lambda a, b: (_ for _ in ()).throw(OSError("crash")))
    with pytest.raises(OSError, match="crash"):
        save_model(path, small(seed=9))
    assert path.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["m.h5"]


@contextlib.contextmanager
def _edited(path):
    """Edit a model file with h5py, then stamp its checksums again (as a deliberate edit would)."""
    with h5py.File(path, "a") as f:
        yield f
        guard.seal(f)


def _good_file(tmp_path):
    path = tmp_path / "good.h5"
    save_model(path, small())
    return path


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match=r"nope\.h5: no such file"):
        load_model(tmp_path / "nope.h5", backend=BE)


def test_not_hdf5(tmp_path):
    p = tmp_path / "text.h5"
    p.write_text("hello, I am not HDF5\n" * 50)
    with pytest.raises(ModelFileError, match=r"text\.h5: not an HDF5 file"):
        load_model(p, backend=BE)


def test_truncated_file(tmp_path):
    good = _good_file(tmp_path)
    data = good.read_bytes()
    for cut in (len(data) // 2, len(data) - 100, 600):
        p = tmp_path / f"cut{cut}.h5"
        p.write_bytes(data[:cut])
        with pytest.raises(ModelFileError, match=f"cut{cut}"):
            load_model(p, backend=BE)


def test_foreign_hdf5(tmp_path):
    p = tmp_path / "foreign.h5"
    with h5py.File(p, "w") as f:
        f["data"] = np.arange(10)
    with pytest.raises(ModelFileError, match=r"foreign\.h5: not a numbacnn model file \(no model_config"):
        load_model(p, backend=BE)


def test_bad_config(tmp_path):
    p = tmp_path / "bad.h5"
    save_model(p, small())
    with _edited(p) as f:
        f.attrs["model_config"] = "{not json"
    with pytest.raises(ModelFileError, match=r"bad\.h5: model_config is not valid JSON"):
        load_model(p, backend=BE)
    cfg = small().to_config()
    cfg["nodes"][0]["class_name"] = "Bogus"
    with _edited(p) as f:
        f.attrs["model_config"] = json.dumps(cfg)
    with pytest.raises(ModelFileError, match=r"bad\.h5: invalid model_config: .*Bogus"):
        load_model(p, backend=BE)


def test_mismatched_weights(tmp_path):
    p = tmp_path / "mis.h5"
    save_model(p, small())
    with _edited(p) as f:
        del f["model_weights/fc/weight"]
        f["model_weights/fc/weight"] = np.zeros((5, 64), np.float32)
    with pytest.raises(ModelFileError, match=r"mis\.h5: weights do not fit.*/model_weights/fc/weight "
                                         r"\(layer 'fc' 'weight'\) has shape \(5, 64\)"):
        load_model(p, backend=BE)
    with _edited(p) as f:
        del f["model_weights/bn"]
    with pytest.raises(ModelFileError, match=r"mis\.h5: .*no weights for layer 'bn'"):
        load_model(p, backend=BE)


def test_errors_are_value_errors():
    assert issubclass(ModelFileError, ValueError)


def test_load_weights_by_name_skips_other_shapes(tmp_path):
    src = small(classes=3, seed=1)
    save_model(tmp_path / "src.h5", src)
    dst = small(classes=5, seed=2)
    fc_before = dst.get_weights()["fc"]["weight"].copy()
    loaded, skipped = load_weights_by_name(dst, tmp_path / "src.h5")
    assert loaded == ["conv", "bn"]
    assert [name for name, _ in skipped] == ["fc"] and "shapes differ" in skipped[0][1]
    np.testing.assert_array_equal(dst.get_weights()["conv"]["weight"], src.get_weights()["conv"]["weight"])
    np.testing.assert_array_equal(dst.get_weights()["fc"]["weight"], fc_before)
    with pytest.raises(ModelFileError, match="no such file"):
        load_weights_by_name(dst, tmp_path / "missing.h5")


def test_no_pickle_in_files(tmp_path):
    m, opt, _ = _trained(tmp_path)
    p = tmp_path / "m.h5"
    save_model(p, m, opt, training_state={"epoch": 1, "history": [{"epoch": 1, "loss": 1.0}]})
    kinds = set()
    with h5py.File(p, "r") as f:
        f.visititems(lambda n, o: kinds.add(o.dtype.kind) if isinstance(o, h5py.Dataset) else None)
        for obj in [f] + [f[k] for k in f]:
            for v in obj.attrs.values():
                assert isinstance(v, (str, bytes, np.integer, np.floating, int, float)), type(v)
    assert kinds <= {"f", "i"}
