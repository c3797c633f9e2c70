"""Leaderboards: aggregation against hand-computed statistics, the paper layout, golden renderings,
reported rows against BiCro's printed Table 1, escaping, noise-index mixing, plots, headless Chromium."""

from __future__ import annotations

import html.parser
import math
import os
import re
import subprocess
from pathlib import Path

import pytest

from ncbench.cli import main
from ncbench.errors import ResultError
from ncbench.report import html as html_render
from ncbench.report import latex, markdown
from ncbench.report.aggregate import aggregate, check_noise_indices, results_frame
from ncbench.report.build import LeaderboardRequest, build_leaderboard, collect_results
from ncbench.report.layout import build_boards
from ncbench.report.reported import load_reported, load_sources

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("NCBENCH_UPDATE_GOLDEN") == "1"


def fixed_results(root: Path, write_result) -> Path:
    """The fixed result set behind the golden files (numbers chosen so every cell is predictable)."""
    for seed, r1 in enumerate((50.0, 52.0, 54.0)):
        write_result(root, method="mymethod", noise=0.0, seed=seed, r1=r1)
        write_result(root, method="mymethod", noise=0.2, seed=seed, r1=r1 - 10)
    for seed, r1 in enumerate((48.0, 49.0, 50.0)):
        write_result(root, method="vanilla", noise=0.0, seed=seed, r1=r1)
    write_result(root, method="vanilla", noise=0.2, seed=0, r1=30.0)
    write_result(root, method="ncr", dataset="coco", noise=0.0, seed=0, r1=50.0, coco=True, ensemble=2, gpu_hours=1.5)
    return root


def boards_of(root: Path, reported: bool = False, allow_mixed: bool = False):
    results, _ = collect_results([root])
    agg = aggregate(check_noise_indices(results_frame(results), allow_mixed))
    return build_boards(agg, load_reported() if reported else [], load_sources() if reported else {}), agg


def test_aggregate_matches_hand_computed_statistics(tmp_path, write_result):
    _, agg = boards_of(fixed_results(tmp_path, write_result))
    row = agg[(agg.method == "mymethod") & (agg.noise_ratio == 0.0)].iloc[0]
    # R@1 of seeds 50, 52, 54: mean 52, sample std 2, 95% CI half-width t(0.975, 2) · 2 / √3
    assert row.i2t_r1_mean == pytest.approx(52.0) and row.i2t_r1_std == pytest.approx(2.0)
    assert row.i2t_r1_ci95 == pytest.approx(4.302652729911275 * 2 / math.sqrt(3))
    # rSum = 6·R@1 + 70 per seed (the offsets of make_result_dict) → mean 382, std 12
    assert row.rsum_mean == pytest.approx(382.0) and row.rsum_std == pytest.approx(12.0)
    assert row.n == 3 and row.seeds == "0,1,2"
    single = agg[(agg.method == "vanilla") & (agg.noise_ratio == 0.2)].iloc[0]
    assert single.n == 1 and math.isnan(single.rsum_std) and math.isnan(single.rsum_ci95)
    # MS-COCO gives the 5-fold 1K mean and the 5K view as two benchmarks
    coco = agg[agg.dataset == "coco"].set_index("benchmark")
    assert set(coco.index) == {"coco-1k", "coco-5k"}
    assert coco.loc["coco-1k", "i2t_r1_mean"] == 60.0 and coco.loc["coco-5k", "i2t_r1_mean"] == 50.0
    assert coco.loc["coco-5k", "ensemble_size"] == 2 and coco.loc["coco-5k", "gpu_hours"] == 1.5


