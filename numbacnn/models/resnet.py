"""ResNets (He et al. 2016): the CIFAR nets (ResNet-20/32/44/56/110, 6n+2 layers, option-A shortcuts) and
the ImageNet nets as torchvision builds them (ResNet-18/34 with basic blocks, ResNet-50/101/152 with
bottleneck blocks, the stride in the bottleneck's 3x3 conv)."""
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


def bottleneck_block(m: Model, x: str, name: str, in_ch: int, width: int, stride: int) -> str:
    """1x1 (width) -> 3x3 (width, stride) -> 1x1 (4 * width) conv-BN, plus a shortcut (1x1 conv + BN when the
    shape changes), then ReLU: torchvision's Bottleneck."""
    out_ch = 4 * width
    h = conv_bn(m, x, f"{name}_1", width, 1)
    h = conv_bn(m, h, f"{name}_2", width, 3, stride)
    h = conv_bn(m, h, f"{name}_3", out_ch, 1, relu=False)
    s = conv_bn(m, x, f"{name}_down", out_ch, 1, stride, relu=False) if stride != 1 or in_ch != out_ch else x
    y = m.add(Add(name=f"{name}_add"), [h, s])
    return m.add(ReLU(name=f"{name}_out"), y)


def cifar_resnet(depth: int, num_classes: int = 10, input_shape=(3, 32, 32), shortcut: str = "A") -> Model:
    """CIFAR ResNet-``depth`` (depth = 6n + 2): conv3x3(16), three stages of n basic blocks (16, 32, 64
    channels), global average pool, dense.  shortcut "A" (the paper's zero-padding shortcuts) or "B"
    (1x1 conv + BN projections)."""
    if shortcut not in ("A", "B"):
        raise ValueError(f"resnet{depth} shortcut must be 'A' or 'B', got {shortcut!r}")
    if (depth - 2) % 6 or depth < 8:
        raise ValueError(f"a CIFAR ResNet has 6n + 2 layers (20, 32, 44, 56, 110, ...), got {depth}")
    m = Model(f"resnet{depth}", input_shape)
    x = conv_bn(m, "input", "stem", 16, 3)
    in_ch = 16
    for stage, ch in enumerate((16, 32, 64), 1):
        for b in range((depth - 2) // 6):
            stride = 2 if stage > 1 and b == 0 else 1
            x = basic_block(m, x, f"s{stage}b{b + 1}", in_ch, ch, stride, shortcut)
            in_ch = ch
    _head(m, x, num_classes)
    return m


#: blocks per stage of torchvision's ImageNet ResNets
IMAGENET_STAGES = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


def imagenet_resnet(depth: int, num_classes: int = 1000, input_shape=(3, 224, 224)) -> Model:
    """torchvision's ResNet-``depth``: conv7x7/2-BN-ReLU-maxpool3x3/2, four stages (64, 128, 256, 512;
    bottleneck blocks with 4x expansion from 50 layers on) with 1x1 projection shortcuts, global pool, fc."""
    if depth not in IMAGENET_STAGES:
        raise ValueError(f"ImageNet ResNet depth must be one of {sorted(IMAGENET_STAGES)}, got {depth}")
    m = Model(f"resnet{depth}", input_shape)
    x = conv_bn(m, "input", "stem", 64, 7, 2)
    x = m.add(MaxPool2D(3, 2, padding=1, name="stem_pool"), x)
    in_ch = 64
    for stage, (ch, blocks) in enumerate(zip((64, 128, 256, 512), IMAGENET_STAGES[depth]), 1):
        for b in range(blocks):
            stride = 2 if stage > 1 and b == 0 else 1
            if depth >= 50:
                x = bottleneck_block(m, x, f"layer{stage}_{b}", in_ch, ch, stride)
                in_ch = 4 * ch
            else:
                x = basic_block(m, x, f"layer{stage}_{b}", in_ch, ch, stride, "B")
                in_ch = ch
    _head(m, x, num_classes)
    return m


def _cifar(depth, params):
    def build(num_classes: int = 10, input_shape=(3, 32, 32), shortcut: str = "A") -> Model:
        return cifar_resnet(depth, num_classes, input_shape, shortcut)
    build.__name__ = build.__qualname__ = f"resnet{depth}"
    build.__doc__ = f"CIFAR ResNet-{depth} ({params:,} parameters at 10 classes, option-A shortcuts)."
    return build


def _imagenet(depth, params):
    def build(num_classes: int = 1000, input_shape=(3, 224, 224)) -> Model:
        return imagenet_resnet(depth, num_classes, input_shape)
    build.__name__ = build.__qualname__ = f"resnet{depth}"
    build.__doc__ = f"torchvision's ResNet-{depth} ({params:,} parameters at 1000 classes)."
    return build


resnet20, resnet32, resnet44, resnet56, resnet110 = (_cifar(d, p) for d, p in (
    (20, 269_722), (32, 464_154), (44, 658_586), (56, 853_018), (110, 1_727_962)))
resnet18, resnet34, resnet50, resnet101, resnet152 = (_imagenet(d, p) for d, p in (
    (18, 11_689_512), (34, 21_797_672), (50, 25_557_032), (101, 44_549_160), (152, 60_192_808)))
