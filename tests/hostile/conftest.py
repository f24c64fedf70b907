"""Shared fixtures of the hostile-file suite: a valid trained model file, its data, and the batch runner.

Every hostile case is a command line run by ``runner.py`` in ONE subprocess per
test module, under an address-space limit (``resource.RLIMIT_AS``) and a wall-
clock timeout, while inotify watches the ``outside`` directory that external
storage, external links and virtual datasets point into.  So each case is
bounded in time (its seconds are measured) and memory (the runner's peak RSS),
and the suite learns whether any file outside was opened.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from numbacnn.cli import cli
from numbacnn.data import make_shapes

from .watch import Watch

HERE = os.path.dirname(os.path.abspath(__file__))
if not sys.platform.startswith("linux"):            # /dev/zero, mkfifo, inotify, /proc: Linux only
    collect_ignore_glob = ["test_*.py"]
RLIMIT_AS = 3 << 30            # the runner's address space: a memory bomb fails inside it, never outside
MAX_RSS_KIB = 1_500_000        # what the whole batch may have resident at its peak
MAX_CASE_SECONDS = 10.0        # per command line (most take well under one second)


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    """Directories (data, cases, outside), tiny datasets and a valid model file with every kind of state:
    optimizer, training state with early stopping's best weights, metadata with standardisation and splits."""
    base = tmp_path_factory.mktemp("hostile")
    dirs = {k: base / k for k in ("data", "cases", "outside")}
    for d in dirs.values():
        d.mkdir()
    x, y, names = make_shapes(240, seed=3)
    np.savez(dirs["data"] / "tiny.npz", images=(x * 255).round().astype(np.uint8), labels=y,
             class_names=np.array(names))
    np.savez(dirs["data"] / "inputs.npz", images=(x[:5] * 255).round().astype(np.uint8))
    valid = dirs["data"] / "valid.h5"
    r = CliRunner().invoke(cli, ["train", "--data", str(dirs["data"] / "tiny.npz"), "--epochs", "2", "--batch-size",
                                 "16", "--standardize", "--val-split", "0.2", "--early-stop", "3", "--out", str(valid)])
    assert r.exit_code == 0, r.output
    return {"valid": str(valid), "inputs": str(dirs["data"] / "inputs.npz"), "tiny": str(dirs["data"] / "tiny.npz"),
            **{k: str(v) for k, v in dirs.items()}}


def limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (RLIMIT_AS, RLIMIT_AS))


def run_batch(cases, workdir, watch_dir, timeout=170):
    """Run ``cases`` ([{"args", "max_gib"}]) in one limited subprocess; returns (results, peak RSS KiB, names of
    files opened in ``watch_dir``)."""
    cases_path, results_path = os.path.join(workdir, "cases.json"), os.path.join(workdir, "results.json")
    with open(cases_path, "w") as fh:
        json.dump(cases, fh)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.path.dirname(os.path.dirname(HERE)),
                                                                      os.environ.get("PYTHONPATH")]))}
    env.pop("NUMBACNN_MAX_GIB", None)
    with Watch(watch_dir) as w:
        proc = subprocess.run([sys.executable, os.path.join(HERE, "runner.py"), cases_path, results_path],
                              capture_output=True, text=True, timeout=timeout, preexec_fn=limit_memory, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with open(results_path) as fh:
        out = json.load(fh)
    return out["results"], out["maxrss_kib"], w.touched


def assert_clean_error(result, *fragments):
    """Non-zero exit, exactly one stderr line 'Error: ...' containing every fragment, no traceback, in time."""
    where = f"{result['stderr']!r} / {result['stdout'][-300:]!r}"
    assert result["exit"] not in (0, None), where
    lines = result["stderr"].strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), where
    assert "Traceback" not in result["stdout"] + result["stderr"], where
    assert not lines[0].startswith("Error: unexpected "), where
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    assert result["seconds"] < MAX_CASE_SECONDS, result["seconds"]
