"""Accuracy regression tracking: each built-in method's test rSum and detection AUC on the embedded
dataset at 60% noise, seeds 0–2, against ``benchmarks/accuracy_golden.json``.

Runs on the CPU with the session's shared sweep (the same runs the slow accuracy tests use, so it
costs nothing extra when they run). Tolerance: the mean over the three seeds may move by at most
``RSUM_TOL`` rSum and ``AUC_TOL`` AUC in either direction (an unexplained improvement deserves a
look as much as a loss). After a deliberate change, refresh the file with
``NCBENCH_UPDATE_GOLDEN=1 pytest tests/test_accuracy_golden.py -m slow`` and commit it.
"""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from ncbench.atomic import write_text_atomic

GOLDEN = Path(__file__).resolve().parents[1] / "benchmarks" / "accuracy_golden.json"
RSUM_TOL = 3.0
AUC_TOL = 0.01
METHODS = ["vanilla", "ncr", "bicro", "crcl", "decl", "rcl", "l2rm", "cream"]


def summarise(results: list[dict], method: str) -> dict:
    rows = sorted((r for r in results if r["identity"]["method"] == method), key=lambda r: r["identity"]["seed"])
    rsum = [r["test"]["full"]["rsum"] for r in rows]
    auc = [r["detection"]["auc"] for r in rows if r.get("detection")]
    return {"seeds": [r["identity"]["seed"] for r in rows], "rsum": rsum, "rsum_mean": float(np.mean(rsum)),
            "auc": auc, "auc_mean": float(np.mean(auc)) if auc else None}


@pytest.mark.slow
def test_method_accuracy_matches_the_golden_file(noisy_sweep):
    found = {m: summarise(noisy_sweep(m) if m != "vanilla" else noisy_sweep("ncr"), m) for m in METHODS}
    if os.environ.get("NCBENCH_UPDATE_GOLDEN"):
        write_text_atomic(GOLDEN, json.dumps({"noise": 0.6, "dataset": "synthetic", "backbone": "vse_light",
                                              "rsum_tolerance": RSUM_TOL, "auc_tolerance": AUC_TOL,
                                              "methods": found}, indent=1) + "\n")
        pytest.skip(f"golden file refreshed: {GOLDEN}")
    assert GOLDEN.is_file(), f"{GOLDEN} is missing; create it with NCBENCH_UPDATE_GOLDEN=1"
    golden = json.loads(GOLDEN.read_text())["methods"]
    problems = []
    for m in METHODS:
        g, f = golden[m], found[m]
        if abs(f["rsum_mean"] - g["rsum_mean"]) > RSUM_TOL:
            problems.append(f"{m}: mean rSum {f['rsum_mean']:.1f} vs golden {g['rsum_mean']:.1f}")
        if g["auc_mean"] is not None and abs(f["auc_mean"] - g["auc_mean"]) > AUC_TOL:
            problems.append(f"{m}: mean detection AUC {f['auc_mean']:.3f} vs golden {g['auc_mean']:.3f}")
    assert not problems, "; ".join(problems) + " (refresh deliberately with NCBENCH_UPDATE_GOLDEN=1)"
