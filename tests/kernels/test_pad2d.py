"""pad2d (constant padding and cropping of H and W): the reference against numpy.pad, slicing
and finite differences, then every backend against the reference (exact: it only moves values)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from numbacnn.kernels.reference import pad2d_backward_ref, pad2d_forward_ref

pads_st = st.tuples(*[st.integers(-2, 3)] * 4)
shape_st = st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(3, 6), st.integers(3, 7))


def _assume_valid(shape, pads):
    """Filter pads that crop all of x (the backend refuses them: test_bad_pads_name_the_argument)."""
    t, b, l, r = pads
    assume(min(t, b) >= -shape[2] and min(l, r) >= -shape[3] and shape[2] + t + b >= 1 and shape[3] + l + r >= 1)


def _numpy_pad_crop(x, pads, value):
    """numpy.pad for the positive pads, slicing for the negative ones."""
    t, b, l, r = pads
    x = x[:, :, max(-t, 0):x.shape[2] - max(-b, 0), max(-l, 0):x.shape[3] - max(-r, 0)]
    return np.pad(x, ((0, 0), (0, 0), (max(t, 0), max(b, 0)), (max(l, 0), max(r, 0))), constant_values=value)


@settings(max_examples=40, deadline=None)
@given(shape=shape_st, pads=pads_st, value=st.sampled_from([0.0, 2.5, -np.inf]), seed=st.integers(0, 99))
def test_reference_matches_numpy_pad(shape, pads, value, seed):
    _assume_valid(shape, pads)
    x = np.random.default_rng(seed).standard_normal(shape)
    np.testing.assert_array_equal(pad2d_forward_ref(x, pads, value), _numpy_pad_crop(x, pads, value))


@settings(max_examples=20, deadline=None)
@given(shape=shape_st, pads=pads_st, seed=st.integers(0, 99))
def test_reference_backward_matches_finite_differences(shape, pads, seed):
    _assume_valid(shape, pads)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    dy = rng.standard_normal(pad2d_forward_ref(x, pads).shape)
    dx = pad2d_backward_ref(dy, pads)
    assert dx.shape == x.shape
    h, num = 1e-6, np.zeros_like(x)
    for i in np.ndindex(*x.shape):
        xp, xm = x.copy(), x.copy()
        xp[i] += h
        xm[i] -= h
        num[i] = ((pad2d_forward_ref(xp, pads) - pad2d_forward_ref(xm, pads)) * dy).sum() / (2 * h)
    np.testing.assert_allclose(dx, num, rtol=1e-6, atol=1e-8)


@settings(max_examples=25, deadline=None)
@given(shape=shape_st, pads=pads_st, value=st.sampled_from([0.0, -1.5, -np.inf]), seed=st.integers(0, 99))
def test_backend_matches_reference(backend, shape, pads, value, seed):
    _assume_valid(shape, pads)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    x0 = x.copy()
    y = backend.to_host(backend.pad2d_forward(backend.asarray(x), pads, value))
    np.testing.assert_array_equal(y, pad2d_forward_ref(x, pads, np.float32(value)))
    assert y.dtype == np.float32
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = backend.to_host(backend.pad2d_backward(backend.asarray(dy), pads))
    np.testing.assert_array_equal(dx, pad2d_backward_ref(dy, pads))
    np.testing.assert_array_equal(x, x0)


@pytest.mark.parametrize("pads, words", [((1, 2, 3), "4 ints"), ((-4, 0, 0, 0), "crop all"),
                                         ((0, 0, -3, -2), "crop all"), (("a", 0, 0, 0), "4 ints")])
def test_bad_pads_name_the_argument(backend, pads, words):
    x = backend.asarray(np.zeros((1, 1, 4, 5), np.float32))
    with pytest.raises(ValueError, match=words):
        backend.pad2d_forward(x, pads)


def test_backward_checks_dy_fits(backend):
    dy = backend.asarray(np.zeros((1, 1, 2, 2), np.float32))
    with pytest.raises(ValueError, match="crop all of dy"):
        backend.pad2d_backward(dy, (1, 1, 0, 0))
