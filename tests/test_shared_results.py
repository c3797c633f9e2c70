"""A shared results folder and submissions from strangers (issue 28): no file name from a result
leaves the output folder, no NaN reaches a board, no FIFO or device hangs a command, a full disk
never moves a finished result out of its place, and one bad file never takes a command down.

Cases are those of the 2026-12 reliability report (S3, S4, S5, F3, F7, F17, F18, D1-D9, K1)."""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import subprocess
import tempfile
import sys
from importlib import resources
from pathlib import Path

import pytest

from ncbench.cli import main
from ncbench.errors import ResultError

RUN_DIR = Path("protocol-1") / "synthetic-small" / "noise-0.2"


# -- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real_runs(tmp_path_factory, cache_dir) -> Path:
    """Real results: vanilla with the floor (probe) and ceiling (clean_oracle) rows, seeds 0-2, one
    epoch on synthetic-small (about ten seconds)."""
    root = tmp_path_factory.mktemp("real") / "r"
    assert main(["run", "--methods", "vanilla", "--references", "--dataset", "synthetic-small", "--noise", "0.2",
                 "--seeds", "0,1,2", "--method-opt", "epochs=1", "--threads", "1", "--no-progress",
                 "--results", str(root), "--cache-dir", str(cache_dir)]) == 0
    return root


@pytest.fixture
def results(real_runs, tmp_path) -> Path:
    """A fresh copy of ``real_runs`` to break."""
    root = tmp_path / "shared" / "r"
    shutil.copytree(real_runs, root)
    return root


def edit(path: Path, change) -> Path:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))  # json.dumps writes NaN for float("nan"), as a hand-edited file may hold
    return path


def files_outside(tmp_path: Path, inside: list[Path]) -> list[Path]:
    """Every file under ``tmp_path`` that is not under one of ``inside``."""
    return sorted(p for p in tmp_path.rglob("*") if p.is_file() and not any(p.is_relative_to(d) for d in inside))


def cli(argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    """``ncbench argv`` in a child process with a time limit (and a memory limit: a regression that
    reads /dev/zero must not take the machine's memory with it)."""
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_DATA, (2 * 2**30, 2 * 2**30))

    # run outside the checkout: ``python -m`` puts the working folder first on sys.path, and tox runs
    # the tests from the repository root, whose source tree has no ``ncbench.reference`` (the wheel maps it)
    return subprocess.run([sys.executable, "-m", "ncbench", *argv], capture_output=True, text=True, timeout=timeout,
                          preexec_fn=limit, cwd=tempfile.gettempdir())


# -- S3: names that become paths ---------------------------------------------------------------
PATH_NAMES = {("vanilla", 1): ("dataset", "x/../../ESC"), ("clean_oracle", 2): ("method", "../../ESC"),
              ("probe", 0): ("protocol_version", "1/../../ESC"), ("vanilla", 2): ("backbone", "..")}


def test_a_result_naming_a_path_writes_nothing_outside_out(results, tmp_path, capsys):
    """S3/D8: page and plot names came from result fields; ``../`` in one wrote boards and run pages
    outside --out. Now each such file is skipped with a warning naming it (refused when named)."""
    bad = {}
    for (method, seed), (field, value) in PATH_NAMES.items():
        backbone = "bow-ridge" if method == "probe" else "vse_light"
        bad[field] = edit(results / RUN_DIR / method / backbone / f"seed-{seed}.json",
                          lambda d: (d["identity"].update({field: value}), d["config"].update({field: value})))
    before = files_outside(tmp_path, [])
    deep = tmp_path / "a" / "b" / "c"
    assert main(["leaderboard", "--results", str(results), "--out", str(deep / "lb")]) == 0
    err = capsys.readouterr().err
    for field, path in bad.items():
        assert f"warning: skipped unreadable result: {path}: schema: identity/{field}: " in err
    assert main(["report", str(results), "--out", str(deep / "pages")]) == 0
    err = capsys.readouterr().err
    assert all(f"warning: skipped unreadable result: {path}: " in err for path in bad.values())
    assert len(list((deep / "pages").glob("*.html"))) == 5  # the other five runs
    assert main(["report", str(bad["method"]), "--out", str(deep / "one")]) == 2
    assert f"ncbench: error: {bad['method']}: schema: identity/method" in capsys.readouterr().err
    assert not (deep / "one").exists()
    assert files_outside(tmp_path, [deep / "lb", deep / "pages"]) == before


