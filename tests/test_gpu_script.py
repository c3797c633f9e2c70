"""``benchmarks/gpu.py`` (issue 33 item 5), the one command for every GPU figure, in its reduced CPU
mode: it runs end to end (so it cannot rot while no GPU is lent) and its table holds each figure
beside its reference, with the host-sync counts and the recall's bytes."""

import importlib.util
import json
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py"


def test_the_gpu_figures_script_runs_in_its_quick_mode(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("ncbench_gpu_script", SCRIPT)
    gpu = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = gpu  # its dataclasses look their module up
    spec.loader.exec_module(gpu)
    out = tmp_path / "gpu.json"
    assert gpu.main(["--quick", "--device", "cpu", "--out", str(out)]) == 0
    table = capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["quick"] is True and data["env"]["threads"] >= 1
    figures = {f["what"].split(" (")[0].split(",")[0]: f for f in data["figures"]}
    for name in ("recall F30K 1K / 50", "GMM loss split", "partial-OT plan", "SGR test-time scoring",
                 "SAF test-time scoring", "training epoch"):
        assert name in figures, (name, sorted(figures))
    for name in ("SGR", "SAF"):  # the restructured scoring beside the official structure, with its costs
        scoring = figures[f"{name} test-time scoring"]
        assert "F30K 1K / 100 (10 × 50" in scoring["what"] and scoring["reference_ms"] > 0
        assert "official timed on 10 captions, scaled" in scoring["note"] and "MFLOP" in scoring["note"]
    assert all(f["ncbench_ms"] > 0 for f in data["figures"])
    recall = figures["recall F30K 1K / 50"]
    assert recall["syncs"] == 0 and recall["limit_ms"] > 0 and "reads 2.10× the matrix" in recall["note"]
    assert figures["GMM loss split"]["syncs"] <= 2 + 10 + 2  # the CPU schedule: a read per iteration
    assert "| figure | ncbench (ms) | reference |" in table and "official structure" in table
