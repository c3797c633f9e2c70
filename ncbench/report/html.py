"""HTML rendering: one self-contained page per board plus an index (jinja2, autoescaped).

Pages need no server and no network: CSS and the sorting script are inline, plots are embedded
as base64 PNGs. Every string from a result file passes through jinja2's autoescaping, so a method
called ``<script>…`` shows as text; so does a submitted row's source, shown in the title of its
``submitted`` badge and in the notes, and a released checkpoint's file names and source, shown in the
title of its ``released checkpoint`` tag, of the ✓ / ✗ marks on the reported Sums it checked, and
in the notes.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from jinja2 import Environment, PackageLoader, select_autoescape

from .. import __version__
from .layout import EVAL_BUG_MARK, RELEASED, SHORT, Board
from .markdown import (
    DIRTY_CODE,
    FAIRNESS,
    FLOOR_MARK,
    LOCAL_CONFLICT_MARK,
    REFERENCE_LABELS,
    SUBMITTED,
    TIED_MARK,
    board_notes,
    check_text,
    fairness,
)
from .paths import slug


@dataclass
class Figure:
    caption: str
    png: bytes

    @property
    def png_b64(self) -> str:
        return base64.b64encode(self.png).decode("ascii")


def templates() -> Environment:
    """The Jinja environment of the pages (autoescaping every value)."""
    return Environment(loader=PackageLoader("ncbench.report", "templates"),
                       autoescape=select_autoescape(["html"], default=True), trim_blocks=False)


def page_name(board: Board) -> str:
    """The file of a board's page (slugged: its protocol and key come from result files)."""
    return slug(f"leaderboard-p{board.protocol}-{board.key}") + ".html"


def _columns(board: Board) -> list[dict]:
    cols, index = [], 3
    for b in board.benchmarks:
        for label, m in zip(board.headers, board.metrics):
            cols.append({"label": label, "index": index, "cls": "sortable", "title": f"{SHORT.get(b, b)} {m}"})
            index += 1
    for label in FAIRNESS:
        cols.append({"label": label, "index": index, "cls": "sortable text", "title": label})
        index += 1
    return cols


def render_board(board: Board, figures: list[Figure] | None = None) -> str:
    return templates().get_template("board.html").render(
        board=board, columns=_columns(board), metrics=board.metrics, fairness=fairness, figures=figures or [],
        n_fairness=len(FAIRNESS), notes=board_notes(board) + board.notes, references=REFERENCE_LABELS,
        floor_mark=FLOOR_MARK, tied_mark=TIED_MARK, local_conflict_mark=LOCAL_CONFLICT_MARK, submitted=SUBMITTED,
        dirty_code=DIRTY_CODE, released=RELEASED, check_text=check_text, eval_bug_mark=EVAL_BUG_MARK,
    )


def render_html(boards: list[Board], figures: dict[str, list[Figure]] | None = None) -> dict[str, str]:
    """File name → page, for every board and ``index.html``."""
    figures = figures or {}
    pages = {page_name(b): render_board(b, figures.get(page_name(b))) for b in boards}
    listing = [{
        "href": page_name(b), "title": b.title, "protocol": b.protocol,
        "measured": sum(not r.reported for g in b.groups for r in g.rows),
        "reported": sum(r.reported for g in b.groups for r in g.rows),
    } for b in boards]
    pages["index.html"] = templates().get_template("index.html").render(
        pages=listing, version=__version__)
    return pages
