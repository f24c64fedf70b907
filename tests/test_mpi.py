"""Data-parallel training (numbacnn.distributed): the strategy's pieces in one process, then real runs under
``mpiexec -n 2`` (skipped when mpi4py or mpiexec is missing: ``pip install 'numbacnn[mpi]'``).

The equality test: 2 ranks with global batch 64 and --sync-bn against 1 process with batch 64, same seed.
Tolerance: every step's gradients are float32 sums of the same terms in another order (two partial sums
of 32 images each plus the MPI sum, instead of one sum of 64; the synchronised batch-norm statistics in
float64 sums instead of the kernel's), so they differ by a few units in the last place (~1e-7 relative);
16 SGD steps with momentum carry that into the weights.  Measured: at most 2.4e-7 on weights of magnitude
<= 1.2, so the test allows 1e-5 absolute (40x the measurement) and 1e-6 relative on the per-epoch losses.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from numbacnn.distributed import BucketPlan, LocalStrategy
from numbacnn.train import batch_bounds

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, str(REPO / "bin" / "numbacnn")]
TIMEOUT = 240          # a hang fails the test instead of CI


# ---------------------------------------------------------------- in one process
class FakeRanks:
    """K 'ranks' as threads exchanging through a barrier: what MPIStrategy.sum / sum_gradients compute."""

    def __init__(self, k):
        self.k, self.barrier, self.slots = k, threading.Barrier(k), [None] * k

    def member(self, rank, n):
        group = self

        class Member:
            def sum(self, a):
                return group.exchange(rank, np.asarray(a, np.float64))

            def sum_gradients(self, a):
                return group.exchange(rank, np.asarray(a, np.float64) * n) / n

        return Member()

    def exchange(self, rank, a):
        self.barrier.wait()
        self.slots[rank] = a
        self.barrier.wait()
        total = sum(self.slots)
        self.barrier.wait()
        return total


def _bn(be, c):
    from numbacnn.layers import BatchNorm
    layer = BatchNorm()
    layer.build([(c, 4, 5)])
    layer.set_backend(be)
    layer.init_params(np.random.default_rng(1))
    layer.params["gamma"][...] = np.array([0.7, 1.3, 2.0], np.float32)
    layer.params["beta"][...] = np.array([0.1, -0.2, 0.3], np.float32)
    return layer


def test_synchronised_batch_norm_equals_one_batch_norm_on_the_whole_batch():
    """Two 'ranks' of 5 and 7 images with stats_sync: the outputs, input gradients, parameter gradients (weighted
    by images, as the strategy sums them) and running statistics of one batch norm over the 12 images."""
    from numbacnn.backends import get_backend
    be = get_backend("reference")          # plain numpy: safe in threads
    rng = np.random.default_rng(0)
    n, c = 12, 3
    x = (rng.standard_normal((n, c, 4, 5)) * 2 + 1).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)      # d(mean loss over the 12)/dy
    one = _bn(be, c)
    y1 = one.forward([x], True)
    dx1, = one.backward(dy)
    parts, ranks, out = [slice(0, 5), slice(5, 12)], FakeRanks(2), [None, None]

    def run(r):
        layer, part = _bn(be, c), parts[r]
        k = part.stop - part.start
        layer.stats_sync = ranks.member(r, k)
        y = layer.forward([x[part]], True)
        dx, = layer.backward(dy[part] * n / k)          # the gradient of this rank's own mean loss
        out[r] = (y, dx * k / n, layer.grads["gamma"] * k / n, layer.grads["beta"] * k / n,
                  layer.buffers["running_mean"].copy(), layer.buffers["running_var"].copy())

    threads = [threading.Thread(target=run, args=(r,)) for r in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    np.testing.assert_allclose(np.concatenate([o[0] for o in out]), y1, atol=1e-6)
    np.testing.assert_allclose(np.concatenate([o[1] for o in out]), dx1, atol=2e-6)
    np.testing.assert_allclose(out[0][2] + out[1][2], one.grads["gamma"], atol=1e-5)
    np.testing.assert_allclose(out[0][3] + out[1][3], one.grads["beta"], atol=1e-5)
    for r in range(2):
        np.testing.assert_allclose(out[r][4], one.buffers["running_mean"], atol=1e-6)
        np.testing.assert_allclose(out[r][5], one.buffers["running_var"], atol=1e-6)


def test_local_strategy_passes_everything_through():
    s = LocalStrategy()
    idx = np.arange(10)
    assert s.shard(idx) is idx and s.shard_range(10) == (0, 10) and s.augment_seed(7) == 7
    assert s.reduce_batch(0.5, 3, 8) == (0.5, 3, 8) and s.begin_step(None, 8) is None and s.is_writer
    assert s.assign(["a", "b", "c"]) == [(0, "a"), (1, "b"), (2, "c")]
    assert s.collect([(1, "B"), (0, "A")]) == ["A", "B"]
    with pytest.raises(ValueError, match="boom"), s.agreement():
        raise ValueError("boom")
    assert s.min_batch == 2 and batch_bounds(65, 16, 2)[-1] == (48, 65) and batch_bounds(67, 16, 2)[-1] == (64, 67)
    assert batch_bounds(67, 16, 4)[-1] == (48, 67) and batch_bounds(68, 16, 4)[-1] == (64, 68)    # 2 ranks


def test_the_environment_chooses_the_strategy(monkeypatch):
    """No launcher, or a launcher of 1 rank: one process; a launcher of 2 ranks without mpi4py: an error saying
    what to install."""
    from numbacnn import config, distributed
    monkeypatch.setattr(config, "mpi_launcher", lambda: None)
    assert type(distributed.from_environment()) is LocalStrategy
    monkeypatch.setattr(config, "mpi_launcher", lambda: ("PMI_RANK", 1))
    assert type(distributed.from_environment()) is LocalStrategy
    monkeypatch.setattr(config, "mpi_launcher", lambda: ("PMI_RANK", 2))
    monkeypatch.setitem(sys.modules, "mpi4py", None)            # import mpi4py raises ImportError
    with pytest.raises(ValueError, match=r"PMI_RANK is set\) but mpi4py is not installed: pip install 'numbacnn"):
        distributed.from_environment()
    monkeypatch.undo()
    for var in [v for pair in config.MPI_LAUNCHER_VARS for v in pair if v]:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "3")
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "8")
    assert config.mpi_launcher() == ("OMPI_COMM_WORLD_RANK", 8)


def test_dropout_masks_per_rank():
    """Rank 0 (and one process) draws the masks it always drew; another rank its own."""
    from numbacnn.layers.core import step_seed
    assert step_seed(5, 3) == step_seed(5, 3, 0) == int(np.random.SeedSequence([5, 3]).generate_state(1)[0])
    assert step_seed(5, 3, 1) != step_seed(5, 3, 0)


def test_buckets_follow_the_backward_order_and_their_size():
    """Parameters in reverse layer order (the order the backward pass finishes them), one layer per bucket at
    most, the first bucket a quarter of the others' size, bucket 0 with the image-count slot."""
    from numbacnn.models import build_model
    model = build_model("resnet20").build("cpu", seed=0)
    nodes = model.plan([n for n, _ in model.training_outputs()])
    plan = BucketPlan(model, nodes, 256 * 1024)
    order = [n for n in reversed(nodes) if model.layers[n].params]
    assert list(plan.layout) == order
    buckets = [plan.layout[n][0][1] for n in order]
    assert buckets == sorted(buckets) and len(plan.buffers) > 3
    sizes = [b.size for b in plan.buffers]
    assert sum(sizes) - 1 == sum(p.size for layer in model.layers.values() for p in layer.params.values())
    assert sizes[0] * 4 <= 64 * 1024 + 4 or plan.members[0] == 1
    assert all(s * 4 <= 256 * 1024 for s, m in zip(sizes[1:], plan.members[1:]) if m > 1)


