"""The whole engine on the CUDA backend: ``fit`` on ``get_backend("cuda")`` gives the CPU's weights.

Tiny models (a conv, batch norm, ReLU, max pooling, dropout, dense; and a DAG
with Add, Concatenate, Pad2D, average pooling and a tensor feeding two layers)
train a few steps with SGD (momentum, Nesterov) and Adam through ``train.fit``
on both backends from the same seeds; the weights, batch-norm statistics and
optimizer state agree to float32 reduction-order tolerance, and the loss
falls.  Parameters, gradients and optimizer state stay device arrays, and a
training step copies only the loss and the argmax indices back to the host.
A model saved from the device loads on the CPU with the same weights and
outputs.

Runs under Numba's CUDA simulator (its own process) or on a GPU::

    NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/cuda/test_cuda_engine.py -q

The simulator runs one Python thread per CUDA thread, so the models are a few
hundred parameters on 6x6 images.
"""
from __future__ import annotations

import numpy as np
import pytest

from numbacnn import config
from numbacnn.backends import cuda_available, get_backend
from numbacnn.graph import Model
from numbacnn.layers import (Add, AvgPool2D, BatchNorm, Concatenate, Conv2D, Dense, Dropout, Flatten,
                             GlobalAvgPool2D, MaxPool2D, Pad2D, ReLU, Tanh)
from numbacnn.optim import SGD, Adam
from numbacnn.train import evaluate, fit

pytestmark = [
    pytest.mark.cudasim,
    pytest.mark.skipif(not (config.CUDASIM or cuda_available()),
                       reason="the CUDA engine needs a GPU or Numba's simulator: "
                              "run NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/cuda"),
]

# Weights after a few steps differ only by float32 summation order (a few ulps per step,
# amplified by the division in batch norm and Adam): a state tolerance, not an exact one.
STATE = dict(rtol=1e-4, atol=2e-5)
N = 8   # samples, trained full-batch (so the loss falls step by step, whatever the shuffle)


def sequential():
    """conv -> batch norm -> relu -> max pool -> flatten -> dropout -> dense (3 classes).

    The conv has no bias: batch norm removes it, so its gradient would be pure rounding
    noise, which Adam normalises into full-size steps of arbitrary sign.
    """
    m = Model("seq", (1, 6, 6))
    m.add(Conv2D(2, 3, padding=1, use_bias=False, name="conv"))
    m.add(BatchNorm(name="bn"))
    m.add(ReLU(name="relu"))
    m.add(MaxPool2D(2, name="pool"))
    m.add(Flatten(name="flat"))
    m.add(Dropout(0.25, name="drop"))
    m.add(Dense(3, name="fc"))
    return m


def dag():
    """A 1x1 conv whose output feeds an Add and a Concatenate (its gradients are summed),
    then Pad2D, average pooling, global pooling and a dense head."""
    m = Model("dag", (2, 4, 4))
    a = m.add(Conv2D(2, 1, name="a"), "input")
    r = m.add(Tanh(name="t"), a)
    s = m.add(Add(name="add"), [r, "input"])
    c = m.add(Concatenate(name="cat"), [s, r])
    m.add(Pad2D((1, 0, 0, 1), value=0.5, name="pad"), c)
    m.add(AvgPool2D(2, padding=1, name="avg"))
    m.add(GlobalAvgPool2D(name="gap"))
    m.add(Flatten(name="flat"))
    m.add(Dense(3, name="fc"))
    return m