def test_paper_layout_groups_bold_and_fairness(tmp_path, write_result):
    boards, _ = boards_of(fixed_results(tmp_path, write_result))
    by_key = {b.key: b for b in boards}
    assert set(by_key) == {"synthetic", "f30k-coco1k", "coco5k"}
    syn = by_key["synthetic"]
    assert [g.label for g in syn.groups] == ["0%", "20%"]
    zero = {r.method: r for r in syn.groups[0].rows}
    cell = zero["mymethod"].cells["synthetic"]["i2t_r1"]
    assert cell.text() == "52.0 ± 2.0" and cell.best and not zero["vanilla"].cells["synthetic"]["i2t_r1"].best
    assert zero["vanilla"].seeds_text() == "3" and zero["mymethod"].selection == "best_val_rsum"
    twenty = {r.method: r for r in syn.groups[1].rows}
    assert twenty["vanilla"].cells["synthetic"]["i2t_r1"].text() == "30.0"  # one seed: no ± part
    # COCO 1K sits beside F30K in the paper's table; COCO 5K has its own
    assert by_key["f30k-coco1k"].benchmarks == ["coco-1k"] and by_key["coco5k"].benchmarks == ["coco-5k"]


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.is_file(), f"{path} missing; create it with NCBENCH_UPDATE_GOLDEN=1"
    assert text == path.read_text(encoding="utf-8"), f"{name} differs from the golden file (NCBENCH_UPDATE_GOLDEN=1 to refresh)"


def test_golden_renderings(tmp_path, write_result):
    boards, _ = boards_of(fixed_results(tmp_path, write_result), reported=True)
    _golden("leaderboard.md", markdown.render_markdown(boards))
    _golden("leaderboard.tex", latex.render_latex(boards))
    pages = html_render.render_html(boards)
    _golden("leaderboard-p1-synthetic.html", pages["leaderboard-p1-synthetic.html"])
    _golden("index.html", pages["index.html"])


def _md_rows(text: str, title: str) -> list[list[str]]:
    block = text.split(f"## {title}", 1)[1].split("\n## ", 1)[0]
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in block.splitlines()
            if line.startswith("|") and not line.startswith("|--")][1:]


def test_reported_bicro_table_renders_back_to_the_paper(shared_data, tmp_path):
    paper = (shared_data.parent / "docs" / "paper-tables.md")
    if not paper.is_file():
        pytest.skip(f"{paper} is absent")
    expected = {}
    for line in paper.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 16 and cells[0].endswith("%"):
            expected[(cells[0], cells[1])] = cells[2:]
    assert len(expected) == 18
    tmp_path.joinpath("empty").mkdir()
    boards, _ = boards_of(tmp_path / "empty", reported=True)
    text = markdown.render_markdown(boards)
    got = {}
    # BiCro's DECL rows equal DECL's own image-level Table 1: they are filed under image-level noise
    for title in ("Flickr30K 1K and MS-COCO 1K, caption-level noise", "Flickr30K 1K and MS-COCO 1K, image-level noise"):
        for row in _md_rows(text, title):
            if row[2] == "reported (bicro-t1)":
                got[(row[0], row[1])] = row[3:17]
    assert got == expected
    image_rows = [r for r in _md_rows(text, "Flickr30K 1K and MS-COCO 1K, image-level noise") if r[2] == "reported (bicro-t1)"]
    assert {r[1] for r in image_rows} == {"DECL"} and len(image_rows) == 2
    assert "not reproduced by ncbench" in text


def test_reported_sums_are_recomputed_and_mismatches_flagged(tmp_path, write_result):
    """A reported row whose printed Sum is not the sum of its recalls (MGCS's ESC copy: 504.7
    printed, recalls summing to 503.3) shows the recomputed Sum and the printed one beside it."""
    header = "source,method,backbone,ensemble_size,benchmark,noise,noise_type,i2t_r1,i2t_r5,i2t_r10,t2i_r1,t2i_r5,t2i_r10,rsum,note\n"
    text = header + ("ncr-t12,ESC,sgraf,2,f30k,0.2,caption,79.0,94.8,97.5,59.1,83.8,89.1,504.7,copy\n"
                     "ncr-t12,OK,sgraf,2,f30k,0.2,caption,79.0,94.8,97.5,59.1,83.8,89.1,503.4,rounding only\n")
    esc, ok = load_reported(text)
    assert esc.metrics["rsum"] == pytest.approx(503.3) and esc.printed_rsum == 504.7
    assert ok.metrics["rsum"] == 503.4 and ok.printed_rsum is None  # within the rounding of six recalls
    write_result(tmp_path, method="mine", dataset="f30k", noise=0.2)
    boards, _ = boards_of(tmp_path)
    results, _ = collect_results([tmp_path])
    boards = build_boards(aggregate(check_noise_indices(results_frame(results))), [esc, ok], load_sources())
    md = markdown.render_markdown(boards)
    assert "503.3 (printed 504.7)" in md and "recomputed from the printed recalls" in md


