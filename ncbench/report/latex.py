"""LaTeX rendering of leaderboard boards (booktabs; one ``table*`` per board).

Same content as the Markdown: a column group per benchmark with ``\\multicolumn`` headers, rows
grouped by noise ratio with ``\\multirow``-free labels (the first row of a group carries it), best
measured values in ``\\textbf``, reported rows in italics with a dagger and the sources in the
caption; submitted rows say ``(submitted)`` after the method, their sources in the caption; a
released checkpoint's row says ``(released checkpoint)``, a reported Sum it checked
``$\\surd$ +0.4`` or ``$\\times$ -6.9`` (✓ / ✗ with Δ; no package beyond booktabs and graphicx), a
reported row printed by a buggy evaluation ``$^\\S$``. Every piece of text from a result file is
escaped.
"""

from __future__ import annotations

from .layout import CHECK_FAIL, CHECK_OK, EVAL_BUG_MARK, LABELS, RELEASED, Board, Row
from .markdown import FAIRNESS, LOCAL_CONFLICT_MARK, REFERENCE_LABELS, TIED_MARK, badges, check_text, fairness

_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
            "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
            "<": r"\textless{}", ">": r"\textgreater{}"}


MARKS = {TIED_MARK: r"$^\diamond$", LOCAL_CONFLICT_MARK: r"$^{\not\equiv}$", CHECK_OK: r"$\surd$",
         CHECK_FAIL: r"$\times$", EVAL_BUG_MARK: r"$^\S$", "Δ": r"$\Delta$", "≤": r"$\leq$", "−": "--"}


def escape(text: str) -> str:
    return "".join(_SPECIAL.get(ch, ch) for ch in str(text))


def _cell(row: Row, bench: str, metric: str) -> str:
    c = row.cells.get(bench, {}).get(metric)
    if c is None:
        return "--"
    text = c.text().replace(" ± ", r"$\pm$")
    text = rf"\textbf{{{text}}}" if c.best else text
    text += "".join(" " + _marked(check_text(k), MARKS) for k in c.checks)
    return text + (r"$^\diamond$" if c.tied else "")


def _marked(text: str, marks: dict[str, str]) -> str:
    for mark, tex in marks.items():
        text = text.replace(mark, tex)
    return text


def render_board(board: Board) -> str:
    nb, nm = len(board.benchmarks), len(board.metrics)
    spec = "ll" + ("|" + "c" * nm) * nb + "|lccccl"
    lines = [r"\begin{table*}[t]", r"\centering", r"\resizebox{\textwidth}{!}{%", rf"\begin{{tabular}}{{{spec}}}",
             r"\toprule"]
    groups = " & ".join(rf"\multicolumn{{{nm}}}{{c|}}{{{escape(LABELS.get(b, b))}}}" for b in board.benchmarks)
    lines.append(rf" & & {groups} & \multicolumn{{{len(FAIRNESS)}}}{{c}}{{Fairness}} \\")
    rule_cols = [f"{3 + nm * i}-{2 + nm * (i + 1)}" for i in range(nb)]
    lines.append(" ".join(rf"\cmidrule(lr){{{c}}}" for c in rule_cols))
    if board.is_retrieval:
        per = r"\multicolumn{3}{c}{Image$\to$Text} & \multicolumn{3}{c}{Text$\to$Image} & {}"
        lines.append(" & & " + " & ".join([per] * nb) + r" & & & & & & \\")
        sub = " & ".join(["R@1 & R@5 & R@10 & R@1 & R@5 & R@10 & Sum"] * nb)
    else:
        sub = " & ".join([" & ".join(escape(h).replace("ρ", r"$\rho$") for h in board.headers)] * nb)
    lines.append(rf"Noise & Method & {sub} & Backbone & Ens. & Selection & Seeds & GPU-h & Recipe \\")
    for g in board.groups:
        lines.append(r"\midrule")
        for i, r in enumerate(g.rows):
            label = escape(g.label) if i == 0 else ""
            name = escape(r.method) + (r"$^\dagger$" if r.reported else "") + (r"$^\ddagger$" if r.mixed else "")
            name += r"$^\triangledown$" if r.below_floor else ""
            name += r"$^{\neq}$" if r.conflict else ""
            name += r"$^{\not\equiv}$" if r.differs else ""
            name += r"$^\S$" if r.eval_bugs else ""
            name += rf" \small({RELEASED})" if r.released else ""
            name += rf" \small({escape(REFERENCE_LABELS[r.reference])})" if r.reference in REFERENCE_LABELS else ""
            name += rf" \small({escape(', '.join(badges(r)))})" if badges(r) else ""
            if r.reported:
                name = rf"\textit{{{name}}}"
            cells = [_cell(r, b, m) for b in board.benchmarks for m in board.metrics]
            fair = [escape(x) for x in fairness(r)]
            lines.append(" & ".join([label, name, *cells, *fair]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}}"]
    caption = f"{board.title}, protocol {board.protocol}. Measured: mean $\\pm$ sample std over seeds; bold: best measured."
    if board.sources:
        caption += " $^\\dagger$Reported by the papers, not reproduced: " + "; ".join(
            f"{escape(k)}: {escape(v)}" for k, v in board.sources.items()) + "."
    if any(r.mixed for g in board.groups for r in g.rows):
        caption += " $^\\ddagger$Different noise index."
    if any(r.below_floor for g in board.groups for r in g.rows):
        caption += " $^\\triangledown$Below the training-free floor (mean rSum under the probe's)."
    if any(r.conflict for g in board.groups for r in g.rows):
        caption += " $^{\\neq}$Published copies of this reported row disagree; all are shown."
    if board.notes:
        caption += " " + " ".join(_marked(escape(n), MARKS) + "." for n in board.notes)
    lines += [rf"\caption{{{caption}}}", rf"\label{{tab:ncbench-{escape(board.key)}}}", r"\end{table*}"]
    return "\n".join(lines) + "\n"


def render_latex(boards: list[Board]) -> str:
    head = "% ncbench leaderboard; needs \\usepackage{booktabs,graphicx}\n"
    return head + "\n".join(render_board(b) for b in boards)
