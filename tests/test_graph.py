"""The DAG executor: gradients of branchy graphs (Inception block, ResNet block, both with
BatchNorm) against finite differences, config round trips, errors, weights, freezing."""
from __future__ import annotations

import json

import numpy as np
import pytest

from layers.gradcheck import BACKENDS, F64, assert_grad_close, load_backend, numeric_grad, sample_indices
from numbacnn import layers as L
from numbacnn.graph import Model
from numbacnn.models.inception import inception_block
from numbacnn.models.resnet import basic_block


def inception_model():
    m = Model("inc", (3, 6, 6))
    x = m.add(L.Conv2D(4, 3, padding=1, name="stem"))
    inception_block(m, x, "blk", 2, 2, 3, 1, 2, 2, batch_norm=True)
    m.add(L.LRN(3, alpha=0.5, k=2.0, name="lrn"))
    m.add(L.GlobalAvgPool2D(name="gap"))
    m.add(L.Flatten(name="flat"))
    m.add(L.Dense(3, name="fc"))
    return m


def resnet_model(shortcut):
    m = Model("res", (3, 6, 6))
    x = m.add(L.Conv2D(2, 3, padding=1, use_bias=False, name="stem"))
    x = basic_block(m, x, "b1", 2, 2, 1, shortcut)      # identity shortcut: fan-out + Add
    x = basic_block(m, x, "b2", 2, 4, 2, shortcut)      # projection / zero-pad shortcut
    m.add(L.Flatten(name="flat"), x)
    m.add(L.Dense(3, name="fc"))
    return m


def conv_relu_model():
    """Convolutions with a ReLU after them (Keras' activation="relu" and a ReLU node): both fused."""
    m = Model("convs", (2, 5, 5))
    m.add(L.Conv2D(3, 3, padding=1, activation="relu", name="c1"))
    m.add(L.Conv2D(2, 3, strides=2, name="c2"))
    m.add(L.ReLU(name="r2"))
    m.add(L.Flatten(name="flat"))
    m.add(L.Dense(3, name="fc"))
    return m


GRAPHS = {"inception": inception_model, "resnet_B": lambda: resnet_model("B"),
          "resnet_A": lambda: resnet_model("A"), "conv_relu": conv_relu_model}


def _perturb(m, rng):
    """Random (not default) gammas, betas and biases, so every gradient path is exercised."""
    w = m.get_weights()
    for state in w.values():
        for k, v in state.items():
            if k == "running_var":
                state[k] = rng.uniform(0.5, 2.0, v.shape)
            elif k != "weight":
                state[k] = v + 0.3 * rng.standard_normal(v.shape)
    m.set_weights(w)
    return m.get_weights()


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("graph", sorted(GRAPHS))
def test_graph_backward_matches_finite_differences(graph, training):
    rng = np.random.default_rng(1)
    m = GRAPHS[graph]().build(F64, seed=0)
    _perturb(m, rng)
    x = rng.standard_normal((3,) + m.input_shape)
    r = rng.standard_normal((3, 3))

    def loss():
        return float((m.forward(x, training) * r).sum())

    loss()
    dx = m.backward(r.copy())
    assert_grad_close(dx, numeric_grad(loss, x, indices=sample_indices(rng, x.size, 30)), f"{graph}: d input")
    checked = 0
    for lname, pname, p, g, _ in m.named_parameters():
        g = np.array(g)
        num = numeric_grad(loss, p, indices=sample_indices(rng, p.size, 6))
        assert_grad_close(g, num, f"{graph}: d {lname}/{pname}")
        checked += 1
    assert checked == sum(len(layer.params) for layer in m.layers.values())


