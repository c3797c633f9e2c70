"""Training curves from the per-epoch history every result stores: one tidy frame, then mean ±
sample std over seeds per epoch for each sweep group (protocol, dataset, noise type, ratio,
method, backbone).

The series (``SERIES``): the training loss (a co-teaching method's two networks averaged), the
validation rSum that selects the epoch, and, where the method divides the data, the split's AUC
and the clean side's precision and recall against the injected noise. Losses of different methods
are on different scales; the plots put them on a log axis.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from ..results import noise_of, row_of

SERIES = {"loss": "training loss", "val_rsum": "validation rSum", "auc": "split AUC",
          "clean_precision": "clean precision", "clean_recall": "clean recall"}
GROUP = ["protocol_version", "dataset", "noise", "noise_ratio", "method", "backbone"]


def training_loss(row: dict[str, Any]) -> float:
    """The epoch's training loss: ``loss``, or the mean of a co-teaching method's ``loss_A``/``loss_B``."""
    if row.get("loss") is not None:
        return float(row["loss"])
    both = [float(row[k]) for k in ("loss_A", "loss_B") if row.get(k) is not None]
    return sum(both) / len(both) if both else math.nan


def curve_frame(results: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per (ok result, epoch of its history) with the ``SERIES`` (NaN where absent)."""
    rows = []
    for r in results:
        if r.get("status") != "ok":
            continue
        ident = r["identity"]
        key = {**{k: ident[k] for k in ("protocol_version", "dataset", "backbone")}, "method": row_of(ident),
               "noise": noise_of(ident), "noise_ratio": float(ident["noise_ratio"]), "seed": int(ident["seed"])}
        for h in r.get("history") or []:
            det = h.get("detection") or {}
            rows.append({**key, "epoch": int(h["epoch"]), "loss": training_loss(h),
                         "val_rsum": float(h["val_rsum"]) if h.get("val_rsum") is not None else math.nan,
                         **{k: math.nan if det.get(k) is None else float(det[k])
                            for k in ("auc", "clean_precision", "clean_recall")}})
    return pd.DataFrame(rows, columns=[*GROUP, "seed", "epoch", *SERIES])


def curve_stats(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (sweep group, epoch): ``<series>_mean``, ``<series>_std`` (sample, NaN for one seed) and
    ``n`` seeds."""
    cols = [*GROUP, "epoch", "n", *(f"{s}_{x}" for s in SERIES for x in ("mean", "std"))]
    if frame.empty:
        return pd.DataFrame(columns=cols)
    g = frame.groupby([*GROUP, "epoch"], sort=True)
    out = g[list(SERIES)].agg(["mean", "std"])
    out.columns = [f"{s}_{x}" for s, x in out.columns]
    out["n"] = g.size()
    return out.reset_index()[cols]
