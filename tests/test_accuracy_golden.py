"""Accuracy regression tracking in CI: every registered method's test rSum and detection AUC on the
embedded dataset with the ``vse_bow`` backbone at 60% noise, seeds 0–2 (``ncbench.accuracy.CI_SWEEP``),
against ``benchmarks/accuracy_golden.json``.

The methods are the registry's (built-ins and plugins) minus the boards' reference rows: a method
added as ``methods/<name>.py`` (or an entry point) without an entry fails here, with the command
that records one (``ncbench golden --method <name>``); an entry of a method no longer registered
fails too. Runs with the session's shared sweep (the same runs the methods' "beats vanilla" tests
use). The recurrent ``vse_light`` sweep, ten times the cost, is the full benchmark's (``pytest
benchmarks --accuracy-full``, ``benchmarks/accuracy_golden_vse_light.json``). After a deliberate
change, re-record one method with ``ncbench golden --method <name> --replace``, or every entry at
once with ``NCBENCH_UPDATE_GOLDEN=1 pytest tests/test_accuracy_golden.py``, and commit the file.
"""

import os
from pathlib import Path

import pytest

from ncbench.accuracy import CI_SWEEP, coverage_problems, golden_methods, problems, read_golden, summarise, write_golden

GOLDEN = Path(__file__).resolve().parents[1] / "benchmarks" / CI_SWEEP.file


def test_every_registered_method_has_a_golden_entry():
    found = coverage_problems(read_golden(GOLDEN, CI_SWEEP), golden_methods(), CI_SWEEP, GOLDEN)
    assert not found, "\n".join(found)


@pytest.mark.slow
def test_method_accuracy_matches_the_golden_file(noisy_sweep):
    found = {m: summarise(noisy_sweep(m), m) for m in golden_methods()}
    if os.environ.get("NCBENCH_UPDATE_GOLDEN"):
        write_golden(GOLDEN, CI_SWEEP, found)
        pytest.skip(f"golden file refreshed: {GOLDEN}")
    found_problems = problems(found, read_golden(GOLDEN, CI_SWEEP))
    assert not found_problems, "; ".join(found_problems) + " (re-record deliberately with `ncbench golden --method " \
                                                           "<name> --replace`)"