@pytest.mark.parametrize("backend_name", BACKENDS)
@pytest.mark.parametrize("graph", sorted(GRAPHS))
def test_graph_float32_backend_matches_float64(graph, backend_name):
    be = load_backend(backend_name)
    rng = np.random.default_rng(2)
    ref = GRAPHS[graph]().build(F64, seed=0)
    weights = _perturb(ref, rng)
    m = GRAPHS[graph]().build(be, seed=5)
    m.set_weights(weights)
    x = rng.standard_normal((4,) + m.input_shape)
    r = rng.standard_normal((4, 3))
    y64, y = ref.forward(x, True), m.forward(x.astype(np.float32), True)
    np.testing.assert_allclose(be.to_host(y), y64, rtol=1e-3, atol=1e-4)
    dx64, dx = ref.backward(r), m.backward(r.astype(np.float32))
    np.testing.assert_allclose(be.to_host(dx), dx64, rtol=1e-3, atol=1e-4)
    grads64 = {(ln, pn): np.array(g) for ln, pn, _, g, _ in ref.named_parameters()}
    for ln, pn, _, g, _ in m.named_parameters():
        np.testing.assert_allclose(be.to_host(g), grads64[ln, pn], rtol=1e-3, atol=2e-4, err_msg=f"{ln}/{pn}")


def test_fan_out_into_one_node_sums_gradients():
    m = Model("twice", (2, 3, 3))
    x = m.add(L.ReLU(name="r"))
    m.add(L.Add(name="a"), [x, x, "input"])
    m.build(F64)
    xin = np.random.default_rng(0).standard_normal((2, 2, 3, 3))
    y = m.forward(xin)
    np.testing.assert_allclose(y, 2 * np.maximum(xin, 0) + xin)
    dy = np.random.default_rng(1).standard_normal(y.shape)
    dy_before = dy.copy()
    dx = m.backward(dy)
    np.testing.assert_allclose(dx, dy_before * (2 * (xin > 0) + 1))
    np.testing.assert_array_equal(dy, dy_before)  # the caller's gradient is not summed into


# ---------------------------------------------------------------- fusion
def test_fusions_follow_from_what_follows_what():
    """A ReLU whose only input is a BatchNorm or an Add feeding nothing else is applied by that node (and becomes
    a no-op node); nothing is fused into a target of the pass; ``fuse = False`` turns it all off."""
    m = resnet_model("A").build("cpu")
    fz = m.fusions()
    assert fz.absorbed == {"b1_1_relu": "b1_1_bn", "b1_out": "b1_add", "b2_1_relu": "b2_1_bn", "b2_out": "b2_add"}
    assert fz.activation == {p: "relu" for p in fz.absorbed.values()}
    # every convolution feeding only its batch norm hands it its output's statistics
    assert fz.stats_from == {f"{b}_bn": f"{b}_conv" for b in ("b1_1", "b1_2", "b2_1", "b2_2")}
    assert fz.stats_to == {c: b for b, c in fz.stats_from.items()}
    assert conv_relu_model().build("cpu").fusions().absorbed == {"c1_relu": "c1", "r2": "c2"}
    assert "b1_1_bn" not in m.fusions(until="b1_1_bn").activation      # a target keeps its own output
    assert m.fusions(until="b1_1_relu").absorbed == {"b1_1_relu": "b1_1_bn"}
    m.fuse = False
    assert not any(m.fusions())


