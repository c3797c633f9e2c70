"""PC² (issue 32): the pseudo-classification kernels against explicit loops, and the method's bank,
oscillation split, clean targets, pseudo-caption step and options on the tiny synthetic set."""

import math

import numpy as np
import pytest
import torch

from ncbench.errors import ConfigError
from ncbench.kernels.pseudo_class import (
    clean_targets,
    fit_length,
    head_input,
    oscillation,
    pseudo_caption_match,
    pseudo_classification_loss,
)
from ncbench.registry import METHODS


# -- kernels against explicit loops ------------------------------------------------------------------
def _interpolate_loop(words: np.ndarray, length: int) -> np.ndarray:
    """Linear resampling with align_corners=False, one output position at a time."""
    n, L, E = words.shape
    out = np.zeros((n, length, E))
    for j in range(length):
        src = max((j + 0.5) * L / length - 0.5, 0.0)
        lo = int(math.floor(src))
        hi = min(lo + 1, L - 1)
        lam = src - lo
        out[:, j] = (1 - lam) * words[:, lo] + lam * words[:, hi]
    return out


def test_fit_length_interpolates_longer_and_pads_shorter_captions():
    g = torch.Generator().manual_seed(0)
    long = torch.randn(3, 11, 4, generator=g, dtype=torch.float64)
    np.testing.assert_allclose(fit_length(long, 5).numpy(), _interpolate_loop(long.numpy(), 5), rtol=1e-12)
    short = torch.randn(2, 3, 4, generator=g, dtype=torch.float64)
    padded = fit_length(short, 8)  # 5 zeros: 2 in front, 3 behind
    expect = np.zeros((2, 8, 4))
    expect[:, 2:5] = short.numpy()
    np.testing.assert_array_equal(padded.numpy(), expect)
    assert fit_length(short, 3) is short
    assert head_input(long, 5).shape == (3, 20) and head_input(long).shape == (3, 44)
    flat = torch.randn(3, 7)
    assert head_input(flat, 5) is flat


def test_pseudo_classification_loss_matches_a_per_sample_loop():
    g = torch.Generator().manual_seed(1)
    img, txt = torch.randn(5, 6, generator=g, dtype=torch.float64), torch.randn(5, 6, generator=g, dtype=torch.float64)
    img[0] = torch.tensor([40.0, -40.0, 0, 0, 0, 0])  # tiny probabilities: the 1e-8 clamp applies
    ce, ent = pseudo_classification_loss(img, txt)
    ces, ents = [], []
    for i in range(5):
        target = int(np.argmax(txt[i].numpy()))
        p = np.exp(img[i].numpy() - img[i].numpy().max())
        p /= p.sum()
        ces.append(-math.log(p[target]))
        q = np.maximum(p, 1e-8)
        ents.append(-(q * np.log(q)).sum())
    assert float(ce) == pytest.approx(np.mean(ces), rel=1e-10)
    assert float(ent) == pytest.approx(np.mean(ents), rel=1e-10)


def test_oscillation_is_the_kl_divergence_with_zero_terms_dropped():
    from scipy.stats import entropy

    g = torch.Generator().manual_seed(2)
    p = torch.softmax(torch.randn(4, 5, generator=g, dtype=torch.float64), -1)
    q = torch.softmax(torch.randn(4, 5, generator=g, dtype=torch.float64), -1)
    p[1] = torch.tensor([0.5, 0.5, 0.0, 0.0, 0.0], dtype=torch.float64)
    got = oscillation(p, q).numpy()
    np.testing.assert_allclose(got, [entropy(p[i].numpy(), q[i].numpy()) for i in range(4)], rtol=1e-12)
    assert oscillation(q, q).abs().max() < 1e-15


def test_clean_targets_by_hand():
    w = torch.tensor([0.9, 0.6, 0.5])
    got = clean_targets(w, torch.tensor([0.8, 0.5, 0.9]), torch.tensor([True, True, False]))
    torch.testing.assert_close(got, torch.tensor([0.9 + 0.1 * 0.8, 0.6 + 0.4 * 0.5, 0.5]))


