"""L2RM: the partial-OT kernel against a plain NumPy solution, the losses against explicit loops and
hand-computed cases, the learned cost, the division and the method's pieces. The official functions
on the same inputs: ``tests/parity`` (case ``l2rm``)."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch

from ncbench.kernels.losses import per_sample_triplet
from ncbench.kernels.rematch import robust_warmup_loss, symmetric_kl_loss
from ncbench.kernels.transport import partial_ot_plan, transport_targets
from ncbench.registry import METHODS


def _l2rm_module():
    return sys.modules[METHODS.get("l2rm").__module__]


def numpy_partial_ot(cost: np.ndarray, mass: float, reg: float, forbid_diagonal: bool, iters: int = 20000) -> np.ndarray:
    """The textbook reduction of partial OT to balanced OT (a dummy row and column of cost ξ = 100·max C,
    corner 2ξ + max C, dummy marginals 1 − mass), solved by the plain log-domain Sinkhorn iteration to
    convergence, written independently of ncbench (explicit NumPy, one row at a time)."""
    b = cost.shape[0]
    xi, peak = 100 * cost.max(), cost.max()
    big = np.full((b + 1, b + 1), xi)
    big[:b, :b] = cost
    big[b, b] = 2 * xi + peak
    allowed = np.ones((b + 1, b + 1), dtype=bool)
    if forbid_diagonal:
        allowed[np.arange(b), np.arange(b)] = False
    marg = np.full(b + 1, 1.0 / b)
    marg[b] = 1 - mass
    f, g = np.zeros(b + 1), np.zeros(b + 1)

    def lse(row_values, mask):
        v = row_values[mask]
        m = v.max()
        return m + math.log(np.exp(v - m).sum())

    for _ in range(iters):
        f_old = f.copy()
        for i in range(b + 1):
            f[i] = reg * (math.log(marg[i]) - lse((-big[i] + g) / reg, allowed[i]))
        for j in range(b + 1):
            g[j] = reg * (math.log(marg[j]) - lse((-big[:, j] + f) / reg, allowed[:, j]))
        if np.abs(f - f_old).max() < 1e-13:
            break
    plan = np.where(allowed, np.exp((-big + f[:, None] + g[None, :]) / reg), 0.0)
    return plan[:b, :b]


@pytest.mark.parametrize("forbid", [True, False])
def test_partial_ot_matches_a_plain_numpy_solution_marginals_met_cost_equal(forbid):
    rng = np.random.default_rng(0)
    cost = rng.uniform(0.0, 1.0, size=(12, 12))
    ref = numpy_partial_ot(cost, 0.3, 0.05, forbid)
    got = partial_ot_plan(torch.from_numpy(cost), 0.3, 0.05, forbid_diagonal=forbid, tol=1e-12).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-7, atol=1e-14)
    # partial marginals: every row and column carries at most 1/B, the plan moves exactly the mass
    assert got.sum() == pytest.approx(0.3, rel=1e-9)
    assert (got.sum(1) <= 1 / 12 + 1e-12).all() and (got.sum(0) <= 1 / 12 + 1e-12).all()
    assert (got * cost).sum() == pytest.approx((ref * cost).sum(), rel=1e-9)
    if forbid:
        assert np.diagonal(got).max() == 0.0


def test_partial_ot_prefers_cheap_pairs_and_forbids_the_diagonal():
    # two cheap off-diagonal pairs and a free (but forbidden) diagonal: the mass goes to the cheap pairs
    cost = np.ones((4, 4))
    np.fill_diagonal(cost, 0.0)
    cost[0, 1] = cost[1, 0] = 0.01
    plan = partial_ot_plan(torch.from_numpy(cost), mass=0.5, reg=0.01, tol=1e-12).numpy()
    assert plan[0, 1] == pytest.approx(0.25, abs=1e-3) and plan[1, 0] == pytest.approx(0.25, abs=1e-3)
    assert np.diagonal(plan).max() == 0.0 and plan.sum() == pytest.approx(0.5, rel=1e-5)


def test_a_batch_of_costs_gives_each_problem_its_own_plan_and_stopping_iteration():
    rng = np.random.default_rng(1)
    costs = torch.from_numpy(rng.uniform(0, 1, size=(3, 16, 16)))
    costs[1] *= 0.05  # converges in a different number of iterations
    batch = partial_ot_plan(costs, 0.1, 0.01)
    for k in range(3):
        torch.testing.assert_close(batch[k], partial_ot_plan(costs[k], 0.1, 0.01), rtol=0, atol=1e-15)
    for cap in (1, 3):  # the iteration cap applies per problem too
        torch.testing.assert_close(partial_ot_plan(costs, 0.1, 0.01, max_iter=cap)[2],
                                   partial_ot_plan(costs[2], 0.1, 0.01, max_iter=cap), rtol=0, atol=1e-15)


def test_transport_targets_normalise_rows_and_massless_rows_are_uniform_or_dropped():
    plan = torch.tensor([[0.0, 0.2, 0.0], [0.0, 0.0, 0.0], [0.1, 0.0, 0.1]], dtype=torch.float64)
    t_i2t, t_t2i, w_i2t, w_t2i = transport_targets(plan)
    assert t_i2t[1].tolist() == pytest.approx([1 / 3] * 3)  # no mass: uniform (official)
    assert t_i2t[0, 1] == pytest.approx(1.0, abs=1e-8) and t_i2t[2, 0] == pytest.approx(0.5, abs=1e-8)
    assert t_t2i[1, 0] == pytest.approx(1.0, abs=1e-8)  # caption 1's only image is image 0
    assert w_i2t.tolist() == [1, 1, 1] and w_t2i.tolist() == [1, 1, 1]
    _, _, w_i2t, w_t2i = transport_targets(plan, "drop")
    assert w_i2t.tolist() == [1, 0, 1] and w_t2i.tolist() == [1, 1, 1]
    with pytest.raises(ValueError, match="massless"):
        transport_targets(plan, "ignore")


def test_robust_warmup_loss_is_ce_plus_reverse_ce_by_hand():
    scores = torch.tensor([[0.9, 0.2], [0.4, 0.7]], dtype=torch.float64)
    tau, a = 0.05, -math.log(1e-7)
    total = 0.0
    for m in (scores, scores.T):
        for i in range(2):
            row = [math.exp(float(m[i, j]) / tau) for j in range(2)]
            p = [v / sum(row) for v in row]
            total += -math.log(p[i]) / 2 + (a * (1 - p[i]) - math.log(1 + 1e-7) * p[i]) / 2
    assert float(robust_warmup_loss(scores, tau)) == pytest.approx(total / 2, rel=1e-12)


def test_symmetric_kl_is_both_kls_both_directions_by_explicit_loops():
    rng = np.random.default_rng(2)
    scores = torch.from_numpy(rng.uniform(0, 1, size=(5, 5)))
    targets = [torch.from_numpy(rng.dirichlet(np.ones(5), size=5)) for _ in range(2)]
    weights = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0], dtype=torch.float64)
    tau = 0.1
    expected = 0.0
    for m, t in ((scores, targets[0]), (scores.T, targets[1])):
        for i in range(5):
            z = [math.exp(float(m[i, j]) / tau) for j in range(5)]
            p = [v / sum(z) for v in z]
            kl = sum(float(t[i, j]) * math.log(float(t[i, j]) / p[j]) + p[j] * math.log(p[j] / float(t[i, j]))
                     for j in range(5))
            expected += float(weights[i]) * kl / 5
    got = symmetric_kl_loss(scores, targets[0], targets[1], tau, weights, weights)
    assert float(got) == pytest.approx(expected / 2, rel=1e-10)


def test_the_learned_cost_starts_at_one_minus_the_score_and_only_the_official_one_depends_on_order():
    mod = _l2rm_module()
    torch.manual_seed(0)
    scores = torch.rand(6, 6)
    for cls in (mod.BatchLinearCost, mod.ElementwiseCost):
        torch.testing.assert_close(cls(6)(scores), torch.relu(1 - scores))
    linear, elementwise = mod.BatchLinearCost(6), mod.ElementwiseCost(6)
    with torch.no_grad():
        linear.fc.weight.add_(0.1 * torch.randn(6, 6))
        elementwise.weight.add_(0.3)
    perm = torch.tensor([3, 1, 0, 5, 2, 4])  # reorder the batch's captions
    torch.testing.assert_close(elementwise(scores[:, perm]), elementwise(scores)[:, perm])
    assert not torch.allclose(linear(scores[:, perm]), linear(scores)[:, perm])


def test_the_division_takes_the_component_larger_at_the_low_end_and_the_hinge_is_the_official_eval_loss():
    mod = _l2rm_module()
    rng = np.random.default_rng(3)
    losses = torch.from_numpy(np.concatenate([rng.beta(2, 30, 700), rng.beta(20, 4, 300)]))
    method = object.__new__(mod.L2RM)
    method.config = mod.L2RMConfig()
    fit, (lo, hi) = method.divide(losses)
    assert lo == pytest.approx(float(losses.min())) and hi == pytest.approx(float(losses.max()))
    prob = fit.prob.numpy()
    assert prob[:700].mean() > 0.9 and prob[700:].mean() < 0.1  # the low-loss pairs are clean
    at = torch.tensor([1e-3], dtype=torch.float64)
    posts = [float(fit.mixture.posterior(at, k)) for k in range(2)]
    assert fit.clean_component == int(np.argmax(posts))
    # the per-pair statistic is the official eval_loss: mean hinge over the row and the column (÷ B)
    s = torch.tensor([[0.8, 0.7, 0.1], [0.2, 0.5, 0.6], [0.3, 0.9, 0.4]], dtype=torch.float64)
    by_hand = [sum(max(0.0, 0.2 + float(s[i, j]) - float(s[i, i])) for j in range(3) if j != i) / 3
               + sum(max(0.0, 0.2 + float(s[j, i]) - float(s[i, i])) for j in range(3) if j != i) / 3 for i in range(3)]
    assert per_sample_triplet(s, 0.2).tolist() == pytest.approx(by_hand)


@pytest.mark.slow
def test_l2rm_beats_vanilla_at_60_percent_noise(noisy_sweep, beats_vanilla):
    """On the embedded data at 60% caption-level noise, seeds 0-2, by more than the two spreads added."""
    res = noisy_sweep("l2rm")
    beats_vanilla(res, "l2rm")
    assert all(r["detection"]["auc"] > 0.9 for r in res if r["identity"]["method"] == "l2rm")
