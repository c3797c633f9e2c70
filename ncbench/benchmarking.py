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

TOLERANCE = 0.25
#: how many recorded runs (``history.jsonl``) the stored baseline is the median of
WINDOW = 5


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


def reference_speedups(history: list[dict[str, float]], window: int = WINDOW) -> dict[str, float]:
    """Per group, the median speed-up of its last ``window`` recorded runs (oldest first in
    ``history``); a group recorded fewer times uses the runs it has."""
    groups = sorted({g for run in history for g in run})
    return {g: statistics.median([run[g] for run in history if g in run][-window:]) for g in groups}


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
    data = {"speedups": dict(sorted(speedups.items())), "machine": platform.machine(),
            "recorded": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **(meta or {})}
    write_text_atomic(Path(path), json.dumps(data, indent=1) + "\n")


def append_history(path: Path, speedups: dict[str, float], meta: dict | None = None) -> None:
    """One JSON line per recorded run, so a trend can be plotted."""
    line = json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "speedups": speedups, **(meta or {})})
    path = Path(path)
    old = path.read_text() if path.is_file() else ""
    write_text_atomic(path, old + line + "\n")


def load_history(path: Path, threads: int | None = None) -> list[dict[str, float]]:
    """The speed-ups of every recorded run, oldest first (``[]`` without a history file); with
    ``threads``, only the runs recorded with that many CPU threads (a ratio measured with another
    thread count is not comparable)."""
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
        if threads is None or row.get("threads") == threads:
            runs.append(speedups)
    return runs


def recorded_threads(path: Path) -> int | None:
    """The CPU thread count the stored baseline was measured with (``None``: not recorded)."""
    path = Path(path)
    return json.loads(path.read_text()).get("threads") if path.is_file() else None
