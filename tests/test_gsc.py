"""GSC (CVPR'24): its structure kernels against explicit loops written here, the GMM posterior
against scikit-learn, the end-of-epoch target update by hand, the method's per-pair stores after an
epoch on the small embedded data, and its option checks; parity with the official code is in
tests/parity/cases/gsc.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ncbench.kernels import structure as st


def _batch(b: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    scores = torch.rand(b, b, generator=g, dtype=torch.float64) * 2 - 1
    img = torch.rand(b, b, generator=g, dtype=torch.float64)
    cap = torch.rand(b, b, generator=g, dtype=torch.float64)
    targets = torch.rand(b, generator=g, dtype=torch.float64)
    return scores, img, cap, targets


def _cos(u: list[float], v: list[float]) -> float:
    dot = sum(a * b for a, b in zip(u, v))
    return dot / max(math.sqrt(sum(a * a for a in u)) * math.sqrt(sum(b * b for b in v)), 1e-8)


def _nll(row: list[float], i: int, temp: float) -> float:
    """−log(exp(row[i]/T) / Σ_k exp(row[k]/T)), the official ``info_nce_loss`` of one row."""
    return -(row[i] / temp - math.log(sum(math.exp(x / temp) for x in row)))


def test_structure_terms_by_explicit_loops():
    """Column j of each intra-modal matrix scaled by t_j; consistency = cosine of the rows;
    structure loss = InfoNCE at temperature 1 of T[i, k] = Σ_j Ĩ[i, j] C̃[k, j], image rows."""
    _, img, cap, t = _batch()
    b = len(t)
    wi, wc = st.weighted_structure(img, t), st.weighted_structure(cap, t)
    ref_i = [[float(img[i, j] * t[j]) for j in range(b)] for i in range(b)]
    ref_c = [[float(cap[i, j] * t[j]) for j in range(b)] for i in range(b)]
    np.testing.assert_allclose(wi.numpy(), ref_i, rtol=1e-14)
    np.testing.assert_allclose(wc.numpy(), ref_c, rtol=1e-14)
    cons = st.structure_consistency(wi, wc).numpy()
    np.testing.assert_allclose(cons, [_cos(ref_i[i], ref_c[i]) for i in range(b)], rtol=1e-12)
    topo = [[sum(ref_i[i][j] * ref_c[k][j] for j in range(b)) for k in range(b)] for i in range(b)]
    np.testing.assert_allclose(st.structure_loss(wi, wc).numpy(), [_nll(topo[i], i, 1.0) for i in range(b)], rtol=1e-12)


def test_the_whole_batch_loss_by_an_explicit_loop():
    """mean t_i (ℓ^{i2t}_i + ℓ^{t2i}_i)/2 + γ mean t_i ℓ^{topo}_i, the matching probability
    (P_i2t[i,i] + P_t2i[i,i])/2 and the consistency, every entry computed pair by pair."""
    scores, img, cap, t = _batch(7, seed=3)
    b, tau, gamma = len(t), 0.07, 0.3
    out = st.gsc_loss(scores, img, cap, t, tau, gamma)
    s = scores.tolist()
    cols = [[s[k][i] for k in range(b)] for i in range(b)]
    cross = [(_nll(s[i], i, tau) + _nll(cols[i], i, tau)) / 2 * float(t[i]) for i in range(b)]
    wi = [[float(img[i, j] * t[j]) for j in range(b)] for i in range(b)]
    wc = [[float(cap[i, j] * t[j]) for j in range(b)] for i in range(b)]
    topo = [[sum(wi[i][j] * wc[k][j] for j in range(b)) for k in range(b)] for i in range(b)]
    structure = [_nll(topo[i], i, 1.0) * float(t[i]) for i in range(b)]
    assert float(out.cross_modal) == pytest.approx(sum(cross) / b, rel=1e-10)
    assert float(out.structure) == pytest.approx(sum(structure) / b, rel=1e-10)
    assert float(out.loss) == pytest.approx(sum(cross) / b + gamma * sum(structure) / b, rel=1e-10)
    prob = [(math.exp(-_nll(s[i], i, tau)) + math.exp(-_nll(cols[i], i, tau))) / 2 for i in range(b)]
    np.testing.assert_allclose(out.match_probability.numpy(), prob, rtol=1e-10)
    np.testing.assert_allclose(out.consistency.numpy(), [_cos(wi[i], wc[i]) for i in range(b)], rtol=1e-12)
    # only the loss carries a gradient
    assert out.loss.requires_grad is False and not out.consistency.requires_grad
    w = scores.clone().requires_grad_(True)
    assert st.gsc_loss(w, img, cap, t, tau, gamma).loss.requires_grad


def test_warmup_loss_by_an_explicit_loop():
    scores, *_ = _batch(5, seed=4)
    s = scores.tolist()
    ref = sum(_nll(s[i], i, 0.07) for i in range(5)) / 5
    assert float(st.image_to_text_info_nce(scores, 0.07)) == pytest.approx(ref, rel=1e-12)


def test_structure_loss_is_finite_where_the_officials_exp_overflows():
    """Every intra-modal score 1 and B = 128: the structure logits are 128, past float32 exp's range
    (the official's exp/Σexp gives inf/inf); the log-softmax gives log B for every row."""
    ones = torch.ones(128, 128)
    got = st.structure_loss(ones, ones)
    assert torch.isinf(torch.exp(ones @ ones.T)).all()
    torch.testing.assert_close(got, torch.full((128,), math.log(128)), rtol=1e-6, atol=1e-6)


def test_consistent_posterior_is_sklearns_posterior_of_the_higher_mean_component():
    from sklearn.mixture import GaussianMixture

    rng = np.random.default_rng(4)
    x = np.concatenate([rng.normal(0.85, 0.05, 3000), rng.normal(0.4, 0.1, 2000)])
    rng.shuffle(x)
    xn = (x - x.min()) / (x.max() - x.min())
    gmm = GaussianMixture(n_components=2, max_iter=10, tol=1e-2, reg_covar=5e-4, random_state=0).fit(xn[:, None])
    ref = gmm.predict_proba(xn[:, None])[:, gmm.means_.argmax()]
    got = st.consistent_posterior(torch.from_numpy(x)).prob.numpy()
    assert np.mean((got > 0.5) == (ref > 0.5)) >= 0.999
    assert np.abs(got - ref).max() < 0.05
    assert got[x > 0.8].mean() > 0.95 and got[x < 0.45].mean() < 0.05  # high consistency = clean


def test_target_update_by_hand():
    prob = torch.tensor([0.9, 0.2, 0.6], dtype=torch.float64)
    preds = torch.tensor([0.5, 0.8, 0.1], dtype=torch.float64)
    topo0 = torch.tensor([1.0, 1.0, 0.5], dtype=torch.float64)
    pred0 = torch.tensor([1.0, 0.4, 1.0], dtype=torch.float64)
    topo, pred, t = st.update_targets(prob, preds, topo0, pred0, 0.7)
    assert topo.tolist() == pytest.approx([0.93, 0.44, 0.57])
    assert pred.tolist() == pytest.approx([0.65, 0.68, 0.37])
    assert t.tolist() == pytest.approx([0.65, 0.44, 0.37])


# -- the method ------------------------------------------------------------------------------------
def _method(cache_dir, **opts):
    from ncbench.data.batching import TrainingSet
    from ncbench.data.noise import make_noise_index
    from ncbench.engine.method import TrainContext
    from ncbench.registry import BACKBONES, DATASETS, METHODS

    ds = DATASETS.get("synthetic-small").load(None, cache_dir)
    noise = make_noise_index(ds.train.caption_to_row(), 0.6, 0)
    cls = BACKBONES.get("vse_bow")
    ctx = TrainContext(TrainingSet(ds.train, noise), lambda extra_tokens=0: cls(cls.Config(embed_dim=32), len(ds.vocab) + extra_tokens,
                                                                                 ds.train.images.shape[-1]),
                       len(ds.vocab), torch.device("cpu"), torch.Generator().manual_seed(0))
    gsc = METHODS.get("gsc")
    return gsc(gsc.make_config("synthetic", opts), ctx), noise


def test_an_epoch_stores_every_pairs_values_and_updates_the_targets_at_its_end(cache_dir):
    """After one epoch every pair's matching probability and consistency were recomputed (none is the
    initial 1); the targets are min(β preds + (1 − β), β p + (1 − β)) with p the higher-mean
    posterior of the stored consistencies; the checkpoint holds all five stores and restores them."""
    torch.manual_seed(0)
    m, _ = _method(cache_dir, batch_size=64)
    plan = m.plan_epoch(0)
    for i in range(len(plan.steps)):
        logs = m.train_step(0, plan, i)
        assert {"loss", "loss_cl", "loss_topo"} <= set(logs)
    seen = np.concatenate(plan.steps)
    assert len(seen) == len(m.preds) and (m.preds[seen] < 1).all() and (m.topos[seen] < 1).all()
    assert torch.equal(m.targets, torch.ones_like(m.targets))  # unchanged until the epoch's end
    m.end_epoch(0, plan)
    p = st.consistent_posterior(m.topos).prob
    expected = torch.minimum(0.7 * m.preds + 0.3, 0.7 * p + 0.3)
    torch.testing.assert_close(m.targets, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(m.clean_probability(), expected.numpy(), rtol=1e-12)
    state = m.state_dict()
    assert {"targets", "preds", "pred_targets", "topos", "topo_targets"} <= set(state)
    fresh, _ = _method(cache_dir, batch_size=64)
    fresh.load_state_dict(state)
    for key in ("targets", "preds", "pred_targets", "topos", "topo_targets"):
        assert torch.equal(getattr(fresh, key), getattr(m, key)), key


def test_a_warmup_epoch_trains_every_pair_and_leaves_the_targets_alone(cache_dir):
    """warmup_epochs=1: epoch 0 is the image-to-text InfoNCE at the initial lr, stores untouched and
    not selectable; the decay counts from the first epoch after it (×0.2 every lr_update)."""
    m, _ = _method(cache_dir, batch_size=256, warmup_epochs=1, epochs=3, lr_update=1, lr=1e-3)
    assert m.total_epochs == 4 and not m.selectable(0) and m.selectable(1) and m.first_steady_epoch == 1
    lrs = []
    for e in range(3):
        plan = m.plan_epoch(e)
        lrs.append(m.optimizer.param_groups[0]["lr"])
        logs = [m.train_step(e, plan, i) for i in range(len(plan.steps))]
        m.end_epoch(e, plan)
        if e == 0:
            assert all(set(row) == {"loss"} for row in logs)
            for key in ("targets", "preds", "topos"):
                assert torch.equal(getattr(m, key), torch.ones_like(m.targets)), key
    assert lrs == pytest.approx([1e-3, 1e-3, 2e-4])
    assert (m.targets < 1).all()


def test_the_targets_separate_clean_from_noisy_pairs_after_training(cache_dir):
    """Two epochs on the small data at 60% noise: the targets rank clean pairs above noisy ones."""
    from sklearn.metrics import roc_auc_score

    torch.manual_seed(0)
    m, noise = _method(cache_dir, batch_size=64)
    for e in range(2):
        m.train_epoch(e)
    assert roc_auc_score(noise.clean, m.clean_probability()) > 0.7


@pytest.mark.parametrize("option, value", [("beta", "1.5"), ("gamma", "-1"), ("tau", "0")])
def test_a_bad_option_is_one_line_naming_it(tmp_path, cache_dir, capsys, option, value):
    from ncbench.cli import main

    code = main(["run", "--methods", "gsc", "--dataset", "synthetic-small", "--backbones", "vse_bow", "--noise", "0.2",
                 "--seeds", "0", "--threads", "1", "--no-progress", "--results", str(tmp_path / "r"),
                 "--cache-dir", str(cache_dir), "--method-opt", f"{option}={value}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("ncbench: error:") and option in err[-1] and value in err[-1], err
    assert "Traceback" not in "\n".join(err)


def test_coco_defaults_follow_the_official_script():
    from ncbench.registry import METHODS

    gsc = METHODS.get("gsc")
    f30k, coco = gsc.make_config("f30k"), gsc.make_config("coco")
    assert (f30k.epochs, f30k.lr, f30k.lr_update, f30k.lr_decay, f30k.batch_size, f30k.gamma, f30k.beta, f30k.tau) == \
        (60, 2e-4, 15, 0.2, 128, 0.01, 0.7, 0.07)
    assert (coco.lr_update, coco.gamma) == (20, 1.0)


@pytest.mark.slow
def test_gsc_beats_vanilla_at_60_percent_noise(noisy_sweep, beats_vanilla):
    beats_vanilla(noisy_sweep("gsc"), "gsc")
