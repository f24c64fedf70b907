"""Flip bytes of a valid model file and load it: every outcome must be a clean error or the same model.

    python sweep.py MODEL.h5 CASES SEED [OUT.json]

Case i replaces 1-20 bytes (XOR with a non-zero byte), half of them within the
first 8 KB (the superblock, object headers and attributes), the rest anywhere,
drawn from ``numpy.random.default_rng([SEED, i])``; then ``load_model``.  The
outcomes are counted: ``identical`` (architecture, weights, optimizer state,
training state and metadata bit for bit the original's), ``error: <kind>`` (a
``ModelFileError``, by the first words of what it says), ``DIFFERENT`` or
``CRASH <type>`` (failures).  The slowest case's seconds are reported too.
"""
from __future__ import annotations

import collections
import json
import os
import re
import sys
import tempfile
import time

import numpy as np

from numbacnn.io import ModelFileError, load_model


def snapshot(mf) -> dict:
    """Everything a model file gives, as plain comparable values (arrays as dtype + shape + bytes)."""
    def plain(v):
        if isinstance(v, np.ndarray):
            return ("array", v.dtype.str, v.shape, v.tobytes())
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v
    return plain({"config": mf.model.to_config(), "weights": mf.model.get_weights(), "optimizer": mf.optimizer_state,
                  "training": mf.training_state, "metadata": mf.metadata})


def mutate(data: bytes, rng) -> bytes:
    out = bytearray(data)
    for _ in range(int(rng.integers(1, 21))):
        span = 8192 if rng.random() < 0.5 else len(out)
        out[int(rng.integers(0, min(span, len(out))))] ^= int(rng.integers(1, 256))
    return bytes(out)


def kind(message: str) -> str:
    """A short name for an error: the words after the file name, without numbers, paths and quotes."""
    text = message.split(": ", 1)[1] if ": " in message else message
    text = re.sub(r"/\S*|'[^']*'|\([^)]*\)|\d[\d,.]*", "", text)
    return " ".join(text.split()[:6]).rstrip(":,")


def outcome(path, reference) -> str:
    try:
        mf = load_model(path)
    except ModelFileError as exc:
        return "error: " + kind(str(exc))
    except Exception as exc:  # noqa: BLE001 - exactly what the sweep looks for
        return f"CRASH {type(exc).__name__}: {exc}"
    return "identical" if snapshot(mf) == reference else "DIFFERENT"


def sweep(model, cases, seed):
    data = open(model, "rb").read()
    reference = snapshot(load_model(model))
    counts, slowest, bad = collections.Counter(), 0.0, []
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "flipped.h5")
        for i in range(cases):
            with open(path, "wb") as fh:
                fh.write(mutate(data, np.random.default_rng([seed, i])))
            t0 = time.perf_counter()
            result = outcome(path, reference)
            slowest = max(slowest, time.perf_counter() - t0)
            counts[result if result.startswith("error") or result == "identical" else result.split(":")[0]] += 1
            if not (result.startswith("error") or result == "identical"):
                bad.append((i, result))
    return {"cases": cases, "seed": seed, "counts": dict(counts.most_common()), "slowest_s": round(slowest, 3),
            "failures": bad[:20]}


if __name__ == "__main__":
    report = sweep(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
    if len(sys.argv) > 4:
        with open(sys.argv[4], "w") as fh:
            json.dump(report, fh, indent=1)
    print(json.dumps(report, indent=1))
