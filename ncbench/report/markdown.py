"""A first leaderboard: one Markdown table per dataset, mean ± std over seeds.

Rows are grouped by noise ratio, then method and backbone; columns are i2t R@1/5/10, t2i R@1/5/10,
rSum and the number of seeds. (The papers' exact layout with reported reference rows is a later
renderer; this one is the quick look after ``ncbench run``.)
"""

from __future__ import annotations

import math

import pandas as pd
from tabulate import tabulate

from .aggregate import METRICS

HEADERS = ["Noise", "Method", "Backbone", "i2t R@1", "R@5", "R@10", "t2i R@1", "R@5", "R@10", "rSum", "n"]


def cell(mean: float, std: float, n: int) -> str:
    if n > 1 and not math.isnan(std):
        return f"{mean:.1f} ± {std:.1f}"
    return f"{mean:.1f}"


def markdown_tables(agg: pd.DataFrame) -> str:
    if agg.empty:
        return "_No successful results found._\n"
    parts = []
    for (protocol, dataset), block in agg.groupby(["protocol_version", "dataset"], sort=True):
        rows = []
        for _, r in block.sort_values(["noise_ratio", "method", "backbone"]).iterrows():
            rows.append([
                f"{r.noise_ratio:.0%}", r.method, r.backbone,
                *(cell(r[f"{m}_mean"], r[f"{m}_std"], int(r.n)) for m in METRICS), int(r.n),
            ])
        parts.append(f"## {dataset} (protocol {protocol})\n\n" + tabulate(rows, HEADERS, tablefmt="github", disable_numparse=True) + "\n")
        mixed = block[block.noise_indices > 1]
        if not mixed.empty:
            parts.append("**Warning:** some rows mix seeds trained with different noise indices.\n")
    return "\n".join(parts)
