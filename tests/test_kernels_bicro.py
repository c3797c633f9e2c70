"""BiCro's kernels vs independent references: scipy's Beta density, a hand-run EM step, and a slow
explicit per-sample loop over anchors."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from ncbench.kernels import consistency
from ncbench.kernels.mixture import BMM1D, bmm_clean_posterior, fit_bmm_1d


def reference_bmm(x, iters=10, eps=1e-4):
    """Arazo-style Beta-mixture EM written with scipy.stats.beta and NumPy."""
    x = np.clip(x, eps, 1 - eps)
    a, b, pi = np.array([1.0, 2.0]), np.array([2.0, 1.0]), np.array([0.5, 0.5])
    for _ in range(iters):
        r = np.stack([pi[k] * stats.beta.pdf(x, a[k], b[k]) for k in range(2)])
        r[r <= 1e-12] = 1e-12
        r /= r.sum(axis=0)
        for k in range(2):
            m = np.sum(r[k] * x) / np.sum(r[k])
            v = np.sum(r[k] * (x - m) ** 2) / np.sum(r[k])
            a[k] = m * (m * (1 - m) / v - 1)
            b[k] = a[k] * (1 - m) / m
        pi = r.sum(axis=1) / r.sum()
    return a, b, pi


def test_beta_log_density_matches_scipy():
    bmm = BMM1D(torch.tensor([0.7, 3.0], dtype=torch.float64), torch.tensor([2.5, 1.2], dtype=torch.float64),
                torch.tensor([0.4, 0.6], dtype=torch.float64))
    x = torch.linspace(0.01, 0.99, 50, dtype=torch.float64)
    ref = np.stack([stats.beta.logpdf(x.numpy(), 0.7, 2.5), stats.beta.logpdf(x.numpy(), 3.0, 1.2)], axis=1)
    np.testing.assert_allclose(bmm.log_pdf(x).numpy(), ref, rtol=1e-10)


def test_bmm_em_matches_the_scipy_reference():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.beta(1.5, 8, 6000), rng.beta(6, 2, 4000)])
    a, b, pi = reference_bmm(x)
    fit = fit_bmm_1d(torch.from_numpy(x))
    np.testing.assert_allclose(fit.alphas.numpy(), a, rtol=1e-8)
    np.testing.assert_allclose(fit.betas.numpy(), b, rtol=1e-8)
    np.testing.assert_allclose(fit.weights.numpy(), pi, rtol=1e-8)


def test_one_em_step_by_hand():
    x = np.array([0.1, 0.2, 0.8, 0.9])
    # E-step with Beta(1,2) (pdf 2(1−x)) and Beta(2,1) (pdf 2x), equal weights: r0 = 1 − x
    r0 = 1 - x
    m0 = np.sum(r0 * x) / r0.sum()
    v0 = np.sum(r0 * (x - m0) ** 2) / r0.sum()
    a0 = m0 * (m0 * (1 - m0) / v0 - 1)
    fit = fit_bmm_1d(torch.from_numpy(x), max_iter=1)
    assert fit.alphas[0].item() == pytest.approx(a0)
    assert fit.betas[0].item() == pytest.approx(a0 * (1 - m0) / m0)
    assert fit.weights.tolist() == pytest.approx([r0.sum() / 4, x.sum() / 4])


def test_bmm_posterior_picks_low_loss_component_and_handles_exact_0_and_1():
    rng = np.random.default_rng(1)
    losses = torch.from_numpy(np.concatenate([rng.beta(1.2, 9, 3000), rng.beta(7, 2, 2000)]))
    p = bmm_clean_posterior(losses)  # min-max puts exact 0 and 1 in the data
    assert torch.isfinite(p).all()
    from sklearn.metrics import roc_auc_score

    truth = np.r_[np.ones(3000), np.zeros(2000)]
    assert roc_auc_score(truth, p.numpy()) > 0.99  # the low-loss component is the "clean" one
    assert p[:3000].mean() > 0.9 and p[3000:].mean() < 0.3  # 10 EM iterations leave the split soft
    assert p[losses.argmin()] > 0.99 and p[losses.argmax()] < 0.01


def slow_ratios(img, txt, anchors, form):
    """One sample and one anchor at a time, straight from the definition."""
    def cos(a, b):
        return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))

    def dist(a, b):
        return float(np.linalg.norm(a - b))

    out = []
    for x in range(len(img)):
        if form == "distance" and x in anchors:  # distance 0 to itself in both modalities: 0/0
            out.append((np.nan, np.nan))
            continue
        sv = [cos(img[x], img[a]) if form == "cosine" else dist(img[x], img[a]) for a in anchors]
        st = [cos(txt[x], txt[a]) if form == "cosine" else dist(txt[x], txt[a]) for a in anchors]
        pick = max if form == "cosine" else min
        av = sv.index(pick(sv))
        at = st.index(pick(st))
        out.append((min(sv[av] / st[av], st[av] / sv[av]), min(sv[at] / st[at], st[at] / sv[at])))
    return np.array(out)


@pytest.mark.parametrize("form", ["cosine", "distance"])
def test_consistency_ratios_match_the_slow_loop(form):
    rng = np.random.default_rng(2)
    img = rng.normal(size=(20, 6)) + 2.0  # positive cosines, as for mean-pooled embeddings
    txt = rng.normal(size=(20, 6)) + 2.0
    anchors = [0, 3, 7]
    ref = slow_ratios(img, txt, anchors, form)
    t_img, t_txt = torch.from_numpy(img), torch.from_numpy(txt)
    r_v, r_t = consistency.consistency_ratios(t_img, t_txt, t_img[anchors], t_txt[anchors], form)
    mask = np.ones(20, bool)
    if form == "distance":
        mask[anchors] = False  # an anchor's distance to itself is 0/0 in both modalities
    np.testing.assert_allclose(r_v.numpy()[mask], ref[mask, 0], rtol=1e-9)
    np.testing.assert_allclose(r_t.numpy()[mask], ref[mask, 1], rtol=1e-9)


def test_consistent_pair_gets_high_label_and_swapped_pair_low():
    # two anchors far apart in both modalities
    a_img = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    a_txt = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    img = torch.tensor([[0.95, 0.1, 0.1], [0.95, 0.1, 0.1]])
    txt = torch.tensor([[0.9, 0.15, 0.1], [0.1, 0.95, 0.1]])  # pair 0 consistent, pair 1 swapped
    r_v, r_t = consistency.consistency_ratios(img, txt, a_img, a_txt)
    y = consistency.noisy_batch_labels(r_v, r_t, threshold=0.5)
    assert y[0] > 0.95
    assert y[1] == 0.0  # ratio ≈ 0.1 → below the threshold
    full = torch.cat([a_img, img]), torch.cat([a_txt, txt])
    rv, rt = consistency.consistency_ratios(full[0], full[1], a_img, a_txt)
    labels = consistency.clean_batch_labels(rv, rt, torch.tensor([0, 1]))
    assert labels[:2].tolist() == [1.0, 1.0] and labels[2] > 0.95 and labels[3] < 0.6


def test_clean_batch_labels_hand_values_and_official_scatter():
    r_v = torch.tensor([0.9, 0.1, 0.8, 0.6, 0.2])
    r_t = torch.tensor([0.7, 0.3, 0.8, 0.2, 0.9])
    anchors = torch.tensor([1])
    # scores 0.5 + (r_v + r_t) / 4 by position: 0.9, 0.6, 0.9, 0.7, 0.775
    fixed = consistency.clean_batch_labels(r_v, r_t, anchors)
    assert fixed.tolist() == pytest.approx([0.9, 1.0, 0.9, 0.7, 0.775])
    official = consistency.clean_batch_labels(r_v, r_t, anchors, official_scatter=True)
    # non-anchors at positions 0, 2, 3, 4 receive the scores of positions 0, 1, 2, 3
    assert official.tolist() == pytest.approx([0.9, 1.0, 0.6, 0.9, 0.7])
    assert consistency.clean_batch_labels(torch.tensor([-1.0]), torch.tensor([-1.0]), torch.tensor([], dtype=torch.long)).tolist() == [0.0]


def test_official_scatter_takes_non_anchors_in_ascending_prediction():
    """Difference A, the issue's example: B = 5, anchor {4}; the official scatters the per-position
    scores onto the non-anchors in ``argsort(p)[:-k]`` order, i.e. [1, 3, 0, 2]."""
    p = torch.tensor([0.03, 0.01, 0.05, 0.02, 0.19])
    anchors, others = consistency.rank_for_anchors(p)
    assert anchors.tolist() == [4] and others.tolist() == [1, 3, 0, 2]
    score_to_r = 4 * (torch.tensor([0.6, 0.7, 0.8, 0.9, 1.0]) - 0.5) / 2  # r_v = r_t with 0.5 + (r_v + r_t)/4 = score
    official = consistency.clean_batch_labels(score_to_r, score_to_r, anchors, 0.5, official_scatter=True, others=others)
    assert official.tolist() == pytest.approx([0.8, 0.6, 0.9, 0.7, 1.0])
    fixed = consistency.clean_batch_labels(score_to_r, score_to_r, anchors, 0.5, others=others)
    assert fixed.tolist() == pytest.approx([0.6, 0.7, 0.8, 0.9, 1.0])


def test_ratio_of_opposite_sign_cosines_follows_the_official_where():
    """Difference B: v = 0.3, t = −0.6 → r_v = v/t = −0.5 (``where(v/t < 1, v/t, t/v)``), r_t = t/v = −2."""
    anchor = torch.tensor([[1.0, 0.0]])
    img = torch.tensor([[0.3, (1 - 0.09) ** 0.5]])  # cosine 0.3 with the anchor
    txt = torch.tensor([[-0.6, 0.8]])  # cosine −0.6
    r_v, r_t = consistency.consistency_ratios(img, txt, anchor, anchor)
    assert r_v.item() == pytest.approx(-0.5) and r_t.item() == pytest.approx(-2.0)
    # positive closeness: both forms are min(a/b, b/a)
    r_v, r_t = consistency.consistency_ratios(img.abs(), txt.abs(), anchor, anchor)
    assert r_v.item() == pytest.approx(0.5) and r_t.item() == pytest.approx(0.5)


def test_anchor_ties_are_broken_by_the_official_argsort():
    """Difference C: with more than k predictions tied at the clip value the anchors are those of
    ``torch.argsort(p)[-k:]`` (deterministic on CPU), not of ``topk``."""
    p = torch.full((40,), 0.2)
    p[::7] = 0.1
    anchors, others = consistency.rank_for_anchors(p)
    order = torch.argsort(p)
    assert anchors.tolist() == order[-5:].tolist() and others.tolist() == order[:-5].tolist()
    assert torch.equal(consistency.rank_for_anchors(p)[0], anchors)


def test_anchor_selection_and_warmup_loss():
    p = torch.tensor([0.1, 0.5, 0.0, 0.3] + [0.05] * 16)  # B = 20 → k = 3
    assert sorted(consistency.select_anchors(p).tolist()) == [0, 1, 3]
    per = torch.arange(10, dtype=torch.float64)
    assert consistency.lowest_loss_sum(per, 0.3).item() == 0 + 1 + 2
    assert math.isclose(consistency.lowest_loss_sum(per, 0.5).item(), 10.0)
