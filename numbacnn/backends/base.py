"""The Backend protocol: the public, stable kernel API.

``Backend`` validates every argument (a shape or argument that does not fit
raises a ``ValueError`` naming the argument and the shapes, before any kernel
runs) and then calls the backend's private ``_<op>`` implementation.
Subclasses (``ReferenceBackend``, ``CPUBackend``, ``CUDABackend``) implement
only the private methods.  Layout: NCHW float32, conv weights OIHW, dense
weights (out, in).

Public ops (all take and return backend arrays: numpy on the CPU, device
arrays on CUDA)::

    conv2d_forward(x, w, b, stride, padding, dilation, groups) -> y
    conv2d_backward(dy, x, w, stride, padding, dilation, groups, has_bias) -> (dx, dw, db|None)
    max_pool2d_forward(x, kernel, stride, padding) -> (y, argmax)
    max_pool2d_backward(dy, argmax, x_shape) -> dx
    avg_pool2d_forward(x, kernel, stride, padding, count_include_pad=True) -> y
    avg_pool2d_backward(dy, x_shape, kernel, stride, padding, count_include_pad=True) -> dx
    global_avg_pool2d_forward(x) -> y (N, C, 1, 1);  global_avg_pool2d_backward(dy, x_shape) -> dx
    dense_forward(x, w, b) -> y;  dense_backward(dy, x, w, has_bias) -> (dx, dw, db|None)
    relu_forward(x) / relu_backward(dy, x)
    leaky_relu_forward(x, negative_slope) / leaky_relu_backward(dy, x, negative_slope)
    sigmoid_forward(x) / sigmoid_backward(dy, y);  tanh_forward(x) / tanh_backward(dy, y)
    softmax_forward(x) / softmax_backward(dy, y)                      (over axis 1)
    softmax_cross_entropy_forward(logits, labels) -> (loss: float, probs)
    softmax_cross_entropy_backward(probs, labels) -> dlogits         (mean over the batch)
    argmax(x) -> (N,) int64 index of each row's maximum of x (N, K)  (np.argmax's tie rules)
    batch_norm_forward(x, gamma, beta, running_mean, running_var, training, momentum, eps)
        -> (y, save_mean, save_invstd)             (running stats updated in place)
    batch_norm_backward(dy, x, gamma, save_mean, save_invstd, training) -> (dx, dgamma, dbeta)
    dropout_forward(x, p, training, seed) -> (y, mask);  dropout_backward(dy, mask, p, training) -> dx
    lrn_forward(x, size, alpha, beta, k) -> (y, scale)
    lrn_backward(dy, x, y, scale, size, alpha, beta, k) -> dx
    concat_forward(xs) -> y;  concat_backward(dy, sizes) -> [dx...]
    add_forward(xs) -> y;     add_backward(dy, n) -> [dx...]
    pad2d_forward(x, pads, value) -> y;  pad2d_backward(dy, pads) -> dx
        (pads = (top, bottom, left, right), a negative pad crops)
    sgd_update(param, grad, velocity, lr, momentum, nesterov, weight_decay, l1)   (in place)
    adam_update(param, grad, m, v, step, lr, beta1, beta2, eps, weight_decay, l1) (in place)

Array helpers: ``asarray`` (host -> backend), ``to_host`` (backend -> numpy),
``zeros``, ``add_inplace`` (a += b), ``copy``.
"""
from __future__ import annotations

import numpy as np

from ..kernels.reference import conv_out_size


def _pair(name, v):
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    try:
        a, b = v
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an int or a pair of ints, got {v!r}") from None
    return int(a), int(b)


def _shape(a):
    return tuple(int(s) for s in a.shape)


