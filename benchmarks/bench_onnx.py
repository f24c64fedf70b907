"""Imported ONNX graphs on the CPU: numbacnn against ONNX Runtime in the same run.

For AlexNet (bvlc_alexnet), GoogLeNet (inception_v1), Inception-v2 (batch norm
written as Mul/Add, folded at import), ResNet-50, DenseNet-121 (likewise) and
ShuffleNet (channel shuffle: Reshape/Transpose) from the onnx package's
``backend/test/data/light`` graphs (their weights are ``ConstantOfShape``
stand-ins, replaced here by seeded random initializers of the right shapes), it
prints the latency at batch 1 and the throughput at batch 16 of
``numbacnn.onnx.import_onnx``'s model and of ONNX Runtime
(``intra_op_num_threads`` = the thread count), and the ratio ORT time / ours
(> 1: we are faster).  Medians after warm-up (JIT compilation excluded).
ONNX Runtime runs in its own process (this script again, with ``--ort-only``,
the same graphs, seeds, inputs, thread count and repeats), before our side:
each engine's thread pool spins after a call and would take cores from the
other in one process, and numbacnn must be imported before numpy to get its
default threading layer (numbacnn/config.py).  Both use ``--threads``.

    python benchmarks/bench_onnx.py [--repeats 5] [--threads 2] [--models alexnet,googlenet,resnet50]
    python benchmarks/bench_onnx.py --quick     # ShuffleNet at batch 1, 2 repeats: a check that it runs
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

if "--ort-only" in sys.argv:   # ONNX Runtime's process: no numbacnn kernels run here
    import onnxruntime  # noqa: F401
import numbacnn  # noqa: E402,F401  (our process: before numpy, so Numba gets numbacnn's threading defaults)
import numpy as np  # noqa: E402

from common import format_table, median_time, ms, numba_layer, run_json_child  # noqa: E402
from numbacnn.onnx.light import light_graph  # noqa: E402

MODELS = {"alexnet": "light_bvlc_alexnet", "googlenet": "light_inception_v1", "inception_v2": "light_inception_v2",
          "resnet50": "light_resnet50", "densenet121": "light_densenet121", "shufflenet": "light_shufflenet"}
BATCHES = (1, 16)


def dynamic_batch(proto):
    """Make the light graph's batch symbolic for ONNX Runtime (ours already takes any batch): the input
    and output get a batch ``N`` and the Reshape targets' leading batch 1 becomes 0 (copy the input's)."""
    from onnx import numpy_helper
    g = proto.graph
    for vi in (g.input[0], g.output[0]):
        vi.type.tensor_type.shape.dim[0].dim_param = "N"
    weights = {t.name for t in g.initializer}
    targets = {n.input[1] for n in g.node if n.op_type == "Reshape" and n.input[0] not in weights}
    for t in g.initializer:
        shape = numpy_helper.to_array(t)
        if t.name in targets and shape.ndim == 1 and shape[0] == 1:
            t.CopyFrom(numpy_helper.from_array(np.concatenate([[0], shape[1:]]).astype(np.int64), t.name))


def batch_input(batch):
    """The seeded input of one batch size, the same in both processes."""
    return np.random.default_rng(batch).uniform(-1, 1, (batch, 3, 224, 224)).astype(np.float32)


def reps_for(batch, repeats):
    return repeats if batch == 1 else max(2, repeats // 2)


def ort_only(args):
    """ONNX Runtime's side: {model: {batch: seconds}}; its outputs go to ``args.ort_out`` (npz) for the diff."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    times, outputs = {}, {}
    for key in args.models.split(","):
        proto = light_graph(MODELS[key])
        dynamic_batch(proto)
        sess = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        in_name = sess.get_inputs()[0].name
        times[key] = {}
        for batch in BATCHES:
            x = batch_input(batch)
            outputs[f"{key}_{batch}"] = sess.run(None, {in_name: x})[0]
            times[key][str(batch)] = median_time(lambda: sess.run(None, {in_name: x}),
                                                 repeats=reps_for(batch, args.repeats), warmup=1)
            print(f"onnxruntime {key} batch {batch} done", file=sys.stderr, flush=True)
    np.savez(args.ort_out, **outputs)
    return {"times": times, "label": f"onnxruntime {ort.__version__} (intra_op_num_threads={args.threads})",
            "numba_layer": numba_layer()}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2, help="threads for Numba and ONNX Runtime alike")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--quick", action="store_true", help="ShuffleNet at batch 1 with 2 repeats (a check that it runs)")
    ap.add_argument("--ort-only", action="store_true", help="internal: time ONNX Runtime alone, print JSON")
    ap.add_argument("--ort-out", default=None, help="internal: npz file for ONNX Runtime's outputs")
    args = ap.parse_args(argv)
    if args.quick:
        global BATCHES
        args.models, args.repeats, BATCHES = "shufflenet", 2, (1,)
    if args.ort_only:
        import json
        print(json.dumps(ort_only(args)))
        return

    import numba
    from numbacnn.onnx import import_onnx
    numba.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench-onnx-") as tmp:
        out = os.path.join(tmp, "ort.npz")
        theirs = run_json_child(__file__, argv + ["--ort-only", "--ort-out", out])
        with np.load(out) as f:
            ort_outputs = {k: f[k] for k in f.files}
    rows = []
    for key in args.models.split(","):
        model = import_onnx(light_graph(MODELS[key]), name=key)
        for batch in BATCHES:
            x = batch_input(batch)
            err = float(np.abs(np.asarray(model.forward(x, inference=True)) - ort_outputs[f"{key}_{batch}"]).max())
            t_ours = median_time(lambda: model.forward(x, inference=True), repeats=reps_for(batch, args.repeats),
                                 warmup=1)
            t_ort = theirs["times"][key][str(batch)]
            rows.append([key, batch, ms(t_ours), f"{batch / t_ours:.1f}", ms(t_ort), f"{batch / t_ort:.1f}",
                         f"{t_ort / t_ours:.2f}", f"{err:.1e}"])
            print(f"{key} batch {batch}: ours {ms(t_ours)} ms, onnxruntime {ms(t_ort)} ms", file=sys.stderr)
    print(f"numba {numba.__version__} (threads={numba.get_num_threads()}, layer {numba_layer()}); "
          f"{theirs['label']} in its own process, measured first (Numba's pool there: {theirs['numba_layer']}); "
          f"load average {os.getloadavg()[0]:.1f}")
    print(format_table(["model", "batch", "ours ms", "ours img/s", "ORT ms", "ORT img/s", "ORT/ours",
                        "max |diff|"], rows))


if __name__ == "__main__":
    main()
