"""Run CLI command lines in one process, under the resource limits its parent set: JSON in, JSON out.

    python runner.py CASES.json RESULTS.json

CASES.json: ``[{"args": [...], "max_gib": null or a number}, ...]``; RESULTS.json: one
``{"exit", "stdout", "stderr", "seconds"}`` per case and the process's peak resident memory.
Each case runs through click's CliRunner, so it sees exactly what a shell sees (the
error handler lives in the CLI's ``main``).
"""
import json
import resource
import sys
import time

from click.testing import CliRunner

from numbacnn import config
from numbacnn.cli import cli


def main(cases_path, results_path):
    with open(cases_path) as fh:
        cases = json.load(fh)
    results = []
    for case in cases:
        config.MAX_GIB = case.get("max_gib")
        t0 = time.perf_counter()
        r = CliRunner().invoke(cli, case["args"])
        results.append({"exit": r.exit_code, "stdout": r.stdout, "stderr": r.stderr,
                        "seconds": round(time.perf_counter() - t0, 3)})
    with open(results_path, "w") as fh:
        json.dump({"results": results, "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}, fh)


if __name__ == "__main__":
    main(*sys.argv[1:3])
