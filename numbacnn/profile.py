"""Per-layer timing through the executor's hooks (``numbacnn time``, the benchmarks)."""
from __future__ import annotations

import time

import numpy as np

from .losses import get_loss


class LayerTimer:
    """A ``Model.forward``/``backward`` hook that records, per node, the seconds since the previous node ended.

    Each call synchronises the backend first, so on a GPU a node's time is its kernels' time.
    """

    def __init__(self, backend):
        self.backend, self.times, self._last = backend, {}, None

    def start(self):
        self.backend.synchronize()
        self._last = time.perf_counter()

    def __call__(self, name, _output):
        self.backend.synchronize()
        now = time.perf_counter()
        self.times.setdefault(name, []).append(now - self._last)
        self._last = now


def time_layers(model, batch_size: int, iterations: int, seed: int = 0):
    """({node: [forward seconds]}, {node: [backward seconds]}) over ``iterations`` training passes on
    random data, after one untimed warm-up pass (which compiles the kernels)."""
    be, rng = model.backend, np.random.default_rng(seed)
    x = be.asarray(rng.random((batch_size,) + tuple(model.input_shape), dtype=np.float32))
    logits = model.logits_node()
    k = int(np.prod(model.output_shapes[logits]))
    y = be.asarray(rng.integers(0, k, batch_size), dtype=np.int64)
    loss_fn = get_loss("cross_entropy")
    fwd, bwd = LayerTimer(be), LayerTimer(be)
    for it in range(iterations + 1):
        if it == 1:
            fwd.times, bwd.times = {}, {}
        fwd.start()
        out = model.forward(x, training=True, until=logits, hook=fwd)
        _, dout, _ = loss_fn(be, out, y)
        bwd.start()
        model.backward(dout, start=logits, hook=bwd, input_grad=False)   # as in training: none for the images
    order = model.plan(logits)
    return {n: fwd.times[n] for n in order}, {n: bwd.times[n] for n in order}


__all__ = ["LayerTimer", "time_layers"]
