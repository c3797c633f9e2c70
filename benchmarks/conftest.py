"""The kernel benchmark suite: every kernel timed beside a reference implementation in the same run.

Each benchmark group holds two entries, ``ncbench`` (the kernel) and ``baseline`` (scikit-learn, a
per-query argsort loop or an explicit Python loop). At the end of the session the speed-up of every
group (baseline min time / kernel min time) is compared with ``benchmarks/baseline.json``. A group
whose kernel/baseline time ratio is more than 25% worse is timed again (both roles, full rounds,
the minimum taken over both measurements); it fails the run only if it is still that much worse.

CPU timings run on **one thread** (torch and the BLAS/OpenMP pools of numpy and scikit-learn):
the gate compares algorithms, not the scheduler. With two threads on a two-core machine the
mixture kernel's best time moved by ±15% from one process to the next, with one by ±4%; and a
one-thread ratio means the same on a laptop and on a 64-core node. ``--bench-threads N`` changes it.

Options: ``--accuracy-full`` (also every registered method's accuracy golden on ``vse_light``,
``test_accuracy_full.py``; about eleven minutes; not in CI), ``--bench-quick`` (fewer rounds of the
slow baselines; what CI runs), ``--update-baseline``
(append this run's speed-ups, machine and commit to ``benchmarks/history.jsonl`` and store, per
group, the median of this machine's last five recorded runs after its last step change as the new
baseline). A run on another machine than the stored baseline's (CPU model, threads, torch, NumPy,
scikit-learn) is not compared: the summary says what differs.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from threadpoolctl import threadpool_limits

from ncbench.benchmarking import (
    WINDOW,
    append_history,
    compare,
    confirm,
    differences,
    fingerprint,
    git_commit,
    load_baseline,
    load_runs,
    min_time,
    recorded_env,
    reference_speedups,
    save_baseline,
    step_changes,
)

HERE = Path(__file__).resolve().parent
BASELINE = HERE / "baseline.json"
HISTORY = HERE / "history.jsonl"
_TIMES: dict[tuple[str, str], float] = {}
#: (group, role) -> (the timed call, its full number of rounds), kept to re-time a flagged group
_CALLS: dict[tuple[str, str], tuple] = {}


def pytest_addoption(parser):
    parser.addoption("--bench-quick", action="store_true", help="fewer rounds (CI)")
    parser.addoption("--update-baseline", action="store_true", help="record this run's speed-ups as the baseline")
    parser.addoption("--bench-threads", type=int, default=1, help="CPU threads for kernels and baselines (default 1)")
    parser.addoption("--accuracy-full", action="store_true",
                     help="also run the accuracy golden of every registered method on vse_light (about eleven minutes)")
    parser.addoption("--update-golden", action="store_true", help="with --accuracy-full: re-record its golden file")


def pytest_collection_modifyitems(config, items):
    """The vse_light accuracy sweep runs only when asked for (--accuracy-full): deselected otherwise."""
    if config.getoption("--accuracy-full"):
        return
    keep = [i for i in items if i.get_closest_marker("accuracy_full") is None]
    if len(keep) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if i.get_closest_marker("accuracy_full")])
        items[:] = keep


def pytest_configure(config):
    threads = config.getoption("--bench-threads", default=None)
    if threads:
        torch.set_num_threads(threads)
        threadpool_limits(threads)  # numpy's BLAS and scikit-learn's OpenMP, for the whole session


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
            _CALLS[(group, role)] = (call, rounds)
        return result

    return run


def _baseline_key(group: str) -> tuple[str, str]:
    """A ``-cuda`` group is compared with the CPU baseline of its ``-cpu`` twin (scikit-learn and
    the argsort loop run on the CPU)."""
    own = (group, "baseline")
    return own if own in _TIMES else (group.replace("-cuda", "-cpu"), "baseline")


def speedups() -> dict[str, float]:
    """baseline / kernel min time per group."""
    out = {}
    for g in sorted({g for g, _ in _TIMES}):
        base = _TIMES.get(_baseline_key(g))
        if base is not None and (g, "ncbench") in _TIMES:
            out[g] = base / _TIMES[(g, "ncbench")]
    return out


def remeasure(group: str) -> float | None:
    """Time a flagged group's kernel and baseline again, back to back, with their full rounds
    (twice as many for the kernel); the new speed-up uses the minimum over both measurements."""
    for key in ((group, "ncbench"), _baseline_key(group)):
        if key not in _CALLS:
            return None
        call, rounds = _CALLS[key]
        more = 2 * rounds if key[1] == "ncbench" else rounds
        _TIMES[key] = min(_TIMES[key], min_time(call, more))
    return speedups()[group]


def pytest_sessionfinish(session, exitstatus):
    found = speedups()
    if not found:
        return
    tr = session.config.pluginmanager.get_plugin("terminalreporter")
    write = tr.write_line if tr else print
    baseline = load_baseline(BASELINE)
    threads = session.config.getoption("--bench-threads")
    write("")
    write("speed-up of each kernel over its baseline (min time, same run):")
    for g, v in found.items():
        ref = f"   (stored {baseline[g]:.2f}×)" if g in baseline else "   (no stored baseline)"
        write(f"  {g:32s} {v:10.2f}×{ref}")
    env = fingerprint(threads)
    if session.config.getoption("--update-baseline"):
        append_history(HISTORY, found, {"threads": threads, "env": env, "commit": git_commit(HERE.parent)})
    runs = load_runs(HISTORY, env=env)
    steps = step_changes(runs)
    for st in steps:
        write(f"history of this machine: {st}")
    if session.config.getoption("--update-baseline"):
        save_baseline(BASELINE, reference_speedups([r["speedups"] for r in runs], steps=steps),
                      {"threads": threads, "env": env})
        write(f"baseline updated: {BASELINE} (per group, the median of this machine's last {WINDOW} recorded runs "
              f"after its last step change; {len(runs)} run(s) of this machine in {HISTORY.name})")
        return
    diffs = differences(recorded_env(BASELINE), env)
    if diffs:
        write(f"not compared: {BASELINE.name} was recorded on another machine ({'; '.join(diffs)}); record this "
              f"machine's with `pytest benchmarks --update-baseline` (five runs make its median)")
        return
    flagged = compare(found, baseline)
    for r in flagged:
        write(f"slower than stored, timing again: {r}")
    regressions, noise = confirm(flagged, remeasure)
    for r in noise:
        write(f"  not confirmed (noise): {r}")
    for r in regressions:
        write(f"SPEED REGRESSION {r}")
    if regressions and session.exitstatus == 0:
        session.exitstatus = 1
