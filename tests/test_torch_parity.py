"""LeNet-5 trained 20 SGD-momentum steps in numbacnn and in PyTorch from the same start ends the same.

Both start from numbacnn's initial weights and see the same 20 batches in the
same order (``fit(..., shuffle=False)``), with momentum 0.9, Nesterov off, and
L2 weight decay on the weights only (a PyTorch parameter group without decay
for the biases, as numbacnn's ``regularized`` sets do).

Tolerance: ``rtol=2e-4, atol=1e-5`` on every parameter.  Both engines compute
in float32 but sum in different orders (direct convolution vs PyTorch's
im2col/oneDNN GEMMs, different reduction trees for the weight and bias
gradients), so each step differs in the last bits (~1e-7 relative); momentum
carries those differences forward and 20 steps at this (deliberately large)
learning rate grow them to at most ~2e-5 absolute on weights that moved by up
to 12 (measured: 1.4e-5 on fc3.weight, 1e-6 to 4e-6 elsewhere, on both the
cpu and the reference backend).  A real bug (a wrong gradient, a missed weight
decay, momentum off by one step) moves parameters by 1e-2 or more.
"""
import numpy as np
import pytest

from numbacnn.models import lenet5
from numbacnn.optim import SGD
from numbacnn.train import fit

torch = pytest.importorskip("torch")


def torch_lenet5(weights, classes=10):
    nn = torch.nn
    net = nn.Sequential()
    net.add_module("conv1", nn.Conv2d(1, 6, 5, padding=2))
    net.add_module("relu1", nn.ReLU())
    net.add_module("pool1", nn.MaxPool2d(2))
    net.add_module("conv2", nn.Conv2d(6, 16, 5))
    net.add_module("relu2", nn.ReLU())
    net.add_module("pool2", nn.MaxPool2d(2))
    net.add_module("flatten", nn.Flatten())
    net.add_module("fc1", nn.Linear(400, 120))
    net.add_module("relu3", nn.ReLU())
    net.add_module("fc2", nn.Linear(120, 84))
    net.add_module("relu4", nn.ReLU())
    net.add_module("fc3", nn.Linear(84, classes))
    with torch.no_grad():
        for name, p in net.named_parameters():
            layer, param = name.split(".")
            p.copy_(torch.from_numpy(weights[layer][param]))
    return net


def test_lenet5_sgd_momentum_matches_pytorch():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    steps, batch = 20, 32
    x = rng.standard_normal((steps * batch, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, steps * batch)
    x[np.arange(len(y)), 0, 2 * y + 4, 4:24] += 2.0            # a learnable signal

    model = lenet5().build("cpu", seed=3)
    start = model.get_weights()
    assert set(start) == {"conv1", "conv2", "fc1", "fc2", "fc3"}
    net = torch_lenet5(start)
    decay = [p for n, p in net.named_parameters() if n.endswith("weight")]
    plain = [p for n, p in net.named_parameters() if n.endswith("bias")]
    opt_t = torch.optim.SGD([{"params": decay, "weight_decay": 5e-4}, {"params": plain, "weight_decay": 0.0}],
                            lr=0.05, momentum=0.9)
    losses_t = []
    for s in range(steps):
        xb = torch.from_numpy(x[s * batch:(s + 1) * batch])
        yb = torch.from_numpy(y[s * batch:(s + 1) * batch])
        opt_t.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(xb), yb)
        loss.backward()
        opt_t.step()
        losses_t.append(loss.item())

    losses = []

    class Losses:
        def on_batch_end(self, batch, info):
            losses.append(info["loss"])

    fit(model, x, y, epochs=1, batch_size=batch, shuffle=False, callbacks=[Losses()],
        optimizer=SGD(lr=0.05, momentum=0.9, weight_decay=5e-4))

    assert len(losses) == steps
    np.testing.assert_allclose(losses, losses_t, rtol=1e-4)
    assert losses_t[-1] < losses_t[0]                           # it did train
    ours = model.get_weights()
    for name, p in net.named_parameters():
        layer, param = name.split(".")
        theirs = p.detach().numpy()
        moved = np.abs(theirs - start[layer][param]).max()
        assert moved > 1e-3, f"{name} barely moved ({moved}): the comparison would prove nothing"
        np.testing.assert_allclose(ours[layer][param], theirs, rtol=2e-4, atol=1e-5, err_msg=name)