# ---------------------------------------------------------------- under mpiexec
def _mpiexec():
    exe = shutil.which("mpiexec") or shutil.which("mpiexec", path=os.path.dirname(sys.executable))
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return None
    return exe


MPIEXEC = _mpiexec()
needs_mpi = pytest.mark.skipif(MPIEXEC is None, reason="mpi4py and mpiexec needed: pip install 'numbacnn[mpi]'")

TINY = {"name": "tiny", "input_shape": [1, 28, 28], "output": "fc", "nodes": [
    {"name": "conv", "class_name": "Conv2D", "config": {"filters": 4, "kernel_size": 3, "strides": 2},
     "inputs": ["input"]},
    {"name": "bn", "class_name": "BatchNorm", "config": {}, "inputs": ["conv"]},
    {"name": "relu", "class_name": "ReLU", "config": {}, "inputs": ["bn"]},
    {"name": "pool", "class_name": "MaxPool2D", "config": {"pool_size": 2}, "inputs": ["relu"]},
    {"name": "flat", "class_name": "Flatten", "config": {}, "inputs": ["pool"]},
    {"name": "fc", "class_name": "Dense", "config": {"units": 10}, "inputs": ["flat"]}]}
RUN = ["--limit", "512", "--limit-test", "256", "--batch-size", "64", "--optimizer", "sgd", "--lr", "0.05",
       "--schedule", "constant", "--val-split", "0.1"]