def test_every_writer_stays_inside_its_folder(tmp_path):
    """The one check every board and page writer goes through, and the slug of generated names."""
    from ncbench.report import html
    from ncbench.report.layout import Board
    from ncbench.report.paths import output_path, slug

    out = tmp_path / "out"
    assert output_path(out, "plots/a.png") == out / "plots" / "a.png"
    for name in ("../x.html", "plots/../../x.png", "/etc/x.html", "."):
        with pytest.raises(ResultError, match="outside the output folder"):
            output_path(out, name)
    (tmp_path / "elsewhere").mkdir()
    out.mkdir()
    (out / "plots").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ResultError, match="outside the output folder"):
        output_path(out, "plots/a.png")
    assert slug("p1/../../x y") == "p1_.._.._x_y" and slug("../etc") == "_etc" and slug("ncr@e3+1") == "ncr@e3+1"
    long = slug("x" * 300)
    assert len(long) == 120 and long != slug("x" * 299)
    board = Board(key="../../ESC", title="t", protocol="1/..", benchmarks=[], groups=[], sources={})
    assert "/" not in html.page_name(board)


# -- S4: NaN and absurd numbers ----------------------------------------------------------------
def _three(write_result, root: Path, method: str = "mymethod", **fields) -> list[Path]:
    return [write_result(root, method=method, noise=0.2, seed=s, r1=r1, **fields)
            for s, r1 in zip(range(3), (40.0, 50.0, 60.0))]


def _nan_metrics(d: dict) -> None:
    d["test"]["full"] = {k: math.nan for k in d["test"]["full"]}


def test_a_nan_seed_is_refused_by_submit(write_result, tmp_path, capsys):
    """S4/F7b: NaN metrics passed every check (json.loads accepts NaN, the schema's bounds and the
    rSum check are false for NaN)."""
    worst, *_ = _three(write_result, tmp_path / "sub")
    edit(worst, _nan_metrics)
    assert main(["submit", "--check", str(tmp_path / "sub"), "--dest", str(tmp_path / "dest")]) == 2
    err = capsys.readouterr().err
    assert f"refused: {worst}" in err and "NaN is not a number a result may hold" in err


def test_a_nan_seed_is_not_averaged_by_the_board(write_result, tmp_path, capsys):
    """S4/D3: the board averaged the two finite seeds and showed n = 3. Now the NaN file is skipped
    with a warning and the row is the mean of the other two, n = 2: rSum = 6·R@1 + 70 with R@1 = 50
    and 60 → 370 and 430, mean 400 ± 42.4 (sample std 60/√2)."""
    worst, *_ = _three(write_result, tmp_path / "r")
    edit(worst, _nan_metrics)
    assert main(["leaderboard", "--results", str(tmp_path / "r"), "--out", str(tmp_path / "lb"), "--no-plots"]) == 0
    captured = capsys.readouterr()
    assert f"warning: skipped unreadable result: {worst}: NaN is not a number" in captured.err
    row = next(line for line in captured.out.splitlines() if "| mymethod" in line)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert "400.0 ± 42.4" in cells and cells[cells.index("best_val_rsum") + 1] == "2"


