"""Accuracy-regression bookkeeping: each built-in method's test rSum and detection AUC over seeds on
the embedded dataset, compared with a golden file.

A golden file (``benchmarks/accuracy_golden*.json``) records, for one sweep (dataset, backbone,
noise ratio, seeds), every method's per-seed rSum and AUC and their means. ``problems`` lists each
method whose mean moved by more than the file's tolerance in either direction (an unexplained
improvement deserves a look as much as a loss). Two sweeps are tracked: on ``vse_bow`` in CI (the
whole 24-run sweep in about a minute on two cores), and on the recurrent ``vse_light`` in the full
benchmark run (``pytest benchmarks --accuracy-full``, about eleven minutes).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import write_text_atomic

RSUM_TOL = 3.0
AUC_TOL = 0.01
METHODS = ("vanilla", "ncr", "bicro", "crcl", "decl", "rcl", "l2rm", "cream")


def summarise(results: list[dict[str, Any]], method: str) -> dict[str, Any]:
    """One method's per-seed test rSum and detection AUC (seed order) and their means."""
    rows = sorted((r for r in results if r["identity"]["method"] == method), key=lambda r: r["identity"]["seed"])
    rsum = [r["test"]["full"]["rsum"] for r in rows]
    auc = [r["detection"]["auc"] for r in rows if r.get("detection")]
    return {"seeds": [r["identity"]["seed"] for r in rows], "rsum": rsum, "rsum_mean": float(np.mean(rsum)),
            "auc": auc, "auc_mean": float(np.mean(auc)) if auc else None}


def write_golden(path: Path, sweep: dict[str, Any], found: dict[str, dict[str, Any]]) -> None:
    write_text_atomic(Path(path), json.dumps({**sweep, "rsum_tolerance": RSUM_TOL, "auc_tolerance": AUC_TOL,
                                              "methods": found}, indent=1) + "\n")


def problems(found: dict[str, dict[str, Any]], golden: dict[str, Any]) -> list[str]:
    """What moved past the golden file's tolerances (empty: all within)."""
    out = []
    rsum_tol, auc_tol = golden.get("rsum_tolerance", RSUM_TOL), golden.get("auc_tolerance", AUC_TOL)
    for m, g in golden["methods"].items():
        f = found.get(m)
        if f is None or not f["rsum"]:
            out.append(f"{m}: no results")
            continue
        if f["seeds"] != g["seeds"]:
            out.append(f"{m}: seeds {f['seeds']} vs golden {g['seeds']}")
        if abs(f["rsum_mean"] - g["rsum_mean"]) > rsum_tol:
            out.append(f"{m}: mean rSum {f['rsum_mean']:.1f} vs golden {g['rsum_mean']:.1f}")
        if g["auc_mean"] is not None and (f["auc_mean"] is None or abs(f["auc_mean"] - g["auc_mean"]) > auc_tol):
            out.append(f"{m}: mean detection AUC {f['auc_mean']} vs golden {g['auc_mean']:.3f}")
    return out
