"""Every layer case (``strategies.LAYER_CASES``) on the CUDA backend against the CPU backend.

The kernels are checked op by op in test_cuda_sim.py; this runs each layer's own code on device
arrays (its reshapes and views, its calls of several ops) forward and backward, with the same
parameters, buffers and inputs on both backends, and compares the output, every input gradient
and every parameter gradient.  Run with the simulator::

    NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/cuda/test_cuda_layers.py
"""
from __future__ import annotations

import numpy as np
import pytest

from kernels.strategies import LAYER_CASES
from numbacnn import config
from numbacnn.backends import cuda_available, get_backend

pytestmark = [
    pytest.mark.cudasim,
    pytest.mark.skipif(not (config.CUDASIM or cuda_available()),
                       reason="CUDA kernels need a GPU or Numba's simulator: "
                              "run NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/cuda"),
]


def _run(case, be):
    make, shapes, training = LAYER_CASES[case]
    layer = make()
    layer.name = case
    layer.build(shapes)
    layer.set_backend(be)
    layer.init_params(np.random.default_rng(0))
    rng = np.random.default_rng(1)
    for k, shape in layer.buffer_shapes.items():      # running statistics, stored constants
        layer.buffers[k] = be.asarray(rng.uniform(0.5, 1.5, shape).astype(np.float32))
    xs = [rng.uniform(-1.5, 1.5, (2,) + s).astype(np.float32) for s in shapes]
    dy = rng.standard_normal((2,) + layer.output_shape).astype(np.float32)
    y = layer.forward([be.asarray(x) for x in xs], training)
    dxs = layer.backward(be.asarray(dy))
    return [be.to_host(y), *(be.to_host(d) for d in dxs), *(be.to_host(layer.grads[k]) for k in sorted(layer.grads))]


@pytest.mark.parametrize("case", sorted(LAYER_CASES))
def test_layer_on_cuda_matches_cpu(case):
    ours, cpu = _run(case, get_backend("cuda")), _run(case, get_backend("cpu"))
    assert len(ours) == len(cpu)
    for i, (a, b) in enumerate(zip(ours, cpu)):
        assert a.shape == b.shape, f"{case}: result {i} shape {a.shape}, expected {b.shape}"
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * max(1.0, float(np.abs(b).max())),
                                   err_msg=f"{case}: result {i} (output, input gradients, parameter gradients)")
