"""The model zoo: published parameter counts, a forward pass of every model, a training
backward on the small ones, and (where PyTorch is installed) the same nets in PyTorch."""
from __future__ import annotations

import json

import numpy as np
import pytest

from layers.gradcheck import BACKENDS, load_backend
from numbacnn.graph import Model
from numbacnn.models import ZOO, build_model
from numbacnn.torch_twin import torch_model

# LeNet-5 by hand: conv1 6*(1*5*5)+6 = 156, conv2 16*(6*5*5)+16 = 2,416, fc1 400*120+120 = 48,120,
# fc2 120*84+84 = 10,164, fc3 84*10+10 = 850
LENET5 = 156 + 2416 + 48120 + 10164 + 850


@pytest.mark.parametrize("name, kwargs, count", [
    ("lenet5", {}, LENET5),
    ("lenet5", {"input_shape": (3, 32, 32), "num_classes": 5},
     6 * 75 + 6 + 2416 + (16 * 6 * 6) * 120 + 120 + 10164 + 84 * 5 + 5),
    ("alexnet", {}, 61_100_840),                           # torchvision.models.alexnet()
    ("resnet18", {}, 11_689_512),                          # torchvision.models.resnet18()
    ("resnet20", {"shortcut": "B"}, 272_474),              # 1x1 conv + BN projection shortcuts
    ("resnet20", {"shortcut": "A"}, 272_474 - (16 * 32 + 2 * 32) - (32 * 64 + 2 * 64)),  # 269,722
])
def test_parameter_counts(name, kwargs, count):
    total, trainable = ZOO[name](**kwargs).count_params()
    assert total == trainable == count


def test_every_builder_takes_classes_and_shape():
    for name, builder in ZOO.items():
        shape = (3, 64, 64) if name in ("alexnet", "resnet18") else (3, 32, 32)
        m = builder(num_classes=7, input_shape=shape)
        m.infer_shapes()
        assert m.output_shapes[m.output] == (7,), name
        assert Model.from_config(json.loads(json.dumps(m.to_config()))).to_config() == m.to_config()
    with pytest.raises(ValueError, match="resnet50"):
        build_model("resnet50")


@pytest.mark.parametrize("backend_name", BACKENDS)
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in ("alexnet", "resnet18") else n
                                  for n in sorted(ZOO)])
def test_forward_tiny_batch(name, backend_name):
    be = load_backend(backend_name)
    m = ZOO[name]().build(be, seed=0)
    x = np.random.default_rng(0).standard_normal((2,) + m.input_shape).astype(np.float32)
    y = be.to_host(m.forward(x))
    classes = 1000 if name in ("alexnet", "resnet18") else 10
    assert y.shape == (2, classes) and y.dtype == np.float32 and np.isfinite(y).all()
    assert not np.allclose(y[0], y[1])


SMALL = {"lenet5": {}, "resnet20": {}, "vgg": {"width": 0.125},
         "inception": {"width": 0.125, "batch_norm": True}}


@pytest.mark.parametrize("backend_name", BACKENDS)
@pytest.mark.parametrize("name", sorted(SMALL))
def test_training_step_lowers_loss(name, backend_name):
    """A few plain SGD steps on one fixed batch reduce its cross-entropy (forward, backward, every grad)."""
    be = load_backend(backend_name)
    m = ZOO[name](**SMALL[name]).build(be, seed=0)
    rng = np.random.default_rng(0)
    x = be.asarray(rng.standard_normal((8,) + m.input_shape).astype(np.float32))
    labels = rng.integers(0, 10, 8)

    def step(lr):
        loss, probs = be.softmax_cross_entropy_forward(m.forward(x, training=True), labels)
        m.backward(be.softmax_cross_entropy_backward(probs, labels))
        for _, _, p, g, _ in m.named_parameters():
            assert p.shape == g.shape
            be.add_inplace(p, be.asarray(-lr * be.to_host(g)))
        return float(loss)

    for layer in m.layers.values():  # dropout off so the batch loss is deterministic
        if layer.random:
            layer.rate = 0.0
    losses = [step(0.01) for _ in range(4)]
    assert losses[-1] < losses[0], losses


# ---------------------------------------------------------------- PyTorch oracle
@pytest.mark.parametrize("name, kwargs", [("lenet5", {}), ("vgg", {"width": 0.125}), ("resnet20", {}),
                                          ("inception", {"width": 0.125}), ("alexnet32", {})])
def test_matches_pytorch(name, kwargs):
    m = ZOO[name](**kwargs).build("reference", seed=0)
    rng = np.random.default_rng(0)
    w = m.get_weights()
    for state in w.values():  # non-trivial running statistics
        if "running_var" in state:
            state["running_mean"] = rng.standard_normal(state["running_mean"].shape).astype(np.float32)
            state["running_var"] = rng.uniform(0.5, 2, state["running_var"].shape).astype(np.float32)
    m.set_weights(w)
    for layer in m.layers.values():  # dropout off: the two engines draw different masks in training
        if layer.random:
            layer.rate = 0.0
    torch = pytest.importorskip("torch")
    net = torch_model(torch, m, copy_weights=True)
    assert sum(p.numel() for p in net.parameters()) == m.count_params()[0]
    x = rng.standard_normal((3,) + m.input_shape).astype(np.float32)
    net.eval()
    np.testing.assert_allclose(m.forward(x), net(torch.from_numpy(x)).detach().numpy(), rtol=1e-4, atol=1e-4)
    net.train()
    xt = torch.from_numpy(x).requires_grad_(True)
    yt = net(xt)
    y = m.forward(x, training=True)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-4, atol=1e-4)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    yt.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(m.backward(dy), xt.grad.numpy(), rtol=1e-3, atol=1e-4)
    first = next(n for n, layer in m.layers.items() if layer.params)
    np.testing.assert_allclose(m.layers[first].grads["weight"], net.nodes[first].weight.grad.numpy(), rtol=1e-3,
                               atol=1e-3)
