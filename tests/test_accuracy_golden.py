"""Accuracy regression tracking in CI: each built-in method's test rSum and detection AUC on the
embedded dataset with the ``vse_bow`` backbone at 60% noise, seeds 0–2, against
``benchmarks/accuracy_golden.json`` (``ncbench.accuracy``).

Runs with the session's shared sweep (the same runs the methods' "beats vanilla" tests use). The
recurrent ``vse_light`` sweep, ten times the cost, is the full benchmark's
(``pytest benchmarks --accuracy-full``, ``benchmarks/accuracy_golden_vse_light.json``). After a
deliberate change, refresh with ``NCBENCH_UPDATE_GOLDEN=1 pytest tests/test_accuracy_golden.py``
and commit the file.
"""

import json
import os
from pathlib import Path

import pytest

from ncbench.accuracy import METHODS, problems, summarise, write_golden

GOLDEN = Path(__file__).resolve().parents[1] / "benchmarks" / "accuracy_golden.json"


@pytest.mark.slow
def test_method_accuracy_matches_the_golden_file(noisy_sweep, sweep_backbone):
    found = {m: summarise(noisy_sweep(m) if m != "vanilla" else noisy_sweep("ncr"), m) for m in METHODS}
    if os.environ.get("NCBENCH_UPDATE_GOLDEN"):
        write_golden(GOLDEN, {"noise": 0.6, "dataset": "synthetic", "backbone": sweep_backbone}, found)
        pytest.skip(f"golden file refreshed: {GOLDEN}")
    assert GOLDEN.is_file(), f"{GOLDEN} is missing; create it with NCBENCH_UPDATE_GOLDEN=1"
    golden = json.loads(GOLDEN.read_text())
    assert golden["backbone"] == sweep_backbone and golden["dataset"] == "synthetic" and golden["noise"] == 0.6
    found_problems = problems(found, golden)
    assert not found_problems, "; ".join(found_problems) + " (refresh deliberately with NCBENCH_UPDATE_GOLDEN=1)"