def test_reported_rows_are_only_shown_when_asked_and_marked(tmp_path, write_result):
    root = fixed_results(tmp_path / "r", write_result)
    plain = build_leaderboard(LeaderboardRequest([root], tmp_path / "a", plots=False))
    assert "reported (" not in plain.markdown and "BiCro" not in plain.markdown
    rep = build_leaderboard(LeaderboardRequest([root], tmp_path / "b", plots=False, with_reported=True))
    rows = [r for b in rep.boards for g in b.groups for r in g.rows]
    assert {r.reported for r in rows if r.method in ("BiCro", "BiCro*", "SCAN")} == {True}
    assert not any(c.best for r in rows if r.reported for cells in r.cells.values() for c in cells.values())
    page = (tmp_path / "b" / "leaderboard-p1-f30k-coco1k.html").read_text()
    board = next(b for b in rep.boards if b.key == "f30k-coco1k")
    # BiCro's Table 1: 9 methods × 2 noise ratios, each row holding its F30K and COCO 1K numbers; its two
    # DECL rows (DECL's own image-level numbers) are on the image-level board
    image = next(b for b in rep.boards if b.key == "f30k-coco1k-image")
    assert sum(r.source == "bicro-t1" for g in board.groups for r in g.rows) == 16
    assert [r.method for g in image.groups for r in g.rows if r.source == "bicro-t1"] == ["DECL", "DECL"]
    assert page.count('class="reported"') == sum(r.reported for g in board.groups for r in g.rows)
    assert "reported · bicro-t1" in page


def test_hostile_names_are_escaped(tmp_path, write_result):
    """A method name can no longer hold markup (``read_result`` refuses it, see test_shared_results),
    so the name is changed after reading; free-text fields such as the selection rule still can."""
    evil = '<script>alert("x")</script>'
    data_root = tmp_path / "r"
    write_result(data_root, method="safe", noise=0.0)
    results, _ = collect_results([data_root])
    results[0]["identity"]["method"] = evil
    results[0]["meta"]["selection"] = evil
    boards = build_boards(aggregate(check_noise_indices(results_frame(results))))
    page = html_render.render_html(boards)["leaderboard-p1-synthetic.html"]
    assert evil not in page and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
    assert "<script>" in page  # only the page's own sorting script
    assert page.count("<script>") == 1
    tex = latex.render_latex(boards)
    assert r"\textless{}script\textgreater{}" in tex and "<script>" not in tex
    assert latex.escape("a_b & 50% #1 $x$ {y} ~^\\") == (
        r"a\_b \& 50\% \#1 \$x\$ \{y\} \textasciitilde{}\textasciicircum{}\textbackslash{}")


