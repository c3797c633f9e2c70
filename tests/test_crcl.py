"""CRCL: the ACL vs a per-sample transcription, label correction by hand, augmentation, end to end."""

import math

import numpy as np
import pytest
import torch

from ncbench.data.augment import mask_regions, perturb_captions
from ncbench.kernels.complementary import active_complementary_loss, batch_probabilities, correct_labels, match_probability
from ncbench.registry import METHODS


def acl_by_hand(S, y, tau=0.05, lam=5.0, q=None):
    """The formula of spec §5.4, one pair and one entry at a time."""
    B = len(S)
    total_active = total_comp = 0.0
    for i in range(B):
        row = [math.exp(S[i][j] / tau) for j in range(B)]
        col = [math.exp(S[j][i] / tau) for j in range(B)]
        p_row = [v / sum(row) for v in row]
        p_col = [v / sum(col) for v in col]
        total_active += y[i] * (-math.log(p_row[i]) - math.log(p_col[i]))
        qi = 1 - y[i] if q is None else q
        for p in (p_row, p_col):
            num = sum(math.tan(p[j]) for j in range(B) if j != i)
            total_comp += num / sum(math.tan(v) for v in p) ** qi
    return total_active / B + lam * total_comp / B


@pytest.mark.parametrize("labels", [[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.3, 0.75]])
@pytest.mark.parametrize("q", [None, 0.5])
def test_acl_matches_the_per_sample_formula(labels, q):
    torch.manual_seed(0)
    S = torch.rand(4, 4, dtype=torch.float64) * 2 - 1
    y = torch.tensor(labels, dtype=torch.float64)
    ours = active_complementary_loss(S, y, q=q).item()
    assert ours == pytest.approx(acl_by_hand(S.tolist(), labels, q=q), rel=1e-9)


def test_acl_is_finite_at_probabilities_0_and_1():
    S = torch.tensor([[1.0, -1.0, -1.0], [-1.0, 1.0, -1.0], [1.0, 1.0, -1.0]], requires_grad=True)
    p1, _ = batch_probabilities(S.detach(), tau=0.001)  # saturated: probabilities exactly 0 and 1
    assert (p1 == 0).any() and (p1 == 1).any()
    for y in ([0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.0, 0.0, 0.5]):
        loss = active_complementary_loss(S, torch.tensor(y), tau=0.001)
        S.grad = None
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(S.grad).all()


def test_batch_probabilities_and_match_probability():
    S = torch.tensor([[0.9, 0.1], [0.2, 0.8]], dtype=torch.float64)
    p1, p2 = batch_probabilities(S, tau=0.1)
    e = math.exp
    assert p1[0, 0].item() == pytest.approx(e(9) / (e(9) + e(1)))
    assert p2[0, 0].item() == pytest.approx(e(9) / (e(9) + e(2)))  # caption 0 over images: S[0,0], S[1,0]
    assert match_probability(p1, p2)[0].item() == pytest.approx((p1[0, 0] + p2[0, 0]).item() / 2)


def test_label_correction_by_hand():
    y_last = torch.tensor([1.0, 0.5, 0.1])
    p = torch.tensor([0.2, 0.0, 0.05])
    # difference G: the official truncates below 0.1 in the warm epochs too
    assert correct_labels(y_last, p, warm=True).tolist() == pytest.approx([1.0, 0.5, 0.1])
    assert correct_labels(torch.tensor([0.09, 0.5]), p[:2], warm=True).tolist() == pytest.approx([0.0, 0.5])
    assert correct_labels(torch.tensor([0.09]), p[:1], warm=True, confident=False).tolist() == pytest.approx([0.09])
    # without momentum (official ``mc`` off) y = p in every epoch
    assert correct_labels(y_last, p, warm=True, momentum=False).tolist() == pytest.approx(p.tolist())
    y = correct_labels(y_last, p, warm=False)
    assert y.tolist() == pytest.approx([0.8 * 1 + 0.2 * 0.2, 0.8 * 0.5, 0.0])  # 0.09 < 0.1 → 0
    assert correct_labels(y_last, p, warm=False, confident=False)[2].item() == pytest.approx(0.09)
    assert correct_labels(y_last, p, warm=False, momentum=False).tolist() == pytest.approx(p.tolist())


