"""Training curves (``report.curves``), their plots on the boards, and the per-run page
(``ncbench report``), checked by hand-computed statistics, escaping and a headless browser."""

from __future__ import annotations

import json
import math
import subprocess

import numpy as np
import pytest

from ncbench.report.curves import curve_frame, curve_stats, training_loss


def with_history(record: dict, losses, val, auc=None, coteaching=False) -> dict:
    rows = []
    for e, (loss, v) in enumerate(zip(losses, val)):
        row = {"epoch": e, "val_rsum": v, "train_s": 1.0, "val_s": 0.1}
        if coteaching:
            row.update(loss_A=loss - 1.0, loss_B=loss + 1.0)
        else:
            row["loss"] = loss
        if auc is not None and auc[e] is not None:
            row["detection"] = {"auc": auc[e], "clean_precision": 0.8, "clean_recall": 0.5 + 0.1 * e}
        rows.append(row)
    return {**record, "history": rows}


def test_training_loss_of_one_and_two_networks():
    assert training_loss({"loss": 2.5}) == 2.5
    assert training_loss({"loss_A": 1.0, "loss_B": 3.0}) == 2.0
    assert math.isnan(training_loss({"epoch": 0}))


def test_curve_statistics_are_the_mean_and_sample_std_over_seeds(result_dict):
    runs = [with_history(result_dict(method="ncr", seed=s, noise=0.2), [5.0 + s, 4.0 + 2 * s], [100.0 + 10 * s, 150.0],
                         auc=[None, 0.8 + 0.1 * s], coteaching=True) for s in range(3)]
    runs.append(with_history(result_dict(method="vanilla", seed=0, noise=0.2), [9.0], [50.0]))
    stats = curve_stats(curve_frame(runs))
    ncr = stats[stats.method == "ncr"].set_index("epoch")
    assert list(ncr.n) == [3, 3]
    assert ncr.loc[0, "loss_mean"] == pytest.approx(6.0) and ncr.loc[0, "loss_std"] == pytest.approx(1.0)
    assert ncr.loc[1, "loss_mean"] == pytest.approx(6.0) and ncr.loc[1, "loss_std"] == pytest.approx(2.0)
    assert ncr.loc[0, "val_rsum_mean"] == pytest.approx(110.0) and ncr.loc[0, "val_rsum_std"] == pytest.approx(10.0)
    assert math.isnan(ncr.loc[0, "auc_mean"]) and ncr.loc[1, "auc_mean"] == pytest.approx(0.9)
    assert ncr.loc[1, "clean_recall_mean"] == pytest.approx(0.6)
    vanilla = stats[stats.method == "vanilla"]
    assert len(vanilla) == 1 and int(vanilla.n.iloc[0]) == 1 and math.isnan(vanilla.loss_std.iloc[0])


