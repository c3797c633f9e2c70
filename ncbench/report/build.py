"""Building a leaderboard: result folders → frame → boards → Markdown / HTML / LaTeX / CSV / PNG.

``build_leaderboard`` is what ``ncbench leaderboard`` calls. It reads every result file under the
given folders, with the provenance ``ncbench submit`` stored beside accepted ones
(``submission.read_provenance``: such rows are badged ``submitted``, with their source). The same
run found twice, e.g. in ``results/`` and in the accepted submissions of ``leaderboards/results/``,
counts once when both files hold the same result; when they differ, that is a conflict, never
resolved silently: the accepted copy is shown (the first folder's where neither or both are
accepted), its row is marked ≢, and a warning line and a note under the table name both files
(``collect``). Released checkpoints evaluated by ``ncbench evaluate`` (results of kind
``checkpoint``) are rows of their own, labelled as such, and check the reported rows they match
(``marks.mark_checkpoints``); they were trained on the authors' noise files, which their results do
not identify, so the noise-index check leaves them out (``checked_indices``; their label says where
they are from). It refuses to mix noise indices in one table unless asked, and writes every output
atomically into the output folder (names slugged, and each path checked to stay inside it:
``paths``):

* ``leaderboard.md`` / ``leaderboard.tex``: all boards;
* ``index.html`` and one ``leaderboard-p<protocol>-<table>.html`` per board, self-contained;
* ``leaderboard.csv``: the aggregated numbers, numeric, with CI and fairness columns;
  ``human-agreement.csv`` likewise for the human-judgment scores of ``ncbench detect`` runs;
* ``plots/*.png``: rSum-vs-noise curves per benchmark, training curves per noise group (loss,
  validation rSum, split AUC, clean precision/recall; mean ± std over seeds) and each run's
  loss-split histogram.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..atomic import write_atomic, write_text_atomic
from ..errors import ConfigError, NcbenchError
from ..results import load_results, noise_of, row_of
from ..submission import read_provenance
from . import html, latex, markdown
from .aggregate import (
    AGREEMENT_METRICS,
    aggregate,
    agreement_frame,
    check_configs,
    check_noise_indices,
    results_frame,
)
from .curves import curve_frame, curve_stats
from .layout import LABELS, Board, build_agreement_boards, build_boards
from .markdown import LOCAL_CONFLICT_MARK
from .marks import dataset_of, is_checkpoint, mark_checkpoints, mark_not_worse, mark_provenance
from .paths import output_path, slug
from .plots import curves_png, noise_curve_png, split_histogram_png
from .reported import load_reported, load_sources

FORMATS = ("md", "html", "tex")


@dataclass
class LeaderboardRequest:
    results: list[Path]
    out: Path
    formats: tuple[str, ...] = FORMATS
    with_reported: bool = False
    allow_mixed: bool = False
    plots: bool = True


@dataclass
class LeaderboardOutput:
    boards: list[Board]
    written: list[Path] = field(default_factory=list)
    n_results: int = 0
    skipped: list[str] = field(default_factory=list)  # unreadable result files, with the reason
    warnings: list[str] = field(default_factory=list)  # conflicts between copies of a run, bad provenance
    markdown: str = ""


@dataclass(frozen=True)
class Conflict:
    """Two different results of one run (same row, seed and config): ``shown`` is on the board."""

    label: str  # the run: "mymethod (vse_light), synthetic caption-level noise 0.2, seed 1"
    shown: str
    other: str

    def line(self) -> str:
        return (f"{self.label}: {self.other} and {self.shown} hold different results of this run; the board shows "
                f"{self.shown} (marked {LOCAL_CONFLICT_MARK}); remove one, or `ncbench submit --replace` the local one")


@dataclass
class Collected:
    results: list[dict[str, Any]]
    errors: list[str] = field(default_factory=list)  # unreadable result files, with the reason
    warnings: list[str] = field(default_factory=list)  # conflicts and unreadable provenance, one line each
    conflicts: list[Conflict] = field(default_factory=list)


def _content(r: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in r.items() if not k.startswith("_")}


def _with_provenance(r: dict[str, Any], warnings: list[str]) -> dict[str, Any]:
    try:
        r["_submission"] = read_provenance(Path(r["_path"]))
    except NcbenchError as exc:
        r["_submission"] = None
        warnings.append(str(exc))
    return r


def collect(folders: list[Path]) -> Collected:
    """Every result under ``folders`` with its provenance (``_submission``); a run found twice counts
    once, and two different results of one run are a ``Conflict`` (the accepted copy is kept)."""
    out, kept = Collected([]), {}
    for folder in folders:
        if not Path(folder).is_dir():
            raise ConfigError(f"{folder}: results folder not found (run `ncbench run` first)")
        loaded = load_results(Path(folder))
        out.errors += loaded.errors
        for r in loaded.results:
            r = _with_provenance(r, out.warnings)
            ident = r["identity"]
            key = (*(ident[k] for k in ("protocol_version", "dataset", "noise_ratio", "backbone", "seed")),
                   row_of(ident), noise_of(ident), r["config_hash"])
            if key not in kept:
                kept[key] = len(out.results)
                out.results.append(r)
                continue
            first = out.results[kept[key]]
            if r["_submission"] is not None and first["_submission"] is None:  # the accepted copy is shown
                out.results[kept[key]] = r
                first, r = r, first
            if _content(first) != _content(r):
                label = (f"{row_of(ident)} ({ident['backbone']}), {ident['dataset']} {noise_of(ident).label} noise "
                         f"{float(ident['noise_ratio']):g}, seed {ident['seed']}")
                conflict = Conflict(label, shown=str(first["_path"]), other=str(r["_path"]))
                first.setdefault("_conflicts", []).append(conflict)
                out.conflicts.append(conflict)
                out.warnings.append(conflict.line())
    return out


def collect_results(folders: list[Path]) -> tuple[list[dict[str, Any]], list[str]]:
    """``collect``'s results and unreadable files (what ``ncbench compare`` reads)."""
    got = collect(folders)
    return got.results, got.errors


