"""Marks on boards: which rows are not significantly worse than the best, and which were submitted.

Within each noise group and benchmark, the contender (measured, not a reference row) with the
highest mean Sum is the best; every other contender is compared with it by the paired permutation
test of ``ncbench.significance`` (pairs by seed and by test image, from the ranks each result
stores). A row whose two-sided p-value is at least ``ALPHA`` gets ``Cell.tied`` on its Sum: the
data do not show it to be worse. Rows that cannot be paired with the best (no shared seed,
different noise indices, no stored ranks, several configs of one run) are left unmarked and
counted in the board's note. The test is seeded, so a board is the same every time it is built.

``mark_provenance`` marks the measured rows whose results were accepted through ``ncbench submit``
(a ``seed-<s>.submission`` record beside them, read by ``build.collect``): ``Row.submitted`` holds
their sources, a note under the table names each source and code hash, ``dirty code`` marks seeds
accepted with ``--allow-dirty``; a row with a seed found twice with different results (local and
accepted) gets ≢ and a note naming both files.

``mark_checkpoints`` handles results of kind ``checkpoint`` (``ncbench evaluate``: released weights
scored by ncbench's evaluation). Their rows (``<method>@checkpoint``) are measured rows labelled
``released checkpoint``, with the files' sha256 and source in a note. A reported row of the same
method (case and a trailing ``*`` aside), backbone (where the paper gives one; ``sgr+saf`` is
``sgraf``), dataset, noise ratio and noise protocol (real-noise benchmarks have none) gets, on the
Sum of each benchmark the checkpoint was evaluated on, ✓ when |Δ| ≤ ``CHECK_TOLERANCE`` and ✗
beyond, Δ = evaluated − reported, with a note per check (``CHECK_NOTE`` says why the tolerance).
"""

from __future__ import annotations

from typing import Any

import re

from ..compare import RowKey, compare_rows, in_row, select_row
from ..errors import NcbenchError
from ..results import noise_of, row_of
from .aggregate import views
from .layout import (
    CHECK_FAIL,
    CHECK_OK,
    CHECK_TOLERANCE,
    RELEASED,
    REAL_NOISE_BENCHMARKS,
    SHORT,
    Board,
    CheckpointCheck,
    Released,
    Row,
)
from .markdown import LOCAL_CONFLICT_MARK, SUBMITTED, TIED_MARK, check_text

ALPHA = 0.05
PERMUTATIONS = 2000
TIED_NOTE = (f"{TIED_MARK} Sum not significantly below the best measured Sum of its noise group: paired permutation "
             f"test over seeds and test images (two-sided, α = {ALPHA}, {PERMUTATIONS:,} permutations, from the "
             "stored ranks; `ncbench compare` gives the interval).")


CHECKPOINT_KIND = "checkpoint"  # meta.kind of the results ``ncbench evaluate`` writes (external.evaluate.KIND)
CHECK_NOTE = (f"{CHECK_OK} / {CHECK_FAIL} on a reported Sum: a released checkpoint of the same method, backbone, "
              "dataset, noise ratio and noise protocol was scored by `ncbench evaluate`; Δ = evaluated − reported; "
              f"{CHECK_OK} when |Δ| ≤ {CHECK_TOLERANCE:g} rSum, {CHECK_FAIL} beyond. The same weights on the same "
              "features give the same ranks: only the rounding of six printed recalls (≤ 0.3) and a few near-tied "
              "ranks move the Sum. A retrained model moves it by the field's run-to-run spread, 5 to 11 rSum "
              "(CRCL's author reran F30K 80% to 419.1 against the paper's 412.2; DECL's rerun of NCR gave 496.7 "
              "against 491.1): "
              f"{CHECK_FAIL} says the released weights are not the model behind the number")
BACKBONE_ALIASES = {"sgr+saf": "sgraf", "saf+sgr": "sgraf"}
HEX = re.compile(r"[0-9a-f]{12,64}")


