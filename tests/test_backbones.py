"""The paper backbones (SGR, SAF, VSE∞) against explicit references written here from the spec
(§2.1–2.2, §2.4): the official per-caption loop of the SGRAF similarity, GPO computed one sample at
a time, padding that must change nothing; and every registered method training with every backbone."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ncbench.registry import BACKBONES, METHODS

TINY = {"sgr": {"embed_dim": 24, "word_dim": 12, "sim_dim": 10, "num_regions": 6},
        "saf": {"embed_dim": 24, "word_dim": 12, "sim_dim": 10, "num_regions": 6},
        "vse_inf": {"embed_dim": 24, "word_dim": 12, "mlp_hidden": 16},
        "vse_bow": {"embed_dim": 24, "word_dim": 12, "mlp_hidden": 16}}


def _net(name: str, vocab: int = 40, dim: int = 10, seed: int = 0, **extra):
    torch.manual_seed(seed)
    cls = BACKBONES.get(name)
    return cls(cls.Config(**{**TINY[name], **extra}), vocab, dim)


def _captions(lengths: list[int], vocab: int = 40, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    L = max(lengths)
    tokens = torch.randint(1, vocab, (len(lengths), L), generator=g)
    lengths = torch.tensor(lengths)
    tokens[torch.arange(L)[None, :] >= lengths[:, None]] = 0
    return tokens, lengths


# -- the SGRAF similarity, one caption at a time (the official loop) -------------------------------
def _l2(x, dim=-1):
    return x / (x.pow(2).sum(dim, keepdim=True).sqrt() + 1e-8)


def loop_similarity(net, img_emb: torch.Tensor, cap_emb: torch.Tensor, lengths: list[int]) -> torch.Tensor:
    """Spec §2.2 step by step for each caption against all images, using only its real words."""
    cfg = net.config
    n_img = img_emb.shape[0]
    img_glo = net.v_att(img_emb)  # the image side is computed once per call, as in the official code
    cols = []
    for c, n_word in enumerate(lengths):
        words = cap_emb[c, :n_word]  # (L, E)
        # TextSA over the real words
        t = net.t_att
        mean = words.mean(0, keepdim=True)
        w = t.common(t.local(words) * t.glob(mean)).squeeze(-1)
        cap_glo = _l2((torch.softmax(w, 0)[:, None] * words).sum(0))
        # SCAN t2i: query = words, context = regions of every image
        q = words[None].expand(n_img, -1, -1)  # (n, L, E)
        attn = torch.bmm(img_emb, q.transpose(1, 2))  # (n, R, L)
        attn = _l2(F.leaky_relu(attn, 0.1), dim=2)
        attn = torch.softmax(attn.transpose(1, 2) * cfg.lambda_softmax, dim=2)  # (n, L, R), over regions
        context = _l2(torch.bmm(attn, img_emb))  # (n, L, E)
        sim_loc = _l2(net.sim_loc((context - q).pow(2)))
        sim_glo = _l2(net.sim_glo((img_glo - cap_glo[None]).pow(2)))
        nodes = torch.cat([sim_glo[:, None], sim_loc], 1)  # (n, L+1, S)
        if hasattr(net, "steps"):  # SGR
            for step in net.steps:
                edges = torch.softmax(torch.bmm(step["query"](nodes), step["key"](nodes).transpose(1, 2)), dim=-1)
                nodes = F.relu(step["node"](torch.bmm(edges, nodes)))
            vec = nodes[:, 0]
        else:  # SAF: the real BatchNorm1d(1) module on this caption's (n, 1, L+1) block
            a = torch.sigmoid(net.filter_bn(net.filter(nodes).permute(0, 2, 1)))  # (n, 1, L+1)
            a = a / (a.abs().sum(-1, keepdim=True) + 1e-8)
            vec = _l2(torch.bmm(a, nodes).squeeze(1))
        cols.append(torch.sigmoid(net.sim_eval(vec)).squeeze(-1))
    return torch.stack(cols, 1)


@pytest.mark.parametrize("name", ["sgr", "saf"])
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_vectorised_sgraf_equals_the_per_caption_loop(name, mode):
    net = _net(name, dropout=0.0)  # dropout off so that train mode is deterministic
    imgs = torch.randn(5, 6, 10)
    tokens, lengths = _captions([7, 2, 5, 1, 7, 3])
    net.train(mode == "train")
    if name == "saf" and mode == "eval":  # non-trivial running statistics
        net.filter_bn.running_mean.fill_(0.3)
        net.filter_bn.running_var.fill_(2.0)
    img_emb, cap_emb = net.encode_images(imgs), net.encode_captions(tokens, lengths)
    twin = _net(name, dropout=0.0)
    twin.load_state_dict(net.state_dict())
    twin.train(mode == "train")
    got = net.score(img_emb, cap_emb)
    want = loop_similarity(twin, img_emb, cap_emb, lengths.tolist())
    assert got.shape == (5, 6)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    if name == "saf":  # one running-statistics update per caption, in caption order
        torch.testing.assert_close(net.filter_bn.running_mean, twin.filter_bn.running_mean, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(net.filter_bn.running_var, twin.filter_bn.running_var, atol=1e-6, rtol=1e-5)
        assert int(net.filter_bn.num_batches_tracked) == int(twin.filter_bn.num_batches_tracked)
    if mode == "train":  # the gradients agree too
        g1 = torch.autograd.grad(got.sum(), net.sim_loc.weight)[0]
        g2 = torch.autograd.grad(want.sum(), twin.sim_loc.weight)[0]
        torch.testing.assert_close(g1, g2, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name, mode", [("saf", "train")])  # SGR's kernel is the same code up to `reason`;
def test_compiled_sgraf_kernel_equals_eager(name, mode):    # each case costs ~40 s of C++ compilation on CI
    """``--compile``: the torch.compile'd pair kernel gives the eager scores, gradients and (SAF,
    training) running statistics, over two caption chunks of different lengths (dynamic shapes)."""
    from ncbench.backbones.base import Backbone

    net = _net(name, dropout=0.0)
    twin = _net(name, dropout=0.0)
    twin.load_state_dict(net.state_dict())
    twin.compile_kernels()
    assert type(twin).has_compiled_kernels() and not BACKBONES.get("vse_light").has_compiled_kernels()
    assert Backbone.compile_kernels is BACKBONES.get("vse_inf").compile_kernels  # nothing to compile there
    for m in (net, twin):
        m.train(mode == "train")
    for lengths in ([7, 2, 5, 1], [3, 6, 2, 2, 4, 1]):
        imgs = torch.randn(5, 6, 10)
        tokens, lens = _captions(lengths)
        eager = net.score(net.encode_images(imgs), net.encode_captions(tokens, lens))
        compiled = twin.score(twin.encode_images(imgs), twin.encode_captions(tokens, lens))
        torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=1e-5)
        if mode == "train":
            g1 = torch.autograd.grad(eager.sum(), net.sim_loc.weight)[0]
            g2 = torch.autograd.grad(compiled.sum(), twin.sim_loc.weight)[0]
            torch.testing.assert_close(g2, g1, atol=1e-5, rtol=1e-4)
    if name == "saf":
        torch.testing.assert_close(twin.filter_bn.running_mean, net.filter_bn.running_mean, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(twin.filter_bn.running_var, net.filter_bn.running_var, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", ["sgr", "saf"])
def test_sgraf_padding_chunks_and_pairs_change_nothing(name):
    net = _net(name).eval()
    imgs = torch.randn(4, 6, 10)
    tokens, lengths = _captions([6, 3, 1, 4, 6])
    padded = F.pad(tokens, (0, 5))
    with torch.no_grad():
        img_emb = net.encode_images(imgs)
        cap_emb = net.encode_captions(tokens, lengths)
        cap_pad = net.encode_captions(padded, lengths)
        assert torch.equal(cap_pad[:, 6:], torch.zeros_like(cap_pad[:, 6:]))  # padded words are zero vectors
        full = net.score(img_emb, cap_emb)
        torch.testing.assert_close(net.score(img_emb, cap_pad), full, atol=1e-6, rtol=1e-6)
        small = _net(name, pair_chunk=1)  # one caption per chunk
        small.load_state_dict(net.state_dict())
        torch.testing.assert_close(small.eval().score(img_emb, cap_emb), full, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(net.pair_scores(img_emb, cap_emb[:4]), full[:, :4].diagonal(), atol=1e-6, rtol=1e-6)


def test_sgraf_refuses_global_features_with_a_clear_message():
    from ncbench.errors import DataError

    with pytest.raises(DataError, match=r"needs region features \(n, 6, D\)"):
        _net("sgr").encode_images(torch.randn(3, 10))


# -- GPO, one sample at a time ---------------------------------------------------------------------
def loop_gpo(gpo, features: torch.Tensor, n: int) -> torch.Tensor:
    """GPO of one set of ``n`` feature vectors ``(n, D)``, from the spec, without padding or masks."""
    d = gpo.pe_dim
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    pe = torch.zeros(n, d)
    pe[:, 0::2] = torch.sin(pos * torch.exp(torch.arange(0, d, 2).float() * -(math.log(10000.0) / d)))
    pe[:, 1::2] = torch.cos(pos * torch.exp(torch.arange(0, d, 2).float() * -(math.log(10000.0) / d)))
    out, _ = gpo.gru(pe[None])  # one sequence of exactly n steps: no packing needed
    h = out.shape[-1] // 2
    scores = gpo.linear((out[..., :h] + out[..., h:]) / 2)[0, :, 0]
    weights = torch.softmax(scores / gpo.temperature, 0)
    ordered = features.sort(dim=0, descending=True).values  # per dimension
    return (ordered * weights[:, None]).sum(0)


def test_gpo_equals_the_per_sample_computation_with_padding_and_gaps():
    from ncbench.backbones.vse_inf import GPO

    torch.manual_seed(0)
    gpo = GPO(pe_dim=8, hidden=6)
    feats = torch.randn(4, 7, 5)
    mask = torch.zeros(4, 7, dtype=torch.bool)
    mask[0, :7] = True
    mask[1, :3] = True
    mask[2, [0, 2, 5]] = True  # valid items need not be a prefix (blanked regions)
    mask[3, :1] = True
    garbage = feats.masked_fill(~mask[..., None], 123.0)  # whatever sits in the padding is ignored
    got = gpo(garbage, mask)
    for k in range(4):
        torch.testing.assert_close(got[k], loop_gpo(gpo, feats[k][mask[k]], int(mask[k].sum())), atol=1e-5, rtol=1e-5)


def test_vse_inf_captions_ignore_padding_and_images_ignore_blanked_regions():
    net = _net("vse_inf").eval()
    tokens, lengths = _captions([5, 2, 4])
    padded = F.pad(tokens, (0, 4))
    with torch.no_grad():
        torch.testing.assert_close(net.encode_captions(padded, lengths), net.encode_captions(tokens, lengths))
        imgs = torch.randn(2, 6, 10)
        blanked = imgs.clone()
        blanked[0, [1, 4]] = 1e-10  # what augmentation writes
        kept = net.encode_images(imgs[:1, [0, 2, 3, 5]])
        torch.testing.assert_close(net.encode_images(blanked)[:1], kept, atol=1e-6, rtol=1e-5)
        one_region = net.encode_images(torch.randn(3, 10))  # global features are a set of one
        assert one_region.shape == (3, 24)


# -- every method with every backbone --------------------------------------------------------------
def _region_context(tmp_path, backbone: str, seed: int = 0):
    """The tiny synthetic training set with its global features spread over 6 regions of 10 dims
    (a fixed random projection plus noise), and a tiny ``backbone``."""
    from ncbench.data.batching import TrainingSet
    from ncbench.data.cards import SyntheticCard
    from ncbench.data.noise import make_noise_index
    from ncbench.data.synthetic import SyntheticSpec
    from ncbench.engine.method import TrainContext

    ds = SyntheticCard("s", "", spec=SyntheticSpec(n_train=12, n_dev=4, n_test=4)).load(None, tmp_path)
    rng = np.random.default_rng(0)
    g = ds.train.images
    proj = rng.normal(size=(g.shape[1], 60)).astype(np.float32) / np.sqrt(g.shape[1])
    regions = (g @ proj).reshape(-1, 6, 10) + 0.1 * rng.normal(size=(g.shape[0], 6, 10)).astype(np.float32)
    train = dataclasses.replace(ds.train, images=regions.astype(np.float32))
    d = ds.dev.images
    dev = dataclasses.replace(ds.dev, images=((d @ proj).reshape(-1, 6, 10)).astype(np.float32))
    noise = make_noise_index(train.caption_to_row(), 0.2, 0)
    cls = BACKBONES.get(backbone)

    def build(extra_tokens: int = 0):
        return cls(cls.Config(**TINY[backbone]), len(ds.vocab) + extra_tokens, 10)

    return TrainContext(TrainingSet(train, noise), build, len(ds.vocab), torch.device("cpu"),
                        torch.Generator().manual_seed(seed), clean_dev=dev)


# each method held in one phase with a fixed objective, on a training set of one batch (60 pairs)
PHASE = {"vanilla": ({"epochs": 6, "lr": 2e-3, "batch_size": 64, "warmup_epochs": 0}, "loss"),
         "ncr": ({"warmup_epochs": 6, "epochs": 1, "lr": 2e-3, "batch_size": 64}, "loss_A"),
         "bicro": ({"warmup_epochs": 6, "epochs": 1, "lr": 2e-3, "batch_size": 64}, "loss_A"),
         "crcl": ({"schedules": (6,), "warm_epochs": 0, "lr": 2e-3, "batch_size": 64, "augment": 0.0}, "loss"),
         "decl": ({"warmup_epochs": 6, "epochs": 1, "lr": 2e-3, "batch_size": 64, "eta": 0.0}, "loss"),  # K fixed
         "rcl": ({"epochs": 6, "lr": 2e-3, "batch_size": 64}, "loss"),
         "l2rm": ({"warmup_epochs": 6, "epochs": 1, "lr": 2e-3, "batch_size": 64}, "loss"),
         "cream": ({"warmup_epochs": 6, "epochs": 1, "lr": 2e-3, "batch_size": 64}, "loss_A"),
         "mscn": ({"warmup_epochs": 6, "epochs": 1, "lr": 2e-3, "batch_size": 64}, "loss_A"),
         "pc2": ({"warmup_epochs": 6, "epochs": 1, "lr": 2e-3, "batch_size": 64}, "loss_A"),
         "gsc": ({"epochs": 6, "lr": 2e-3, "batch_size": 64}, "loss")}


@pytest.mark.parametrize("backbone", ["sgr", "saf", "vse_inf", "vse_bow"])
def test_every_method_trains_with_every_backbone_and_its_loss_falls(tmp_path, backbone_method, backbone):
    """Every registered method that trains a backbone (``backbone_method``: the registry's, plugins
    included). A method of ``PHASE`` is held in one phase and its loss must fall; any other trains
    its ``synthetic`` schedule from start to end, and its logs must be finite and its networks moved."""
    ctx = _region_context(tmp_path, backbone)
    M = METHODS.get(backbone_method)
    if backbone_method not in PHASE:
        _trains_its_whole_schedule(M(M.make_config("synthetic"), ctx))
        return
    options, key = PHASE[backbone_method]
    m = M(M.make_config("synthetic", options), ctx)
    losses = [m.train_epoch(e)[key] for e in range(6)]  # six optimiser steps on the same batch
    assert np.isfinite(losses).all(), losses
    assert losses[-1] < losses[0], losses


def _trains_its_whole_schedule(m) -> None:
    before = [{k: v.detach().clone() for k, v in net.state_dict().items()} for net in m.networks()]
    logs = [m.train_epoch(e) for e in range(m.total_epochs)]
    assert all(np.isfinite(v) for row in logs for v in row.values()), logs
    after = [net.state_dict() for net in m.networks()]
    assert any(not torch.equal(b[k], a[k]) for b, a in zip(before, after) for k in b), "no weight changed"


# the division phases too: each subset's loss is finite on every backbone
DIVISION = {"l2rm": ({"warmup_epochs": 1, "epochs": 2, "batch_size": 8, "p_threshold": 0.3}, ("loss", "loss_noisy", "cost_loss")),
            "cream": ({"warmup_epochs": 1, "epochs": 2, "batch_size": 8, "hard_from": 0, "noisy_from": 0},
                      ("loss_A", "loss_noisy_A", "loss_B"))}


@pytest.mark.parametrize("backbone", ["sgr", "saf", "vse_inf", "vse_bow"])
@pytest.mark.parametrize("method", sorted(DIVISION))
def test_the_rematching_and_mining_methods_train_every_subset_with_every_backbone(tmp_path, method, backbone):
    ctx = _region_context(tmp_path, backbone)
    M = METHODS.get(method)
    options, keys = DIVISION[method]
    m = M(M.make_config("synthetic", options), ctx)
    logs = [m.train_epoch(e) for e in range(3)]
    found = {k: v for row in logs[1:] for k, v in row.items() if k in keys}
    assert set(found) == set(keys), logs
    assert np.isfinite(list(found.values())).all(), logs
    assert m.clean_probability() is not None
    if any(row.get("hard_fraction", 0) > 0 for row in logs):  # the networks disagreed on some pairs
        assert any(np.isfinite(row.get("loss_hard_A", np.nan)) for row in logs[1:]), logs


# -- the sgraf ensemble ----------------------------------------------------------------------------
def test_sgraf_trains_both_members_and_ranks_their_averaged_similarities(tmp_path, cache_dir, make_precomp):
    """``--backbones sgraf`` on a tiny region dataset in the f30k layout: an sgr and a saf result, their
    networks kept, and an sgraf result whose test metrics equal ranking the mean of the two members'
    similarity matrices, computed here from the kept networks."""
    import json

    from ncbench.cli import main
    from ncbench.ensemble import nets_path
    from ncbench.evaluate import retrieval_metrics, similarity_matrix
    from ncbench.registry import DATASETS
    from ncbench.results import load_results

    root = tmp_path / "data"
    for split, n in (("train", 12), ("dev", 4), ("test", 6)):
        make_precomp(root / "f30k_precomp", split, n, regions=36, dim=8, seed=len(split))
    (root / "vocab").mkdir()
    words = ["<pad>", "<start>", "<end>", "<unk>", "a", "photo", "number", "with", "caption", "."]
    words += [str(i) for i in range(12)]
    (root / "vocab/f30k_precomp_vocab.json").write_text(json.dumps({"word2idx": {w: i for i, w in enumerate(words)}}))
    out = tmp_path / "r"
    argv = ["run", "--dataset", "f30k", "--data-root", str(root), "--backbones", "sgraf", "--noise", "0.2",
            "--method-opt", "epochs=2", "--backbone-opt", "embed_dim=16", "--backbone-opt", "word_dim=8",
            "--backbone-opt", "sim_dim=8", "--results", str(out), "--cache-dir", str(cache_dir), "--no-progress"]
    assert main(argv) == 0
    results = {r["identity"]["backbone"]: r for r in load_results(out).results}
    assert set(results) == {"sgr", "saf", "sgraf"}
    ens = results["sgraf"]
    assert ens["meta"]["ensemble_size"] == 2 and [m["backbone"] for m in ens["meta"]["members"]] == ["sgr", "saf"]
    assert {m["config_hash"] for m in ens["meta"]["members"]} == {results["sgr"]["config_hash"],
                                                                  results["saf"]["config_hash"]}

    import torch

    ds = DATASETS.get("f30k").load(root, cache_dir)
    sims = []
    for b in ("sgr", "saf"):
        cls = BACKBONES.get(b)
        net = cls(cls.Config(embed_dim=16, word_dim=8, sim_dim=8), len(ds.vocab), 8)
        (state,) = torch.load(nets_path(Path(results[b]["_path"])), weights_only=True)
        net.load_state_dict(state)
        sims.append(similarity_matrix([net.eval()], ds.test, torch.device("cpu")))
    want, _, _ = retrieval_metrics((sims[0] + sims[1]) / 2, 5)
    assert ens["test"]["full"]["rsum"] == pytest.approx(want.rsum)
    assert main(argv) == 0  # nothing left to do: members and ensemble are reused

    from ncbench.runner import SweepSpec, collect, plan

    runs = plan(SweepSpec(methods=["vanilla"], backbones=["sgraf"], datasets=["f30k"], noise=[0.2],
                          method_options={"epochs": "2"},
                          backbone_options={"embed_dim": "16", "word_dim": "8", "sim_dim": "8"}))
    assert [r.backbone for r in runs] == ["sgr", "saf"]
    report = collect(runs, out, ["sgraf"])  # what local workers and SLURM report: the ensemble included
    assert not report.failed and sorted(r["identity"]["backbone"] for r in report.done) == ["saf", "sgr", "sgraf"]
