"""Markdown rendering of leaderboard boards (GitHub tables via tabulate).

Column groups per benchmark, as in BiCro's Table 1: ``<bench> i2t R@1 | R@5 | R@10 | t2i R@1 |
R@5 | R@10 | Sum``, then the fairness columns. Best measured value per column and noise group in
bold; reported rows say so in the Source column, with the citations listed under the table. A
released checkpoint's row says ``measured, released checkpoint``; a reported Sum it checked shows
✓ or ✗ with Δ (``check_text``); a reported row printed by a buggy evaluation is marked §.
"""

from __future__ import annotations

from tabulate import tabulate

from .layout import CHECK_FAIL, CHECK_OK, EVAL_BUG_MARK, RELEASED, SHORT, Board, CheckpointCheck, Row

FAIRNESS = ["Backbone", "Ens.", "Selection", "Seeds", "GPU-h", "Recipe"]
MIXED_MARK = "‡"
FLOOR_MARK = "▽"
CONFLICT_MARK = "≠"
TIED_MARK = "◇"  # Sum not significantly below the best of its noise group (``marks``)
LOCAL_CONFLICT_MARK = "≢"  # a seed of this row has two different results (local and accepted): ``build.collect``
SUBMITTED = "submitted"  # accepted through ``ncbench submit`` (``marks.mark_provenance``)
DIRTY_CODE = "dirty code"  # submitted with --allow-dirty: made by uncommitted or unrecorded code
CONFLICT_NOTE = (f"{CONFLICT_MARK} published copies of this reported row disagree (different sources, different "
                 "numbers for the same method, backbone and noise): all are shown, none is chosen.")
REFERENCE_LABELS = {"floor": "floor (training-free)", "ceiling": "ceiling (clean pairs only)"}


def headers(board: Board) -> list[str]:
    cols = ["Noise", "Method", "Source"]
    for b in board.benchmarks:
        cols += [f"{SHORT.get(b, b)} {board.headers[0]}", *board.headers[1:]]
    return cols + FAIRNESS


def fairness(row: Row) -> list[str]:
    if row.reported:
        return [row.backbone or "?", str(row.ensemble_size) if row.ensemble_size else "?", "—", "—", "—", "—"]
    return [row.backbone, str(row.ensemble_size), row.selection, row.seeds_text(), f"{row.gpu_hours:.2f}",
            row.recipe or "—"]


def check_text(check: CheckpointCheck) -> str:
    """``✓ +0.4`` / ``✗ -6.9``: whether the released checkpoint gives the reported Sum, and Δ."""
    return f"{CHECK_OK if check.ok else CHECK_FAIL} {check.delta:+.1f}"


def row_cells(board: Board, row: Row, bold: str = "**") -> list[str]:
    out = []
    for b in board.benchmarks:
        for m in board.metrics:
            c = row.cells.get(b, {}).get(m)
            text = "—" if c is None else (f"{bold}{c.text()}{bold}" if c.best else c.text())
            text += "".join(f" {check_text(k)}" for k in c.checks) if c is not None else ""
            out.append(text + (f" {TIED_MARK}" if c is not None and c.tied else ""))
    return out


def method_label(row: Row) -> str:
    return (row.method + (f" {MIXED_MARK}" if row.mixed else "") + (f" {FLOOR_MARK}" if row.below_floor else "")
            + (f" {CONFLICT_MARK}" if row.conflict else "") + (f" {LOCAL_CONFLICT_MARK}" if row.differs else "")
            + (f" {EVAL_BUG_MARK}" if row.eval_bugs else ""))


def badges(row: Row) -> list[str]:
    """A measured row's provenance badges: ``submitted`` and ``dirty code`` (none for a row measured here)."""
    return ([SUBMITTED] if row.submitted else []) + ([DIRTY_CODE] if row.dirty_code else [])


def source_label(row: Row) -> str:
    if row.reported:
        return f"reported ({row.source})"
    what = f"measured, {REFERENCE_LABELS[row.reference]}" if row.reference in REFERENCE_LABELS else "measured"
    what += f", {RELEASED}" if row.released else ""
    return ", ".join([what, *badges(row)])


def board_notes(board: Board) -> list[str]:
    """The notes every renderer prints under a retrieval board (marks, references, recipes)."""
    rows = [r for g in board.groups for r in g.rows]
    notes = []
    if board.has_measured:
        notes.append("Measured rows: mean ± sample std over seeds (n = Seeds); bold: best measured value in "
                     "its noise group, reference rows left out. GPU-h: total over seeds (0 on CPU). Recipe: how the "
                     "options were chosen (tuned N: by `ncbench tune` with N trials on the dev split; paper: the "
                     "paper's own values; hand-set: a schedule set by hand for this dataset, not tuned; defaults: the method's "
                     "defaults, not tuned for this dataset; +opts: changed by the user).")
    if board.has_measured and board.is_retrieval and not any(r.reference == "floor" for r in rows):
        notes.append("No training-free floor measured for this table: run the sweep again with --references "
                     "(adds the probe and clean_oracle rows).")
    if any(r.reference for r in rows):
        notes.append("Reference rows, not contenders: the floor is the training-free probe (a closed-form "
                     "bag-of-words ridge map fitted on the noisy pairs as given), the ceiling the vanilla recipe "
                     "trained on the truly clean pairs only.")
    if any(r.below_floor for r in rows):
        notes.append(f"{FLOOR_MARK} below the training-free floor: mean rSum under the probe's in its noise group.")
    if any(r.mixed for r in rows):
        notes.append(f"{MIXED_MARK} trained on a different noise index than the other rows of its noise group "
                     "(shown because of --allow-mixed; not comparable).")
    if any(r.conflict for r in rows):
        notes.append(CONFLICT_NOTE)
    if any(c.printed is not None for r in rows for cells in r.cells.values() for c in cells.values()):
        notes.append("Reported Sums are recomputed from the printed recalls; \"(printed X)\": the paper printed "
                     "another Sum.")
    return notes


def render_board(board: Board) -> str:
    rows = []
    for g in board.groups:
        for r in g.rows:
            rows.append([g.label, method_label(r), source_label(r), *row_cells(board, r), *fairness(r)])
    text = f"## {board.title} (protocol {board.protocol})\n\n"
    text += tabulate(rows, headers(board), tablefmt="github", disable_numparse=True) + "\n"
    notes = board_notes(board) + board.notes
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
