"""The kernel benchmark suite: every kernel timed beside a reference implementation in the same run.

Each benchmark group holds two entries, ``ncbench`` (the kernel) and ``baseline`` (scikit-learn, a
per-query argsort loop or an explicit Python loop). At the end of the session the speed-up of every
group (baseline min time / kernel min time) is compared with ``benchmarks/baseline.json``: a group
whose kernel/baseline time ratio worsened by more than 25% fails the run.

Options: ``--bench-quick`` (fewer rounds of the slow baselines; what CI runs), ``--update-baseline`` (store this run's
speed-ups as the new baseline and append them to ``benchmarks/history.jsonl``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ncbench.benchmarking import append_history, compare, load_baseline, save_baseline

HERE = Path(__file__).resolve().parent
BASELINE = HERE / "baseline.json"
HISTORY = HERE / "history.jsonl"
_TIMES: dict[tuple[str, str], float] = {}


def pytest_addoption(parser):
    parser.addoption("--bench-quick", action="store_true", help="fewer rounds (CI)")
    parser.addoption("--update-baseline", action="store_true", help="record this run's speed-ups as the baseline")


@pytest.fixture
def timed(benchmark, request):
    """``timed(group, role, fn, rounds)``: time ``fn`` with pytest-benchmark and remember its minimum."""
    quick = request.config.getoption("--bench-quick")

    def run(group: str, role: str, fn, rounds: int = 5, cuda: bool = False):
        benchmark.group = group
        benchmark.extra_info["role"] = role
        def synchronised():
            out = fn()
            torch.cuda.synchronize()
            return out

        call = synchronised if cuda else fn
        # quick mode shortens only the (slow) baselines: kernels take milliseconds, and a cold
        # single round would not be comparable with the stored baseline. Both roles get one
        # untimed warm-up call (a cold first call, e.g. scikit-learn's, is the slowest by far).
        n = max(1, rounds // 3) if quick and role == "baseline" else rounds
        result = benchmark.pedantic(call, rounds=n, iterations=1, warmup_rounds=1)
        if benchmark.stats is not None:
            _TIMES[(group, role)] = benchmark.stats.stats.min
        return result

    return run


def speedups() -> dict[str, float]:
    """baseline / kernel min time per group; a ``-cuda`` group is compared with the CPU baseline
    of its ``-cpu`` twin (scikit-learn and the argsort loop run on the CPU)."""
    out = {}
    for g in sorted({g for g, _ in _TIMES}):
        base = _TIMES.get((g, "baseline"), _TIMES.get((g.replace("-cuda", "-cpu"), "baseline")))
        if base is not None and (g, "ncbench") in _TIMES:
            out[g] = base / _TIMES[(g, "ncbench")]
    return out


def pytest_sessionfinish(session, exitstatus):
    found = speedups()
    if not found:
        return
    tr = session.config.pluginmanager.get_plugin("terminalreporter")
    write = tr.write_line if tr else print
    baseline = load_baseline(BASELINE)
    write("")
    write("speed-up of each kernel over its baseline (min time, same run):")
    for g, v in found.items():
        ref = f"   (stored {baseline[g]:.2f}×)" if g in baseline else "   (no stored baseline)"
        write(f"  {g:32s} {v:10.2f}×{ref}")
    if session.config.getoption("--update-baseline"):
        save_baseline(BASELINE, {**baseline, **found})
        append_history(HISTORY, found)
        write(f"baseline updated: {BASELINE}")
        return
    regressions = compare(found, baseline)
    for r in regressions:
        write(f"SPEED REGRESSION {r}")
    if regressions and session.exitstatus == 0:
        session.exitstatus = 1