def test_inference_passes_fold_batch_norms_into_the_convolutions_before_them():
    """forward(inference=True): each convolution whose only consumer is a batch norm folds it (the batch norm and
    the ReLU after it become no-op nodes, the convolution applies the ReLU), to float32 rounding of the unfolded
    evaluation pass, on every backend; a target is never folded; a backward after such a pass, or a pass that is
    both inference and training, is refused with a message that says why."""
    m = resnet_model("A").build("cpu")
    fz = m.fusions(fold=True)
    assert fz.folded == {f"{b}_conv": f"{b}_bn" for b in ("b1_1", "b1_2", "b2_1", "b2_2")}
    assert fz.absorbed == {"b1_1_bn": "b1_1_conv", "b1_1_relu": "b1_1_bn", "b1_2_bn": "b1_2_conv",
                           "b2_1_bn": "b2_1_conv", "b2_1_relu": "b2_1_bn", "b2_2_bn": "b2_2_conv",
                           "b1_out": "b1_add", "b2_out": "b2_add"}
    assert fz.activation == {"b1_1_conv": "relu", "b2_1_conv": "relu", "b1_add": "relu", "b2_add": "relu"}
    assert not fz.stats_from and not m.fusions().folded                 # training passes fold nothing
    assert "b1_1_conv" not in m.fusions(until="b1_1_conv", fold=True).folded
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2,) + m.input_shape).astype(np.float32)
    for backend_name in BACKENDS:
        m = resnet_model("A").build(load_backend(backend_name), seed=0)
        for layer in m.layers.values():          # statistics and scales far from the initial 0, 1
            if "running_var" in layer.buffers:
                layer.buffers["running_mean"][:] = rng.standard_normal(layer.buffers["running_mean"].shape)
                layer.buffers["running_var"][:] = rng.random(layer.buffers["running_var"].shape) + 0.5
                layer.params["gamma"][:] = rng.standard_normal(layer.params["gamma"].shape)
        y, y0 = m.backend.to_host(m.forward(x, inference=True)), m.backend.to_host(m.forward(x))
        np.testing.assert_allclose(y, y0, rtol=1e-4, atol=1e-5 * np.abs(y0).max(), err_msg=backend_name)
        m.forward(x, inference=True)
        with pytest.raises(ValueError, match="after a forward with inference=True"):
            m.backward(np.ones((2, 3), np.float32))
        with pytest.raises(ValueError, match="inference=True cannot also be training"):
            m.forward(x, training=True, inference=True)


def test_a_relu_after_a_node_with_two_consumers_is_not_fused():
    m = Model("two", (2, 3, 3))
    b = m.add(L.BatchNorm(name="bn"))
    r = m.add(L.ReLU(name="r"), b)
    m.add(L.Add(name="a"), [r, b])
    m.build("cpu")
    assert not m.fusions().absorbed


@pytest.mark.parametrize("graph", sorted(GRAPHS))
@pytest.mark.parametrize("backend_name", BACKENDS)
def test_fused_passes_equal_unfused_ones(graph, backend_name):
    """Forward and backward with the graph's fusions give what the nodes one by one give (a fused ReLU's mask is
    the ReLU's; the statistics handed over describe the same values), and a fused node asked for by name
    (``until``) still gives its own output, before the ReLU."""
    be, rng = load_backend(backend_name), np.random.default_rng(4)
    fused, plain = GRAPHS[graph]().build(be, seed=0), GRAPHS[graph]().build(be, seed=0)
    plain.fuse = False
    x, r = rng.standard_normal((3,) + fused.input_shape).astype(np.float32), rng.standard_normal((3, 3))
    for training in (True, False):
        y, y0 = fused.forward(x, training), plain.forward(x, training)
        np.testing.assert_allclose(be.to_host(y), be.to_host(y0), rtol=1e-5, atol=1e-6)
        dx, dx0 = fused.backward(r.astype(np.float32)), plain.backward(r.astype(np.float32))
        # a block's first convolution completes the gradient of the block input, the ReLU after the Add before
        done = {n for n, layer in fused.layers.items() if layer.relu_grad_done}
        assert done == ({"b1_add"} if graph.startswith("resnet") else set())
        np.testing.assert_allclose(be.to_host(dx), be.to_host(dx0), rtol=1e-5, atol=1e-6)
        for (ln, pn, _, g, _), (_, _, _, g0, _) in zip(fused.named_parameters(), plain.named_parameters()):
            np.testing.assert_allclose(be.to_host(g), be.to_host(g0), rtol=1e-5, atol=1e-6, err_msg=f"{ln}/{pn}")
    bn = next(n for n in fused.fusions().activation if n in fused.layers)
    np.testing.assert_array_equal(be.to_host(fused.forward(x, False, until=bn)),
                                  be.to_host(plain.forward(x, False, until=bn)))
    assert (be.to_host(fused.forward(x, False, until=bn)) < 0).any()      # before the ReLU


