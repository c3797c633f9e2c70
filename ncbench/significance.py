"""Paired significance of an rSum difference, from the per-query test ranks every result stores.

Two rows of a board (method A and method B on one protocol, dataset, noise ratio and noise type)
are paired twice: by **seed** (the same seed trains both on the same noise index) and by **test
query** (the same test images and captions). The statistic is the board's: the mean over the
paired seeds of rSum(A) − rSum(B), with R@K recomputed from the ranks.

rSum is a sum of recalls, so the difference splits exactly into one share per test image: its
image→text query and the text→image queries of its captions (``image_shares``). Both tests
resample those shares, which keeps each image with its captions:

* **hierarchical bootstrap**: draw the seeds with replacement, then, for each drawn seed, the test
  images with replacement (within each fold where the view is a fold mean, e.g. MS-COCO 1K); the
  2.5 and 97.5 percentiles of the resampled difference are the 95% interval, and the p-value is the
  share of resampled differences at least as far from the observed one as the observed one is
  from zero (the bootstrap's shifted null);
* **paired permutation test**: swap A and B independently for every (seed, test image) pair, the
  exact null of "the two methods are exchangeable"; p = (1 + #{|T*| ≥ |T|}) / (1 + permutations).

``paired_test`` is a pure function of the share matrix; ``Ranks`` and ``image_shares`` turn stored
ranks into it. ``ncbench compare`` and the boards' significance mark call these.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

KS = (1, 5, 10)
BLOCK = 2_000_000  # resampled (draw, seed, image) entries held at once


@dataclass(frozen=True)
class Ranks:
    """One run's 0-based test ranks in one view: ``i2t`` per image, ``t2i`` per caption (the
    captions of image i are ``i·cpi … i·cpi + cpi − 1``); ``folds``, where the view is a fold mean,
    the same per fold (image indices restart in each)."""

    i2t: np.ndarray
    t2i: np.ndarray
    folds: tuple[Ranks, ...] = ()

    @classmethod
    def from_record(cls, ranks: dict) -> Ranks:
        folds = tuple(cls(np.asarray(f["i2t"]), np.asarray(f["t2i"])) for f in ranks.get("folds") or ())
        return cls(np.asarray(ranks["i2t"]), np.asarray(ranks["t2i"]), folds)


def rsum(ranks: Ranks, ks=KS) -> float:
    """rSum of one set of ranks (both directions, R@K in percent); the mean over its folds where it has them."""
    if ranks.folds:
        return float(np.mean([rsum(f, ks) for f in ranks.folds]))
    return float(sum(100.0 * np.mean(ranks.i2t < k) + 100.0 * np.mean(ranks.t2i < k) for k in ks))


def image_shares(a: Ranks, b: Ranks, ks=KS) -> np.ndarray:
    """``(n_images,)``: each test image's share of rSum(a) − rSum(b) (its image→text query and the
    text→image queries of its captions); the shares sum to the difference exactly."""
    if a.i2t.shape != b.i2t.shape or a.t2i.shape != b.t2i.shape:
        raise ValueError(f"ranks of different test sets: {a.i2t.size}/{a.t2i.size} vs {b.i2t.size}/{b.t2i.size} "
                         "image/caption queries")
    n, m = a.i2t.size, a.t2i.size
    if m % n:
        raise ValueError(f"{m} caption queries are not a whole number per image ({n} images)")

    def hits(r: np.ndarray) -> np.ndarray:  # for how many K the query is found in the top K
        return sum((r < k).astype(np.int64) for k in ks)

    cap = (hits(a.t2i) - hits(b.t2i)).reshape(n, m // n).sum(1)
    return 100.0 * (hits(a.i2t) - hits(b.i2t)) / n + 100.0 * cap / m


def fold_shares(a: Ranks, b: Ranks, ks=KS) -> tuple[np.ndarray, np.ndarray]:
    """Shares and strata for the view a board reads: the fold mean where ``a`` has folds (each
    fold's shares divided by the number of folds, stratum = fold), else the whole split."""
    if not a.folds:
        shares = image_shares(a, b, ks)
        return shares, np.zeros(shares.size, dtype=np.int64)
    if len(a.folds) != len(b.folds):
        raise ValueError(f"{len(a.folds)} folds vs {len(b.folds)}")
    parts = [image_shares(fa, fb, ks) / len(a.folds) for fa, fb in zip(a.folds, b.folds)]
    return np.concatenate(parts), np.concatenate([np.full(p.size, i) for i, p in enumerate(parts)])


@dataclass(frozen=True)
class PairedTest:
    difference: float  # mean over seeds of the per-seed difference (the shares' row sums)
    ci95: tuple[float, float]  # hierarchical bootstrap percentile interval
    p_bootstrap: float
    p_permutation: float
    resamples: int
    seeds: int
    images: int


def _chunks(total: int, per_draw: int):
    step = max(1, BLOCK // max(per_draw, 1))
    for start in range(0, total, step):
        yield min(step, total - start)


def paired_test(shares: np.ndarray, strata: np.ndarray | None = None, resamples: int = 10_000,
                seed: int = 0) -> PairedTest:
    """Bootstrap interval and both p-values for ``shares`` ``(seeds, images)`` (row sums = per-seed
    differences); ``strata`` labels the images (folds) the bootstrap resamples within."""
    shares = np.asarray(shares, dtype=np.float64)
    if shares.ndim != 2 or shares.shape[0] < 1 or shares.shape[1] < 1:
        raise ValueError(f"shares must be (seeds, images) with both ≥ 1, got shape {shares.shape}")
    if resamples < 1:
        raise ValueError(f"resamples must be ≥ 1, got {resamples}")
    s, n = shares.shape
    strata = np.zeros(n, dtype=np.int64) if strata is None else np.asarray(strata)
    groups = [np.flatnonzero(strata == v) for v in np.unique(strata)]
    rng = np.random.default_rng(seed)
    observed = float(shares.sum(1).mean())

    boot = []
    for m in _chunks(resamples, s * n):
        picked = rng.integers(0, s, size=(m, s, 1))
        total = np.zeros(m)
        for idx in groups:
            drawn = idx[rng.integers(0, idx.size, size=(m, s, idx.size))]
            total += shares[picked, drawn].sum(axis=(1, 2))
        boot.append(total / s)
    boot = np.concatenate(boot)

    perm = []
    for m in _chunks(resamples, s * n):
        signs = rng.integers(0, 2, size=(m, s, n), dtype=np.int8) * 2 - 1
        perm.append((signs * shares).sum(axis=(1, 2)) / s)
    perm = np.concatenate(perm)

    tol = 1e-9 * max(1.0, abs(observed))  # sums of the same shares in another order
    p_boot = (1 + int(np.sum(np.abs(boot - observed) >= abs(observed) - tol))) / (resamples + 1)
    p_perm = (1 + int(np.sum(np.abs(perm) >= abs(observed) - tol))) / (resamples + 1)
    low, high = np.percentile(boot, [2.5, 97.5])
    return PairedTest(observed, (float(low), float(high)), p_boot, p_perm, resamples, s, n)
