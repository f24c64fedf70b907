"""The DAG executor: a node list in topological order (darknet's forward_network,
micrograd's reverse-topological backward).  It knows only the Layer interface,
and is handed Backend objects (a backend name is resolved through
``registry.resolve_backend``: this module imports no backend).

One executor: ``forward(x, training, until=node, hook=fn)`` and
``backward(dy, start=node, hook=fn)`` serve training (the loss reads the
logits node), ``numbacnn time`` (a timing hook), feature maps (``until``) and
the benchmarks.

Config document (what HDF5 files store as ``model_config``)::

    {"name": str, "input_shape": [C, H, W],
     "nodes": [{"name": str, "class_name": str, "config": {...}, "inputs": [names]}, ...],
     "output": name}

The model input is the node ``"input"``.  Builder API::

    m = Model("net", input_shape=(1, 28, 28))
    h = m.add(Conv2D(6, 5, padding=2))          # input defaults to the last node added
    h = m.add(ReLU(), h)
    m.build("cpu", seed=0); y = m.forward(x)
"""
from __future__ import annotations

import json
import zlib
from collections import Counter
from typing import NamedTuple

import numpy as np

from .layers.base import Layer, assign, layer_from_config, shape_str
from .registry import resolve_backend

INPUT = "input"
_FUSIONS = object()    # the key of a plan's fusions in Model._plans


class Fusions(NamedTuple):
    """What one pass fuses (``Model.fusions``): node -> the activation it applies for its follower, absorbed
    follower -> the node that applies it, consumer -> producer of its input's statistics, and back, and (in
    inference passes) node -> the normalisation after it that it folds."""

    activation: dict
    absorbed: dict
    stats_from: dict
    stats_to: dict
    folded: dict


NO_FUSIONS = Fusions({}, {}, {}, {}, {})


