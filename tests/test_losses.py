"""Triplet losses vs explicit loops over the batch (spec §2.3)."""

import pytest
import torch

from ncbench.kernels.losses import hinge_costs, per_sample_triplet, triplet_loss


def loop_hinges(S, margin):
    B = S.shape[0]
    m = [margin] * B if isinstance(margin, float) else margin.tolist()
    h_s = [[0.0] * B for _ in range(B)]
    h_im = [[0.0] * B for _ in range(B)]
    for i in range(B):
        for j in range(B):
            if i != j:
                h_s[i][j] = max(0.0, m[i] + S[i, j].item() - S[i, i].item())
                h_im[i][j] = max(0.0, m[j] + S[i, j].item() - S[j, j].item())
    return h_s, h_im


@pytest.mark.parametrize("margin", [0.2, "vector"])
def test_hard_negative_and_mean_losses_match_the_double_loop(margin):
    torch.manual_seed(0)
    S = torch.rand(7, 7, dtype=torch.float64)
    if margin == "vector":
        margin = torch.rand(7, dtype=torch.float64) * 0.2
    h_s, h_im = loop_hinges(S, margin)
    B = 7
    hard = sum(max(h_s[i]) for i in range(B)) + sum(max(h_im[i][j] for i in range(B)) for j in range(B))
    mean = sum(sum(h_s[i]) / B for i in range(B)) + sum(sum(h_im[i][j] for i in range(B)) / B for j in range(B))
    assert triplet_loss(S, margin, hard_negative=True).item() == pytest.approx(hard)
    assert triplet_loss(S, margin, hard_negative=False).item() == pytest.approx(mean)
    per = per_sample_triplet(S, margin)
    for i in range(B):
        assert per[i].item() == pytest.approx(sum(h_s[i]) / B + sum(h_im[k][i] for k in range(B)) / B)


def test_zero_diagonal_and_gradient():
    S = torch.rand(5, 5, requires_grad=True)
    cost_s, cost_im = hinge_costs(S, 0.2)
    assert torch.all(cost_s.diagonal() == 0) and torch.all(cost_im.diagonal() == 0)
    triplet_loss(S).backward()
    assert torch.isfinite(S.grad).all()
