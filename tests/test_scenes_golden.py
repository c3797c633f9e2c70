"""The papers' backbone in CI (issue 34 item 3): vanilla, NCR and CRCL on SGR over the region features
of ``synthetic-scenes-ci``, against ``benchmarks/accuracy_golden_scenes.json``
(``ncbench.accuracy.SCENES_SWEEP``: its noise ratio, seeds and tolerance are documented there).

The sweep trains through ``ncbench run`` as ``ncbench golden --sweep scenes`` does (two local
workers of one thread each), with the options of ``recipes/synthetic-scenes-ci.toml``. A change that
moves a method's test rSum or detection AUC past the file's tolerances fails; so does a broken SGR:
with the word→region attention made uniform (every word attends to the mean of the regions, so no
word can find its object and the colours of a scene can no longer be bound to it) NCR's rSum falls
far below its entry (``test_uniform_attention_fails_the_golden``: a demonstration, one more run,
``NCBENCH_SCENES_DEMO=1`` runs it).

After a deliberate change, re-record with ``NCBENCH_UPDATE_GOLDEN=1 pytest tests/test_scenes_golden.py``
(or ``ncbench golden --sweep scenes --method <name> --replace``) and commit the file.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from ncbench.accuracy import SCENES_SWEEP, coverage_problems, problems, read_golden, summarise, write_golden
from ncbench.registry import DATASETS

GOLDEN = Path(__file__).resolve().parents[1] / "benchmarks" / SCENES_SWEEP.file

needs_card = pytest.mark.skipif(SCENES_SWEEP.dataset not in DATASETS.names(),
                                reason=f"the {SCENES_SWEEP.dataset} card is not registered (ncbench/data/cards.py)")


def test_the_scenes_golden_covers_the_sweeps_methods_and_only_them():
    golden = read_golden(GOLDEN, SCENES_SWEEP)
    assert coverage_problems(golden, SCENES_SWEEP.covered(), SCENES_SWEEP, GOLDEN) == []
    assert sorted(golden["methods"]) == ["crcl", "ncr", "vanilla"]
    assert (golden["backbone"], golden["dataset"]) == ("sgr", "synthetic-scenes-ci")


def test_a_sweep_that_names_its_methods_records_only_them_with_its_own_tolerances(tmp_path):
    from ncbench.accuracy import CI_SWEEP, check_recordable, golden_methods, new_golden
    from ncbench.errors import ConfigError

    assert CI_SWEEP.covered() == golden_methods()  # the other sweeps cover every registered method, as before
    path = tmp_path / "golden.json"
    with pytest.raises(ConfigError, match="the 'scenes' sweep tracks ncr, crcl, vanilla only, not bicro"):
        check_recordable(path, SCENES_SWEEP, ["vanilla", "bicro"], replace=False)
    assert check_recordable(path, SCENES_SWEEP, ["vanilla"], replace=False)["methods"] == {}
    fresh = new_golden(SCENES_SWEEP, {})
    assert (fresh["rsum_tolerance"], fresh["auc_tolerance"]) == (SCENES_SWEEP.rsum_tolerance, SCENES_SWEEP.auc_tolerance)
    assert (new_golden(CI_SWEEP, {})["rsum_tolerance"], new_golden(CI_SWEEP, {})["auc_tolerance"]) == (3.0, 0.01)


def test_an_entry_with_its_own_tolerance_is_held_to_it_and_the_others_to_the_files():
    from ncbench.accuracy import GoldenSweep, new_golden

    sweep = GoldenSweep("t", "sgr", "t.json", methods=("a", "b"), method_tolerances={"a": (50.0, 0.05)})

    def summary(rsum: float, auc: float | None = None) -> dict:
        return {"seeds": [0], "rsum": [rsum], "rsum_mean": rsum, "auc": [] if auc is None else [auc], "auc_mean": auc}

    golden = new_golden(sweep, {"a": summary(400.0, 0.95), "b": summary(400.0)})
    assert golden["methods"]["a"]["rsum_tolerance"] == 50.0 and "rsum_tolerance" not in golden["methods"]["b"]
    assert problems({"a": summary(440.0, 0.91), "b": summary(402.5)}, golden) == []  # |40| ≤ 50, |0.04| ≤ 0.05; |2.5| ≤ 3
    assert problems({"a": summary(349.0, 0.95), "b": summary(396.0)}, golden) == [
        "a: mean rSum 349.0 vs golden 400.0", "b: mean rSum 396.0 vs golden 400.0"]
    assert problems({"a": summary(400.0, 0.89)}, golden) == ["a: mean detection AUC 0.89 vs golden 0.950"]


@pytest.fixture(scope="module")
def scenes_results(tmp_path_factory, cache_dir):
    """The sweep's results, trained once for this module (two local workers, as in ``ncbench golden``)."""
    from ncbench.cli.golden import train

    threads = torch.get_num_threads()
    try:
        return train(SCENES_SWEEP, SCENES_SWEEP.covered(), tmp_path_factory.mktemp("scenes-sweep"), cache_dir)
    finally:
        torch.set_num_threads(threads)


@needs_card
@pytest.mark.slow
def test_sgr_methods_match_the_scenes_golden(scenes_results):
    found = {m: summarise(scenes_results, m) for m in SCENES_SWEEP.covered()}
    if os.environ.get("NCBENCH_UPDATE_GOLDEN"):
        write_golden(GOLDEN, SCENES_SWEEP, found)
        pytest.skip(f"golden file refreshed: {GOLDEN}")
    found_problems = problems(found, read_golden(GOLDEN, SCENES_SWEEP))
    assert not found_problems, "; ".join(found_problems) + " (re-record deliberately with `ncbench golden --sweep " \
                                                           "scenes --method <name> --replace`)"


def _uniform_attention(self, attn, mask, source_mask=None):
    """What a broken SCAN attention would give: every region weighted alike, for every word."""
    return torch.full_like(attn, 1.0 / attn.shape[-2])


@needs_card
@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("NCBENCH_SCENES_DEMO"),
                    reason="a demonstration (one more NCR run, ~40 CPU-seconds): NCBENCH_SCENES_DEMO=1 runs it")
def test_uniform_attention_fails_the_golden(tmp_path, cache_dir, monkeypatch):
    from ncbench.backbones.sgraf import SGRAF
    from ncbench.cli.golden import train

    monkeypatch.setattr(SGRAF, "_attend", _uniform_attention)
    threads = torch.get_num_threads()
    try:  # one worker: this process, where the attention is broken
        results = train(SCENES_SWEEP, ["ncr"], tmp_path, cache_dir, workers=1)
    finally:
        torch.set_num_threads(threads)
    found = summarise(results, "ncr")
    golden = read_golden(GOLDEN, SCENES_SWEEP)
    entry = golden["methods"]["ncr"]
    assert found["rsum_mean"] < entry["rsum_mean"] - entry["rsum_tolerance"], (found, entry)
    assert f"ncr: mean rSum {found['rsum_mean']:.1f} vs golden {entry['rsum_mean']:.1f}" in problems({"ncr": found}, golden)