def test_aggregate_never_shows_more_seeds_than_it_averages(result_dict):
    """However a NaN gets into a frame, ``aggregate`` refuses it rather than averaging two of three."""
    from ncbench.report.aggregate import aggregate, results_frame

    runs = [result_dict(method="m", seed=s, r1=40.0 + 10 * s) for s in range(3)]
    for r in runs:
        r["_path"] = f"seed-{r['identity']['seed']}.json"
    runs[0]["test"]["full"]["rsum"] = math.nan
    with pytest.raises(ResultError, match=r"lack a value .* seed-0\.json"):
        aggregate(results_frame(runs))


def test_an_undefined_agreement_value_is_counted_as_missing(result_dict):
    """Where a value may be undefined (an AUC with one class), the cell's n is its own count and the
    text says so when it is fewer than the row's seeds."""
    from ncbench.report.aggregate import AGREEMENT_METRICS, aggregate, agreement_frame

    runs = []
    for s, auc in enumerate((0.6, 0.8, None)):
        r = result_dict(method="m", seed=s)
        m = {"n": 10, "n_describes": 5, "n_not": 5, "auc": auc, "spearman": 0.5}
        r["human_agreement"] = {"estimate": "x", "expert": {"all": m, "heldout": m}}
        runs.append(r)
    row = aggregate(agreement_frame(runs), AGREEMENT_METRICS, missing_ok=True).iloc[0]
    assert row.n == 3 and row.auc_n == 2 and row.spearman_n == 3
    assert row.auc_mean == pytest.approx(0.7)
    from ncbench.report.layout import Cell

    assert Cell(0.7, 0.1414, n=2, seeds=3, digits=3).text() == "0.700 ± 0.141 (n = 2)"


@pytest.mark.parametrize("text,reason", [
    ('{"a": NaN}', "NaN is not a number"), ('{"a": -Infinity}', "-Infinity is not a number"),
    ('{"a": 1e400}', "1e400 is too large for a float"),
], ids=["nan", "inf", "overflow"])
def test_non_finite_numbers_are_refused_when_parsed(tmp_path, text, reason):
    from ncbench.results import read_result

    path = tmp_path / "seed-0.json"
    path.write_text(text)
    with pytest.raises(ResultError, match=reason):
        read_result(path)


@pytest.mark.parametrize("change,reason", [
    (lambda d: d["test"]["full"].update(i2t_r1=1e308), "is greater than the maximum of 100"),
    (lambda d: d["ranks"]["i2t"].__setitem__(0, 10**30), "every rank must be a whole number from 0 to 499"),
    (lambda d: d["ranks"]["t2i"].__setitem__(3, -1), "every rank must be a whole number from 0 to 99"),
    (lambda d: d["ranks"].update(i2t=[], t2i=[5]), "0 image and 1 caption queries"),
    (lambda d: d["timings"].update(gpu_hours=1e300), "is greater than the maximum of 1000000"),
], ids=["recall-1e308", "rank-1e30", "rank-negative", "ranks-length", "gpu-hours"])
def test_absurd_values_are_refused(real_runs, tmp_path, change, reason):
    """D4: 1e308 metrics and 10³⁰ ranks were rendered as 300-digit numbers; F17: ranks of the wrong
    length were accepted. The test set of synthetic-small has 100 images and 500 captions."""
    from ncbench.results import read_result

    path = tmp_path / "seed-0.json"
    shutil.copy(real_runs / RUN_DIR / "vanilla" / "vse_light" / "seed-0.json", path)
    read_result(path)
    edit(path, change)
    with pytest.raises(ResultError, match=reason):
        read_result(path)


def test_ranks_of_the_wrong_length_are_refused_by_submit(write_result, tmp_path, capsys):
    """F17: ``ranks = {"i2t": [], "t2i": [5]}`` was accepted (compare refused it later)."""
    first, *_ = _three(write_result, tmp_path / "sub")
    edit(first, lambda d: d.update(ranks={"i2t": [], "t2i": [5]}))
    assert main(["submit", "--check", str(tmp_path / "sub")]) == 2
    err = capsys.readouterr().err
    assert f"refused: {first}" in err and "ranks: 0 image and 1 caption queries" in err


