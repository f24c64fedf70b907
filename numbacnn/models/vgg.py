"""VGG with batch norm for 32x32 images (Simonyan & Zisserman 2014; the common CIFAR variant)."""
from __future__ import annotations

from ..graph import Model
from ..layers import BatchNorm, Conv2D, Dense, Flatten, MaxPool2D, ReLU

#: channels per 3x3 conv, "M" a 2x2 max pool (torchvision's configurations A, B, D, E)
CONFIGS = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


def vgg(num_classes: int = 10, input_shape=(3, 32, 32), depth: int = 11, width: float = 1.0) -> Model:
    """VGG-``depth`` (conv3x3-BN-ReLU blocks, five 2x2 pools) then one Dense(num_classes).

    ``width`` scales every channel count (0.25 gives a quick CPU-sized net).
    At 32x32, the five pools leave 1x1, so the classifier sees 512*width features.
    """
    if depth not in CONFIGS:
        raise ValueError(f"vgg depth must be one of {sorted(CONFIGS)}, got {depth!r}")
    if not width > 0:
        raise ValueError(f"vgg width must be > 0, got {width!r}")
    layers, i, p = [], 0, 0
    for v in CONFIGS[depth]:
        if v == "M":
            p += 1
            layers.append(MaxPool2D(2, name=f"pool{p}"))
        else:
            i += 1
            layers += [Conv2D(max(1, round(v * width)), 3, padding=1, name=f"conv{i}"),
                       BatchNorm(name=f"bn{i}"), ReLU(name=f"relu{i}")]
    layers += [Flatten(name="flatten"), Dense(num_classes, kernel_initializer="glorot_uniform", name="fc")]
    return Model.sequential(f"vgg{depth}", input_shape, layers)
