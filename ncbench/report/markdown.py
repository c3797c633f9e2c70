"""Markdown rendering of leaderboard boards (GitHub tables via tabulate).

Column groups per benchmark, as in BiCro's Table 1: ``<bench> i2t R@1 | R@5 | R@10 | t2i R@1 |
R@5 | R@10 | Sum``, then the fairness columns. Best measured value per column and noise group in
bold; reported rows say so in the Source column, with the citations listed under the table.
"""

from __future__ import annotations

from tabulate import tabulate

from .layout import SHORT, Board, Row

FAIRNESS = ["Backbone", "Ens.", "Selection", "Seeds", "GPU-h"]
MIXED_MARK = "‡"


def headers(board: Board) -> list[str]:
    cols = ["Noise", "Method", "Source"]
    for b in board.benchmarks:
        cols += [f"{SHORT.get(b, b)} {board.headers[0]}", *board.headers[1:]]
    return cols + FAIRNESS


def fairness(row: Row) -> list[str]:
    if row.reported:
        return [row.backbone or "?", str(row.ensemble_size) if row.ensemble_size else "?", "—", "—", "—"]
    return [row.backbone, str(row.ensemble_size), row.selection, row.seeds_text(), f"{row.gpu_hours:.2f}"]


def row_cells(board: Board, row: Row, bold: str = "**") -> list[str]:
    out = []
    for b in board.benchmarks:
        for m in board.metrics:
            c = row.cells.get(b, {}).get(m)
            out.append("—" if c is None else (f"{bold}{c.text()}{bold}" if c.best else c.text()))
    return out


def method_label(row: Row) -> str:
    return row.method + (f" {MIXED_MARK}" if row.mixed else "")


def source_label(row: Row) -> str:
    return f"reported ({row.source})" if row.reported else "measured"


def render_board(board: Board) -> str:
    rows = []
    for g in board.groups:
        for r in g.rows:
            rows.append([g.label, method_label(r), source_label(r), *row_cells(board, r), *fairness(r)])
    text = f"## {board.title} (protocol {board.protocol})\n\n"
    text += tabulate(rows, headers(board), tablefmt="github", disable_numparse=True) + "\n"
    notes = []
    if board.has_measured:
        notes.append("Measured rows: mean ± sample std over seeds (n = Seeds); **bold**: best measured value in "
                     "its noise group. GPU-h: total over seeds (0 on CPU).")
    if any(r.mixed for g in board.groups for r in g.rows):
        notes.append(f"{MIXED_MARK} trained on a different noise index than the other rows of its noise group "
                     "(shown because of --allow-mixed; not comparable).")
    notes += board.notes
    for key, citation in board.sources.items():
        notes.append(f"reported ({key}): {citation}. Numbers as published, **not reproduced by ncbench**.")
    if notes:
        text += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    return text


def render_markdown(boards: list[Board]) -> str:
    head = ("# ncbench leaderboard\n\nRetrieval on each benchmark's test split. Measured numbers are computed "
            "from result files; reported numbers are the papers' own and are marked as such.\n\n")
    if not boards:
        return head + "_No successful results found._\n"
    return head + "\n".join(render_board(b) for b in boards)
