"""Every layer: config JSON round trip, backward vs finite differences (float64 reference),
float32 backends vs the float64 result, shape errors naming the layer and both shapes."""
from __future__ import annotations

import json

import numpy as np
import pytest
from kernels.strategies import LAYER_CASES

from numbacnn import layers as L
from numbacnn.layers import LAYERS, layer_from_config

from .gradcheck import BACKENDS, F64, assert_grad_close, load_backend, numeric_grad

CASES = LAYER_CASES
N = 3


def test_cases_cover_every_layer():
    assert {type(make()).__name__ for make, _, _ in CASES.values()} == set(LAYERS)


@pytest.mark.parametrize("case", sorted(CASES))
def test_config_json_round_trip(case):
    layer = CASES[case][0]()
    layer.name = "some_layer"
    cfg = layer.get_config()
    again = json.loads(json.dumps(cfg))
    assert again == cfg
    clone = layer_from_config(type(layer).__name__, again)
    assert type(clone) is type(layer) and clone.get_config() == cfg
    assert set(cfg) == set(type(layer).__init__.__code__.co_varnames[1:type(layer).__init__.__code__.co_argcount])


def _setup(case, backend, seed=0):
    make, shapes, training = CASES[case]
    layer = make()
    layer.name = case
    layer.build(shapes)
    layer.set_backend(backend)
    rng = np.random.default_rng(seed)
    layer.init_params(rng)
    host = {k: v + 0.1 * rng.standard_normal(v.shape) for k, v in layer.host_state().items()
            if k in layer.params}  # move gamma/bias away from 1/0
    host.update({k: v for k, v in layer.host_state().items() if k in layer.buffers})
    if "running_var" in host:
        host["running_mean"] = rng.standard_normal(host["running_mean"].shape)
        host["running_var"] = rng.uniform(0.5, 2.0, host["running_var"].shape)
    xs = [rng.standard_normal((N,) + s) for s in shapes]
    r = rng.standard_normal((N,) + layer.output_shape)
    return layer, host, xs, r, training


def _load(layer, host):
    for k, v in host.items():
        target = layer.params if k in layer.params else layer.buffers
        target[k] = layer.backend.asarray(np.array(v, copy=True))


def _run(layer, xs, r, training):
    if hasattr(layer, "step"):
        layer.step = 0  # the same dropout mask for every evaluation
    y = layer.forward([layer.backend.asarray(x) for x in xs], training)
    return y


@pytest.mark.parametrize("case", sorted(CASES))
def test_backward_matches_finite_differences(case):
    layer, host, xs, r, training = _setup(case, F64)
    _load(layer, host)
    y = _run(layer, xs, r, training)
    assert y.dtype == np.float64 and y.shape == (N,) + layer.output_shape
    dxs = layer.backward(r.copy())
    grads = {k: np.array(v) for k, v in layer.grads.items()}
    assert len(dxs) == len(xs)

    def loss():
        return float((_run(layer, xs, r, training) * r).sum())

    for i, x in enumerate(xs):
        assert_grad_close(dxs[i], numeric_grad(loss, x), f"{case}: d input {i}")
    for k in layer.params:
        assert_grad_close(grads[k], numeric_grad(loss, layer.params[k]), f"{case}: d {k}")


