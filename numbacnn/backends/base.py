"""The Backend: the public, stable kernel API, generated from the op table (``numbacnn.ops``).

Every public op method (``conv2d_forward``, ``batch_norm_backward``,
``sgd_update``, ...) is made here from its ``ops.Method``: the method has the
signature and docstring of the op's check function, validates every argument
(a shape or argument that does not fit raises a ``ValueError`` naming the
argument and the shapes, before any kernel runs) and then calls the backend's
kernel of the same name from its kernel table ``k`` -- or, where the table has
no kernel of that name, the method's ``compose`` (e.g. ``conv2d_backward`` from
the single-direction kernels).  Subclasses (``ReferenceBackend``,
``CPUBackend``, ``CUDABackend``) only supply ``k`` and the array helpers.
Layout: NCHW float32, conv weights OIHW, dense weights (out, in).

The ops, their arguments and shapes: ``numbacnn/ops.py``, or ``help(Backend)``.

Array helpers: ``asarray`` (host -> backend), ``to_host`` (backend -> numpy),
``readback`` (backend -> numpy without waiting, until ``.get()``), ``zeros``,
``add_inplace`` (a += b), ``copy``, ``synchronize``.
"""
from __future__ import annotations

import functools
import inspect
from types import SimpleNamespace

import numpy as np

from .. import ops


class Backend:
    """Base class: the array helpers' interface and ``run`` (see the module docstring)."""

    name = "base"
    #: the kernel table: any namespace with one function per kernel (``conv2d_forward``, ...)
    k = None
    #: the floating-point dtype of the backend's arrays (the float64 test oracle overrides it)
    float_dtype = np.float32

    # ------------------------------------------------------------ arrays
    def asarray(self, a, dtype=np.float32):  # pragma: no cover - abstract
        raise NotImplementedError

    def to_host(self, a) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def zeros(self, shape, dtype=np.float32):  # pragma: no cover - abstract
        raise NotImplementedError

    def add_inplace(self, a, b):  # pragma: no cover - abstract
        """a += b (same shape); returns a."""
        raise NotImplementedError

    def copy(self, a):  # pragma: no cover - abstract
        raise NotImplementedError

    def synchronize(self):
        """Wait for queued work (a no-op on the CPU)."""

    def readback(self, a):
        """``a`` on its way to the host: ``.get()`` returns it as a numpy array.  On a GPU the copy is queued
        without waiting, and one synchronisation serves every readback queued before it."""
        return Ready(self.to_host(a))

    # ------------------------------------------------------------ ops
    def run(self, method: ops.Method, args: tuple):
        """Call ``method``'s kernel with its checked arguments: the kernel of the same name, else its composition."""
        kernel = getattr(self.k, method.name, None)
        if kernel is not None:
            return kernel(*args)
        if method.compose is None:
            raise NotImplementedError(f"backend {self.name!r} has no kernel {method.name!r}")
        return method.compose(self.k, *args)


class Ready:
    """A host value already there (``Backend.readback`` off the GPU)."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def get(self):
        return self.value


def _public(method: ops.Method):
    """The Backend method for ``method``: the check function's signature and docstring, then ``run``."""
    @functools.wraps(method.check)
    def call(self, *args, **kwargs):
        if self.float_dtype is np.float32:
            return self.run(method, method.check(*args, **kwargs))
        with ops.float_dtype(self.float_dtype):
            return self.run(method, method.check(*args, **kwargs))
    sig = inspect.signature(method.check)
    call.__signature__ = sig.replace(parameters=[inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
                                                 *sig.parameters.values()])
    del call.__wrapped__
    call.__name__, call.__qualname__ = method.name, f"Backend.{method.name}"
    return call


for _m in ops.methods().values():
    setattr(Backend, _m.name, _public(_m))


def kernel_table(package: str) -> SimpleNamespace:
    """The kernels of ``numbacnn.kernels.<package>.<family>`` for every family of the op table, by name
    (each module's ``__all__``)."""
    import importlib
    table = {}
    for family in ops.families():
        module = importlib.import_module(f"numbacnn.kernels.{package}.{family}")
        table.update({name: getattr(module, name) for name in module.__all__})
    return SimpleNamespace(**table)