def _figures(board: Board, agg: pd.DataFrame, results: list[dict[str, Any]],
             curves: pd.DataFrame) -> list[tuple[str, str, bytes]]:
    """(file name, caption, PNG) for one board: noise curves, training curves per noise group
    (``curves``: ``curve_stats`` of all results), then split histograms of its runs."""
    figs = []
    block = agg[agg.protocol_version.astype(str) == board.protocol]
    if "noise" in block:
        block = block[block.noise == board.noise]
    kind = board.noise.suffix()
    for b in board.benchmarks:
        png = noise_curve_png(block, b, f"{LABELS.get(b, b)}: test rSum vs {board.noise.label} noise "
                                        "(mean ± std over seeds)")
        if png:
            figs.append((slug(f"p{board.protocol}-{b}{kind}-rsum-vs-noise") + ".png",
                         f"{LABELS.get(b, b)}: rSum vs {board.noise.label} noise ratio", png))
    datasets = {dataset_of(b) for b in board.benchmarks}
    stats = curves[(curves.protocol_version.astype(str) == board.protocol) & (curves.noise == board.noise)
                   & curves.dataset.isin(datasets)]
    for (dataset, ratio), block in stats.groupby(["dataset", "noise_ratio"], sort=True):
        caption = (f"{LABELS.get(dataset, dataset)}, {ratio:.0%} {board.noise.label} noise: training curves "
                   "(mean ± std over seeds per epoch)")
        png = curves_png(block, caption)
        if png:
            figs.append((slug(f"p{board.protocol}-{dataset}-{ratio:g}{kind}-curves") + ".png", caption, png))
    first: dict[tuple, dict[str, Any]] = {}
    for r in sorted(results, key=lambda r: r["identity"]["seed"]):
        ident = r["identity"]
        hist = ((r.get("detection") or {}).get("split_histogram"))
        if (r.get("status") != "ok" or not hist or ident["dataset"] not in datasets
                or str(ident["protocol_version"]) != board.protocol or noise_of(ident) != board.noise):
            continue
        first.setdefault((ident["dataset"], ident["noise_ratio"], row_of(ident), ident["backbone"]), r)
    for (dataset, ratio, method, backbone), r in sorted(first.items()):
        seed, epoch = r["identity"]["seed"], r.get("best_val", {}).get("epoch")
        caption = (f"{method} ({backbone}), {dataset} {ratio:.0%} {board.noise.label} noise, seed {seed}: "
                   f"loss split at selected epoch {epoch}")
        name = slug(f"p{board.protocol}-{dataset}-{ratio:g}{kind}-{method}-{backbone}-seed{seed}-split") + ".png"
        figs.append((name, caption, split_histogram_png(r["detection"]["split_histogram"], caption)))
    return figs