def dataset_of(benchmark: str) -> str:
    return benchmark.rsplit("-", 1)[0] if benchmark.endswith(("-1k", "-5k")) else benchmark


def mark_not_worse(boards: list[Board], results: list[dict[str, Any]], alpha: float = ALPHA,
                   permutations: int = PERMUTATIONS) -> None:
    """Set ``tied`` / ``p_value`` on the Sum cells of contenders compared with their group's best."""
    for board in boards:
        if not board.is_retrieval:
            continue
        untested = 0
        for group in board.groups:
            contenders = [r for r in group.rows if not r.reported and not r.reference]
            for b in board.benchmarks:
                cells = [(row, row.cells[b]["rsum"]) for row in contenders if b in row.cells]
                if len(cells) < 2:
                    continue
                best_row, _ = max(cells, key=lambda rc: rc[1].mean)
                keys = {id(row): RowKey(row.method, row.backbone, dataset_of(b), group.ratio, board.noise,
                                        board.protocol) for row, _ in cells}
                try:
                    best = select_row(results, keys[id(best_row)])
                except NcbenchError:
                    untested += len(cells) - 1
                    continue
                for row, cell in cells:
                    if row is best_row:
                        continue
                    try:
                        out = compare_rows(best, select_row(results, keys[id(row)]), keys[id(best_row)],
                                           keys[id(row)], b, resamples=permutations)
                    except NcbenchError:
                        untested += 1
                        continue
                    cell.p_value = out.test.p_permutation
                    cell.tied = out.test.p_permutation >= alpha
        if any(c.p_value is not None for g in board.groups for r in g.rows for c in r.cells_of("rsum")):
            board.notes.append(TIED_NOTE + (f" {untested} comparison(s) could not be paired (no shared seed or "
                                            "no stored ranks) and are unmarked." if untested else ""))


