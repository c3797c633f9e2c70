"""CREAM: the kernels against explicit loops and hand-computed cases, the warm-up "all seven improve"
rule, the curriculum's steps (the hard loader runs out, the noisy one cycles) and the split
diagnostics. The official functions on the same inputs: ``tests/parity`` (case ``cream``)."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch

from ncbench.evaluate import RetrievalMetrics, detection_metrics
from ncbench.kernels.mining import (
    info_nce_per_sample,
    negative_threshold,
    soft_target_info_nce,
    soft_target_weights,
    three_way_split,
)
from ncbench.registry import METHODS


def _softmax_row(values, tau):
    z = [math.exp(v / tau) for v in values]
    return [v / sum(z) for v in z]


def test_info_nce_per_sample_by_explicit_loops():
    rng = np.random.default_rng(0)
    s = rng.uniform(0, 1, size=(4, 4))
    tau = 0.07
    expected = [-math.log(_softmax_row(s[i], tau)[i]) - math.log(_softmax_row(s[:, i], tau)[i]) for i in range(4)]
    assert info_nce_per_sample(torch.from_numpy(s), tau).tolist() == pytest.approx(expected, rel=1e-12)


def test_soft_target_weights_share_the_rest_by_similarity_and_the_filter_drops_small_negatives():
    s = torch.tensor([[0.9, 0.6, 0.2], [0.1, 0.8, 0.3], [0.5, 0.5, 0.7]], dtype=torch.float64)
    y = torch.tensor([0.8, 0.5, 1.0], dtype=torch.float64)
    w_row, w_col = soft_target_weights(s, y)
    # row 0: the rest 0.2 split 0.6 : 0.2 between captions 1 and 2
    assert w_row[0].tolist() == pytest.approx([0.8, 0.2 * 0.6 / (0.8 + 1e-6), 0.2 * 0.2 / (0.8 + 1e-6)])
    # column 0 (caption 0 over the images): the rest 0.2 split 0.1 : 0.5
    assert w_col[:, 0].tolist() == pytest.approx([0.8, 0.2 * 0.1 / (0.6 + 1e-6), 0.2 * 0.5 / (0.6 + 1e-6)])
    assert w_row[2].tolist() == [0.0, 0.0, 1.0]  # a target of 1 gives the negatives nothing
    w_row, _ = soft_target_weights(s, y, threshold=0.1)
    assert w_row[0].tolist() == pytest.approx([0.8, 0.2 * 0.6 / (0.8 + 1e-6), 0.0])  # 0.05 < 0.1 dropped
    w_row, w_col = soft_target_weights(s, y, threshold=1.0)  # f ≥ 1: the positives alone
    assert torch.equal(w_row, torch.diag(y)) and torch.equal(w_col, torch.diag(y))


def test_soft_target_info_nce_by_explicit_double_loop():
    rng = np.random.default_rng(1)
    s = rng.uniform(0.05, 0.95, size=(5, 5))
    y = rng.uniform(0, 1, size=5)
    tau, f = 0.07, 0.05
    w_row, w_col = (w.numpy() for w in soft_target_weights(torch.from_numpy(s), torch.from_numpy(y), f))
    total = 0.0
    for i in range(5):
        p_row = _softmax_row(s[i], tau)
        for j in range(5):
            p_col = _softmax_row(s[:, j], tau)[i]  # caption j over the images
            total += w_row[i, j] * -math.log(p_row[j]) + w_col[i, j] * -math.log(p_col)
    got = soft_target_info_nce(torch.from_numpy(s), torch.from_numpy(y), tau, f)
    assert float(got) == pytest.approx(total / 5, rel=1e-12)


def test_three_way_split_and_the_filter_by_hand():
    a = torch.tensor([True, True, False, False])
    b = torch.tensor([True, False, True, False])
    clean, hard, noisy = three_way_split(a, b)
    assert clean.tolist() == [True, False, False, False]
    assert hard.tolist() == [False, True, True, False]
    assert noisy.tolist() == [False, False, False, True]
    assert negative_threshold([0.9, 0.6, 0.2], [60, 10, 30]) == pytest.approx((54 + 6 + 6) / 100)
    assert negative_threshold([0.9, None, 0.2], [60, 10, 30]) == pytest.approx((54 + 6) / 90)  # no hard batch


def _metrics(rsum, *recalls):
    return RetrievalMetrics(*recalls, rsum, 0, 0, 0, 0)


def test_the_kept_warmup_epoch_improves_all_seven_numbers_over_every_earlier_one():
    cream = METHODS.get("cream")
    method = object.__new__(cream)
    method.config = cream.Config(warmup_epochs=4)
    method.nets = [torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)]
    method._warm = None
    seq = [_metrics(100, 10, 20, 30, 5, 15, 20),   # 0: first epoch, kept
           _metrics(120, 12, 25, 33, 6, 20, 24),   # 1: all seven better: kept
           _metrics(130, 13, 26, 34, 6, 25, 26),   # 2: t2i R@1 ties (not better): not kept
           _metrics(125, 14, 27, 35, 7, 21, 21)]   # 3: better than 1 on some, not on rSum max(120, 130): not kept
    for epoch, m in enumerate(seq):
        with torch.no_grad():
            method.nets[0].weight.fill_(epoch)
        method.observe_validation(epoch, m)
        method.observe_validation(epoch, m)  # idempotent (a stop during validation validates again)
    assert method._warm["epoch"] == 1
    assert float(method._warm["nets"][0]["weight"][0, 0]) == 1.0
    assert method._warm["best"] == [130, 14, 27, 35, 7, 25, 26]
    method.observe_validation(5, _metrics(999, *[99] * 6))  # co-training epochs are not warm-up candidates
    assert method._warm["epoch"] == 1


def test_the_hard_loader_runs_out_and_the_noisy_loader_cycles(tmp_path, small_context):
    ctx, _ = small_context(tmp_path)
    cream = METHODS.get("cream")
    method = cream(cream.make_config("synthetic", {"batch_size": 8}), ctx)
    n = len(ctx.train)
    clean = np.zeros(n, dtype=bool)
    hard = np.zeros(n, dtype=bool)
    noisy = np.zeros(n, dtype=bool)
    clean[:40], hard[40:52], noisy[52:62] = True, True, True  # 5 clean batches, 2 hard (8 + 4), 2 noisy (8 + 2)
    steps = method._subset_steps(0, clean, hard, noisy)
    assert len(steps) == 5 and all(s[0] == 0 for s in steps)
    assert [s[3] for s in steps] == [True, True, False, False, False]  # trained while the hard loader lasts
    assert steps[2][2] is steps[1][2]  # afterwards its last batch (counted in the filter only)
    assert sorted(np.concatenate([s[2] for s in steps[:2]]).tolist()) == list(range(40, 52))
    noisy_seen = [s[4] for s in steps]
    assert sorted(np.concatenate(noisy_seen[:2]).tolist()) == list(range(52, 62))  # one pass, then a new one
    assert sorted(np.concatenate(noisy_seen[2:4]).tolist()) == list(range(52, 62))


def test_detection_reports_each_subsets_share_and_purity():
    true_clean = np.array([1, 1, 1, 0, 0, 1, 0, 0], dtype=bool)
    subsets = {"clean": np.array([1, 1, 1, 0, 0, 0, 0, 0], dtype=bool),
               "hard": np.array([0, 0, 0, 1, 0, 1, 0, 0], dtype=bool),
               "noisy": np.array([0, 0, 0, 0, 1, 0, 1, 1], dtype=bool)}
    det = detection_metrics(np.linspace(1, 0, 8), subsets["clean"], None, true_clean, subsets)
    assert det["subsets"]["clean"] == {"fraction": 3 / 8, "true_clean": 1.0}
    assert det["subsets"]["hard"] == {"fraction": 2 / 8, "true_clean": 0.5}
    assert det["subsets"]["noisy"] == {"fraction": 3 / 8, "true_clean": 0.0}


def test_cream_module_names_its_deviations():
    doc = sys.modules[METHODS.get("cream").__module__].__doc__
    assert "hard subset is trained" in doc and "hard_iter.next()" in doc


@pytest.mark.slow
def test_cream_beats_vanilla_at_60_percent_noise(noisy_sweep, beats_vanilla):
    """On the embedded data at 60% caption-level noise, seeds 0-2, by more than the two spreads added."""
    res = noisy_sweep("cream")
    beats_vanilla(res, "cream")
    assert all(r["detection"]["auc"] > 0.9 for r in res if r["identity"]["method"] == "cream")
