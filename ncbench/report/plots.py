"""Plots (matplotlib, Agg backend, PNG bytes): robustness curves and loss-split histograms.

* ``noise_curve_png``: test rSum against the noise ratio, one line per (method, backbone), with a
  ±1 sample-std band where a point has more than one seed.
* ``curves_png``: training curves of the rows of one noise group, a panel per series (training
  loss on a log axis, validation rSum, split AUC, clean precision and recall), mean over seeds per
  epoch with a ±1 sample-std band; a run page draws its own run over its group's band.
* ``split_histogram_png``: for one run, the normalised per-sample losses at the selected epoch as
  density histograms of the truly clean and truly noisy pairs, with the fitted mixture's weighted
  components (the clean one solid) and their sum. Drawn from the ``split_histogram`` stored in the
  result, so it needs no re-training.

Titles and legend labels carry names from result files; ``literal`` escapes their ``$`` so that
matplotlib never reads them as mathtext (a tag holding ``$`` and an unfinished TeX command would
otherwise stop the drawing).
"""

from __future__ import annotations

import io
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def literal(text: str) -> str:
    """``text`` drawn as written: every ``$`` escaped, so no part of it is parsed as mathtext."""
    return str(text).replace("$", r"\$")


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def noise_curve_png(agg: pd.DataFrame, benchmark: str, title: str) -> bytes | None:
    """rSum vs noise ratio for one benchmark; None when no (method, backbone) has two noise ratios."""
    block = agg[agg.benchmark == benchmark]
    lines = [(k, g.sort_values("noise_ratio")) for k, g in block.groupby(["method", "backbone"], sort=True)]
    lines = [(k, g) for k, g in lines if g.noise_ratio.nunique() >= 2]
    if not lines:
        return None
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    for (method, backbone), g in lines:
        x = g.noise_ratio.to_numpy(float) * 100
        y = g.rsum_mean.to_numpy(float)
        sd = np.nan_to_num(g.rsum_std.to_numpy(float))
        label = method if block.backbone.nunique() == 1 else f"{method} ({backbone})"
        (line,) = ax.plot(x, y, marker="o", label=literal(label))
        ax.fill_between(x, y - sd, y + sd, color=line.get_color(), alpha=0.18, linewidth=0)
    ax.set_xlabel("noise ratio (%)")
    ax.set_ylabel("test rSum")
    ax.set_title(literal(title), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def split_histogram_png(hist: dict[str, Any], title: str) -> bytes:
    edges = np.asarray(hist["edges"], float)
    width = np.diff(edges)
    clean, noisy = np.asarray(hist["clean_counts"], float), np.asarray(hist["noisy_counts"], float)
    total = (clean.sum() + noisy.sum()) or 1.0
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    ax.bar(edges[:-1], clean / total / width, width=width, align="edge", color="tab:green", alpha=0.55,
           label="truly clean pairs")
    ax.bar(edges[:-1], noisy / total / width, width=width, align="edge", bottom=clean / total / width,
           color="tab:red", alpha=0.55, label="truly noisy pairs")
    grid = np.asarray(hist["grid"], float)
    pdf = np.asarray(hist["component_pdf"], float)
    k = int(hist["clean_component"])
    name = "GMM" if hist.get("kind") == "gmm" else "Beta mixture"
    ax.plot(grid, pdf[k], color="darkgreen", label=f"{name}: clean component")
    ax.plot(grid, pdf[1 - k], color="darkred", linestyle="--", label=f"{name}: noisy component")
    ax.plot(grid, pdf.sum(axis=0), color="black", linewidth=0.8, label="mixture")
    ax.set_xlabel("normalised per-sample loss")
    ax.set_ylabel("density")
    ax.set_title(literal(title), fontsize=10)
    ax.set_ylim(0, max(float(np.percentile(np.r_[(clean + noisy) / total / width, pdf.sum(axis=0)], 99)) * 1.3, 1.0))
    ax.legend(fontsize=7)
    return _png(fig)


def curves_png(stats: pd.DataFrame, title: str, runs: pd.DataFrame | None = None) -> bytes | None:
    """Panels of ``curves.SERIES`` for the sweep groups in ``stats`` (``curves.curve_stats`` rows of
    one noise group), one line per (method, backbone): mean, ±1 std band. ``runs`` (``curve_frame``
    rows of single runs) are drawn over them as black lines. None when there is nothing to draw."""
    from .curves import SERIES

    present = [s for s in SERIES if stats[f"{s}_mean"].notna().any()] if not stats.empty else []
    if not present:
        return None
    cols = min(3, len(present))
    rows = -(-len(present) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.9 * rows), squeeze=False)
    for ax in axes.flat[len(present):]:
        ax.set_visible(False)
    for ax, series in zip(axes.flat, present):
        for (method, backbone), g in stats.groupby(["method", "backbone"], sort=True):
            g = g[g[f"{series}_mean"].notna()].sort_values("epoch")
            if g.empty:
                continue
            x, y = g.epoch.to_numpy(float), g[f"{series}_mean"].to_numpy(float)
            sd = np.nan_to_num(g[f"{series}_std"].to_numpy(float))
            label = method if stats.backbone.nunique() == 1 else f"{method} ({backbone})"
            (line,) = ax.plot(x, y, label=literal(label), linewidth=1.2)
            ax.fill_between(x, y - sd, y + sd, color=line.get_color(), alpha=0.18, linewidth=0)
        if runs is not None and not runs.empty:
            for seed, g in runs.groupby("seed"):
                g = g[g[series].notna()].sort_values("epoch")
                ax.plot(g.epoch, g[series], color="black", linewidth=1.0, linestyle="--", label=f"this run (seed {seed})")
        if series == "loss" and (stats["loss_mean"].dropna() > 0).all():
            ax.set_yscale("log")
        ax.set_title(SERIES[series], fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="lower right" if len(present) % cols else "upper right",
               bbox_to_anchor=(0.98, 0.05) if len(present) % cols else (1.12, 0.9))
    fig.suptitle(literal(title), fontsize=10)
    fig.tight_layout()
    return _png(fig)
