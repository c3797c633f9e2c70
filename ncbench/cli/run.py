"""``ncbench run``: train and evaluate a sweep, print its summary table."""

from __future__ import annotations

import argparse

from .options import (
    sweep_options,
)
from .sweep import execute, report_failures

NAMES = ("run",)


EPILOG = """\
examples:
  ncbench run                                       vanilla on the embedded dataset, noise 0/0.2/0.6
  ncbench run --methods ncr,bicro --references      ... with the floor (probe) and ceiling (clean_oracle) rows
  ncbench run --methods vanilla --noise 0,0.2,0.6 --seeds 0,1,2
  ncbench run --dataset f30k --data-root data/ --noise 0.2 --noise-dir noise_index/
  ncbench run --methods vanilla --method-opt epochs=20 --method-opt lr=1e-3
  ncbench run --methods ncr --backbones sgraf --dataset f30k --data-root data/ --amp bf16
  ncbench run --methods ncr,bicro --seeds 0,1,2 --workers auto            one worker per visible GPU
  ncbench run --methods ncr,bicro --dataset f30k --data-root data/ --executor slurm \\
      --slurm-partition gpu --slurm-time 1440 --slurm-opt account=mylab    one SLURM array task per run

Re-running the same command skips finished runs (same config hash, same code) and finishes the
rest; a run that was interrupted continues from its checkpoint. A finished run made by other code
(its method's file or ncbench's training code changed since) is trained again and the old result
set aside, unless --accept-code-change keeps it (recorded in the result file). SIGTERM or Ctrl-C
during training finishes the current step and saves a mid-epoch checkpoint first (exit 143 / 130);
a second signal stops at once.
"""



def add_parser(sub) -> None:
    r = sub.add_parser("run", help="train and evaluate a sweep of runs", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Train every method × backbone × dataset × noise × seed combination, select "
                                   "each on validation rSum, test it and write one JSON result per run.")
    sweep_options(r, methods=["vanilla"], datasets=["synthetic"], noise=[0.0, 0.2, 0.6],
                   dataset_help="comma-separated datasets (default: synthetic, the embedded one)")


def command(args) -> int:
    from ..report.build import summary_markdown

    report = execute(args)
    if report is None:
        return 0
    print(summary_markdown(report.done))
    print(f"Tables of everything in {args.results}/, in the papers' layout (Markdown, HTML, LaTeX): "
          f"ncbench leaderboard --results {args.results} --with-reported")
    return report_failures(report)
