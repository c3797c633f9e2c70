"""``ncbench list``: the registered methods, backbones and datasets, and plugins that failed to load."""

from __future__ import annotations

NAMES = ("list",)


def add_parser(sub) -> None:
    ls = sub.add_parser("list", help="show registered methods, backbones and datasets")
    ls.add_argument("kind", nargs="?", choices=["methods", "backbones", "datasets"], help="only this kind")


def command(args) -> int:
    from ..registry import REGISTRIES

    status = 0
    for kind, reg in REGISTRIES.items():
        if args.kind and kind != args.kind:
            continue
        print(f"{kind}:")
        for e in reg.entries():
            src = "" if e.source == "builtin" else f"  [{e.source}]"
            print(f"  {e.name:12s} {e.description}{src}")
        for name, err in reg.load_errors.items():
            print(f"  {name:12s} FAILED TO LOAD: {err}")
            status = 1
    return status
