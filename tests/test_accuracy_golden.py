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


def test_the_sweeps_tests_share_one_xdist_worker(request, sweep_root):
    """Under ``tox`` (``-n 2 --dist loadgroup``) the tests that read the shared sweep carry its group in
    their id, which is what puts them on one worker; without it each worker trained the whole sweep."""
    if getattr(request.config.option, "loadgroup", False):
        assert request.node.nodeid.endswith("@sweep"), request.node.nodeid


@pytest.mark.slow
def test_method_accuracy_matches_the_golden_file(noisy_sweep):
    found = {m: summarise(noisy_sweep(m), m) for m in golden_methods()}
    if os.environ.get("NCBENCH_UPDATE_GOLDEN"):
        write_golden(GOLDEN, CI_SWEEP, found)
        pytest.skip(f"golden file refreshed: {GOLDEN}")
    found_problems = problems(found, read_golden(GOLDEN, CI_SWEEP))
    assert not found_problems, "; ".join(found_problems) + " (re-record deliberately with `ncbench golden --method " \
                                                           "<name> --replace`)"


# -- ncbench golden ------------------------------------------------------------------------------------
@pytest.fixture
def toy_method():
    """A registered method the golden file does not know: vanilla trained for one epoch."""
    import torch

    from ncbench.registry import METHODS

    class Toy(METHODS.get("vanilla")):
        """A toy: vanilla for one epoch."""

        dataset_defaults = {"synthetic": {"epochs": 1, "lr": 2e-3}}

    METHODS.register("goldentoy")(Toy)
    threads = torch.get_num_threads()
    yield "goldentoy"
    torch.set_num_threads(threads)  # the command's run sets one thread for this process
    METHODS.unregister("goldentoy")


def test_golden_records_a_new_method_from_its_sweep_and_keeps_the_other_entries(tmp_path, cache_dir, capsys,
                                                                                toy_method):
    import json

    from ncbench.cli import main

    path = tmp_path / "golden.json"
    path.write_bytes(GOLDEN.read_bytes())
    before = json.loads(path.read_text())
    argv = ["golden", "--method", toy_method, "--file", str(path), "--results", str(tmp_path / "runs"),
            "--cache-dir", str(cache_dir), "--workers", "1"]
    found = coverage_problems(read_golden(path, CI_SWEEP), golden_methods(), CI_SWEEP, path)
    assert found == [f"goldentoy: no entry in {path}; train its sweep and record one with "
                     "`ncbench golden --method goldentoy` (then commit the file)"]
    assert main(argv) == 0
    after = json.loads(path.read_text())
    entry = after["methods"].pop(toy_method)
    assert after == before  # every other entry, the sweep and the tolerances as they were
    # the entry is the sweep's three runs, read here from their result files
    runs = sorted((json.loads(p.read_text()) for p in (tmp_path / "runs").rglob("seed-*.json")),
                  key=lambda r: r["identity"]["seed"])
    assert [(r["identity"]["method"], r["identity"]["backbone"], r["identity"]["dataset"], r["identity"]["noise_ratio"],
             r["identity"]["seed"]) for r in runs] == [(toy_method, "vse_bow", "synthetic", 0.6, s) for s in (0, 1, 2)]
    rsum = [r["test"]["full"]["rsum"] for r in runs]
    assert entry["seeds"] == [0, 1, 2] and entry["rsum"] == rsum
    assert entry["rsum_mean"] == pytest.approx((rsum[0] + rsum[1] + rsum[2]) / 3)
    assert entry["auc"] == [] and entry["auc_mean"] is None  # vanilla has no clean-probability estimate
    assert "recorded goldentoy in" in capsys.readouterr().out
    assert coverage_problems(read_golden(path, CI_SWEEP), golden_methods(), CI_SWEEP, path) == []

    recorded = path.read_bytes()
    assert main(argv) == 2  # refused before anything trains
    err = capsys.readouterr().err
    assert err == f"ncbench: error: {path} already holds an entry for goldentoy; pass --replace to overwrite it\n"
    assert path.read_bytes() == recorded
    assert main([*argv, "--replace"]) == 0  # the runs in --results are reused
    assert json.loads(path.read_text())["methods"][toy_method] == entry


def test_golden_refuses_what_it_cannot_record_and_drops_only_unregistered_entries(tmp_path, capsys, toy_method):
    import json

    from ncbench.cli import main
    from ncbench.registry import METHODS

    path = tmp_path / "golden.json"
    golden = json.loads(GOLDEN.read_text())
    golden["methods"][toy_method] = golden["methods"]["vanilla"]
    path.write_text(json.dumps(golden))
    for argv, message in (
        (["--method", "probe"], "probe is a reference row of the boards, not tracked by the accuracy golden"),
        (["--method", "vanila"], "unknown method 'vanila'; did you mean 'vanilla'"),
        (["--method", "ncr", "--sweep", "full"], "not the 'full' sweep"),
        (["--drop", toy_method], "goldentoy is registered, so its entry is needed; re-record it with "
                                 "`ncbench golden --method goldentoy --replace` instead"),
        (["--drop", "nosuch"], f"{path} has no entry for nosuch"),
    ):
        assert main(["golden", "--file", str(path), *argv]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("ncbench: error: ") and err.count("\n") == 1 and message in err, (argv, err)
    assert json.loads(path.read_text()) == golden

    METHODS.unregister(toy_method)  # its file was removed: the entry is stale, and says how to drop it
    assert coverage_problems(read_golden(path, CI_SWEEP), golden_methods(), CI_SWEEP, path) == [
        f"goldentoy: {path} has an entry for a method that is not registered; remove it with "
        "`ncbench golden --drop goldentoy`"]
    assert main(["golden", "--file", str(path), "--drop", toy_method]) == 0
    del golden["methods"][toy_method]
    assert json.loads(path.read_text()) == golden
