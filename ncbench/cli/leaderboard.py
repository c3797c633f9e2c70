"""``ncbench leaderboard``: result files into tables in the papers' layout."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import ConfigError
from .options import names

NAMES = ("leaderboard",)


EPILOG = """\
examples:
  ncbench leaderboard                               measured results of ./results into ./boards
  ncbench leaderboard --with-reported               ... with the papers' numbers as marked reference rows
  ncbench leaderboard --results runs/a --results runs/b --format md,html --out site/
"""

SUBMISSIONS = Path("leaderboards") / "results"  # where `ncbench submit` puts accepted results


def protected_folders() -> list[Path]:
    """Where boards are never written: the leaderboards/ folder ncbench's reference data lives in
    (``ncbench.reference``: the papers' numbers, the canonical noise indices), and ./leaderboards/,
    which holds the accepted submissions."""
    from importlib import resources

    reference = Path(str(resources.files("ncbench.reference"))).resolve()
    return [reference.parent if reference.parent.name == "leaderboards" else reference,
            SUBMISSIONS.parent.resolve()]


def check_out(out: Path) -> None:
    """Refuse an --out folder inside a ``protected_folders`` one."""
    target = out.resolve()
    for folder in protected_folders():
        if target.is_relative_to(folder):
            raise ConfigError(f"--out {out}: inside {folder}, which holds the reference data and accepted submissions; "
                              "write the boards elsewhere (default: ./boards)")

def add_parser(sub) -> None:
    lb = sub.add_parser(
        "leaderboard", help="aggregate result files into tables in the papers' layout (Markdown, HTML, LaTeX)",
        description="Aggregate result files over seeds (mean, sample std, 95% CI) into tables laid out like BiCro's "
                    "Table 1: rows grouped by noise ratio then method, a column group per benchmark. Writes "
                    "leaderboard.md/.tex/.csv, index.html with one self-contained page per table, and plots/.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    lb.add_argument("--results", action="append", metavar="DIR",
                    help="results folder; repeatable (default: ./results and, if present, the accepted submissions "
                         "in ./leaderboards/results)")
    lb.add_argument("--out", default="boards",
                    help="output folder (default: ./boards; never the repository's leaderboards/, which holds the "
                         "reference data and accepted submissions)")
    lb.add_argument("--format", type=names, default=["md", "html", "tex"], metavar="md,html,tex",
                    help="formats to write (default: all three; leaderboard.csv is always written)")
    lb.add_argument("--with-reported", action="store_true",
                    help="add the papers' published numbers as reference rows, marked 'reported'")
    lb.add_argument("--allow-mixed", action="store_true",
                    help="show runs trained on a different noise index (marked ‡) instead of refusing them")
    lb.add_argument("--no-plots", action="store_true", help="skip the PNG plots")


def command(args) -> int:
    from ..report.build import LeaderboardRequest, build_leaderboard

    check_out(Path(args.out))
    folders = [Path(p) for p in args.results] if args.results else [Path("results")]
    if not args.results and SUBMISSIONS.is_dir():
        folders.append(SUBMISSIONS)  # accepted submissions
    req = LeaderboardRequest(results=folders, out=Path(args.out), formats=tuple(args.format),
                             with_reported=args.with_reported, allow_mixed=args.allow_mixed, plots=not args.no_plots)
    out = build_leaderboard(req)
    for err in out.skipped:
        print(f"warning: skipped unreadable result: {err}", file=sys.stderr)
    for w in out.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(out.markdown)
    shown = sorted({p.parent if p.parent.name == "plots" else p for p in out.written})
    print(f"read {out.n_results} result file(s) from {', '.join(map(str, folders))} ({len(out.skipped)} unreadable); "
          f"wrote {len(out.written)} file(s):")
    for p in shown:
        print(f"  {p}{'/' if p.name == 'plots' else ''}")
    return 0