def _run(cmd, cwd, ranks=None, env=None):
    prefix = [MPIEXEC, "-n", str(ranks)] if ranks else []
    return subprocess.run(prefix + cmd, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT,
                          env={**os.environ, "NUMBACNN_MPI_TIMEOUT": "60", **(env or {})})


def _train(tmp_path, out, *args, ranks=None, env=None):
    res = _run(CLI + ["train", "--model", "tiny.json", *RUN, "--out", out, *args], tmp_path, ranks, env)
    assert res.returncode == 0, res.stdout + res.stderr
    return res


def _history(path):
    with open(path) as f:
        return [(float(r["loss"]), float(r["accuracy"]), float(r["val_loss"])) for r in csv.DictReader(f)]


def _weights(path):
    from numbacnn.io.hdf5 import load_model
    return load_model(path).model.get_weights()


def _assert_same_weights(a, b, atol=1e-5):
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for layer in wa:
        for name in wa[layer]:
            np.testing.assert_allclose(wb[layer][name], wa[layer][name], rtol=0, atol=atol, err_msg=f"{layer}/{name}")


@pytest.fixture
def tiny(tmp_path):
    (tmp_path / "tiny.json").write_text(json.dumps(TINY))
    return tmp_path


@needs_mpi
def test_two_ranks_with_sync_bn_equal_one_process(tiny):
    """2 ranks x 32 images with --sync-bn == 1 process x 64: weights, loss curve, one model file, one set of lines."""
    _train(tiny, "one.h5", "--epochs", "2")
    res = _train(tiny, "two.h5", "--epochs", "2", "--sync-bn", ranks=2, env={"NUMBACNN_CHECK_SYNC": "1"})
    _assert_same_weights(tiny / "one.h5", tiny / "two.h5")
    for (l1, a1, v1), (l2, a2, v2) in zip(_history(tiny / "one.history.csv"), _history(tiny / "two.history.csv")):
        assert l2 == pytest.approx(l1, rel=1e-6) and v2 == pytest.approx(v1, rel=1e-6) and a1 == a2
    assert sorted(p.name for p in tiny.iterdir()) == ["one.h5", "one.history.csv", "tiny.json", "two.h5",
                                                      "two.history.csv"]
    assert res.stdout.count("Wrote two.h5") == 1 and res.stdout.count("Test accuracy") == 1
    assert "Data-parallel over 2 ranks" in res.stdout and "global batch 64 = 32 per rank" in res.stdout
    if "NUMBA_NUM_THREADS" not in os.environ:       # each rank: the cores / the 2 ranks on this machine
        assert f"{max(1, len(os.sched_getaffinity(0)) // 2)} thread(s) each" in res.stdout


