"""``ncbench submit``: validate result files and copy the accepted ones into the leaderboard.

``--check`` prints the same verdicts as a real submit (``submission.review`` decides them both) and
only skips the writing (``submission.accept``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import ConfigError

NAMES = ("submit",)


def add_parser(sub) -> None:
    sm = sub.add_parser(
        "submit", help="validate result files and copy the accepted ones into the leaderboard",
        description="Validate result files against the published JSON Schema (ncbench/schema/result.schema.json) and "
                    "the protocol (rSum = sum of the six recalls, ranks within their test set, known protocol version, "
                    "canonical noise index, complete seed sets {0, 1, 2}, reference rows only from ncbench's own probe "
                    "and clean_oracle, committed code: a result made by uncommitted or unrecorded code is refused "
                    "unless --allow-dirty), then copy the accepted ones into <dest>/ with their provenance (code "
                    "hash; source: the repository URL and commit holding the method file, or 'local'), shown as a "
                    "'submitted' badge on the boards. --check prints the verdicts a submit would give and copies "
                    "nothing. Files are read as JSON data only; "
                    "nothing in a submission is executed. Only regular files are read (no symbolic links, FIFOs or "
                    "devices), at most 64 MiB each, and every number must be finite (no NaN or Infinity).",
        epilog="example:\n  ncbench submit results/protocol-1/synthetic/noise-0.2/mymethod\n"
               "  ncbench leaderboard --with-reported     (includes leaderboards/results/)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sm.add_argument("paths", nargs="*", metavar="RESULTS", help="result .json files or folders (searched recursively)")
    sm.add_argument("--dest", default="leaderboards/results", help="where accepted files go (default: leaderboards/results)")
    sm.add_argument("--check", action="store_true", help="print the verdicts a submit would give; copy nothing")
    sm.add_argument("--replace", action="store_true", help="overwrite a different accepted result of the same run")
    sm.add_argument("--allow-dirty", action="store_true",
                    help="accept results made by uncommitted or unrecorded code (no `code` record, no commit, "
                         "env.git.dirty); their rows are marked 'dirty code'")
    sm.add_argument("--source", metavar="URL@COMMIT",
                    help="where the method's code is (default: the origin URL and commit of the git checkout holding "
                         "the method file, when that commit holds the code that ran; else 'local')")
    sm.add_argument("--print-schema", action="store_true", help="print the result JSON Schema and exit")


def command(args) -> int:
    import json

    from ..submission import Source, accept, result_schema, review

    if args.print_schema:
        print(json.dumps(result_schema(), indent=2))
        return 0
    if not args.paths:
        raise ConfigError("give result files or folders to submit (or --print-schema)")
    source = Source.parse(args.source) if args.source is not None else None
    verdicts = review(args.paths, Path(args.dest), replace=args.replace, allow_dirty=args.allow_dirty, source=source)
    if not args.check:
        accept(verdicts)
    for v in verdicts:
        for line in v.lines():
            print(line, file=sys.stdout if v.accepted else sys.stderr)
    refused = sum(not v.accepted for v in verdicts)
    print(f"{len(verdicts) - refused} accepted, {refused} refused" + (" (check only; nothing copied)" if args.check else ""))
    return 2 if refused else 0
