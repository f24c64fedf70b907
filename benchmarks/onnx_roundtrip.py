"""Every classic graph and every zoo model out and back through ONNX, at full size (what CI runs in part).

``--light``: the 9 classic graphs of the onnx package (AlexNet, DenseNet-121, Inception-v1/v2, ResNet-50,
ShuffleNet, SqueezeNet, VGG-19, ZFNet-512) with seeded random weights (``numbacnn.onnx.light.round_trip``):
imported, logits against ONNX Runtime's (relative error = max |diff| / max |ONNX Runtime|, must be <= 1e-4),
fine-tuned a few Adam steps on a seeded batch (the losses), exported and run by ONNX Runtime against our
evaluation-mode output.  ``--zoo``: every model of ``numbacnn.models.ZOO`` at its default input and 1000 (or
10) classes, with seeded random batch-norm statistics, exported at ``--opset`` (default: the lowest needed),
checked by onnx.checker, run by ONNX Runtime and imported back, both against our output.  Prints a table;
exits 1 if a relative error exceeds 1e-4 or a loss did not fall.

    python benchmarks/onnx_roundtrip.py [--light] [--zoo] [--only light_vgg19,resnet152] [--opset 17]
    python benchmarks/onnx_roundtrip.py --quick     # SqueezeNet and LeNet-5: a check that it runs
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numbacnn  # noqa: E402,F401  (before numpy: Numba's threading defaults)
import numpy as np  # noqa: E402

from common import format_table  # noqa: E402

LIMIT = 1e-4


def _rel(a, b):
    return float(np.abs(np.asarray(a) - b).max() / max(float(np.abs(b).max()), 1e-30))


def light_rows(names, steps):
    from numbacnn.onnx.light import round_trip
    rows = []
    for name in names:
        r = round_trip(name, steps=steps, log=lambda msg: print(msg, file=sys.stderr, flush=True))
        ok = r["import_rel"] <= LIMIT and r["export_rel"] <= LIMIT and r["losses"][-1] < r["losses"][0]
        rows.append([name, f"{r['import_rel']:.1e}", " > ".join(f"{v:.3g}" for v in r["losses"]),
                     r["opset"], f"{r['export_rel']:.1e}", f"{r['seconds']:.0f}", "ok" if ok else "FAIL"])
    return rows


def _random_statistics(model, seed=0):
    rng = np.random.default_rng(seed)
    w = model.get_weights()
    for state in w.values():
        for k, v in state.items():
            if k in ("running_var", "gamma"):
                state[k] = rng.uniform(0.5, 1.5, v.shape).astype(np.float32)
            elif k in ("running_mean", "beta", "bias"):
                state[k] = (rng.standard_normal(v.shape) * 0.1).astype(np.float32)
    model.set_weights(w)


def zoo_rows(names, opset, batch=2):
    import onnx

    from numbacnn.models import build_model
    from numbacnn.onnx import export_onnx, import_onnx
    from numbacnn.onnx.light import ort_run
    rows = []
    for name in names:
        t0 = time.perf_counter()
        model = build_model(name).build("cpu", seed=0)
        _random_statistics(model)
        x = np.random.default_rng(1).standard_normal((batch,) + model.input_shape).astype(np.float32)
        ours = np.asarray(model.forward(x))
        proto = export_onnx(model, opset=opset)
        onnx.checker.check_model(proto)
        ort_rel = _rel(ort_run(proto, x), ours)
        back_rel = _rel(import_onnx(proto).forward(x), ours)
        ok = ort_rel <= LIMIT and back_rel <= LIMIT
        params = model.count_params()[0]
        rows.append([name, "x".join(map(str, model.input_shape)), f"{params:,}", proto.opset_import[0].version,
                     len(proto.graph.node), f"{ort_rel:.1e}", f"{back_rel:.1e}", f"{time.perf_counter() - t0:.0f}",
                     "ok" if ok else "FAIL"])
        print(f"{name}: ONNX Runtime {ort_rel:.1e}, imported back {back_rel:.1e}", file=sys.stderr, flush=True)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--light", action="store_true", help="the 9 classic graphs")
    ap.add_argument("--zoo", action="store_true", help="every zoo model")
    ap.add_argument("--only", default=None, help="comma-separated light graph and zoo names")
    ap.add_argument("--opset", type=int, default=None, help="opset of the zoo exports (default: the lowest needed)")
    ap.add_argument("--steps", type=int, default=3, help="fine-tuning steps of the light graphs")
    ap.add_argument("--quick", action="store_true", help="SqueezeNet and LeNet-5 only")
    args = ap.parse_args(argv)
    from numbacnn.models import ZOO
    from numbacnn.onnx.light import LIGHT
    only = None if args.only is None else set(args.only.split(","))
    if args.quick:
        only, args.light, args.zoo = {"light_squeezenet", "lenet5"}, True, True
    if not (args.light or args.zoo):
        args.light = args.zoo = True
    failed = False
    if args.light:
        rows = light_rows([n for n in LIGHT if only is None or n in only], args.steps)
        print(format_table(["graph", "import rel err", f"loss ({args.steps} steps)", "opset", "export rel err", "s",
                            ""], rows))
        failed |= any(r[-1] != "ok" for r in rows)
    if args.zoo:
        rows = zoo_rows([n for n in ZOO if only is None or n in only], args.opset)
        print(format_table(["model", "input", "params", "opset", "nodes", "ORT rel err", "back rel err", "s", ""],
                           rows))
        failed |= any(r[-1] != "ok" for r in rows)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