def test_caption_and_image_level_noise_never_share_a_table(tmp_path, write_result, result_dict):
    """An image-level F30K run lands on its own titled board beside the caption-level one; the
    reported (caption-level) rows join only the caption board; results without a noise_type (written
    before it existed) are caption-level; the two types have different folders and canonical indices."""
    root = tmp_path / "r"
    for seed in range(3):
        write_result(root, method="ncr", dataset="f30k", noise=0.2, seed=seed, r1=60.0)  # old-style: no noise_type
        write_result(root, method="rcl", dataset="f30k", noise=0.2, seed=seed, r1=40.0, noise_type="image")
        write_result(root, method="rcl", dataset="f30k", noise=0.8, seed=seed, r1=30.0, noise_type="image")
    assert (root / "protocol-1/f30k/noise-image-0.2/rcl/vse_light/seed-0.json").is_file()
    assert (root / "protocol-1/f30k/noise-0.2/ncr/vse_light/seed-0.json").is_file()
    boards, _ = boards_of(root, reported=True)
    by_key = {b.key: b for b in boards}
    cap, img = by_key["f30k-coco1k"], by_key["f30k-coco1k-image"]
    assert cap.title == "Flickr30K 1K and MS-COCO 1K, caption-level noise"
    assert img.title == "Flickr30K 1K and MS-COCO 1K, image-level noise"
    assert (cap.noise.key, img.noise.key) == ("caption", "image") and cap.noise.is_papers and img.noise.is_papers
    cap_methods = {r.method for g in cap.groups for r in g.rows}
    img_rows = [r for g in img.groups for r in g.rows]
    assert "ncr" in cap_methods and "rcl" not in cap_methods and not {"DECL", "RCL"} & cap_methods
    assert {r.method for r in img_rows if not r.reported} == {"rcl"}
    # the reported rows of each board are of its protocol: DECL's, RCL's and L2RM's tables are
    # image-level, BiCro's Table 1 caption-level (CREAM's protocol is unverified; its code's is caption);
    # UGNCL's released code shuffles per image
    assert {r.source for r in img_rows if r.reported} == {"decl-t12", "rcl-t245", "bicro-t1",  # BiCro's copy of DECL
                                                          "l2rm-ucpm", "l2rm-issue7", "ugncl-pdf"}
    assert {"DECL", "RCL", "L2RM"} <= {r.method for r in img_rows if r.reported}
    assert {r.source for g in cap.groups for r in g.rows if r.reported} >= {"bicro-t1", "ncr-t12", "cream-ucpm",
                                                                             "cream-in2r"}
    # CREAM's 80% row exists in two conflicting copies: both are on the board, each flagged
    cream80 = [r for g in cap.groups if g.label == "80%" for r in g.rows if r.reported and r.method == "CREAM"]
    assert len(cream80) >= 2 and {r.source for r in cream80} == {"cream-ucpm", "cream-in2r"}
    assert all(r.conflict for r in cream80)
    assert not any(r.conflict for g in cap.groups if g.label != "80%" for r in g.rows)
    md_cap = markdown.render_markdown([cap])
    assert "CREAM ≠" in md_cap and "published copies of this reported row disagree" in md_cap
    from ncbench.report import html, latex

    assert "≠ copies disagree" in html.render_board(cap)
    assert r"CREAM$^\dagger$$^{\neq}$" in latex.render_latex([cap])
    assert [g.label for g in img.groups] == ["20%", "40%", "50%", "60%", "70%", "80%"]  # UGNCL: 20/50/70%
    md = markdown.render_markdown(boards)
    assert "## Flickr30K 1K and MS-COCO 1K, image-level noise (protocol 1)" in md
    # the canonical index of each type is what submission checks: an image-level result carrying
    # the caption-level sha256 is refused, and the other way round
    from ncbench.submission import check_content

    wrong = result_dict(dataset="f30k", noise=0.2, noise_type="image",
                        sha=result_dict(dataset="f30k", noise=0.2)["identity"]["noise_index_sha256"])
    assert any("not the canonical" in r and "image-level 0.2" in r for r in check_content(wrong))
    assert not check_content(result_dict(dataset="f30k", noise=0.2, noise_type="image"))
    assert any("no canonical caption-level" in r for r in check_content(result_dict(dataset="f30k", noise=0.8)))


def test_mixed_noise_indices_are_refused_unless_allowed(tmp_path, write_result, capsys):
    root = tmp_path / "r"
    for seed in range(3):
        write_result(root, method="vanilla", noise=0.2, seed=seed)
    odd = write_result(root, method="mymethod", noise=0.2, seed=0, sha="ab" * 32)
    with pytest.raises(ResultError, match="different noise indices") as exc:
        boards_of(root)
    assert str(odd) in str(exc.value)
    boards, _ = boards_of(root, allow_mixed=True)
    rows = {r.method: r for r in boards[0].groups[0].rows}
    assert rows["mymethod"].mixed and not rows["vanilla"].mixed
    assert "mymethod ‡" in markdown.render_markdown(boards)
    # through the CLI: one error line, non-zero exit, and --allow-mixed renders
    assert main(["leaderboard", "--results", str(root), "--out", str(tmp_path / "lb")]) == 2
    assert "--allow-mixed" in capsys.readouterr().err
    assert main(["leaderboard", "--results", str(root), "--out", str(tmp_path / "lb"), "--allow-mixed", "--no-plots"]) == 0


