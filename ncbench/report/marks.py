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
"""

from __future__ import annotations

from typing import Any

from ..compare import RowKey, compare_rows, in_row, select_row
from ..errors import NcbenchError
from .layout import Board, Row
from .markdown import LOCAL_CONFLICT_MARK, SUBMITTED, TIED_MARK

ALPHA = 0.05
PERMUTATIONS = 2000
TIED_NOTE = (f"{TIED_MARK} Sum not significantly below the best measured Sum of its noise group: paired permutation "
             f"test over seeds and test images (two-sided, α = {ALPHA}, {PERMUTATIONS:,} permutations, from the "
             "stored ranks; `ncbench compare` gives the interval).")


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
