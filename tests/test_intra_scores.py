"""Intra-modal scores (``Backbone.image_image_scores``, ``caption_caption_scores``) of every
registered backbone against an explicit loop over pairs written here: the cosine of two embeddings
for global backbones; for SGR/SAF the head run on one (query, other) pair at a time as GSC's
``forward_topology`` does (CVPR'24, ``GSC/model/SGRAF.py``): two images compared region by region,
a caption's real words attending over the other caption's real words, the 1e-6 terms where GSC
adds them, and GSC's ``sigmoid`` of the logit."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from ncbench.backbones.base import CosineBackbone
from ncbench.backbones.sgraf import SAF, SGR, SGRAF
from ncbench.registry import BACKBONES

TINY = {"sgr": {"embed_dim": 24, "word_dim": 12, "sim_dim": 10, "num_regions": 6},
        "saf": {"embed_dim": 24, "word_dim": 12, "sim_dim": 10, "num_regions": 6},
        "vse_inf": {"embed_dim": 24, "word_dim": 12, "mlp_hidden": 16},
        "vse_bow": {"embed_dim": 24, "word_dim": 12, "mlp_hidden": 16},
        "vse_light": {"embed_dim": 24, "word_dim": 12, "mlp_hidden": 16}}
LENGTHS = [7, 3, 5, 2, 6]  # the longest first and last, padding in between


def _net(name: str, **extra):
    torch.manual_seed(0)
    cls = BACKBONES.get(name)
    return cls(cls.Config(**{**TINY.get(name, {}), **extra}), 40, 10)


def _inputs():
    g = torch.Generator().manual_seed(1)
    images = torch.randn(len(LENGTHS), 6, 10, generator=g)
    lengths = torch.tensor(LENGTHS)
    tokens = torch.randint(3, 40, (len(LENGTHS), max(LENGTHS)), generator=g)
    tokens[torch.arange(max(LENGTHS))[None, :] >= lengths[:, None]] = 0
    return images, tokens, lengths


def _l2(x, dim=-1):
    return x / (x.pow(2).sum(dim, keepdim=True).sqrt() + 1e-8)


# -- the SGRAF head on one pair --------------------------------------------------------------------
def _nodes(net, local_sq: torch.Tensor, global_sq: torch.Tensor) -> torch.Tensor:
    """``(N + 1, sim_dim)``: the global node, then one per local pair."""
    return torch.cat([_l2(net.sim_glo(global_sq))[None], _l2(net.sim_loc(local_sq))])


def _scores_of_query(net, nodes: list[torch.Tensor]) -> torch.Tensor:
    """The sigmoid score of one query against each other item, from each pair's nodes. SGR: graph
    reasoning on the pair alone; SAF: BatchNorm on the filter logits with the running statistics
    (eval) or with the statistics of this query's block of pairs (training), as one official call."""
    if isinstance(net, SGR):
        vecs = []
        for x in nodes:
            for step in net.steps:
                edges = torch.softmax(step["query"](x) @ step["key"](x).T, dim=-1)
                x = F.relu(step["node"](edges @ x))
            vecs.append(x[0])
    else:
        bn = net.filter_bn
        logits = torch.stack([net.filter(x).squeeze(-1) for x in nodes])  # (others, N + 1)
        if net.training:
            mean, var = logits.mean(), logits.var(unbiased=False)
            with torch.no_grad():
                bn.running_mean.mul_(1 - bn.momentum).add_(bn.momentum * mean)
                bn.running_var.mul_(1 - bn.momentum).add_(bn.momentum * logits.var(unbiased=True))
                bn.num_batches_tracked.add_(1)
        else:
            mean, var = bn.running_mean, bn.running_var
        vecs = []
        for x, z in zip(nodes, logits):
            a = torch.sigmoid((z - mean) / torch.sqrt(var + bn.eps) * bn.weight + bn.bias)
            a = a / (a.abs().sum() + 1e-8)
            vecs.append(_l2((a[:, None] * x).sum(0)))
    return torch.stack([torch.sigmoid(net.sim_eval(v)).squeeze(-1) for v in vecs])


def _caption_global(net, words: torch.Tensor) -> torch.Tensor:
    """TextSA over one caption's real words (no padding at all)."""
    t = net.t_att
    w = t.common(t.local(words) * t.glob(words.mean(0, keepdim=True))).squeeze(-1)
    return _l2((torch.softmax(w, 0)[:, None] * words).sum(0))


def loop_image_image(net, img_emb: torch.Tensor) -> torch.Tensor:
    glo = net.v_att(img_emb)  # the image side once per call, as the official code
    n = img_emb.shape[0]
    out = torch.zeros(n, n, dtype=torch.float64)
    for i in range(n):  # query
        nodes = [_nodes(net, (img_emb[j] - img_emb[i]).pow(2) + 1e-6, (glo[j] - glo[i]).pow(2) + 1e-6)
                 for j in range(n)]
        out[:, i] = _scores_of_query(net, nodes)
    return out


