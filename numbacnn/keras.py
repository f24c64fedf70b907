"""A Keras-style Python API over numbacnn's graph, layers and training core (not a second engine).

    import numbacnn as nc
    model = nc.Sequential([nc.layers.Conv2D(6, 5, padding="same", activation="relu", input_shape=(1, 28, 28)),
                           nc.layers.MaxPooling2D(2), nc.layers.Flatten(), nc.layers.Dense(10)])
    model.compile(optimizer=nc.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(x, y, epochs=4, batch_size=64, validation_split=0.1,
                        callbacks=[nc.callbacks.EarlyStopping(patience=2, restore_best_weights=True)])
    model.evaluate(x_test, y_test); model.predict(x_test); model.summary(); model.save("m.h5")
    model = nc.load_model("m.h5")

The functional form builds any DAG, with several outputs::

    inputs = nc.Input(shape=(3, 32, 32))
    h = nc.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    main = nc.layers.Dense(10)(nc.layers.Flatten()(h))
    aux = nc.layers.Dense(10)(nc.layers.Flatten()(nc.layers.MaxPooling2D(2)(h)))
    model = nc.Model(inputs, [main, aux])
    model.compile("adam", "sparse_categorical_crossentropy", loss_weights=[1.0, 0.3])

Arrays are (N, C, H, W), numbacnn's layout (a channels-last array gets an error saying so). A model with
several outputs trains on the weighted sum of their losses (the first output is the main one; the others
are auxiliary outputs of the graph) and ``predict`` returns one array per output.  Differences from Keras,
on purpose: ``validation_split`` holds out a seeded, class-stratified random part (Keras takes the last
samples); batch norm's ``momentum`` is PyTorch's (0.1 = a tenth of the batch statistics).  Model files
are the CLI's: ``numbacnn evaluate m.h5`` reads what ``model.save`` writes.
"""
from __future__ import annotations

import numpy as np

from .graph import INPUT
from .graph import Model as Graph

#: Keras' losses by their names in Keras -> numbacnn's
LOSS_NAMES = {"sparse_categorical_crossentropy": "cross_entropy", "categorical_crossentropy": "cross_entropy",
              "mse": "mse", "mean_squared_error": "mse", "mae": "mae", "mean_absolute_error": "mae",
              "huber": "huber", "cross_entropy": "cross_entropy"}
METRICS = ("accuracy",)


# ====================================================================== symbolic tensors (functional API)
class KerasTensor:
    """The symbolic output of a layer called on symbolic inputs: ``layer(x)`` records a node."""

    def __init__(self, shape, layer=None, inputs=()):
        self.shape, self.layer, self.inputs = tuple(shape) if shape else None, layer, list(inputs)

    def __repr__(self):
        return f"KerasTensor(shape={self.shape}, layer={self.layer.describe() if self.layer else 'input'})"


def Input(shape, name=None):  # noqa: N802  (Keras' name)
    """A symbolic input of per-sample ``shape`` (C, H, W) or (F,)."""
    t = KerasTensor(shape)
    t.name = name
    return t


def call_layer(layer, inputs):
    """What ``layer(inputs)`` does on KerasTensors: a new KerasTensor fed by them."""
    xs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    if not all(isinstance(x, KerasTensor) for x in xs):
        raise ValueError(f"{layer.describe()}: calling a layer takes KerasTensors (from nc.Input or another layer "
                         f"call), got {[type(x).__name__ for x in xs]}")
    return KerasTensor(None, layer, xs)


def _graph_from_tensors(inputs, outputs, name):
    """A numbacnn graph Model from the functional API's tensors (topological order, shared input)."""
    if isinstance(inputs, (list, tuple)):
        if len(inputs) != 1:
            raise ValueError("a numbacnn model has exactly one input")
        inputs = inputs[0]
    graph, names = Graph(name, inputs.shape), {id(inputs): INPUT}

    def visit(t):
        if id(t) in names:
            return names[id(t)]
        if t.layer is None:
            raise ValueError("an output depends on an Input that is not the model's input")
        srcs = [visit(x) for x in t.inputs]
        names[id(t)] = graph.add(t.layer, srcs)
        return names[id(t)]

    outs = [visit(o) for o in (outputs if isinstance(outputs, (list, tuple)) else [outputs])]
    return graph, outs


