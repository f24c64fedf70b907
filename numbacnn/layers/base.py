"""The Layer base class and the layer registry (Keras' ``base_conv.py`` style).

A layer is configuration plus parameters:

* ``__init__`` takes only JSON-able hyper-parameters plus ``name`` and
  ``trainable`` and stores each argument under an attribute of the same name;
  ``get_config()`` reads them back (through the signature), so
  ``cls(**layer.get_config())`` rebuilds the layer.
* ``build(input_shapes)`` takes the input shapes WITHOUT the batch dimension,
  declares parameter shapes (``add_param``/``add_buffer``) and returns the
  output shape.  A shape that does not fit raises a ValueError naming the layer
  and both shapes.
* ``init_params(rng)`` creates the parameters on the host (seeded numpy
  Generator) and moves them to the layer's backend; ``set_backend(be)`` moves
  existing ones.
* ``forward(inputs, training)`` and ``backward(dy) -> [dx per input]`` reach
  kernels only through ``self.backend``.  ``backward`` overwrites
  ``self.grads``; a layer keeps what it needs from its last forward.

Layers are found by class name in ``LAYERS`` (``@register``, a
``registry.Registry``), never through an if-chain; a registered class knows its
name as ``registered_name``.  What other modules need to know about a layer is
a public class attribute here (``random``, ``outputs_probabilities``,
``reshapes_only``, ``outputs_key``, ``optional_bias``, ``channel_affine``; the fusion attributes
``absorbs``, ``fusable_as``, ``makes_stats``, ``adds_to_grads`` and the ones the graph sets
for each call) or a method, never its class name or a private field.
"""
from __future__ import annotations

import inspect

import numpy as np

from .. import init as initializers
from ..registry import Registry
from ..kernels.geometry import out_size  # noqa: F401  (re-exported for the layer modules)

LAYERS = Registry("layer class")


def register(cls):
    """Class decorator: make ``cls`` constructible by name from a config (its ``registered_name``)."""
    LAYERS.register()(cls)
    cls.registered_name = cls.__name__
    return cls


def layer_from_config(class_name: str, config: dict):
    """Build the registered layer ``class_name`` from its ``get_config()`` dict."""
    cls = LAYERS.lookup(class_name)
    if not isinstance(config, dict):
        raise ValueError(f"config of layer class {class_name!r} must be a dict, got {type(config).__name__}")
    params = inspect.signature(cls.__init__).parameters
    unknown = sorted(set(config) - set(params))
    if unknown:
        raise ValueError(f"layer {config.get('name')!r} ({class_name}): unknown config key(s) {unknown}")
    return cls(**config)


# ------------------------------------------------------------------ helpers
def jsonable(v):
    """Tuples become lists (recursively), numpy scalars become Python scalars."""
    if isinstance(v, (tuple, list)):
        return [jsonable(a) for a in v]
    if isinstance(v, np.generic):
        return v.item()
    return v


def as_pair(layer, arg: str, v, minimum: int):
    """An int or a pair of ints -> (a, b), each >= minimum; else a ValueError naming the layer."""
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        v = (int(v), int(v))
    elif (isinstance(v, (list, tuple)) and len(v) == 2
          and all(isinstance(a, (int, np.integer)) and not isinstance(a, bool) for a in v)):
        v = (int(v[0]), int(v[1]))
    else:
        raise ValueError(f"{layer.describe()}: {arg} must be an int or a pair of ints, got {v!r}")
    if min(v) < minimum:
        raise ValueError(f"{layer.describe()}: {arg} must be >= {minimum}, got {v!r}")
    return v


def as_padding(layer, v, kernel=None, dilation=(1, 1), stride=(1, 1)):
    """Padding as an int, a pair (ph, pw), a 4-list (top, bottom, left, right), or Keras' "valid" / "same"
    -> (ph, pw).

    The 4-list form is accepted in configs so that explicit (e.g. ONNX)
    paddings can be stored, but the backends pad symmetrically, so top must
    equal bottom and left must equal right; anything else raises a ValueError.
    "same" (the output keeps the input's size) needs stride 1 and an odd (dilated) ``kernel``.
    """
    if isinstance(v, str):
        return _keras_padding(layer, v, kernel, dilation, stride)
    if isinstance(v, (list, tuple)) and len(v) == 4:
        if not all(isinstance(a, (int, np.integer)) and not isinstance(a, bool) and a >= 0 for a in v):
            raise ValueError(f"{layer.describe()}: padding must hold ints >= 0, got {v!r}")
        t, b, l, r = (int(a) for a in v)
        if t != b or l != r:
            raise ValueError(f"{layer.describe()}: asymmetric padding (top, bottom, left, right)={v!r} is not "
                             f"supported: the backends pad symmetrically")
        return t, l
    return as_pair(layer, "padding", v, 0)


