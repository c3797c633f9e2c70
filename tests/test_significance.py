"""Paired significance (``ncbench.significance``, ``ncbench.compare``, ``ncbench compare``), checked
against direct resampling written out here (R@K recomputed from the ranks for every draw), an exact
enumeration, and cases with known answers."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from ncbench.significance import Ranks, fold_shares, image_shares, paired_test, rsum

CPI = 5


def recall_sum(i2t, t2i, ks=(1, 5, 10)) -> float:
    """rSum written out query by query."""
    total = 0.0
    for k in ks:
        total += 100.0 * sum(1 for r in i2t if r < k) / len(i2t)
        total += 100.0 * sum(1 for r in t2i if r < k) / len(t2i)
    return total


def fake_ranks(rng, n_images: int, skill: float) -> Ranks:
    """Ranks of a retrieval model: geometric-ish, smaller with higher ``skill``."""
    i2t = rng.geometric(skill, size=n_images) - 1
    t2i = rng.geometric(skill, size=n_images * CPI) - 1
    return Ranks(i2t, t2i)


def direct_bootstrap(runs_a, runs_b, strata, draws, rng):
    """Seeds with replacement, then images (with their captions) with replacement within each
    stratum; rSum recomputed from the drawn ranks of each fold; mean over drawn seeds."""
    out = []
    folds = sorted(set(strata))
    for _ in range(draws):
        picked = rng.integers(0, len(runs_a), size=len(runs_a))
        diffs = []
        for s in picked:
            per_fold = []
            for f in folds:
                members = np.flatnonzero(strata == f)
                local = rng.integers(0, members.size, size=members.size)
                a, b = runs_a[s][f], runs_b[s][f]
                caps = (local[:, None] * CPI + np.arange(CPI)).ravel()
                per_fold.append(recall_sum(a.i2t[local], a.t2i[caps]) - recall_sum(b.i2t[local], b.t2i[caps]))
            diffs.append(np.mean(per_fold))
        out.append(np.mean(diffs))
    return np.array(out)


def direct_permutation(runs_a, runs_b, draws, rng):
    """Swap A and B for each (seed, image) with its captions; rSum recomputed from the swapped ranks."""
    out = []
    for _ in range(draws):
        diffs = []
        for a, b in zip(runs_a, runs_b):
            swap = rng.integers(0, 2, size=a.i2t.size).astype(bool)
            cap = np.repeat(swap, CPI)
            ai, bi = np.where(swap, b.i2t, a.i2t), np.where(swap, a.i2t, b.i2t)
            at, bt = np.where(cap, b.t2i, a.t2i), np.where(cap, a.t2i, b.t2i)
            diffs.append(recall_sum(ai, at) - recall_sum(bi, bt))
        out.append(np.mean(diffs))
    return np.array(out)


def test_image_shares_add_up_to_the_rsum_difference():
    rng = np.random.default_rng(1)
    a, b = fake_ranks(rng, 40, 0.3), fake_ranks(rng, 40, 0.2)
    shares = image_shares(a, b)
    assert shares.shape == (40,)
    assert shares.sum() == pytest.approx(recall_sum(a.i2t, a.t2i) - recall_sum(b.i2t, b.t2i), abs=1e-9)
    assert rsum(a) == pytest.approx(recall_sum(a.i2t, a.t2i), abs=1e-9)
    # one image's share by hand: its i2t hits and its five captions' t2i hits
    i = 7
    hits = lambda r: sum(r < k for k in (1, 5, 10))  # noqa: E731
    by_hand = (100 / 40 * (hits(a.i2t[i]) - hits(b.i2t[i]))
               + 100 / 200 * sum(hits(a.t2i[i * CPI + c]) - hits(b.t2i[i * CPI + c]) for c in range(CPI)))
    assert shares[i] == pytest.approx(by_hand)


def test_identical_runs_have_p_one_and_a_zero_interval():
    rng = np.random.default_rng(2)
    runs = [fake_ranks(rng, 60, 0.3) for _ in range(3)]
    shares = np.stack([image_shares(r, r) for r in runs])
    t = paired_test(shares, resamples=500)
    assert t.difference == 0 and t.ci95 == (0.0, 0.0)
    assert t.p_bootstrap == 1.0 and t.p_permutation == 1.0


def test_a_shifted_copy_is_significant():
    rng = np.random.default_rng(3)
    runs = [fake_ranks(rng, 200, 0.3) for _ in range(3)]
    worse = [Ranks(r.i2t + 3, r.t2i + 3) for r in runs]  # every query three places down
    shares = np.stack([image_shares(a, b) for a, b in zip(runs, worse)])
    t = paired_test(shares, resamples=2000)
    assert t.difference > 0 and t.ci95[0] > 0
    assert t.p_permutation == pytest.approx(1 / 2001) and t.p_bootstrap == pytest.approx(1 / 2001)


def test_permutation_p_matches_exact_enumeration():
    """One seed, six images: all 2^6 sign patterns enumerated give the exact p-value."""
    shares = np.array([[3.0, -1.0, 2.0, 0.5, 1.5, -0.5]])
    observed = shares.sum()
    exact = np.mean([abs(np.dot(signs, shares[0])) >= observed - 1e-12
                     for signs in itertools.product((-1, 1), repeat=6)])
    t = paired_test(shares, resamples=40_000, seed=5)
    se = np.sqrt(exact * (1 - exact) / 40_000)
    assert abs(t.p_permutation - exact) < 4 * se + 1 / 40_000


def test_bootstrap_and_permutation_agree_with_direct_resampling():
    rng = np.random.default_rng(4)
    runs_a = [fake_ranks(rng, 80, 0.30) for _ in range(3)]
    runs_b = [fake_ranks(rng, 80, 0.26) for _ in range(3)]
    shares = np.stack([image_shares(a, b) for a, b in zip(runs_a, runs_b)])
    draws = 3000
    t = paired_test(shares, resamples=draws, seed=11)
    observed = np.mean([recall_sum(a.i2t, a.t2i) - recall_sum(b.i2t, b.t2i) for a, b in zip(runs_a, runs_b)])
    assert t.difference == pytest.approx(observed)

    boot = direct_bootstrap([[a] for a in runs_a], [[b] for b in runs_b], np.zeros(80, dtype=int), draws,
                            np.random.default_rng(12))
    low, high = np.percentile(boot, [2.5, 97.5])
    width = high - low
    assert t.ci95[0] == pytest.approx(low, abs=0.08 * width)
    assert t.ci95[1] == pytest.approx(high, abs=0.08 * width)
    p_boot = (1 + np.sum(np.abs(boot - observed) >= abs(observed))) / (draws + 1)
    assert t.p_bootstrap == pytest.approx(p_boot, abs=0.03)

    perm = direct_permutation(runs_a, runs_b, draws, np.random.default_rng(13))
    p_perm = (1 + np.sum(np.abs(perm) >= abs(observed) - 1e-9)) / (draws + 1)
    assert t.p_permutation == pytest.approx(p_perm, abs=0.03)


def test_fold_mean_view_resamples_within_folds():
    """MS-COCO 1K: the statistic is the mean of the per-fold rSums; images are drawn within folds."""
    rng = np.random.default_rng(6)
    n_folds, per = 3, 30
    runs_a = [[fake_ranks(rng, per, 0.3) for _ in range(n_folds)] for _ in range(2)]
    runs_b = [[fake_ranks(rng, per, 0.25) for _ in range(n_folds)] for _ in range(2)]
    whole = lambda folds: Ranks(np.concatenate([f.i2t for f in folds]), np.concatenate([f.t2i for f in folds]),  # noqa: E731
                                tuple(folds))
    rows, strata = zip(*(fold_shares(whole(a), whole(b)) for a, b in zip(runs_a, runs_b)))
    fold_mean = lambda folds: np.mean([recall_sum(f.i2t, f.t2i) for f in folds])  # noqa: E731
    assert rows[0].sum() == pytest.approx(fold_mean(runs_a[0]) - fold_mean(runs_b[0]))
    assert rsum(whole(runs_a[0])) == pytest.approx(fold_mean(runs_a[0]))
    t = paired_test(np.stack(rows), strata[0], resamples=3000, seed=1)
    strata_direct = np.repeat(np.arange(n_folds), per)
    boot = direct_bootstrap(runs_a, runs_b, strata_direct, 3000, np.random.default_rng(2))
    low, high = np.percentile(boot, [2.5, 97.5])
    assert t.ci95[0] == pytest.approx(low, abs=0.08 * (high - low))
    assert t.ci95[1] == pytest.approx(high, abs=0.08 * (high - low))


def test_bad_inputs_are_refused():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="different test sets"):
        image_shares(fake_ranks(rng, 10, 0.3), fake_ranks(rng, 11, 0.3))
    with pytest.raises(ValueError, match="resamples"):
        paired_test(np.zeros((1, 3)), resamples=0)


# -- the command ----------------------------------------------------------------------------------
def _write_with_ranks(root, write_result, method, seed, ranks: Ranks, **fields):
    path = write_result(root, method=method, seed=seed, noise=0.6, **fields)
    data = json.loads(path.read_text())
    data["ranks"] = {"i2t": ranks.i2t.tolist(), "t2i": ranks.t2i.tolist()}
    path.write_text(json.dumps(data))
    return path


def test_compare_command_reads_the_ranks_and_prints_interval_and_p_values(tmp_path, write_result, capsys):
    from ncbench.cli import main

    rng = np.random.default_rng(7)
    good = [fake_ranks(rng, 50, 0.35) for _ in range(3)]
    for s, r in enumerate(good):
        _write_with_ranks(tmp_path, write_result, "alpha", s, r)
        _write_with_ranks(tmp_path, write_result, "beta", s, Ranks(r.i2t + 4, r.t2i + 4))
    assert main(["compare", "--methods", "alpha,beta", "--dataset", "synthetic", "--noise", "0.6",
                 "--results", str(tmp_path), "--resamples", "999"]) == 0
    out = capsys.readouterr().out
    assert "paired seeds: 0, 1, 2 (3)" in out and "95% CI [" in out
    assert "p (bootstrap)            0.0010" in out and "p (permutation)          0.0010" in out

    assert main(["compare", "--methods", "alpha,alpha", "--backbones", "vse_light,vse_light", "--dataset",
                 "synthetic", "--noise", "0.6", "--results", str(tmp_path)]) == 2
    assert "both rows are alpha (vse_light)" in capsys.readouterr().err

    assert main(["compare", "--methods", "alpha,beta", "--dataset", "synthetic", "--noise", "0.6",
                 "--results", str(tmp_path), "--json", "--resamples", "200"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["seeds"] == [0, 1, 2] and data["test"]["difference"] > 0 and len(data["test"]["ci95"]) == 2
    assert data["rsum_a"] == pytest.approx(np.mean([recall_sum(r.i2t, r.t2i) for r in good]))


def test_compare_refuses_what_cannot_be_paired(tmp_path, write_result, capsys):
    from ncbench.cli import main

    rng = np.random.default_rng(8)
    _write_with_ranks(tmp_path, write_result, "alpha", 0, fake_ranks(rng, 20, 0.3))
    _write_with_ranks(tmp_path, write_result, "beta", 1, fake_ranks(rng, 20, 0.3))
    args = ["compare", "--methods", "alpha,beta", "--dataset", "synthetic", "--noise", "0.6", "--results", str(tmp_path)]
    assert main(args) == 2
    assert "share no seed" in capsys.readouterr().err
    _write_with_ranks(tmp_path, write_result, "beta", 0, fake_ranks(rng, 20, 0.3), sha="f" * 64)
    assert main(args) == 2
    assert "different noise indices" in capsys.readouterr().err
    assert main([*args[:-2], "--results", str(tmp_path / "nowhere")]) == 2
    # two backbones shared by both rows, neither the card's default (vse_light): which one must be said
    two = tmp_path / "two"
    for m in ("alpha", "beta"):
        for b in ("vse_bow", "sgr"):
            _write_with_ranks(two, write_result, m, 0, fake_ranks(rng, 20, 0.3), backbone=b)
    capsys.readouterr()
    pick = ["compare", "--methods", "alpha,beta", "--dataset", "synthetic", "--noise", "0.6", "--results", str(two)]
    assert main(pick) == 2
    assert "alpha and beta have results with several backbones (sgr, vse_bow): choose one with --backbones" in \
        capsys.readouterr().err
    assert main([*pick, "--backbones", "sgr", "--resamples", "50"]) == 0
    assert "alpha (sgr) vs beta (sgr)" in capsys.readouterr().out
    assert main(["compare", "--methods", "alpha,gamma", *args[3:]]) == 2
    assert "no ok result of gamma (vse_light)" in capsys.readouterr().err


@pytest.mark.slow
def test_compare_ncr_and_bicro_of_the_shared_sweep(noisy_sweep, sweep_root, capsys):
    """The issue's command on real results: 3 seeds of NCR and BiCro at 60% noise (the shared sweep's
    backbone, vse_bow, is the one both have: compare takes it without --backbones)."""
    from ncbench.cli import main

    noisy_sweep("bicro")
    capsys.readouterr()
    assert main(["compare", "--methods", "ncr,bicro", "--dataset", "synthetic", "--noise", "0.6",
                 "--results", str(sweep_root), "--resamples", "2000"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ncr (vse_bow) vs bicro (vse_bow): synthetic, caption-level noise 0.6")
    assert "paired seeds: 0, 1, 2 (3); test queries: 500 images (image→text), 2500 captions (text→image)" in out
    assert "95% CI [" in out and "p (bootstrap)" in out and "p (permutation)" in out


def test_boards_mark_rows_not_significantly_below_the_best(tmp_path, write_result):
    """alpha is the best Sum; beta has the same ranks (p = 1: marked), gamma every query three places
    lower (p ≈ 0: not marked), delta no seed in common with alpha (not tested, counted in the note)."""
    from ncbench.report.build import LeaderboardRequest, build_leaderboard

    rng = np.random.default_rng(9)
    base = [fake_ranks(rng, 60, 0.35) for _ in range(3)]
    for s, r in enumerate(base):
        _write_with_ranks(tmp_path, write_result, "alpha", s, r, r1=60.0)
        _write_with_ranks(tmp_path, write_result, "beta", s, r, r1=59.0)
        _write_with_ranks(tmp_path, write_result, "gamma", s, Ranks(r.i2t + 3, r.t2i + 3), r1=40.0)
    _write_with_ranks(tmp_path, write_result, "delta", 7, base[0], r1=50.0)
    out = build_leaderboard(LeaderboardRequest(results=[tmp_path], out=tmp_path / "boards", plots=False))
    (board,) = out.boards
    rows = {r.method: r.cells["synthetic"]["rsum"] for g in board.groups for r in g.rows}
    assert rows["beta"].tied and rows["beta"].p_value == 1.0
    assert not rows["gamma"].tied and rows["gamma"].p_value < 0.01
    assert rows["alpha"].p_value is None and rows["delta"].p_value is None and not rows["delta"].tied
    md = (tmp_path / "boards" / "leaderboard.md").read_text()
    line = lambda m: next(x for x in md.splitlines() if f"| {m} " in x)  # noqa: E731
    assert "◇" in line("beta") and "◇" not in line("gamma") and "◇" not in line("alpha")
    assert "paired permutation test over seeds and test images (two-sided, α = 0.05" in md
    assert "1 comparison(s) could not be paired" in md
    page = (tmp_path / "boards" / "leaderboard-p1-synthetic.html").read_text()
    assert page.count('<span class="tied"') == 1 and "paired permutation p = 1.000" in page
    assert r"$^\diamond$" in (tmp_path / "boards" / "leaderboard.tex").read_text()
