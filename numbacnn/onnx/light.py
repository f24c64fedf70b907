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
