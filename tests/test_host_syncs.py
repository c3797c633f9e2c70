"""Issue 33 item 3: the hot kernels make the host wait a bounded number of times, whatever their
number of iterations, and recall reads the score matrix a bounded number of times.

Counted with ``ncbench.host_syncs.SyncCounter`` (a dispatch mode: the same operations are
dispatched on the CPU as on a GPU). ``grow=True`` runs an accelerator's read schedule on the CPU;
each case also checks that it gives exactly the result of the CPU schedule, which reads after
every iteration (references: the loops as they were, which the kernels' own tests compare with
scikit-learn and the official code).
"""

import numpy as np
import pytest
import torch

from ncbench.host_syncs import SyncCounter
from ncbench.kernels.loops import blocks
from ncbench.kernels.losses import per_sample_triplet
from ncbench.kernels.mixture import bmm_split, fit_gmm_1d, gmm_split
from ncbench.kernels.recall import ACCELERATOR_CHUNK_ELEMS, default_chunk, ranks
from ncbench.kernels.transport import partial_ot_plan


def _losses(n=6000, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.cat([torch.rand(int(n * 0.7), generator=g) * 0.3, 0.2 + torch.rand(n - int(n * 0.7), generator=g) * 0.8]).double()


def _syncs(fn, **watch):
    with SyncCounter(**watch) as c:
        out = fn()
    return c, out


def test_blocks_add_up_and_double():
    assert list(blocks(10, 1, False)) == [1] * 10
    assert list(blocks(1000, 8, True)) == [8, 16, 32, 64, 128, 256, 496]  # 7 reads, not 125
    assert list(blocks(5, 8, True)) == [5] and list(blocks(0, 8, True)) == []


@pytest.mark.parametrize("iters", [10, 40])
def test_the_gmm_fit_reads_the_device_a_fixed_number_of_times(iters):
    x = _losses()
    # tol 0: EM never stops early, so a per-iteration read would show as `iters` reads
    cpu, ref = _syncs(lambda: fit_gmm_1d(x, max_iter=iters, tol=0.0))
    acc, fit = _syncs(lambda: fit_gmm_1d(x, max_iter=iters, tol=0.0, grow=True))
    assert cpu.syncs >= iters  # the CPU schedule reads after every iteration (free there)
    assert acc.syncs == 3, acc.by_op  # k-means' block, EM's block, which iteration met the rule
    assert fit.n_iter == ref.n_iter == iters and torch.equal(fit.means, ref.means)
    assert torch.equal(fit.variances, ref.variances) and torch.equal(fit.weights, ref.weights)


def test_an_early_stop_is_the_same_iteration_on_both_schedules():
    x = _losses(seed=3)
    for tol in (1e-2, 1e-4, 1e-6):
        a, b = fit_gmm_1d(x, tol=tol), fit_gmm_1d(x, tol=tol, grow=True)
        assert (a.n_iter, a.converged) == (b.n_iter, b.converged) and torch.equal(a.means, b.means)
    # with early stops: k-means reads once per block (4, 8, 16, ... iterations: at most 7 of its 300),
    # EM twice (did an iteration meet the rule, which one)
    c, _ = _syncs(lambda: fit_gmm_1d(x, grow=True))
    assert c.syncs <= len(list(blocks(300, 4, True))) + 2, c.by_op


def test_the_beta_mixture_split_reads_twice():
    c, _ = _syncs(lambda: bmm_split(_losses()))
    assert c.syncs == 2, c.by_op  # min-max's span, which component is clean


@pytest.mark.parametrize("batch", [1, 4])
def test_partial_ot_reads_grow_with_the_log_of_its_iterations(batch):
    g = torch.Generator().manual_seed(1)
    cost = torch.rand(batch, 24, 24, generator=g).squeeze(0)
    counts = {}
    for iters in (64, 512):
        c, plan = _syncs(lambda: partial_ot_plan(cost, max_iter=iters, tol=0.0, grow=True))
        counts[iters] = c.syncs
        assert torch.equal(plan, partial_ot_plan(cost, max_iter=iters, tol=0.0))  # same iterate
    # blocks 8, 16, 32, 8 (64) and 8 … 256, 8 (512): 4 and 7 reads, not 8 and 64
    assert counts == {64: 4, 512: 7}, counts
    # the official stopping rule met early: the same plan on both schedules
    assert torch.equal(partial_ot_plan(cost, grow=True), partial_ot_plan(cost))


def test_recall_reads_the_matrix_twice_and_never_waits():
    rng = np.random.default_rng(0)
    sims = torch.from_numpy(rng.normal(size=(200, 1000)).astype(np.float32))
    for chunk in (1 << 12, 1 << 15, 1 << 18):  # 4 to 200 row blocks
        c, (r_i, r_t) = _syncs(lambda: ranks(sims, 5, chunk_elems=chunk), watch=[sims])
        assert c.syncs == 0, c.by_op
        # two comparisons per element (image→text and text→image, each block while it is in cache)
        # and the gathered ground truths (5 per image twice: the block's and every caption's own)
        assert c.bytes_read == 2 * sims.numel() * 4 + 2 * 1000 * 4, c.bytes_read
    # an accelerator's blocks (2^25 elements: a COCO 5K matrix in 4 blocks, not 500) rank alike
    assert default_chunk(torch.device("cuda")) == ACCELERATOR_CHUNK_ELEMS and default_chunk("cpu") == 1 << 18
    big = ranks(sims, 5, chunk_elems=ACCELERATOR_CHUNK_ELEMS)
    assert all(torch.equal(a, b) for a, b in zip(big, ranks(sims, 5, chunk_elems=1 << 12)))
    assert -(-5000 // (ACCELERATOR_CHUNK_ELEMS // 25000)) == 4


def test_the_per_sample_loss_pass_never_waits():
    s = torch.rand(128, 128)
    c, _ = _syncs(lambda: per_sample_triplet(s, 0.2))
    assert c.syncs == 0, c.by_op
