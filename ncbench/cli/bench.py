"""``ncbench bench``: end-to-end throughput of methods × backbones, per phase of each schedule (the pairs
each epoch trains), beside vanilla and the official loop, and a full run's estimated time."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..errors import ConfigError
from .options import (
    key_values,
    names,
    precision_options,
)

NAMES = ("bench",)
SPREAD_WARN = 0.2  # epochs of one method differing by more than this share of their median


def add_parser(sub) -> None:
    b = sub.add_parser("bench", help="end-to-end throughput: pairs trained per second, per phase, and a full run's "
                                     "estimated time",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Time each method × backbone a few epochs in every phase of its schedule (co-teaching "
                                   "methods: warm-up, the clean split only, then with the noisy subset; CREAM: clean, "
                                   "hard and noisy joining), counting the pairs each network actually trains, then time "
                                   "one test evaluation and estimate a full run at the card's own sizes (epochs × epoch "
                                   "time, division passes, validation, test: arithmetic, not measured). Measured beside "
                                   "two references in the same run: each phase's pairs/s (all pairs and trained pairs) "
                                   "relative to vanilla on the same backbone, and, for cross-attention backbones (sgr, "
                                   "saf), one training batch scored all pairs at once vs one caption at a time (the "
                                   "official code's loop). Compare two commits by running this on the same machine.",
                       epilog="examples:\n"
                              "  ncbench bench                                         vse_light on the synthetic data, CPU-sized\n"
                              "  ncbench bench --shape f30k --backbones sgr,saf --n-train 2000 --n-test 1000 --precision bf16\n"
                              "      random data of Flickr30K's shape (36 regions × 2048, its vocabulary size): the\n"
                              "      GPU figures without the real features; --n-test 5000 times a COCO 5K evaluation")
    b.add_argument("--methods", type=names, default=["vanilla", "ncr", "bicro", "crcl"],
                   help="comma-separated methods (default: vanilla,ncr,bicro,crcl; vanilla is the reference)")
    b.add_argument("--backbones", type=names, default=["vse_light"], help="comma-separated backbones (default: vse_light)")
    b.add_argument("--shape", default="synthetic",
                   help="synthetic (the embedded data's generator) or the name of a dataset with a fixed feature shape "
                        "(f30k, coco, cc152k): random features and captions of that shape (default: synthetic)")
    b.add_argument("--n-train", type=int, default=2000, help="training images (5 captions each; default 2000)")
    b.add_argument("--n-test", type=int, default=1000, help="test images (default 1000, the F30K 1K size; 5000: COCO 5K)")
    b.add_argument("--epochs", "--repeats", dest="epochs", type=int, default=3,
                   help="timed epochs per phase of each method, taken in rounds (one epoch of every phase of every "
                        "method per round, so load changes fall on all alike); the median is reported with the "
                        "spread (default 3)")
    b.add_argument("--warmup", type=int, default=1,
                   help="untimed epochs first, per phase of each method (compilation, caches; default 1)")
    b.add_argument("--batch", type=int, default=128, help="training pairs in the pair-kernel timing (default 128)")
    b.add_argument("--backbone-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="override a backbone hyperparameter (e.g. embed_dim=256)")
    b.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda if available)")
    b.add_argument("--threads", type=int, help="CPU threads for torch")
    precision_options(b)
    b.add_argument("--compile", action="store_true", help="torch.compile the sgr/saf pair-scoring kernel")
    b.add_argument("--cache-dir", default=os.environ.get("NCBENCH_CACHE", str(Path.home() / ".cache" / "ncbench")))
    b.add_argument("--out", help="also write the figures (with versions, git revision, hardware) to this JSON file")


def command(args) -> int:
    import json

    import torch
    from tabulate import tabulate

    from ..atomic import write_text_atomic
    from ..data.shaped import shapes
    from ..precision import check_precision
    from ..registry import BACKBONES, METHODS
    from ..results import environment
    from ..runner import check_device, default_device, load_warning
    from ..throughput import (
        ESTIMATE_NOTE,
        bench_dataset,
        check_backbone,
        measure,
        relative_to_vanilla,
        time_pair_kernel,
    )

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.n_train < 10 or args.n_test < 2 or args.epochs < 1 or args.batch < 2 or args.warmup < 0:
        raise ConfigError("--n-train must be ≥ 10, --n-test ≥ 2, --epochs ≥ 1, --warmup ≥ 0 and --batch ≥ 2")
    if args.shape != "synthetic" and args.shape not in shapes():
        raise ConfigError(f"--shape must be synthetic or one of {', '.join(shapes())}, got {args.shape!r}")
    for m in args.methods:
        METHODS.get(m)
    for bb in args.backbones:
        BACKBONES.get(bb)
    bconf = key_values(args.backbone_opt)
    device = check_device(args.device or default_device())
    precision = check_precision(args.precision, device)
    say = lambda text: print(text, file=sys.stderr, flush=True)
    say(f"building {args.shape} data: {args.n_train} train / {args.n_test} test images ...")
    ds = bench_dataset(args.shape, args.n_train, args.n_test, Path(args.cache_dir))
    for bb in args.backbones:
        check_backbone(bb, ds, bconf)
    busy = load_warning(torch.get_num_threads()) if device == "cpu" else None
    if busy:
        say(f"{busy} (before timing: the figures will be slow and noisy)")
    rows, kernels = [], []
    for bb in args.backbones:
        say(f"timing {bb} on {device} ...")
        k = time_pair_kernel(bb, ds, device, args.batch, precision=precision, backbone_config=bconf)
        kernels += [k] if k else []
        say(f"  {', '.join(args.methods)} on {bb}: {args.warmup} untimed + {args.epochs} timed epoch(s) per phase ...")
        rows += measure(args.methods, bb, ds, device, args.epochs, precision, args.compile, backbone_config=bconf,
                        warmup=args.warmup)
    rel = relative_to_vanilla(rows)
    print(phase_table(rows, rel))
    if kernels:
        print()
        print(tabulate([[k.backbone, k.device, k.batch, f"{k.vectorised_ms:.1f}", f"{k.per_caption_ms:.1f}",
                         f"{k.speedup:.2f}×"] for k in kernels],
                       ["pair kernel", "device", "batch", "all pairs (ms)", "per caption (ms)", "speed-up"],
                       tablefmt="github"))
    estimated = [r for r in rows if r.estimate]
    if estimated:
        print()
        print(f"ESTIMATE of one full run at the card's sizes (arithmetic on the timings above, not measured): "
              f"{ESTIMATE_NOTE}")
        print(estimate_table(estimated))
    wobbly = [f"{r.method}/{r.backbone}/{p.phase}" for r in rows for p in r.phases if p.spread > SPREAD_WARN]
    if wobbly:
        say(f"warning: the epochs of {', '.join(wobbly)} differ by more than {SPREAD_WARN:.0%} of their median: the "
            "machine's speed changed while timing; re-run with more --epochs, or on a quiet machine")
    busy = load_warning(torch.get_num_threads()) if device == "cpu" else None
    if busy:
        say(f"{busy} (after timing; compare only the × vanilla ratios, which were timed in the same rounds)")
    print(f"device {device}; data: {args.shape}, {ds.train.n_captions} training pairs, "
          f"features {tuple(ds.train.images.shape[1:])}, precision {precision}"
          f"{', compiled' if args.compile else ''}" + ("; pair kernel: forward + backward of one batch" if kernels else ""))
    if args.out:
        data = {"results": [with_ratios(r, rel) for r in rows],
                "pair_kernels": [k.to_dict() for k in kernels], "env": environment(device),
                "settings": {k: getattr(args, k) for k in ("shape", "n_train", "n_test", "epochs", "warmup", "batch",
                                                           "compile")} | {"precision": precision, "backbone_options": bconf}}
        write_text_atomic(Path(args.out), json.dumps(data, indent=1) + "\n")
        print(f"written to {args.out}")
    return 0


def _ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def phase_table(rows, rel) -> str:
    """One line per method × backbone × phase: all pairs and the pairs each network trained, per
    second, beside vanilla, and the epoch's time with the part before its first step (the division)."""
    from tabulate import tabulate

    table = []
    for r in rows:
        for p in r.phases:
            ratios = rel.get((r.method, r.backbone, p.phase), (None, None))
            table.append([r.method, r.backbone, f"{p.phase} ({p.schedule_epochs})", r.n_train_pairs,
                          " + ".join(f"{n:,.0f}" for n in p.trained_pairs), f"{p.pairs_per_s:,.0f}",
                          f"{p.trained_pairs_per_s:,.0f}", _ratio(ratios[0]), _ratio(ratios[1]),
                          f"{p.train_s_per_epoch:.2f}", f"{p.plan_s_per_epoch:.2f}",
                          f"{min(p.epoch_s):.2f}–{max(p.epoch_s):.2f}", f"{p.spread:.0%}"])
    return tabulate(table, ["method", "backbone", "phase (epochs)", "all pairs", "trained/epoch (per net)",
                            "all pairs/s", "trained pairs/s", "× vanilla", "× vanilla trained", "s/epoch (median)",
                            "of which division", "min–max", "spread"], tablefmt="github")


