"""``ncbench compare``: is one row of a board really better than another? A paired hierarchical
bootstrap and a paired permutation test from the stored test ranks.

Unreadable or invalid result files are skipped with a warning naming each; when the two rows do
not have the same seeds (a seed's file skipped, say), a warning says which seeds were paired."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import ConfigError
from .options import floats, names, noise_protocol, noise_protocol_options

NAMES = ("compare",)

EPILOG = """\
examples:
  ncbench compare --methods ncr,bicro --dataset synthetic --noise 0.6
  ncbench compare --methods ncr --backbones sgr,saf --dataset f30k --noise 0.2      one method, two backbones
  ncbench compare --methods ncr,crcl --dataset coco --noise 0.4 --benchmark coco-5k --json

Both rows need results of the same seeds (paired by seed: same noise index) on the same test set.
"""


def add_parser(sub) -> None:
    c = sub.add_parser(
        "compare", help="paired significance of the rSum difference between two rows (bootstrap and permutation)",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="For two (method, backbone) rows of one dataset, noise ratio and noise type: the mean over "
                    "their shared seeds of the rSum difference, recomputed from each result's stored per-query test "
                    "ranks, with a 95% interval and a p-value from a hierarchical bootstrap (seeds drawn with "
                    "replacement, then test images with their captions, within folds for MS-COCO 1K) and the "
                    "p-value of a paired permutation test (the two rows swapped per seed and test image).")
    c.add_argument("--methods", type=names, required=True, metavar="A,B",
                   help="the two methods (or one, with two --backbones)")
    c.add_argument("--backbones", type=names, metavar="B[,B2]",
                   help="backbone of both rows, or one per row (default: the one backbone both methods have results "
                        "with; where there are several, the dataset card's)")
    c.add_argument("--dataset", required=True, help="the dataset both rows were run on")
    c.add_argument("--noise", type=floats, required=True, metavar="R", help="the noise ratio (one)")
    noise_protocol_options(c, " of both rows")
    c.add_argument("--benchmark", help="the board column to test: <dataset> (default), or coco-1k (5-fold mean, "
                                       "the default for MS-COCO) / coco-5k")
    c.add_argument("--results", action="append", metavar="DIR", help="results folder; repeatable (default: ./results)")
    c.add_argument("--resamples", type=int, default=10_000,
                   help="bootstrap resamples and permutations, each (default 10000)")
    c.add_argument("--seed", type=int, default=0, help="seed of the resampling (default 0)")
    c.add_argument("--json", action="store_true", help="print the comparison as JSON")


def _shared_backbone(args, methods: list[str], results: list[dict]) -> str:
    """The backbone both rows have results with at this dataset and noise: the only one, or the
    card's default among several."""
    from ..compare import RowKey, in_row
    from ..registry import DATASETS

    have = [{r["identity"]["backbone"] for r in results
             if in_row(r, RowKey(m, "", args.dataset, args.noise[0], noise_protocol(args)), any_backbone=True)}
            for m in methods]
    shared = sorted(have[0] & have[1])
    default = DATASETS.get(args.dataset).default_backbone
    if len(shared) == 1:
        return shared[0]
    if default in shared or not shared:
        return default  # none shared: the error names the row that has no results
    raise ConfigError(f"{methods[0]} and {methods[1]} have results with several backbones ({', '.join(shared)}): "
                      "choose one with --backbones")


def _rows(args, results: list[dict]):
    from ..compare import RowKey

    if len(args.noise) != 1:
        raise ConfigError(f"--noise takes one ratio, got {len(args.noise)}")
    methods = args.methods * 2 if len(args.methods) == 1 else args.methods
    if len(methods) != 2:
        raise ConfigError("compare takes two rows: --methods A,B (and one or two --backbones), or one method "
                          "with --backbones B1,B2")
    backbones = args.backbones or [_shared_backbone(args, methods, results)]
    backbones = backbones * 2 if len(backbones) == 1 else backbones
    if len(methods) != 2 or len(backbones) != 2:
        raise ConfigError("compare takes two rows: --methods A,B (and one or two --backbones), or one method "
                          "with --backbones B1,B2")
    noise = noise_protocol(args)
    keys = [RowKey(m, b, args.dataset, args.noise[0], noise) for m, b in zip(methods, backbones)]
    if keys[0] == keys[1]:
        raise ConfigError(f"both rows are {keys[0].label}: give two methods or two backbones")
    return keys


def command(args) -> int:
    from ..compare import compare_rows, select_row
    from ..report.build import collect_results

    if args.resamples < 1:
        raise ConfigError(f"--resamples must be ≥ 1, got {args.resamples}")
    folders = [Path(p) for p in args.results or ["results"]]
    results, skipped = collect_results(folders)
    for err in skipped:
        print(f"warning: skipped unreadable result: {err}", file=sys.stderr)
    keys = _rows(args, results)
    rows = [select_row(results, k) for k in keys]
    for k, row in zip(keys, rows):
        if not row:
            raise ConfigError(f"no ok result of {k.label} on {k.dataset} at {k.noise.label} noise "
                              f"{k.noise_ratio:g} in {', '.join(map(str, folders))}")
    if set(rows[0]) != set(rows[1]):
        paired = sorted(set(rows[0]) & set(rows[1]))
        print(f"warning: {keys[0].label} has seeds {sorted(rows[0])}, {keys[1].label} seeds {sorted(rows[1])}: only "
              f"the shared seeds {paired} are paired" + (" (see the skipped files above)" if skipped else ""),
              file=sys.stderr)
    first = next(iter(rows[0].values()))
    benchmark = args.benchmark or (f"{args.dataset}-1k" if first["test"].get("primary") == "fold_mean" else args.dataset)
    if not benchmark.startswith(args.dataset):
        raise ConfigError(f"--benchmark {benchmark!r} is not a view of {args.dataset}: give {args.dataset}"
                          + (f", {args.dataset}-1k or {args.dataset}-5k" if first["test"].get("fold_mean") else ""))
    out = compare_rows(rows[0], rows[1], keys[0], keys[1], benchmark, args.resamples, args.seed)
    if args.json:
        print(json.dumps(out.to_dict(), indent=1))
        return 0
    t = out.test
    n = f"{t.resamples:,}"
    view = "" if out.benchmark == out.dataset else f" ({out.benchmark})"
    print(f"{out.a} vs {out.b}: {out.dataset}{view}, {keys[0].noise.label} noise {out.noise_ratio:g}\n"
          f"paired seeds: {', '.join(map(str, out.seeds))} ({len(out.seeds)}); test queries: {out.images} images "
          f"(image→text), {out.captions} captions (text→image)\n")
    lines = [
        (f"rSum {out.a}", f"{out.rsum_a:.1f}", "mean over the paired seeds"),
        (f"rSum {out.b}", f"{out.rsum_b:.1f}", ""),
        ("difference", f"{t.difference:+.1f}",
         (f"95% CI [{t.ci95[0]:+.1f}, {t.ci95[1]:+.1f}] (hierarchical bootstrap, {n} resamples: seeds, then "
          "test images with their captions)")),
        ("p (bootstrap)", f"{t.p_bootstrap:.4f}", "two-sided"),
        ("p (permutation)", f"{t.p_permutation:.4f}", f"two-sided; rows swapped per seed and test image, {n} permutations"),
    ]
    width = max(len(a) for a, _, _ in lines)
    for label, value, note in lines:
        print(f"{label:<{width}}  {value:>7}  {note}".rstrip())
    return 0