@pytest.mark.parametrize("backend_name", BACKENDS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_float32_backend_matches_float64(case, backend_name):
    be = load_backend(backend_name)
    ref, host, xs, r, training = _setup(case, F64)
    _load(ref, host)
    y64 = _run(ref, xs, r, training)
    dx64 = ref.backward(r.copy())
    layer, _, _, _, _ = _setup(case, be)
    _load(layer, {k: v.astype(np.float32) for k, v in host.items()})
    y = _run(layer, [x.astype(np.float32) for x in xs], r, training)
    assert y.dtype == np.float32
    np.testing.assert_allclose(be.to_host(y), y64, rtol=1e-4, atol=1e-4)
    dxs = layer.backward(be.asarray(r))
    for a, b in zip(dxs, dx64):
        np.testing.assert_allclose(be.to_host(a), b, rtol=1e-4, atol=1e-4)
    for k in ref.grads:
        np.testing.assert_allclose(be.to_host(layer.grads[k]), ref.grads[k], rtol=1e-4, atol=1e-3)
    for k in ref.buffers:  # batch norm running statistics updated (or not) alike
        np.testing.assert_allclose(be.to_host(layer.buffers[k]), ref.buffers[k], rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- layer behaviour
def test_dropout_fresh_reproducible_masks():
    def masks(seed):
        d = L.Dropout(0.5, seed=seed, name="d")
        d.build([(50,)])
        d.set_backend(F64)
        d.init_params(np.random.default_rng(0))
        x = np.ones((2, 50))
        return [np.array(d.forward([x], True)) for _ in range(3)]
    a, b, c = masks(3), masks(3), masks(4)
    for m1, m2 in zip(a, b):
        np.testing.assert_array_equal(m1, m2)
    assert not np.array_equal(a[0], a[1]) and not np.array_equal(a[1], a[2])
    assert not np.array_equal(a[0], c[0])
    assert set(np.unique(a[0])) == {0.0, 2.0}


def test_dropout_seed_none_follows_build_rng():
    def first_mask(build_seed):
        d = L.Dropout(0.5, name="d")
        d.build([(64,)])
        d.set_backend(F64)
        d.init_params(np.random.default_rng(build_seed))
        return np.array(d.forward([np.ones((1, 64))], True))
    np.testing.assert_array_equal(first_mask(1), first_mask(1))
    assert not np.array_equal(first_mask(1), first_mask(2))


def test_frozen_batch_norm_uses_and_keeps_running_stats():
    bn = L.BatchNorm(name="bn", trainable=False)
    bn.build([(2, 3, 3)])
    bn.set_backend(F64)
    bn.init_params(np.random.default_rng(0))
    bn.buffers["running_mean"][:] = [1.0, -1.0]
    bn.buffers["running_var"][:] = [4.0, 0.25]
    x = np.random.default_rng(1).standard_normal((4, 2, 3, 3))
    y = bn.forward([x], training=True)
    expect = (x - np.array([1.0, -1.0]).reshape(1, 2, 1, 1)) / np.sqrt(np.array([4.0, 0.25]) + 1e-5).reshape(1, 2, 1, 1)
    np.testing.assert_allclose(y, expect, rtol=1e-12)
    np.testing.assert_array_equal(bn.buffers["running_mean"], [1.0, -1.0])


def test_regularized_names():
    for layer, shapes, expect in ((L.Conv2D(2, 3), [(1, 5, 5)], {"weight"}), (L.Dense(3), [(4,)], {"weight"}),
                                  (L.BatchNorm(), [(3,)], set())):
        layer.build(shapes)
        assert layer.regularized == expect and set(layer.param_shapes) >= expect


def test_he_default_and_initializer_scale():
    conv = L.Conv2D(64, 3, name="c")
    conv.build([(32, 8, 8)])
    conv.init_params(np.random.default_rng(0))
    w = conv.params["weight"]
    assert w.dtype == np.float32 and w.shape == (64, 32, 3, 3)
    assert abs(w.std() - np.sqrt(2.0 / (32 * 9))) < 0.03 * np.sqrt(2.0 / (32 * 9))
    np.testing.assert_array_equal(conv.params["bias"], 0)


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("layer, shapes, words", [
    (L.Dense(3, name="fc"), [(4, 5, 5)], ["'fc'", "(4, 5, 5)", "(F,)"]),
    (L.Conv2D(2, 5, name="c1"), [(1, 3, 3)], ["'c1'", "(1, 3, 3)"]),
    (L.Conv2D(2, 3, name="c2"), [(5,)], ["'c2'", "(5,)", "(C, H, W)"]),
    (L.Conv2D(4, 3, groups=2, name="c3"), [(3, 5, 5)], ["'c3'", "(3, 5, 5)", "groups=2"]),
    (L.MaxPool2D(4, name="p"), [(1, 3, 3)], ["'p'", "(1, 3, 3)"]),
    (L.Add(name="a"), [(2, 3, 3), (3, 3, 3)], ["'a'", "(2, 3, 3)", "(3, 3, 3)"]),
    (L.Concatenate(name="cat"), [(2, 3, 3), (2, 4, 3)], ["'cat'", "(2, 3, 3)", "(2, 4, 3)"]),
    (L.Transpose((0, 2, 1), name="tp"), [(2, 3, 3)], ["'tp'", "(2, 3, 3)"]),
    (L.Binary("mul", name="m"), [(2, 3), (3, 2)], ["'m'", "(2, 3)", "(3, 2)"]),
    (L.ReLU(name="r"), [(2,), (2,)], ["'r'", "1 input"]),
])
def test_shape_errors_name_layer_and_shapes(layer, shapes, words):
    with pytest.raises(ValueError) as e:
        layer.build(shapes)
    for w in words:
        assert w in str(e.value)


@pytest.mark.parametrize("make, words", [
    (lambda: L.Conv2D(0), ["filters"]),
    (lambda: L.Conv2D(4, 3, padding=[1, 2, 0, 0]), ["asymmetric"]),
    (lambda: L.Conv2D(4, kernel_size="x"), ["kernel_size"]),
    (lambda: L.Conv2D(4, kernel_initializer="lecun"), ["lecun", "he_normal"]),
    (lambda: L.MaxPool2D(2, padding=2), ["padding"]),
    (lambda: L.Dropout(1.0), ["rate"]),
    (lambda: L.BatchNorm(eps=0), ["eps"]),
    (lambda: layer_from_config("Conv3D", {}), ["Conv3D"]),
    (lambda: layer_from_config("Dense", {"units": 3, "bogus": 1}), ["bogus"]),
])
def test_bad_arguments(make, words):
    with pytest.raises(ValueError) as e:
        make()
    for w in words:
        assert w in str(e.value)
