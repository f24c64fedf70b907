"""The model zoo: ``ZOO[name](num_classes=..., input_shape=..., **options) -> Model`` (unbuilt).

=============  ==============================================================  ==================
name           architecture                                                    default input
=============  ==============================================================  ==================
lenet5         conv5x5(6, pad 2)-pool-conv5x5(16)-pool-dense120-dense84-dense  (1, 28, 28)
alexnet        torchvision's AlexNet (61,100,840 params at 1000 classes)       (3, 224, 224)
alexnet32      AlexNet for 32x32 images, with LRN as in the original paper     (3, 32, 32)
vgg            VGG-11 with batch norm for 32x32 (``vgg(depth=13|16|19)`` in    (3, 32, 32)
               Python)
inception      GoogLeNet-style net for 32x32: LRN stem, inception blocks, BN   (3, 32, 32)
resnet20       CIFAR ResNet-20 (272,474 params with shortcut="B", 269,722 "A") (3, 32, 32)
resnet18       torchvision's ResNet-18 (11,689,512 params at 1000 classes)     (3, 224, 224)
=============  ==============================================================  ==================
"""
from __future__ import annotations

from ..registry import Registry
from .alexnet import alexnet, alexnet32
from .inception import inception
from .lenet import lenet5
from .resnet import resnet18, resnet20
from .vgg import vgg

ZOO = Registry("model")
for _builder in (lenet5, alexnet, alexnet32, vgg, inception, resnet20, resnet18):
    ZOO.register()(_builder)

#: one line per zoo entry, shown by ``numbacnn models``
DESCRIPTIONS = {
    "lenet5": "LeNet-5: conv5x5(6, pad 2)-pool-conv5x5(16)-pool-dense120-dense84-dense, ReLU",
    "alexnet": "torchvision's AlexNet for 224x224 images",
    "alexnet32": "AlexNet for 32x32 images: five convs, LRN after the first two, three dense",
    "vgg": "VGG-11 with batch norm for 32x32 images",
    "inception": "GoogLeNet-style: LRN stem, inception blocks 3a-5b with 1x1 reductions and BN, 32x32",
    "resnet20": "CIFAR ResNet-20, option-A shortcuts (shortcut='B': 1x1 projections)",
    "resnet18": "torchvision's ResNet-18 for 224x224 images",
}


def build_model(name: str, **kwargs):
    """``ZOO[name](**kwargs)`` with a clear error for an unknown name."""
    return ZOO.lookup(name)(**kwargs)


__all__ = ["ZOO", "DESCRIPTIONS", "build_model", "lenet5", "alexnet", "alexnet32", "vgg", "inception", "resnet20", "resnet18"]
