"""``ncbench detect``: train on a dataset with human judgments and score each method's correspondence
estimates against them."""

from __future__ import annotations

import argparse
import sys

from ..errors import ConfigError
from .options import (
    sweep_options,
)
from .sweep import execute, report_failures

NAMES = ("detect",)


EPILOG = """\
examples:
  ncbench detect --data-root ../shared/data                      vanilla, NCR, BiCro, CRCL at 20/50/80% noise
  ncbench detect --data-root ../shared/data --methods ncr --noise 0.5 --seeds 0,1,2

The judged pairs are among Flickr8k's 1000 official test images; --data-root is the folder holding
flickr8k/ (features and text files). Finished runs are reused, as with `ncbench run`.
"""



def add_parser(sub) -> None:
    d = sub.add_parser(
        "detect", help="score noise detection against human judgments (Flickr8k expert and crowd)",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train the methods on a dataset that comes with human judgments of image-caption pairs "
                    "(flickr8k-xception: Flickr8k's expert and CrowdFlower judgments of pairs among its 1000 test "
                    "images), exactly as `ncbench run` does, then score every judged pair with each method's own "
                    "correspondence estimate and report ROC AUC ('describes' vs 'does not describe', majority "
                    "verdict) and Spearman correlation with the mean human score, over all judged pairs and over "
                    "held-out pairs (image and caption from test-split images). The scores are stored in each "
                    "result file and shown by `ncbench leaderboard` as a table of their own.")
    sweep_options(d, methods=["vanilla", "ncr", "bicro", "crcl"], datasets=["flickr8k-xception"],
                   noise=[0.2, 0.5, 0.8], dataset_help="comma-separated datasets with judgments "
                                                       "(default: flickr8k-xception)")


def command(args) -> int:
    from ..registry import DATASETS
    from ..report.build import agreement_boards
    from ..report.markdown import render_board

    without = [d for d in args.datasets if not DATASETS.get(d).has_judgments]
    if without:
        with_judgments = [n for n in DATASETS.names() if DATASETS.get(n).has_judgments]
        raise ConfigError(f"dataset(s) {', '.join(without)} have no human judgments; "
                          f"choose from {', '.join(with_judgments)}")
    report = execute(args)
    if report is None:
        return 0
    missing = [r.get("_path") or r["identity"]["method"] for r in report.done if not r.get("human_agreement")]
    for m in missing:
        print(f"warning: {m} has no human-agreement scores (written by an older ncbench); move it away and "
              "re-run to score it", file=sys.stderr)
    boards, _ = agreement_boards(report.done, allow_mixed=True)
    print("\n".join(render_board(b) for b in boards) or "_No human-agreement scores._\n")
    print(f"All tables (retrieval and human agreement): ncbench leaderboard --results {args.results}")
    return report_failures(report)
