"""Architectures from documents that may be hostile: ordered, shape-checked and sized before anything exists.

``architecture(config)`` turns a ``model_config`` document (a model file's, or a
``.json`` file's: ``read_architecture``) into an unbuilt ``Model`` whose shapes
are inferred and whose parameters, and activations for one image, are checked
against ``limits.max_bytes()`` before a single array is allocated: filters=10^9,
units=10^12 or a huge input shape is one error naming the limit, not a
MemoryError.  Nodes are put in topological order first (in linear time), so a
document of many nodes in reverse order builds in one pass; more than
``MAX_NODES`` nodes are refused.
"""
from __future__ import annotations

import heapq
import json

from . import limits

MAX_NODES = 10_000          # an architecture with more nodes is refused before it is built (ResNet-152: 500)
MAX_JSON_BYTES = 64 << 20   # a .json architecture larger than this is refused unread


def _in_order(config):
    """``config`` with its nodes in topological order (document order kept where it is one), so that
    ``Model.from_config`` adds them in one pass; malformed documents are left to it to report."""
    from ..graph import INPUT
    try:
        nodes = list(config["nodes"])
        names = [n["name"] for n in nodes]
        inputs = [set(n["inputs"]) - {INPUT} for n in nodes]
    except (KeyError, TypeError):
        return config
    if len(nodes) > MAX_NODES:
        raise ValueError(f"model_config has {len(nodes):,} nodes, more than the {MAX_NODES:,} a model may have")
    if not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
        return config
    waiting, left = {}, [len(ins) for ins in inputs]
    for i, ins in enumerate(inputs):
        for name in ins:
            waiting.setdefault(name, []).append(i)
    ready = [i for i, k in enumerate(left) if k == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        i = heapq.heappop(ready)
        order.append(nodes[i])
        for j in waiting.get(names[i], ()):
            left[j] -= 1
            if left[j] == 0:
                heapq.heappush(ready, j)
    if len(order) < len(nodes):
        stuck = [names[i] for i, k in enumerate(left) if k][:5]
        raise ValueError(f"invalid model_config: unknown inputs or a cycle among nodes {stuck}")
    return {**config, "nodes": order}


def architecture(config):
    """An unbuilt Model from a ``model_config`` document, its shapes inferred and its size checked against
    ``limits.max_bytes()`` before any array exists.  ValueError says what is wrong."""
    from ..graph import Model
    try:
        model = Model.from_config(_in_order(config))
    except (ValueError, KeyError, TypeError, OverflowError, RecursionError) as exc:
        raise ValueError(f"invalid model_config: {exc}") from None
    try:
        limits.check_model_size(model)
    except (KeyError, TypeError, OverflowError, ZeroDivisionError) as exc:
        raise ValueError(f"invalid model_config: {type(exc).__name__}: {exc}") from None
    return model


def expected_weights(model) -> dict:
    """{layer: {param or buffer name: shape}} of a model whose shapes are inferred (what get_weights gives)."""
    out = {}
    for name, layer in model.layers.items():
        shapes = {**layer.param_shapes, **layer.buffer_shapes}
        if shapes:
            out[name] = shapes
    return out


def read_architecture(path):
    """``architecture`` of a ``.json`` file; ValueError names the file."""
    size = limits.regular_file(path).st_size
    if size > MAX_JSON_BYTES:
        raise ValueError(f"{path}: {size:,} bytes, more than a model architecture may take "
                         f"({MAX_JSON_BYTES:,})")
    try:
        with open(path, "rb") as f:
            config = json.loads(f.read(MAX_JSON_BYTES))
    except OSError as exc:
        raise ValueError(f"{path}: cannot read model config ({exc.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ValueError(f"{path}: not valid JSON ({str(exc)[:120]})") from None
    try:
        return architecture(config)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


__all__ = ["architecture", "read_architecture", "expected_weights", "MAX_NODES"]
