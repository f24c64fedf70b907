"""VGG (Simonyan & Zisserman 2014): torchvision's ImageNet networks VGG-11/13/16/19 with and without batch
norm (three dense layers, dropout), and ``vgg``, the common CIFAR variant for 32x32 images (batch norm, one
dense layer)."""
from __future__ import annotations

from ..graph import Model
from ..layers import BatchNorm, Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU

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
    layers = _features(depth, True, width)
    layers += [Flatten(name="flatten"), Dense(num_classes, kernel_initializer="glorot_uniform", name="fc")]
    return Model.sequential(f"vgg{depth}", input_shape, layers)


def _features(depth, batch_norm, width=1.0):
    """The conv3x3 [-BN] -ReLU blocks and 2x2 pools of configuration ``depth``."""
    layers, i, p = [], 0, 0
    for v in CONFIGS[depth]:
        if v == "M":
            p += 1
            layers.append(MaxPool2D(2, name=f"pool{p}"))
            continue
        i += 1
        layers.append(Conv2D(max(1, round(v * width)), 3, padding=1, name=f"conv{i}"))
        if batch_norm:
            layers.append(BatchNorm(name=f"bn{i}"))
        layers.append(ReLU(name=f"relu{i}"))
    return layers


def vgg_imagenet(depth: int, batch_norm: bool, num_classes: int = 1000, input_shape=(3, 224, 224),
                 dropout: float = 0.5) -> Model:
    """torchvision's VGG-``depth``[_bn]: the conv blocks, five 2x2 pools, then dense 4096-ReLU-dropout,
    4096-ReLU-dropout, num_classes.  At 224x224 the features end at 512x7x7 (torchvision's adaptive pool to
    7x7 is then the identity and is left out); other input sizes change the first dense layer's width."""
    if depth not in CONFIGS:
        raise ValueError(f"vgg depth must be one of {sorted(CONFIGS)}, got {depth!r}")
    layers = _features(depth, batch_norm) + [
        Flatten(name="flatten"), Dense(4096, name="fc6"), ReLU(name="fc6_relu"), Dropout(dropout, name="fc6_drop"),
        Dense(4096, name="fc7"), ReLU(name="fc7_relu"), Dropout(dropout, name="fc7_drop"),
        Dense(num_classes, kernel_initializer="glorot_uniform", name="fc8")]
    return Model.sequential(f"vgg{depth}" + ("_bn" if batch_norm else ""), input_shape, layers)


#: torchvision's parameter counts at 1000 classes
PARAMS = {(11, False): 132_863_336, (13, False): 133_047_848, (16, False): 138_357_544, (19, False): 143_667_240,
          (11, True): 132_868_840, (13, True): 133_053_736, (16, True): 138_365_992, (19, True): 143_678_248}


def _builder(depth, batch_norm):
    def build(num_classes: int = 1000, input_shape=(3, 224, 224), dropout: float = 0.5) -> Model:
        return vgg_imagenet(depth, batch_norm, num_classes, input_shape, dropout)
    build.__name__ = build.__qualname__ = f"vgg{depth}" + ("_bn" if batch_norm else "")
    build.__doc__ = (f"torchvision's VGG-{depth}{' with batch norm' if batch_norm else ''} "
                     f"({PARAMS[depth, batch_norm]:,} parameters at 1000 classes).")
    return build


vgg11, vgg13, vgg16, vgg19 = (_builder(d, False) for d in (11, 13, 16, 19))
vgg11_bn, vgg13_bn, vgg16_bn, vgg19_bn = (_builder(d, True) for d in (11, 13, 16, 19))
