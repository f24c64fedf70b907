"""Optimizers and schedules against their reference formulas and against torch.optim."""
import json
import math

import numpy as np
import pytest

from numbacnn.backends import get_backend
from numbacnn.optim import SGD, Adam, get_optimizer, optimizer_from_state
from numbacnn.schedules import Constant, Cosine, ReduceOnPlateau, StepDecay, get_schedule, schedule_from_json


def _backend():
    try:
        be = get_backend("cpu")
        be.k.sgd_update, be.k.adam_update  # noqa: B018  (kernels present?)
        return be
    except (ImportError, AttributeError):
        return get_backend("reference")


class _Layer:
    def __init__(self, name, params, regularized, trainable=True):
        self.name, self.params, self.regularized, self.trainable = name, params, set(regularized), trainable
        self.grads = {k: np.zeros_like(v) for k, v in params.items()}


class _Model:
    """The two things an optimizer uses: ``backend`` and ``named_parameters()``."""

    def __init__(self, be, layers):
        self.backend, self.layers = be, {l.name: l for l in layers}

    def named_parameters(self):
        for l in self.layers.values():
            if l.trainable:
                for k in l.params:
                    yield l.name, k, l.params[k], l.grads[k], l


def _make(seed=0, trainable=True):
    rng = np.random.default_rng(seed)
    be = _backend()
    dense = _Layer("fc", {"w": be.asarray(rng.standard_normal((4, 3))), "b": be.asarray(rng.standard_normal(4))},
                   {"w"})
    frozen = _Layer("frozen", {"w": be.asarray(rng.standard_normal((2, 2)))}, {"w"}, trainable=trainable)
    return _Model(be, [dense, frozen]), rng


def _set_grads(model, rng):
    for l in model.layers.values():
        for k, p in l.params.items():
            l.grads[k] = model.backend.asarray(rng.standard_normal(p.shape))


def _host(model):
    return {f"{l.name}/{k}": np.array(model.backend.to_host(p), dtype=np.float64)
            for l in model.layers.values() for k, p in l.params.items()}


@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_sgd_matches_formula(momentum, nesterov):
    model, rng = _make()
    opt = SGD(lr=0.05, momentum=momentum, nesterov=nesterov, weight_decay=0.01, l1=0.002)
    p = _host(model)
    vel = {k: np.zeros_like(a) for k, a in p.items()}
    for _ in range(4):
        _set_grads(model, rng)
        for l in model.layers.values():
            for k in l.params:
                key = f"{l.name}/{k}"
                g = np.array(l.grads[k], dtype=np.float64)
                if k in l.regularized:    # bias "b" is not penalised by default
                    g = g + 0.01 * p[key] + 0.002 * np.sign(p[key])
                if momentum:
                    vel[key] = momentum * vel[key] + g
                    g = g + momentum * vel[key] if nesterov else vel[key]
                p[key] = p[key] - 0.05 * g
        opt.step(model)
    got = _host(model)
    for key in p:
        np.testing.assert_allclose(got[key], p[key], rtol=1e-5, atol=1e-6, err_msg=key)
    assert opt.iterations == 4


def test_adam_matches_formula():
    model, rng = _make()
    opt = Adam(lr=0.01, beta1=0.8, beta2=0.99, eps=1e-7, weight_decay=0.1, l1=0.01)
    p = _host(model)
    m = {k: np.zeros_like(a) for k, a in p.items()}
    v = {k: np.zeros_like(a) for k, a in p.items()}
    for t in range(1, 6):
        _set_grads(model, rng)
        for l in model.layers.values():
            for k in l.params:
                key = f"{l.name}/{k}"
                g = np.array(l.grads[k], dtype=np.float64)
                if k in l.regularized:
                    g = g + 0.1 * p[key] + 0.01 * np.sign(p[key])
                m[key] = 0.8 * m[key] + 0.2 * g
                v[key] = 0.99 * v[key] + 0.01 * g * g
                p[key] -= 0.01 * (m[key] / (1 - 0.8 ** t)) / (np.sqrt(v[key] / (1 - 0.99 ** t)) + 1e-7)
        opt.step(model)
    got = _host(model)
    for key in p:
        np.testing.assert_allclose(got[key], p[key], rtol=1e-5, atol=1e-6, err_msg=key)


def test_frozen_layers_are_skipped_and_regularize_all():
    model, rng = _make(trainable=False)
    before = _host(model)
    _set_grads(model, rng)
    for l in model.layers.values():       # zero grads: only the penalties move a parameter
        for k in l.grads:
            l.grads[k] = model.backend.asarray(np.zeros(l.params[k].shape))
    SGD(lr=0.1, weight_decay=0.5).step(model)
    after = _host(model)
    np.testing.assert_array_equal(after["frozen/w"], before["frozen/w"])        # frozen: untouched
    np.testing.assert_array_equal(after["fc/b"], before["fc/b"])                # bias: not penalised
    np.testing.assert_allclose(after["fc/w"], before["fc/w"] * (1 - 0.05), rtol=1e-6)
    SGD(lr=0.1, weight_decay=0.5, regularize_all=True).step(model)
    np.testing.assert_allclose(_host(model)["fc/b"], before["fc/b"] * (1 - 0.05), rtol=1e-6)


@pytest.mark.parametrize("make", [lambda: SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
                                  lambda: Adam(lr=0.01, weight_decay=1e-3, l1=1e-4)])