# ====================================================================== the model
class History:
    """What ``fit`` returns: ``history`` {metric: [per epoch]} and ``epoch`` [0, 1, ...] (Keras' History)."""

    def __init__(self, entries):
        keys = [k for k in ("loss", "accuracy", "val_loss", "val_accuracy", "lr")
                if any(e.get(k) is not None for e in entries)]
        self.history = {k: [e.get(k) for e in entries] for k in keys}
        self.epoch = [e["epoch"] - 1 for e in entries]


class Model:
    """A Keras-style model: a numbacnn graph with compile/fit/evaluate/predict/summary/save.

    ``Model(inputs, outputs)`` builds it from the functional API's tensors; ``Sequential`` from a list.
    ``graph`` is the underlying ``numbacnn.graph.Model``.
    """

    def __init__(self, inputs=None, outputs=None, name="model", graph=None):
        if graph is None:
            graph, outs = _graph_from_tensors(inputs, outputs, name)
            self._set_outputs(graph, outs)
        self.graph, self.optimizer, self.loss, self.metrics, self.backend = graph, None, None, [], "cpu"

    @staticmethod
    def _set_outputs(graph, outs):
        graph.output = outs[0]
        for n in outs[1:]:
            graph.add_aux_output(n, 1.0)

    @property
    def outputs(self) -> list:
        return [self.graph.output, *self.graph.aux_outputs]

    @property
    def layers(self) -> list:
        return list(self.graph.layers.values())

    def _built(self, x=None):
        if self.graph.backend is None:
            if self.graph.input_shape is None:
                if x is None:
                    raise ValueError("the model has no input shape yet: give input_shape to its first layer, or "
                                     "fit or call it on data first")
                self.graph.input_shape = tuple(int(d) for d in np.shape(x)[1:])
            self.graph.build(self.backend, seed=getattr(self, "seed", 0))
        return self.graph

    # ------------------------------------------------------------ compile, fit, evaluate, predict
    def compile(self, optimizer="adam", loss="sparse_categorical_crossentropy", metrics=None, loss_weights=None,
                backend="cpu", seed=0):
        """optimizer: "adam", "sgd" or an ``nc.optimizers`` object; loss: a Keras loss name (see ``LOSS_NAMES``);
        metrics: [] or ["accuracy"]; loss_weights: one weight per output (list) or {output node: weight}."""
        from .optim import get_optimizer
        if loss not in LOSS_NAMES:
            raise ValueError(f"compile: unknown loss {loss!r}; known: {', '.join(LOSS_NAMES)}")
        bad = [m for m in (metrics or []) if m not in METRICS]
        if bad:
            raise ValueError(f"compile: unknown metric(s) {bad}; known: {', '.join(METRICS)}")
        self.optimizer = get_optimizer(optimizer) if isinstance(optimizer, str) else optimizer
        self.loss, self.metrics, self.backend, self.seed = LOSS_NAMES[loss], list(metrics or []), backend, seed
        if loss_weights is not None:
            self._weight_outputs(loss_weights)
        return self

    def _weight_outputs(self, loss_weights):
        outs = self.outputs
        weights = dict(zip(outs, loss_weights)) if isinstance(loss_weights, (list, tuple)) else dict(loss_weights)
        if set(weights) - set(outs) or (isinstance(loss_weights, (list, tuple)) and len(loss_weights) != len(outs)):
            raise ValueError(f"compile: loss_weights must give one weight per output {outs}, got {loss_weights!r}")
        if weights.get(outs[0], 1.0) != 1.0:
            raise ValueError(f"compile: the first output {outs[0]!r} is the main one: its loss weight is 1")
        for node in outs[1:]:
            self.graph.add_aux_output(node, weights.get(node, 1.0))

    def _require_compiled(self, what):
        if self.loss is None:
            raise ValueError(f"{what} needs a compiled model: call model.compile(optimizer, loss) first")

    def _targets(self, y):
        y = np.asarray(y)
        if self.loss == "cross_entropy" and y.ndim == 2:         # categorical_crossentropy: one-hot targets
            y = y.argmax(axis=1)
        return y

    def fit(self, x, y, epochs=1, batch_size=32, validation_split=0.0, validation_data=None, callbacks=None,
            shuffle=True, verbose=1, seed=0, initial_epoch=0):
        """Train; returns a ``History``.  x : (N, C, H, W) (or (N, F)); y : labels (N,) or targets."""
        from .progress import ProgressBar
        from .train import Trainer, validation_split as split
        self._require_compiled("fit")
        graph = self._built(x)
        x, y = np.asarray(x, np.float32), self._targets(y)
        if validation_split:
            x, y, xv, yv = split(x, y, validation_split, seed)
            validation_data = (xv, yv)
        elif validation_data is not None:
            validation_data = (np.asarray(validation_data[0], np.float32), self._targets(validation_data[1]))
        cbs = list(callbacks or []) + ([ProgressBar()] if verbose else [])
        trainer = Trainer(graph, self.optimizer, None, self.loss, batch_size, None, seed, shuffle, cbs)
        trainer.epoch = int(initial_epoch)
        return History(trainer.fit(x, y, int(epochs), validation_data))

    def evaluate(self, x, y, batch_size=256, verbose=0):
        """The loss, or [loss, accuracy] when compiled with metrics=["accuracy"] (Keras' return value)."""
        from .losses import get_loss
        from .train import _evaluate, check_data
        self._require_compiled("evaluate")
        graph = self._built(x)
        loss, acc, _ = _evaluate(graph, check_data("evaluate", x, y, graph.input_shape), self._targets(y),
                                 int(batch_size), get_loss(self.loss))
        return [loss, acc] if self.metrics else loss

    def predict(self, x, batch_size=256, verbose=0):
        """The outputs (N, ...) for x, in evaluation mode; a list of arrays for a model with several outputs."""
        from .train import check_data
        graph = self._built(x)
        x = check_data("predict", x, None, graph.input_shape)
        be, outs = graph.backend, self.outputs
        parts = [graph.forward(be.asarray(x[s:s + batch_size]), until=outs, inference=True)
                 for s in range(0, len(x), int(batch_size))]
        arrays = [np.concatenate([np.array(be.to_host(p[i])) for p in parts]) for i in range(len(outs))]
        return arrays[0] if len(arrays) == 1 else arrays

    __call__ = predict

    # ------------------------------------------------------------ inspection, files
    def summary(self, batch_size=1, print_fn=print):
        from .summary import summary_text
        graph = self.graph
        if not graph.output_shapes:
            graph.infer_shapes()
        print_fn(summary_text(graph, batch_size, self.optimizer or "adam"))

    def get_weights(self) -> list:
        """Every parameter and buffer as a host array, layer by layer (Keras' order: in the graph's order)."""
        return [a for state in self.graph.get_weights().values() for a in state.values()]

    def set_weights(self, arrays):
        state = self.graph.get_weights()
        it = iter(arrays)
        self.graph.set_weights({layer: {name: next(it) for name in names} for layer, names in state.items()})

    def save(self, path):
        """The model file of ``numbacnn train``: architecture, weights, optimizer state, compile settings."""
        from .io.hdf5 import save_model
        meta = {"keras": {"loss": self.loss, "metrics": self.metrics}} if self.loss else {}
        save_model(path, self._built(), self.optimizer if self.optimizer and self.optimizer.state else None,
                   metadata=meta)


