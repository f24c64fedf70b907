"""Optimizers: SGD (momentum, Nesterov) and Adam, with L2 and L1 penalties.

The cost minimised is ``loss + weight_decay * ½‖W‖² + l1 * ‖W‖₁``, so each
penalised parameter's gradient gains ``weight_decay * W + l1 * sign(W)``
(PyTorch's ``weight_decay`` convention).  The penalties apply by default only
to the parameters a layer lists in ``layer.regularized`` (weights; not biases,
not batch-norm gamma/beta); ``regularize_all=True`` applies them to every
parameter.  Layers with ``trainable = False`` are skipped.

The update is the backend's ``sgd_update_many`` / ``adam_update_many`` (in place,
every parameter sharing the penalties -- and for Adam the step -- in one call: on a
GPU one launch per 16 parameters), and the optimizer state (momentum buffers, Adam moments) lives on
the model's backend: on a GPU nothing goes back to the host during training.
``state_dict()`` exports it as named host arrays (``"<layer>/<param>/<slot>"``)
for the model file and ``load_state_dict()`` brings it back; the update
formulas are those of ``kernels/reference.py`` (``sgd_update_ref``,
``adam_update_ref``), which match ``torch.optim.SGD`` and ``torch.optim.Adam``.
"""
from __future__ import annotations

import numpy as np

from .registry import Registry

OPTIMIZERS = Registry("optimizer", normalize=str.lower)


def _register(cls):
    return OPTIMIZERS.register(cls.__name__)(cls)


class Optimizer:
    """Base class: walks ``model.named_parameters()`` and keeps per-parameter state.

    Subclasses define ``slots`` (the names of their per-parameter buffers) and
    ``_update(be, items, weight_decay, l1)``, which updates every ``(param, grad, state)`` of ``items``
    (parameters with the same penalties and step).
    """

    slots: tuple = ()

    def __init__(self, lr=0.01, weight_decay=0.0, l1=0.0, regularize_all=False):
        for name, v in (("lr", lr), ("weight_decay", weight_decay), ("l1", l1)):
            if not np.isfinite(v) or v < 0:
                raise ValueError(f"{type(self).__name__} {name} must be a finite number >= 0, got {v!r}")
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.l1 = float(l1)
        self.regularize_all = bool(regularize_all)
        self.iterations = 0          # optimizer steps taken
        self.state: dict = {}        # "layer/param" -> {slot: backend array, "step": int}
        self._backend = None         # the backend the state arrays live on
        self._pending: dict = {}     # host arrays from load_state_dict, moved on first use

    # ------------------------------------------------------------ config
    def get_config(self) -> dict:
        return {"lr": self.lr, "weight_decay": self.weight_decay, "l1": self.l1,
                "regularize_all": self.regularize_all}

    # ------------------------------------------------------------ stepping
    def step(self, model) -> None:
        """Apply one update to every trainable parameter of ``model`` from its grads."""
        be = model.backend
        if self._backend is not None and be is not self._backend:
            self._move_state(be)
        self._backend = be
        self.iterations += 1
        groups: dict = {}
        for layer_name, param_name, param, grad, layer in model.named_parameters():
            if not getattr(layer, "trainable", True):
                continue
            key = f"{layer_name}/{param_name}"
            st = self.state.get(key)
            if st is None:
                st = self.state[key] = self._new_state(be, key, param)
            if self.regularize_all or param_name in getattr(layer, "regularized", ()):
                wd, l1 = self.weight_decay, self.l1
            else:
                wd, l1 = 0.0, 0.0
            st["step"] += 1
            groups.setdefault((wd, l1, st["step"]), []).append((param, grad, st))
        for (wd, l1, _), items in groups.items():
            self._update(be, items, wd, l1)

    def _new_state(self, be, key, param) -> dict:
        shape = tuple(int(s) for s in param.shape)
        if key in self._pending:
            saved = self._pending.pop(key)
            st = {"step": int(saved.get("step", 0))}
            for slot in self.slots:
                if slot not in saved:
                    raise ValueError(f"optimizer state for {key} has no {slot!r} buffer")
                a = np.asarray(saved[slot], dtype=np.float32)
                if a.shape != shape:
                    raise ValueError(f"optimizer state {key}/{slot} has shape {a.shape}, "
                                     f"the parameter has shape {shape}")
                st[slot] = be.asarray(a)
            return st
        st = {"step": 0}
        for slot in self.slots:
            st[slot] = be.zeros(shape)
        return st

    def _move_state(self, be) -> None:
        old = self._backend
        for st in self.state.values():
            for slot in self.slots:
                st[slot] = be.asarray(old.to_host(st[slot]))

    def _update(self, be, items, weight_decay, l1):  # pragma: no cover - abstract
        raise NotImplementedError

    # ------------------------------------------------------------ state export
    def state_dict(self) -> dict:
        """Everything needed to resume, as host values.

        ``{"class_name", "config" (hyper-parameters), "iterations",
        "arrays": {"<layer>/<param>/<slot>": float32 array, "<layer>/<param>/step": int64 array}}``
        """
        arrays = {}
        for key, st in self.state.items():
            for slot in self.slots:
                arrays[f"{key}/{slot}"] = np.array(self._backend.to_host(st[slot]), dtype=np.float32)
            arrays[f"{key}/step"] = np.array(st["step"], dtype=np.int64)
        for key, saved in self._pending.items():   # loaded but not used yet: keep them
            for name, a in saved.items():
                arrays[f"{key}/{name}"] = np.asarray(a)
        return {"class_name": type(self).__name__, "config": self.get_config(),
                "iterations": int(self.iterations), "arrays": arrays}

    def load_state_dict(self, state: dict) -> None:
        """Restore what ``state_dict`` exported.  Arrays reach the backend on the next ``step``."""
        if state.get("class_name", type(self).__name__) != type(self).__name__:
            raise ValueError(f"optimizer state is for {state.get('class_name')}, not {type(self).__name__}")
        for k, v in state.get("config", {}).items():
            if k in self.get_config():
                setattr(self, k, type(self.get_config()[k])(v))
        self.iterations = int(state.get("iterations", 0))
        self.state, self._backend, self._pending = {}, None, {}
        for name, a in state.get("arrays", {}).items():
            key, _, slot = name.rpartition("/")
            if not key or (slot != "step" and slot not in self.slots):
                raise ValueError(f"optimizer state entry {name!r} is not <layer>/<param>/<slot> "
                                 f"with slot in {self.slots + ('step',)}")
            self._pending.setdefault(key, {})[slot] = a

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


