"""ConvTranspose2D: the transposed 2-D convolution (PyTorch's ConvTranspose2d, ONNX ConvTranspose)."""
from __future__ import annotations

from ..init import check_kernel_initializer
from .base import Layer, as_pair, as_padding, register


@register
class ConvTranspose2D(Layer):
    """y = conv_transpose2d(x, weight) + bias: each input cell spreads weight-scaled copies over a window.

    x : (N, C, H, W) -> y : (N, filters, OH, OW), OH = (H - 1) * stride - 2 * padding
    + dilation * (KH - 1) + output_padding + 1; weight : (C, filters // groups, KH, KW) (PyTorch's
    layout), bias : (filters,).  ``output_padding`` (below the stride or the dilation) adds rows and
    columns at the bottom and right.  The normalised pairs are public: ``kernel_hw``, ``stride_hw``,
    ``padding_hw``, ``output_padding_hw``, ``dilation_hw``.
    """

    outputs_key = "filters"

    def __init__(self, filters, kernel_size=2, strides=1, padding=0, output_padding=0, dilation=1, groups=1,
                 use_bias=True, kernel_initializer="he_normal", name=None, trainable=True):
        super().__init__(name, trainable)
        if not isinstance(filters, int) or isinstance(filters, bool) or filters < 1:
            raise ValueError(f"{self.describe()}: filters must be an int >= 1, got {filters!r}")
        if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1 or filters % groups:
            raise ValueError(f"{self.describe()}: groups must be an int >= 1 dividing filters={filters}, "
                             f"got {groups!r}")
        self.filters, self.kernel_size, self.strides, self.padding = filters, kernel_size, strides, padding
        self.output_padding, self.dilation, self.groups = output_padding, dilation, groups
        self.use_bias = bool(use_bias)
        self.kernel_initializer = check_kernel_initializer(kernel_initializer, self.describe())
        self.kernel_hw = as_pair(self, "kernel_size", kernel_size, 1)
        self.stride_hw = as_pair(self, "strides", strides, 1)
        self.padding_hw = as_padding(self, padding)
        self.output_padding_hw = as_pair(self, "output_padding", output_padding, 0)
        self.dilation_hw = as_pair(self, "dilation", dilation, 1)
        if any(op >= max(s, d) for op, s, d in zip(self.output_padding_hw, self.stride_hw, self.dilation_hw)):
            raise ValueError(f"{self.describe()}: output_padding {self.output_padding_hw} must be below the "
                             f"stride {self.stride_hw} or the dilation {self.dilation_hw}")
        self._x = None

    def _build(self, shapes):
        s = shapes[0]
        if len(s) != 3:
            raise self.shape_error("needs a (C, H, W) input", s, "(C, H, W)")
        C, H, W = s
        if C % self.groups:
            raise self.shape_error(f"groups={self.groups} must divide the input channels", s)
        out = [(n - 1) * st - 2 * p + d * (k - 1) + op + 1 for n, st, p, d, k, op in
               zip((H, W), self.stride_hw, self.padding_hw, self.dilation_hw, self.kernel_hw, self.output_padding_hw)]
        if min(out) < 1:
            raise self.shape_error(f"padding {self.padding_hw} crops the whole output ({out[0]}x{out[1]})", s)
        self.add_param("weight", (C, self.filters // self.groups) + self.kernel_hw, self.kernel_initializer,
                       regularize=True)
        if self.use_bias:
            self.add_param("bias", (self.filters,), "zeros")
        return (self.filters, *out)

    def macs(self):
        C, H, W = self.input_shapes[0]
        return C * H * W * (self.filters // self.groups) * self.kernel_hw[0] * self.kernel_hw[1]

    def flops(self):
        return 2 * self.macs() + (self.filters * self.output_shape[1] * self.output_shape[2] if self.use_bias else 0)

    def _geometry(self):
        return self.stride_hw, self.padding_hw, self.output_padding_hw, self.dilation_hw, self.groups

    def forward(self, inputs, training):
        self._x = inputs[0]
        return self.backend.conv_transpose2d_forward(self._x, self.params["weight"], self.params.get("bias"),
                                                     *self._geometry())

    def backward(self, dy):
        x = self._need_forward("_x")
        dx, dw, db = self.backend.conv_transpose2d_backward(dy, x, self.params["weight"], *self._geometry(),
                                                            self.use_bias)
        self.grads["weight"] = dw
        if self.use_bias:
            self.grads["bias"] = db
        return [dx]

    def clear_cache(self):
        self._x = None