def test_pseudo_caption_match_matches_a_loop_with_first_index_ties():
    g = torch.Generator().manual_seed(3)
    p_l = torch.softmax(3 * torch.randn(6, 4, generator=g, dtype=torch.float64), -1)
    p_l[4] = p_l[1]  # a tie: the first index wins
    p_u = torch.softmax(3 * torch.randn(5, 4, generator=g, dtype=torch.float64), -1)
    p_u[0] = p_l[1]
    match, labels = pseudo_caption_match(p_u, p_l, threshold=0.9)
    for i in range(5):
        cos = [float(p_u[i] @ p_l[j] / (p_u[i].norm() * p_l[j].norm())) for j in range(6)]
        best = int(np.argmax(cos))  # numpy's argmax: the first maximum
        assert int(match[i]) == best
        assert float(labels[i]) == pytest.approx(cos[best] if cos[best] >= 0.9 else 0.0, abs=1e-12)
    assert int(match[0]) == 1 and float(labels[0]) == pytest.approx(1.0)


# -- the method -----------------------------------------------------------------------------------------
def _method(ctx, **options):
    M = METHODS.get("pc2")
    base = {"warmup_epochs": 1, "epochs": 2, "noisy_from": 0, "batch_size": 32, "lr": 1e-3}
    return M(M.make_config("synthetic", base | options), ctx)


def test_warm_up_banks_every_pair_and_the_oscillation_is_the_kl_to_the_bank(tmp_path, small_context):
    ctx, _ = small_context(tmp_path)
    m = _method(ctx)
    assert not m.banked.any()
    m.train_epoch(0)
    assert m.banked.all()  # 300 pairs in batches of 32: the last batch has 12 pairs, none dropped
    for k in range(2):
        got = m.oscillations(k)
        net, head = m.nets[k], m.heads[k]
        with torch.no_grad():
            for i in (0, 17, 299):
                b = ctx.train.batch(np.array([i]))
                p = torch.softmax(head(net.encode_images(b.images)), -1)[0].double().numpy()
                q = m.bank[k, i].double().numpy()
                assert float(got[i]) == pytest.approx(float((p * np.log(p / q)).sum()), rel=1e-4, abs=1e-6)  # float32 sums
        assert float(got.max()) > 0  # the networks moved after their batches were banked


def test_co_training_uses_the_peers_two_splits_for_the_clean_targets(tmp_path, small_context):
    ctx, _ = small_context(tmp_path)
    m = _method(ctx)
    m.train_epoch(0)
    plan = m.plan_epoch(1)
    assert set(plan.data) >= {"probs", "po_probs", "po_clean"}
    k, clean_ids, _ = plan.steps[0]
    m.train_step(1, plan, 0)
    w = plan.data["probs"][1 - k][clean_ids].double().numpy()
    po = plan.data["po_probs"][1 - k][clean_ids].double().numpy()
    ok = plan.data["po_clean"][1 - k][clean_ids].numpy()
    expect = [w[i] + (1 - w[i]) * po[i] * float(ok[i]) for i in range(len(clean_ids))]
    np.testing.assert_allclose(m._labels[clean_ids], expect, rtol=1e-6)
    assert m.banked.all()


@pytest.mark.parametrize("official", [False, True])
def test_the_pseudo_caption_margin_is_a_target_unless_official_label_grad(tmp_path, small_context, official):
    ctx, _ = small_context(tmp_path)
    m = _method(ctx, official_label_grad=official, pseudo_threshold=0.0)
    m.train_epoch(0)
    clean, noisy = ctx.train.batch(np.arange(0, 16)), ctx.train.batch(np.arange(16, 32))
    m.heads[0].zero_grad()
    m._pseudo_caption_loss(0, noisy, clean).backward()
    grads = [p.grad for p in m.heads[0].parameters()]
    if official:
        assert any(g is not None and float(g.abs().sum()) > 0 for g in grads)
    else:
        assert all(g is None or float(g.abs().sum()) == 0 for g in grads)


def test_the_pseudo_caption_step_scores_images_against_the_clean_captions_they_pick(tmp_path, small_context):
    from ncbench.kernels.losses import triplet_loss
    from ncbench.kernels.rectify import soft_margin

    ctx, _ = small_context(tmp_path)
    m = _method(ctx, pseudo_threshold=0.0)
    m.train_epoch(0)
    net, head = m.nets[0], m.heads[0]
    net.eval()
    clean, noisy = ctx.train.batch(np.arange(0, 10)), ctx.train.batch(np.arange(40, 48))
    got = m._pseudo_caption_loss(0, noisy, clean)
    with torch.no_grad():  # by hand: each noisy image's nearest clean prediction, its caption re-tokenised
        p_u = torch.softmax(head(net.encode_images(noisy.images)), -1)
        p_l = torch.softmax(head(net.encode_images(clean.images)), -1)
        picks, labels = [], []
        for i in range(8):
            cos = torch.stack([torch.nn.functional.cosine_similarity(p_u[i], p_l[j], dim=0) for j in range(10)])
            picks.append(int(cos.argmax()))
            labels.append(float(cos.max()))
        captions = ctx.train.batch(clean.ids[picks].numpy())
        scores = net(noisy.images, captions.tokens, captions.lengths)
        expect = triplet_loss(scores, soft_margin(torch.tensor(labels), 0.2))
    assert float(got) == pytest.approx(float(expect), rel=1e-5)
    assert m.bank[0, 40:48].sum(-1).sub(1).abs().max() < 1e-5  # the noisy images' predictions were banked


