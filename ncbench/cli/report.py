"""``ncbench report``: one self-contained HTML page per run."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError

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
    from ..results import noise_folder, noise_type_of

    ident = result["identity"]
    return (f"p{ident['protocol_version']}-{ident['dataset']}-{noise_folder(ident['noise_ratio'], noise_type_of(ident))}"
            f"-{ident['method']}-{ident['backbone']}-seed{ident['seed']}.html")


def command(args) -> int:
    from ..atomic import write_text_atomic
    from ..report.run_page import render_run_page
    from ..results import read_result, result_files

    missing = [p for p in args.paths if not Path(p).exists()]
    if missing:
        raise ConfigError(f"{missing[0]}: no such result file or folder")
    files = result_files(args.paths)
    if not files:
        raise ConfigError(f"no result files under {', '.join(args.paths)}")
    for f in files:
        result = read_result(f)
        result["_path"] = str(f)
        target = Path(args.out) / _page_name(result) if args.out else f.with_suffix(".html")
        write_text_atomic(target, render_run_page(result))
        print(f"{f} -> {target}")
    return 0
