"""The classic graphs that ship with the onnx package, with seeded random weights.

``onnx/backend/test/data/light/`` holds AlexNet, ZFNet-512, SqueezeNet,
Inception-v1 (GoogLeNet), ResNet-50, VGG-19 and others, with their weights
replaced by ``ConstantOfShape`` nodes to keep the files small.
``light_graph(name, seed)`` loads one and turns those nodes into seeded random
initializers (He-scaled), so the graph gives meaningful outputs: the tests
compare these graphs with ONNX Runtime and ``benchmarks/bench_onnx.py`` times
them.  Saved with ``onnx.save``, such a graph can be fed to
``numbacnn import-onnx``.
"""
from __future__ import annotations

import os

import numpy as np


def light_model_path(name: str) -> str:
    """Path of ``<name>.onnx`` (e.g. ``light_bvlc_alexnet``) in the installed onnx package."""
    import onnx
    return os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light", name + ".onnx")


def light_graph(name: str, seed: int = 0):
    """The light graph ``name`` as a ModelProto with seeded random weights."""
    import onnx
    return randomize_constant_weights(onnx.load(light_model_path(name)), seed)


def randomize_constant_weights(proto, seed=0):
    """Replace every ConstantOfShape (the light models' stand-in weights) by a seeded random initializer.

    Conv/Gemm weights get He-scaled normals, biases and batch-norm shifts/means small normals,
    batch-norm scales and variances uniform values in [0.5, 1.5].
    """
    from onnx import numpy_helper

    rng = np.random.default_rng(seed)
    g = proto.graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    role = {}
    for n in g.node:
        for i, name in enumerate(n.input):
            role.setdefault(name, (n.op_type, i))
    keep, new = [], []
    for n in g.node:
        if n.op_type != "ConstantOfShape":
            keep.append(n)
            continue
        shape = tuple(int(d) for d in inits[n.input[0]])
        op, i = role.get(n.output[0], ("", 0))
        if op == "BatchNormalization" and i in (1, 4):
            a = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        elif len(shape) >= 2:
            fan_in = int(np.prod(shape[1:])) if shape[0] > 1 else shape[-1]
            a = rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_in))
        else:
            a = rng.standard_normal(shape, dtype=np.float32) * np.float32(0.05)
        new.append(numpy_helper.from_array(a, n.output[0]))
    used = {i for n in keep for i in n.input}
    old = [t for t in g.initializer if t.name in used]
    del g.node[:], g.initializer[:]
    g.node.extend(keep)
    g.initializer.extend(old + new)
    inputs = [i for i in g.input if i.name not in inits]  # initializers need not be listed as inputs
    del g.input[:]
    g.input.extend(inputs)
    proto.ir_version = max(proto.ir_version, 4)  # IR 3 would want every initializer listed as a graph input
    return proto


#: the classic graphs of ``onnx/backend/test/data/light``
LIGHT = ("light_bvlc_alexnet", "light_densenet121", "light_inception_v1", "light_inception_v2", "light_resnet50",
         "light_shufflenet", "light_squeezenet", "light_vgg19", "light_zfnet512")


def logits_graph(proto):
    """``proto`` with a final Softmax removed (its input becomes the output): random weights can saturate
    the probabilities, the logits compare meaningfully."""
    g = proto.graph
    last = next(n for n in g.node if g.output[0].name in n.output)
    if last.op_type == "Softmax":
        g.node.remove(last)
        g.output[0].name = last.input[0]   # (of the Softmax's shape)
    return proto


def ort_run(proto, x, threads=2):
    """ONNX Runtime's (first) output of ``proto`` on x (CPU provider)."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    sess = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def _rel(a, b):
    return float(np.abs(np.asarray(a).reshape(np.shape(b)) - b).max() / max(float(np.abs(b).max()), 1e-30))


def round_trip(name: str, steps: int = 3, batch: int = 2, seed: int = 0, lr: float = 1e-4, log=print) -> dict:
    """The light graph ``name`` with seeded random weights, out and back:

    1. imported, its logits against ONNX Runtime's on one seeded image (relative error: max |diff| / max |ref|);
    2. fine-tuned ``steps`` Adam steps on ``batch`` seeded images with seeded labels (the losses);
    3. exported, run by ONNX Runtime on that batch against our evaluation-mode forward.
    Needs onnxruntime.  Returns {"import_rel", "losses", "export_rel", "opset", "seconds"}.
    """
    import time

    from ..optim import Adam
    from ..train import fit
    from .exporter import export_onnx
    from .importer import import_onnx
    t0 = time.perf_counter()
    proto = logits_graph(light_graph(name, seed))
    x1 = np.random.default_rng(seed + 1).uniform(-1, 1, (1, 3, 224, 224)).astype(np.float32)
    model = import_onnx(proto, name=name)
    out = {"import_rel": _rel(model.forward(x1), ort_run(proto, x1))}
    log(f"{name}: imported, logits vs ONNX Runtime: relative error {out['import_rel']:.2e}")
    rng = np.random.default_rng(seed + 2)
    xb = rng.uniform(-1, 1, (batch, 3, 224, 224)).astype(np.float32)
    yb = rng.integers(0, 1000, batch)
    history = fit(model, xb, yb, epochs=steps, batch_size=batch, optimizer=Adam(lr=lr), shuffle=False)
    out["losses"] = [float(h["loss"]) for h in history]
    log(f"{name}: fine-tuned {steps} steps, loss {' -> '.join(f'{v:.4g}' for v in out['losses'])}")
    exported = export_onnx(model)
    out["opset"] = int(exported.opset_import[0].version)
    out["export_rel"] = _rel(model.forward(xb), ort_run(exported, xb))
    out["seconds"] = time.perf_counter() - t0
    log(f"{name}: exported (opset {out['opset']}), ONNX Runtime vs ours: relative error {out['export_rel']:.2e} "
        f"({out['seconds']:.0f} s in all)")
    return out
