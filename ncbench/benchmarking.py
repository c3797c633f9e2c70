"""Speed-regression bookkeeping: kernel/baseline speed-ups, a stored baseline, and the check.

Absolute times on a shared CI machine are noise; the ratio of a kernel's time to a reference
implementation timed *in the same run* (scikit-learn's GaussianMixture, a per-query argsort loop,
an explicit Python loop) is far steadier. The suite in ``benchmarks/`` records one speed-up per
benchmark group (``baseline time / kernel time``, from the minimum over rounds); ``compare``
flags a group whose speed-up fell by more than ``tolerance`` (25%) against the stored baseline,
i.e. whose kernel/baseline time ratio worsened by more than 25%.

Two things keep a millisecond kernel's noise from failing CI. The stored baseline is the
**median of the last few recorded runs** (``reference_speedups``), so one lucky run cannot set a
bar the next ten runs miss. And a flagged group is **re-measured** before it fails
(``confirm``): both roles timed again, back to back, with more rounds; only a group still past
the tolerance is a regression. A kernel that really got slower stays slower on the re-measure.

Drift is told from noise by comparing **like with like**. Every recorded run carries its machine
(CPU model, architecture, thread count, torch / NumPy / scikit-learn versions: ``fingerprint``) and
the commit it measured; the stored baseline is computed from the runs of one machine only and says
which, and a run on another machine is not compared with it (the suite says what differs). Within
one machine's history a **step change** (``step_changes``: the median of the runs after a point
differs from the median of the runs before it by more than 10%, as asv and conbench flag
them) is reported with the commit where it appeared, and the baseline is the median of the runs
*after* the last step, so a drift is not averaged away with the runs before it.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .atomic import write_text_atomic
from .git import git

TOLERANCE = 0.25
#: how many recorded runs (``history.jsonl``) the stored baseline is the median of
WINDOW = 5
#: how many runs on each side of a point ``step_changes`` compares, and by how much their medians
#: must differ (medians of three one-thread runs move by a few percent between processes)
STEP_WINDOW = 3
STEP_TOLERANCE = 0.10
#: what must be equal for two measurements to be compared (the rest of a fingerprint is recorded)
COMPARED = ("cpu", "machine", "threads", "torch", "numpy", "scikit-learn")


def fingerprint(threads: int) -> dict[str, object]:
    """The machine a speed-up was measured on: what can move a kernel/baseline ratio."""
    import numpy
    import sklearn
    import torch

    return {"cpu": _cpu_model(), "machine": platform.machine(), "threads": threads, "torch": torch.__version__,
            "numpy": numpy.__version__, "scikit-learn": sklearn.__version__, "python": platform.python_version()}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def differences(recorded: dict | None, current: dict) -> list[str]:
    """What differs, among ``COMPARED``, between a recorded machine and this one (``recorded`` None:
    a run from before machines were recorded, never comparable)."""
    if not isinstance(recorded, dict):
        return ["machine not recorded"]
    return [f"{k} {recorded.get(k)!r} vs {current.get(k)!r}" for k in COMPARED if recorded.get(k) != current.get(k)]


def git_commit(folder: Path) -> str | None:
    """HEAD of the checkout the benchmarks ran from (``None`` outside a git checkout)."""
    return git(folder, "rev-parse", "HEAD") or None


@dataclass
class Regression:
    group: str
    baseline_speedup: float
    speedup: float

    def __str__(self) -> str:
        return (f"{self.group}: speed-up {self.speedup:.2f}× vs stored {self.baseline_speedup:.2f}× "
                f"(kernel/baseline time ratio worse by {self.baseline_speedup / self.speedup - 1:.0%})")


def compare(speedups: dict[str, float], baseline: dict[str, float], tolerance: float = TOLERANCE) -> list[Regression]:
    """Groups whose kernel/baseline time ratio is more than ``tolerance`` worse than stored."""
    out = []
    for group, value in sorted(speedups.items()):
        ref = baseline.get(group)
        if ref is not None and ref / value > 1 + tolerance:
            out.append(Regression(group, ref, value))
    return out


def confirm(regressions: list[Regression], remeasure: Callable[[str], float | None],
            tolerance: float = TOLERANCE) -> tuple[list[Regression], list[Regression]]:
    """Split flagged groups into (confirmed, noise) by a second measurement.

    ``remeasure(group)`` times the group again and returns its new speed-up (``None``: it cannot
    be re-timed, so the first measurement stands). A group is confirmed when the new speed-up is
    also more than ``tolerance`` below the stored one; the returned records carry the new value.
    """
    confirmed, noise = [], []
    for r in regressions:
        again = remeasure(r.group)
        if again is None:
            confirmed.append(r)
            continue
        second = Regression(r.group, r.baseline_speedup, again)
        (confirmed if r.baseline_speedup / again > 1 + tolerance else noise).append(second)
    return confirmed, noise


def reference_speedups(history: list[dict[str, float]], window: int = WINDOW,
                       steps: list[StepChange] | None = None) -> dict[str, float]:
    """Per group, the median speed-up of its last ``window`` recorded runs (oldest first in
    ``history``) after its last step change (``steps``, indices into ``history``); a group recorded
    fewer times uses the runs it has."""
    last_step = {}
    for st in steps or []:
        last_step[st.group] = max(last_step.get(st.group, 0), st.index)
    out = {}
    for g in sorted({g for run in history for g in run}):
        values = [run[g] for i, run in enumerate(history) if g in run and i >= last_step.get(g, 0)]
        out[g] = statistics.median(values[-window:])
    return out


def min_time(fn: Callable[[], object], rounds: int = 5, sync: Callable[[], None] | None = None) -> float:
    """Minimum wall time of ``fn()`` over ``rounds`` calls (``sync`` waits for a GPU, if any)."""
    best = float("inf")
    for _ in range(rounds):
        if sync:
            sync()
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        best = min(best, time.perf_counter() - t0)
    return best


def measure_speedup(kernel: Callable[[], object], baseline: Callable[[], object], rounds: int = 5) -> float:
    """``baseline time / kernel time`` measured back to back in this process."""
    return min_time(baseline, rounds) / min_time(kernel, rounds)


def load_baseline(path: Path) -> dict[str, float]:
    path = Path(path)
    if not path.is_file():
        return {}
    return {k: float(v) for k, v in json.loads(path.read_text())["speedups"].items()}


def save_baseline(path: Path, speedups: dict[str, float], meta: dict | None = None) -> None:
    """``meta`` holds ``env`` (the ``fingerprint`` of the runs it was computed from) and ``threads``."""
    data = {"speedups": dict(sorted(speedups.items())), "machine": platform.machine(),
            "recorded": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **(meta or {})}
    write_text_atomic(Path(path), json.dumps(data, indent=1) + "\n")


def append_history(path: Path, speedups: dict[str, float], meta: dict | None = None) -> None:
    """One JSON line per recorded run, so a trend can be plotted."""
    line = json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "speedups": speedups, **(meta or {})})
    path = Path(path)
    old = path.read_text() if path.is_file() else ""
    write_text_atomic(path, old + line + "\n")


def load_history(path: Path, threads: int | None = None, env: dict | None = None) -> list[dict[str, float]]:
    """The speed-ups of every recorded run, oldest first (``[]`` without a history file); with
    ``threads``, only the runs recorded with that many CPU threads, with ``env`` (a ``fingerprint``)
    only the runs of that machine (a ratio measured elsewhere is not comparable)."""
    return [r["speedups"] for r in load_runs(path, threads, env)]


def load_runs(path: Path, threads: int | None = None, env: dict | None = None) -> list[dict]:
    """``load_history`` with each run's record: ``time``, ``speedups``, ``env`` and ``commit``."""
    path = Path(path)
    if not path.is_file():
        return []
    runs = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            speedups = {k: float(v) for k, v in row["speedups"].items()}
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"{path}: line {n} is not a recorded run ({{'speedups': {{group: float}}}}): {e}") from e
        if threads is not None and row.get("threads") != threads:
            continue
        if env is not None and differences(row.get("env"), env):
            continue
        runs.append({"time": row.get("time"), "speedups": speedups, "env": row.get("env"), "commit": row.get("commit")})
    return runs


