"""ResNets (He et al. 2016): CIFAR-style ResNet-20 and ImageNet-layout ResNet-18."""
from __future__ import annotations

from ..graph import Model
from ..layers import Add, AvgPool2D, BatchNorm, ChannelPad, Conv2D, Dense, Flatten, GlobalAvgPool2D, MaxPool2D, ReLU


def conv_bn(m: Model, x: str, name: str, filters: int, kernel: int, stride: int = 1, relu: bool = True) -> str:
    """conv(kernel, stride, 'same'-style padding, no bias) -> BatchNorm [-> ReLU]; returns the last node."""
    x = m.add(Conv2D(filters, kernel, strides=stride, padding=kernel // 2, use_bias=False, name=f"{name}_conv"), x)
    x = m.add(BatchNorm(name=f"{name}_bn"), x)
    return m.add(ReLU(name=f"{name}_relu"), x) if relu else x


def basic_block(m: Model, x: str, name: str, in_ch: int, out_ch: int, stride: int, shortcut: str = "B") -> str:
    """Two 3x3 conv-BN layers plus a shortcut, then ReLU.

    When the shape changes the shortcut is ``"B"``: a 1x1 strided conv + BN
    (torchvision), or ``"A"``: stride-2 subsampling (a 1x1 AvgPool2D) and zero
    channels (ChannelPad), parameter-free as in the paper's CIFAR nets.
    """
    h = conv_bn(m, x, f"{name}_1", out_ch, 3, stride)
    h = conv_bn(m, h, f"{name}_2", out_ch, 3, 1, relu=False)
    s = x
    if stride != 1 or in_ch != out_ch:
        if shortcut == "B":
            s = conv_bn(m, x, f"{name}_down", out_ch, 1, stride, relu=False)
        else:
            if stride != 1:
                s = m.add(AvgPool2D(1, stride, name=f"{name}_sub"), s)
            pad = out_ch - in_ch
            s = m.add(ChannelPad(pad // 2, pad - pad // 2, name=f"{name}_pad"), s)
    y = m.add(Add(name=f"{name}_add"), [h, s])
    return m.add(ReLU(name=f"{name}_out"), y)


def _head(m: Model, x: str, num_classes: int):
    x = m.add(GlobalAvgPool2D(name="avgpool"), x)
    x = m.add(Flatten(name="flatten"), x)
    m.add(Dense(num_classes, kernel_initializer="glorot_uniform", name="fc"), x)


def resnet20(num_classes: int = 10, input_shape=(3, 32, 32), shortcut: str = "A") -> Model:
    """CIFAR ResNet-20: conv3x3(16), three stages of three basic blocks (16, 32, 64 channels).

    shortcut="A" (the paper's zero-padding shortcuts): 269,722 parameters at
    10 classes; shortcut="B" (1x1 conv + BN projections): 272,474.
    """
    if shortcut not in ("A", "B"):
        raise ValueError(f"resnet20 shortcut must be 'A' or 'B', got {shortcut!r}")
    m = Model("resnet20", input_shape)
    x = conv_bn(m, "input", "stem", 16, 3)
    in_ch = 16
    for stage, ch in enumerate((16, 32, 64), 1):
        for b in range(3):
            stride = 2 if stage > 1 and b == 0 else 1
            x = basic_block(m, x, f"s{stage}b{b + 1}", in_ch, ch, stride, shortcut)
            in_ch = ch
    _head(m, x, num_classes)
    return m


def resnet18(num_classes: int = 1000, input_shape=(3, 224, 224)) -> Model:
    """torchvision's ResNet-18 (11,689,512 parameters at 1000 classes): conv7x7/2-BN-ReLU-maxpool3x3/2,
    four stages of two basic blocks (64, 128, 256, 512) with 1x1 projection shortcuts, global pool, fc.
    """
    m = Model("resnet18", input_shape)
    x = conv_bn(m, "input", "stem", 64, 7, 2)
    x = m.add(MaxPool2D(3, 2, padding=1, name="stem_pool"), x)
    in_ch = 64
    for stage, ch in enumerate((64, 128, 256, 512), 1):
        for b in range(2):
            stride = 2 if stage > 1 and b == 0 else 1
            x = basic_block(m, x, f"layer{stage}_{b}", in_ch, ch, stride, "B")
            in_ch = ch
    _head(m, x, num_classes)
    return m