def _crcl(tmp_path, small_context, **opts):
    ctx, _ = small_context(tmp_path)
    M = METHODS.get("crcl")
    cfg = M.make_config("synthetic", {"batch_size": 32, **opts})
    return M(cfg, ctx), ctx


def test_label_store_follows_the_momentum_rule(tmp_path, small_context, monkeypatch):
    """Follow the stored labels through a warm boundary and a stage boundary, with the matching
    probability fixed at 0.3 so the expected values can be computed by hand."""
    import ncbench.methods.crcl as crcl_module

    monkeypatch.setattr(crcl_module, "batch_match_probability",
                        lambda scores, tau: torch.full((scores.shape[0],), 0.3, dtype=scores.dtype))
    m, ctx = _crcl(tmp_path, small_context, schedules=(2, 1), warm_epochs=2, augment=0.0)
    assert m.total_epochs == 7 and [m.stage_of(e) for e in (0, 3, 4, 6)] == [(0, 0), (0, 3), (1, 0), (1, 2)]
    expected = 1.0
    first_net = m.net
    for epoch in range(m.total_epochs):
        m.train_epoch(epoch)
        stage, e = m.stage_of(epoch)
        if stage == 0 and e == 0:
            pass  # warm: frozen at 1
        elif stage == 0 and e == 1:
            expected = 0.3  # end of stage-0 warm-up: reset to the raw prediction
        elif stage == 1 and e < 2:
            pass  # warm epochs of a later stage: frozen, no reset
        else:
            expected = 0.8 * expected + 0.2 * 0.3  # once per epoch (each pair is seen once)
        assert np.allclose(m.labels.numpy(), expected), (epoch, m.labels[:3], expected)
        if epoch == 4:
            assert m.net is not first_net  # a new stage re-initialises the network
    assert np.allclose(m.clean_probability(), expected)


def test_crcl_trains_and_rejects_epochs(tmp_path, small_context):
    from ncbench.errors import ConfigError

    m, _ = _crcl(tmp_path, small_context, schedules=(1, 1), warm_epochs=1)
    logs = [m.train_epoch(e) for e in range(m.total_epochs)]
    assert all(np.isfinite(v) for row in logs for v in row.values())
    with pytest.raises(ConfigError, match="schedules"):
        _crcl(tmp_path, small_context, epochs=5)


def test_caption_perturbation():
    g = torch.Generator().manual_seed(0)
    tokens = torch.tensor([[1, 5, 6, 7, 8, 9, 2, 0], [1, 10, 2, 0, 0, 0, 0, 0]])
    lengths = torch.tensor([7, 3])
    out, new_len = perturb_captions(tokens, lengths, mask_id=99, vocab_size=50, generator=g, p=1.0)
    assert (new_len >= 1).all() and (new_len <= lengths).all()
    for row, n in zip(out, new_len):
        assert (row[n:] == 0).all() and (row[:n] != 0).all()
    assert torch.equal(perturb_captions(tokens, lengths, 99, 50, torch.Generator().manual_seed(0), p=0.0)[0], tokens[:, :7])
    # statistics at p = 0.2 over many tokens: ~10% masked, ~8% deleted
    many = torch.full((2000, 20), 7)
    m_out, m_len = perturb_captions(many, torch.full((2000,), 20), 99, 50, torch.Generator().manual_seed(1), p=0.2)
    assert abs((m_out == 99).float().sum().item() / 40000 - 0.10) < 0.01
    assert abs(1 - m_len.float().mean().item() / 20 - 0.08) < 0.01


def test_region_masking_copies():
    images = torch.ones(4, 36, 8)
    out = mask_regions(images, torch.Generator().manual_seed(0), p=0.5)
    assert torch.all(images == 1)  # input untouched
    assert ((out == 1e-10).all(-1).sum() > 0) and out.shape == images.shape
    flat = torch.ones(4, 8)
    assert mask_regions(flat, torch.Generator()) is flat


@pytest.mark.slow
def test_crcl_beats_vanilla_at_60_percent_noise(noisy_sweep, beats_vanilla):
    beats_vanilla(noisy_sweep("crcl"), "crcl")
