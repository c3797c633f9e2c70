"""Retrieval ranks and recall vs the official evaluation's per-query argsort loop."""

import numpy as np
import pytest
import torch

from ncbench.evaluate import RetrievalMetrics, retrieval_metrics
from ncbench.kernels.recall import i2t_ranks, median_rank, recall_at, t2i_ranks


def loop_ranks(sims: np.ndarray, cpi: int):
    """A transcription of the official ``i2t``/``t2i``: one argsort per query."""
    n_img = sims.shape[0]
    r_i = np.zeros(n_img, dtype=int)
    for i in range(n_img):
        order = np.argsort(sims[i])[::-1]
        r_i[i] = min(np.where(order == c)[0][0] for c in range(cpi * i, cpi * i + cpi))
    r_t = np.zeros(n_img * cpi, dtype=int)
    for c in range(n_img * cpi):
        order = np.argsort(sims[:, c])[::-1]
        r_t[c] = np.where(order == c // cpi)[0][0]
    return r_i, r_t


@pytest.mark.parametrize("cpi,n_img", [(5, 40), (1, 60), (3, 17)])
def test_ranks_match_the_per_query_loop(cpi, n_img):
    rng = np.random.default_rng(cpi)
    sims = rng.normal(size=(n_img, n_img * cpi)).astype(np.float32)
    sims[np.arange(n_img), np.arange(n_img) * cpi] += 1.5  # make recall non-trivial
    ref_i, ref_t = loop_ranks(sims, cpi)
    np.testing.assert_array_equal(i2t_ranks(sims, cpi).numpy(), ref_i)
    np.testing.assert_array_equal(t2i_ranks(sims, cpi).numpy(), ref_t)
    # tiny chunks exercise the chunking: same answer
    np.testing.assert_array_equal(i2t_ranks(sims, cpi, chunk_elems=7).numpy(), ref_i)
    np.testing.assert_array_equal(t2i_ranks(torch.from_numpy(sims), cpi, chunk_elems=7).numpy(), ref_t)


def test_recall_medr_meanr_against_the_loop():
    rng = np.random.default_rng(0)
    sims = rng.normal(size=(50, 250))
    sims[np.arange(50), np.arange(50) * 5 + 2] += 2.0
    m, ri, rt = retrieval_metrics(sims.astype(np.float32), 5)
    ref_i, ref_t = loop_ranks(sims, 5)
    assert m.i2t_r1 == pytest.approx(100 * np.mean(ref_i < 1))
    assert m.i2t_r10 == pytest.approx(100 * np.mean(ref_i < 10))
    assert m.t2i_r5 == pytest.approx(100 * np.mean(ref_t < 5))
    assert m.i2t_medr == np.floor(np.median(ref_i)) + 1
    assert m.t2i_meanr == pytest.approx(ref_t.mean() + 1)
    assert m.rsum == pytest.approx(sum(getattr(m, k) for k in RetrievalMetrics.RECALLS))
    assert ri.tolist() == ref_i.tolist() and rt.tolist() == ref_t.tolist()


def test_hand_computed_case():
    # 2 images, 2 captions each. Image 0: its captions score 0.9 and 0.1; image 1's captions 0.5, 0.3.
    sims = np.array([[0.9, 0.1, 0.5, 0.3],
                     [0.2, 0.8, 0.4, 0.7]], dtype=np.float32)
    assert i2t_ranks(sims, 2).tolist() == [0, 1]  # image 1: 0.8 (cap 1, wrong) first, then 0.7 (its cap 3)
    assert t2i_ranks(sims, 2).tolist() == [0, 1, 1, 0]
    assert recall_at(torch.tensor([0, 1]), ks=(1, 2)) == [50.0, 100.0]
    assert median_rank(torch.tensor([0, 1, 3])) == 2


def test_ties_count_against_the_query():
    """A collapsed model scoring everything equally must not get perfect recall."""
    sims = np.zeros((20, 100), dtype=np.float32)
    m, ri, rt = retrieval_metrics(sims, 5)
    assert m.rsum == 0.0
    # behind every negative (95 other images' captions), never behind its own other captions
    assert ri.tolist() == [95] * 20 and rt.tolist() == [19] * 100


def test_tied_ground_truths_do_not_count_against_each_other():
    """Difference D: a duplicated caption ties with its twin for the image's best score; the
    official ``min`` over its captions' argsort positions gives rank 0."""
    sims = np.array([[0.9, 0.9, 0.1, 0.2],
                     [0.3, 0.2, 0.8, 0.1]])
    assert i2t_ranks(sims, 2).tolist() == [0, 0]
    sims[0, 3] = 0.9  # a negative tied with the best ground truth still counts against the image
    assert i2t_ranks(sims, 2).tolist() == [1, 0]


def test_float64_similarities_are_compared_in_float64():
    """Difference E: a ground truth 1e-9 above a negative wins in float64 (the official numpy
    argsort on the float64 matrix); float32 would make them equal and rank it behind."""
    sims = np.array([[0.5 + 1e-9, 0.5],
                     [0.1, 0.7]], dtype=np.float64)
    assert i2t_ranks(sims, 1).tolist() == [0, 0]
    assert t2i_ranks(torch.from_numpy(sims), 1).tolist() == [0, 0]
    assert i2t_ranks(sims.astype(np.float32), 1).tolist() == [1, 0]


def test_nan_similarities_are_refused():
    from ncbench.errors import TrainingError

    sims = np.zeros((2, 10), dtype=np.float32)
    sims[0, 0] = np.nan
    with pytest.raises(TrainingError):
        retrieval_metrics(sims, 5)


def test_coco_fold_mean_sums_the_averaged_recalls():
    rng = np.random.default_rng(1)
    folds = []
    for _ in range(5):
        s = rng.normal(size=(20, 100)).astype(np.float32)
        s[np.arange(20), np.arange(20) * 5] += 1.0
        folds.append(retrieval_metrics(s, 5)[0])
    mean = RetrievalMetrics.mean(folds)
    assert mean.rsum == pytest.approx(sum(np.mean([getattr(f, k) for f in folds]) for k in RetrievalMetrics.RECALLS))
    # not the official misprint: 6 × mean of the i2t average recall
    misprint = 6 * np.mean([(f.i2t_r1 + f.i2t_r5 + f.i2t_r10) / 3 for f in folds])
    assert mean.rsum != pytest.approx(misprint)


def test_wrong_shape_is_an_error():
    with pytest.raises(ValueError):
        i2t_ranks(np.zeros((3, 10)), 5)


def test_evaluate_split_coco_protocol_folds_and_full():
    """COCO: five consecutive 1K-style folds averaged, plus the whole split as one ranking."""
    from types import SimpleNamespace

    from ncbench.evaluate import evaluate_split

    rng = np.random.default_rng(3)
    n_img, cpi = 50, 5
    sims = rng.normal(size=(n_img, n_img * cpi)).astype(np.float32)
    sims[np.arange(n_img), np.arange(n_img) * cpi] += 2.0

    class Fixed(torch.nn.Module):
        """Embeds image i as one-hot i and caption c as column c of ``sims``: score = sims."""

        def encode_images(self, images):
            return images

        def encode_captions(self, tokens, lengths):
            return torch.from_numpy(sims.T[tokens[:, 1].numpy()])

        def score(self, img, cap):
            return img @ cap.T

    split = SimpleNamespace(
        images=np.eye(n_img, dtype=np.float32), captions_per_image=cpi, n_images=n_img, n_captions=n_img * cpi,
        image_rows=lambda: np.arange(n_img), tokens=[np.array([1, c, 2]) for c in range(n_img * cpi)],
    )
    ev = evaluate_split([Fixed()], split, torch.device("cpu"), folds=5)
    full, _, _ = retrieval_metrics(sims, cpi)
    assert ev.full.rsum == pytest.approx(full.rsum)
    folds = [retrieval_metrics(sims[k * 10:(k + 1) * 10, k * 50:(k + 1) * 50], cpi)[0] for k in range(5)]
    assert ev.fold_mean.rsum == pytest.approx(RetrievalMetrics.mean(folds).rsum)
    assert ev.primary is ev.fold_mean and ev.to_dict()["primary"] == "fold_mean"
    assert len(ev.ranks_i2t) == n_img and len(ev.ranks_t2i) == n_img * cpi
    # the stored ranks: per fold too, and they give back each fold's rSum (what `ncbench compare` tests)
    from ncbench.significance import Ranks, rsum

    stored = Ranks.from_record(ev.ranks_record())
    assert len(stored.folds) == 5 and all(f.i2t.size == 10 and f.t2i.size == 50 for f in stored.folds)
    assert [rsum(f) for f in stored.folds] == pytest.approx([f.rsum for f in folds])
    assert rsum(stored) == pytest.approx(ev.fold_mean.rsum)
    assert "folds" not in evaluate_split([Fixed()], split, torch.device("cpu")).ranks_record()