@dataclass
class StepChange:
    group: str
    index: int  # the first run after the step (0-based, in the runs given)
    before: float  # median speed-up of the STEP_WINDOW runs before it
    after: float  # ... and of the STEP_WINDOW runs from it on
    time: str | None = None
    commit: str | None = None

    def __str__(self) -> str:
        where = f" from the run of {self.time}" + (f" (commit {self.commit[:10]})" if self.commit else "") if self.time else ""
        return f"{self.group}: step change {self.before:.2f}× → {self.after:.2f}×{where}"


def step_changes(runs: list[dict], tolerance: float = STEP_TOLERANCE, window: int = STEP_WINDOW) -> list[StepChange]:
    """Points of one machine's history where a group's speed-up moved and stayed: the median of the
    ``window`` runs from a point on differs from the median of the ``window`` runs before it by more
    than ``tolerance`` (either way). One lucky run cannot make a step; a real change makes one at the
    run that brought it (the most different point of a run of flagged points)."""
    out = []
    for group in sorted({g for r in runs for g in r["speedups"]}):
        idx = [i for i, r in enumerate(runs) if group in r["speedups"]]
        vals = [runs[i]["speedups"][group] for i in idx]
        best: StepChange | None = None
        best_ratio = 0.0
        for j in range(window, len(vals) - window + 1):
            before, after = statistics.median(vals[j - window:j]), statistics.median(vals[j:j + window])
            ratio = max(before, after) / min(before, after)
            if ratio > 1 + tolerance and ratio > best_ratio:
                run = runs[idx[j]]
                best, best_ratio = StepChange(group, idx[j], before, after, run.get("time"), run.get("commit")), ratio
            elif ratio <= 1 + tolerance and best is not None:
                out.append(best)
                best, best_ratio = None, 0.0
        if best is not None:
            out.append(best)
    return out


def recorded_env(path: Path) -> dict | None:
    """The machine (``fingerprint``) the stored baseline was measured on (``None``: not recorded)."""
    path = Path(path)
    return json.loads(path.read_text()).get("env") if path.is_file() else None