# ---------------------------------------------------------------- config
@pytest.mark.parametrize("graph", sorted(GRAPHS))
def test_config_round_trip_and_shuffled_nodes(graph, tmp_path):
    m = GRAPHS[graph]().build(F64, seed=3)
    cfg = m.to_config()
    assert set(cfg) == {"name", "input_shape", "nodes", "output"}
    path = tmp_path / "m.json"
    path.write_text(json.dumps(cfg))
    again = Model.from_json_file(path)
    assert again.to_config() == cfg
    shuffled = dict(cfg, nodes=cfg["nodes"][::-1])
    m2 = Model.from_config(shuffled).build(F64, seed=3)
    assert set(m2.layers) == set(m.layers)
    order = list(m2.layers)
    assert all(order.index(i) < order.index(n) for n in order for i in m2.inputs_of(n) if i != "input")
    x = np.random.default_rng(0).standard_normal((2,) + m.input_shape)
    np.testing.assert_array_equal(m2.forward(x), m.forward(x))


def test_build_is_seeded():
    a, b, c = (resnet_model("B").build(F64, seed=s) for s in (1, 1, 2))
    wa, wb, wc = a.get_weights(), b.get_weights(), c.get_weights()
    np.testing.assert_array_equal(wa["stem"]["weight"], wb["stem"]["weight"])
    assert not np.array_equal(wa["stem"]["weight"], wc["stem"]["weight"])


@pytest.mark.parametrize("edit, words", [
    (lambda c: c["nodes"].append({"name": "x", "class_name": "ReLU", "config": {}, "inputs": ["nope"]}),
     ["nope"]),
    (lambda c: c["nodes"].append(dict(c["nodes"][0])), ["used twice"]),
    (lambda c: c.update(output="nope"), ["output", "nope"]),
    (lambda c: c["nodes"][0].update(class_name="Conv9D"), ["Conv9D"]),
    (lambda c: c["nodes"][0].update(inputs=[c["output"]]), ["cycle"]),
    (lambda c: c.pop("nodes"), ["nodes"]),
])
def test_bad_configs(edit, words):
    cfg = json.loads(inception_model().to_json())
    edit(cfg)
    with pytest.raises(ValueError) as e:
        Model.from_config(cfg)
    for w in words:
        assert w in str(e.value)


def test_dead_node_and_bad_json(tmp_path):
    m = Model("dead", (1, 4, 4))
    m.add(L.ReLU(name="unused"))
    m.add(L.Flatten(name="flat"), "input")
    with pytest.raises(ValueError, match="unused"):
        m.infer_shapes()
    p = tmp_path / "bad.json"
    p.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        Model.from_json_file(p)
    with pytest.raises(ValueError, match="missing.json"):
        Model.from_json_file(tmp_path / "missing.json")


def test_shape_errors_name_layer_and_shapes():
    m = Model("bad", (3, 8, 8))
    a = m.add(L.Conv2D(4, 3, name="c1"))
    b = m.add(L.Conv2D(4, 3, padding=1, name="c2"), "input")
    m.add(L.Add(name="join"), [a, b])
    with pytest.raises(ValueError) as e:
        m.build(F64)
    assert "'join'" in str(e.value) and "(4, 6, 6)" in str(e.value) and "(4, 8, 8)" in str(e.value)
    ok = Model.sequential("ok", (3, 8, 8), [L.Conv2D(2, 3, name="c")]).build(F64)
    with pytest.raises(ValueError) as e:
        ok.forward(np.zeros((2, 3, 9, 8)))
    assert "(2, 3, 9, 8)" in str(e.value) and "(N, 3, 8, 8)" in str(e.value)


