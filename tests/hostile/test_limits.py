"""Limits checked before anything is allocated, the .json architecture path, and files of format 1.

In-process and fast: the size checks (parameters, activations, the flag), a
topological sort that keeps a reversed 20,000-node document linear, the node
cap, ``.json`` bombs under summary and train, and old files (no checksums) still
loading.
"""
from __future__ import annotations

import json
import time

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from numbacnn import config
from numbacnn.cli import cli
from numbacnn.graph import Model
from numbacnn.io import guard, limits, load_model, save_model
from numbacnn.io.architecture import MAX_NODES, architecture
from numbacnn.layers import Conv2D, Dense, Flatten, ReLU


def _conv_config(input_shape, filters=1):
    return Model.sequential("c", input_shape, [Conv2D(filters, 1, name="conv"), Flatten(name="flat"),
                                               Dense(2, name="fc")]).to_config()


def test_activations_over_the_limit_are_refused_with_few_parameters(monkeypatch):
    monkeypatch.setattr(config, "MAX_GIB", 1.0)
    cfg = _conv_config([1, 4, 4])
    cfg["nodes"] = cfg["nodes"][:1] + [{"name": "relu", "class_name": "ReLU", "config": {}, "inputs": ["conv"]}]
    cfg["output"], cfg["input_shape"] = "relu", [1, 20_000, 20_000]
    with pytest.raises(ValueError, match=r"the activations of one image would take 4\.5 GiB, over the 1\.0 GiB limit "
                                         r"\(set NUMBACNN_MAX_GIB"):
        architecture(cfg)


def test_the_flag_raises_the_limit_and_bad_values_are_named(monkeypatch):
    cfg = _conv_config([1, 8, 8], filters=4)
    monkeypatch.setattr(config, "MAX_GIB", 1e-6)
    with pytest.raises(ValueError, match="parameters"):
        architecture(cfg)
    monkeypatch.setattr(config, "MAX_GIB", 1.0)
    assert architecture(cfg).count_params()[0] == 4 * 1 + 4 + 2 * 256 + 2
    monkeypatch.setattr(config, "MAX_GIB", -3.0)
    with pytest.raises(ValueError, match="NUMBACNN_MAX_GIB=-3.0 must be a positive number"):
        limits.max_bytes()


def test_default_limit_is_16_gib_or_the_machine(monkeypatch):
    monkeypatch.setattr(config, "MAX_GIB", None)
    assert limits.max_bytes() == min(16 << 30, limits.physical_memory() or 16 << 30)


def _chain(n):
    nodes = [{"name": f"r{i}", "class_name": "ReLU", "config": {}, "inputs": [f"r{i - 1}" if i else "input"]}
             for i in range(n)]
    return {"name": "chain", "input_shape": [1, 2, 2], "nodes": nodes[::-1], "output": f"r{n - 1}"}


@pytest.mark.parametrize("command", [["time", "resnet20", "--input-shape", "3,50000,50000"],
                                     ["summary", "lenet5", "--input-shape", "1,100000,100000"],
                                     ["train", "--model", "resnet20", "--data", "builtin:rgb", "--limit", "10"]])
def test_zoo_models_are_sized_before_they_are_built(command, monkeypatch, tmp_path):
    """A zoo model at a huge --input-shape (or under a tiny limit) is one error naming it, nothing allocated."""
    monkeypatch.chdir(tmp_path)
    if command[0] == "train":
        monkeypatch.setattr(config, "MAX_GIB", 1e-4)
    res = CliRunner().invoke(cli, command)
    last = res.output.splitlines()[-1]
    assert res.exit_code == 1 and not any("Error" in line for line in res.output.splitlines()[:-1]), res.output
    assert last.startswith(f"Error: model {command[1] if command[0] != 'train' else 'resnet20'} with input (")
    assert "over the" in last and "NUMBACNN_MAX_GIB" in last


def test_a_reversed_document_of_many_nodes_builds_in_one_pass():
    """5,000 nodes in reverse order: Model.from_config alone takes ~18 s (a pass per node); sorted first, <1 s."""
    t0 = time.perf_counter()
    model = architecture(_chain(5_000))
    assert len(model.layers) == 5_000 and list(model.layers)[0] == "r0"
    assert time.perf_counter() - t0 < 5


def test_too_many_nodes_and_cycles_are_refused():
    with pytest.raises(ValueError, match=f"more than the {MAX_NODES:,}"):
        architecture(_chain(MAX_NODES + 1))
    cyc = _chain(3)
    cyc["nodes"][-1]["inputs"] = ["r2"]          # r0 <- r2 <- r1 <- r0
    with pytest.raises(ValueError, match="unknown inputs or a cycle"):
        architecture(cyc)


@pytest.mark.parametrize("edit, fragment", [
    (lambda c: c["nodes"][0]["config"].update(filters=10 ** 9), "the architecture's parameters"),
    (lambda c: c.update(input_shape=[1, 10 ** 6, 10 ** 6]), "NUMBACNN_MAX_GIB"),
    (None, "not valid JSON"),
])
@pytest.mark.parametrize("command", ["summary", "train"])
def test_json_architecture_bombs_are_one_line_errors(tmp_path, edit, fragment, command):
    path = tmp_path / "bomb.json"
    cfg = _conv_config([1, 8, 8])
    if edit is None:
        path.write_text("[" * 100_000 + "]" * 100_000)
    else:
        edit(cfg)
        path.write_text(json.dumps(cfg))
    data = tmp_path / "d.npz"
    np.savez(data, images=np.zeros((12, 1, 8, 8), np.float32), labels=np.arange(12) % 2)
    args = ["summary", str(path)] if command == "summary" else ["train", "--model", str(path), "--data", str(data),
                                                                  "--out", str(tmp_path / "m.h5")]
    r = CliRunner().invoke(cli, args)
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 1 and len(lines) == 1 and str(path) in lines[0] and fragment in lines[0], r.output


def test_files_of_format_1_load_without_checksums(tmp_path):
    m = Model.sequential("s", (1, 4, 4), [Flatten(name="flat"), Dense(3, name="fc"), ReLU(name="relu")])
    m.build("cpu", seed=1)
    path = tmp_path / "old.h5"
    save_model(path, m, metadata={"class_names": ["a", "b", "c"]})
    with h5py.File(path, "a") as f:                     # what numbacnn wrote before checksums
        f.attrs["format_version"] = 1
        f.visititems(lambda _, o: o.attrs.__delitem__(guard.CHECKSUM))
        del f.attrs[guard.CHECKSUM]
    mf = load_model(path)
    np.testing.assert_array_equal(mf.model.get_weights()["fc"]["weight"], m.get_weights()["fc"]["weight"])
    with h5py.File(path, "a") as f:
        f.attrs["format_version"] = 2                  # format 2 without checksums: damaged
    with pytest.raises(ValueError, match="/ has no checksum"):
        load_model(path)
