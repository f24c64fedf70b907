"""Data-parallel training (numbacnn.distributed): the strategy's pieces in one process, then real runs under
``mpiexec -n 2``.

The equality test: 2 ranks with global batch 64 and --sync-bn against 1 process with batch 64, same seed.
Tolerance: every step's gradients are float32 sums of the same terms in another order (two partial sums
of 32 images each plus the MPI sum, instead of one sum of 64; the synchronised batch-norm statistics in
float64 sums instead of the kernel's), so they differ by a few units in the last place (~1e-7 relative);
16 SGD steps with momentum carry that into the weights.  Measured: at most 2.4e-7 on weights of magnitude
<= 1.2, so the test allows 1e-5 absolute (40x the measurement) and 1e-6 relative on the per-epoch losses.
"""
from __future__ import annotations

import threading

import numpy as np

from numbacnn.distributed import BucketPlan


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