def _keras_padding(layer, v, kernel, dilation, stride):
    if v == "valid":
        return 0, 0
    if v != "same":
        raise ValueError(f"{layer.describe()}: padding must be an int, a pair, a 4-list, 'valid' or 'same', got {v!r}")
    spans = [d * (k - 1) for k, d in zip(kernel or (), dilation)]
    if kernel is None or tuple(stride) != (1, 1) or any(s % 2 for s in spans):
        raise ValueError(f"{layer.describe()}: padding='same' needs stride 1 and an odd kernel here (it would pad "
                         f"unevenly); give the padding as numbers instead")
    return spans[0] // 2, spans[1] // 2


def check_activation(layer, activation):
    """An activation name for the ``activation`` argument of Conv2D and Dense (Keras' style), or None."""
    from .activations import ACTIVATIONS
    if activation is not None and activation not in ACTIVATIONS:
        raise ValueError(f"{layer.describe()}: activation must be one of {', '.join(ACTIVATIONS)} or None, got "
                         f"{activation!r}")
    return activation


def shape_str(shape) -> str:
    return "(" + ", ".join(str(int(d)) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _host(a):
    return np.ascontiguousarray(a, dtype=np.float32)


def assign(dst, value: np.ndarray):
    """Copy the host array ``value`` into the backend array ``dst`` in place."""
    value = _host(value)
    if hasattr(dst, "copy_to_device"):  # a numba device array
        dst.copy_to_device(value)
    else:
        dst[...] = value


# ------------------------------------------------------------------ Layer
class Layer:
    """Base class of every layer; see the module docstring for the protocol."""

    #: number of inputs the layer takes; None means one or more (merge layers)
    num_inputs = 1
    #: True for layers whose training output is random (dropout): never pre-computed, state saved
    random = False
    #: True for layers whose output is a probability distribution (Softmax): losses read their input
    outputs_probabilities = False
    #: True for layers that only change the shape of their input (Flatten, Reshape)
    reshapes_only = False
    #: the config key holding the number of outputs (units, filters), for rebuilding a classifier head
    outputs_key = None
    #: True for layers with a ``use_bias`` switch and a per-output ``bias`` (a constant add can fold into it)
    optional_bias = False
    #: for layers whose every output channel is affine in its own slice of some parameters: (the params
    #: scaled along their axis 0 by a per-channel multiply, the param a per-channel add goes into); an
    #: importer folds ``y * s + t`` into them (conv, dense, batch norm); None for the others
    channel_affine = None
    #: the name the layer class is registered under (set by ``@register``)
    registered_name = None
    #: whether ``backward`` must return its inputs' gradients; ``Model.backward(input_grad=False)`` clears it
    #: for layers fed only by the model input (a layer may then return None for them and skip the work)
    input_grad = True

    # ---- fusion (decided by the graph from what follows what; ``Model.fusions``; the same on every backend)
    #: the activations (a follower's ``fusable_as``) this layer can apply to its own output, forward and
    #: backward, in place of the node that follows it (BatchNorm, Add, Conv2D: ReLU)
    absorbs = ()
    #: the name under which the layer before may apply this one (ReLU: "relu"); None: never
    fusable_as = None
    #: set by the graph for each forward: the activation this layer applies to its output this time (or None)
    fused_activation = None
    #: set by the graph for each forward: True when the layer before applied this one, so the graph passes this
    #: node's input and gradient through unchanged
    absorbed = False
    #: True for layers that can fold a per-channel normalisation after them into their weights in inference
    #: passes (Conv2D), and for the normalisations they can fold (BatchNorm with its running statistics)
    folds_norm = False
    foldable_norm = False
    #: set by the graph for each forward: the normalisation layer after this one that it folds this time, or None
    folded_norm = None
    #: True for layers that can compute their output's per-channel statistics in parts (count, mean and M2 of
    #: disjoint parts, ``fused_batch_norm_forward``'s ``stats``) while they compute it (Conv2D)
    makes_stats = False
    #: set by the graph for each forward: whether the layer that follows wants those statistics this time
    stats_wanted = False
    #: what the forward made of them: the statistics of this call's output, or None (the graph clears it)
    output_stats = None
    #: set by the graph for each forward: the statistics in parts of this layer's input, made by the layer
    #: before, or None
    input_stats = None
    #: True for layers whose backward can add their input's gradient to the one the graph has already summed
    #: for that input (``grad_base``), saving the graph an addition (Conv2D)
    adds_to_grads = False
    #: set by the graph before each backward of such a layer: per input, the gradient summed so far, or None;
    #: where one is given, the layer returns it plus its own
    grad_base = None
    #: set by the graph with ``grad_base``: True when that sum completes the gradient of a ReLU the node before
    #: absorbed; the layer then returns the ReLU's backward of the sum (zero where its input x <= 0)
    grad_relu = False
    #: set by the graph for each backward: True when the ReLU this layer applied (``fused_activation``) has had its
    #: backward applied already (by the layer that completed the gradient, ``grad_relu``); dy is then used as it is
    relu_grad_done = False

    def __init__(self, name=None, trainable=True):
        if name is not None and not isinstance(name, str):
            raise ValueError(f"layer name must be a string, got {name!r}")
        self.name = name
        self.trainable = bool(trainable)
        self.params: dict = {}
        self.grads: dict = {}
        self.buffers: dict = {}
        self.regularized: set = set()
        self.backend = None
        self.input_shapes = None
        self.output_shape = None
        self._param_specs: dict = {}   # name -> (shape, initializer name)
        self._buffer_specs: dict = {}  # name -> (shape, fill value)

    # ------------------------------------------------------------ config
    def get_config(self) -> dict:
        """The constructor arguments (JSON-able): ``type(self)(**cfg)`` rebuilds the layer."""
        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {p: jsonable(getattr(self, p)) for p in names}

    def describe(self) -> str:
        return f"layer {self.name!r} ({self.registered_name or type(self).__name__})"

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    # ------------------------------------------------------------ shapes
    def shape_error(self, what: str, got, expected=None) -> ValueError:
        """A ValueError naming this layer, the input shape it got and (if given) the one it expects."""
        exp = f", expected {expected if isinstance(expected, str) else shape_str(expected)}" if expected is not None else ""
        return ValueError(f"{self.describe()}: {what}: got input shape {shape_str(got)}{exp}")

    def build(self, input_shapes) -> tuple:
        """Declare parameter shapes for ``input_shapes`` (no batch dim) and return the output shape."""
        shapes = [tuple(int(d) for d in s) for s in input_shapes]
        if self.num_inputs is not None and len(shapes) != self.num_inputs:
            raise ValueError(f"{self.describe()} takes {self.num_inputs} input(s), got {len(shapes)}")
        if not shapes:
            raise ValueError(f"{self.describe()} needs at least one input")
        old = {k: s for k, (s, _) in self._param_specs.items()}, {k: s for k, (s, _) in self._buffer_specs.items()}
        self._param_specs, self._buffer_specs = {}, {}
        out = tuple(int(d) for d in self._build(shapes))
        new = {k: s for k, (s, _) in self._param_specs.items()}, {k: s for k, (s, _) in self._buffer_specs.items()}
        if new != old:  # a rebuild with other shapes drops stale parameters
            self.params, self.grads, self.buffers = {}, {}, {}
        self.input_shapes, self.output_shape = shapes, out
        return out

    def _build(self, shapes: list) -> tuple:
        """Subclasses: check ``shapes``, call add_param/add_buffer, return the output shape."""
        return shapes[0]

    def add_param(self, name: str, shape, init: str, regularize: bool = False):
        """Declare a trainable parameter; ``init`` is an initializer name (see numbacnn.init)."""
        self._param_specs[name] = (tuple(int(d) for d in shape), init)
        if regularize:
            self.regularized.add(name)
        else:
            self.regularized.discard(name)

    def add_buffer(self, name: str, shape, fill: float):
        """Declare non-trainable state saved in model files (e.g. batch-norm running stats)."""
        self._buffer_specs[name] = (tuple(int(d) for d in shape), float(fill))

    @property
    def param_shapes(self) -> dict:
        return {k: s for k, (s, _) in self._param_specs.items()}

    @property
    def buffer_shapes(self) -> dict:
        return {k: s for k, (s, _) in self._buffer_specs.items()}

    def count_params(self) -> int:
        return int(sum(np.prod(s, dtype=np.int64) for s in self.param_shapes.values()))

    def macs(self) -> int:
        """Multiply-adds of one forward pass for ONE sample in the layer's products (conv, dense); 0 elsewhere."""
        return 0

    def flops(self) -> int:
        """Floating-point operations of one forward pass for ONE sample (multiply-add = 2)."""
        return int(np.prod(self.output_shape, dtype=np.int64)) if self.output_shape else 0

    # ------------------------------------------------------------ parameters
    def init_params(self, rng: np.random.Generator, zeros: bool = False):
        """Create parameters on the host (seeded by ``rng``; zeros with ``zeros=True``, for weights loaded
        next), then move them to ``self.backend``."""
        if self.input_shapes is None:
            raise ValueError(f"{self.describe()}: build() must run before init_params()")
        params = {k: np.zeros(shape, np.float32) if zeros else initializers.initialize(init, shape, rng)
                  for k, (shape, init) in self._param_specs.items()}
        buffers = {k: np.full(shape, fill, dtype=np.float32) for k, (shape, fill) in self._buffer_specs.items()}
        self._set_host_state(params, buffers)

    def _set_host_state(self, params: dict, buffers: dict):
        put = self.backend.asarray if self.backend is not None else _host
        self.params = {k: put(_host(v)) for k, v in params.items()}
        self.grads = {k: put(np.zeros_like(_host(v))) for k, v in params.items()}
        self.buffers = {k: put(_host(v)) for k, v in buffers.items()}

    def set_backend(self, backend):
        """Move params, grads and buffers to ``backend`` (host arrays -> backend arrays)."""
        if backend is self.backend:
            return
        old = self.backend
        to_host = old.to_host if old is not None else _host
        for d in (self.params, self.grads, self.buffers):
            for k in d:
                d[k] = backend.asarray(_host(to_host(d[k])))
        self.backend = backend
        self.clear_cache()

    def clear_cache(self):
        """Drop what the last forward kept for the backward (subclasses extend)."""

    def host_state(self) -> dict:
        """{param or buffer name: host float32 copy}."""
        be = self.backend
        to_host = be.to_host if be is not None else _host
        out = {k: np.array(to_host(v), dtype=np.float32, copy=True) for k, v in self.params.items()}
        out.update({k: np.array(to_host(v), dtype=np.float32, copy=True) for k, v in self.buffers.items()})
        return out

    def __call__(self, inputs):
        """Keras' functional API: called on ``numbacnn.Input`` tensors (or other calls' results), records a
        node and returns its symbolic output (see ``numbacnn.keras``)."""
        from ..keras import call_layer
        return call_layer(self, inputs)

    def take_activation(self):
        """The activation layer this layer was given (Keras' ``activation="relu"``), which a graph adds as a
        node of its own after it; the layer forgets it.  None for most layers."""
        name = getattr(self, "activation", None)
        if name is None:
            return None
        from .activations import ACTIVATIONS
        self.activation = None
        return ACTIVATIONS[name](name=f"{self.name}_{name}" if self.name else None)

    def uses_input_stats(self, training: bool) -> bool:
        """Whether a forward with ``training`` would use its input's statistics in parts (``input_stats``)."""
        return False

    def get_random_state(self):
        """JSON-able state of the layer's random draws (dropout's seed and step), or None."""
        return None

    def set_random_state(self, state):
        """Restore ``get_random_state()``'s output."""

    # ------------------------------------------------------------ compute
    def forward(self, inputs: list, training: bool):  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def backward(self, dy) -> list:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__}.backward")

    def _need_forward(self, attr: str):
        v = getattr(self, attr, None)
        if v is None:
            raise ValueError(f"{self.describe()}: backward() called before forward()")
        return v