@pytest.mark.parametrize("options, message", [({"soft_margin": "cubic"}, "soft_margin"),
                                              ({"proj_dim": 1}, "proj_dim")])
def test_bad_options_are_config_errors(tmp_path, small_context, options, message):
    ctx, _ = small_context(tmp_path)
    with pytest.raises(ConfigError, match=message):
        _method(ctx, **options)


def test_bad_option_on_the_command_line_is_one_error_line(capsys, tmp_path):
    from ncbench.cli import main

    code = main(["run", "--methods", "pc2", "--dataset", "synthetic-small", "--backbones", "vse_bow", "--noise",
                 "0.6", "--seeds", "0", "--threads", "1", "--no-progress", "--results", str(tmp_path),
                 "--method-opt", "soft_margin=cubic"])
    err = capsys.readouterr().err
    assert code == 2 and "ncbench: error:" in err and "soft_margin" in err and "Traceback" not in err


def test_checkpoint_state_holds_heads_and_bank(tmp_path, small_context):
    ctx, _ = small_context(tmp_path)
    m = _method(ctx)
    m.train_epoch(0)
    state = m.state_dict()
    fresh = _method(ctx)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.bank, m.bank) and torch.equal(fresh.banked, m.banked)
    for a, b in zip(fresh.heads, m.heads):
        for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
            assert ka == kb and torch.equal(va, vb)
    # the optimisers cover the heads: one Adam state per network and head parameter
    assert len(state["opts"][0]["state"]) == len(list(m.nets[0].parameters())) + len(list(m.heads[0].parameters()))


@pytest.mark.parametrize("backbone", ["sgr", "vse_bow"])
def test_both_subsets_train_on_region_and_global_backbones(tmp_path, backbone):
    from test_backbones import _region_context

    ctx = _region_context(tmp_path, backbone)
    m = _method(ctx, batch_size=8, p_threshold=0.3)
    logs = [m.train_epoch(e) for e in range(2)]  # a warm-up epoch, then both subsets from co-training epoch 0
    assert all(np.isfinite(v) for row in logs for v in row.values()), logs
    assert "loss_noisy_A" in logs[1] and "loss_noisy_B" in logs[1], logs


def test_official_bank_index_banks_under_positions_within_the_peers_subsets(tmp_path, small_context):
    ctx, _ = small_context(tmp_path)
    m = _method(ctx)
    m.train_epoch(0)
    plan = m.plan_epoch(1)
    m._plan_data = plan.data
    k, clean_ids, noisy_ids = plan.steps[0]
    clean, noisy = ctx.train.batch(clean_ids), ctx.train.batch(noisy_ids)
    assert [t.tolist() for t in m._bank_keys(k, noisy, clean)] == [noisy_ids.tolist(), clean_ids.tolist()]
    m.config.official_bank_index = True
    peer_clean = (plan.data["probs"][1 - k] > m.config.p_threshold).numpy()
    assert peer_clean.any() and not peer_clean.all()
    in_clean, in_noisy = list(np.flatnonzero(peer_clean)), list(np.flatnonzero(~peer_clean))
    keys_u, keys_l = m._bank_keys(k, noisy, clean)
    assert keys_u.tolist() == [in_noisy.index(i) for i in noisy_ids]  # the official loaders' ``index``
    assert keys_l.tolist() == [in_clean.index(i) for i in clean_ids]


def test_official_selection_chooses_only_among_epochs_with_the_pseudo_caption_step(tmp_path, small_context):
    ctx, _ = small_context(tmp_path)
    default, official = _method(ctx, noisy_from=1), _method(ctx, noisy_from=1, official_selection=True)
    assert [default.selectable(e) for e in range(3)] == [False, True, True]  # warm-up epoch 0 never
    assert [official.selectable(e) for e in range(3)] == [False, False, True]  # co-training epoch 1 = epoch 2