def test_cli_formats_and_outputs(tmp_path, write_result, capsys):
    root = fixed_results(tmp_path / "r", write_result)
    out = tmp_path / "lb"
    assert main(["leaderboard", "--results", str(root), "--out", str(out), "--format", "md", "--no-plots"]) == 0
    assert (out / "leaderboard.md").is_file() and (out / "leaderboard.csv").is_file()
    assert not (out / "leaderboard.tex").exists() and not (out / "index.html").exists()
    assert main(["leaderboard", "--results", str(root), "--out", str(out), "--format", "md,pdf"]) == 2
    assert "unknown leaderboard format(s) pdf" in capsys.readouterr().err
    assert main(["leaderboard", "--results", str(root), "--out", str(out), "--with-reported"]) == 0
    for name in ("leaderboard.tex", "index.html", "leaderboard-p1-synthetic.html", "leaderboard-p1-cc152k.html",
                 "plots/p1-synthetic-rsum-vs-noise.png"):
        assert (out / name).is_file(), name
    assert (out / "plots/p1-synthetic-rsum-vs-noise.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    csv = (out / "leaderboard.csv").read_text().splitlines()
    assert "rsum_ci95" in csv[0] and any(line.startswith("1,synthetic,synthetic,caption,0.0,mymethod,vse_light,3,") for line in csv)


def test_split_histogram_of_a_real_run_and_its_plot(noisy_sweep, tmp_path, sweep_root):
    """NCR's stored loss split at the selected epoch covers every training pair, splits them by the
    true noise, and is drawn in the HTML page."""
    results = [r for r in noisy_sweep("ncr") if r["identity"]["method"] == "ncr"]
    hist = results[0]["detection"]["split_histogram"]
    n_clean, n_noisy = sum(hist["clean_counts"]), sum(hist["noisy_counts"])
    assert n_clean + n_noisy == 5000  # the embedded dataset's training captions
    assert n_noisy / 5000 == pytest.approx(results[0]["identity"]["noise_realised_ratio"], abs=1e-9)
    # the mixture's weighted densities integrate to about 1 over [0, 1]
    grid, pdf = hist["grid"], hist["component_pdf"]
    step = grid[1] - grid[0]
    assert sum(sum(col) for col in zip(*pdf)) * step == pytest.approx(1.0, abs=0.1)
    out = build_leaderboard(LeaderboardRequest([sweep_root], tmp_path / "lb"))
    splits = [p for p in out.written if p.name.endswith("-split.png") and "-ncr-" in p.name]
    assert splits and all(p.read_bytes()[:4] == b"\x89PNG" for p in splits)
    page = (tmp_path / "lb" / "leaderboard-p1-synthetic.html").read_text()
    assert page.count("data:image/png;base64,") >= 1 + len(splits)


class _TableParser(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.tables: dict[str, dict] = {}
        self._table = None
        self._where = None
        self._row = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self._table = self.tables.setdefault(a.get("id", ""), {"class": a.get("class", ""), "head": [], "body": []})
        elif tag in ("thead", "tbody") and self._table is not None:
            self._where = tag
        elif tag == "tr" and self._table is not None:
            self._row = []
            (self._table["head"] if self._where == "thead" else self._table["body"]).append(self._row)
        elif tag in ("td", "th") and self._row is not None:
            self._row.append("")

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._row is not None and self._row and self._table is not None:
            self._row[-1] += data.strip()


def test_html_page_in_headless_chromium(tmp_path, write_result, chromium):
    """Opens the page in a real browser (Debian's chromium; skipped where none is installed). The DOM
    after the page's script ran must hold the expected table: 2 header rows, 3 + 7 + the fairness
    columns, one row per (noise, method), and the script's ready mark."""
    browser = chromium
    if browser is None:
        pytest.skip("no Chromium found (apt-get install chromium); the README says how to run this test")
    root = fixed_results(tmp_path / "r", write_result)
    build_leaderboard(LeaderboardRequest([root], tmp_path / "lb", plots=False))
    page = tmp_path / "lb" / "leaderboard-p1-synthetic.html"
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=2000", "--dump-dom", page.as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    parser = _TableParser()
    parser.feed(dom)
    table = parser.tables["board-synthetic"]
    assert "sort-ready" in table["class"]  # the inline script ran
    assert len(table["head"]) == 2 and len(table["head"][1]) == 7 + len(markdown.FAIRNESS)
    body = [r for r in table["body"] if r]
    assert [(r[0], r[1]) for r in body] == [("0%", "mymethod"), ("0%", "vanilla"), ("20%", "mymethod"), ("20%", "vanilla")]
    assert all(len(r) == 3 + 7 + len(markdown.FAIRNESS) for r in body)
    assert body[0][3] == "52.0 ± 2.0"
    shot = os.environ.get("NCBENCH_SCREENSHOT")
    if shot:  # for the issue note: NCBENCH_SCREENSHOT=/tmp/board.png pytest -k chromium
        subprocess.run([*cmd[:-2], f"--screenshot={shot}", "--window-size=1400,500", page.as_uri()],
                       capture_output=True, timeout=120)
    assert re.search(r"<title>ncbench · Synthetic, caption-level noise</title>", dom)


def test_floor_and_ceiling_rows_and_the_below_floor_mark(tmp_path, write_result):
    """The probe is the floor and clean_oracle the ceiling of their noise group: labelled as references,
    never bold; a contender whose mean rSum is under the floor's is marked in every format."""
    tuned = {"kind": "tuned", "tuning": {"budget": 24}, "overrides": {}}
    for seed in range(3):
        write_result(tmp_path, method="probe", backbone="bow-ridge", noise=0.5, seed=seed, r1=40.0, reference="floor")
        write_result(tmp_path, method="clean_oracle", noise=0.5, seed=seed, r1=70.0, reference="ceiling", recipe=tuned)
        write_result(tmp_path, method="ncr", noise=0.5, seed=seed, r1=45.0 + seed, recipe=tuned)  # mean 46 > 40
        write_result(tmp_path, method="vanilla", noise=0.5, seed=seed, r1=38.0 + seed,  # mean 39 < 40
                     recipe={"kind": "defaults", "overrides": {"lr": "0.1"}})
    boards, _ = boards_of(tmp_path)
    rows = {r.method: r for r in boards[0].groups[0].rows}
    assert rows["probe"].reference == "floor" and rows["clean_oracle"].reference == "ceiling"
    assert rows["vanilla"].below_floor == ["synthetic"] and not rows["ncr"].below_floor
    assert not rows["probe"].below_floor and not rows["clean_oracle"].below_floor
    # bold goes to the best contender (ncr), not to the ceiling
    assert rows["ncr"].cells["synthetic"]["rsum"].best and not rows["clean_oracle"].cells["synthetic"]["rsum"].best
    assert rows["ncr"].recipe == "tuned 24" and rows["vanilla"].recipe == "defaults +opts"
    md = markdown.render_board(boards[0])
    assert "| vanilla ▽ |" in md.replace("  ", " ") or "vanilla ▽" in md
    assert "measured, floor (training-free)" in md and "measured, ceiling (clean pairs only)" in md
    assert "▽ below the training-free floor" in md
    page = html_render.render_board(boards[0])
    assert "below the training-free floor" in page and "reference" in page
    tex = latex.render_board(boards[0])
    assert r"vanilla$^\triangledown$" in tex and "Below the training-free floor" in tex


def test_default_boards_stay_out_of_the_repositorys_leaderboards_folder(tmp_path, write_result, monkeypatch, capsys):
    """Issue 23 item 8: run in a checkout, the boards went into leaderboards/ beside the reference data.
    Now ./boards/; accepted submissions in leaderboards/results/ are still read."""
    fixed_results(tmp_path / "results", write_result)
    write_result(tmp_path / "leaderboards" / "results", method="submitted", noise=0.2, seed=0)
    monkeypatch.chdir(tmp_path)
    assert main(["leaderboard", "--no-plots"]) == 0
    assert (tmp_path / "boards" / "leaderboard.md").is_file()
    assert sorted(p.name for p in (tmp_path / "leaderboards").iterdir()) == ["results"]
    assert "| submitted " in (tmp_path / "boards" / "leaderboard.md").read_text()
