"""LeNet-5 (LeCun et al. 1998) with ReLU and max pooling."""
from __future__ import annotations

from ..graph import Model
from ..layers import Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU


def lenet5(num_classes: int = 10, input_shape=(1, 28, 28), dropout: float = 0.0) -> Model:
    """conv5x5(6, pad 2)-relu-pool-conv5x5(16)-relu-pool-dense120-relu-dense84-relu-dense(num_classes).

    At (1, 28, 28) and 10 classes: 156 + 2,416 + 48,120 + 10,164 + 850 = 61,706 parameters.
    ``dropout`` > 0 adds a Dropout of that rate after each hidden dense layer (drop1, drop2).
    """
    def drop(name):
        return [Dropout(dropout, name=name)] if dropout else []

    return Model.sequential("lenet5", input_shape, [
        Conv2D(6, 5, padding=2, name="conv1"), ReLU(name="relu1"), MaxPool2D(2, name="pool1"),
        Conv2D(16, 5, name="conv2"), ReLU(name="relu2"), MaxPool2D(2, name="pool2"),
        Flatten(name="flatten"),
        Dense(120, name="fc1"), ReLU(name="relu3"), *drop("drop1"),
        Dense(84, name="fc2"), ReLU(name="relu4"), *drop("drop2"),
        Dense(num_classes, kernel_initializer="glorot_uniform", name="fc3"),
    ])
