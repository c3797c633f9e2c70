"""MSCN: the kernels against explicit loops (the adaptive-margin loss in both broadcasts, the
meta-initialised Beta mixture against a pure-Python EM written as pomegranate runs it, the
negatives' draw, the look-ahead), the bilevel step against a copy-based second-order reference
(the official ``pseudo_net`` + ``MetaAdam.meta_step`` route), the meta set (dev pairs only, its
size, the test split never read) and the method on every backbone. The official functions on the
same inputs: ``tests/parity`` (cases ``mscn``, ``mscn_step``)."""

from __future__ import annotations

import copy
import dataclasses
import math
import sys

import numpy as np
import pytest
import torch

from ncbench.errors import ConfigError
from ncbench.kernels.meta_correction import (
    adaptive_weight,
    draw_meta_negatives,
    lookahead,
    meta_bmm_split,
    meta_size,
    mscn_loss,
    official_clip,
)
from ncbench.registry import BACKBONES, METHODS


def _mscn():
    return sys.modules[METHODS.get("mscn").__module__]


# -- kernels -------------------------------------------------------------------------------------------
def test_adaptive_weight_is_the_official_expression():
    for p in (1e-4, 0.1, 0.3, 0.5, 0.77, 0.999):
        assert float(adaptive_weight(torch.tensor(p, dtype=torch.float64))) == pytest.approx(
            1.0 / (1 + (p / (1 - p)) ** -2), rel=1e-12)
    assert adaptive_weight(torch.tensor([0.0, 1.0])).tolist() == [0.0, 1.0]


def _loop_loss(s: np.ndarray, margin: float, official: bool) -> float:
    """Hardest-negative hinge, written out: per-pair margin m_k = margin·s(S_kk); official: the margin
    of column j in both terms; paper: the positive's margin (row i for captions, column j for images)."""
    b = s.shape[0]
    m = [margin / (1 + (s[k, k] / (1 - s[k, k])) ** -2) for k in range(b)]
    total = 0.0
    for i in range(b):  # image i as the query
        total += max([max(0.0, (m[j] if official else m[i]) + s[i, j] - s[i, i]) for j in range(b) if j != i])
    for j in range(b):  # caption j as the query
        total += max([max(0.0, m[j] + s[i, j] - s[j, j]) for i in range(b) if i != j])
    return total


@pytest.mark.parametrize("official", [False, True])
def test_mscn_loss_matches_an_explicit_loop(official):
    rng = np.random.default_rng(3)
    s = rng.uniform(0.05, 0.95, size=(7, 7))
    got = float(mscn_loss(torch.from_numpy(s), 0.2, official_broadcast=official))
    assert got == pytest.approx(_loop_loss(s, 0.2, official), rel=1e-12)
    assert got != pytest.approx(_loop_loss(s, 0.2, not official), rel=1e-6)  # the two broadcasts differ here


def test_the_margin_carries_no_gradient():
    s = torch.rand(5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).requires_grad_()
    mscn_loss(s).backward()
    fixed = s.detach().clone().requires_grad_()
    m = 0.2 * adaptive_weight(s.detach().diagonal())
    from ncbench.kernels.losses import triplet_loss
    triplet_loss(fixed, m).backward()
    assert torch.equal(s.grad, fixed.grad)


def _pomegranate_em(noisy, clean, x, max_iter=10, tol=1e-2):
    """pomegranate's GeneralMixtureModel([TrueBeta.from_samples(noisy), TrueBeta.from_samples(clean)])
    .fit(x, stop_threshold=tol, max_iterations=max_iter).predict_proba(x)[:, 1], one sample at a time."""
    def moments(values, weights):
        w = sum(weights)
        mean = sum(wi * v for wi, v in zip(weights, values)) / w
        var = sum(wi * v * v for wi, v in zip(weights, values)) / w - mean * mean
        a = mean * (mean * (1 - mean) / var - 1)
        return a, a * (1 - mean) / mean

    def logpdf(v, a, b):
        return (a - 1) * math.log(v) + (b - 1) * math.log(1 - v) + math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)

    params = [moments(noisy, [1.0] * len(noisy)), moments(clean, [1.0] * len(clean))]
    logw = [math.log(0.5), math.log(0.5)]

    def e_step():
        resp, total = [], 0.0
        for v in x:
            lj = [logw[k] + logpdf(v, *params[k]) for k in range(2)]
            top = max(lj)
            lse = top + math.log(sum(math.exp(t - top) for t in lj))
            resp.append([math.exp(t - lse) for t in lj])
            total += lse
        return resp, total

    resp, last = e_step()
    iteration, improvement = 1, math.inf
    while improvement > tol and iteration < max_iter + 1:
        mass = [sum(r[k] for r in resp) for k in range(2)]
        params = [moments(x, [r[k] for r in resp]) for k in range(2)]
        logw = [math.log(m / sum(mass)) for m in mass]
        resp, total = e_step()
        improvement, last = total - last, total
        iteration += 1
    return [r[1] for r in e_step()[0]]