# ---------------------------------------------------------------- weights, freezing, summary
def test_get_set_weights():
    m = resnet_model("B").build(F64, seed=0)
    w = m.get_weights()
    assert set(w["b1_1_bn"]) == {"gamma", "beta", "running_mean", "running_var"}
    assert all(v.dtype == np.float32 for s in w.values() for v in s.values())
    other = resnet_model("B").build(F64, seed=9)
    param_before = other.layers["stem"].params["weight"]
    loaded, skipped = other.set_weights(w)
    assert skipped == [] and len(loaded) == sum(len(s) for s in w.values())
    assert other.layers["stem"].params["weight"] is param_before  # loaded in place
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 6))
    np.testing.assert_allclose(other.forward(x), m.forward(x))

    bad = {k: dict(v) for k, v in w.items()}
    bad["fc"]["weight"] = np.zeros((5, 4))
    bad["ghost"] = {"weight": np.zeros(1)}
    with pytest.raises(ValueError) as e:
        other.set_weights(bad)
    assert "'fc'" in str(e.value) and "'weight'" in str(e.value) and "(5, 4)" in str(e.value) \
        and str(tuple(w["fc"]["weight"].shape)) in str(e.value)
    loaded, skipped = other.set_weights(bad, strict=False)
    assert sorted(skipped) == ["fc/weight", "ghost/weight"] and "fc/bias" in loaded
    del bad["ghost"], bad["fc"]
    with pytest.raises(ValueError, match="fc/weight"):
        other.set_weights(bad)


def test_freeze_and_counts():
    m = resnet_model("B")
    total, trainable = m.count_params()
    assert total == trainable > 0
    m.freeze(["stem", "b1_1_bn"])
    total2, trainable2 = m.count_params()
    assert total2 == total and trainable2 == total - 2 * 3 * 9 - 4
    m.build(F64)
    names = {(ln, pn) for ln, pn, *_ in m.named_parameters()}
    assert ("stem", "weight") not in names and ("b1_1_bn", "gamma") not in names and ("fc", "bias") in names
    m.unfreeze("stem")
    assert ("stem", "weight") in {(ln, pn) for ln, pn, *_ in m.named_parameters()}
    with pytest.raises(ValueError, match="nope"):
        m.freeze(["nope"])


def test_training_flag_updates_running_stats_only_in_training():
    m = resnet_model("B").build(F64)
    x = np.random.default_rng(0).standard_normal((4, 3, 6, 6)) + 3.0
    m.forward(x, training=False)
    np.testing.assert_array_equal(m.layers["b1_1_bn"].buffers["running_mean"], 0)
    m.forward(x, training=True)
    assert np.abs(m.layers["b1_1_bn"].buffers["running_mean"]).sum() > 0


def test_summary_rows():
    m = Model.sequential("s", (3, 8, 8), [L.Conv2D(4, 3, padding=1, name="c"), L.ReLU(name="r"),
                                          L.MaxPool2D(2, name="p"), L.Flatten(name="f"), L.Dense(5, name="d")])
    rows = {r["name"]: r for r in m.summary_rows()}
    assert rows["c"]["output_shape"] == (4, 8, 8) and rows["c"]["params"] == 4 * 3 * 9 + 4
    assert rows["c"]["flops"] == 2 * 4 * 8 * 8 * 3 * 9 + 4 * 8 * 8
    assert rows["d"]["params"] == 5 * 64 + 5 and rows["d"]["flops"] == 2 * 5 * 64 + 5
    assert rows["p"]["type"] == "MaxPool2D" and rows["p"]["output_shape"] == (4, 4, 4)
    assert rows["d"]["inputs"] == ["f"]


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_set_backend_moves_weights(backend_name):
    be = load_backend(backend_name)
    m = resnet_model("B").build(F64, seed=0)
    w = m.get_weights()
    m.set_backend(be)
    assert m.backend is be and m.layers["stem"].params["weight"].dtype == np.float32
    for ln, state in m.get_weights().items():
        for k, v in state.items():
            np.testing.assert_array_equal(v, w[ln][k])
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 6)).astype(np.float32)
    assert be.to_host(m.forward(x)).shape == (2, 3)
