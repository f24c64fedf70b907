"""The references themselves: gradients against finite differences, values against PyTorch.

(a) Every ``*_backward_ref`` is checked against central finite differences of
    its ``*_forward_ref`` in float64 on small shapes (``fd_grad``).
(b) Where PyTorch is installed, forward values, every gradient, max-pool
    indices, batch-norm running statistics and optimizer steps are compared
    with PyTorch in float64.
(c) The float32 reference stays within half of check.py's tolerance model of
    the float64 reference (so two float32 implementations fit the model).
(d) Generically, every op of the op table: each gradient against finite
    differences, and forward and gradients against its PyTorch twin.

Run:  pytest tests/kernels/test_reference.py
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from layers.gradcheck import F64
from numbacnn.kernels import reference as R
from numbacnn.ops import OPS

from .check import tol
from .strategies import (CASES, CONV_EDGE_CASES, POOL_EDGE_CASES, conv_geometries, nchw_shapes, pool_geometries,
                         seeds)

# Finite differences cost two forwards per input element: fewer examples than the profile's.
FEW = settings(max_examples=max(5, settings.default.max_examples // 2))
small_conv = conv_geometries(max_batch=2, max_channels=4, max_size=6, max_kernel=3, max_padding=2, max_dilation=2)
small_pool = pool_geometries(max_batch=2, max_channels=3, max_size=7, max_kernel=4)


def normal(rng, shape, scale=1.0):
    return rng.standard_normal(shape) * scale


def distinct(rng, shape):
    """float64 values at least 1/size apart (no ties, no kinks within a finite-difference step)."""
    n = int(np.prod(shape))
    return (rng.permutation(n).reshape(shape) - n / 2) / n * 4.0


def away_from_zero(rng, shape):
    x = normal(rng, shape)
    x[np.abs(x) < 1e-3] = 0.5
    return x


# ---------------------------------------------------------------- (a) finite differences
def fd_grad(f, args, wrt, dy, eps=1e-6):
    """Central finite-difference gradient of ``sum(f(*args) * dy)`` with respect to ``args[wrt]``.

    f      : function of the float64 arrays ``args`` returning one array (or a scalar)
    args   : list of float64 arrays; ``args[wrt]`` is perturbed in place and restored
    dy     : the upstream gradient, f's output shape (1.0 for a scalar)
    returns an array of ``args[wrt]``'s shape
    """
    x = args[wrt]
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        old = x[idx]
        x[idx] = old + eps
        up = np.sum(f(*args) * dy)
        x[idx] = old - eps
        down = np.sum(f(*args) * dy)
        x[idx] = old
        g[idx] = (up - down) / (2 * eps)
    return g


def check_fd(f, args, grads, rng, wrt=None, rtol=1e-5, atol=1e-6):
    """Compare the analytic ``grads(dy, *args)`` (one per input in ``wrt``) with ``fd_grad``."""
    y = np.asarray(f(*args))
    dy = rng.standard_normal(y.shape) if y.ndim else 1.0
    analytic = grads(dy, *args)
    for j, i in enumerate(range(len(args)) if wrt is None else wrt):
        np.testing.assert_allclose(analytic[j], fd_grad(f, args, i, dy), rtol=rtol, atol=atol,
                                   err_msg=f"gradient of input {i}")


@FEW
@given(g=small_conv, seed=seeds)
@example(g=CONV_EDGE_CASES[3], seed=0)
@example(g=CONV_EDGE_CASES[6], seed=0)
def test_fd_conv2d(g, seed):
    rng = np.random.default_rng(seed)
    kw = g.kwargs
    check_fd(lambda x, w, b: R.conv2d_forward_ref(x, w, b, **kw),
             [normal(rng, g.x_shape), normal(rng, g.w_shape), normal(rng, (g.k,))],
             lambda dy, x, w, b: (R.conv2d_backward_input_ref(dy, w, x.shape, **kw),
                                  R.conv2d_backward_weight_ref(dy, x, w.shape, **kw),
                                  R.conv2d_backward_bias_ref(dy)), rng)


@FEW
@given(g=small_pool, seed=seeds)
@example(g=POOL_EDGE_CASES[4], seed=0)
def test_fd_max_pool2d(g, seed):
    rng = np.random.default_rng(seed)
    kw = g.kwargs
    check_fd(lambda x: R.max_pool2d_forward_ref(x, **kw)[0], [distinct(rng, g.x_shape)],
             lambda dy, x: [R.max_pool2d_backward_ref(dy, R.max_pool2d_forward_ref(x, **kw)[1], x.shape)], rng)


@FEW
@given(g=small_pool, count_include_pad=st.booleans(), seed=seeds)
@example(g=POOL_EDGE_CASES[4], count_include_pad=False, seed=0)
def test_fd_avg_pool2d(g, count_include_pad, seed):
    rng = np.random.default_rng(seed)
    kw = dict(g.kwargs, count_include_pad=count_include_pad)
    check_fd(lambda x: R.avg_pool2d_forward_ref(x, **kw), [normal(rng, g.x_shape)],
             lambda dy, x: [R.avg_pool2d_backward_ref(dy, x.shape, **kw)], rng)


def test_fd_global_avg_pool2d():
    rng = np.random.default_rng(0)
    check_fd(R.global_avg_pool2d_forward_ref, [normal(rng, (2, 3, 4, 5))],
             lambda dy, x: [R.global_avg_pool2d_backward_ref(dy, x.shape)], rng)


def test_fd_dense():
    rng = np.random.default_rng(0)
    check_fd(R.dense_forward_ref, [normal(rng, (3, 7)), normal(rng, (5, 7)), normal(rng, (5,))],
             lambda dy, x, w, b: (R.dense_backward_input_ref(dy, w), R.dense_backward_weight_ref(dy, x),
                                  R.dense_backward_bias_ref(dy)), rng)


@pytest.mark.parametrize("op", ["relu", "leaky_relu", "sigmoid", "tanh", "softmax"])
def test_fd_activation(op):
    """relu and leaky_relu take x in their backward; sigmoid, tanh and softmax take y."""
    rng = np.random.default_rng(1)
    fwd, bwd = getattr(R, f"{op}_forward_ref"), getattr(R, f"{op}_backward_ref")
    if op == "leaky_relu":
        fwd_, bwd_ = (lambda x: fwd(x, 0.2)), (lambda dy, x: [bwd(dy, x, 0.2)])
    elif op == "relu":
        fwd_, bwd_ = fwd, (lambda dy, x: [bwd(dy, x)])
    else:
        fwd_, bwd_ = fwd, (lambda dy, x: [bwd(dy, fwd(x))])
    check_fd(fwd_, [away_from_zero(rng, (4, 6)) * 3], bwd_, rng)


@pytest.mark.parametrize("scale", [1.0, 50.0])
def test_fd_softmax_cross_entropy(scale):
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 6, 4)
    check_fd(lambda z: R.softmax_cross_entropy_forward_ref(z, labels)[0], [normal(rng, (4, 6), scale)],
             lambda dy, z: [R.softmax_cross_entropy_backward_ref(R.softmax_cross_entropy_forward_ref(z, labels)[1],
                                                                 labels)], rng)


@pytest.mark.parametrize("shape", [(5, 3), (2, 3, 2, 3), (1, 2, 1, 2)])
@pytest.mark.parametrize("training", [True, False])
def test_fd_batch_norm(shape, training):
    rng = np.random.default_rng(3)
    c = shape[1]
    rm, rv = normal(rng, c), rng.uniform(0.5, 2.0, c)

    def fwd(x, gamma, beta):
        return R.batch_norm_forward_ref(x, gamma, beta, rm.copy(), rv.copy(), training)[0]

    def bwd(dy, x, gamma, beta):
        _, mean, invstd = R.batch_norm_forward_ref(x, gamma, beta, rm.copy(), rv.copy(), training)
        return R.batch_norm_backward_ref(dy, x, gamma, mean, invstd, training)

    check_fd(fwd, [normal(rng, shape), normal(rng, c), normal(rng, c)], bwd, rng)


@pytest.mark.parametrize("p", [0.0, 0.3, 0.8])
def test_fd_dropout(p):
    rng = np.random.default_rng(4)
    check_fd(lambda x: R.dropout_forward_ref(x, p, True, 11)[0], [normal(rng, (3, 4, 5))],
             lambda dy, x: [R.dropout_backward_ref(dy, R.dropout_forward_ref(x, p, True, 11)[1], p, True)], rng)


@pytest.mark.parametrize("size,alpha,beta,k", [(5, 1e-4, 0.75, 1.0), (2, 0.5, 0.75, 1.0), (3, 1.0, 1.0, 2.0),
                                               (7, 0.3, 0.5, 1.0)])
def test_fd_lrn(size, alpha, beta, k):
    rng = np.random.default_rng(5)
    kw = dict(size=size, alpha=alpha, beta=beta, k=k)

    def bwd(dy, x):
        y, scale = R.lrn_forward_ref(x, **kw)
        return [R.lrn_backward_ref(dy, x, y, scale, **kw)]

    check_fd(lambda x: R.lrn_forward_ref(x, **kw)[0], [normal(rng, (2, 6, 2, 3))], bwd, rng)


def test_fd_concat_and_add():
    rng = np.random.default_rng(6)
    args = [normal(rng, (2, c, 3, 2)) for c in (1, 3, 2)]
    check_fd(lambda *xs: R.concat_forward_ref(list(xs)), args, lambda dy, *xs: R.concat_backward_ref(dy, [1, 3, 2]),
             rng)
    args = [normal(rng, (2, 3, 2)) for _ in range(3)]
    check_fd(lambda *xs: R.add_forward_ref(list(xs)), args, lambda dy, *xs: R.add_backward_ref(dy, 3), rng)


def test_fd_helper_detects_a_wrong_gradient():
    """The finite-difference check itself fails on a wrong backward (here: a factor 2 in tanh's)."""
    rng = np.random.default_rng(7)
    with pytest.raises(AssertionError):
        check_fd(R.tanh_forward_ref, [normal(rng, (3, 3))],
                 lambda dy, x: [2 * R.tanh_backward_ref(dy, R.tanh_forward_ref(x))], rng)


# ---------------------------------------------------------------- (c) the tolerance model
@given(g=conv_geometries(), seed=seeds)
def test_float32_reference_within_tolerance_model(g, seed):
    """float32 vs float64 conv error stays under HALF of check.tol: two float32 codes then fit tol."""
    rng = np.random.default_rng(seed)
    x, w, b = normal(rng, g.x_shape), normal(rng, g.w_shape), normal(rng, (g.k,))
    y64 = R.conv2d_forward_ref(x, w, b, **g.kwargs)
    dy = normal(rng, y64.shape)
    f32 = [a.astype(np.float32) for a in (x, w, b, dy)]
    y32 = R.conv2d_forward_ref(*f32[:3], **g.kwargs)
    dx = [R.conv2d_backward_input_ref(d, ww, g.x_shape, **g.kwargs) for d, ww in ((dy, w), (f32[3], f32[1]))]
    dw = [R.conv2d_backward_weight_ref(d, xx, g.w_shape, **g.kwargs) for d, xx in ((dy, x), (f32[3], f32[0]))]
    db = [R.conv2d_backward_bias_ref(d) for d in (dy, f32[3])]
    for (a64, a32), terms in (((y64, y32), g.forward_terms + 1), (dx, g.input_grad_terms),
                              (dw, g.weight_grad_terms), (db, g.weight_grad_terms)):
        t = tol(terms)
        np.testing.assert_allclose(a32, a64, rtol=t["rtol"] / 2, atol=t["atol"] / 2)


# ---------------------------------------------------------------- (b) PyTorch
@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def _t(torch, a, grad=False):
    return torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=grad)