def test_threads_option_is_checked(tmp_path):
    res = _run(CLI + ["train", "--threads", "100000", "--epochs", "1"], tmp_path)
    assert res.returncode == 1 and res.stderr.startswith("Error: --threads 100000: this process has 1 to ")
    assert "NUMBA_NUM_THREADS" in res.stderr and not (tmp_path / "model.h5").exists()


@needs_mpi
def test_checkpoints_resume_with_another_number_of_ranks(tiny):
    """1 epoch in one process, --resume under mpiexec -n 2 for the second, in one process again for the third:
    the run of 3 epochs in one process (and its history)."""
    _train(tiny, "whole.h5", "--epochs", "3")
    _train(tiny, "part.h5", "--epochs", "1")
    res = _run(CLI + ["train", "--resume", "part.h5", "--epochs", "2", "--sync-bn"], tiny, ranks=2)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.count("Resuming part.h5 after epoch 1") == 1
    res = _run(CLI + ["train", "--resume", "part.h5", "--epochs", "3"], tiny)
    assert res.returncode == 0 and "Resuming part.h5 after epoch 2" in res.stdout, res.stdout + res.stderr
    _assert_same_weights(tiny / "whole.h5", tiny / "part.h5")
    for (l1, a1, _), (l2, a2, _) in zip(_history(tiny / "whole.history.csv"), _history(tiny / "part.history.csv")):
        assert l2 == pytest.approx(l1, rel=1e-6) and a1 == a2


@needs_mpi
def test_batch_size_must_divide_by_the_ranks(tiny):
    res = _run(CLI + ["train", "--model", "tiny.json", "--limit", "64", "--batch-size", "63", "--epochs", "1"],
               tiny, ranks=2)
    assert res.returncode == 1 and res.stderr.count("Error:") == 1, res.stderr
    assert "--batch-size 63 is the global batch: it must divide by the 2 ranks" in res.stderr
    res = _run(CLI + ["train", "--model", "tiny.json", "--recipe", "nope"], tiny, ranks=2)    # a usage error: 2
    assert res.returncode == 2 and res.stderr.count("Error:") == 1 and "'--recipe'" in res.stderr, res.stderr


@needs_mpi
def test_divergence_stops_every_rank_with_one_message(tiny):
    res = _run(CLI + ["train", "--model", "tiny.json", *RUN, "--lr", "1e9", "--epochs", "1"], tiny, ranks=2)
    assert res.returncode == 1 and res.stderr.count("Error:") == 1, res.stderr
    assert "training diverged" in res.stderr and not (tiny / "model.h5").exists()


@needs_mpi
@pytest.mark.parametrize("mode, expect", [
    ("fail", "Error: rank 1 cannot go on (a test failure) (rank 1 of 2; stopping every rank)"),
    ("hang", "Error: rank 0 of 2 waited 3 s for the other ranks while summing"),
    ("agree", "RankFailure: rank 1 cannot read its data (a test failure) (rank 1 of 2)"),
    ("kill", "signal 9"),                       # the launcher's report (MPICH: "Killed (signal 9)")
])
def test_a_failing_rank_ends_the_job_with_its_message(tmp_path, mode, expect):
    """An exception on rank 1 (its message, then MPI_Abort), a rank that hangs (the others' watchdog), a failure
    inside agreement() (rank 0 raises rank 1's message, rank 1 exits quietly), a rank killed with SIGKILL (the
    launcher ends the job): a clear error and an exit, never a hang."""
    res = _run([sys.executable, str(REPO / "tests" / "mpi_worker.py"), mode], tmp_path, ranks=2,
               env={"NUMBACNN_MPI_TIMEOUT": "3"})
    assert res.returncode != 0 and "finished" not in res.stdout
    assert expect in res.stdout + res.stderr, res.stdout + res.stderr
    if mode == "agree":
        assert res.stderr.count("rank 1 cannot read its data") == 1 and "MPI_Abort" not in res.stderr