class Model:
    """A directed acyclic graph of layers with one input and one output."""

    def __init__(self, name: str = "model", input_shape=None):
        self.name = str(name)
        self.input_shape = tuple(int(d) for d in input_shape) if input_shape is not None else None
        self._nodes: dict = {}   # name -> (layer, [input names]), in topological order
        self.output = None
        self.backend = None
        self.output_shapes: dict = {}
        self._plans: dict = {}   # node(s) -> [their ancestors and themselves, in topological order]
        self.aux_outputs: dict = {}   # node -> loss weight: auxiliary training outputs (GoogLeNet's heads)
        #: whether passes fuse what the layers allow (``fusions``); off, every node runs on its own
        self.fuse = True

    # ------------------------------------------------------------ building the graph
    def add(self, layer: Layer, inputs=None, name: str | None = None) -> str:
        """Append ``layer`` fed by ``inputs`` (a name or list of names; default: the last node).

        Returns the node name (``name``, else ``layer.name``, else ``<lowercase class>_<i>``);
        the node becomes the model output.  A layer given an ``activation`` (Keras' style) is followed
        by a node of that activation, whose name is returned.
        """
        if not isinstance(layer, Layer):
            raise ValueError(f"model {self.name!r}: add() needs a Layer, got {type(layer).__name__}")
        if any(layer is other for other, _ in self._nodes.values()):
            raise ValueError(f"model {self.name!r}: {layer.describe()} is already in the graph (layers hold "
                             f"per-node state, so create a new one)")
        if inputs is None:
            inputs = [self.output or INPUT]
        elif isinstance(inputs, str):
            inputs = [inputs]
        inputs = list(inputs)
        name = name or layer.name
        if name is None:
            base, i = type(layer).__name__.lower(), 1
            while f"{base}_{i}" in self._nodes:
                i += 1
            name = f"{base}_{i}"
        if name == INPUT or name in self._nodes:
            raise ValueError(f"model {self.name!r}: node name {name!r} is already used")
        for src in inputs:
            if src != INPUT and src not in self._nodes:
                raise ValueError(f"model {self.name!r}: node {name!r} takes unknown input {src!r}")
        layer.name = name
        self._nodes[name] = (layer, inputs)
        self._plans = {}
        self.output = name
        activation = layer.take_activation()      # Keras' Conv2D(..., activation="relu"): a node of its own
        return name if activation is None else self.add(activation, [name])

    def add_aux_output(self, node: str, weight: float):
        """Declare ``node`` an auxiliary training output whose loss counts ``weight`` times in the total.

        Auxiliary outputs are trained and evaluated but not computed for inference: ``forward``
        without ``until`` reaches only ``output`` (and so do ``predict`` and ONNX export).
        """
        if node not in self._nodes or node == self.output:
            raise ValueError(f"model {self.name!r}: auxiliary output {node!r} must be a node other than the output")
        if not (isinstance(weight, (int, float)) and weight > 0):
            raise ValueError(f"model {self.name!r}: auxiliary output {node!r} needs a weight > 0, got {weight!r}")
        self.aux_outputs[node] = float(weight)

    @classmethod
    def sequential(cls, name: str, input_shape, layers) -> "Model":
        m = cls(name, input_shape)
        for layer in layers:
            m.add(layer)
        return m

    @classmethod
    def from_config(cls, cfg: dict) -> "Model":
        """Rebuild a model from ``to_config()``'s document (nodes may come in any order)."""
        if not isinstance(cfg, dict):
            raise ValueError(f"model config must be a dict, got {type(cfg).__name__}")
        for key in ("input_shape", "nodes", "output"):
            if key not in cfg:
                raise ValueError(f"model config {cfg.get('name', '?')!r} lacks the key {key!r}")
        m = cls(cfg.get("name", "model"), cfg["input_shape"])
        pending = {}
        for node in cfg["nodes"]:
            try:
                name, class_name, config, inputs = node["name"], node["class_name"], node.get("config", {}), \
                    node["inputs"]
            except (KeyError, TypeError):
                raise ValueError(f"model {m.name!r}: node {node!r} needs name, class_name, config, inputs") from None
            if name in pending or name == INPUT:
                raise ValueError(f"model {m.name!r}: node name {name!r} is used twice")
            pending[name] = (layer_from_config(class_name, {**config, "name": name}), list(inputs))
        while pending:  # passes in document order: a topologically ordered document keeps its order
            progress = False
            for n, (layer, ins) in list(pending.items()):
                if all(i == INPUT or i in m for i in ins):
                    m.add(pending.pop(n)[0], ins, n)
                    progress = True
            if not progress:
                bad = {n: [i for i in ins if i != INPUT and i not in m] for n, (_, ins) in pending.items()}
                raise ValueError(f"model {m.name!r}: unknown inputs or a cycle among nodes {bad}")
        if cfg["output"] not in m:
            raise ValueError(f"model {m.name!r}: output {cfg['output']!r} is not a node")
        m.output = cfg["output"]
        aux = cfg.get("aux_outputs") or {}
        if not isinstance(aux, dict):
            raise ValueError(f"model {m.name!r}: aux_outputs must map node names to loss weights")
        for node, weight in aux.items():
            m.add_aux_output(node, weight)
        return m

    def to_config(self) -> dict:
        return {"name": self.name, "input_shape": list(self.input_shape),
                "nodes": [{"name": n, "class_name": layer.registered_name or type(layer).__name__,
                           "config": {k: v for k, v in layer.get_config().items() if k != "name"},
                           "inputs": list(ins)} for n, (layer, ins) in self._nodes.items()],
                "output": self.output, **({"aux_outputs": dict(self.aux_outputs)} if self.aux_outputs else {})}

    def to_json(self, indent=None) -> str:
        return json.dumps(self.to_config(), indent=indent)

    @classmethod
    def from_json_file(cls, path) -> "Model":
        try:
            with open(path) as f:
                cfg = json.load(f)
        except OSError as e:
            raise ValueError(f"{path}: cannot read model config ({e.strerror})") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
        return cls.from_config(cfg)

    # ------------------------------------------------------------ shapes and parameters
    @property
    def layers(self) -> dict:
        """{node name: Layer} in topological order."""
        return {n: layer for n, (layer, _) in self._nodes.items()}

    def __contains__(self, name) -> bool:
        """True when ``name`` is a node of the graph."""
        return name in self._nodes

    def inputs_of(self, name: str) -> list:
        return list(self._nodes[name][1])

    def infer_shapes(self) -> dict:
        """Build every layer on the shapes flowing from ``input_shape``; returns ``output_shapes``."""
        if self.input_shape is None:
            raise ValueError(f"model {self.name!r} has no input_shape")
        if self.output is None:
            raise ValueError(f"model {self.name!r} has no layers")
        self._check_all_feed_output()
        shapes = {INPUT: self.input_shape}
        for n, (layer, ins) in self._nodes.items():
            shapes[n] = layer.build([shapes[i] for i in ins])
        self.output_shapes = {n: s for n, s in shapes.items() if n != INPUT}
        return self.output_shapes

    def _check_all_feed_output(self):
        live, stack = set(), [self.output, *self.aux_outputs]
        while stack:
            n = stack.pop()
            if n in live or n == INPUT:
                continue
            live.add(n)
            stack.extend(self._nodes[n][1])
        dead = [n for n in self._nodes if n not in live]
        if dead:
            raise ValueError(f"model {self.name!r}: node(s) {dead} feed neither the output {self.output!r} nor an "
                             f"auxiliary output")

    def build(self, backend="cpu", seed: int = 0, initialize: bool = True) -> "Model":
        """Infer shapes, then initialise every parameter on ``backend``.

        Each layer draws from its own Generator seeded by (``seed``, crc32 of
        its name), so a layer's initial values do not depend on the node order.
        ``initialize=False`` fills the parameters with zeros instead (fast), for
        a caller that loads weights next (model files, ONNX import).
        """
        self.backend = resolve_backend(backend)
        self.infer_shapes()
        self.reinitialize(list(self._nodes), seed, initialize)
        return self

    def reinitialize(self, names, seed: int = 0, initialize: bool = True):
        """Fresh initial values for the layers ``names`` (as ``build`` draws them) on the model's backend."""
        be = self.require_built()
        for name in self._layer_names(names):
            layer = self._nodes[name][0]
            layer.set_backend(be)
            layer.init_params(np.random.default_rng([int(seed), zlib.crc32(name.encode())]), zeros=not initialize)

    def replace(self, name: str, layer: Layer):
        """Put ``layer`` in node ``name``'s place, fed by the same inputs; shapes are inferred again.

        The new layer has no parameters until ``reinitialize([name])``.
        """
        if name not in self._nodes:
            raise ValueError(f"model {self.name!r} has no layer {name!r}")
        layer.name = name
        self._nodes[name] = (layer, self._nodes[name][1])
        self._plans = {}
        self.infer_shapes()

    def set_backend(self, backend) -> "Model":
        be = resolve_backend(backend)
        for layer in self.layers.values():
            layer.set_backend(be)
        self.backend = be
        return self

    def require_built(self):
        if self.backend is None:
            raise ValueError(f"model {self.name!r} is not built: call build() first")
        return self.backend

    # ------------------------------------------------------------ compute
    def plan(self, until=None) -> list:
        """The nodes needed to compute ``until`` (a node or a list of nodes; default: the output), in
        topological order."""
        until = self.output if until is None else until
        key = tuple(until) if isinstance(until, (list, tuple)) else until
        if key not in self._plans:
            targets = list(key) if isinstance(key, tuple) else [key]
            unknown = [t for t in targets if t not in self._nodes]
            if unknown:
                raise ValueError(f"model {self.name!r} has no node {unknown[0]!r}")
            need, stack = set(), targets
            while stack:
                n = stack.pop()
                if n != INPUT and n not in need:
                    need.add(n)
                    stack.extend(self._nodes[n][1])
            self._plans[key] = [n for n in self._nodes if n in need]
        return self._plans[key]

    def fusions(self, until=None, fold=False) -> Fusions:
        """What a pass computing ``until`` fuses, decided from what follows what (the same on every backend).

        A node whose only consumer is a single-input node it can apply (the follower's ``fusable_as`` is in its
        ``absorbs``: BatchNorm, Add or Conv2D followed by ReLU) applies it, forward and backward, and the follower
        becomes a no-op (``absorbed``); a node that ``makes_stats`` hands its output's channel statistics to its
        only consumer when that one ``uses_input_stats`` (Conv2D -> BatchNorm in training), and a layer that
        ``adds_to_grads`` adds its input gradient to the one summed so far (``backward``).  With ``fold`` (an
        inference pass, ``forward(inference=True)``) a node that ``folds_norm`` folds a follower that is
        ``foldable_norm`` (Conv2D -> BatchNorm with its running statistics), which is absorbed, and applies the
        ReLU after that one; such a pass has no backward.  Targets, the output and auxiliary outputs are never
        fused into their follower.  ``fuse = False``: nothing is.
        """
        if not self.fuse:
            return NO_FUSIONS
        plan = self.plan(until)
        key = (_FUSIONS, tuple(until) if isinstance(until, (list, tuple)) else until, bool(fold))
        if key not in self._plans:
            targets = set(until) if isinstance(until, (list, tuple)) else {self.output if until is None else until}
            self._plans[key] = self._find_fusions(plan, targets | {self.output, *self.aux_outputs}, bool(fold))
        return self._plans[key]

    def _find_fusions(self, plan, keep, fold) -> Fusions:
        consumers: dict = {}
        for n, (_, ins) in self._nodes.items():
            for i in ins:
                consumers.setdefault(i, []).append(n)
        found = Fusions({}, {}, {}, {}, {})
        folded_by = {}                  # a folded normalisation -> the node that folds it
        for f in plan:
            follower, ins = self._nodes[f]
            p = ins[0] if len(ins) == 1 else INPUT
            if p == INPUT or p in keep or consumers[p] != [f]:
                continue
            producer = self._nodes[p][0]
            if p in folded_by:          # the activation after a folded normalisation: its folder applies it
                q = folded_by[p]
                if follower.fusable_as is not None and follower.fusable_as in self._nodes[q][0].absorbs:
                    found.activation[q], found.absorbed[f] = follower.fusable_as, p
                continue
            if p in found.absorbed:
                continue
            if fold and producer.folds_norm and follower.foldable_norm:
                found.folded[p], found.absorbed[f], folded_by[f] = f, p, p
            elif follower.fusable_as is not None and follower.fusable_as in producer.absorbs:
                found.activation[p], found.absorbed[f] = follower.fusable_as, p
            elif producer.makes_stats:
                found.stats_from[f], found.stats_to[p] = p, f
        return found

    def _prepare(self, n, layer, fz: Fusions, training) -> bool:
        """Tell node ``n``'s layer what this forward fuses; True when the node is absorbed (a no-op)."""
        layer.absorbed = n in fz.absorbed
        layer.fused_activation = fz.activation.get(n)
        layer.folded_norm = self._nodes[fz.folded[n]][0] if n in fz.folded else None
        layer.output_stats = None
        consumer, producer = fz.stats_to.get(n), fz.stats_from.get(n)
        layer.stats_wanted = consumer is not None and self._nodes[consumer][0].uses_input_stats(bool(training))
        layer.input_stats = None if producer is None else self._nodes[producer][0].output_stats
        return layer.absorbed

    def _probability_node(self, output=None):
        """The layer producing probabilities that ``output`` is (maybe through reshapes), or None."""
        n = self.output if output is None else output
        while True:
            layer, ins = self._nodes[n]
            if layer.outputs_probabilities and len(ins) == 1 and ins[0] != INPUT:
                return n
            if not layer.reshapes_only or len(ins) != 1 or ins[0] == INPUT:
                return None
            n = ins[0]

    def outputs_probabilities(self) -> bool:
        """True when the graph ends in a probability layer (a Softmax, maybe followed by reshapes)."""
        return self._probability_node() is not None

    def logits_node(self, output=None) -> str:
        """The node a loss on logits reads for ``output`` (default: the model output): that node, or the input
        of the probability layer it ends in (a final Softmax, as in imported classifiers), so that softmax is
        never applied twice."""
        p = self._probability_node(output)
        return (self.output if output is None else output) if p is None else self._nodes[p][1][0]

    def training_outputs(self) -> list:
        """[(logits node, loss weight)]: the output's (weight 1) and every auxiliary output's."""
        return [(self.logits_node(), 1.0)] + [(self.logits_node(n), w) for n, w in self.aux_outputs.items()]

    def forward(self, x, training: bool = False, until=None, hook=None, inference: bool = False):
        """x : (N, *input_shape) host or backend array -> the array of node ``until`` (default: the output;
        a list of nodes gives a list of arrays).

        ``inference``: a pass that no backward follows (evaluate, predict): batch norms are folded into the
        convolutions before them (``fusions``); not with ``training``.

        ``hook(name, y)``, when given, is called after each node with its output (timing, feature maps).
        """
        be = self.require_built()
        if isinstance(x, np.ndarray):
            x = be.asarray(x)
        if tuple(int(d) for d in x.shape[1:]) != self.input_shape or len(x.shape) != len(self.input_shape) + 1:
            raise ValueError(f"model {self.name!r}: input shape {shape_str(x.shape)} does not match "
                             f"(N, {', '.join(map(str, self.input_shape))})")
        if inference and training:
            raise ValueError(f"model {self.name!r}: forward with inference=True cannot also be training")
        acts, fz = {INPUT: x}, self.fusions(until, fold=inference)
        for n in self.plan(until):
            layer, ins = self._nodes[n]
            if self._prepare(n, layer, fz, training):
                acts[n] = acts[ins[0]]
            else:
                acts[n] = layer.forward([acts[i] for i in ins], training)
            if hook is not None:
                hook(n, acts[n])
        if isinstance(until, (list, tuple)):
            return [acts[n] for n in until]
        return acts[self.output if until is None else until]

    __call__ = forward

    def backward(self, dy, start=None, hook=None, input_grad: bool = True):
        """Backpropagate ``dy``, the gradient of node ``start`` (default: the output), in reverse topological order;
        ``dy`` may also be a dict {node: its gradient} (several outputs, e.g. auxiliary heads).

        Fills the ``grads`` of every layer ``start`` depends on; where one output feeds several
        nodes their gradients are summed (``backend.add_forward`` into a new array).  Returns
        the gradient with respect to the model input (None with ``input_grad=False``: layers fed only
        by the input are told, through ``Layer.input_grad``, that no one needs theirs, and a convolution
        then skips computing it).  ``hook(name, dxs)``, when given, is called after each node's backward
        with the gradients it returned.
        """
        be = self.require_built()
        seeds = dict(dy) if isinstance(dy, dict) else {self.output if start is None else start: dy}
        grads = {n: be.asarray(g) if isinstance(g, np.ndarray) else g for n, g in seeds.items()}
        plan = self.plan(list(grads))
        left = Counter(i for n in plan for i in self._nodes[n][1])     # each node's consumers still to run
        for n in plan:
            self._nodes[n][0].relu_grad_done = False
        for n in reversed(plan):
            layer, ins = self._nodes[n]
            bases = [None] * len(ins)
            if layer.absorbed:          # the node before applied this one's backward too
                dxs = [grads.pop(n)]
            else:
                layer.input_grad = input_grad or any(i != INPUT for i in ins)
                if layer.adds_to_grads and len(ins) == 1:
                    bases = [grads.get(ins[0])]
                layer.grad_base = bases
                layer.grad_relu = self._completes_relu_grad(ins, bases, left)
                dxs = layer.backward(grads.pop(n))
            left.subtract(ins)
            if hook is not None:
                hook(n, dxs)
            if len(dxs) != len(ins):
                raise ValueError(f"{layer.describe()}: backward returned {len(dxs)} gradients for {len(ins)} inputs")
            for src, dx, base in zip(ins, dxs, bases):
                if dx is None:
                    continue
                # a gradient may alias another (Add passes dy on): sums go into a new array
                grads[src] = dx if base is not None or src not in grads else be.add_forward([grads[src], dx])
        return grads.get(INPUT)

    def _completes_relu_grad(self, ins, bases, left) -> bool:
        """Whether the layer about to add its input gradient to ``bases[0]`` completes the gradient of a ReLU
        another node absorbed (no other consumer of it left to run): it then applies the ReLU's backward to the
        sum as well, and the absorbing node is told (``relu_grad_done``) so that it does not do it again."""
        src = ins[0]
        if bases[0] is None or left[src] != 1 or src == INPUT:
            return False
        relu, producer = self._nodes[src]
        if not relu.absorbed or relu.fusable_as != "relu":
            return False
        self._nodes[producer[0]][0].relu_grad_done = True     # an absorbed node has one input, its absorber
        return True

    # ------------------------------------------------------------ random state (dropout)
    def random_state(self) -> dict:
        """{layer: its random-number state} for layers that draw random numbers (dropout masks)."""
        return {n: s for n, (layer, _) in self._nodes.items() if (s := layer.get_random_state()) is not None}

    def set_random_state(self, state: dict):
        for n, s in state.items():
            if n in self._nodes:
                self._nodes[n][0].set_random_state(s)

    # ------------------------------------------------------------ parameters
    def named_parameters(self):
        """Yield (layer_name, param_name, param, grad, layer) for every param of trainable layers."""
        for n, layer in self.layers.items():
            if not layer.trainable:
                continue
            for p, value in layer.params.items():
                yield n, p, value, layer.grads[p], layer

    def get_weights(self) -> dict:
        """{layer: {param or buffer name: host float32 copy}} for layers that have any."""
        return {n: state for n, layer in self.layers.items() if (state := layer.host_state())}

    def set_weights(self, weights: dict, strict: bool = True):
        """Load ``weights`` (as from ``get_weights``) in place; returns (loaded, skipped) lists of "layer/name".

        strict=True: a shape mismatch, a name the model lacks, or a model
        param/buffer that ``weights`` lacks raises ValueError.  strict=False
        skips and reports them (mismatches and unknown names in ``skipped``).
        """
        self.require_built()
        layers, loaded, skipped = self.layers, [], []
        for ln, state in weights.items():
            layer = layers.get(ln)
            for pn, value in state.items():
                key = f"{ln}/{pn}"
                target = None if layer is None else layer.params.get(pn, layer.buffers.get(pn))
                if target is None:
                    if strict:
                        raise ValueError(f"model {self.name!r} has no layer/param {key!r} to load")
                    skipped.append(key)
                    continue
                value = np.asarray(value)
                if tuple(value.shape) != tuple(target.shape):
                    if strict:
                        raise ValueError(f"layer {ln!r} param {pn!r}: model shape {shape_str(target.shape)} "
                                         f"does not match loaded shape {shape_str(value.shape)}")
                    skipped.append(key)
                    continue
                assign(target, value)
                loaded.append(key)
        if strict:
            missing = [f"{ln}/{pn}" for ln, layer in layers.items() for pn in (*layer.params, *layer.buffers)
                       if f"{ln}/{pn}" not in loaded]
            if missing:
                raise ValueError(f"model {self.name!r}: weights lack {missing}")
        return loaded, skipped

    def _layer_names(self, names):
        if names is None:
            return list(self._nodes)
        names = [names] if isinstance(names, str) else list(names)
        unknown = [n for n in names if n not in self._nodes]
        if unknown:
            raise ValueError(f"model {self.name!r} has no layer(s) {unknown}")
        return names

    def freeze(self, names=None):
        """Mark layers (a name, a list, or None for all) non-trainable."""
        for n in self._layer_names(names):
            self._nodes[n][0].trainable = False

    def unfreeze(self, names=None):
        for n in self._layer_names(names):
            self._nodes[n][0].trainable = True

    def count_params(self) -> tuple:
        """(total, trainable) parameter counts (buffers such as running statistics excluded)."""
        if not self.output_shapes:
            self.infer_shapes()
        total = trainable = 0
        for layer in self.layers.values():
            c = layer.count_params()
            total += c
            trainable += c if layer.trainable else 0
        return total, trainable

    def summary_rows(self) -> list:
        """[{name, type, inputs, output_shape, params, macs, flops, aux}] per layer; macs and flops for one
        sample; aux is True for layers only auxiliary outputs need (not computed for inference)."""
        if not self.output_shapes:
            self.infer_shapes()
        inference = set(self.plan())
        return [{"name": n, "type": layer.registered_name or type(layer).__name__, "inputs": list(ins),
                 "output_shape": tuple(layer.output_shape), "params": layer.count_params(),
                 "macs": int(layer.macs()), "flops": int(layer.flops()), "aux": n not in inference}
                for n, (layer, ins) in self._nodes.items()]
