"""Inception networks (Szegedy et al. 2015): GoogLeNet as published (Inception-v1 with its two auxiliary
classifiers) and ``inception``, a GoogLeNet-style network for 32x32 images with batch norm."""
from __future__ import annotations

from ..graph import Model
from ..kernels.geometry import out_size
from ..layers import (LRN, AvgPool2D, BatchNorm, Concatenate, Conv2D, Dense, Dropout, Flatten, GlobalAvgPool2D,
                      MaxPool2D, Pad2D, ReLU)

#: (1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj) per block, as in the paper's table 1
BLOCKS = {
    "3a": (64, 96, 128, 16, 32, 32), "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64), "4b": (160, 112, 224, 24, 64, 64), "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64), "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128), "5b": (384, 192, 384, 48, 128, 128),
}


def conv_act(m: Model, x: str, name: str, filters: int, kernel: int, batch_norm: bool) -> str:
    """conv (stride 1, 'same' padding) [-> BatchNorm] -> ReLU."""
    x = m.add(Conv2D(filters, kernel, padding=kernel // 2, use_bias=not batch_norm, name=name), x)
    if batch_norm:
        x = m.add(BatchNorm(name=f"{name}_bn"), x)
    return m.add(ReLU(name=f"{name}_relu"), x)


def inception_block(m: Model, x: str, name: str, c1: int, c3r: int, c3: int, c5r: int, c5: int, pp: int,
                    batch_norm: bool = False) -> str:
    """Four branches joined on channels: 1x1 | 1x1 -> 3x3 | 1x1 -> 5x5 | maxpool3x3 -> 1x1."""
    b1 = conv_act(m, x, f"{name}_1x1", c1, 1, batch_norm)
    b2 = conv_act(m, conv_act(m, x, f"{name}_3x3r", c3r, 1, batch_norm), f"{name}_3x3", c3, 3, batch_norm)
    b3 = conv_act(m, conv_act(m, x, f"{name}_5x5r", c5r, 1, batch_norm), f"{name}_5x5", c5, 5, batch_norm)
    b4 = conv_act(m, m.add(MaxPool2D(3, 1, padding=1, name=f"{name}_pool"), x), f"{name}_proj", pp, 1, batch_norm)
    return m.add(Concatenate(name=f"{name}_cat"), [b1, b2, b3, b4])


def inception(num_classes: int = 10, input_shape=(3, 32, 32), width: float = 1.0, batch_norm: bool = True,
              dropout: float = 0.4) -> Model:
    """Stem conv3x3(64)-LRN-conv1x1(64)-conv3x3(192)-LRN-pool, blocks 3a 3b, pool, 4a-4e, pool,
    5a 5b, global average pool, dropout, dense.  Pools are 3x3/2 with padding 1: 32 -> 16 -> 8 -> 4.

    ``width`` scales every channel count; ``batch_norm`` (the default, as in BN-Inception) adds BN
    after every conv.  ``batch_norm=False`` is the 2014 paper's plain network; trained from scratch
    without the paper's auxiliary classifiers it stalls at chance loss here (60 Adam or SGD steps on
    the built-in RGB data), while the BN variant learns (loss 2.8 -> 0.9 in 40 steps).
    """
    if not width > 0:
        raise ValueError(f"inception width must be > 0, got {width!r}")

    def w(c):
        return max(1, round(c * width))

    m = Model("inception", input_shape)
    x = conv_act(m, "input", "stem1", w(64), 3, batch_norm)
    x = m.add(LRN(5, 1e-4, 0.75, 1.0, name="stem_lrn1"), x)
    x = conv_act(m, x, "stem2", w(64), 1, batch_norm)
    x = conv_act(m, x, "stem3", w(192), 3, batch_norm)
    x = m.add(LRN(5, 1e-4, 0.75, 1.0, name="stem_lrn2"), x)
    x = m.add(MaxPool2D(3, 2, padding=1, name="pool2"), x)
    for name, chans in BLOCKS.items():
        if name in ("4a", "5a"):
            x = m.add(MaxPool2D(3, 2, padding=1, name=f"pool{name[0]}"), x)
        x = inception_block(m, x, f"inc{name}", *(w(c) for c in chans), batch_norm=batch_norm)
    x = m.add(GlobalAvgPool2D(name="avgpool"), x)
    x = m.add(Flatten(name="flatten"), x)
    x = m.add(Dropout(dropout, name="dropout"), x)
    m.add(Dense(num_classes, kernel_initializer="glorot_uniform", name="fc"), x)
    return m


def _ceil_pool(m: Model, x: str, name: str, size: int):
    """A 3x3/2 max pool in Caffe's ceil mode (as published): a -inf row/column of padding at the bottom and
    right where floor mode would drop the last window.  Returns (node, output size)."""
    floor, ceil = out_size(size, 3, 2), -(-(size - 3) // 2) + 1
    if ceil > floor:
        x = m.add(Pad2D((0, 1, 0, 1), float("-inf"), name=f"{name}_ceil"), x)
    return m.add(MaxPool2D(3, 2, name=name), x), ceil


def _aux_head(m: Model, x: str, name: str, size: int, num_classes: int) -> str:
    """GoogLeNet's auxiliary classifier: avg pool 5x5/3, conv1x1(128)-ReLU, dense 1024-ReLU, dropout 0.7, dense.
    (On inputs smaller than 224x224, whose 4a/4d outputs are under 5x5, a global average pool instead.)"""
    pool = AvgPool2D(5, 3, name=f"{name}_pool") if size >= 5 else GlobalAvgPool2D(name=f"{name}_pool")
    x = m.add(pool, x)
    x = conv_act(m, x, f"{name}_conv", 128, 1, False)
    x = m.add(Flatten(name=f"{name}_flatten"), x)
    x = m.add(Dense(1024, name=f"{name}_fc1"), x)
    x = m.add(ReLU(name=f"{name}_fc1_relu"), x)
    x = m.add(Dropout(0.7, name=f"{name}_drop"), x)
    return m.add(Dense(num_classes, kernel_initializer="glorot_uniform", name=f"{name}_fc2"), x)


def googlenet(num_classes: int = 1000, input_shape=(3, 224, 224), aux: bool = True, aux_weight: float = 0.3,
              dropout: float = 0.4) -> Model:
    """GoogLeNet (Inception-v1) as published: conv7x7/2(64)-pool-LRN, conv1x1(64)-conv3x3(192)-LRN-pool,
    inception 3a 3b, pool, 4a-4e, pool, 5a 5b, average pool, dropout 0.4, dense; max pools 3x3/2 in ceil
    mode (224 -> 112 -> 56 -> 28 -> 14 -> 7).  6,998,552 parameters at 1000 classes without the auxiliary
    classifiers (Caffe's bvlc_googlenet), 13,378,280 with them.  ``aux`` adds the two auxiliary classifiers on 4a and 4d as auxiliary
    outputs whose losses count ``aux_weight`` (0.3 in the paper) in training; inference uses the main output.
    """
    m = Model("googlenet", input_shape)
    size = out_size(input_shape[1], 7, 2, 3)
    x = m.add(Conv2D(64, 7, strides=2, padding=3, name="conv1"), "input")
    x = m.add(ReLU(name="conv1_relu"), x)
    x, size = _ceil_pool(m, x, "pool1", size)
    x = m.add(LRN(5, 1e-4, 0.75, 1.0, name="lrn1"), x)
    x = conv_act(m, x, "conv2_reduce", 64, 1, False)
    x = conv_act(m, x, "conv2", 192, 3, False)
    x = m.add(LRN(5, 1e-4, 0.75, 1.0, name="lrn2"), x)
    x, size = _ceil_pool(m, x, "pool2", size)
    for name, chans in BLOCKS.items():
        if name in ("4a", "5a"):
            x, size = _ceil_pool(m, x, f"pool{int(name[0]) - 1}", size)
        x = inception_block(m, x, f"inc{name}", *chans)
        if aux and name in ("4a", "4d"):
            head = _aux_head(m, x, f"aux{1 if name == '4a' else 2}", size, num_classes)
            m.output = x
            m.add_aux_output(head, aux_weight)
    x = m.add(GlobalAvgPool2D(name="avgpool"), x)
    x = m.add(Flatten(name="flatten"), x)
    x = m.add(Dropout(dropout, name="dropout"), x)
    m.add(Dense(num_classes, kernel_initializer="glorot_uniform", name="fc"), x)
    return m
