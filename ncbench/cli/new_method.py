"""``ncbench new-method``: write the skeleton of a method plugin."""

from __future__ import annotations

from pathlib import Path

NAMES = ("new-method",)


def add_parser(sub) -> None:
    nmth = sub.add_parser("new-method", help="write the skeleton of a new method plugin",
                          description="Write methods/NAME.py: a registered method that trains as written, with TODOs "
                                      "where the method's own ideas go. See methods/README.md for the walk-through.")
    nmth.add_argument("name", help="registry name, e.g. mymethod (lower case, digits, _)")
    nmth.add_argument("--template", choices=["single", "coteaching"], default="single",
                      help="single network (default) or the NCR/BiCro co-teaching skeleton")
    nmth.add_argument("--dir", default="methods", help="folder to write into (default: ./methods, the repo's methods folder)")


def command(args) -> int:
    from ..registry import METHODS
    from ..scaffold import write_skeleton

    path = write_skeleton(args.name, Path(args.dir), args.template, METHODS.names())
    print(f"wrote {path} ({args.template} template). Next:\n"
          f"  1. fill in the TODOs (what the method does, its defaults, its deviations);\n"
          f"  2. pip install -e .   (once, so the repo's methods folder is what ncbench imports)\n"
          f"  3. ncbench run --methods {args.name},vanilla --noise 0.2,0.6 --seeds 0,1,2\n"
          f"  4. ncbench leaderboard; ncbench submit results/protocol-1/synthetic   (see methods/README.md)")
    return 0
