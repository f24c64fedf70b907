"""The one registry helper: name -> object tables with one lookup error style.

Every family that is looked up by name uses it: layers (by class name, for
model configs), losses, optimizers, schedules, the model zoo, ONNX mappings
(by layer name and by ONNX op type) and the PyTorch twins of layers::

    LOSSES = Registry("loss", normalize=str.lower, aliases={"mse": "mean_squared_error"})

    @LOSSES.register("cross_entropy")
    class SoftmaxCrossEntropy: ...

    LOSSES.get("Cross_Entropy")   # the class; an unknown name raises ValueError listing the known ones
"""
from __future__ import annotations


class Registry(dict):
    """A dict of registered objects with ``register`` (a decorator) and ``get`` (a lookup with a clear error)."""

    def __init__(self, kind: str, normalize=None, aliases=None):
        super().__init__()
        self.kind, self.normalize = kind, normalize or (lambda name: name)
        self.aliases = {self.normalize(k): v for k, v in (aliases or {}).items()}

    def register(self, name=None):
        """Decorator: register the object under ``name`` (default: its ``__name__``); a second, different
        object under the same name is an error."""
        def deco(obj):
            key = self.normalize(name or obj.__name__)
            if key in self and self[key] is not obj:
                raise ValueError(f"{self.kind} {key!r} is registered twice")
            self[key] = obj
            return obj
        return deco

    def key(self, name) -> str:
        key = self.normalize(str(name))
        return self.aliases.get(key, key)

    def get(self, name, default=None):
        """The object registered as ``name`` (aliases and normalisation applied), else ``default``."""
        return super().get(self.key(name), default)

    def lookup(self, name):
        """Like ``get``, but an unknown name raises a ValueError naming the known ones."""
        obj = self.get(name)
        if obj is None:
            raise ValueError(f"unknown {self.kind} {name!r}; known: {', '.join(sorted(self))}")
        return obj




# ---------------------------------------------------------------- backends by name
_BACKEND_FACTORY: list = []


def provide_backends(get_backend):
    """Called once by ``numbacnn.backends``: how a backend name ("cpu", "cuda", ...) becomes a Backend."""
    _BACKEND_FACTORY[:] = [get_backend]


def resolve_backend(backend):
    """A Backend object as given, or the backend of that name (so the graph and the layers, which are
    handed Backend objects, never import a backend module)."""
    if not isinstance(backend, str):
        return backend
    if not _BACKEND_FACTORY:
        raise RuntimeError("no backends are registered: import numbacnn (or numbacnn.backends) first")
    return _BACKEND_FACTORY[0](backend)


__all__ = ["Registry", "provide_backends", "resolve_backend"]