def test_state_export_import_resumes_exactly(make):
    model_a, rng_a = _make(1)
    model_b, rng_b = _make(1)
    opt_a = make()
    for _ in range(5):
        _set_grads(model_a, rng_a)
        opt_a.step(model_a)
    opt_b = make()
    for _ in range(3):
        _set_grads(model_b, rng_b)
        opt_b.step(model_b)
    state = opt_b.state_dict()
    json.dumps(state["config"])                               # hyper-parameters are JSON-able
    assert all(isinstance(a, np.ndarray) for a in state["arrays"].values())
    opt_c = optimizer_from_state({**state, "arrays": {k: a.copy() for k, a in state["arrays"].items()}})
    assert opt_c.get_config() == opt_b.get_config() and opt_c.iterations == 3
    for _ in range(2):
        _set_grads(model_b, rng_b)
        opt_c.step(model_b)
    a, b = _host(model_a), _host(model_b)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert opt_c.state_dict()["arrays"]["fc/w/step"] == 5


def test_state_shape_mismatch_is_reported():
    model, rng = _make()
    opt = SGD(lr=0.1, momentum=0.5)
    _set_grads(model, rng)
    opt.step(model)
    state = opt.state_dict()
    state["arrays"]["fc/w/velocity"] = np.zeros((9, 9), np.float32)
    opt2 = optimizer_from_state(state)
    with pytest.raises(ValueError, match=r"fc/w/velocity has shape \(9, 9\)"):
        opt2.step(model)


def test_bad_hyper_parameters():
    with pytest.raises(ValueError, match="momentum"):
        SGD(lr=0.1, momentum=1.5)
    with pytest.raises(ValueError, match="nesterov"):
        SGD(lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="lr"):
        Adam(lr=-1)
    with pytest.raises(ValueError, match="unknown optimizer"):
        get_optimizer("rmsprop")


# ---------------------------------------------------------------- vs torch.optim
@pytest.mark.parametrize("kind", ["sgd", "nesterov", "adam"])
def test_against_torch_optim(kind):
    torch = pytest.importorskip("torch")
    model, rng = _make(3)
    tparams = {f"{l.name}/{k}": torch.tensor(np.array(p), requires_grad=True)
               for l in model.layers.values() for k, p in l.params.items()}
    decayed = [t for key, t in tparams.items() if key.endswith("/w")]
    plain = [t for key, t in tparams.items() if not key.endswith("/w")]
    groups = [{"params": decayed, "weight_decay": 1e-2}, {"params": plain, "weight_decay": 0.0}]
    if kind == "adam":
        ours, theirs = Adam(lr=3e-3, weight_decay=1e-2), torch.optim.Adam(groups, lr=3e-3)
    else:
        ours = SGD(lr=0.05, momentum=0.9, nesterov=kind == "nesterov", weight_decay=1e-2)
        theirs = torch.optim.SGD(groups, lr=0.05, momentum=0.9, nesterov=kind == "nesterov")
    for _ in range(6):
        _set_grads(model, rng)
        for l in model.layers.values():
            for k in l.params:
                tparams[f"{l.name}/{k}"].grad = torch.tensor(np.array(l.grads[k]))
        ours.step(model)
        theirs.step()
    got = _host(model)
    for key, t in tparams.items():
        np.testing.assert_allclose(got[key], t.detach().numpy(), rtol=1e-5, atol=1e-6, err_msg=key)


# ---------------------------------------------------------------- schedules
def test_schedule_formulas():
    assert [Constant(0.1).lr_for_epoch(e) for e in range(3)] == [0.1] * 3
    s = StepDecay(1.0, step_size=2, gamma=0.5)
    assert [s.lr_for_epoch(e) for e in range(5)] == [1.0, 1.0, 0.5, 0.5, 0.25]
    c = Cosine(1.0, total_epochs=4, min_lr=0.2)
    assert c.lr_for_epoch(0) == 1.0 and math.isclose(c.lr_for_epoch(2), 0.6)
    assert math.isclose(c.lr_for_epoch(4), 0.2) and math.isclose(c.lr_for_epoch(9), 0.2)
    with pytest.raises(ValueError, match="unknown schedule"):
        get_schedule("linear", 0.1)


def test_schedules_against_torch():
    torch = pytest.importorskip("torch")
    for ours, make in [(StepDecay(0.1, step_size=3, gamma=0.3),
                        lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=3, gamma=0.3)),
                       (Cosine(0.1, total_epochs=7, min_lr=0.01),
                        lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=7, eta_min=0.01))]:
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        sched = make(opt)
        for e in range(7):
            assert math.isclose(ours.lr_for_epoch(e), opt.param_groups[0]["lr"], rel_tol=1e-9), (ours, e)
            opt.step()
            sched.step()


def test_plateau_against_torch_and_resume():
    torch = pytest.importorskip("torch")
    metrics = [1.0, 0.9, 0.95, 0.91, 0.92, 0.93, 0.5, 0.6, 0.7, 0.8, 0.9, 0.4]
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    theirs = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=2, threshold=1e-4)
    ours = ReduceOnPlateau(0.1, monitor="val_loss", factor=0.5, patience=2)
    lrs = []
    for e, m in enumerate(metrics):
        assert math.isclose(ours.lr_for_epoch(e), opt.param_groups[0]["lr"], rel_tol=1e-12), e
        lrs.append(ours.lr_for_epoch(e))
        ours.on_epoch_end(e, {"val_loss": m})
        theirs.step(m)
        if e == 5:   # resume from JSON mid-way
            ours = schedule_from_json(json.loads(json.dumps(ours.to_json())))
    assert min(lrs) < 0.1      # it did reduce


def test_plateau_maximises_accuracy():
    s = ReduceOnPlateau(1.0, monitor="val_accuracy", factor=0.5, patience=0)
    for e, acc in enumerate([0.5, 0.6, 0.55]):
        s.on_epoch_end(e, {"val_accuracy": acc})
    assert s.lr_for_epoch(3) == 0.5
