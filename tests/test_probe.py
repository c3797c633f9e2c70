"""The training-free floor (``probe``) against independent closed forms, the ``vse_bow`` backbone
against an explicit loop, and vanilla's mean-loss warm-up."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ncbench.backbones.bow import bag_of_words_mask
from ncbench.kernels.ridge import bag_of_words, ridge_path
from ncbench.registry import BACKBONES, METHODS


def _numpy_ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Textbook ridge with an unpenalised intercept: centre, then (XᵀX + αI)⁻¹ XᵀY."""
    xm, ym = x.mean(0), y.mean(0)
    w = np.linalg.solve((x - xm).T @ (x - xm) + alpha * np.eye(x.shape[1]), (x - xm).T @ (y - ym))
    return w, xm, ym


def test_ridge_path_equals_numpy_and_scikit_learn():
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(0)
    x = rng.poisson(0.7, size=(40, 12)).astype(float)
    y = rng.normal(size=(40, 5))
    fit = ridge_path(torch.from_numpy(x), torch.from_numpy(y), (0.5, 3.0))
    for alpha, w in zip((0.5, 3.0), fit.weights):
        ref, xm, ym = _numpy_ridge(x, y, alpha)
        np.testing.assert_allclose(w.numpy(), ref, rtol=1e-9, atol=1e-10)
        sk = Ridge(alpha=alpha, fit_intercept=True, solver="cholesky").fit(x, y)
        np.testing.assert_allclose(w.numpy(), sk.coef_.T, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(fit.x_mean.numpy(), x.mean(0))
    with pytest.raises(ValueError):
        ridge_path(torch.from_numpy(x), torch.from_numpy(y), (0.0,))


def test_bag_of_words_counts_words_only():
    tokens = torch.tensor([[1, 7, 7, 5, 2, 0], [1, 3, 2, 0, 0, 0]])  # <start> words <end> <pad>
    lengths = torch.tensor([5, 3])
    counts = bag_of_words(tokens, bag_of_words_mask(tokens, lengths), 9)
    expected = np.zeros((2, 9))
    expected[0, 7], expected[0, 5], expected[1, 3] = 2, 1, 1  # <unk> (3) is a word; 0/1/2 are not
    np.testing.assert_array_equal(counts.numpy(), expected)


def test_probe_run_equals_the_closed_form(small_context, tmp_path):
    """The probe's similarity on the dev split equals cosines computed from a NumPy ridge fit on the
    noisy training pairs as given (noise included), for the penalty of the epoch."""
    ctx, ds = small_context(tmp_path, ratio=0.4)
    probe_cls = METHODS.get("probe")
    probe = probe_cls(probe_cls.Config(alphas=(0.3, 10.0)), ctx)
    assert probe.total_epochs == 2
    logs = probe.train_epoch(1)
    assert logs == {"alpha": 10.0}
    vocab = ctx.vocab_size

    def counts(split):
        x = np.zeros((split.n_captions, vocab))
        for i, t in enumerate(split.tokens):
            for w in t[1:-1]:  # between <start> and <end>
                x[i, w] += 1
        return x

    y = np.asarray(ds.train.images, dtype=np.float64)[ctx.train.t2i]  # the pairs as given
    w, xm, ym = _numpy_ridge(counts(ds.train), y, 10.0)
    pred = (counts(ds.dev) - xm) @ w
    imgs = np.asarray(ds.dev.images, dtype=np.float64)[ds.dev.image_rows()] - ym
    ref = (imgs / np.linalg.norm(imgs, axis=1, keepdims=True)) @ (pred / np.linalg.norm(pred, axis=1, keepdims=True)).T
    from ncbench.evaluate import similarity_matrix

    sims = similarity_matrix(probe.networks(), ds.dev, torch.device("cpu"))
    np.testing.assert_allclose(np.asarray(sims), ref, atol=1e-5)


def test_bow_backbone_is_a_masked_mean_of_word_embeddings():
    cls = BACKBONES.get("vse_bow")
    torch.manual_seed(0)
    net = cls(cls.Config(embed_dim=6, word_dim=4, mlp_hidden=5), vocab_size=20, feature_dim=3).eval()
    tokens = torch.tensor([[1, 9, 4, 9, 2, 0, 0], [1, 4, 9, 9, 2, 0, 0], [1, 11, 2, 0, 0, 0, 0]])
    lengths = torch.tensor([5, 5, 3])
    out = net.encode_captions(tokens, lengths)
    for i, n in enumerate(lengths.tolist()):  # explicit loop over the real words
        words = [t for t in tokens[i, 1:n - 1].tolist()]
        ref = net.text_fc(torch.stack([net.embed.weight[w] for w in words]).mean(0))
        torch.testing.assert_close(out[i], ref / ref.norm())
    torch.testing.assert_close(out[0], out[1])  # a bag: word order does not matter
    for head in ("mlp", "linear", "shift"):
        other = cls(cls.Config(embed_dim=6, word_dim=4, mlp_hidden=5, image_head=head), 20, 3)
        emb = other.encode_images(torch.randn(4, 3))
        assert emb.shape == (4, 3 if head == "shift" else 6)
        torch.testing.assert_close(emb.norm(dim=1), torch.ones(4))
    from ncbench.errors import ConfigError

    with pytest.raises(ConfigError, match="image_head"):
        cls(cls.Config(image_head="conv"), 20, 3)


def test_vanilla_warms_up_with_the_mean_loss_then_takes_hard_negatives(small_context, tmp_path, monkeypatch):
    """NCR's warm-up loss (mean over negatives) for ``warmup_epochs``, then VSE++'s hardest negative:
    from a random start the hardest-negative loss alone collapses (issue 17)."""
    import sys

    vanilla_cls = METHODS.get("vanilla")
    module = sys.modules[vanilla_cls.__module__]
    seen = []
    real = module.triplet_loss
    monkeypatch.setattr(module, "triplet_loss", lambda s, m, hard: seen.append(hard) or real(s, m, hard))
    ctx, _ = small_context(tmp_path, ratio=0.0)
    method = vanilla_cls(vanilla_cls.Config(warmup_epochs=2, epochs=3, batch_size=64), ctx)
    for epoch in range(3):
        n = len(seen)
        method.train_epoch(epoch)
        assert set(seen[n:]) == ({False} if epoch < 2 else {True})
    assert vanilla_cls.Config().warmup_epochs == 1  # VSE∞'s train_region.sh: --vse_mean_warmup_epochs 1