@pytest.mark.parametrize("n", [40, 400])
def test_meta_bmm_split_matches_pomegranate_em_written_out(n):
    rng = np.random.default_rng(n)
    meta_sims = np.concatenate([rng.beta(2, 5, 30), rng.beta(6, 2, 30)])
    meta_clean = np.array([False] * 30 + [True] * 30)
    sims = np.concatenate([rng.beta(2, 6, n // 2), rng.beta(5, 2, n - n // 2)])
    fit = meta_bmm_split(torch.from_numpy(meta_sims), torch.from_numpy(meta_clean), torch.from_numpy(sims))
    want = _pomegranate_em(list(meta_sims[~meta_clean]), list(meta_sims[meta_clean]), list(sims))
    np.testing.assert_allclose(fit.prob.numpy(), want, rtol=1e-9, atol=1e-12)
    assert fit.clean_component == 1


def test_official_clip_replaces_only_values_outside_the_open_interval():
    x = torch.tensor([-0.5, 0.0, 0.2, 0.9995, 1.0, 3.0], dtype=torch.float64)
    assert official_clip(x).tolist() == [1e-3, 1e-3, 0.2, 0.9995, 1 - 1e-3, 1 - 1e-3]


def test_meta_negatives_are_distinct_captions_never_with_their_own_image():
    own = torch.arange(50) // 5 * 5  # caption c's image row: 5 captions per image, rows per caption
    candidates = torch.arange(0, 50, 5)
    for seed in range(20):
        caps, imgs = draw_meta_negatives(own, candidates, 12, torch.Generator().manual_seed(seed))
        assert len(set(caps.tolist())) == 12 and all(int(i) in candidates.tolist() for i in imgs)
        assert all(int(im) != int(own[c]) for c, im in zip(caps, imgs))
    with pytest.raises(ValueError, match="avoided every caption's own image"):
        draw_meta_negatives(torch.zeros(4, dtype=torch.long), torch.zeros(1, dtype=torch.long), 2,
                            torch.Generator().manual_seed(0))


def test_lookahead_is_one_sgd_step_and_keeps_parameters_without_gradient():
    p = {"a": torch.tensor([1.0, 2.0]), "b": torch.tensor([3.0])}
    out = lookahead(p, {"a": torch.tensor([0.5, -1.0]), "b": None}, 0.1)
    assert out["a"].tolist() == pytest.approx([0.95, 2.1]) and out["b"] is p["b"]


def test_meta_size_is_two_percent_of_the_training_pairs_within_the_dev_split():
    assert meta_size(145_000, 5_070, 0.02) == 2_900  # the official F30K meta set
    assert meta_size(5_000, 1_000, 0.02) == 100
    assert meta_size(5_000, 60, 0.02) == 60


# -- the method's pieces ---------------------------------------------------------------------------------
def _context(small_context, tmp_path, backbone="vse_bow", **config):
    """A small MSCN on the tiny synthetic data, its dev split handed over as the harness does."""
    ctx, ds = small_context(tmp_path)
    if backbone != "vse_light":
        bcls = BACKBONES.get(backbone)
        conf = bcls.Config(embed_dim=16, word_dim=8, mlp_hidden=16)
        ctx.build_backbone = lambda extra_tokens=0: bcls(conf, len(ds.vocab), ds.train.images.shape[-1])
    ctx.clean_dev = ds.dev
    cfg = METHODS.get("mscn").make_config("synthetic", {"batch_size": 16, **config})
    return METHODS.get("mscn")(cfg, ctx), ctx, ds


def test_meta_positives_are_dev_pairs_and_negatives_training_pairs(small_context, tmp_path):
    method, ctx, ds = _context(small_context, tmp_path)
    m = method.n_meta
    assert m == meta_size(len(ctx.train), ds.dev.n_captions, 0.02) == 6
    batch, labels = method.meta_batch(np.arange(2 * m))
    assert labels.tolist() == [1.0] * m + [0.0] * m
    for k in range(m):
        c = int(method.meta_ids[k])  # a dev caption, with its own dev image
        np.testing.assert_array_equal(batch.images[k].numpy(), ds.dev.images[ds.dev.caption_to_row()[c]])
        assert batch.tokens[k, :batch.lengths[k]].tolist() == list(ds.dev.tokens[c])
        cap, row = method.negatives[:, k]
        np.testing.assert_array_equal(batch.images[m + k].numpy(), ds.train.images[row])
        assert batch.tokens[m + k, :batch.lengths[m + k]].tolist() == list(ds.train.tokens[cap])
        assert row != ctx.train.t2i[cap]


def test_no_clean_dev_split_is_one_config_error(small_context, tmp_path):
    ctx, _ = small_context(tmp_path)
    ctx.clean_dev = None
    with pytest.raises(ConfigError, match="clean dev split"):
        METHODS.get("mscn")(METHODS.get("mscn").make_config("synthetic"), ctx)
    with pytest.raises(ConfigError, match="meta_split"):
        _context(small_context, tmp_path, meta_split="test")


def test_the_bilevel_step_matches_a_copy_based_second_order_reference(small_context, tmp_path):
    """The meta network's gradient through the look-ahead equals the official route: a deep copy
    of the backbone, ``autograd.grad(create_graph=True)``, its parameters *replaced* by ``θ − lr·g``
    (``MetaAdam.set_parameter``), the meta pairs scored by the copy, BCE, backward."""
    method, ctx, _ = _context(small_context, tmp_path)
    k, net = 0, method.nets[0]
    net.train()
    batch = ctx.train.batch(np.arange(16))
    meta, labels = method.meta_batch(np.arange(2 * method.n_meta))
    lr = 0.05
    for g in method.opts[k].param_groups:
        g["lr"] = lr
    # reference
    ref = copy.deepcopy(net)
    loss = mscn_loss(ref(batch.images, batch.tokens, batch.lengths))
    names = [n for n, _ in ref.inner.named_parameters()]
    grads = torch.autograd.grad(loss, list(ref.inner.parameters()), create_graph=True, allow_unused=True)
    for name, grad in zip(names, grads):
        *path, leaf = name.split(".")
        module = ref.inner
        for part in path:
            module = getattr(module, part)
        p = module._parameters[leaf]
        module._parameters[leaf] = p if grad is None else p - lr * grad
    out = ref(meta.images, meta.tokens, meta.lengths, pairs=True)
    torch.nn.functional.binary_cross_entropy(out, labels).backward()
    want = [p.grad.clone() for p in ref.meta.parameters()]
    before = {n: p.detach().clone() for n, p in net.inner.state_dict().items()}
    # ncbench: the same step, Adam on the meta network: capture its gradient before the update
    seen = []
    method.meta_opts[k].step = lambda: seen.extend(p.grad.clone() for p in net.meta.parameters())
    method.meta_step(k, batch, meta, labels)
    for a, b in zip(seen, want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    for n, v in net.inner.state_dict().items():  # the backbone itself (and its BatchNorm statistics) unchanged
        assert torch.equal(v, before[n]), n
    assert all(p.grad is None for p in net.inner.parameters())


@pytest.mark.parametrize("backbone", ["vse_bow", "vse_light", "vse_inf", "sgr", "saf"])
def test_every_backbone_scores_through_the_meta_network_and_takes_a_bilevel_step(backbone, tmp_path):
    from ncbench.data.batching import TrainingSet
    from ncbench.data.noise import make_noise_index
    from ncbench.engine.method import TrainContext

    rng = np.random.default_rng(0)
    regions = backbone in ("sgr", "saf")
    bcls = BACKBONES.get(backbone)
    sizes = {"embed_dim": 16, "word_dim": 8}
    if regions:
        sizes |= {"sim_dim": 8, "num_regions": 4}
    elif backbone != "vse_inf":
        sizes |= {"mlp_hidden": 16}
    conf = bcls.Config(**sizes)
    from ncbench.data.precomp import Split

    def split(name, n_img):
        shape = (n_img, 4, 6) if regions else (n_img, 6)
        tokens = [rng.integers(3, 20, size=rng.integers(3, 8)) for _ in range(n_img * 2)]
        return Split(name, rng.normal(size=shape).astype(np.float32), ["x"] * (n_img * 2), 2, 2, tokens)

    train, dev = split("train", 12), split("dev", 6)
    noise = make_noise_index(train.caption_to_row(), 0.4, 0)
    ctx = TrainContext(TrainingSet(train, noise), lambda extra_tokens=0: bcls(conf, 20, 6), 20, torch.device("cpu"),
                       torch.Generator().manual_seed(0))
    ctx.clean_dev = dev
    mcls = METHODS.get("mscn")
    method = mcls(mcls.make_config("synthetic", {"batch_size": 8, "meta_fraction": 0.5}), ctx)
    net = method.nets[0]
    net.eval()
    b = ctx.train.batch(np.arange(6))
    with torch.no_grad():
        img, cap = net.encode_images(b.images), net.encode_captions(b.tokens, b.lengths)
        s = net.score(img, cap)
        assert s.shape == (6, 6) and bool(((s > 0) & (s < 1)).all())
        torch.testing.assert_close(net.pair_scores(img, cap), s.diagonal())
        if not regions:  # the cosine's vector: the element-wise product of the embeddings
            torch.testing.assert_close(s[2, 4], net.meta(img[2] * cap[4]))
    net.train()
    meta, labels = method.meta_batch(np.arange(2 * method.n_meta))
    loss = method.meta_step(0, ctx.train.batch(np.arange(8)), meta, labels)
    assert math.isfinite(loss)
    assert any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in net.meta.parameters())


def test_a_warmup_and_a_co_training_epoch_log_the_meta_set_and_a_split(small_context, tmp_path):
    from ncbench.engine.trainer import train_with_selection

    method, ctx, ds = _context(small_context, tmp_path, warmup_epochs=1, epochs=1)
    sel = train_with_selection(method, ds.dev, torch.device("cpu"), method.total_epochs, true_clean=ctx.train.clean)
    assert [row["meta_pairs"] for row in sel.history] == [6.0, 6.0]
    assert 0 < sel.history[-1]["clean_fraction"] <= 1 and sel.detection is not None
    assert method.clean_probability().shape == (len(ctx.train),)


HARNESS_GIVES_DEV = "clean_dev" in {f.name for f in dataclasses.fields(__import__(
    "ncbench.engine.method", fromlist=["TrainContext"]).TrainContext)}


@pytest.mark.skipif(not HARNESS_GIVES_DEV, reason="needs TrainContext.clean_dev (the harness change MSCN asks for)")
def test_a_poisoned_test_split_changes_no_training_or_validation_number(tmp_path, cache_dir, make_precomp):
    """Two ``ncbench run``s of mscn, the second with every test feature and caption replaced: the
    training history (losses, meta-set size, clean fraction, validation rSum) and the selected epoch
    are identical, only the test metrics differ; the config records the meta split and fraction."""
    from ncbench.cli import main
    from ncbench.data.vocab import Vocabulary
    from ncbench.results import load_results

    results = []
    for poisoned in (False, True):
        root = tmp_path / f"data{int(poisoned)}"
        folder = root / "f30k_precomp"
        for split, n in (("train", 16), ("dev", 6), ("test", 6)):
            make_precomp(folder, split, n, seed=len(split) + (100 if poisoned and split == "test" else 0))
        if poisoned:
            caps = (folder / "test_caps.txt").read_text().splitlines()
            (folder / "test_caps.txt").write_text("\n".join(c.replace("photo", "caption") for c in caps) + "\n")
        (root / "vocab").mkdir()
        Vocabulary.build((folder / "train_caps.txt").read_text().splitlines(), 1).save(root / "vocab/f30k_precomp_vocab.json")
        out = tmp_path / f"r{int(poisoned)}"
        assert main(["run", "--dataset", "f30k", "--data-root", str(root), "--methods", "mscn", "--backbones", "vse_bow",
                     "--noise", "0.4", "--method-opt", "warmup_epochs=1", "--method-opt", "epochs=1",
                     "--method-opt", "batch_size=16", "--backbone-opt", "embed_dim=16", "--results", str(out),
                     "--cache-dir", str(cache_dir), "--no-progress", "--threads", "1"]) == 0
        results.append(load_results(out).results[0])
    clean, poisoned = results
    strip = lambda rows: [{k: v for k, v in r.items() if not k.endswith("_s") and k != "pairs_per_s"} for r in rows]  # noqa: E731
    assert strip(clean["history"]) == strip(poisoned["history"])
    assert clean["best_val"] == poisoned["best_val"]
    assert clean["test"] != poisoned["test"]
    cfg = clean["config"]["method_config"]
    assert cfg["meta_split"] == "dev" and cfg["meta_fraction"] == 0.02, cfg
    assert clean["meta"]["selection"] == "best_val_rsum; trains on dev"  # boards' Selection column says so


def test_an_unknown_backbone_kind_is_a_config_error():
    class Odd(torch.nn.Module):
        pass

    with pytest.raises(ConfigError, match="no similarity vector"):
        _mscn().vector_dim(Odd())