class Backend:
    """Base class: validation and the public API.  See the module docstring."""

    name = "base"

    # ------------------------------------------------------------ arrays
    def asarray(self, a, dtype=np.float32):  # pragma: no cover - abstract
        raise NotImplementedError

    def to_host(self, a) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def zeros(self, shape, dtype=np.float32):  # pragma: no cover - abstract
        raise NotImplementedError

    def add_inplace(self, a, b):  # pragma: no cover - abstract
        """a += b (same shape); returns a."""
        raise NotImplementedError

    def copy(self, a):  # pragma: no cover - abstract
        raise NotImplementedError

    def synchronize(self):
        """Wait for queued work (a no-op on the CPU)."""

    # ------------------------------------------------------------ checks
    def _check_array(self, name, a, ndim=None, dtype=np.float32):
        if not hasattr(a, "shape") or not hasattr(a, "dtype"):
            raise ValueError(f"{name} must be an array, got {type(a).__name__}")
        if ndim is not None and len(a.shape) not in ((ndim,) if isinstance(ndim, int) else ndim):
            raise ValueError(f"{name} must have {ndim} dimensions, got shape {_shape(a)}")
        if dtype is not None and np.dtype(a.dtype) != np.dtype(dtype):
            raise ValueError(f"{name} must be {np.dtype(dtype).name}, got {np.dtype(a.dtype).name} (shape {_shape(a)})")

    def _check_same(self, name_a, a, name_b, b):
        if _shape(a) != _shape(b):
            raise ValueError(f"{name_a} shape {_shape(a)} does not match {name_b} shape {_shape(b)}")

    def _conv_geometry(self, x_shape, w_shape, stride, padding, dilation, groups):
        stride, padding, dilation = _pair("stride", stride), _pair("padding", padding), _pair("dilation", dilation)
        if min(stride) < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        if min(padding) < 0:
            raise ValueError(f"padding must be >= 0, got {padding}")
        if min(dilation) < 1:
            raise ValueError(f"dilation must be >= 1, got {dilation}")
        groups = int(groups)
        N, C, H, W = x_shape
        K, Cg, KH, KW = w_shape
        if groups < 1 or C % groups or K % groups:
            raise ValueError(f"groups={groups} must divide input channels {C} (x shape {x_shape}) "
                             f"and output channels {K} (w shape {w_shape})")
        if Cg * groups != C:
            raise ValueError(f"w shape {w_shape} expects {Cg * groups} input channels with groups={groups}, "
                             f"x shape {x_shape} has {C}")
        OH = conv_out_size(H, KH, stride[0], padding[0], dilation[0])
        OW = conv_out_size(W, KW, stride[1], padding[1], dilation[1])
        if OH < 1 or OW < 1:
            raise ValueError(f"kernel {KH}x{KW} (dilation {dilation}) does not fit x shape {x_shape} "
                             f"with padding {padding}: output would be {OH}x{OW}")
        return stride, padding, dilation, groups, (N, K, OH, OW)

    def _pool_geometry(self, x_shape, kernel, stride, padding):
        kernel, stride, padding = _pair("kernel", kernel), _pair("stride", stride), _pair("padding", padding)
        if min(kernel) < 1:
            raise ValueError(f"kernel must be >= 1, got {kernel}")
        if min(stride) < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        if min(padding) < 0 or padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
            raise ValueError(f"padding {padding} must be >= 0 and at most half the kernel {kernel}")
        N, C, H, W = x_shape
        OH = conv_out_size(H, kernel[0], stride[0], padding[0])
        OW = conv_out_size(W, kernel[1], stride[1], padding[1])
        if OH < 1 or OW < 1:
            raise ValueError(f"pooling kernel {kernel} does not fit x shape {x_shape} with padding {padding}")
        return kernel, stride, padding, (N, C, OH, OW)

    # ------------------------------------------------------------ conv
    def conv2d_forward(self, x, w, b=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
        self._check_array("x", x, 4)
        self._check_array("w", w, 4)
        stride, padding, dilation, groups, _ = self._conv_geometry(_shape(x), _shape(w), stride, padding,
                                                                   dilation, groups)
        if b is not None:
            self._check_array("b", b, 1)
            if _shape(b) != (w.shape[0],):
                raise ValueError(f"b shape {_shape(b)} does not match w shape {_shape(w)}: expected ({w.shape[0]},)")
        return self._conv2d_forward(x, w, b, stride, padding, dilation, groups)

    def conv2d_backward(self, dy, x, w, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1, has_bias=True):
        self._check_array("dy", dy, 4)
        self._check_array("x", x, 4)
        self._check_array("w", w, 4)
        stride, padding, dilation, groups, y_shape = self._conv_geometry(_shape(x), _shape(w), stride, padding,
                                                                         dilation, groups)
        if _shape(dy) != y_shape:
            raise ValueError(f"dy shape {_shape(dy)} does not match the output shape {y_shape} of "
                             f"x {_shape(x)} convolved with w {_shape(w)}")
        return self._conv2d_backward(dy, x, w, stride, padding, dilation, groups, bool(has_bias))

    # ------------------------------------------------------------ pooling
    def max_pool2d_forward(self, x, kernel=(2, 2), stride=(2, 2), padding=(0, 0)):
        self._check_array("x", x, 4)
        kernel, stride, padding, _ = self._pool_geometry(_shape(x), kernel, stride, padding)
        return self._max_pool2d_forward(x, kernel, stride, padding)

    def max_pool2d_backward(self, dy, argmax, x_shape):
        self._check_array("dy", dy, 4)
        self._check_array("argmax", argmax, 4, dtype=None)
        self._check_same("dy", dy, "argmax", argmax)
        x_shape = tuple(int(s) for s in x_shape)
        if len(x_shape) != 4 or x_shape[:2] != _shape(dy)[:2]:
            raise ValueError(f"x_shape {x_shape} does not match dy shape {_shape(dy)}")
        return self._max_pool2d_backward(dy, argmax, x_shape)

    def avg_pool2d_forward(self, x, kernel=(2, 2), stride=(2, 2), padding=(0, 0), count_include_pad=True):
        self._check_array("x", x, 4)
        kernel, stride, padding, _ = self._pool_geometry(_shape(x), kernel, stride, padding)
        return self._avg_pool2d_forward(x, kernel, stride, padding, bool(count_include_pad))

    def avg_pool2d_backward(self, dy, x_shape, kernel=(2, 2), stride=(2, 2), padding=(0, 0),
                            count_include_pad=True):
        self._check_array("dy", dy, 4)
        x_shape = tuple(int(s) for s in x_shape)
        if len(x_shape) != 4:
            raise ValueError(f"x_shape must have 4 dimensions, got {x_shape}")
        kernel, stride, padding, y_shape = self._pool_geometry(x_shape, kernel, stride, padding)
        if _shape(dy) != y_shape:
            raise ValueError(f"dy shape {_shape(dy)} does not match the pooled shape {y_shape} of x_shape {x_shape}")
        return self._avg_pool2d_backward(dy, x_shape, kernel, stride, padding, bool(count_include_pad))

    def global_avg_pool2d_forward(self, x):
        self._check_array("x", x, 4)
        return self._global_avg_pool2d_forward(x)

    def global_avg_pool2d_backward(self, dy, x_shape):
        self._check_array("dy", dy, 4)
        x_shape = tuple(int(s) for s in x_shape)
        if len(x_shape) != 4 or _shape(dy) != x_shape[:2] + (1, 1):
            raise ValueError(f"dy shape {_shape(dy)} does not match x_shape {x_shape}: expected {x_shape[:2] + (1, 1)}")
        return self._global_avg_pool2d_backward(dy, x_shape)

    # ------------------------------------------------------------ dense
    def _check_dense(self, x, w, b=None):
        self._check_array("x", x, 2)
        self._check_array("w", w, 2)
        if x.shape[1] != w.shape[1]:
            raise ValueError(f"x shape {_shape(x)} has {x.shape[1]} features, w shape {_shape(w)} expects {w.shape[1]}")
        if b is not None:
            self._check_array("b", b, 1)
            if _shape(b) != (w.shape[0],):
                raise ValueError(f"b shape {_shape(b)} does not match w shape {_shape(w)}: expected ({w.shape[0]},)")

    def dense_forward(self, x, w, b=None):
        self._check_dense(x, w, b)
        return self._dense_forward(x, w, b)

    def dense_backward(self, dy, x, w, has_bias=True):
        self._check_dense(x, w)
        self._check_array("dy", dy, 2)
        if _shape(dy) != (x.shape[0], w.shape[0]):
            raise ValueError(f"dy shape {_shape(dy)} does not match ({x.shape[0]}, {w.shape[0]}) "
                             f"from x {_shape(x)} and w {_shape(w)}")
        return self._dense_backward(dy, x, w, bool(has_bias))

    # ------------------------------------------------------------ activations
    def relu_forward(self, x):
        self._check_array("x", x)
        return self._relu_forward(x)

    def relu_backward(self, dy, x):
        self._check_array("dy", dy)
        self._check_same("dy", dy, "x", x)
        return self._relu_backward(dy, x)

    def leaky_relu_forward(self, x, negative_slope=0.01):
        self._check_array("x", x)
        return self._leaky_relu_forward(x, float(negative_slope))

    def leaky_relu_backward(self, dy, x, negative_slope=0.01):
        self._check_array("dy", dy)
        self._check_same("dy", dy, "x", x)
        return self._leaky_relu_backward(dy, x, float(negative_slope))

    def sigmoid_forward(self, x):
        self._check_array("x", x)
        return self._sigmoid_forward(x)

    def sigmoid_backward(self, dy, y):
        self._check_array("dy", dy)
        self._check_same("dy", dy, "y", y)
        return self._sigmoid_backward(dy, y)

    def tanh_forward(self, x):
        self._check_array("x", x)
        return self._tanh_forward(x)

    def tanh_backward(self, dy, y):
        self._check_array("dy", dy)
        self._check_same("dy", dy, "y", y)
        return self._tanh_backward(dy, y)

    def softmax_forward(self, x):
        self._check_array("x", x, 2)
        return self._softmax_forward(x)

    def softmax_backward(self, dy, y):
        self._check_array("dy", dy, 2)
        self._check_same("dy", dy, "y", y)
        return self._softmax_backward(dy, y)

    def _check_labels(self, logits, labels):
        self._check_array("logits", logits, 2)
        self._check_array("labels", labels, 1, dtype=None)
        if labels.shape[0] != logits.shape[0]:
            raise ValueError(f"labels shape {_shape(labels)} does not match logits shape {_shape(logits)}")
        if not np.issubdtype(np.dtype(labels.dtype), np.integer):
            raise ValueError(f"labels must be integers, got {np.dtype(labels.dtype).name}")

    def softmax_cross_entropy_forward(self, logits, labels):
        self._check_labels(logits, labels)
        return self._softmax_cross_entropy_forward(logits, labels)

    def softmax_cross_entropy_backward(self, probs, labels):
        self._check_labels(probs, labels)
        return self._softmax_cross_entropy_backward(probs, labels)

    def argmax(self, x):
        self._check_array("x", x, 2)
        if x.shape[1] < 1:
            raise ValueError(f"argmax needs at least one column, got x shape {_shape(x)}")
        return self._argmax(x)

    # ------------------------------------------------------------ batch norm
    def _check_bn(self, x, **params):
        self._check_array("x", x, (2, 4))
        C = x.shape[1]
        for name, p in params.items():
            self._check_array(name, p, 1)
            if _shape(p) != (C,):
                raise ValueError(f"{name} shape {_shape(p)} does not match the {C} channels of x shape {_shape(x)}")

    def batch_norm_forward(self, x, gamma, beta, running_mean, running_var, training=True, momentum=0.1, eps=1e-5):
        self._check_bn(x, gamma=gamma, beta=beta, running_mean=running_mean, running_var=running_var)
        if training and x.size // x.shape[1] < 2:
            raise ValueError(f"batch norm in training needs more than 1 value per channel, got x shape {_shape(x)}")
        return self._batch_norm_forward(x, gamma, beta, running_mean, running_var, bool(training),
                                        float(momentum), float(eps))

    def batch_norm_backward(self, dy, x, gamma, save_mean, save_invstd, training=True):
        self._check_bn(x, gamma=gamma, save_mean=save_mean, save_invstd=save_invstd)
        self._check_same("dy", dy, "x", x)
        return self._batch_norm_backward(dy, x, gamma, save_mean, save_invstd, bool(training))

    # ------------------------------------------------------------ dropout
    def dropout_forward(self, x, p=0.5, training=True, seed=0):
        self._check_array("x", x)
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout p must be in [0, 1), got {p}")
        return self._dropout_forward(x, float(p), bool(training), int(seed))

    def dropout_backward(self, dy, mask, p=0.5, training=True):
        self._check_array("dy", dy)
        self._check_array("mask", mask, dtype=np.uint8)
        self._check_same("dy", dy, "mask", mask)
        return self._dropout_backward(dy, mask, float(p), bool(training))

    # ------------------------------------------------------------ LRN
    def _check_lrn(self, size, alpha, beta, k):
        if int(size) < 1:
            raise ValueError(f"LRN size must be >= 1, got {size}")
        return int(size), float(alpha), float(beta), float(k)

    def lrn_forward(self, x, size=5, alpha=1e-4, beta=0.75, k=1.0):
        self._check_array("x", x, 4)
        return self._lrn_forward(x, *self._check_lrn(size, alpha, beta, k))

    def lrn_backward(self, dy, x, y, scale, size=5, alpha=1e-4, beta=0.75, k=1.0):
        self._check_array("x", x, 4)
        for name, a in (("dy", dy), ("y", y), ("scale", scale)):
            self._check_array(name, a, 4)
            self._check_same(name, a, "x", x)
        return self._lrn_backward(dy, x, y, scale, *self._check_lrn(size, alpha, beta, k))

    # ------------------------------------------------------------ merge
    def concat_forward(self, xs):
        if len(xs) < 1:
            raise ValueError("concat needs at least one input")
        for i, x in enumerate(xs):
            self._check_array(f"xs[{i}]", x)
            if _shape(x)[:1] + _shape(x)[2:] != _shape(xs[0])[:1] + _shape(xs[0])[2:]:
                raise ValueError(f"xs[{i}] shape {_shape(x)} does not match xs[0] shape {_shape(xs[0])} "
                                 f"outside axis 1")
        return self._concat_forward(list(xs))

    def concat_backward(self, dy, sizes):
        self._check_array("dy", dy)
        sizes = [int(s) for s in sizes]
        if sum(sizes) != dy.shape[1]:
            raise ValueError(f"sizes {sizes} do not add up to the {dy.shape[1]} channels of dy shape {_shape(dy)}")
        return self._concat_backward(dy, sizes)

    def add_forward(self, xs):
        if len(xs) < 1:
            raise ValueError("add needs at least one input")
        for i, x in enumerate(xs):
            self._check_array(f"xs[{i}]", x)
            self._check_same(f"xs[{i}]", x, "xs[0]", xs[0])
        return self._add_forward(list(xs))

    def add_backward(self, dy, n):
        self._check_array("dy", dy)
        return self._add_backward(dy, int(n))

    # ------------------------------------------------------------ pad
    def _check_pads(self, x_shape, pads, name="x"):
        try:
            pads = tuple(int(p) for p in pads)
        except (TypeError, ValueError):
            raise ValueError(f"pads must be 4 ints (top, bottom, left, right), got {pads!r}") from None
        if len(pads) != 4:
            raise ValueError(f"pads must be 4 ints (top, bottom, left, right), got {pads!r}")
        H, W = x_shape[2] + pads[0] + pads[1], x_shape[3] + pads[2] + pads[3]
        if min(pads[0], pads[1]) < -x_shape[2] or min(pads[2], pads[3]) < -x_shape[3] or H < 1 or W < 1:
            raise ValueError(f"pads {pads} crop all of {name} shape {x_shape}")
        return pads

    def pad2d_forward(self, x, pads=(0, 0, 0, 0), value=0.0):
        self._check_array("x", x, 4)
        return self._pad2d_forward(x, self._check_pads(_shape(x), pads), float(value))

    def pad2d_backward(self, dy, pads=(0, 0, 0, 0)):
        self._check_array("dy", dy, 4)
        pads = tuple(-p for p in self._check_pads(_shape(dy), tuple(-int(p) for p in pads), "dy"))
        return self._pad2d_backward(dy, pads)

    # ------------------------------------------------------------ optimizers
    def sgd_update(self, param, grad, velocity, lr, momentum=0.0, nesterov=False, weight_decay=0.0, l1=0.0):
        self._check_array("param", param)
        self._check_same("grad", grad, "param", param)
        self._check_same("velocity", velocity, "param", param)
        self._sgd_update(param, grad, velocity, float(lr), float(momentum), bool(nesterov),
                         float(weight_decay), float(l1))

    def adam_update(self, param, grad, m, v, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                    weight_decay=0.0, l1=0.0):
        self._check_array("param", param)
        for name, a in (("grad", grad), ("m", m), ("v", v)):
            self._check_same(name, a, "param", param)
        if int(step) < 1:
            raise ValueError(f"adam step counts from 1, got {step}")
        self._adam_update(param, grad, m, v, int(step), float(lr), float(beta1), float(beta2), float(eps),
                          float(weight_decay), float(l1))


class KernelBackend(Backend):
    """A backend whose private ops call a kernel table ``self.k``.

    ``self.k`` is any namespace with one function per op and direction, named
    as in ``kernels/reference.py`` without the ``_ref`` suffix and taking the
    same arguments (``conv2d_forward``, ``conv2d_backward_input``, ...).  The
    reference, CPU and CUDA backends differ only in that table and in their
    array helpers.
    """

    k = None

    def _conv2d_forward(self, x, w, b, stride, padding, dilation, groups):
        return self.k.conv2d_forward(x, w, b, stride, padding, dilation, groups)

    def _conv2d_backward(self, dy, x, w, stride, padding, dilation, groups, has_bias):
        dx = self.k.conv2d_backward_input(dy, w, x.shape, stride, padding, dilation, groups)
        dw = self.k.conv2d_backward_weight(dy, x, w.shape, stride, padding, dilation, groups)
        db = self.k.conv2d_backward_bias(dy) if has_bias else None
        return dx, dw, db

    def _max_pool2d_forward(self, x, kernel, stride, padding):
        return self.k.max_pool2d_forward(x, kernel, stride, padding)

    def _max_pool2d_backward(self, dy, argmax, x_shape):
        return self.k.max_pool2d_backward(dy, argmax, x_shape)

    def _avg_pool2d_forward(self, x, kernel, stride, padding, count_include_pad):
        return self.k.avg_pool2d_forward(x, kernel, stride, padding, count_include_pad)

    def _avg_pool2d_backward(self, dy, x_shape, kernel, stride, padding, count_include_pad):
        return self.k.avg_pool2d_backward(dy, x_shape, kernel, stride, padding, count_include_pad)

    def _global_avg_pool2d_forward(self, x):
        return self.k.global_avg_pool2d_forward(x)

    def _global_avg_pool2d_backward(self, dy, x_shape):
        return self.k.global_avg_pool2d_backward(dy, x_shape)

    def _dense_forward(self, x, w, b):
        return self.k.dense_forward(x, w, b)

    def _dense_backward(self, dy, x, w, has_bias):
        return (self.k.dense_backward_input(dy, w), self.k.dense_backward_weight(dy, x),
                self.k.dense_backward_bias(dy) if has_bias else None)

    def _relu_forward(self, x):
        return self.k.relu_forward(x)

    def _relu_backward(self, dy, x):
        return self.k.relu_backward(dy, x)

    def _leaky_relu_forward(self, x, negative_slope):
        return self.k.leaky_relu_forward(x, negative_slope)

    def _leaky_relu_backward(self, dy, x, negative_slope):
        return self.k.leaky_relu_backward(dy, x, negative_slope)

    def _sigmoid_forward(self, x):
        return self.k.sigmoid_forward(x)

    def _sigmoid_backward(self, dy, y):
        return self.k.sigmoid_backward(dy, y)

    def _tanh_forward(self, x):
        return self.k.tanh_forward(x)

    def _tanh_backward(self, dy, y):
        return self.k.tanh_backward(dy, y)

    def _softmax_forward(self, x):
        return self.k.softmax_forward(x)

    def _softmax_backward(self, dy, y):
        return self.k.softmax_backward(dy, y)

    def _softmax_cross_entropy_forward(self, logits, labels):
        return self.k.softmax_cross_entropy_forward(logits, labels)

    def _softmax_cross_entropy_backward(self, probs, labels):
        return self.k.softmax_cross_entropy_backward(probs, labels)

    def _argmax(self, x):
        return self.k.argmax(x)

    def _batch_norm_forward(self, x, gamma, beta, running_mean, running_var, training, momentum, eps):
        return self.k.batch_norm_forward(x, gamma, beta, running_mean, running_var, training, momentum, eps)

    def _batch_norm_backward(self, dy, x, gamma, save_mean, save_invstd, training):
        return self.k.batch_norm_backward(dy, x, gamma, save_mean, save_invstd, training)

    def _dropout_forward(self, x, p, training, seed):
        return self.k.dropout_forward(x, p, training, seed)

    def _dropout_backward(self, dy, mask, p, training):
        return self.k.dropout_backward(dy, mask, p, training)

    def _lrn_forward(self, x, size, alpha, beta, k):
        return self.k.lrn_forward(x, size, alpha, beta, k)

    def _lrn_backward(self, dy, x, y, scale, size, alpha, beta, k):
        return self.k.lrn_backward(dy, x, y, scale, size, alpha, beta, k)

    def _concat_forward(self, xs):
        return self.k.concat_forward(xs)

    def _concat_backward(self, dy, sizes):
        return self.k.concat_backward(dy, sizes)

    def _add_forward(self, xs):
        return self.k.add_forward(xs)

    def _add_backward(self, dy, n):
        return self.k.add_backward(dy, n)

    def _pad2d_forward(self, x, pads, value):
        return self.k.pad2d_forward(x, pads, value)

    def _pad2d_backward(self, dy, pads):
        return self.k.pad2d_backward(dy, pads)

    def _sgd_update(self, param, grad, velocity, lr, momentum, nesterov, weight_decay, l1):
        self.k.sgd_update(param, grad, velocity, lr, momentum, nesterov, weight_decay, l1)

    def _adam_update(self, param, grad, m, v, step, lr, beta1, beta2, eps, weight_decay, l1):
        self.k.adam_update(param, grad, m, v, step, lr, beta1, beta2, eps, weight_decay, l1)
