"""Write the golden vectors: run every parity case's official function on its fixed inputs and store
inputs and outputs as ``golden/<case>.npz`` (small arrays, no official code), with the repositories
and commits they came from in ``golden/SOURCES.json``. CI compares ncbench with them on every commit.

    NCBENCH_OFFICIAL=/path/to/checkouts python -m tests.parity.make_golden [CASE ...]

(the cases are discovered from ``cases/<name>.py``; without a CASE, every one is written)

(``NCBENCH_OFFICIAL`` holds one checkout per repository, named as in ``official.REPOSITORIES``.)
Re-run it after changing a case's inputs, and commit the files it writes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from ncbench.atomic import write_atomic, write_text_atomic

from .cases import discover
from .official import REPOSITORIES, checkout

GOLDEN = Path(__file__).parent / "golden"


def head(name: str) -> str:
    path = checkout(name)
    try:
        out = subprocess.run(["git", "-C", str(path), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        return out.stdout.strip() or f"{REPOSITORIES[name][1]} (as fetched)"
    except OSError:
        return f"{REPOSITORIES[name][1]} (as fetched)"


def main(names: list[str]) -> int:
    cases = discover()
    unknown = sorted(set(names) - set(cases))
    if unknown:
        print(f"unknown case(s): {', '.join(unknown)} (known: {', '.join(sorted(cases))})", file=sys.stderr)
        return 2
    missing = [n for n in REPOSITORIES if checkout(n) is None]
    if missing:
        print(f"checkouts missing under $NCBENCH_OFFICIAL: {', '.join(REPOSITORIES[n][2] for n in missing)}", file=sys.stderr)
        return 2
    for name in names or sorted(cases):
        data = cases[name].make()
        cases[name].check(data)  # never store vectors ncbench does not reproduce without saying so
        write_atomic(GOLDEN / f"{name}.npz", lambda f, d=data: np.savez_compressed(f, **d))
        print(f"{name}: {len(data)} arrays")
    sources = {n: {"repository": r, "commit": head(n)} for n, (r, _, _) in REPOSITORIES.items()}
    write_text_atomic(GOLDEN / "SOURCES.json", json.dumps(sources, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
