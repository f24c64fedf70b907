"""The harness can fail: ``check_op`` rejects deliberately broken backends (mutants).

Each mutant is the reference backend with one kernel replaced by a subtly
wrong one; ``check_op`` must raise AssertionError on it, and must pass on the
unmodified reference.  This keeps the op tests from silently passing.
"""
from __future__ import annotations

import numpy as np
import pytest

from numbacnn.backends.reference import ReferenceBackend
from numbacnn.kernels import reference as R

from .check import ELEMENTWISE, EXACT, check_op, tol
from .strategies import CONV_EDGE_CASES


class _Table:
    def __init__(self, overrides):
        self.overrides = overrides

    def __getattr__(self, name):
        return self.overrides[name] if name in self.overrides else getattr(R, name + "_ref", None)


class Mutant(ReferenceBackend):
    name = "mutant"

    def __init__(self, **overrides):
        self.k = _Table(overrides)


rng = np.random.default_rng(0)
G = CONV_EDGE_CASES[6]  # dilated, strided, padded, grouped, non-square
X, W, B = (rng.standard_normal(s).astype(np.float32) for s in (G.x_shape, G.w_shape, (G.k,)))
P = rng.standard_normal((2, 3, 7, 6)).astype(np.float32)
TIES = rng.integers(0, 2, (2, 3, 7, 6)).astype(np.float32)
BN = [rng.standard_normal((4, 3, 2, 2)).astype(np.float32), np.ones(3, np.float32), np.zeros(3, np.float32),
      np.zeros(3, np.float32), np.ones(3, np.float32)]
POOL = dict(kernel=(3, 3), stride=(2, 1), padding=(1, 1))


def _ties_to_last(x, kernel, stride, padding):
    y, arg = R.max_pool2d_forward_ref(x[:, :, ::-1, ::-1].copy(), kernel, stride, padding)
    return y, arg  # wrong cells: the mirrored input's


def _write_into_input(x):
    y = R.relu_forward_ref(x)
    x[...] = y
    return y


def _clobber_dy(dy, x):
    dx = R.relu_backward_ref(dy, x)
    dy[...] = 0
    return dx


CONV = ("conv2d", [X, W, B], G.kwargs, dict(**tol(G.forward_terms + 1), grad_atol=tol(G.weight_grad_terms)["atol"]))
MUTANTS = {
    "conv forward drops the bias": (dict(conv2d_forward=lambda x, w, b, *a: R.conv2d_forward_ref(x, w, None, *a)),
                                    CONV),
    "conv dw misses the last sample": (dict(conv2d_backward_weight=lambda dy, x, *a: R.conv2d_backward_weight_ref(
        dy[:-1], x[:-1], *a)), CONV),
    "conv dx ignores dilation": (dict(conv2d_backward_input=lambda dy, w, s, st, p, d, g: R.conv2d_backward_input_ref(
        dy, w, s, st, p, (1, 1), g)), CONV),
    "conv db when has_bias is False": (dict(conv2d_backward=lambda dy, x, w, *a: (
        R.conv2d_backward_input_ref(dy, w, x.shape, *a[:4]), R.conv2d_backward_weight_ref(dy, x, w.shape, *a[:4]),
        R.conv2d_backward_bias_ref(dy))), ("conv2d", [X, W, None], G.kwargs, dict(
        **tol(G.forward_terms), grad_atol=tol(G.weight_grad_terms)["atol"]))),
    "max pool ties to the wrong cell": (dict(max_pool2d_forward=_ties_to_last), ("max_pool2d", [TIES], POOL, EXACT)),
    "avg pool always counts padding": (dict(avg_pool2d_forward=lambda x, k, s, p, c: R.avg_pool2d_forward_ref(
        x, k, s, p, True)), ("avg_pool2d", [P], dict(POOL, count_include_pad=False), tol(9))),
    "batch norm running var biased": (dict(batch_norm_forward=lambda x, g, b, rm, rv, t, mom, eps: (
        R.batch_norm_forward_ref(x, g, b, rm, rv, t, mom, eps), rv.__imul__(15 / 16))[0]),
        ("batch_norm", BN, dict(training=True), tol(16))),
    "dropout mask from another seed": (dict(dropout_forward=lambda x, p, t, s: R.dropout_forward_ref(x, p, t, s + 1)),
                                       ("dropout", [P], dict(p=0.5, training=True, seed=3), ELEMENTWISE)),
    "sgd ignores nesterov": (dict(sgd_update=lambda p, g, v, lr, m, n, wd, l1: R.sgd_update_ref(
        p, g, v, lr, m, False, wd, l1)), ("sgd_update", [P, TIES, P * 0.5], dict(lr=0.1, momentum=0.9, nesterov=True),
                                          ELEMENTWISE)),
    "relu writes into its input": (dict(relu_forward=_write_into_input), ("relu", [P], {}, ELEMENTWISE)),
    "relu backward clobbers dy": (dict(relu_backward=_clobber_dy), ("relu", [P], {}, ELEMENTWISE)),
    "tanh returns float64": (dict(tanh_forward=lambda x: np.tanh(x.astype(np.float64))), ("tanh", [P], {}, ELEMENTWISE)),
    "sigmoid returns a strided view": (dict(sigmoid_forward=lambda x: np.asfortranarray(R.sigmoid_forward_ref(x))),
                                       ("sigmoid", [P], {}, ELEMENTWISE)),
    "softmax off by one ulp-ish": (dict(softmax_forward=lambda x: R.softmax_forward_ref(x) * np.float32(1 + 1e-4)),
                                   ("softmax", [P[0, 0]], {}, tol(6))),
}


@pytest.mark.parametrize("case", list(MUTANTS))
def test_check_op_rejects_mutant(case):
    overrides, (op, inputs, kwargs, tols) = MUTANTS[case]
    mutant = Mutant(**overrides)
    check_op("reference", op, inputs, kwargs, **tols)  # the unmodified reference passes
    with pytest.raises(AssertionError):
        check_op(mutant, op, inputs, kwargs, **tols)
