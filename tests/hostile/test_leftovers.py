"""Leftovers of a killed writer (issue 12, item 7): the next save removes them, and only them.

``atomic_write_hdf5`` writes ``.<name>.<host>.<pid>.<random>.tmp`` beside the
destination; ``kill -9`` during a save leaves it behind.  The next save of the
same file removes it (its writer's process is gone), keeps those of running
writers, and removes older-style names (``.<name>.<random>.tmp``) only once
they are an hour old.
"""
from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import time

import numpy as np
from click.testing import CliRunner

from numbacnn.cli import cli
from numbacnn.io import hdf5, load_model, save_model
from numbacnn.graph import Model
from numbacnn.layers import Dense, Flatten

KILLED_WRITER = """
import sys, time
from numbacnn.io import hdf5
def write(f):
    f["x"] = [1.0, 2.0]
    print("writing", flush=True)
    time.sleep(60)
hdf5.atomic_write_hdf5(sys.argv[1], write)
"""


def _model():
    return Model.sequential("tiny", (1, 4, 4), [Flatten(name="flat"), Dense(3, name="fc")]).build("cpu", seed=0)


def _dead_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _host():
    return hdf5._host()


def test_kill_9_during_a_save_leaves_a_temporary_file_the_next_save_removes(tmp_path):
    path = tmp_path / "m.ckpt.h5"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    left = glob.glob(str(tmp_path / ".m.ckpt.h5.*.tmp"))
    assert len(left) == 1 and not path.exists()          # what kill -9 leaves: a temporary file, no model file
    save_model(path, _model())
    assert glob.glob(str(tmp_path / ".m.ckpt.h5.*.tmp")) == []
    assert load_model(path).model.name == "tiny"


def test_a_running_writers_file_and_other_names_are_kept(tmp_path):
    path = tmp_path / "m.h5"
    host = _host()
    mine = tmp_path / f".m.h5.{host}.{os.getpid()}.abcdefgh.tmp"          # a writer that still runs (this one)
    dead = tmp_path / f".m.h5.{host}.{_dead_pid()}.abcdefgh.tmp"         # a writer that was killed
    other_host = tmp_path / ".m.h5.elsewhere.1.abcdefgh.tmp"              # another machine's, fresh
    old_style_fresh = tmp_path / ".m.h5.abcdefgh.tmp"                     # older numbacnn, fresh
    old_style_stale = tmp_path / ".m.h5.zyxwvuts.tmp"                     # older numbacnn, two hours old
    unrelated = [tmp_path / ".m.h5x.abcdefgh.tmp", tmp_path / ".other.h5.abcdefgh.tmp", tmp_path / "m.h5.tmp"]
    for p in (mine, dead, other_host, old_style_fresh, old_style_stale, *unrelated):
        p.write_bytes(b"partial")
    two_hours_ago = time.time() - 7200
    os.utime(old_style_stale, (two_hours_ago, two_hours_ago))
    save_model(path, _model())
    kept = {p.name for p in tmp_path.iterdir()}
    assert dead.name not in kept and old_style_stale.name not in kept
    assert {mine.name, other_host.name, old_style_fresh.name, *(p.name for p in unrelated)} <= kept


def test_the_next_training_run_cleans_its_checkpoints_leftovers(tmp_path):
    x = np.random.default_rng(0).random((60, 1, 4, 4)).astype(np.float32)
    np.savez(tmp_path / "d.npz", images=x, labels=np.arange(60) % 3)
    stale = tmp_path / f".m.ckpt.h5.{_host()}.{_dead_pid()}.abcdefgh.tmp"
    stale.write_bytes(b"partial")
    arch = tmp_path / "tiny.json"
    arch.write_text(_model().to_json())
    r = CliRunner().invoke(cli, ["train", "--model", str(arch), "--data", str(tmp_path / "d.npz"), "--epochs", "1",
                                 "--out", str(tmp_path / "m.h5")])
    assert r.exit_code == 0, r.output
    assert not stale.exists()