AGREEMENT_NOTE = ("AUC: the method's correspondence estimate ranking pairs judged to describe the image (majority "
                  "verdict) above those judged not to; 0.5 is chance. Spearman ρ: rank correlation with the mean "
                  "human score. Held-out: image and caption from test-split images only.")


def agreement_boards(results: list[dict[str, Any]], allow_mixed: bool = False) -> tuple[list[Board], pd.DataFrame]:
    """Boards (and the aggregated frame) of the human-agreement scores in ``results``."""
    agg = aggregate(check_noise_indices(agreement_frame(results), allow_mixed), AGREEMENT_METRICS, missing_ok=True)
    estimates, counts = {}, {}
    for r in results:
        block = r.get("human_agreement")
        if block and r.get("status") == "ok":
            estimates.setdefault(row_of(r["identity"]), block.get("estimate", "?"))
            counts.setdefault(r["identity"]["dataset"], block)
    boards = build_agreement_boards(agg, estimates)
    for board in boards:
        dataset = board.key.removeprefix("human-")
        block = counts.get(dataset.removesuffix(board.noise.suffix()), {})
        sizes = [f"{kind} {subset} {m['n']} ({m['n_describes']} describe / {m['n_not']} do not)"
                 for kind in ("expert", "crowd") for subset in ("all", "heldout")
                 if (m := (block.get(kind) or {}).get(subset))]
        board.notes[:0] = [AGREEMENT_NOTE, "Judged pairs: " + "; ".join(sizes) + "."]
    return boards, agg


def summary_markdown(results: list[dict[str, Any]]) -> str:
    """The measured tables of a list of results (what ``ncbench run`` prints at the end)."""
    agg = aggregate(check_noise_indices(results_frame(results), allow_mixed=True))
    boards = build_boards(agg) + agreement_boards(results, allow_mixed=True)[0]
    return "\n".join(markdown.render_board(b) for b in boards) or "_No successful results._\n"


def checked_indices(results: list[dict[str, Any]], allow_mixed: bool = False) -> pd.DataFrame:
    """``results_frame`` with ``check_noise_indices`` applied to every run but the released checkpoints
    (no known noise index: the authors' files), which are never ``mixed``."""
    frame = results_frame(results)
    released = frame["path"].isin([r.get("_path") for r in results if is_checkpoint(r)])
    if not released.any():
        return check_noise_indices(frame, allow_mixed)
    return pd.concat([check_noise_indices(frame[~released], allow_mixed), frame[released].assign(mixed=False)])


def build_leaderboard(req: LeaderboardRequest) -> LeaderboardOutput:
    unknown = [f for f in req.formats if f not in FORMATS]
    if unknown:
        raise ConfigError(f"unknown leaderboard format(s) {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
    got = collect(req.results)
    results, skipped = got.results, got.errors
    frame = checked_indices(results, req.allow_mixed)
    check_configs(frame)
    agg = aggregate(frame)
    reported = load_reported() if req.with_reported else []
    boards = build_boards(agg, reported, load_sources() if req.with_reported else {})
    mark_not_worse(boards, results)
    mark_checkpoints(boards, results)
    human, human_agg = agreement_boards(results, req.allow_mixed)
    mark_provenance(boards + human, results)
    out = LeaderboardOutput(boards + human, n_results=len(results), skipped=skipped, warnings=got.warnings)
    target = Path(req.out)

    def put(name: str, data: str | bytes) -> None:
        path = output_path(target, name)
        if isinstance(data, str):
            write_text_atomic(path, data)
        else:
            write_atomic(path, lambda f: f.write(data))
        out.written.append(path)

    out.markdown = markdown.render_markdown(out.boards)
    if "md" in req.formats:
        put("leaderboard.md", out.markdown)
    if "tex" in req.formats:
        put("leaderboard.tex", latex.render_latex(out.boards))
    put("leaderboard.csv", agg.to_csv(index=False))
    if human:
        put("human-agreement.csv", human_agg.to_csv(index=False))
    figures: dict[str, list[html.Figure]] = {}
    if req.plots:
        curves = curve_stats(curve_frame(results))
        for board in boards:
            for name, caption, png in _figures(board, agg, results, curves):
                put(f"plots/{name}", png)
                figures.setdefault(html.page_name(board), []).append(html.Figure(caption, png))
    if "html" in req.formats:
        for name, page in html.render_html(out.boards, figures).items():
            put(name, page)
    return out
