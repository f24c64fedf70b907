"""How much of the onnx package's own test data numbacnn imports: a count per folder, and what is missing.

Runs every case of ``pytorch-converted``, ``pytorch-operator``, ``simple`` and ``light`` under the
installed onnx package's ``backend/test/data`` through ``numbacnn.onnx.conformance`` (import, then
every data set against its stored outputs with ONNX's tolerances) and prints, per folder, how many
cases passed, failed (imported but wrong, or crashed), stopped at an unsupported operator,
stopped at an unsupported form of a supported operator (3-D convolution, dilated pooling, ...) or
have a graph the engine does not take (several runtime inputs, integer or string inputs, no
batch axis); then the missing operators with their case counts, and with ``--cases`` every case
that does not pass with its one-line reason.  Needs no ONNX Runtime: the expected outputs ship
with the data.

    python benchmarks/onnx_coverage.py [--folders pytorch-converted,light] [--cases]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numbacnn  # noqa: E402,F401  (before numpy: Numba's threading defaults)

from common import format_table  # noqa: E402
from numbacnn.onnx import conformance as C  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folders", default=",".join(C.FOLDERS), help=f"comma-separated, of {', '.join(C.FOLDERS)}")
    ap.add_argument("--cases", action="store_true", help="list every case that does not pass, with its reason")
    args = ap.parse_args(argv)
    import onnx
    rows, results, t0 = [], [], time.perf_counter()
    for folder in args.folders.split(","):
        if folder not in C.FOLDERS:
            raise SystemExit(f"--folders: unknown folder {folder!r}; known: {', '.join(C.FOLDERS)}")
        found = C.run_folder(folder)
        results += found
        counts = C.summary(found)["counts"]
        rows.append([folder, len(found), *(counts[s] for s in C.STATUSES)])
    total = C.summary(results)
    rows.append(["all", len(results), *(total["counts"][s] for s in C.STATUSES)])
    print(f"onnx {onnx.__version__} test data: {C.data_dir()} ({time.perf_counter() - t0:.0f} s)")
    print(format_table(["folder", "cases", *C.STATUSES], rows))
    missing = ", ".join(f"{op} ({n})" for op, n in total["missing"].items()) or "none"
    print(f"missing operators (cases): {missing}")
    forms = sorted({r.op for r in results if r.status == "unsupported"})
    print(f"supported operators with unsupported forms in some case: {', '.join(forms) or 'none'}")
    if args.cases:
        for r in results:
            if r.status != "passed":
                print(f"  {r.case.folder}/{r.case.name}: {r.status}: {r.message.split(': ', 1)[-1]}")


if __name__ == "__main__":
    main()
