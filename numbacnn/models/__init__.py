"""The model zoo: ``ZOO[name](num_classes=..., input_shape=..., **options) -> Model`` (unbuilt).

Classic networks as published, at every depth (parameter counts at 1000 or 10 classes, checked in
tests/test_zoo.py against torchvision's or the paper's):

================  ==================================================================  =============
name              architecture                                                        default input
================  ==================================================================  =============
lenet5            conv5x5(6, pad 2)-pool-conv5x5(16)-pool-dense120-dense84-dense      (1, 28, 28)
alexnet           torchvision's AlexNet (61,100,840)                                  (3, 224, 224)
alexnet32         AlexNet for 32x32 images, with LRN as in the original paper         (3, 32, 32)
zfnet             ZFNet-512 as in the ONNX model zoo (87,250,536)                     (3, 224, 224)
vgg11 ... vgg19   torchvision's VGG-11/13/16/19 (VGG-16: 138,357,544); ``_bn`` variants (3, 224, 224)
vgg               VGG-11 with batch norm for 32x32 (``depth`` 11/13/16/19, ``width``) (3, 32, 32)
googlenet         GoogLeNet as published, with its two auxiliary classifiers          (3, 224, 224)
inception         GoogLeNet-style net for 32x32 with batch norm                       (3, 32, 32)
resnet20 ... 110  CIFAR ResNets of He et al. 2016 (ResNet-20: 269,722; option A)      (3, 32, 32)
resnet18 ... 152  torchvision's ResNets (ResNet-50: 25,557,032; bottleneck from 50)   (3, 224, 224)
linear, mlp       dense networks for features (regression, the course's ridge/lasso)  (12,)
================  ==================================================================  =============
"""
from __future__ import annotations

from ..registry import Registry
from .alexnet import alexnet, alexnet32, zfnet
from .inception import googlenet, inception
from .lenet import lenet5
from .mlp import linear, mlp
from .resnet import (resnet18, resnet20, resnet32, resnet34, resnet44, resnet50, resnet56, resnet101, resnet110,
                     resnet152)
from .vgg import vgg, vgg11, vgg11_bn, vgg13, vgg13_bn, vgg16, vgg16_bn, vgg19, vgg19_bn

ZOO = Registry("model")
for _builder in (lenet5, alexnet, alexnet32, zfnet, vgg11, vgg11_bn, vgg13, vgg13_bn, vgg16, vgg16_bn, vgg19,
                 vgg19_bn, vgg, googlenet, inception, resnet20, resnet32, resnet44, resnet56, resnet110, resnet18,
                 resnet34, resnet50, resnet101, resnet152, linear, mlp):
    ZOO.register()(_builder)

#: one line per zoo entry, shown by ``numbacnn models``
DESCRIPTIONS = {
    "lenet5": "LeNet-5: conv5x5(6, pad 2)-pool-conv5x5(16)-pool-dense120-dense84-dense, ReLU",
    "alexnet": "torchvision's AlexNet for 224x224 images",
    "alexnet32": "AlexNet for 32x32 images: five convs, LRN after the first two, three dense",
    "zfnet": "ZFNet-512 (Zeiler & Fergus 2013) as in the ONNX model zoo",
    "vgg": "VGG-11 with batch norm for 32x32 images (one dense layer)",
    "googlenet": "GoogLeNet (Inception-v1) as published, two auxiliary classifiers weighted 0.3 in training",
    "inception": "GoogLeNet-style: LRN stem, inception blocks 3a-5b with 1x1 reductions and BN, 32x32",
    "linear": "one dense layer: linear/softmax regression; ridge with --weight-decay, lasso with --l1",
    "mlp": "a multilayer perceptron: dense 64-ReLU-dense 64-ReLU-dense",
}
for _d in (11, 13, 16, 19):
    DESCRIPTIONS[f"vgg{_d}"] = f"torchvision's VGG-{_d}: conv3x3 blocks, three dense layers with dropout"
    DESCRIPTIONS[f"vgg{_d}_bn"] = f"torchvision's VGG-{_d} with batch norm"
for _d in (20, 32, 44, 56, 110):
    DESCRIPTIONS[f"resnet{_d}"] = f"CIFAR ResNet-{_d} (He et al. 2016), option-A shortcuts (shortcut='B': 1x1 conv)"
for _d in (18, 34, 50, 101, 152):
    DESCRIPTIONS[f"resnet{_d}"] = f"torchvision's ResNet-{_d} for 224x224 images" + (
        " (bottleneck blocks)" if _d >= 50 else "")


def build_model(name: str, **kwargs):
    """``ZOO[name](**kwargs)`` with a clear error for an unknown name."""
    return ZOO.lookup(name)(**kwargs)


__all__ = ["ZOO", "DESCRIPTIONS", "build_model", *ZOO]
