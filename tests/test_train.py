"""The training loop: determinism, exact resume, early stopping, freezing, callbacks, LeNet-5 learning."""
import time

import numpy as np
import pytest

from numbacnn.callbacks import Callback
from numbacnn.io import ModelFileError, load_model, save_model
from numbacnn.models import lenet5
from numbacnn.optim import SGD, Adam
from numbacnn.schedules import Cosine, ReduceOnPlateau, StepDecay
from numbacnn.train import evaluate, fit, frozen_prefix_split, predict, resume


from small_models import BE, small  # noqa: E402  (tests/ is on sys.path)


def bars(n=120, size=8, classes=3, seed=0):
    """Class c = a bright horizontal band in row block c, plus noise: separable by a small CNN."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = (rng.standard_normal((n, 1, size, size)) * 0.5).astype(np.float32)
    band = size // classes
    for c in range(classes):
        x[y == c, 0, c * band:(c + 1) * band, :] += 2.0
    return x, y


def jitter(x, rng):
    """An augmentation that uses the generator (so resume must restore its state)."""
    return x + rng.standard_normal(x.shape).astype(np.float32) * 0.05


def same_weights(a, b):
    wa, wb = a.get_weights(), b.get_weights()
    assert wa.keys() == wb.keys()
    for layer in wa:
        for name in wa[layer]:
            np.testing.assert_array_equal(wa[layer][name], wb[layer][name], err_msg=f"{layer}/{name}")


def _no_time(history):
    return [{k: v for k, v in h.items() if k != "time"} for h in history]


def test_same_seed_same_bits():
    x, y = bars()
    runs = []
    for _ in range(2):
        m = small(seed=4)
        h = fit(m, x, y, epochs=2, batch_size=16, optimizer=SGD(0.05, momentum=0.9, weight_decay=1e-4),
                augment=jitter, seed=11, val_split=0.25)
        runs.append((m, h))
    same_weights(runs[0][0], runs[1][0])
    assert _no_time(runs[0][1]) == _no_time(runs[1][1])
    m3 = small(seed=4)
    fit(m3, x, y, epochs=2, batch_size=16, optimizer=SGD(0.05, momentum=0.9, weight_decay=1e-4),
        augment=jitter, seed=12, val_split=0.25)
    assert not np.array_equal(m3.get_weights()["fc"]["weight"], runs[0][0].get_weights()["fc"]["weight"])


@pytest.mark.parametrize("make_opt,make_sched", [
    (lambda: SGD(0.05, momentum=0.9, nesterov=True, weight_decay=1e-3), lambda: StepDecay(0.05, 1, 0.5)),
    (lambda: Adam(3e-3, weight_decay=1e-4, l1=1e-5), lambda: Cosine(3e-3, total_epochs=3, min_lr=1e-4)),
    (lambda: SGD(0.05, momentum=0.5), lambda: ReduceOnPlateau(0.05, factor=0.5, patience=0)),
])
def test_resume_is_exact(tmp_path, make_opt, make_sched):
    x, y = bars(seed=2)
    kw = dict(batch_size=16, augment=jitter, seed=5, val_split=0.25, early_stopping=5)
    full = small(seed=1)
    h_full = fit(full, x, y, epochs=3, optimizer=make_opt(), schedule=make_sched(), **kw)

    part = small(seed=1)
    ck = tmp_path / "ck.h5"
    fit(part, x, y, epochs=1, optimizer=make_opt(), schedule=make_sched(), checkpoint=ck, **kw)
    del part
    resumed, h_res = resume(ck, x, y, epochs=3, backend=BE, augment=jitter, val_split=0.25, early_stopping=5)
    same_weights(full, resumed)
    assert _no_time(h_res) == _no_time(h_full)
    assert load_model(ck, backend=BE).training_state["epoch"] == 3


def test_early_stopping_restores_best_weights():
    x, y = bars(n=96, seed=3)
    xv, _ = bars(n=48, seed=4)
    yv = np.random.default_rng(0).integers(0, 3, 48)       # random validation labels: val_loss soon rises
    m = small(seed=2)
    seen = []

    class Record:
        def on_epoch_end(self, epoch, logs):
            seen.append((logs["val_loss"], m.get_weights()))

    h = fit(m, x, y, epochs=30, batch_size=16, optimizer=SGD(0.1, momentum=0.9), validation_data=(xv, yv),
            early_stopping=1, callbacks=[Record()])
    assert len(h) < 30
    best = int(np.argmin([v for v, _ in seen]))
    assert best < len(h) - 1
    for layer, arrays in seen[best][1].items():
        for name, a in arrays.items():
            np.testing.assert_array_equal(m.get_weights()[layer][name], a, err_msg=f"{layer}/{name}")
    loss, _, _ = evaluate(m, xv, yv)
    assert loss == pytest.approx(seen[best][0], rel=1e-5)


def test_frozen_layers_keep_params_and_bn_statistics():
    x, y = bars()
    m = small(seed=3)
    m.freeze(["conv", "bn"])
    before = m.get_weights()
    fit(m, x, y, epochs=1, batch_size=16, optimizer=Adam(1e-2, weight_decay=1e-2))
    after = m.get_weights()
    for layer in ("conv", "bn"):
        for name in before[layer]:
            np.testing.assert_array_equal(after[layer][name], before[layer][name], err_msg=f"{layer}/{name}")
    assert not np.array_equal(after["fc"]["weight"], before["fc"]["weight"])


def test_precompute_frozen_prefix_matches_full_training():
    x, y = bars(seed=6)
    runs = []
    for pre in (False, True):
        m = small(seed=3)
        m.freeze(["conv", "bn", "relu", "pool", "flat"])
        h = fit(m, x, y, epochs=2, batch_size=16, optimizer=SGD(0.05, momentum=0.9), seed=1, val_split=0.25,
                precompute_frozen=pre)
        runs.append((m, h))
    for layer in ("fc", "conv", "bn"):
        for name, a in runs[0][0].get_weights()[layer].items():
            np.testing.assert_allclose(runs[1][0].get_weights()[layer][name], a, rtol=1e-5, atol=1e-6)
    assert [e["accuracy"] for e in runs[0][1]] == [e["accuracy"] for e in runs[1][1]]


def test_precompute_frozen_rejects_non_prefix():
    m = small()
    with pytest.raises(ValueError, match="needs frozen layers"):
        frozen_prefix_split(m)
    m.freeze("bn")
    with pytest.raises(ValueError, match="trainable layer 'conv' reads the model input"):
        frozen_prefix_split(m)
    m.unfreeze()
    m.freeze()
    with pytest.raises(ValueError, match="output layer 'fc' is frozen"):
        frozen_prefix_split(m)
    m.unfreeze()
    m.freeze(["conv", "bn"])          # the parameter-free layers after them join the prefix; dropout does not
    prefix, boundary, head = frozen_prefix_split(m)
    assert prefix == ["conv", "bn", "relu", "pool", "flat"]
    assert boundary == "flat" and list(head.layers) == ["drop", "fc"] and head.input_shape == (64,)
    with pytest.raises(ValueError, match="augment"):
        fit(m, *bars(), precompute_frozen=True, augment=jitter)


def test_callbacks_predict_evaluate_and_stop():
    x, y = bars()
    m = small()
    batches, epochs = [], []

    class Progress(Callback):
        def on_batch_end(self, batch, info):
            batches.append(info)

        def on_epoch_end(self, epoch, logs):
            epochs.append(logs)
            self.trainer.stop_training = True          # ask to stop after the first epoch

    h = fit(m, x, y, epochs=5, batch_size=50, callbacks=[Progress()], optimizer=SGD(0.05))
    assert len(h) == 1 and len(epochs) == 1
    assert [b["size"] for b in batches] == [50, 50, 20]       # a short last batch is kept
    assert {"loss", "accuracy", "images_per_s", "elapsed", "epoch_loss", "lr"} <= set(batches[0])
    assert h[0]["loss"] == pytest.approx(sum(b["loss"] * b["size"] for b in batches) / 120)
    assert batches[-1]["epoch_loss"] == pytest.approx(h[0]["loss"])
    assert set(h[0]) == {"epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "time"}
    out = predict(m, x, batch_size=7)
    assert out.shape == (120, 3)
    loss, acc, probs = evaluate(m, x, y, batch_size=32)
    assert acc == pytest.approx(np.mean(out.argmax(1) == y))
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    ref = -np.mean(np.log(probs[np.arange(120), y]))
    assert loss == pytest.approx(ref, rel=1e-4)


def test_last_batch_of_one_is_folded():
    x, y = bars(n=33)
    sizes = []

    class Sizes:
        def on_batch_end(self, batch, info):
            sizes.append(info["size"])

    fit(small(), x, y, epochs=1, batch_size=16, callbacks=[Sizes()])
    assert sizes == [16, 17]


def test_mse_loss_trains():
    x, y = bars(seed=8)
    t = np.eye(3, dtype=np.float32)[y]
    m = small(seed=8)
    h = fit(m, x, t, epochs=4, batch_size=16, loss="mse", optimizer=SGD(0.05, momentum=0.9))
    assert h[-1]["loss"] < h[0]["loss"]


def test_bad_arguments():
    x, y = bars()
    m = small()
    with pytest.raises(ValueError, match="either val_split or validation_data"):
        fit(m, x, y, val_split=0.2, validation_data=(x, y))
    with pytest.raises(ValueError, match="early stopping on val_loss needs validation data"):
        fit(m, x, y, early_stopping=2)
    with pytest.raises(ValueError, match="does not match the model input"):
        fit(m, x[:, :, :4], y)
    with pytest.raises(ValueError, match="120 samples but 3 labels"):
        fit(m, x, y[:3])
    with pytest.raises(ValueError, match="augment returned shape"):
        fit(m, x, y, augment=lambda b, rng: b[:1])
    x_nan = x.copy()
    x_nan[:, 0, 0, 0] = np.nan
    with pytest.raises(FloatingPointError, match="diverged"), np.errstate(invalid="ignore"):
        fit(small(), x_nan, y)


def test_resume_needs_a_training_state(tmp_path):
    m = small()
    save_model(tmp_path / "w.h5", m)
    with pytest.raises(ModelFileError, match="no training state"):
        resume(tmp_path / "w.h5", *bars(), epochs=2, backend=BE)


def test_lenet5_learns_in_seconds():
    rng = np.random.default_rng(0)
    n = 256
    y = rng.integers(0, 4, n)
    x = (rng.standard_normal((n, 1, 28, 28)) * 0.3).astype(np.float32)
    for c in range(4):                           # a bright square in quadrant c
        r, q = divmod(c, 2)
        x[y == c, 0, 2 + 14 * r:12 + 14 * r, 2 + 14 * q:12 + 14 * q] += 1.0
    fit(lenet5(num_classes=4).build(BE, seed=1), x[:64], y[:64], epochs=1, batch_size=32,
        optimizer=SGD(0.05, momentum=0.9))            # warm-up: JIT compilation out of the timing
    m = lenet5(num_classes=4).build(BE, seed=0)
    t0 = time.perf_counter()
    h = fit(m, x, y, epochs=3, batch_size=32, optimizer=SGD(0.05, momentum=0.9), seed=0)
    took = time.perf_counter() - t0
    assert h[-1]["loss"] < 0.5 * h[0]["loss"]
    assert h[-1]["accuracy"] > 0.9 and h[-1]["accuracy"] > h[0]["accuracy"]
    assert took < 60, took