def _np(t):
    return t.detach().numpy()


@FEW
@given(g=conv_geometries(max_size=10), bias=st.booleans(), seed=seeds)
@example(g=CONV_EDGE_CASES[6], bias=True, seed=0)
@example(g=CONV_EDGE_CASES[5], bias=False, seed=0)
def test_torch_conv2d(torch, g, bias, seed):
    F = torch.nn.functional
    rng = np.random.default_rng(seed)
    x, w = normal(rng, g.x_shape), normal(rng, g.w_shape)
    b = normal(rng, (g.k,)) if bias else None
    xt, wt = _t(torch, x, True), _t(torch, w, True)
    bt = _t(torch, b, True) if bias else None
    yt = F.conv2d(xt, wt, bt, stride=g.stride, padding=g.padding, dilation=g.dilation, groups=g.groups)
    y = R.conv2d_forward_ref(x, w, b, **g.kwargs)
    np.testing.assert_allclose(y, _np(yt), rtol=1e-10, atol=1e-10)
    dy = normal(rng, y.shape)
    yt.backward(_t(torch, dy))
    np.testing.assert_allclose(R.conv2d_backward_input_ref(dy, w, x.shape, **g.kwargs), _np(xt.grad), atol=1e-10)
    np.testing.assert_allclose(R.conv2d_backward_weight_ref(dy, x, w.shape, **g.kwargs), _np(wt.grad), atol=1e-10)
    if bias:
        np.testing.assert_allclose(R.conv2d_backward_bias_ref(dy), _np(bt.grad), atol=1e-10)