def resnet_blocks():
    """conv -> batch norm -> relu, then two basic blocks (identity and zero-padding shortcuts), global pooling
    and a dense head: every fusion the graph makes (a ReLU applied by batch norm or by Add, statistics handed
    from a convolution to its batch norm, a convolution's input gradient added to the shortcut's)."""
    from numbacnn.models.resnet import basic_block

    m = Model("res", (2, 4, 4))
    x = m.add(Conv2D(2, 3, padding=1, use_bias=False, name="stem"))
    x = m.add(BatchNorm(name="stem_bn"), x)
    x = m.add(ReLU(name="stem_relu"), x)
    x = basic_block(m, x, "b1", 2, 2, 1, "A")
    x = basic_block(m, x, "b2", 2, 4, 2, "A")
    m.add(GlobalAvgPool2D(name="gap"), x)
    m.add(Flatten(name="flat"))
    m.add(Dense(3, name="fc"))
    return m


def _data(model, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N,) + model.input_shape).astype(np.float32)
    y = rng.integers(0, 3, N)
    return x, y


def _train(make, backend, optimizer, batch_size=N, epochs=3):
    """Build on ``backend`` (seed 0) and fit ``epochs`` epochs; returns (model, optimizer, batch losses)."""
    model = make().build(backend, seed=0)
    x, y = _data(model)
    losses = []

    class Record:
        def on_batch_end(self, batch, info):
            losses.append(info["loss"])

    fit(model, x, y, epochs=epochs, batch_size=batch_size, optimizer=optimizer, seed=1, callbacks=[Record()])
    return model, optimizer, losses


def _is_device(a):
    return hasattr(a, "copy_to_host")


def assert_same_state(cuda_model, cpu_model, cuda_opt=None, cpu_opt=None):
    got, want = cuda_model.get_weights(), cpu_model.get_weights()
    assert got.keys() == want.keys()
    for layer in want:
        for name in want[layer]:
            np.testing.assert_allclose(got[layer][name], want[layer][name], **STATE, err_msg=f"{layer}/{name}")
    if cuda_opt is not None:
        got, want = cuda_opt.state_dict()["arrays"], cpu_opt.state_dict()["arrays"]
        assert got.keys() == want.keys()
        for key in want:
            np.testing.assert_allclose(got[key], want[key], **STATE, err_msg=f"optimizer {key}")


def assert_on_device(model, optimizer):
    for layer_name, layer in model.layers.items():
        for kind in ("params", "grads", "buffers"):
            for k, v in getattr(layer, kind).items():
                assert _is_device(v), f"{layer_name} {kind}[{k}] is a {type(v).__name__}, not a device array"
    for key, st in optimizer.state.items():
        for slot in optimizer.slots:
            assert _is_device(st[slot]), f"optimizer state {key}/{slot} left the device"


@pytest.mark.parametrize("make_opt", [lambda: SGD(lr=0.1, momentum=0.9),
                                      lambda: Adam(lr=0.02)], ids=["sgd_momentum", "adam"])
def test_sequential_model_trains_as_on_the_cpu(make_opt):
    cpu_model, cpu_opt, cpu_losses = _train(sequential, "cpu", make_opt())
    cuda_model, cuda_opt, cuda_losses = _train(sequential, "cuda", make_opt())
    assert_on_device(cuda_model, cuda_opt)
    np.testing.assert_allclose(cuda_losses, cpu_losses, rtol=1e-4)
    assert_same_state(cuda_model, cpu_model, cuda_opt, cpu_opt)
    # the dropout layer drew the same masks: same counters on both backends
    assert cuda_model.layers["drop"].step == cpu_model.layers["drop"].step == 3
    x, y = _data(cpu_model, seed=5)
    (loss_c, acc_c, p_c), (loss_g, acc_g, p_g) = evaluate(cpu_model, x, y), evaluate(cuda_model, x, y)
    assert acc_c == acc_g
    np.testing.assert_allclose(loss_g, loss_c, rtol=1e-4)
    np.testing.assert_allclose(p_g, p_c, **STATE)
    after = _first_step_loss(cuda_model, *_data(cuda_model))
    assert after < cuda_losses[0], f"loss did not fall: {cuda_losses[0]} at the first step, {after} after training"