@_register
class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum, as ``torch.optim.SGD``.

    v = momentum * v + g;  W -= lr * (g + momentum * v if nesterov else v)
    """

    slots = ("velocity",)

    def __init__(self, lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0, l1=0.0, regularize_all=False):
        super().__init__(lr, weight_decay, l1, regularize_all)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"SGD momentum must be in [0, 1), got {momentum!r}")
        if nesterov and momentum == 0.0:
            raise ValueError("SGD nesterov=True needs a momentum > 0")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}

    def _update(self, be, items, weight_decay, l1):
        params, grads, states = zip(*items)
        be.sgd_update_many(params, grads, [st["velocity"] for st in states], self.lr, self.momentum, self.nesterov,
                           weight_decay, l1)


@_register
class Adam(Optimizer):
    """Adam (Kingma & Ba) with bias correction, as ``torch.optim.Adam`` (L2 added to the gradient).

    Each parameter counts its own steps (a layer unfrozen later starts its bias
    correction afresh, as in PyTorch).
    """

    slots = ("m", "v")

    def __init__(self, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, l1=0.0,
                 regularize_all=False):
        super().__init__(lr, weight_decay, l1, regularize_all)
        for name, b in (("beta1", beta1), ("beta2", beta2)):
            if not 0.0 <= b < 1.0:
                raise ValueError(f"Adam {name} must be in [0, 1), got {b!r}")
        if not eps > 0:
            raise ValueError(f"Adam eps must be > 0, got {eps!r}")
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)

    def get_config(self):
        return {**super().get_config(), "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}

    def _update(self, be, items, weight_decay, l1):
        params, grads, states = zip(*items)
        be.adam_update_many(params, grads, [st["m"] for st in states], [st["v"] for st in states],
                            states[0]["step"], self.lr, self.beta1, self.beta2, self.eps, weight_decay, l1)


def get_optimizer(name: str, **kwargs) -> Optimizer:
    """An optimizer by (case-insensitive) class name: ``sgd`` or ``adam``."""
    return OPTIMIZERS.lookup(name)(**kwargs)


def optimizer_from_state(state: dict) -> Optimizer:
    """Rebuild an optimizer, hyper-parameters and buffers, from ``Optimizer.state_dict()`` output."""
    opt = get_optimizer(state["class_name"], **state.get("config", {}))
    opt.load_state_dict(state)
    return opt


__all__ = ["Optimizer", "SGD", "Adam", "get_optimizer", "optimizer_from_state", "OPTIMIZERS"]