# -- S5: FIFOs and devices ---------------------------------------------------------------------
def _hostile_files(folder: Path) -> tuple[Path, Path]:
    link = folder / "seed-5.json"
    link.symlink_to("/dev/zero")
    fifo = folder / "seed-6.json"
    os.mkfifo(fifo)
    return link, fifo


def test_a_fifo_or_device_in_a_submission_is_refused_quickly(write_result, tmp_path):
    """S5/F9, F10: a link to /dev/zero read until MemoryError, a FIFO hung ``submit`` forever."""
    files = _three(write_result, tmp_path / "sub", committed=True)
    link, fifo = _hostile_files(files[0].parent)
    done = cli(["submit", "--check", str(tmp_path / "sub"), "--dest", str(tmp_path / "dest")], timeout=20)
    assert done.returncode == 2, done.stderr
    assert f"refused: {link}: a symbolic link" in done.stderr
    assert f"refused: {fifo}: not a regular file" in done.stderr
    assert "3 accepted, 2 refused" in done.stdout


def test_a_fifo_or_device_in_a_results_folder_is_skipped(write_result, tmp_path):
    """A FIFO in ./results would hang the leaderboard; a link to /dev/zero would fill the memory."""
    files = _three(write_result, tmp_path / "r")
    link, fifo = _hostile_files(files[0].parent)
    done = cli(["leaderboard", "--results", str(tmp_path / "r"), "--out", str(tmp_path / "lb"), "--no-plots"],
               timeout=20)
    assert done.returncode == 0, done.stderr
    assert f"warning: skipped unreadable result: {link}: not a regular file" in done.stderr
    assert f"warning: skipped unreadable result: {fifo}: not a regular file" in done.stderr
    assert "| mymethod" in done.stdout


# -- F3: write first, then move ----------------------------------------------------------------
def test_a_full_disk_leaves_the_finished_result_in_its_place(real_runs, tmp_path, monkeypatch):
    """F3/C10b: the stale result was moved to superseded/ before the new one was written; with the
    disk full it left its place. Now nothing moves until the new file is complete."""
    import ncbench.results as results

    root = tmp_path / "r"
    path = root / RUN_DIR / "vanilla" / "vse_light" / "seed-0.json"
    path.parent.mkdir(parents=True)
    shutil.copy(real_runs / RUN_DIR / "vanilla" / "vse_light" / "seed-0.json", path)
    old = path.read_bytes()
    new = {**json.loads(old), "config_hash": "f" * 64}

    def full(target, text):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))

    monkeypatch.setattr(results, "write_text_atomic", full)
    with pytest.raises(ResultError, match=f"{path}: the result could not be written \\(No space left on device\\); "
                                          "the previous result stays in place"):
        results.store_result(root, path, new, "stale", print, "run")
    assert path.read_bytes() == old and not (root / "superseded").exists()
    assert sorted(p.name for p in path.parent.iterdir()) == ["seed-0.json"]
    monkeypatch.undo()
    assert results.store_result(root, path, new, "stale", print, "run")
    assert json.loads(path.read_text())["config_hash"] == "f" * 64
    (aside,) = (root / "superseded").rglob("*.json")
    assert aside.read_bytes() == old and sorted(p.name for p in path.parent.iterdir()) == ["seed-0.json"]


