"""``ncbench golden``: record a method's entry in an accuracy golden file.

Trains the tracked sweep (``accuracy.GoldenSweep``: the embedded dataset at 60% noise, seeds 0–2,
``vse_bow`` for CI or ``vse_light`` with ``--sweep full``) for the named methods through ``ncbench
run`` and writes each one's per-seed test rSum and detection AUC into the golden file, atomically,
leaving the other entries as they are. An existing entry is overwritten only with ``--replace``;
``--drop`` removes the entry of a method that is no longer registered. The test suite trains the
same sweep (``train``, shared with its ``noisy_sweep`` fixture) and fails on a registered method
without an entry, printing this command.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from ..accuracy import CI_SWEEP, SWEEPS
from .options import check_file_path, default_cache_dir, names, workers

NAMES = ("golden",)

EPILOG = """\
examples:
  ncbench golden --method mymethod                  train the CI sweep (vse_bow) and record its entry
  ncbench golden --method mymethod --sweep full     ... the vse_light sweep of `pytest benchmarks --accuracy-full`
  ncbench golden --method ncr --replace             re-record an entry after a deliberate change
  ncbench golden --drop oldmethod                   remove the entry of a method no longer registered

Run from the repository root (the files are benchmarks/accuracy_golden.json and
benchmarks/accuracy_golden_vse_light.json), then commit the file.
"""


def add_parser(sub) -> None:
    g = sub.add_parser("golden", help="record a method's entry in the accuracy golden file", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Train a tracked accuracy sweep (--sweep; CI's: the embedded dataset at 60% "
                                   "noise, seeds 0-2) for a method and record its per-seed test rSum and detection AUC "
                                   "in the golden file the test suite checks.")
    what = g.add_mutually_exclusive_group(required=True)
    what.add_argument("--method", type=names, metavar="NAMES", help="comma-separated registered methods to record")
    what.add_argument("--drop", type=names, metavar="NAMES",
                      help="comma-separated methods, no longer registered, whose entries to remove")
    g.add_argument("--sweep", choices=tuple(SWEEPS), default=CI_SWEEP.name,
                   help="; ".join(f"{s.name}: {s.describe()}" for s in SWEEPS.values()) + f" (default: {CI_SWEEP.name})")
    g.add_argument("--file", help="the golden file (default: the sweep's file under ./benchmarks)")
    g.add_argument("--replace", action="store_true", help="overwrite an existing entry")
    g.add_argument("--results", help="keep the sweep's runs in this folder (re-running skips them; "
                                     "default: a temporary folder, removed afterwards)")
    g.add_argument("--cache-dir", default=default_cache_dir(),
                   help="where generated data is kept (default: $NCBENCH_CACHE or ~/.cache/ncbench)")
    g.add_argument("--workers", type=workers, default=None,
                   help="local worker processes (default: the sweep's; the numbers do not depend on it)")


def sweep_argv(sweep, methods: list[str], results: Path, cache_dir: Path, workers: int | None = None) -> list[str]:
    """The ``ncbench run`` command line of ``sweep`` for ``methods``."""
    return ["run", "--methods", ",".join(methods), "--datasets", sweep.dataset, "--backbones", sweep.backbone,
            "--noise", f"{sweep.noise:g}", "--seeds", ",".join(map(str, sweep.seeds)), "--results", str(results),
            "--cache-dir", str(cache_dir), "--no-progress", "--device", "cpu",
            "--workers", str(workers or sweep.workers), "--threads", str(sweep.threads)]


def train(sweep, methods: list[str], results: Path, cache_dir: Path, workers: int | None = None) -> list[dict[str, Any]]:
    """Train ``sweep`` for ``methods`` (runs already in ``results`` are reused) and return its results."""
    from ..errors import TrainingError
    from ..results import load_results
    from .options import check_paths
    from .run import add_parser as add_run_parser
    from .sweep import execute, report_failures

    argv = sweep_argv(sweep, methods, results, cache_dir, workers)
    parser = argparse.ArgumentParser(prog="ncbench")  # `ncbench run` alone, parsed as main parses it
    add_run_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    args.argv = argv  # what local workers re-run
    check_paths(args)
    if report_failures(execute(args)) != 0:
        raise TrainingError(f"some runs of the {sweep.name!r} sweep failed (see above); nothing recorded")
    return sweep.results_of(load_results(results).results, methods)


def golden_file(sweep, option: str | None) -> Path:
    """``--file``, or the sweep's file under ./benchmarks (which must exist: run from the repository root)."""
    from ..errors import ConfigError

    if option:
        check_file_path(option, "--file")
        return Path(option)
    folder = Path("benchmarks")
    if not folder.is_dir():
        raise ConfigError(f"no benchmarks/ folder in {Path.cwd()}: run from the repository root, or pass --file")
    return folder / sweep.file


def command(args) -> int:
    from ..accuracy import check_recordable, drop, record, summarise
    from ..errors import ConfigError
    from ..registry import METHODS

    sweep = SWEEPS[args.sweep]
    path = golden_file(sweep, args.file)
    if args.drop:
        drop(path, sweep, args.drop)
        print(f"removed {', '.join(args.drop)} from {path}")
        return 0
    covered = sweep.covered()
    for m in args.method:
        if m not in covered:
            METHODS.get(m)  # unknown: says so, with suggestions
            raise ConfigError(f"{m} is a reference row of the boards, not tracked by the accuracy golden")
    check_recordable(path, sweep, args.method, args.replace)  # refused before anything trains
    if args.results:
        found = train(sweep, args.method, Path(args.results), Path(args.cache_dir), args.workers)
    else:
        with tempfile.TemporaryDirectory(prefix="ncbench-golden-") as tmp:
            found = train(sweep, args.method, Path(tmp), Path(args.cache_dir), args.workers)
    entries = {m: summarise(found, m) for m in args.method}
    record(path, sweep, entries, replace=args.replace)
    for m, e in entries.items():
        auc = f"{e['auc_mean']:.3f}" if e["auc_mean"] is not None else "none"
        print(f"recorded {m} in {path}: mean test rSum {e['rsum_mean']:.2f} "
              f"(seeds {', '.join(map(str, e['seeds']))}: {', '.join(f'{r:.2f}' for r in e['rsum'])}), "
              f"mean detection AUC {auc}")
    print(f"commit {path} with the change it records")
    return 0

