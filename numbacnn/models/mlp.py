"""Dense networks for features (and flattened images): a linear model and a multilayer perceptron.

``linear`` on polynomial features is the course's polynomial fit; with ``--weight-decay`` (L2) it is ridge
regression, with ``--l1`` lasso.
"""
from __future__ import annotations

from ..graph import Model
from ..layers import Dense, Dropout, Flatten, ReLU


def linear(num_classes: int = 10, input_shape=(12,)) -> Model:
    """y = x W^T + b: one Dense layer (after a Flatten for image inputs); ``num_classes`` outputs."""
    layers = [Flatten(name="flatten")] if len(input_shape) > 1 else []
    return Model.sequential("linear", input_shape, layers + [
        Dense(num_classes, kernel_initializer="glorot_uniform", name="fc")])


def mlp(num_classes: int = 10, input_shape=(12,), hidden=(64, 64), dropout: float = 0.0) -> Model:
    """Dense-ReLU layers of ``hidden`` widths (after a Flatten for image inputs), then Dense(num_classes)."""
    layers = [Flatten(name="flatten")] if len(input_shape) > 1 else []
    for i, width in enumerate(hidden, 1):
        layers += [Dense(int(width), name=f"fc{i}"), ReLU(name=f"relu{i}")]
        if dropout:
            layers.append(Dropout(dropout, name=f"drop{i}"))
    layers.append(Dense(num_classes, kernel_initializer="glorot_uniform", name=f"fc{len(hidden) + 1}"))
    return Model.sequential("mlp", input_shape, layers)
