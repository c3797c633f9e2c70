"""The accuracy golden on the recurrent backbone: the eight built-in methods × seeds 0–2 at 60%
noise on the embedded dataset with ``vse_light`` (its Bi-GRU is ten times the cost of ``vse_bow``:
about eleven minutes on two cores), against ``benchmarks/accuracy_golden_vse_light.json``.

Selected only with ``pytest benchmarks --accuracy-full`` (CI tracks the same sweep on ``vse_bow``,
``tests/test_accuracy_golden.py``). ``--accuracy-full --update-golden`` re-records the file.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ncbench.accuracy import METHODS, problems, summarise, write_golden

GOLDEN = Path(__file__).resolve().parent / "accuracy_golden_vse_light.json"


@pytest.mark.accuracy_full
def test_vse_light_accuracy_matches_its_golden_file(tmp_path, request):
    from ncbench.cli import main
    from ncbench.results import load_results

    results = tmp_path / "results"
    argv = ["run", "--methods", ",".join(METHODS), "--backbones", "vse_light", "--noise", "0.6", "--seeds", "0,1,2",
            "--results", str(results), "--cache-dir", str(tmp_path / "cache"), "--no-progress", "--device", "cpu",
            "--workers", "2", "--threads", "1"]
    assert main(argv) == 0
    loaded = load_results(results).results
    found = {m: summarise(loaded, m) for m in METHODS}
    if request.config.getoption("--update-golden"):
        write_golden(GOLDEN, {"noise": 0.6, "dataset": "synthetic", "backbone": "vse_light"}, found)
        pytest.skip(f"golden file refreshed: {GOLDEN}")
    golden = json.loads(GOLDEN.read_text())
    assert golden["backbone"] == "vse_light"
    found_problems = problems(found, golden)
    assert not found_problems, "; ".join(found_problems)
