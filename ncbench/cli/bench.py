"""``ncbench bench``: end-to-end throughput of methods × backbones beside vanilla and the official loop."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..errors import ConfigError
from .options import (
    key_values,
    names,
)

NAMES = ("bench",)
SPREAD_WARN = 0.2  # epochs of one method differing by more than this share of their median


def add_parser(sub) -> None:
    b = sub.add_parser("bench", help="end-to-end throughput: training pairs/s and evaluation time",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Train each method × backbone for a few steady-state epochs and time them, then time "
                                   "one test evaluation. Measured beside two references in the same run: each method's "
                                   "pairs/s relative to vanilla on the same backbone, and, for cross-attention backbones "
                                   "(sgr, saf), one training batch scored all pairs at once vs one caption at a time "
                                   "(the official code's loop). Compare two commits by running this on the same machine.",
                       epilog="examples:\n"
                              "  ncbench bench                                         vse_light on the synthetic data, CPU-sized\n"
                              "  ncbench bench --shape f30k --backbones sgr,saf --n-train 2000 --n-test 1000 --amp bf16\n"
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
                   help="timed steady-state epochs per method, taken in rounds (one epoch of every method per "
                        "round, so load changes fall on all alike); the median is reported with the spread "
                        "(default 3)")
    b.add_argument("--warmup", type=int, default=1,
                   help="untimed steady-state epochs first, per method (compilation, caches; default 1)")
    b.add_argument("--batch", type=int, default=128, help="training pairs in the pair-kernel timing (default 128)")
    b.add_argument("--backbone-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="override a backbone hyperparameter (e.g. embed_dim=256)")
    b.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda if available)")
    b.add_argument("--threads", type=int, help="CPU threads for torch")
    b.add_argument("--amp", choices=["off", "bf16"], default="off", help="bf16 autocast for training and evaluation")
    b.add_argument("--compile", action="store_true", help="torch.compile the sgr/saf pair-scoring kernel")
    b.add_argument("--cache-dir", default=os.environ.get("NCBENCH_CACHE", str(Path.home() / ".cache" / "ncbench")))
    b.add_argument("--out", help="also write the figures (with versions, git revision, hardware) to this JSON file")


def command(args) -> int:
    import json

    import torch
    from tabulate import tabulate

    from ..atomic import write_text_atomic
    from ..data.shaped import shapes
    from ..registry import BACKBONES, METHODS
    from ..results import environment
    from ..runner import check_device, default_device, load_warning
    from ..throughput import (
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
        k = time_pair_kernel(bb, ds, device, args.batch, amp=args.amp, backbone_config=bconf)
        kernels += [k] if k else []
        say(f"  {', '.join(args.methods)} on {bb}: {args.warmup} untimed + {args.epochs} timed epoch(s) each ...")
        rows += measure(args.methods, bb, ds, device, args.epochs, args.amp, args.compile, backbone_config=bconf,
                        warmup=args.warmup)
    rel = relative_to_vanilla(rows)
    table = [[r.method, r.backbone, r.device, r.n_train_pairs, f"{r.pairs_per_s:,.0f}",
              f"{rel[(r.method, r.backbone)]:.2f}" if (r.method, r.backbone) in rel else "",
              f"{r.train_s_per_epoch:.2f}", f"{min(r.epoch_s):.2f}–{max(r.epoch_s):.2f}", f"{r.spread:.0%}",
              f"{r.eval_s:.2f}", "" if r.peak_gpu_mb is None else f"{r.peak_gpu_mb:,.0f}"]
             for r in rows]
    print(tabulate(table, ["method", "backbone", "device", "train pairs", "pairs/s", "× vanilla", "s/epoch (median)",
                           "min–max", "spread", f"eval {args.n_test}×{ds.test.n_captions} (s)", "peak GPU MB"],
                   tablefmt="github"))
    if kernels:
        print()
        print(tabulate([[k.backbone, k.device, k.batch, f"{k.vectorised_ms:.1f}", f"{k.per_caption_ms:.1f}",
                         f"{k.speedup:.2f}×"] for k in kernels],
                       ["pair kernel", "device", "batch", "all pairs (ms)", "per caption (ms)", "speed-up"],
                       tablefmt="github"))
    wobbly = [f"{r.method}/{r.backbone}" for r in rows if r.spread > SPREAD_WARN]
    if wobbly:
        say(f"warning: the epochs of {', '.join(wobbly)} differ by more than {SPREAD_WARN:.0%} of their median: the "
            "machine's speed changed while timing; re-run with more --epochs, or on a quiet machine")
    busy = load_warning(torch.get_num_threads()) if device == "cpu" else None
    if busy:
        say(f"{busy} (after timing; compare only the × vanilla ratios, which were timed in the same rounds)")
    print(f"data: {args.shape}, features {tuple(ds.train.images.shape[1:])}, amp {args.amp}"
          f"{', compiled' if args.compile else ''}" + ("; pair kernel: forward + backward of one batch" if kernels else ""))
    if args.out:
        data = {"results": [{**r.to_dict(), "relative_to_vanilla": rel.get((r.method, r.backbone))} for r in rows],
                "pair_kernels": [k.to_dict() for k in kernels], "env": environment(device),
                "settings": {k: getattr(args, k) for k in ("shape", "n_train", "n_test", "epochs", "warmup", "batch",
                                                           "amp", "compile")} | {"backbone_options": bconf}}
        write_text_atomic(Path(args.out), json.dumps(data, indent=1) + "\n")
        print(f"written to {args.out}")
    return 0
