"""``benchmarks/device_check.py --tiny`` runs every phase under the CUDA simulator and writes its results.

The script is what a GPU machine runs when one is lent (minutes of device time, no second try), so CI
runs it end to end at toy sizes first, in its own process (NUMBA_ENABLE_CUDASIM must be set before
numba is imported), and checks ``results.json`` and ``summary.txt``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from numbacnn.backends import numba_cuda_missing_reason

ROOT = Path(__file__).resolve().parents[1]
PHASES = ("env", "host", "ceilings", "correctness", "layers", "train", "inference", "cpu_gpu")


@pytest.mark.skipif(numba_cuda_missing_reason() is not None, reason=str(numba_cuda_missing_reason()))
def test_device_check_tiny_runs_every_phase(tmp_path):
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "device_check.py"), "--tiny", "--out",
                          str(tmp_path)], env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["errors"] == {}
    assert set(PHASES) <= set(results["phases"]), sorted(results["phases"])
    phases = results["phases"]
    assert phases["env"]["simulator"] is True and phases["env"]["caching_allocator"] is True
    assert phases["host"]["allocations"] == 0 and phases["host"]["syncs"] == 1
    assert all(v == "ok" for v in phases["correctness"].values()), phases["correctness"]
    assert {"lenet5", "resnet20"} <= set(phases["train"])
    assert {"resnet50_b1", "resnet50_b2"} <= set(phases["inference"])
    summary = (tmp_path / "summary.txt").read_text()
    assert all(f"== {p}" in summary for p in PHASES)


def test_device_check_refuses_tiny_without_the_simulator(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "device_check.py"), "--tiny", "--out",
                          str(tmp_path)], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode != 0 and "NUMBA_ENABLE_CUDASIM=1" in res.stderr
