"""AlexNet: torchvision's layout at 224x224, and a 32x32 variant with LRN."""
from __future__ import annotations

from ..graph import Model
from ..layers import LRN, Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU


def alexnet(num_classes: int = 1000, input_shape=(3, 224, 224), dropout: float = 0.5) -> Model:
    """torchvision's AlexNet (61,100,840 parameters at 1000 classes).

    At 224x224 the features end at 256x6x6, so torchvision's AdaptiveAvgPool2d(6)
    is the identity and is left out; other input sizes change the first dense
    layer's width instead.
    """
    return Model.sequential("alexnet", input_shape, [
        Conv2D(64, 11, strides=4, padding=2, name="conv1"), ReLU(name="relu1"), MaxPool2D(3, 2, name="pool1"),
        Conv2D(192, 5, padding=2, name="conv2"), ReLU(name="relu2"), MaxPool2D(3, 2, name="pool2"),
        Conv2D(384, 3, padding=1, name="conv3"), ReLU(name="relu3"),
        Conv2D(256, 3, padding=1, name="conv4"), ReLU(name="relu4"),
        Conv2D(256, 3, padding=1, name="conv5"), ReLU(name="relu5"), MaxPool2D(3, 2, name="pool5"),
        Flatten(name="flatten"),
        Dropout(dropout, name="drop6"), Dense(4096, name="fc6"), ReLU(name="relu6"),
        Dropout(dropout, name="drop7"), Dense(4096, name="fc7"), ReLU(name="relu7"),
        Dense(num_classes, kernel_initializer="glorot_uniform", name="fc8"),
    ])


def alexnet32(num_classes: int = 10, input_shape=(3, 32, 32), dropout: float = 0.5) -> Model:
    """AlexNet for 32x32 images: five convs (5x5, 5x5, 3x3 x3) with LRN after the first two
    (Krizhevsky et al. 2012: size 5, alpha 1e-4, beta 0.75, k 2), overlapping 3x3/2 pooling,
    and two 1024-wide dense layers.  32 -> 15 -> 7 -> 3 spatially.
    """
    lrn = dict(size=5, alpha=1e-4, beta=0.75, k=2.0)
    return Model.sequential("alexnet32", input_shape, [
        Conv2D(64, 5, padding=2, name="conv1"), ReLU(name="relu1"), LRN(**lrn, name="lrn1"),
        MaxPool2D(3, 2, name="pool1"),
        Conv2D(192, 5, padding=2, name="conv2"), ReLU(name="relu2"), LRN(**lrn, name="lrn2"),
        MaxPool2D(3, 2, name="pool2"),
        Conv2D(384, 3, padding=1, name="conv3"), ReLU(name="relu3"),
        Conv2D(256, 3, padding=1, name="conv4"), ReLU(name="relu4"),
        Conv2D(256, 3, padding=1, name="conv5"), ReLU(name="relu5"), MaxPool2D(3, 2, name="pool5"),
        Flatten(name="flatten"),
        Dropout(dropout, name="drop6"), Dense(1024, name="fc6"), ReLU(name="relu6"),
        Dropout(dropout, name="drop7"), Dense(1024, name="fc7"), ReLU(name="relu7"),
        Dense(num_classes, kernel_initializer="glorot_uniform", name="fc8"),
    ])


def zfnet(num_classes: int = 1000, input_shape=(3, 224, 224), dropout: float = 0.5) -> Model:
    """ZFNet-512 (Zeiler & Fergus 2013, as in the ONNX model zoo; 87,250,536 parameters at 1000 classes):
    conv7x7/2(96)-LRN-pool, conv5x5/2(256)-LRN-pool, three conv3x3(512), pool 2x2, dense 4096, 1024, classes.
    LRN: size 5, alpha 5e-4, beta 0.75, k 2, after each of the first two ReLUs."""
    lrn = dict(size=5, alpha=5e-4, beta=0.75, k=2.0)
    return Model.sequential("zfnet", input_shape, [
        Conv2D(96, 7, strides=2, name="conv1"), ReLU(name="relu1"), LRN(**lrn, name="lrn1"),
        MaxPool2D(3, 2, name="pool1"),
        Conv2D(256, 5, strides=2, name="conv2"), ReLU(name="relu2"), LRN(**lrn, name="lrn2"),
        MaxPool2D(3, 2, name="pool2"),
        Conv2D(512, 3, padding=1, name="conv3"), ReLU(name="relu3"),
        Conv2D(512, 3, padding=1, name="conv4"), ReLU(name="relu4"),
        Conv2D(512, 3, padding=1, name="conv5"), ReLU(name="relu5"), MaxPool2D(2, 2, name="pool5"),
        Flatten(name="flatten"),
        Dense(4096, name="fc6"), ReLU(name="relu6"), Dropout(dropout, name="drop6"),
        Dense(1024, name="fc7"), ReLU(name="relu7"), Dropout(dropout, name="drop7"),
        Dense(num_classes, kernel_initializer="glorot_uniform", name="fc8"),
    ])
