"""The conformance data that ships with the onnx package, run through the importer and counted.

``onnx/backend/test/data/`` holds small models with their inputs and expected
outputs: ``pytorch-converted`` (PyTorch modules), ``pytorch-operator`` (single
PyTorch functions), ``simple`` (hand-written graphs) and ``light`` (the classic
networks, whose weights are ``ConstantOfShape`` fills; their input is the one
ONNX's own backend test makes, ``arange(n) / n``, and the expected output is
stored beside the model).  ``run_case`` imports one case and compares every
data set, with ONNX's tolerances (``rtol`` 1e-3, ``atol`` 1e-7 unless the case
says otherwise), and classifies the outcome:

=================  ======================================================================
``passed``         imported, every output matches
``failed``         imported but an output differs, or the importer crashed (a bug)
``unsupported-op``  an operator outside the importer's table (``op`` names it)
``unsupported``    a supported operator with an attribute or input form the engine has no
                   layer for (3-D convolution, dilated pooling, ...; ``op`` names it)
``graph``          the graph's structure: several runtime inputs or outputs, a non-float
                   input, no batch dimension; or data beyond float32's range
=================  ======================================================================

``benchmarks/onnx_coverage.py`` prints the counts per folder and the missing
operators; ``tests/test_onnx.py`` runs the small folders and requires that no
case fails.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import numpy as np

FOLDERS = ("pytorch-converted", "pytorch-operator", "simple", "light")
STATUSES = ("passed", "failed", "unsupported-op", "unsupported", "graph")
#: tolerances of onnx's own model tests (onnx/backend/test/case/model/__init__.py) for the light graphs
LIGHT_TOL = {"densenet121": (2e-3, 1e-7)}


def data_dir() -> str:
    import onnx
    return os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")


@dataclass
class Case:
    """One conformance case: its model, its data sets [(inputs, outputs)] and tolerances."""

    folder: str
    name: str
    model: str
    datasets: list = field(default_factory=list)
    rtol: float = 1e-3
    atol: float = 1e-7


@dataclass
class Result:
    case: Case
    status: str
    op: str | None = None
    message: str = ""


def _tensor(path):
    from onnx import TensorProto, numpy_helper
    t = TensorProto()
    with open(path, "rb") as f:
        t.ParseFromString(f.read())
    return numpy_helper.to_array(t)


def _numbered(d, prefix):
    files = sorted((f for f in os.listdir(d) if f.startswith(prefix) and f.endswith(".pb")),
                   key=lambda f: int(f[len(prefix):-3]))
    return [_tensor(os.path.join(d, f)) for f in files]


def _light_cases(root):
    import onnx
    out = []
    for f in sorted(os.listdir(root)):
        if not f.endswith(".onnx"):
            continue
        path, name = os.path.join(root, f), f[len("light_"):-len(".onnx")]
        expected = os.path.join(root, f"light_{name}_output_0.pb")
        g = onnx.load(path, load_external_data=False).graph
        inits = {t.name for t in g.initializer}
        vi = next(i for i in g.input if i.name not in inits)
        shape = tuple(d.dim_value or 1 for d in vi.type.tensor_type.shape.dim)
        n = int(np.prod(shape))
        x = (np.arange(n).reshape(shape) / n).astype(np.float32)   # what onnx's backend test feeds them
        rtol, atol = LIGHT_TOL.get(name, (1e-3, 1e-7))
        out.append(Case("light", f"light_{name}", path, [([x], [_tensor(expected)])], rtol, atol))
    return out


def cases(folder: str) -> list:
    """Every case of ``folder`` (one of ``FOLDERS``) in the installed onnx package."""
    import json
    root = os.path.join(data_dir(), folder)
    if not os.path.isdir(root):
        return []
    if folder == "light":
        return _light_cases(root)
    out = []
    for name in sorted(os.listdir(root)):
        d = os.path.join(root, name)
        if not os.path.isfile(os.path.join(d, "model.onnx")):
            continue
        rtol, atol = 1e-3, 1e-7
        if os.path.isfile(os.path.join(d, "data.json")):
            with open(os.path.join(d, "data.json")) as f:
                meta = json.load(f)
            rtol, atol = meta.get("rtol", rtol), meta.get("atol", atol)
        sets = [(_numbered(os.path.join(d, s), "input_"), _numbered(os.path.join(d, s), "output_"))
                for s in sorted(os.listdir(d)) if s.startswith("test_data_set")]
        out.append(Case(folder, name, os.path.join(d, "model.onnx"), sets, rtol, atol))
    return out


_OPERATOR = re.compile(r": operator (\w+) \(node")


def classify_error(message: str, supported) -> tuple:
    """(status, op) of an OnnxImportError's message."""
    m = _OPERATOR.search(message)
    if m is None:
        return "graph", None
    op = m.group(1)
    return ("unsupported-op" if op not in supported else "unsupported"), op


def run_case(case: Case, backend="cpu") -> Result:
    """Import ``case`` and compare every data set; see the module docstring for the outcomes."""
    from .importer import OnnxImportError, import_onnx, supported_ops
    try:
        model = import_onnx(case.model, backend=backend)
    except OnnxImportError as e:
        status, op = classify_error(str(e), supported_ops())
        return Result(case, status, op, str(e))
    except Exception as e:  # noqa: BLE001 - a crash is a failure to report, not to raise
        return Result(case, "failed", None, f"import crashed: {type(e).__name__}: {e}")
    for k, (inputs, outputs) in enumerate(case.datasets):
        big = max((float(np.max(np.abs(a[np.isfinite(a)]), initial=0)) for a in (inputs[0], outputs[0])))
        if big > float(np.finfo(np.float32).max):
            return Result(case, "graph", None, f"data set {k} holds values beyond float32's range ({big:.3g}); "
                                               f"the engine computes in float32")
        try:
            y = np.asarray(model.backend.to_host(model.forward(np.asarray(inputs[0], dtype=np.float32))))
        except Exception as e:  # noqa: BLE001
            return Result(case, "failed", None, f"data set {k}: forward crashed: {type(e).__name__}: {e}")
        want = outputs[0]
        if y.shape != want.shape:
            return Result(case, "failed", None, f"data set {k}: output shape {y.shape}, expected {want.shape}")
        if not np.allclose(y, want, rtol=case.rtol, atol=case.atol, equal_nan=True):
            err = float(np.max(np.abs(y - want)))
            return Result(case, "failed", None, f"data set {k}: max |difference| {err:.3g} "
                                                f"(rtol {case.rtol}, atol {case.atol})")
    return Result(case, "passed")


def run_folder(folder: str, backend="cpu", only=None) -> list:
    return [run_case(c, backend) for c in cases(folder) if only is None or only(c)]


def summary(results) -> dict:
    """{status: count} and the missing operators {op: cases} of a list of Results."""
    counts = {s: 0 for s in STATUSES}
    missing = {}
    for r in results:
        counts[r.status] += 1
        if r.status == "unsupported-op":
            missing[r.op] = missing.get(r.op, 0) + 1
    return {"counts": counts, "missing": dict(sorted(missing.items()))}