def test_leaderboard_pages_carry_the_training_curves(tmp_path, result_dict, chromium):
    from ncbench.report.build import LeaderboardRequest, build_leaderboard
    from ncbench.results import identity_path

    root = tmp_path / "r"
    for s in range(2):
        for method in ("ncr", "vanilla"):
            rec = with_history(result_dict(method=method, seed=s, noise=0.2), [3.0, 2.0, 1.5], [80.0, 120.0, 130.0 + s],
                               auc=[0.7, 0.8, 0.9] if method == "ncr" else None)
            path = identity_path(root, rec["identity"])
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(rec))
    out = build_leaderboard(LeaderboardRequest([root], tmp_path / "lb"))
    curves = [p for p in out.written if p.name.endswith("-curves.png")]
    assert [p.name for p in curves] == ["p1-synthetic-0.2-curves.png"]
    assert curves[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = tmp_path / "lb" / "leaderboard-p1-synthetic.html"
    caption = "Synthetic, 20% caption-level noise: training curves (mean ± std over seeds per epoch)"
    assert caption in page.read_text()
    if chromium is not None:  # the page with its embedded figure, as a browser builds it
        dom = _dom(chromium, page, tmp_path)
        assert f'<img alt="{caption}" src="data:image/png;base64,' in dom and "sort-ready" in dom


def _hostile_run(tmp_path, result_dict):
    """A result whose strings try to break out of the page, with history, a split histogram and a sibling seed."""
    from ncbench.results import identity_path

    paths = []
    for s in (0, 1):
        rec = with_history(result_dict(method="ncr", seed=s, noise=0.2), [3.0, 2.0], [90.0, 140.0 + s],
                           auc=[0.75, 0.85], coteaching=True)
        edges = np.linspace(0, 1, 5)
        rec["detection"] = {"auc": 0.85, "split_histogram": {
            "kind": "gmm", "edges": edges.tolist(), "clean_counts": [5, 3, 1, 0], "noisy_counts": [0, 1, 3, 5],
            "grid": [0.1, 0.5, 0.9], "component_pdf": [[1.0, 0.5, 0.1], [0.1, 0.5, 1.0]], "clean_component": 0}}
        rec["env"] = {"hardware": {"cpu": "<script>alert(1)</script>"}, "git": {"commit": "abc", "dirty": False}}
        rec["error"] = None
        rec["timings"] = {"train_s": 12.5, "total_s": 14.0, "gpu_hours": 0.0}
        rec["config"]["note"] = "</pre><img src=x onerror=alert(2)>"
        path = identity_path(tmp_path / "r", rec["identity"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(rec))
        paths.append(path)
    return paths


def test_run_page_holds_every_part_and_escapes_the_result(tmp_path, result_dict, capsys):
    from ncbench.cli import main

    first, _ = _hostile_run(tmp_path, result_dict)
    assert main(["report", str(first)]) == 0
    page = first.with_suffix(".html").read_text()
    assert str(first) in capsys.readouterr().out
    for part in ("<h2>Test</h2>", "<h2>Training</h2>", "Noise detection at the selected epoch", "<h2>Per epoch</h2>",
                 "<h2>Identity</h2>", "<h2>Timing</h2>", "<h2>Config and recipe</h2>", "<h2>Environment</h2>",
                 "gpu_hours", "Selected epoch <b>3</b>"):
        assert part in page, part
    assert "mean ± std of 2 seed(s) of the same config found beside it" in page  # the sibling seed is found
    assert page.count("data:image/png;base64,") == 2  # curves and the split histogram, embedded
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img src=x onerror" not in page
    assert main(["report", str(tmp_path / "r"), "--out", str(tmp_path / "pages")]) == 0
    assert sorted(p.name for p in (tmp_path / "pages").iterdir()) == [
        "p1-synthetic-noise-0.2-ncr-vse_light-seed0.html", "p1-synthetic-noise-0.2-ncr-vse_light-seed1.html"]
    assert main(["report", str(tmp_path / "missing.json")]) == 2
    assert "no such result file or folder" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert main(["report", str(bad)]) == 2
    assert "not valid JSON" in capsys.readouterr().err


def _dom(browser: str, page, tmp_path) -> str:
    """The DOM after the page's scripts ran, from headless Chromium."""
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
           "--virtual-time-budget=3000", "--dump-dom", page.as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False).stdout


def test_run_page_in_headless_chromium(tmp_path, result_dict, chromium):
    if chromium is None:
        pytest.skip("no Chromium found (apt-get install chromium); the README says how to run this test")
    from ncbench.report.run_page import render_run_page
    from ncbench.results import read_result

    first, _ = _hostile_run(tmp_path, result_dict)
    result = read_result(first)
    result["_path"] = str(first)
    page = tmp_path / "run.html"
    page.write_text(render_run_page(result))
    dom = _dom(chromium, page, tmp_path)
    assert "<h1>ncr (vse_light) on synthetic, 20% caption-level noise, seed 0</h1>" in dom
    assert dom.count("<img ") == 2 and "<script>alert(1)" not in dom and "&lt;script&gt;alert(1)" in dom
    assert "onerror=alert(2)" not in dom.replace("&lt;img src=x onerror=alert(2)&gt;", "")
