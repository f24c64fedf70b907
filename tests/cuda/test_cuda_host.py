"""Host-side budgets of one ResNet-20 training step on the CUDA backend, through the counting shim
(``numbacnn.backends.cuda_count``): kernel launches, allocations, copies and synchronisations.

Under Numba's simulator the step's kernels are counted but not run (``execute=False``: the simulator
runs one Python thread per CUDA thread); what is counted is host code, which does not depend on the
values nor, at a fixed architecture, on the batch or image size (checked below on a small model with
the kernels run).  Before this work (issue 18) a step made 277 launches, 274 allocations, 18
device-to-device copies and 2 synchronisations; 209 launches before the graph's fusions (batch norm and Add
applying the ReLU after them, a convolution handing its batch norm the channel statistics and adding its input
gradient to the one summed so far, with the block's ReLU mask) and the implicit-GEMM convolutions::

    NUMBA_ENABLE_CUDASIM=1 python -m pytest -q tests/cuda/test_cuda_host.py
"""
from __future__ import annotations

import numpy as np
import pytest

from numbacnn import config
from numbacnn.backends import cuda_available

pytestmark = [
    pytest.mark.cudasim,
    pytest.mark.skipif(not (config.CUDASIM or cuda_available()),
                       reason="the CUDA backend needs a GPU or Numba's simulator: "
                              "run NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/cuda"),
]

#: one ResNet-20 training step, after two warm-up steps
MAX_LAUNCHES = 144
MAX_ALLOCATIONS = 0
MAX_SYNCS = 1
MAX_D2D_COPIES = 0


def _resnet20_steps(batch, size, steps=3):
    from numbacnn.backends.cuda_count import count_training_steps
    from numbacnn.models.resnet import cifar_resnet

    model = cifar_resnet(20, input_shape=(3, size, size)).build("cuda", seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 3, size, size)).astype(np.float32)
    return count_training_steps(model, x, rng.integers(0, 10, batch), steps=steps, execute=not config.CUDASIM)


def test_resnet20_training_step_within_the_host_budgets():
    warm, second, step = _resnet20_steps(batch=2, size=8)
    assert step["launches"] <= MAX_LAUNCHES, f"{step['launches']} launches: {step['launches_by_kernel']}"
    assert step["allocations"] <= MAX_ALLOCATIONS, f"{step['allocations']} allocations after two warm-up steps"
    assert step["syncs"] <= MAX_SYNCS, f"{step['syncs']} synchronisations in a step"
    assert step["copies"].get("d2d", 0) <= MAX_D2D_COPIES, step["copies"]
    # only the batch goes up (images, labels) and the loss and argmax come back
    assert step["copies"] == {"h2d": 2, "d2h": 2}
    assert second["launches"] == step["launches"] and warm["allocations"] > 0


def test_host_counts_do_not_depend_on_the_batch_or_image_size():
    small, large = _resnet20_steps(batch=2, size=4)[-1], _resnet20_steps(batch=3, size=12)[-1]
    assert small == large


def _tiny_cnn():
    from numbacnn.graph import Model
    from numbacnn.layers import Add, BatchNorm, Conv2D, Dense, Flatten, GlobalAvgPool2D, ReLU

    m = Model("tiny", (1, 4, 4))
    a = m.add(Conv2D(2, 3, padding=1, use_bias=False, name="conv"), "input")
    b = m.add(BatchNorm(name="bn"), a)
    r = m.add(ReLU(name="relu"), b)
    s = m.add(Add(name="add"), [r, a])
    m.add(GlobalAvgPool2D(name="gap"), s)
    m.add(Flatten(name="flat"))
    m.add(Dense(3, name="fc"))
    return m


def test_counts_are_the_same_whether_the_kernels_run_or_not():
    """The shim's ``execute=False`` (used above) changes nothing the host does: a small model's steps
    count the same with the kernels run, and the trained weights are those of the CPU."""
    from numbacnn.backends.cuda_count import count_training_steps

    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((2, 1, 4, 4)).astype(np.float32), np.array([0, 2])
    ran = count_training_steps(_tiny_cnn().build("cuda", seed=0), x, y, steps=3, execute=True)
    skipped = count_training_steps(_tiny_cnn().build("cuda", seed=0), x, y, steps=3,
                                   execute=not config.CUDASIM)
    assert ran[1:] == skipped[1:]
    assert ran[-1]["allocations"] == 0 and ran[-1]["syncs"] == 1


def test_the_shim_counts_what_it_sees():
    """A deliberately wasteful sequence is counted: a raw allocation, a device copy, a waiting readback."""
    from numba import cuda

    from numbacnn.backends import get_backend
    from numbacnn.backends.cuda_count import count_device_calls

    be = get_backend("cuda")
    a = be.asarray(np.ones((4, 4), np.float32))
    with count_device_calls() as counts:
        b = cuda.device_array((4, 4), dtype=np.float32)   # around the caching allocator
        b.copy_to_device(a)
        be.add_inplace(a, b)
        be.to_host(a)                                       # waits: no stream
    assert counts.allocations == 1 and counts.raw_allocations == {"device_array": 1}
    assert counts.copies == {"d2d": 1, "d2h": 1} and counts.syncs == 1
    assert counts.launches == {"add_inplace_kernel": 1}
