"""Parity of the evaluation (shared by every method): NCR's ``i2t``/``t2i`` ranks and recalls."""

from __future__ import annotations

import numpy as np

from ncbench.kernels.recall import ranks, recall_at

from ..official import extract, require
from ..common import close


# -- evaluation: NCR/evaluation.py i2t, t2i (shared by BiCro, L2RM) ----------------------------------
def recall_inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    sims = rng.normal(size=(20, 100))
    tied = sims.copy()  # difference D: two ground truths of image 3 tie for its best score
    tied[3, 15] = tied[3, 16] = sims.max() + 1.0
    near = sims.copy()  # difference E: a ground truth 1e-9 above a negative (lost in float32)
    near[5] = -5.0
    near[5, 25], near[5, 60] = 0.7 + 1e-9, 0.7
    return {"random": sims, "tied": tied, "near": near}


def make_recall() -> dict[str, np.ndarray]:
    off = extract(require("ncr") / "NCR/evaluation.py", ["i2t", "t2i"])
    out = {}
    for name, s in recall_inputs().items():
        n = s.shape[0]
        (i2t, (rank_i, *_)), (t2i, (rank_t, *_)) = off.i2t(n, s, 5, True), off.t2i(n, s, 5, True)
        out |= {f"{name}_sims": s, f"{name}_i2t": rank_i, f"{name}_t2i": rank_t, f"{name}_recalls": np.array([*i2t[:3], *t2i[:3]])}
    return out


def check_recall(d) -> None:
    for name in ("random", "tied", "near"):
        r_i, r_t = ranks(d[f"{name}_sims"], 5)
        assert r_i.tolist() == d[f"{name}_i2t"].astype(int).tolist(), f"{name}: i2t ranks"
        assert r_t.tolist() == d[f"{name}_t2i"].astype(int).tolist(), f"{name}: t2i ranks"
        close([*recall_at(r_i), *recall_at(r_t)], d[f"{name}_recalls"], f"{name}: recalls")