@needs_mpi
def test_per_rank_batch_norm_and_dropout_keep_the_ranks_in_step(tmp_path):
    """The default (batch norm on each rank's images, dropout masks per rank), with the parameters compared
    after every step (NUMBACNN_CHECK_SYNC=1) and validation on rank 0's running statistics."""
    res = _run([sys.executable, str(REPO / "tests" / "mpi_worker.py"), "ok"], tmp_path, ranks=2,
               env={"NUMBACNN_CHECK_SYNC": "1"})
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.count("finished") == 1 and all(np.isfinite(json.loads(res.stdout.split("finished")[1])))


@needs_mpi
def test_trials_spread_over_the_ranks(tmp_path):
    res = _run([sys.executable, str(REPO / "tests" / "mpi_worker.py"), "search"], tmp_path, ranks=2)
    assert res.returncode == 0, res.stderr
    results = json.loads(res.stdout.strip().splitlines()[-1])
    assert [r["lr"] for r in results] == [0.1, 0.03, 0.01, 0.003, 0.001]
    assert [r["rank"] for r in results] == [0, 1, 0, 1, 0]


@needs_mpi
def test_search_shares_its_trials_over_the_ranks(tmp_path):
    """mpiexec -n 2 numbacnn search: each rank trains its trials (i mod 2), rank 0 writes the files and
    retrains the best; the scores equal those of a search in one process."""
    (tmp_path / "tiny.json").write_text(json.dumps(TINY))
    args = ["search", "--model", "tiny.json", "--limit", "256", "--limit-test", "128", "--epochs", "1",
            "--grid", "lr=0.01,0.03,0.1", "--threads", "1"]
    one = _run(CLI + args + ["--out-dir", "one"], tmp_path)
    two = _run(CLI + args + ["--out-dir", "two"], tmp_path, ranks=2)
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stdout + two.stderr
    ranks = {line.split("] ")[1].split(":")[0]: line.rsplit("(rank ", 1)[1][0] for line in two.stdout.splitlines()
             if "(rank " in line}
    assert ranks == {"lr=0.01": "0", "lr=0.03": "1", "lr=0.1": "0"}
    docs = [json.loads((tmp_path / d / "trials.json").read_text()) for d in ("one", "two")]
    assert [t["params"] for t in docs[0]["trials"]] == [t["params"] for t in docs[1]["trials"]]
    for a, b in zip(docs[0]["trials"], docs[1]["trials"]):
        assert b["score"] == pytest.approx(a["score"], abs=1e-6) and b["val_loss"] == pytest.approx(a["val_loss"],
                                                                                                    rel=1e-5)
    assert two.stdout.count("Wrote two/best.h5") == 1 and (tmp_path / "two" / "best.h5").exists()


def test_the_threads_of_a_process_leave_blas_on_one_thread():
    """``set_threads`` (--threads, and each MPI rank's share of the cores) puts numpy's BLAS pool on one thread even
    where numpy was imported first: at one thread per core, the dense layers' BLAS threads of ranks sharing a
    machine fight over its cores."""
    import numba
    from threadpoolctl import threadpool_info, threadpool_limits

    from numbacnn.distributed import set_threads

    blas = [p for p in threadpool_info() if p["user_api"] == "blas"]
    if not blas:
        pytest.skip("numpy has no BLAS library threadpoolctl can see")
    before = numba.get_num_threads()
    with threadpool_limits(None):          # restores the BLAS pools afterwards
        try:
            for n in {1, numba.config.NUMBA_NUM_THREADS}:
                threadpool_limits(2, user_api="blas")
                set_threads(n)
                assert {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"} == {1}
        finally:
            numba.set_num_threads(before)
