"""``ncbench report``: one self-contained HTML page per run.

A result file given by name must be valid (else one error line naming it, exit 2, nothing
written); an invalid one found in a given folder is skipped with a warning naming it. Page names
are slugged and every page is checked to land inside its folder (``report.paths``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import ConfigError, ResultError

NAMES = ("report",)


def add_parser(sub) -> None:
    rp = sub.add_parser(
        "report", help="write one self-contained HTML page per run (metrics, curves, split, config, environment)",
        description="For each result file (or every result under a folder): a page with the run's identity, test and "
                    "validation metrics, training curves over its sweep group's mean ± std (the other seeds beside "
                    "it), the loss split at the selected epoch, the per-epoch history, config and recipe, environment, "
                    "timing and GPU-hours. Images are embedded; the page needs no other file.")
    rp.add_argument("paths", nargs="+", metavar="RESULT", help="result .json files or folders (searched recursively)")
    rp.add_argument("--out", metavar="DIR", help="write the pages here (default: beside each result, seed-<s>.html)")


def _page_name(result: dict) -> str:
    from ..report.paths import slug
    from ..results import noise_folder, noise_of, row_of

    ident = result["identity"]
    return slug(f"p{ident['protocol_version']}-{ident['dataset']}-{noise_folder(ident['noise_ratio'], noise_of(ident))}"
                f"-{row_of(ident)}-{ident['backbone']}-seed{ident['seed']}") + ".html"


def _read(files: list[Path], named: set[Path]) -> list[dict]:
    """The valid results of ``files``; an invalid one is an error when it was named, else a warning."""
    from ..results import read_result

    results = []
    for f in files:
        try:
            result = read_result(f)
        except ResultError as exc:
            if f in named:
                raise
            print(f"warning: skipped unreadable result: {exc}", file=sys.stderr)
            continue
        result["_path"] = str(f)
        results.append(result)
    return results


def command(args) -> int:
    from ..atomic import write_text_atomic
    from ..report.paths import output_path
    from ..report.run_page import render_run_page
    from ..results import result_files

    missing = [p for p in args.paths if not Path(p).exists()]
    if missing:
        raise ConfigError(f"{missing[0]}: no such result file or folder")
    files = result_files(args.paths)
    if not files:
        raise ConfigError(f"no result files under {', '.join(args.paths)}")
    for result in _read(files, {Path(p) for p in args.paths if not Path(p).is_dir()}):
        f = Path(result["_path"])
        target = (output_path(args.out, _page_name(result)) if args.out
                  else output_path(f.parent, f.with_suffix(".html").name))
        write_text_atomic(target, render_run_page(result))
        print(f"{f} -> {target}")
    return 0
