"""``ncbench submit``: validate result files and copy the accepted ones into the leaderboard."""

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
                    "and clean_oracle), then copy the accepted ones into <dest>/. Files are read as JSON data only; "
                    "nothing in a submission is executed. Only regular files are read (no symbolic links, FIFOs or "
                    "devices), at most 64 MiB each, and every number must be finite (no NaN or Infinity).",
        epilog="example:\n  ncbench submit results/protocol-1/synthetic/noise-0.2/mymethod\n"
               "  ncbench leaderboard --with-reported     (includes leaderboards/results/)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sm.add_argument("paths", nargs="*", metavar="RESULTS", help="result .json files or folders (searched recursively)")
    sm.add_argument("--dest", default="leaderboards/results", help="where accepted files go (default: leaderboards/results)")
    sm.add_argument("--check", action="store_true", help="validate only; copy nothing")
    sm.add_argument("--replace", action="store_true", help="overwrite a different accepted result of the same run")
    sm.add_argument("--print-schema", action="store_true", help="print the result JSON Schema and exit")


def command(args) -> int:
    import json

    from ..submission import accept, result_schema, review

    if args.print_schema:
        print(json.dumps(result_schema(), indent=2))
        return 0
    if not args.paths:
        raise ConfigError("give result files or folders to submit (or --print-schema)")
    verdicts = review(args.paths, Path(args.dest))
    if not args.check:
        accept(verdicts, replace=args.replace)
    for v in verdicts:
        if v.accepted:
            what = "valid" if args.check else (v.note or "accepted")
            print(f"{what}: {v.path}" + ("" if args.check else f" -> {v.dest}"))
        else:
            print(f"refused: {v.path}", file=sys.stderr)
            for reason in v.reasons:
                print(f"    {reason}", file=sys.stderr)
    refused = sum(not v.accepted for v in verdicts)
    print(f"{len(verdicts) - refused} accepted, {refused} refused" + (" (check only; nothing copied)" if args.check else ""))
    return 2 if refused else 0
