"""The text of ``numbacnn summary`` and ``Model.summary()`` (Keras-style API): layers, costs, memory."""
from __future__ import annotations

import numpy as np


def shape_text(shape) -> str:
    return "(" + ", ".join(str(int(s)) for s in shape) + ")"


def table(rows, right=()):
    """Lines of a text table whose first row is the header; columns in ``right`` are right-aligned."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
            for r in rows]


def mib(n_bytes) -> str:
    return f"{n_bytes / 2 ** 20:,.2f} MiB"


def memory_lines(model, rows, batch_size, optimizer) -> list:
    """torchinfo-style totals: parameters, gradients, optimizer state, activations, for one training step.
    ``optimizer``: "sgd" (one buffer per parameter), "adam" (two) or an optimizer object."""
    params = sum(r["params"] for r in rows) * 4
    trainable = model.count_params()[1] * 4
    if isinstance(optimizer, str):
        slots = {"sgd": 1, "adam": 2}[optimizer]
    else:
        slots, optimizer = len(optimizer.slots), type(optimizer).__name__
    acts = sum(int(np.prod(r["output_shape"])) for r in rows) * batch_size * 4
    inputs = int(np.prod(model.input_shape)) * batch_size * 4
    total = inputs + params + trainable + slots * trainable + 2 * acts
    return [f"Input size (batch {batch_size}): {mib(inputs)}",
            f"Parameters: {mib(params)}; their gradients: {mib(trainable)}; {optimizer} state "
            f"({slots} buffer{'s' if slots > 1 else ''} per parameter): {mib(slots * trainable)}",
            f"Activations kept for the backward pass: {mib(acts)} (forward + backward pass: {mib(2 * acts)})",
            f"Estimated training memory: {mib(total)}; inference (parameters + largest activations): "
            f"{mib(params + inputs + 2 * max(int(np.prod(r['output_shape'])) for r in rows) * batch_size * 4)}"]


def summary_text(model, batch_size: int = 1, optimizer: str = "adam") -> str:
    """Per layer: output shape, inputs, parameters, multiply-adds, activation memory at ``batch_size``; then the
    totals and the memory of one training step with ``optimizer`` (sgd: one buffer per parameter, adam: two)."""
    rows = model.summary_rows()
    frozen = {n for n, layer in model.layers.items() if not layer.trainable}
    lines = table([("Layer (type)", "Output shape", "Inputs", "Params", "Mult-adds", "Activations")] + [
        (f"{r['name']} ({r['type']})" + (" [frozen]" if r["name"] in frozen else "") + (" [aux]" if r["aux"] else ""),
         shape_text(r["output_shape"]), ", ".join(r["inputs"]), f"{r['params']:,}", f"{r['macs']:,}",
         mib(int(np.prod(r["output_shape"])) * batch_size * 4)) for r in rows], right=(3, 4, 5))
    total, trainable = model.count_params()
    rule = "-" * len(lines[0])
    macs, flops = sum(r["macs"] for r in rows), sum(r["flops"] for r in rows)
    out = [f'Model "{model.name}"  input {shape_text(model.input_shape)}', rule, lines[0], rule.replace("-", "="),
           *lines[1:], rule.replace("-", "="), f"Total params: {total:,}", f"Trainable params: {trainable:,}",
           f"Frozen params: {total - trainable:,}",
           f"Mult-adds per image (forward): {macs:,} ({macs / 1e9:,.2f} G); FLOPs {flops:,}"]
    if model.aux_outputs:
        out.append("Auxiliary outputs (training only, [aux] layers): "
                   + ", ".join(f"{n} (loss weight {w:g})" for n, w in model.aux_outputs.items()))
    return "\n".join(out + memory_lines(model, rows, batch_size, optimizer))


__all__ = ["summary_text", "table", "shape_text", "mib", "memory_lines"]
