"""Conv2D: 2-D cross-correlation, NCHW input, OIHW weights (PyTorch semantics)."""
from __future__ import annotations

from ..init import check_kernel_initializer
from .base import Layer, as_pair, as_padding, check_activation, out_size, register


@register
class Conv2D(Layer):
    """y = conv2d(x, weight) + bias.

    x : (N, C, H, W) -> y : (N, filters, OH, OW); weight : (filters, C // groups, KH, KW),
    bias : (filters,).  ``padding`` is an int, a pair (ph, pw) or a 4-list
    (top, bottom, left, right) that must be symmetric (see ``as_padding``), or Keras' "valid" /
    "same".  The normalised pairs are public: ``kernel_hw``, ``stride_hw``, ``padding_hw``,
    ``dilation_hw``.  ``activation`` ("relu", "softmax", ...) becomes a node of its own after
    this one when the layer is added to a graph; ``input_shape`` (C, H, W) gives a Keras-style
    ``Sequential`` its input.
    """

    outputs_key = "filters"
    optional_bias = True
    channel_affine = (("weight", "bias"), "bias")
    # fusion (``Model.fusions``): a ReLU after it applied in its epilogue, its output's channel statistics handed
    # to a batch norm after it, its input gradient added to the one summed so far
    absorbs = ("relu",)
    makes_stats = True
    adds_to_grads = True
    folds_norm = True           # a batch norm after it, at inference (``conv2d_forward_norm``)

    def __init__(self, filters, kernel_size=3, strides=1, padding=0, dilation=1, groups=1, use_bias=True,
                 kernel_initializer="he_normal", activation=None, input_shape=None, name=None, trainable=True):
        super().__init__(name, trainable)
        if not isinstance(filters, int) or isinstance(filters, bool) or filters < 1:
            raise ValueError(f"{self.describe()}: filters must be an int >= 1, got {filters!r}")
        if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1 or filters % groups:
            raise ValueError(f"{self.describe()}: groups must be an int >= 1 dividing filters={filters}, "
                             f"got {groups!r}")
        self.filters, self.kernel_size, self.strides = filters, kernel_size, strides
        self.padding, self.dilation, self.groups = padding, dilation, groups
        self.use_bias = bool(use_bias)
        self.kernel_initializer = check_kernel_initializer(kernel_initializer, self.describe())
        self.kernel_hw = as_pair(self, "kernel_size", kernel_size, 1)
        self.stride_hw = as_pair(self, "strides", strides, 1)
        self.dilation_hw = as_pair(self, "dilation", dilation, 1)
        self.padding_hw = as_padding(self, padding, self.kernel_hw, self.dilation_hw, self.stride_hw)
        self.activation = check_activation(self, activation)
        self.input_shape = None if input_shape is None else tuple(int(d) for d in input_shape)
        self._x = self._y = None

    def _build(self, shapes):
        s = shapes[0]
        if len(s) != 3:
            raise self.shape_error("needs a (C, H, W) input", s, "(C, H, W)")
        C, H, W = s
        if C % self.groups:
            raise self.shape_error(f"groups={self.groups} must divide the input channels", s)
        k, st, p, d = self.kernel_hw, self.stride_hw, self.padding_hw, self.dilation_hw
        OH, OW = out_size(H, k[0], st[0], p[0], d[0]), out_size(W, k[1], st[1], p[1], d[1])
        if OH < 1 or OW < 1:
            raise self.shape_error(f"kernel {k} (dilation {d}, padding {p}) does not fit; output would be {OH}x{OW}",
                                   s, f"H >= {k[0]} and W >= {k[1]} after padding")
        self.add_param("weight", (self.filters, C // self.groups) + k, self.kernel_initializer, regularize=True)
        if self.use_bias:
            self.add_param("bias", (self.filters,), "zeros")
        return self.filters, OH, OW

    def macs(self):
        C = self.input_shapes[0][0]
        K, OH, OW = self.output_shape
        return K * OH * OW * (C // self.groups) * self.kernel_hw[0] * self.kernel_hw[1]

    def flops(self):
        K, OH, OW = self.output_shape
        return 2 * self.macs() + (K * OH * OW if self.use_bias else 0)

    def forward(self, inputs, training):
        """The convolution, with the ReLU after it when the graph fused it (``fused_activation``), and its output's
        channel statistics in parts (``output_stats``) when the batch norm after it wants them; in an inference
        pass that folds the batch norm after it (``folded_norm``), that normalisation too (no backward then)."""
        x = inputs[0]
        relu = self.fused_activation == "relu"
        self._folded = self.folded_norm is not None
        if self._folded:                      # an inference pass: y = batch_norm(conv(x)) (then ReLU), no backward
            self._x = self._y = None
            bn = self.folded_norm
            return self.backend.conv2d_forward_norm(
                x, self.params["weight"], self.params.get("bias"), bn.params["gamma"], bn.params["beta"],
                bn.buffers["running_mean"], bn.buffers["running_var"], bn.eps, self.stride_hw, self.padding_hw,
                self.dilation_hw, self.groups, relu=relu)
        self._x = x
        y, self.output_stats = self.backend.conv2d_forward_fused(
            x, self.params["weight"], self.params.get("bias"), self.stride_hw, self.padding_hw, self.dilation_hw,
            self.groups, relu=relu, stats=self.stats_wanted)
        self._y = y if relu else None
        return y

    def backward(self, dy):
        if getattr(self, "_folded", False):
            raise ValueError(f"{self.describe()}: backward() after a forward with inference=True, which folded the "
                             "batch norm after it into this layer: run forward without inference=True")
        x, be = self._need_forward("_x"), self.backend
        dy = dy if self._y is None or self.relu_grad_done else be.relu_backward(dy, self._y)
        args = (dy, x, self.params["weight"], self.stride_hw, self.padding_hw, self.dilation_hw, self.groups,
                self.use_bias)
        base = (self.grad_base or [None])[0]
        if not self.input_grad:   # fed by the model input, whose gradient no one asked for: weights (and bias) only
            dx, (dw, db) = None, be.conv2d_backward_params(*args)
        elif base is not None:    # the gradient the graph summed for x so far, plus this one (and a ReLU's mask)
            dx, dw, db = be.conv2d_backward_add(*args[:3], base, *args[3:], relu=self.grad_relu)
        else:
            dx, dw, db = be.conv2d_backward(*args)
        self.grads["weight"] = dw
        if self.use_bias:
            self.grads["bias"] = db
        return [dx]

    def clear_cache(self):
        self._x = self._y = None