def loop_caption_caption(net, cap_emb: torch.Tensor, lengths: list[int]) -> torch.Tensor:
    words = [cap_emb[c, :k] for c, k in enumerate(lengths)]
    glo = [_caption_global(net, w) for w in words]
    n = len(lengths)
    out = torch.zeros(n, n, dtype=torch.float64)
    for i in range(n):  # query: caption i's words
        nodes = []
        for j in range(n):  # attended over: caption j's words, plus 1e-6 as GSC adds it
            source = words[j] + 1e-6
            attn = _l2(F.leaky_relu(source @ words[i].T, 0.1), dim=1)  # (words of j, words of i)
            weights = torch.softmax(attn * net.config.lambda_softmax, dim=0)
            context = _l2(weights.T @ source)
            nodes.append(_nodes(net, (context - words[i]).pow(2), (glo[j] - glo[i]).pow(2) + 1e-6))
        out[:, i] = _scores_of_query(net, nodes)
    return out


def loop_cosine(emb: torch.Tensor) -> torch.Tensor:
    n = emb.shape[0]
    return torch.tensor([[float(F.cosine_similarity(emb[a], emb[b], dim=0)) for b in range(n)] for a in range(n)],
                        dtype=emb.dtype)


@pytest.mark.parametrize("name", BACKBONES.names())
def test_intra_modal_scores_equal_a_loop_over_pairs_for_every_backbone(name):
    """Registry-driven: a backbone added later must pass this too (or say which reference it needs)."""
    net = _net(name).eval()
    # SGR/SAF in float64: GSC's 1e-6 terms and the masks of padded words are visible at 1e-10
    tol = {"rtol": 1e-10, "atol": 1e-12} if isinstance(net, SGRAF) else {"rtol": 1e-5, "atol": 1e-6}
    net = net.double() if isinstance(net, SGRAF) else net
    images, tokens, lengths = _inputs()
    with torch.no_grad():
        img_emb = net.encode_images(images.to(next(net.parameters()).dtype))
        cap_emb = net.encode_captions(tokens, lengths)
        got_i, got_c = net.image_image_scores(img_emb), net.caption_caption_scores(cap_emb)
        if isinstance(net, CosineBackbone):
            want_i, want_c = loop_cosine(img_emb), loop_cosine(cap_emb)
        elif isinstance(net, SGRAF):
            want_i, want_c = loop_image_image(net, img_emb), loop_caption_caption(net, cap_emb, LENGTHS)
        else:
            pytest.fail(f"no per-pair reference for backbone {name!r}: add one to this file")
    n = len(LENGTHS)
    assert got_i.shape == got_c.shape == (n, n)
    torch.testing.assert_close(got_i, want_i, **tol)
    torch.testing.assert_close(got_c, want_c, **tol)


def test_saf_in_training_normalises_per_query_and_updates_its_running_statistics_in_query_order():
    """SAF's filter BatchNorm in training mode: statistics of each query's block of pairs, one
    running-average update per query (images first, then captions), as the official loop."""
    net = _net("saf", dropout=0.0, pair_chunk=2 * 5 * 6 * 24).double()  # image queries in chunks of two
    images, tokens, lengths = _inputs()
    with torch.no_grad():
        img_emb, cap_emb = net.encode_images(images.double()), net.encode_captions(tokens, lengths)
    ref = copy.deepcopy(net).train()
    net.train()
    with torch.no_grad():
        got = net.image_image_scores(img_emb), net.caption_caption_scores(cap_emb)
        want = loop_image_image(ref, img_emb), loop_caption_caption(ref, cap_emb, LENGTHS)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)
    assert int(net.filter_bn.num_batches_tracked) == 2 * len(LENGTHS)
    torch.testing.assert_close(net.filter_bn.running_mean, ref.filter_bn.running_mean)
    torch.testing.assert_close(net.filter_bn.running_var, ref.filter_bn.running_var)


def test_intra_modal_scores_are_differentiable_and_finite_on_identical_items():
    """GSC trains through these scores; an item compared with itself has zero differences, which the
    1e-6 terms keep away from the square root of the L2 norm (no NaN gradient)."""
    for name in ("sgr", "saf", "vse_bow"):
        net = _net(name).train()
        images, tokens, lengths = _inputs()
        images = torch.cat([images, images[:1]])  # image 0 twice
        loss = net.image_image_scores(net.encode_images(images)).sum() \
            + net.caption_caption_scores(net.encode_captions(tokens, lengths)).sum()
        loss.backward()
        grads = [p.grad for p in net.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads), name