class Sequential(Model):
    """A stack of layers: ``Sequential([...])`` or ``add`` one by one.  The input shape comes from the first
    layer's ``input_shape`` (or an ``Input``), else from the first data the model sees."""

    def __init__(self, layers=(), name="sequential"):
        self.graph, self.optimizer, self.loss, self.metrics, self.backend = Graph(name, None), None, None, [], "cpu"
        for layer in layers:
            self.add(layer)

    def add(self, layer):
        if isinstance(layer, KerasTensor):
            self.graph.input_shape = layer.shape
            return
        if self.graph.output is None and self.graph.input_shape is None and getattr(layer, "input_shape", None):
            self.graph.input_shape = tuple(layer.input_shape)
        self.graph.add(layer)


def load_model(path, backend="cpu") -> Model:
    """A Keras-style model from any numbacnn model file (``model.save`` or ``numbacnn train``); compiled with
    the saved optimizer and loss when the file has them."""
    from .io.hdf5 import load_model as load
    from .optim import optimizer_from_state
    mf = load(path, backend=backend)
    model = Model(graph=mf.model)
    model.backend = backend
    compiled = mf.metadata.get("keras") or {}
    loss = compiled.get("loss") or (mf.metadata.get("train_options") or {}).get("loss")
    if loss or mf.optimizer_state:
        model.optimizer = optimizer_from_state(mf.optimizer_state) if mf.optimizer_state else None
        model.loss, model.metrics = loss or "cross_entropy", compiled.get("metrics", ["accuracy"])
    return model


__all__ = ["Model", "Sequential", "Input", "load_model", "History", "KerasTensor", "LOSS_NAMES"]
