"""BiCro on the co-teaching skeleton: one epoch on tiny data, and the accuracy claim on the embedded data."""

import numpy as np
import pytest

from ncbench.registry import METHODS


@pytest.mark.parametrize("opts", [{}, {"official_scatter": True, "official_broadcast": True}, {"form": "distance"}])
def test_bicro_epochs_run_and_labels_are_valid(tmp_path, small_context, opts):
    ctx, _ = small_context(tmp_path)
    M = METHODS.get("bicro")
    cfg = M.make_config("synthetic", {"warmup_epochs": 1, "epochs": 3, "noisy_from": 0, "batch_size": 32, **opts})
    m = M(cfg, ctx)
    logs = [m.train_epoch(e) for e in range(cfg.warmup_epochs + cfg.epochs)]
    assert "loss_noisy_A" in logs[-1] and np.isfinite(list(logs[-1].values())).all()
    labels = m.soft_labels()
    seen = labels[~np.isnan(labels)]
    assert seen.size and seen.min() >= 0 and seen.max() <= 1
    assert (seen == 1).any()  # anchors
    prob = m.clean_probability()
    assert prob.shape == (len(ctx.train),) and np.isfinite(prob).all()


@pytest.mark.slow
def test_bicro_beats_vanilla_at_60_percent_noise(noisy_sweep, beats_vanilla):
    """Over 3 seeds: BiCro beats vanilla by more than the seeds' spread, and truly clean pairs get
    higher soft labels than truly noisy ones."""
    res = noisy_sweep("bicro")
    beats_vanilla(res, "bicro")
    for r in res:
        if r["identity"]["method"] == "bicro":
            assert r["detection"]["label_clean"] > r["detection"]["label_noisy"], r["detection"]