# -- F7: trailing newlines ---------------------------------------------------------------------
def test_a_trailing_newline_is_not_a_name(write_result, tmp_path, capsys):
    """F7: ``$`` with ``match``/``search`` accepted ``ok\\n`` as a tag, ``abc\\n`` as a method file name
    and ``probe\\n`` as a submitted method."""
    from ncbench.config import check_tag
    from ncbench.errors import ConfigError

    with pytest.raises(ConfigError, match="--tag"):
        check_tag("ok\n")
    assert main(["status", "--methods", "vanilla", "--dataset", "synthetic-small", "--noise", "0.2", "--tag", "ok\n",
                 "--results", str(tmp_path)]) == 2
    assert "ncbench: error: --tag 'ok\\n'" in capsys.readouterr().err
    assert main(["new-method", "abc\n", "--dir", str(tmp_path / "m")]) == 2
    assert "must be 2–40 lower-case" in capsys.readouterr().err and not (tmp_path / "m").exists()
    files = _three(write_result, tmp_path / "sub", method="probe", backbone="bow-ridge", reference="floor")
    for f in files:
        edit(f, lambda d: (d["identity"].update(method="probe\n"), d["config"].update(method="probe\n")))
    assert main(["submit", "--check", str(tmp_path / "sub")]) == 2
    assert "schema: identity/method: 'probe\\n' does not match" in capsys.readouterr().err


# -- F18: reference rows -----------------------------------------------------------------------
def test_only_ncbenchs_own_references_may_call_themselves_one(write_result, tmp_path, capsys):
    """F18: a submission called itself the floor and was shown as a reference row."""
    _three(write_result, tmp_path / "fake", method="vanilla", reference="floor")
    assert main(["submit", "--check", str(tmp_path / "fake")]) == 2
    assert "meta.reference = 'floor', but a vanilla result is not a reference row" in capsys.readouterr().err
    _three(write_result, tmp_path / "unmarked", method="probe", backbone="bow-ridge")
    assert main(["submit", "--check", str(tmp_path / "unmarked")]) == 2
    assert "meta.reference = None, but a probe result is the floor reference row" in capsys.readouterr().err
    _three(write_result, tmp_path / "probe", method="probe", backbone="bow-ridge", reference="floor", committed=True)
    assert main(["submit", "--check", str(tmp_path / "probe")]) == 0


# -- D1-D9: one bad file does not take a command down -----------------------------------------
BAD = {
    "D1-truncated": None,
    "D2a-metrics": lambda d: d["test"].update(full={"rsum": "abc"}),
    "D2b-seed": lambda d: d["identity"].update(seed="two"),
    "D9-history": lambda d: d.update(history=[{"epoch": "x", "loss": "<b>bold</b>"}], detection="a string",
                                     best_val=[1, 2]),
    "D5b-tag": lambda d: (d["identity"].update(tag="$\\frac{"), d["config"].update(tag="$\\frac{")),
}


@pytest.mark.parametrize("case", list(BAD))
def test_one_bad_file_is_skipped_by_every_command(results, tmp_path, capsys, case):
    """D1, D2a, D2b, D9, D5b: leaderboard, status, compare and report ended in ``internal error``
    (or paired seeds silently); now each skips the file with a warning naming it and shows the rest."""
    bad = results / RUN_DIR / "vanilla" / "vse_light" / "seed-1.json"
    if BAD[case] is None:
        bad.write_bytes(bad.read_bytes()[:3000])
    else:
        edit(bad, BAD[case])
    warning = f"warning: skipped unreadable result: {bad}: "

    assert main(["leaderboard", "--results", str(results), "--out", str(tmp_path / "lb"), "--no-plots"]) == 0
    captured = capsys.readouterr()
    assert warning in captured.err
    seeds = {cells[1].split()[0]: cells[cells.index("best_val_rsum") + 1] for line in captured.out.splitlines()
             if line.startswith("| 20%") for cells in [[c.strip() for c in line.strip("|").split("|")]]}
    assert seeds == {"vanilla": "2", "probe": "3", "clean_oracle": "3"}

    assert main(["status", "--methods", "vanilla", "--references", "--dataset", "synthetic-small", "--noise", "0.2",
                 "--seeds", "0,1,2", "--method-opt", "epochs=1", "--results", str(results)]) == 0
    captured = capsys.readouterr()
    assert f"warning: unreadable result: {bad}: " in captured.err
    assert "1 corrupt, 8 done (9 run(s))" in captured.out

    assert main(["compare", "--methods", "vanilla,clean_oracle", "--dataset", "synthetic-small", "--noise", "0.2",
                 "--results", str(results), "--resamples", "50"]) == 0
    captured = capsys.readouterr()
    assert warning in captured.err
    assert "only the shared seeds [0, 2] are paired" in captured.err
    assert "paired seeds: 0, 2 (2)" in captured.out

    assert main(["report", str(results), "--out", str(tmp_path / "pages")]) == 0
    assert warning in capsys.readouterr().err
    assert len(list((tmp_path / "pages").glob("*.html"))) == 8
    assert main(["report", str(bad)]) == 2
    assert f"ncbench: error: {bad}: " in capsys.readouterr().err


