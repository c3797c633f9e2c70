"""Speed-regression bookkeeping: kernel/baseline speed-ups, a stored baseline, and the check.

Absolute times on a shared CI machine are noise; the ratio of a kernel's time to a reference
implementation timed *in the same run* (scikit-learn's GaussianMixture, a per-query argsort loop,
an explicit Python loop) is far steadier. The suite in ``benchmarks/`` records one speed-up per
benchmark group (``baseline time / kernel time``, from the minimum over rounds); ``compare``
flags a group whose speed-up fell by more than ``tolerance`` (25%) against the stored baseline,
i.e. whose kernel/baseline time ratio worsened by more than 25%.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .atomic import write_text_atomic

TOLERANCE = 0.25


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
