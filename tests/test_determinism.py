"""``numbacnn train`` twice with one seed, on 1 and on 2 threads, writes the same model file: the same bits in
every weight, optimizer and training-state value (the epochs' times aside).  The kernels' bit-identity for any
thread count is tested op by op in tests/kernels/test_threads.py."""
from __future__ import annotations

import json

import h5py
import numba
import numpy as np
import pytest

from numbacnn.data import make_shapes

from cli_run import run  # noqa: E402  (tests/ is on sys.path)


def contents(path):
    """{name: value} of every dataset and attribute of an HDF5 file, checksums and epoch times left out."""
    out = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            out[name] = obj[()]
        for key, value in obj.attrs.items():
            if key == "crc32":
                continue
            if key == "history":
                value = json.dumps([{k: v for k, v in h.items() if k != "time"} for h in json.loads(value)])
            out[f"{name}@{key}"] = value

    with h5py.File(path, "r") as f:
        visit("/", f)
        f.visititems(visit)
    return out


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 threads")
def test_train_twice_with_one_seed_gives_the_same_file(tmp_path):
    x, y, names = make_shapes(160, seed=5)
    np.savez(tmp_path / "d.npz", images=(x * 255).round().astype(np.uint8), labels=y, class_names=np.array(names))
    files = []
    for threads in (1, 2):
        out = tmp_path / f"t{threads}.h5"
        run("train", "--data", tmp_path / "d.npz", "--epochs", 2, "--batch-size", 24, "--seed", 3,
            "--threads", threads, "--out", out)
        files.append(contents(out))
    a, b = files
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], np.ndarray):
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        else:
            assert a[key] == b[key], key
