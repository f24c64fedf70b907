"""The classic networks from the command line: paper recipes, graphs with auxiliary outputs (GoogLeNet),
and a summary that shows what a network costs."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from numbacnn.data import make_shapes
from numbacnn.io.hdf5 import load_model
from numbacnn.models import ZOO
from numbacnn.models.recipes import RECIPES
from numbacnn.run import RunConfig, make_schedule
from numbacnn.schedules import MultiStep


from cli_run import run  # noqa: E402  (tests/ is on sys.path)


# ---------------------------------------------------------------- recipes
def test_every_zoo_model_has_a_recipe_with_its_source():
    assert set(RECIPES) == set(ZOO)
    for name in ZOO:
        assert RECIPES[name].source and RECIPES[name].describe()


def test_the_recipe_fills_only_what_is_not_given():
    cfg = RunConfig(model="resnet20", epochs=8).resolved()
    assert (cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay, cfg.batch_size, cfg.schedule) == (
        "sgd", 0.1, 0.9, 1e-4, 128, "multistep")
    sched = make_schedule(cfg)
    assert [sched.lr_for_epoch(e) for e in range(8)] == pytest.approx([0.1] * 4 + [0.01] * 2 + [0.001] * 2)
    given = RunConfig(model="resnet20", lr=0.05, batch_size=16).resolved()
    assert (given.lr, given.batch_size, given.weight_decay) == (0.05, 16, 1e-4)
    adam = RunConfig(model="resnet20", optimizer="adam").resolved()
    assert adam.lr == 1e-3                        # the recipe's rate is for its own optimizer
    plain = RunConfig(model="resnet20", recipe="none").resolved()
    assert (plain.optimizer, plain.schedule, plain.batch_size) == ("adam", "cosine", 32)
    assert RunConfig(model="lenet5").resolved().optimizer == "adam"   # the default run is unchanged
    borrowed = RunConfig(model="net.json", recipe="vgg16").resolved()
    assert (borrowed.lr, borrowed.weight_decay) == (0.01, 5e-4)


def test_multistep_matches_pytorch():
    torch = pytest.importorskip("torch")
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    ref = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[3, 5], gamma=0.1)
    ours, theirs = MultiStep(0.1, [3, 5], 0.1), []
    for _ in range(7):
        theirs.append(opt.param_groups[0]["lr"])
        opt.step()
        ref.step()
    assert [ours.lr_for_epoch(e) for e in range(7)] == pytest.approx(theirs)


def test_train_uses_the_recipe_and_says_so(tmp_path):
    x, y, _ = make_shapes(80, seed=2, rgb=True)
    np.savez(tmp_path / "rgb.npz", images=x, labels=y)
    res = run("train", "--model", "resnet20", "--data", tmp_path / "rgb.npz", "--epochs", 4, "--batch-size", 32,
              "--out", tmp_path / "r.h5")
    assert "the resnet20 recipe (He et al. 2016, section 4.2)" in res.stdout and "multistep schedule" in res.stdout
    rows = list(csv.DictReader(open(tmp_path / "r.history.csv")))
    assert [float(r["lr"]) for r in rows] == pytest.approx([0.1, 0.1, 0.01, 0.001])
    opts = load_model(tmp_path / "r.h5").metadata["train_options"]
    assert opts["optimizer"] == "sgd" and opts["weight_decay"] == 1e-4 and opts["augment"] == "flip,zoom"
    res = run("models", "--recipe", "resnet20")
    assert "SGD lr 0.1" in res.stdout and "divided by 10 at 50%, 75%" in res.stdout
    assert "--recipe" in run("train", "--recipe", "resnet21", ok=False).stderr


# ---------------------------------------------------------------- auxiliary outputs
def test_googlenet_trains_with_its_auxiliary_heads_and_drops_them_for_inference(tmp_path):
    onnx = pytest.importorskip("onnx")
    x, y, _ = make_shapes(60, seed=5, rgb=True)
    np.savez(tmp_path / "rgb.npz", images=x, labels=y)
    out = tmp_path / "g.h5"
    run("train", "--model", "googlenet", "--data", tmp_path / "rgb.npz", "--epochs", 1, "--batch-size", 16,
        "--recipe", "none", "--out", out)
    mf = load_model(out)
    assert mf.model.aux_outputs == {"aux1_fc2": 0.3, "aux2_fc2": 0.3}
    res = run("evaluate", out)
    assert "auxiliary output aux1_fc2 (loss weight 0.3 in training, dropped for inference)" in res.stdout
    assert "auxiliary output aux2_fc2" in res.stdout
    run("export-onnx", out, "--out", tmp_path / "g.onnx")
    assert [o.name for o in onnx.load(tmp_path / "g.onnx").graph.output] == ["fc"]
    run("export-onnx", out, "--out", tmp_path / "g_aux.onnx", "--keep-aux")
    assert [o.name for o in onnx.load(tmp_path / "g_aux.onnx").graph.output] == ["fc", "aux1_fc2", "aux2_fc2"]
    res = run("predict", out, tmp_path / "rgb.npz", "--top-k", 1)
    assert len([ln for ln in res.stdout.splitlines() if "rgb.npz[" in ln]) == 60


def test_a_trained_multi_output_model_loss_is_the_weighted_sum():
    """The history's loss is main + 0.3 * aux1 + 0.3 * aux2, each evaluated on its own."""
    from numbacnn.train import _evaluate, evaluate_outputs
    from numbacnn.losses import get_loss
    m = ZOO["googlenet"](num_classes=4, input_shape=(3, 32, 32)).build("cpu", seed=1)
    x, _, _ = make_shapes(24, seed=6, rgb=True)
    y = np.arange(24) % 4
    parts = evaluate_outputs(m, x, y)
    total, acc, _ = _evaluate(m, x, y, 256, get_loss("cross_entropy"))
    assert total == pytest.approx(parts["fc"][0] + 0.3 * parts["aux1_fc2"][0] + 0.3 * parts["aux2_fc2"][0],
                                  rel=1e-6)
    assert acc == parts["fc"][1]


# ---------------------------------------------------------------- summary and models
def test_summary_shows_cost_and_training_memory():
    res = run("summary", "lenet5", "--batch-size", 64, "--optimizer", "adam")
    assert "Mult-adds" in res.stdout and "Activations" in res.stdout
    conv1_macs = 6 * 28 * 28 * 25
    assert f"{conv1_macs:,}" in res.stdout
    params_mib = 61_706 * 4 / 2 ** 20
    assert f"Parameters: {params_mib:,.2f} MiB; their gradients: {params_mib:,.2f} MiB; adam state (2 buffers " \
           f"per parameter): {2 * params_mib:,.2f} MiB" in res.stdout
    assert "Estimated training memory" in res.stdout
    res = run("summary", "googlenet")
    assert "aux1_fc2 (Dense) [aux]" in res.stdout and "Auxiliary outputs" in res.stdout


def test_models_lists_flops_of_every_network():
    res = run("models")
    assert "FLOPs" in res.stdout.splitlines()[0]
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("resnet50 "))
    assert "25,557,032" in line and "8.22 G" in line
