"""DECL's evidential kernels against independent references (scipy's Dirichlet entropy, slow loops,
hand-computed values) and the method's warm-up rule; parity with the official code is in tests/parity."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from ncbench.kernels import evidential as ev


def test_kl_to_the_uniform_dirichlet_matches_scipy():
    """KL(Dir(α) ‖ Dir(1)) = −H(Dir(α)) − log Γ(K): Dir(1) has the constant density Γ(K)."""
    rng = np.random.default_rng(0)
    alpha = rng.uniform(1.0, 30.0, size=(4, 6))
    ref = [-stats.dirichlet(a).entropy() - math.lgamma(6) for a in alpha]
    np.testing.assert_allclose(ev.kl_to_uniform(torch.from_numpy(alpha)).numpy(), ref, rtol=1e-10)
    assert float(ev.kl_to_uniform(torch.ones(1, 5, dtype=torch.float64))) == pytest.approx(0.0, abs=1e-12)


def test_edl_loss_by_a_slow_loop():
    rng = np.random.default_rng(1)
    alpha = rng.uniform(1.0, 10.0, size=(3, 4))
    target = np.eye(3, 4)
    target[1] = 0  # a noisy row
    got = ev.edl_loss(torch.from_numpy(alpha), torch.from_numpy(target), 0.1).numpy()
    for i in range(3):
        s = alpha[i].sum()
        err = sum((target[i, j] - alpha[i, j] / s) ** 2 for j in range(4))
        var = sum(alpha[i, j] * (s - alpha[i, j]) / (s * s * (s + 1)) for j in range(4))
        tilde = [(alpha[i, j] - 1) * (1 - target[i, j]) + 1 for j in range(4)]
        kl = -stats.dirichlet(tilde).entropy() - math.lgamma(4)
        assert got[i] == pytest.approx(err + var + 0.1 * kl, rel=1e-10)


def test_dynamic_hinge_by_a_slow_loop_and_its_annealing():
    rng = np.random.default_rng(2)
    t = rng.uniform(-1, 1, size=(6, 6))
    got = ev.rdh_loss(torch.from_numpy(t), 3, 0.2).numpy()
    for i in range(6):
        row = sorted((max(0.0, 0.2 - t[i, i] + t[i, j]) for j in range(6) if j != i), reverse=True)
        col = sorted((max(0.0, 0.2 - t[i, i] + t[j, i]) for j in range(6) if j != i), reverse=True)
        assert got[i] == pytest.approx((sum(row[:3]) + sum(col[:3])) / 3, rel=1e-12)
    # K = max(⌊128 − 0.025·step⌋, 5); a smaller batch caps it at B − 1
    assert [ev.hardness(s, 128, 128) for s in (1, 40, 4920, 10**6)] == [127, 127, 5, 5]
    assert ev.hardness(1, 128, 10) == 9 and ev.hardness(4920, 128, 10) == 5


def test_decision_and_uncertainty_by_hand():
    """Pair 1's caption scores higher with image 0 than with its own image: the symmetrised
    evidence's argmax for row 1 is 0, so pair 1 is noisy; u = B/S_i2t + B/S_t2i."""
    t = torch.tensor([[1.0, 0.8, -0.5], [0.95, 0.1, -0.2], [-0.3, 0.0, 0.7]], dtype=torch.float64)
    clean, score, u = ev.decide(t, 0.1)
    assert clean.tolist() == [True, False, True]
    e = torch.exp(t / 0.1)
    shared = e + e.T
    assert score.tolist() == pytest.approx((shared.diagonal() / shared.sum(1)).tolist())
    assert u.tolist() == pytest.approx((3 / (e.sum(1) + 3) + 3 / (e.sum(0) + 3)).tolist())
    assert ((u > 0) & (u <= 2)).all()


def test_signed_score_of_a_sigmoid_head_is_tanh_of_its_logit():
    from ncbench.backbones.sgraf import SGRAF

    z = torch.linspace(-40, 40, 161, dtype=torch.float64)
    torch.testing.assert_close(SGRAF.signed(None, torch.sigmoid(z)), torch.tanh(z), rtol=0, atol=1e-15)


def test_warmup_follows_the_official_scripts_by_nominal_noise_ratio(tmp_path):
    """F30K: 5 warm-up epochs at 20/40% noise, 2 at 60/80%; an explicit warmup_epochs wins."""
    from types import SimpleNamespace

    from ncbench.engine.method import build_config
    from ncbench.registry import METHODS

    decl = METHODS.get("decl")

    def warmup(ratio, **opts):
        ctx = SimpleNamespace(train=SimpleNamespace(noise_ratio=ratio, __len__=lambda: 0),
                              build_backbone=lambda: torch.nn.Linear(1, 1), device=torch.device("cpu"))
        return decl(build_config(decl.Config, opts), ctx).warmup

    assert [warmup(r) for r in (0.0, 0.2, 0.4, 0.5, 0.6, 0.8)] == [5, 5, 5, 2, 2, 2]
    assert warmup(0.6, warmup_epochs=3) == 3
    coco = decl.make_config("coco")
    assert (coco.warmup_low, coco.warmup_high, coco.epochs, coco.lr_update) == (2, 1, 20, 10)
