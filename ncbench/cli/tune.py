"""``ncbench tune``: choose each method's recipe on the dev split with the same trial budget."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .options import (
    shard_option,
    sweep_options,
    sweep_spec,
)
from .sweep import execute

NAMES = ("tune",)


EPILOG = """\
examples:
  ncbench tune --dataset flickr8k-clip --data-root ../shared/data --budget 16 --workers 2
  ncbench tune --dataset flickr8k-xception --data-root ../shared/data --methods vanilla,ncr --noise 0.5 --dry-run

The recipes land in ./recipes/<dataset>.toml (--recipes DIR elsewhere): review the diff and commit it.
clean_oracle uses vanilla's recipe; the training-free probe chooses its penalty on the dev split in each run.
"""


def _brief(opts: dict) -> str:
    return ", ".join(f"{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in opts.items())



def add_parser(sub) -> None:
    tu = sub.add_parser(
        "tune", help="choose each method's recipe for a dataset on the dev split (same trial budget for every method)",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="For each method (and backbone), train the same number of trials (--budget): trial 0 with the "
                    "method's starting options, the others with options drawn from the method's declared search space "
                    "(seeded). Each trial trains at every tuning noise ratio exactly as `ncbench run` does and is "
                    "selected on the dev split; the test split is never loaded. The trial with the best mean "
                    "validation rSum becomes the method's recipe in <recipes>/<dataset>.toml, with the budget, the "
                    "objective and the cost, which `ncbench run` then uses by default. Trials are ordinary runs "
                    "under <results>/tuning/: an interrupted tuning resumes, and --workers/--executor slurm share it.")
    sweep_options(tu, methods=["vanilla", "ncr", "bicro", "crcl"], datasets=["flickr8k-clip"], noise=[0.2, 0.5, 0.8],
                   dataset_help="the dataset to tune for (one; default: flickr8k-clip)")
    tu.add_argument("--budget", type=int, default=16, help="trials per method and backbone, trial 0 included (default 16)")
    tu.add_argument("--tune-seed", type=int, default=0, help="seed of the trials' draws (default 0)")
    tu.add_argument("--no-write", action="store_true", help="print the outcome; write no recipe file")


def command(args) -> int:
    from tabulate import tabulate

    from ..recipes import write_recipe
    from ..runner import shard
    from ..tuning import TuneSpec, plan_trials, score

    spec = TuneSpec(sweep_spec(args), budget=args.budget, tune_seed=args.tune_seed)
    runs = plan_trials(spec)
    part = shard_option(args.shard)
    report = execute(args, shard(runs, *part) if part else runs)
    if report is None or args.worker_index is not None or part:
        return 0
    for f in report.failed:  # a failed trial (e.g. a NaN loss) counts as the worst trial, not as an error
        print(f"failed trial, scored -inf: {f}", file=sys.stderr)
    status = 0
    folder = Path(args.recipes or "recipes")
    for out in score(spec, runs, Path(args.results)):
        rows = [[t.trial, _brief(t.options) or "(starting options)",
                 *("…" if v is None else f"{v:.1f}" for v in t.dev_rsum.values()), f"{t.objective:.1f}",
                 "◀ chosen" if out.chosen is t else ""] for t in out.trials]
        keys = list(out.trials[0].dev_rsum) if out.trials else []
        print(f"\n## {out.method}/{out.backbone} on {out.dataset}: {len(out.trials)} trials, "
              f"{out.cpu_minutes:.1f} CPU-minutes\n")
        print(tabulate(rows, ["trial", "options", *(f"dev rSum @{k}" for k in keys), "mean", ""], tablefmt="github"))
        if out.recipe is None:
            print("not every trial has finished; re-run the same command to finish them")
            status = 1
        elif not args.no_write:
            print(f"recipe: trial {out.chosen.trial} -> {write_recipe(out.dataset, out.method, out.backbone, out.recipe, folder)}")
    return status
