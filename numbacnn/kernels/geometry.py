"""The one output-size helper: how many windows fit along an axis (convolution and pooling alike)."""
from __future__ import annotations


def out_size(size: int, kernel: int, stride: int = 1, padding=0, dilation: int = 1) -> int:
    """Output length along one axis of a convolution or pooling window, floor mode (PyTorch's rule).

    ``padding`` is the padding on each side (an int) or ``(before, after)``; ``dilation`` spaces the
    kernel taps.  A result below 1 means the window does not fit.
    """
    total = 2 * padding if isinstance(padding, int) else int(padding[0]) + int(padding[1])
    return (int(size) + total - int(dilation) * (int(kernel) - 1) - 1) // int(stride) + 1


__all__ = ["out_size"]
