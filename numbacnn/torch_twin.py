"""PyTorch twins of layers and models, for tests and benchmarks (PyTorch is never a runtime dependency).

``TWINS`` maps a layer's registered name to ``fn(torch, layer) -> nn.Module``
built from the layer's public configuration; ``torch_model(torch, model)``
runs the whole graph in PyTorch node by node (in the executor's order),
optionally with our weights copied in::

    import torch
    from numbacnn.torch_twin import torch_model
    net = torch_model(torch, model, copy_weights=True)    # model: a built numbacnn Model

``tests/test_zoo.py`` checks the zoo against these twins and
``benchmarks/bench_devices.py`` times them beside us.
"""
from __future__ import annotations

from .graph import INPUT
from .registry import Registry

#: layer registered name -> fn(torch, layer) -> torch.nn.Module
TWINS = Registry("layer without a PyTorch twin")

#: our parameter and buffer names -> PyTorch's
PARAM_NAMES = {"weight": "weight", "bias": "bias", "gamma": "weight", "beta": "bias",
               "running_mean": "running_mean", "running_var": "running_var"}


def _in(layer):
    return layer.input_shapes[0]


@TWINS.register("Conv2D")
def _conv(torch, layer):
    return torch.nn.Conv2d(_in(layer)[0], layer.filters, layer.kernel_hw, layer.stride_hw, layer.padding_hw,
                           layer.dilation_hw, layer.groups, layer.use_bias)


@TWINS.register("Dense")
def _dense(torch, layer):
    return torch.nn.Linear(_in(layer)[0], layer.units, layer.use_bias)


@TWINS.register("BatchNorm")
def _batch_norm(torch, layer):
    cls = torch.nn.BatchNorm2d if len(_in(layer)) == 3 else torch.nn.BatchNorm1d
    return cls(_in(layer)[0], layer.eps, layer.momentum)


@TWINS.register("MaxPool2D")
def _max_pool(torch, layer):
    return torch.nn.MaxPool2d(layer.kernel_hw, layer.stride_hw, layer.padding_hw)


@TWINS.register("AvgPool2D")
def _avg_pool(torch, layer):
    return torch.nn.AvgPool2d(layer.kernel_hw, layer.stride_hw, layer.padding_hw,
                              count_include_pad=layer.count_include_pad)


@TWINS.register("LRN")
def _lrn(torch, layer):
    return torch.nn.LocalResponseNorm(layer.size, layer.alpha, layer.beta, layer.k)


class _Lambda:
    """Builds an ``nn.Module`` whose forward is ``fn(*xs)`` (merge layers, pads, reshapes)."""

    def __new__(cls, torch, fn):
        class Module(torch.nn.Module):
            def forward(self, *xs):
                return fn(*xs)
        return Module()


TWINS.register("GlobalAvgPool2D")(lambda torch, layer: torch.nn.AdaptiveAvgPool2d(1))
TWINS.register("Dropout")(lambda torch, layer: torch.nn.Dropout(layer.rate))
TWINS.register("ReLU")(lambda torch, layer: torch.nn.ReLU())
TWINS.register("LeakyReLU")(lambda torch, layer: torch.nn.LeakyReLU(layer.negative_slope))
TWINS.register("Sigmoid")(lambda torch, layer: torch.nn.Sigmoid())
TWINS.register("Tanh")(lambda torch, layer: torch.nn.Tanh())
TWINS.register("Softmax")(lambda torch, layer: torch.nn.Softmax(dim=1))
TWINS.register("Flatten")(lambda torch, layer: torch.nn.Flatten())
TWINS.register("Add")(lambda torch, layer: _Lambda(torch, lambda *xs: sum(xs[1:], xs[0])))
TWINS.register("Concatenate")(lambda torch, layer: _Lambda(torch, lambda *xs: torch.cat(xs, dim=1)))
TWINS.register("ChannelPad")(lambda torch, layer: _Lambda(
    torch, lambda x: torch.nn.functional.pad(x, (0, 0, 0, 0, layer.before, layer.after))))
TWINS.register("Pad2D")(lambda torch, layer: _Lambda(
    torch, lambda x: torch.nn.functional.pad(x, (layer.pads[2], layer.pads[3], layer.pads[0], layer.pads[1]),
                                             value=layer.value)))
TWINS.register("Reshape")(lambda torch, layer: _Lambda(torch, lambda x: x.reshape(x.shape[0], *layer.target_shape)))


def twin(torch, layer):
    """The PyTorch module of ``layer`` (built); a layer without a twin raises ValueError naming it."""
    fn = TWINS.get(layer.registered_name)
    if fn is None:
        raise ValueError(f"{layer.describe()}: no PyTorch twin (numbacnn.torch_twin.TWINS)")
    return fn(torch, layer)


def copy_weights_into(torch, model, modules: dict):
    """Copy our parameters and batch-norm statistics into the twins ``{node: module}``."""
    with torch.no_grad():
        for name, state in model.get_weights().items():
            for ours, value in state.items():
                getattr(modules[name], PARAM_NAMES[ours]).copy_(torch.from_numpy(value))


def torch_model(torch, model, copy_weights=False, outputs=None):
    """An ``nn.Module`` running ``model``'s graph (built) with a twin per node; our weights when asked.

    It returns the model output, or, with ``outputs`` (a list of nodes, e.g. the output and the auxiliary
    outputs), a list of those nodes' values.
    """
    names = model.plan(outputs)
    inputs = {n: model.inputs_of(n) for n in names}

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.nodes = torch.nn.ModuleDict({n.replace(".", "_"): twin(torch, model.layers[n]) for n in names})

        def forward(self, x):
            acts = {INPUT: x}
            for n in names:
                acts[n] = self.nodes[n.replace(".", "_")](*(acts[i] for i in inputs[n]))
            return acts[model.output] if outputs is None else [acts[n] for n in outputs]

    net = Net()
    if copy_weights:
        copy_weights_into(torch, model, {n: net.nodes[n.replace(".", "_")] for n in names})
    return net


__all__ = ["TWINS", "twin", "torch_model", "copy_weights_into", "PARAM_NAMES"]
