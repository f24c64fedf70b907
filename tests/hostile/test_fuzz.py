"""Flipped bytes of a valid model file: every outcome is a clean error or the same model, bit for bit.

A hypothesis property (derandomized in CI by the ``ci`` profile) and a seeded
sweep (``sweep.py``, in a subprocess under the batch's memory limit) flip
bytes anywhere in the file, half of them in its first 8 KB (superblock,
object headers, attributes, the global heap of the JSON strings).  Checksums
make a flipped weight, state or attribute an error; the structural checks and
the global-heap walk keep HDF5 from looping or reading garbage.
"""
from __future__ import annotations

import faulthandler
import json
import os
import resource
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from numbacnn.io import ModelFileError, load_model

from . import sweep
from .conftest import HERE, limit_memory

HANG_S = 120        # a hang inside HDF5 cannot be interrupted: dump the stacks and end the run instead


@pytest.fixture(scope="module")
def reference(world, tmp_path_factory):
    data = open(world["valid"], "rb").read()
    return data, sweep.snapshot(load_model(world["valid"])), str(tmp_path_factory.mktemp("fuzz") / "flipped.h5")


@pytest.fixture(autouse=True)
def _bounded():
    """No silent hang, and at most 2 GiB more address space than the test process has now: a damaged length
    of a JSON string can make HDF5 allocate up to 4 GiB before it reports the mismatch (a clean error then)."""
    faulthandler.dump_traceback_later(HANG_S, exit=True)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as fh:
        used = int(fh.read().split()[0]) * resource.getpagesize()
    limit = used + (2 << 30)
    if hard == resource.RLIM_INFINITY or limit < hard:
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        faulthandler.cancel_dump_traceback_later()


FLIPS = st.lists(st.tuples(st.booleans(), st.integers(0, 2 ** 31), st.integers(1, 255)), min_size=1, max_size=20)


@settings(max_examples=150)
@given(flips=FLIPS)
def test_flipped_bytes_give_a_clean_error_or_the_same_model(reference, flips):
    data, expected, path = reference
    mutated = bytearray(data)
    for head, where, xor in flips:
        mutated[where % (8192 if head else len(mutated))] ^= xor
    with open(path, "wb") as fh:
        fh.write(mutated)
    try:
        mf = load_model(path)
    except ModelFileError as exc:
        assert path in str(exc) and "\n" not in str(exc)
        return
    assert sweep.snapshot(mf) == expected


def test_seeded_sweep_of_flipped_files(world, tmp_path):
    """300 seeded cases in a subprocess (memory-limited, timed): none different, none a crash, none slow."""
    out = tmp_path / "sweep.json"
    proc = subprocess.run([sys.executable, os.path.join(HERE, "sweep.py"), world["valid"], "300", "12", str(out)],
                          capture_output=True, text=True, timeout=HANG_S, preexec_fn=limit_memory)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads(out.read_text())
    print(f"\nflipped-file sweep: {report['cases']} cases, {report['counts']}, slowest {report['slowest_s']} s")
    assert not report["failures"], report["failures"]
    assert sum(report["counts"].values()) == report["cases"]
    assert report["slowest_s"] < 5.0