@given(g=pool_geometries(), ties=st.booleans(), seed=seeds)
@example(g=POOL_EDGE_CASES[4], ties=True, seed=0)
def test_torch_max_pool2d(torch, g, ties, seed):
    """Values, indices (flat h * W + w, ties to the first cell) and dx."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 3, g.x_shape).astype(np.float64) if ties else normal(rng, g.x_shape)
    xt = _t(torch, x, True)
    yt, it = torch.nn.functional.max_pool2d(xt, g.kernel, g.stride, g.padding, return_indices=True)
    y, arg = R.max_pool2d_forward_ref(x, **g.kwargs)
    np.testing.assert_array_equal(y, _np(yt))
    np.testing.assert_array_equal(arg, it.numpy())
    dy = normal(rng, y.shape)
    yt.backward(_t(torch, dy))
    np.testing.assert_allclose(R.max_pool2d_backward_ref(dy, arg, x.shape), _np(xt.grad), atol=1e-12)


@given(g=pool_geometries(), count_include_pad=st.booleans(), seed=seeds)
@example(g=POOL_EDGE_CASES[4], count_include_pad=False, seed=0)
@example(g=POOL_EDGE_CASES[4], count_include_pad=True, seed=0)
def test_torch_avg_pool2d(torch, g, count_include_pad, seed):
    rng = np.random.default_rng(seed)
    x = normal(rng, g.x_shape)
    kw = dict(g.kwargs, count_include_pad=count_include_pad)
    xt = _t(torch, x, True)
    yt = torch.nn.functional.avg_pool2d(xt, g.kernel, g.stride, g.padding, count_include_pad=count_include_pad)
    y = R.avg_pool2d_forward_ref(x, **kw)
    np.testing.assert_allclose(y, _np(yt), rtol=1e-12, atol=1e-12)
    dy = normal(rng, y.shape)
    yt.backward(_t(torch, dy))
    np.testing.assert_allclose(R.avg_pool2d_backward_ref(dy, x.shape, **kw), _np(xt.grad), atol=1e-12)


@given(shape=st.one_of(nchw_shapes(max_size=6), st.tuples(st.integers(2, 8), st.integers(1, 8))),
       training=st.booleans(), momentum=st.sampled_from([0.1, 0.5]), seed=seeds)
def test_torch_batch_norm(torch, shape, training, momentum, seed):
    """Output, every gradient, and the in-place running-statistics update (unbiased variance)."""
    rng = np.random.default_rng(seed)
    if training and np.prod(shape) // shape[1] < 2:
        shape = (2,) + tuple(shape[1:])
    c = shape[1]
    x, gamma, beta = normal(rng, shape), normal(rng, c), normal(rng, c)
    rm, rv = normal(rng, c), rng.uniform(0.5, 2.0, c)
    rmt, rvt = _t(torch, rm), _t(torch, rv)
    xt, gt, bt = _t(torch, x, True), _t(torch, gamma, True), _t(torch, beta, True)
    yt = torch.nn.functional.batch_norm(xt, rmt, rvt, gt, bt, training=training, momentum=momentum, eps=1e-5)
    y, mean, invstd = R.batch_norm_forward_ref(x, gamma, beta, rm, rv, training, momentum, 1e-5)
    np.testing.assert_allclose(y, _np(yt), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(rm, rmt.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(rv, rvt.numpy(), rtol=1e-12, atol=1e-12)
    dy = normal(rng, shape)
    yt.backward(_t(torch, dy))
    for ours, theirs in zip(R.batch_norm_backward_ref(dy, x, gamma, mean, invstd, training), (xt, gt, bt)):
        np.testing.assert_allclose(ours, _np(theirs.grad), rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("size,alpha,beta,k", [(5, 1e-4, 0.75, 1.0), (2, 0.5, 0.75, 1.0), (4, 1.0, 1.0, 2.0),
                                               (7, 0.3, 0.5, 1.0), (1, 0.1, 0.75, 1.0)])
def test_torch_lrn(torch, size, alpha, beta, k):
    rng = np.random.default_rng(8)
    x = normal(rng, (2, 6, 3, 4))
    xt = _t(torch, x, True)
    yt = torch.nn.functional.local_response_norm(xt, size, alpha, beta, k)
    y, scale = R.lrn_forward_ref(x, size, alpha, beta, k)
    np.testing.assert_allclose(y, _np(yt), rtol=1e-12, atol=1e-12)
    dy = normal(rng, y.shape)
    yt.backward(_t(torch, dy))
    np.testing.assert_allclose(R.lrn_backward_ref(dy, x, y, scale, size, alpha, beta, k), _np(xt.grad),
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("scale", [1.0, 30.0, 1e4])
def test_torch_softmax_cross_entropy(torch, scale):
    rng = np.random.default_rng(9)
    logits, labels = normal(rng, (5, 7), scale), rng.integers(0, 7, 5)
    zt = _t(torch, logits, True)
    lt = torch.nn.functional.cross_entropy(zt, torch.tensor(labels))
    loss, probs = R.softmax_cross_entropy_forward_ref(logits, labels)
    np.testing.assert_allclose(loss, lt.item(), rtol=1e-12)
    lt.backward()
    np.testing.assert_allclose(R.softmax_cross_entropy_backward_ref(probs, labels), _np(zt.grad), atol=1e-12)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_torch_dropout_scaling(torch, p):
    """PyTorch's inverted dropout: kept values scaled by 1 / (1 - p), same for the gradient;
    identity in evaluation.  Our mask keeps a 1 - p fraction."""
    rng = np.random.default_rng(10)
    x = normal(rng, (64, 64)) + 5.0  # no zeros, so torch's mask is y != 0
    xt = _t(torch, x, True)
    yt = torch.nn.functional.dropout(xt, p, training=True)
    mask_t = (_np(yt) != 0).astype(np.uint8)
    np.testing.assert_allclose(R.dropout_backward_ref(x, mask_t, p, True), _np(yt), rtol=1e-12)
    dy = normal(rng, x.shape)
    yt.backward(_t(torch, dy))
    np.testing.assert_allclose(R.dropout_backward_ref(dy, mask_t, p, True), _np(xt.grad), rtol=1e-12)
    np.testing.assert_array_equal(R.dropout_forward_ref(x, p, False, 3)[0],
                                  _np(torch.nn.functional.dropout(_t(torch, x), p, training=False)))
    n = 200_000
    kept = R.dropout_forward_ref(np.ones(n, np.float32), p, True, 12345)[1].mean()
    assert abs(kept - (1 - p)) < 5 * np.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("momentum,nesterov,weight_decay", [(0.0, False, 0.0), (0.9, False, 0.0),
                                                             (0.9, True, 0.0), (0.5, False, 1e-2),
                                                             (0.9, True, 0.1), (0.0, False, 0.1)])
def test_torch_sgd(torch, momentum, nesterov, weight_decay):
    rng = np.random.default_rng(11)
    p = normal(rng, (4, 5))
    v = np.zeros_like(p)
    pt = _t(torch, p, True)
    opt = torch.optim.SGD([pt], lr=0.1, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    for _ in range(4):
        g = normal(rng, p.shape)
        pt.grad = _t(torch, g)
        opt.step()
        R.sgd_update_ref(p, g, v, 0.1, momentum, nesterov, weight_decay)
        np.testing.assert_allclose(p, _np(pt), rtol=1e-12, atol=1e-12)


def test_torch_sgd_l1_is_sign_added_to_the_gradient(torch):
    """PyTorch has no L1 term; ours is equivalent to adding l1 * sign(p) to the gradient."""
    rng = np.random.default_rng(12)
    p = normal(rng, 10)
    p[::3] = 0.0
    v = np.zeros_like(p)
    pt = _t(torch, p, True)
    opt = torch.optim.SGD([pt], lr=0.1, momentum=0.9)
    for _ in range(3):
        g = normal(rng, p.shape)
        pt.grad = _t(torch, g) + 0.01 * torch.sign(pt.detach())
        opt.step()
        R.sgd_update_ref(p, g, v, 0.1, 0.9, False, 0.0, 0.01)
        np.testing.assert_allclose(p, _np(pt), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("lr,betas,eps,weight_decay", [(1e-3, (0.9, 0.999), 1e-8, 0.0),
                                                       (0.1, (0.5, 0.9), 1e-3, 0.0),
                                                       (1e-2, (0.9, 0.999), 1e-8, 0.1)])
def test_torch_adam(torch, lr, betas, eps, weight_decay):
    rng = np.random.default_rng(13)
    p = normal(rng, (3, 7))
    m, v = np.zeros_like(p), np.zeros_like(p)
    pt = _t(torch, p, True)
    opt = torch.optim.Adam([pt], lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    for step in range(1, 6):
        g = normal(rng, p.shape)
        pt.grad = _t(torch, g)
        opt.step()
        R.adam_update_ref(p, g, m, v, step, lr, betas[0], betas[1], eps, weight_decay)
        np.testing.assert_allclose(p, _np(pt), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- every op of the table, generically
# The tests above target each op's own hazards (ties, kinks, padding).  These two run every op of the
# op table that has a backward (finite differences) or a PyTorch twin (``Op.torch``) on the cases of
# its strategy, so an op added to the table has its reference checked without a test of its own.
def _f64(tree):
    if isinstance(tree, (list, tuple)):
        return type(tree)(_f64(t) for t in tree)
    if isinstance(tree, np.ndarray) and tree.dtype == np.float32:
        return tree.astype(np.float64)
    return tree


def _leaves(tree):
    """The float64 arrays of a (nested) result, in order; None entries are kept."""
    if isinstance(tree, (list, tuple)):
        return [leaf for t in tree for leaf in _leaves(t)]
    return [tree] if tree is None or (isinstance(tree, np.ndarray) and tree.dtype.kind == "f") else []


def _case64(op, data):
    """A strategy case in float64, with distinct values in the first input (no ties, no kinks)."""
    case = data.draw(CASES[op.name](small=True), label="case")
    inputs = _f64(case.inputs)
    first = _leaves(inputs)[0]
    assume(first is not None and len(np.unique(first)) == first.size)
    return inputs, case.kwargs


@FEW
@pytest.mark.parametrize("op", sorted(n for n, op in OPS.items() if op.grad is not None))
@given(data=st.data())
def test_fd_every_op(op, data):
    """Every gradient the backward returns, against central differences of the forward (float64)."""
    op = OPS[op]
    inputs, kw = _case64(op, data)
    forward, backward = getattr(F64, op.forward), getattr(F64, f"{op.name}_backward")

    def loss_parts(*args):
        out = forward(*args, **kw)
        return out[0] if isinstance(out, tuple) else out

    out = forward(*_f64(_copy_tree(inputs)), **kw)
    y = np.asarray(out[0] if isinstance(out, tuple) else out)
    assume(np.all(np.isfinite(y)))
    dy = np.random.default_rng(0).standard_normal(y.shape) if op.upstream else 1.0
    args, bkw = op.grad(None if not op.upstream else dy, inputs, out, kw)
    grads = _leaves(backward(*args, **bkw))
    targets = [(i, a) for i, a in enumerate(inputs) if isinstance(a, np.ndarray) and a.dtype == np.float64]
    for (i, _), g in zip(targets, grads):
        if g is not None:
            np.testing.assert_allclose(g, fd_grad(loss_parts, inputs, i, dy), rtol=1e-5, atol=1e-5,
                                       err_msg=f"{op.name}: gradient of input {i}")


def _copy_tree(tree):
    if isinstance(tree, (list, tuple)):
        return type(tree)(_copy_tree(t) for t in tree)
    return tree.copy() if isinstance(tree, np.ndarray) else tree


@FEW
@pytest.mark.parametrize("op", sorted(n for n, op in OPS.items() if op.torch is not None))
@given(data=st.data())
def test_torch_every_op(torch, op, data):
    """The forward and every gradient against the op's PyTorch twin (``Op.torch``), in float64."""
    op = OPS[op]
    inputs, kw = _case64(op, data)
    out = getattr(F64, op.forward)(*_copy_tree(inputs), **kw)
    y = out[0] if isinstance(out, tuple) else out
    ts = [_t(torch, a, True) if isinstance(a, np.ndarray) and a.dtype == np.float64 else a for a in inputs]
    ty = op.torch(torch.nn.functional, *ts, **kw)
    np.testing.assert_allclose(y, _np(ty), rtol=1e-10, atol=1e-10, err_msg=f"{op.name}: forward")
    dy = np.random.default_rng(1).standard_normal(y.shape)
    ty.backward(_t(torch, dy))
    args, bkw = op.grad(dy, inputs, out, kw)
    grads = _leaves(getattr(F64, f"{op.name}_backward")(*args, **bkw))
    for t, g in zip([t for t in ts if hasattr(t, "grad")], grads):
        if g is not None:
            np.testing.assert_allclose(g, _np(t.grad), rtol=1e-9, atol=1e-10, err_msg=f"{op.name}: gradient")
