"""RCL: the complementary contrastive loss against hand-computed values and a slow explicit loop,
the sampled negatives, and the method end to end on the embedded data (parity with the official
``CCL`` is in tests/parity)."""

import math

import numpy as np
import pytest
import torch

from ncbench.kernels.ccl import VARIANTS, complementary_contrastive_loss, negative_mask


def slow_ccl(S: np.ndarray, tau: float, variant: str, q: float, mask: np.ndarray) -> float:
    """Both directions, one row and one entry at a time, from the spec's formula."""
    n = len(S)
    total = 0.0
    for M in (S, S.T):
        rows = []
        for i in range(n):
            e = [math.exp(M[i, j] / tau) for j in range(n)]
            p = [v / sum(e) for v in e]
            if variant == "infoNCE":
                rows.append(-math.log(p[i]))
                continue
            f = {"log": lambda x: -math.log(1 - x + 1e-10), "tan": math.tan, "abs": lambda x: x,
                 "exp": lambda x: math.exp(-(1 - x)), "gce": lambda x: (1 - (1 - x + 1e-10) ** q) / q}[variant]
            rows.append(sum(f(p[j]) for j in range(n) if mask[i, j]))
        total += sum(rows) / n
    return total


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_matches_the_slow_loop(variant):
    rng = np.random.default_rng(0)
    S = rng.uniform(-0.2, 0.8, size=(7, 7))
    mask = ~np.eye(7, dtype=bool)
    got = complementary_contrastive_loss(torch.from_numpy(S), 0.05, variant, 0.2)
    assert float(got) == pytest.approx(slow_ccl(S, 0.05, variant, 0.2, mask), rel=1e-10)


def test_log_loss_by_hand():
    """2 × 2, τ = 1: P_i2t row 0 = softmax(1, 0) → negative prob 1/(1+e); row 1 = softmax(0, 1)
    → negative prob 1/(1+e) as well; the same for t2i. Loss = 2 · −log(1 − 1/(1+e))."""
    S = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    neg = 1 / (1 + math.e)
    assert float(complementary_contrastive_loss(S, 1.0, "log")) == pytest.approx(-2 * math.log(1 - neg + 1e-10))


def test_sampled_negatives_are_off_diagonal_and_seeded():
    g = torch.Generator().manual_seed(3)
    m = negative_mask(10, 0.3, g)
    assert m.sum(1).tolist() == [3.0] * 10 and m.diagonal().sum() == 0
    assert torch.equal(m, negative_mask(10, 0.3, torch.Generator().manual_seed(3)))
    assert not torch.equal(m, negative_mask(10, 0.3, torch.Generator().manual_seed(4)))
    assert torch.equal(negative_mask(4), 1 - torch.eye(4)) and torch.equal(negative_mask(4, 1.0), 1 - torch.eye(4))


def test_unknown_variant_is_a_config_error():
    from ncbench.engine.method import build_config
    from ncbench.errors import ConfigError
    from ncbench.registry import METHODS

    rcl = METHODS.get("rcl")
    with pytest.raises(ConfigError, match="unknown loss 'lg'"):
        rcl(build_config(rcl.Config, {"loss": "lg"}), None)
