"""The accuracy golden on the recurrent backbone: every registered method but the reference rows ×
seeds 0–2 at 60% noise on the embedded dataset with ``vse_light`` (``ncbench.accuracy.FULL_SWEEP``;
its Bi-GRU is ten times the cost of ``vse_bow``: about eleven minutes on two cores for the eight
built-ins), against ``benchmarks/accuracy_golden_vse_light.json``.

Selected only with ``pytest benchmarks --accuracy-full`` (CI tracks the same sweep on ``vse_bow``,
``tests/test_accuracy_golden.py``). A method without an entry fails with the command that records
one (``ncbench golden --method <name> --sweep full``); ``--accuracy-full --update-golden``
re-records the whole file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ncbench.accuracy import FULL_SWEEP, coverage_problems, golden_methods, problems, read_golden, summarise, write_golden

GOLDEN = Path(__file__).resolve().parent / FULL_SWEEP.file


@pytest.mark.accuracy_full
def test_vse_light_accuracy_matches_its_golden_file(tmp_path, request):
    from ncbench.cli.golden import train

    methods = golden_methods()
    loaded = train(FULL_SWEEP, methods, tmp_path / "results", tmp_path / "cache")
    found = {m: summarise(loaded, m) for m in methods}
    if request.config.getoption("--update-golden"):
        write_golden(GOLDEN, FULL_SWEEP, found)
        pytest.skip(f"golden file refreshed: {GOLDEN}")
    golden = read_golden(GOLDEN, FULL_SWEEP)
    found_problems = coverage_problems(golden, methods, FULL_SWEEP, GOLDEN) + problems(found, golden)
    assert not found_problems, "; ".join(found_problems)
