"""The CUDA backend's behaviour without a GPU (normal process): one clear RuntimeError."""
from __future__ import annotations

import pytest

from numbacnn import config
from numbacnn.backends import cuda_available, numba_cuda_missing_reason


@pytest.mark.skipif(config.CUDASIM or cuda_available(), reason="a GPU or the CUDA simulator is available here")
def test_cuda_without_a_gpu_raises_one_clear_line():
    """Without numba-cuda the error says to install it; with it but no GPU, how to use the simulator."""
    from numbacnn.backends.cuda import CUDABackend

    expected = "needs numba-cuda" if numba_cuda_missing_reason() else "NUMBA_ENABLE_CUDASIM=1"
    with pytest.raises(RuntimeError, match=expected) as info:
        CUDABackend()
    assert "\n" not in str(info.value)


@pytest.mark.skipif(not (config.CUDASIM or cuda_available()), reason="needs a GPU or NUMBA_ENABLE_CUDASIM=1")
def test_get_backend_cuda_builds_the_kernel_table():
    from numbacnn.backends import get_backend
    from numbacnn.kernels.cuda import conv2d, dense, elementwise, norm, pad, pool2d

    be = get_backend("cuda")
    assert be.name == "cuda"
    for module in (conv2d, pool2d, dense, elementwise, norm, pad):
        for name in module.__all__:
            assert getattr(be.k, name) is getattr(module, name)
    # every kernel the op table's methods need is in the table (or composed from ones that are)
    for op in ("conv2d_forward", "conv2d_backward_input", "conv2d_backward_weight", "conv2d_backward_bias",
               "max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward", "avg_pool2d_backward",
               "global_avg_pool2d_forward", "global_avg_pool2d_backward", "dense_forward", "dense_backward_input",
               "dense_backward_weight", "dense_backward_bias", "relu_forward", "relu_backward",
               "leaky_relu_forward", "leaky_relu_backward", "sigmoid_forward", "sigmoid_backward", "tanh_forward",
               "tanh_backward", "softmax_forward", "softmax_backward", "softmax_cross_entropy_forward",
               "softmax_cross_entropy_backward", "batch_norm_forward", "batch_norm_backward", "dropout_forward",
               "dropout_backward", "lrn_forward", "lrn_backward", "concat_forward", "concat_backward",
               "add_forward", "add_backward", "pad2d_forward", "pad2d_backward", "argmax", "sgd_update",
               "adam_update"):
        assert callable(getattr(be.k, op)), op
