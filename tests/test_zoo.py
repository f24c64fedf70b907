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


# torchvision's counts for its models (torchvision.models.<name>()), the papers' for the CIFAR ResNets,
# the ONNX model zoo's bvlc_googlenet / ZFNet-512 (the onnx package's light graphs, imported) for those two
PUBLISHED = {"alexnet": 61_100_840, "zfnet": 87_250_536,
             "vgg11": 132_863_336, "vgg13": 133_047_848, "vgg16": 138_357_544, "vgg19": 143_667_240,
             "vgg11_bn": 132_868_840, "vgg13_bn": 133_053_736, "vgg16_bn": 138_365_992, "vgg19_bn": 143_678_248,
             "resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032, "resnet101": 44_549_160,
             "resnet152": 60_192_808, "resnet20": 269_722, "resnet32": 464_154, "resnet44": 658_586,
             "resnet56": 853_018, "resnet110": 1_727_962}
#: GoogLeNet's two auxiliary classifiers: conv1x1(128) on 4a (512 channels) and 4d (528), dense 2048 -> 1024 -> 1000
GOOGLENET_AUX = (512 * 128 + 128) + (528 * 128 + 128) + 2 * (2048 * 1024 + 1024 + 1024 * 1000 + 1000)
IMAGENET = sorted(n for n, f in ZOO.items() if ZOO[n].__defaults__ and (3, 224, 224) in ZOO[n].__defaults__)


@pytest.mark.parametrize("name, kwargs, count", [
    ("lenet5", {}, LENET5),
    ("lenet5", {"input_shape": (3, 32, 32), "num_classes": 5},
     6 * 75 + 6 + 2416 + (16 * 6 * 6) * 120 + 120 + 10164 + 84 * 5 + 5),
    ("resnet20", {"shortcut": "B"}, 272_474),              # 1x1 conv + BN projection shortcuts
    ("resnet20", {"shortcut": "A"}, 272_474 - (16 * 32 + 2 * 32) - (32 * 64 + 2 * 64)),  # 269,722
    ("googlenet", {"aux": False}, 6_998_552),
    ("googlenet", {}, 6_998_552 + GOOGLENET_AUX),
    *[(name, {}, count) for name, count in PUBLISHED.items()],
])
def test_parameter_counts(name, kwargs, count):
    total, trainable = ZOO[name](**kwargs).count_params()
    assert total == trainable == count


def test_every_builder_takes_classes_and_shape():
    for name, builder in ZOO.items():
        shape = (3, 64, 64) if name in IMAGENET else (3, 32, 32)
        m = builder(num_classes=7, input_shape=shape)
        m.infer_shapes()
        assert m.output_shapes[m.output] == (7,), name
        assert Model.from_config(json.loads(json.dumps(m.to_config()))).to_config() == m.to_config()
    with pytest.raises(ValueError, match="resnet51"):
        build_model("resnet51")


@pytest.mark.parametrize("backend_name", BACKENDS)
@pytest.mark.parametrize("name", sorted(n for n in ZOO if n not in IMAGENET))
def test_forward_tiny_batch(name, backend_name):
    be = load_backend(backend_name)
    m = ZOO[name]().build(be, seed=0)
    x = np.random.default_rng(0).standard_normal((2,) + m.input_shape).astype(np.float32)
    y = be.to_host(m.forward(x))
    assert y.shape == (2, 10) and y.dtype == np.float32 and np.isfinite(y).all()
    assert not np.allclose(y[0], y[1])


@pytest.mark.parametrize("name", IMAGENET)
def test_imagenet_model_forward_and_backward_at_batch_1(name):
    """Every ImageNet-size network runs one training forward and backward (all outputs) at 224x224."""
    from numbacnn.losses import get_loss
    m = ZOO[name]().build("cpu", seed=0)
    be, loss = m.backend, get_loss("cross_entropy")
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    outputs = m.training_outputs()
    acts = m.forward(x, training=True, until=[n for n, _ in outputs])
    assert acts[0].shape == (1, 1000) and np.isfinite(acts[0]).all()
    m.backward({n: loss(be, a, np.array([7]), w)[1] for (n, w), a in zip(outputs, acts)})
    for layer_name, param, value, grad, _ in m.named_parameters():
        assert grad.shape == value.shape and np.isfinite(grad).all(), f"{layer_name}/{param}"


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


# ---------------------------------------------------------------- as published
def test_zfnet_is_the_onnx_model_zoos_zfnet512():
    """Our zfnet computes what the onnx package's ZFNet-512 graph computes, with its weights copied in order."""
    pytest.importorskip("onnx")
    from numbacnn.onnx import import_onnx
    from numbacnn.onnx.light import light_graph
    theirs = import_onnx(light_graph("light_zfnet512", seed=3))
    ours = ZOO["zfnet"]().build("cpu", seed=0)
    src = [a for state in theirs.get_weights().values() for a in state.values()]
    dst = ours.get_weights()
    pairs = [(layer, name) for layer, state in dst.items() for name in state]
    assert [dst[l][n].shape for l, n in pairs] == [a.shape for a in src]
    ours.set_weights({l: {n: src[i] for i, (l2, n) in enumerate(pairs) if l2 == l} for l in dst})
    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
    probs = theirs.forward(x)                                  # the light graph ends in a softmax
    logits = ours.forward(x)
    e = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(e / e.sum(1, keepdims=True), probs, rtol=1e-4, atol=1e-7)


def test_googlenet_has_bvlc_googlenets_parameters():
    pytest.importorskip("onnx")
    from numbacnn.onnx import import_onnx
    from numbacnn.onnx.light import light_graph
    bvlc = import_onnx(light_graph("light_inception_v1"))
    ours = ZOO["googlenet"](aux=False)
    ours.infer_shapes()
    assert sorted(a.shape for s in bvlc.get_weights().values() for a in s.values()) == sorted(
        tuple(shape) for layer in ours.layers.values() for shape in layer.param_shapes.values())


def test_googlenet_gradients_with_auxiliary_losses_match_pytorch():
    """Total loss = main + 0.3 * (aux1 + aux2): every parameter's gradient equals PyTorch's on the same graph."""
    torch = pytest.importorskip("torch")
    from numbacnn.losses import get_loss
    m = ZOO["googlenet"](num_classes=5, input_shape=(3, 64, 64)).build("cpu", seed=0)
    for layer in m.layers.values():                     # dropout off: the two engines draw different masks
        if layer.random:
            layer.rate = 0.0
    outputs = m.training_outputs()
    nodes = [n for n, _ in outputs]
    net = torch_model(torch, m, copy_weights=True, outputs=nodes).train()
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((3, 3, 64, 64)).astype(np.float32), np.array([0, 3, 4])
    acts = m.forward(x, training=True, until=nodes)
    m.backward({n: get_loss("cross_entropy")(m.backend, a, y, w)[1] for (n, w), a in zip(outputs, acts)})
    touts = net(torch.from_numpy(x))
    total = sum(w * torch.nn.functional.cross_entropy(t, torch.from_numpy(y)) for (_, w), t in zip(outputs, touts))
    total.backward()
    for name, module in net.nodes.items():
        for ours, theirs in (("weight", "weight"), ("bias", "bias")):
            if ours in m.layers[name].grads:
                np.testing.assert_allclose(m.layers[name].grads[ours], getattr(module, theirs).grad.numpy(),
                                           rtol=2e-3, atol=2e-5, err_msg=f"{name}/{ours}")
