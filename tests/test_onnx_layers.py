"""Every layer (each case of ``strategies.LAYER_CASES``) through ONNX: export, ONNX Runtime, import.

A one-layer model (after a Tanh) is exported (``onnx.checker`` runs in the exporter), run by
ONNX Runtime and compared with our evaluation-mode forward, then imported back
and compared again, so a layer added with its ONNX mapping is checked both ways
without a test of its own.  Layers that take several inputs of one shape get
the model input several times; the others with several inputs are covered by
the zoo export tests (test_onnx.py).
"""
from __future__ import annotations

import numpy as np
import pytest

from kernels.strategies import LAYER_CASES
from numbacnn.graph import INPUT, Model
from numbacnn.layers import Tanh


def _one_layer_model(case):
    make, shapes, _ = LAYER_CASES[case]
    if len({tuple(s) for s in shapes}) != 1:
        pytest.skip("inputs of different shapes: covered by the zoo export tests")
    m = Model(f"one_{case}", shapes[0])
    m.add(Tanh(), [INPUT], "pre")      # a real node first: a lone Dropout exports as Identity of the input
    m.add(make(), ["pre"] * len(shapes), "layer")
    m.build("cpu", seed=0)
    rng = np.random.default_rng(1)
    state = {n: {k: v + rng.uniform(0.2, 0.5, v.shape).astype(np.float32) for k, v in s.items()}
             for n, s in m.get_weights().items()}     # away from the initial ones and zeros
    m.set_weights(state)
    return m


@pytest.mark.parametrize("opset", [None, 21])
@pytest.mark.parametrize("case", sorted(LAYER_CASES))
def test_layer_round_trips_through_onnx(case, opset, tmp_path):
    """At the default opset (the lowest the layer needs) and at 21, where several operators changed form."""
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from numbacnn.onnx import export_onnx, import_onnx
    m = _one_layer_model(case)
    x = np.random.default_rng(2).standard_normal((3,) + m.input_shape).astype(np.float32)
    proto = export_onnx(m, opset=opset)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    ours = m.forward(x, training=False)
    theirs = session.run(None, {INPUT: x})[0]
    np.testing.assert_allclose(theirs, ours, rtol=1e-4, atol=1e-5, err_msg=f"{case}: ONNX Runtime")
    back = import_onnx(proto.SerializeToString())
    np.testing.assert_allclose(back.forward(x, training=False), ours, rtol=1e-5, atol=1e-6, err_msg=f"{case}: import")
