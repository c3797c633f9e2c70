"""``ncbench status`` (alias ``plan``): the state of every run of a sweep and the time still needed.

A result file that cannot be read or is invalid shows as ``corrupt`` with a warning naming it and
saying why; the other runs are shown as usual. A finished result of the same config made by other
code than this process imports (or by unknown code: written before results recorded it) shows as
``stale-code`` with both code hashes, apart from ``stale`` (another config); neither counts as done.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import NcbenchError, ResultError
from .options import (
    planned_runs,
    sweep_options,
)

NAMES = ("status", "plan")


def add_parser(sub) -> None:
    st = sub.add_parser(
        "status", aliases=["plan"], help="show which runs of a sweep are done, running, failed or missing",
        description="For the sweep the same options would run: each run's state (done, failed, running in some "
                    "worker, partial with the epoch of its checkpoint, missing, stale: of another config, stale-code: "
                    "made by other code, corrupt), counts, and an estimate of the time still needed from the finished "
                    "runs of the same method/backbone/dataset. Starts nothing.")
    sweep_options(st, methods=["vanilla"], datasets=["synthetic"], noise=[0.0, 0.2, 0.6],
                   dataset_help="comma-separated datasets (default: synthetic)")


def _problem(path: Path) -> str:
    """Why the result file at ``path`` is unreadable (``results.read_result``'s message)."""
    from ..results import read_result

    try:
        read_result(path)
    except ResultError as exc:
        return str(exc)
    return f"{path}: changed while it was read"


def command(args) -> int:
    from collections import Counter

    import numpy as np
    from tabulate import tabulate

    from ..checkpoint import Checkpointer
    from ..code_identity import short
    from ..locks import is_locked
    from ..results import code_change, inspect_result, lock_path, result_path
    from ..runner import checkpoint_path

    runs, results = planned_runs(args), Path(args.results)
    if not results.is_dir():
        raise NcbenchError(f"results folder {str(results)!r} does not exist: give the --results of the sweep "
                           "(nothing has run there yet, or the path is mistyped)")
    rows, counts, seconds, epochs, done_epochs, gpu = [], Counter(), {}, {}, {}, False
    for cfg in runs:
        path = result_path(results, cfg)
        (state, r), detail = inspect_result(path, cfg.config_hash), ""
        key = (cfg.method, cfg.backbone, cfg.dataset)
        if state == "done":
            t = r["test"][r["test"]["primary"]]
            if "total_s" in (r.get("timings") or {}):
                seconds.setdefault(key, []).append(float(r["timings"]["total_s"]))
            if (r.get("meta") or {}).get("epochs"):
                epochs.setdefault(key, []).append(float(r["meta"]["epochs"]))
            gpu = gpu or str(r.get("env", {}).get("device", "")).startswith("cuda")
            detail = f"test rSum {t['rsum']:.1f}"
            if r.get("code_accepted"):  # kept by --accept-code-change: trained by other code
                trained, last = (r.get("code") or {}).get("hash"), r["code_accepted"][-1]
                detail += f" (trained by code {short(trained)}, accepted for {short(last['to'])} at {last['at']})"
        elif state == "failed":
            detail = str(r.get("error"))[:80]
        elif state == "stale-code":
            detail = f"made by other {code_change(r)}: `run` trains it again (--accept-code-change keeps it)"
        elif state == "corrupt":
            problem = _problem(path)
            print(f"warning: unreadable result: {problem}", file=sys.stderr)
            detail = problem.removeprefix(f"{path}: ")[:80]
        if state != "done":
            holder = is_locked(lock_path(path))
            found = Checkpointer(checkpoint_path(path), cfg.config_hash).where()  # one read of the file
            if found is not None and found.config_hash == cfg.config_hash:
                state, detail = ("partial" if state == "missing" else state), f"checkpoint {found.where}"
                done_epochs[cfg.config_hash] = found.epochs_done
            elif found is not None:  # interrupted with other --method-opt values than these
                state = "partial-other" if state == "missing" else state
                detail = (f"checkpoint {found.where} of another config ({found.config_hash[:12]}): give that run's "
                          "--method-opt values to see or resume it")
            if holder:
                state, detail = "running", f"{holder}" + (f"; {detail}" if detail else "")
        counts[state] += 1
        rows.append([state, cfg.label, detail])
    print(tabulate(rows, ["state", "run", "detail"], tablefmt="simple"))
    print("\n" + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + f" ({len(runs)} run(s))")
    todo = [cfg for cfg, row in zip(runs, rows) if row[0] != "done"]
    known, resumed = [], 0
    for c in todo:
        key = (c.method, c.backbone, c.dataset)
        if key not in seconds:
            continue
        left = 1.0  # the share of the run still to train: less what its checkpoint holds
        if c.config_hash in done_epochs and key in epochs:
            left = max(0.0, 1.0 - done_epochs[c.config_hash] / float(np.mean(epochs[key])))
            resumed += 1
        known.append(float(np.mean(seconds[key])) * left)
    if todo and not known:
        print(f"still to run: {len(todo)}; no time estimate yet (it needs a finished run of the same "
              "method/backbone/dataset)")
    elif todo:
        unit = "GPU-hours" if gpu else "hours"
        print(f"still to run: {len(todo)}; estimated {sum(known) / 3600:.2f} {unit} for {len(known)} of them "
              f"(mean time of finished runs of the same method/backbone/dataset"
              + (f", less the epochs the checkpoints of {resumed} already hold" if resumed else "") + ")"
              + (f"; {len(todo) - len(known)} without an estimate" if len(todo) > len(known) else ""))
    return 0