def _first_step_loss(model, x, y):
    """The training loss of the first step (same batch, same dropout mask, batch statistics) with the
    current weights: dropout draws a new mask every step, so successive batch losses are noisy."""
    from numbacnn.losses import get_loss

    model.layers["drop"].step = 0
    be = model.backend
    return get_loss("cross_entropy").value(be, model.forward(x, training=True), be.asarray(y, dtype=np.int64))[0]


def test_dag_model_trains_as_on_the_cpu():
    make_opt = lambda: SGD(lr=0.2, momentum=0.9, nesterov=True, weight_decay=1e-3)  # noqa: E731
    cpu_model, cpu_opt, cpu_losses = _train(dag, "cpu", make_opt())
    cuda_model, cuda_opt, cuda_losses = _train(dag, "cuda", make_opt())
    assert_on_device(cuda_model, cuda_opt)
    np.testing.assert_allclose(cuda_losses, cpu_losses, rtol=1e-4)
    assert cuda_losses[-1] < cuda_losses[0], f"loss did not fall: {cuda_losses}"
    assert_same_state(cuda_model, cpu_model, cuda_opt, cpu_opt)


def test_fused_resnet_blocks_train_as_on_the_cpu():
    """The graph's fusions run the CUDA backend's fused kernels (the CPU composes the same fusions from its
    single kernels): the same weights, statistics and losses."""
    make_opt = lambda: SGD(lr=0.1, momentum=0.9)  # noqa: E731
    cpu_model, cpu_opt, cpu_losses = _train(resnet_blocks, "cpu", make_opt(), epochs=1)
    cuda_model, cuda_opt, cuda_losses = _train(resnet_blocks, "cuda", make_opt(), epochs=1)
    assert len(cuda_model.fusions(cuda_model.logits_node()).absorbed) == 5
    np.testing.assert_allclose(cuda_losses, cpu_losses, rtol=1e-4)
    assert_same_state(cuda_model, cpu_model, cuda_opt, cpu_opt)


def test_a_training_step_copies_only_the_loss_and_the_argmax_to_the_host(monkeypatch):
    model = sequential().build("cuda", seed=0)
    be = model.backend
    x, y = _data(model)
    device_array = type(model.layers["conv"].params["weight"])
    copies = []
    original = device_array.copy_to_host

    def counting(self, *args, **kwargs):
        copies.append(tuple(self.shape))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(device_array, "copy_to_host", counting)
    # no compile warm-up before the epoch (on a real GPU it runs a 2-image step of its own): one step is counted
    monkeypatch.setattr("numbacnn.train.compiles", lambda backend: False)
    fit(model, x, y, epochs=1, batch_size=N, optimizer=SGD(lr=0.1, momentum=0.9))
    # one step: the per-row losses (N,) for the mean, and the argmax indices (N,) for the accuracy
    assert sorted(copies) == [(N,), (N,)], f"device -> host copies in one step: {copies}"
    assert be.name == "cuda"


def test_saved_on_the_device_loads_on_the_cpu(tmp_path):
    from numbacnn.io.hdf5 import load_model, save_model

    opt = Adam(lr=0.01)
    cuda_model, _, _ = _train(sequential, "cuda", opt, epochs=1)
    path = tmp_path / "seq.h5"
    save_model(path, cuda_model, opt)
    cpu_model, opt_state, _ = load_model(path, backend="cpu")
    assert cpu_model.backend is get_backend("cpu")
    for layer, state in cuda_model.get_weights().items():
        for name, value in state.items():
            np.testing.assert_array_equal(cpu_model.get_weights()[layer][name], value, err_msg=f"{layer}/{name}")
    assert set(opt_state["arrays"]) == set(opt.state_dict()["arrays"])
    x, _ = _data(cpu_model, seed=3)
    out_cpu = cpu_model.forward(x)
    out_cuda = get_backend("cuda").to_host(cuda_model.forward(x))
    np.testing.assert_allclose(out_cuda, out_cpu, **STATE)