def test_plots_draw_names_as_written():
    """D5b: ``$\\frac{`` in a method or tag stopped matplotlib's mathtext parser (the board kept its
    md/tex/csv but lost its html). Names are drawn literally."""
    import pandas as pd

    from ncbench.report.plots import curves_png, noise_curve_png, split_histogram_png

    name = "m@$\\frac{"
    agg = pd.DataFrame({"benchmark": "b", "method": name, "backbone": "x", "noise_ratio": [0.0, 0.2],
                        "rsum_mean": [300.0, 250.0], "rsum_std": [1.0, 2.0]})
    assert noise_curve_png(agg, "b", f"{name} $x")[:4] == b"\x89PNG"
    stats = pd.DataFrame({"method": name, "backbone": "x", "epoch": [0, 1], "loss_mean": [2.0, 1.0],
                          "loss_std": [0.1, 0.1], **{f"{s}_{x}": float("nan") for s in
                                                     ("val_rsum", "auc", "clean_precision", "clean_recall")
                                                     for x in ("mean", "std")}})
    assert curves_png(stats, f"{name} $")[:4] == b"\x89PNG"
    hist = {"edges": [0.0, 0.5, 1.0], "clean_counts": [3, 1], "noisy_counts": [1, 3], "grid": [0.2, 0.8],
            "component_pdf": [[1.0, 0.2], [0.2, 1.0]], "clean_component": 0}
    assert split_histogram_png(hist, f"{name} $\\alpha")[:4] == b"\x89PNG"


# -- K1: the package's leaderboards folder -----------------------------------------------------
def test_boards_are_never_written_into_the_packages_leaderboards_folder(write_result, tmp_path, capsys):
    """K1: ``--out <checkout>/leaderboards/reference`` wrote boards beside the reference data, although
    the help says never there."""
    _three(write_result, tmp_path / "r")
    reference = Path(str(resources.files("ncbench.reference")))
    target = reference / "ncbench-test-boards"
    before = sorted(reference.parent.rglob("*"))
    try:
        assert main(["leaderboard", "--results", str(tmp_path / "r"), "--out", str(target), "--no-plots"]) == 2
        assert f"ncbench: error: --out {target}: inside" in capsys.readouterr().err
        assert sorted(reference.parent.rglob("*")) == before
    finally:
        shutil.rmtree(target, ignore_errors=True)


def test_results_set_aside_in_the_same_second_keep_each_other(tmp_path):
    """Two results of one run replaced in the same second (two configs in turn) both survive."""
    from ncbench.results import set_aside

    run = tmp_path / "protocol-1" / "synthetic" / "noise-0.2" / "ncr" / "vse_light"
    run.mkdir(parents=True)
    kept = []
    for text in ("first", "second"):
        (run / "seed-0.json").write_text(text)
        kept.append(set_aside(tmp_path, run / "seed-0.json", "stale"))
    assert len(set(kept)) == 2 and sorted(p.read_text() for p in kept) == ["first", "second"]
    assert all(p.parent == tmp_path / "superseded" / run.relative_to(tmp_path) for p in kept)
