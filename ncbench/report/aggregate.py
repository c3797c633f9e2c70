"""Result files → one tidy pandas frame → per-group statistics over seeds.

One row per successful run with its identity and the headline test metrics (the dataset's
primary view: the full test split, or the 5-fold mean for MS-COCO 1K). Aggregation groups by
(protocol, dataset, noise ratio, method, backbone) and gives mean, sample std (ddof = 1) and the
number of seeds; numbers stay numeric, formatting happens only when rendering.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from ..evaluate import RetrievalMetrics

METRICS = (*RetrievalMetrics.RECALLS, "rsum")
GROUP = ["protocol_version", "dataset", "noise_ratio", "method", "backbone"]


def results_frame(results: list[dict[str, Any]]) -> pd.DataFrame:
    rows = []
    for r in results:
        if r.get("status") != "ok":
            continue
        ident, test = r["identity"], r["test"]
        view = test[test.get("primary", "full")]
        rows.append({
            **{k: ident[k] for k in ("protocol_version", "dataset", "noise_ratio", "method", "backbone", "seed")},
            "noise_index_sha256": ident.get("noise_index_sha256"),
            **{m: float(view[m]) for m in METRICS},
            "path": r.get("_path"),
        })
    return pd.DataFrame(rows, columns=[*GROUP, "seed", "noise_index_sha256", *METRICS, "path"])


def aggregate(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean, sample std and n per group (std is NaN for a single seed)."""
    if frame.empty:
        return pd.DataFrame(columns=[*GROUP, "n", "noise_indices", *(f"{m}_{s}" for m in METRICS for s in ("mean", "std"))])
    g = frame.groupby(GROUP, sort=True)
    out = g[list(METRICS)].agg(["mean", "std"])
    out.columns = [f"{m}_{s}" for m, s in out.columns]
    out["n"] = g.size()
    out["noise_indices"] = g["noise_index_sha256"].nunique()
    return out.reset_index()