def _clock(seconds: float) -> str:
    """``h:mm:ss`` (a full run's scale)."""
    s = round(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def estimate_table(rows) -> str:
    """One line per method × backbone: the estimated full run at the card's sizes, by part."""
    from tabulate import tabulate

    table = [[r.method, r.backbone, r.estimate.card, " + ".join(str(n) for n in r.estimate.epochs.values()),
              f"{r.eval_s:.2f}", _clock(r.estimate.training_s), _clock(r.estimate.division_s),
              _clock(r.estimate.validation_s), _clock(r.estimate.test_s), _clock(r.estimate.total_s),
              "" if r.peak_gpu_mb is None else f"{r.peak_gpu_mb:,.0f}"] for r in rows]
    return tabulate(table, ["method", "backbone", "card", "epochs (per phase)",
                            f"eval {rows[0].n_test_images}×{rows[0].n_test_captions} (s)", "est. training steps",
                            "est. division", "est. validation", "est. test", "est. total", "peak GPU MB"],
                    tablefmt="github")


def with_ratios(r, rel) -> dict:
    """A row's JSON record, each phase with its ratios to vanilla (None without a vanilla reference)."""
    out = r.to_dict()
    for p in out["phases"]:
        ratios = rel.get((r.method, r.backbone, p["phase"]), (None, None))
        p["relative_to_vanilla"], p["trained_relative_to_vanilla"] = ratios
    return out