def _row_results(board: Board, ratio: float, row: Row, results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The results behind a measured row (every benchmark's dataset), each once."""
    keys = {RowKey(row.method, row.backbone, dataset_of(b), ratio, board.noise, board.protocol) for b in row.cells}
    return [r for r in results if any(in_row(r, k) for k in keys)]


def mark_provenance(boards: list[Board], results: list[dict[str, Any]]) -> None:
    """Set ``submitted`` / ``code_hashes`` / ``dirty_code`` / ``differs`` on measured rows from their
    results' provenance (``_submission``) and conflicts (``_conflicts``), with a note per row."""
    for board in boards:
        for group in board.groups:
            for row in group.rows:
                if row.reported:
                    continue
                mine = _row_results(board, group.ratio, row, results)
                records = [r["_submission"] for r in mine if r.get("_submission") is not None]
                row.submitted = sorted({p.source for p in records})
                row.code_hashes = sorted({p.code_hash or "unknown" for p in records})
                row.dirty_code = any(p.code_problem for p in records)
                conflicts = [c for r in mine for c in r.get("_conflicts", [])]
                row.differs = bool(conflicts)
                where = f"{row.method} ({row.backbone}), noise {group.label}"
                if records:
                    board.notes.append(
                        f"{SUBMITTED} · {where}: {len(records)} of {len(mine)} seed(s) accepted through `ncbench "
                        f"submit`; source {', '.join(row.submitted)}; code {', '.join(row.code_hashes)}"
                        + "".join(f"; {problem}" for problem in sorted({p.code_problem for p in records
                                                                          if p.code_problem})))
                board.notes += [f"{LOCAL_CONFLICT_MARK} {c.line()}" for c in conflicts]


def is_checkpoint(result: dict[str, Any]) -> bool:
    """Whether a result is a released checkpoint's evaluation (``ncbench evaluate``)."""
    meta = result.get("meta")
    return isinstance(meta, dict) and meta.get("kind") == CHECKPOINT_KIND


def released_of(result: dict[str, Any]) -> Released:
    """What a checkpoint result says about its files (read defensively: names and the source are
    shown on one line, escaped by each renderer; a hash that is not hex shows as ``?``)."""
    meta = result.get("meta") or {}
    files = []
    for c in meta.get("checkpoints") or []:
        if isinstance(c, dict):
            sha = str(c.get("sha256", "")).lower()
            files.append(f"{_one_line(c.get('file', '?'))} (sha256 {sha[:12] if HEX.fullmatch(sha) else '?'})")
    claims = meta["claims"].get("rsum") if isinstance(meta.get("claims"), dict) else None
    return Released(row_of(result["identity"]), tuple(files), _one_line(meta.get("source") or ""),
                    float(claims) if isinstance(claims, (int, float)) else None)


def _one_line(value: Any) -> str:
    return " ".join(str(value).split())


def _method_key(name: str) -> str:
    return name.strip().rstrip("*").strip().lower()


def _backbone_key(name: str) -> str:
    name = name.strip().rstrip("?").lower()
    return BACKBONE_ALIASES.get(name, name)


def _checks_row(result: dict[str, Any], row: Row, benchmark: str, ratio: float, board: Board) -> bool:
    """Whether checkpoint ``result`` was evaluated on the reported ``row``'s benchmark and protocol."""
    ident = result["identity"]
    if (result.get("status") != "ok" or str(ident["protocol_version"]) != board.protocol
            or ident["dataset"] != dataset_of(benchmark) or float(ident["noise_ratio"]) != ratio
            or _method_key(ident["method"]) != _method_key(row.method)):
        return False
    if benchmark not in REAL_NOISE_BENCHMARKS and noise_of(ident) != board.noise:
        return False
    return not row.backbone or _backbone_key(row.backbone) == _backbone_key(str(ident["backbone"]))


def _evaluated(result: dict[str, Any], benchmark: str) -> float | None:
    for name, view in views(result["test"], result["identity"]["dataset"]):
        if name == benchmark:
            return float(view["rsum"])
    return None


def mark_checkpoints(boards: list[Board], results: list[dict[str, Any]]) -> None:
    """Label the rows of released checkpoints and put ✓ / ✗ with Δ on the reported Sums they check."""
    checkpoints = [r for r in results if is_checkpoint(r)]
    if not checkpoints:
        return
    for board in boards:
        if not board.is_retrieval:
            continue
        checked = False
        for group in board.groups:
            for row in group.rows:
                if not row.reported:
                    mine = _row_results(board, group.ratio, row, checkpoints)
                    row.released = sorted({released_of(r) for r in mine}, key=Released.text)
                    board.notes += [_released_note(row, group.label, rel) for rel in row.released]
                    continue
                for b, cells in row.cells.items():
                    for result in checkpoints:
                        value = _evaluated(result, b) if _checks_row(result, row, b, group.ratio, board) else None
                        if value is None:
                            continue
                        check = CheckpointCheck(released_of(result), value, cells["rsum"].mean)
                        cells["rsum"].checks.append(check)
                        board.notes.append(_check_note(row, b, group.label, check))
                        checked = True
        if checked:
            board.notes.insert(0, CHECK_NOTE)


def _released_note(row: Row, label: str, rel: Released) -> str:
    claims = "" if rel.claims is None else f"; claimed rSum {rel.claims:.1f}"
    return f"{RELEASED} · {row.method} ({row.backbone}), noise {label}: {rel.text()}{claims}"


def _check_note(row: Row, benchmark: str, label: str, check: CheckpointCheck) -> str:
    return (f"{check_text(check)} · {row.method} (reported, {row.source}), {SHORT.get(benchmark, benchmark)} noise "
            f"{label}: reported Sum {check.reported:.1f}; the released checkpoint {check.released.row} gives "
            f"{check.evaluated:.1f} here ({check.released.text()})")
