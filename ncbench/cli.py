"""The ``ncbench`` command: run sweeps, list plugins, build leaderboards, inspect noise indices.

Errors caused by input are printed as one line (``ncbench: error: ...``) with exit code 2; an
interrupted sweep exits 130 and resumes when the same command is run again.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path

from . import __version__
from .errors import ConfigError, NcbenchError

EPILOG_RUN = """\
examples:
  ncbench run                                       vanilla on the embedded dataset, noise 0/0.2/0.6
  ncbench run --methods vanilla --noise 0,0.2,0.6 --seeds 0,1,2
  ncbench run --dataset f30k --data-root data/ --noise 0.2 --noise-dir noise_index/
  ncbench run --methods vanilla --method-opt epochs=20 --method-opt lr=1e-3

Re-running the same command skips finished runs (same config hash) and finishes the rest.
"""


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _options(pairs: list[str]) -> dict[str, str]:
    out = {}
    for p in pairs:
        key, sep, value = p.partition("=")
        if not sep or not key:
            raise ConfigError(f"option {p!r} must look like key=value")
        out[key.strip()] = value.strip()
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ncbench", description="Noisy-correspondence benchmark harness.")
    p.add_argument("--version", action="version", version=f"ncbench {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    r = sub.add_parser("run", help="train and evaluate a sweep of runs", epilog=EPILOG_RUN,
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Train every method × backbone × dataset × noise × seed combination, select "
                                   "each on validation rSum, test it and write one JSON result per run.")
    r.add_argument("--methods", type=_names, default=["vanilla"], help="comma-separated method names (default: vanilla)")
    r.add_argument("--backbones", type=_names, default=["vse_light"], help="comma-separated backbones (default: vse_light)")
    r.add_argument("--dataset", "--datasets", dest="datasets", type=_names, default=["synthetic"],
                   help="comma-separated datasets (default: synthetic, the embedded one)")
    r.add_argument("--noise", type=_floats, default=[0.0, 0.2, 0.6], help="noise ratios in [0,1) (default: 0,0.2,0.6)")
    r.add_argument("--seeds", type=_ints, default=[0], help="training seeds (default: 0)")
    r.add_argument("--noise-seed", type=int, default=0, help="seed of generated noise indices, shared by all runs (default: 0)")
    r.add_argument("--noise-file", help="use this noise-index .npy verbatim (one --noise value only)")
    r.add_argument("--noise-dir", help="folder of official index files named <dataset>_precomp_<ratio>.npy")
    r.add_argument("--method-opt", action="append", default=[], metavar="KEY=VALUE", help="override a method hyperparameter")
    r.add_argument("--backbone-opt", action="append", default=[], metavar="KEY=VALUE", help="override a backbone hyperparameter")
    r.add_argument("--results", default="results", help="results folder (default: ./results)")
    r.add_argument("--data-root", help="folder holding a real dataset's files")
    r.add_argument("--cache-dir", default=os.environ.get("NCBENCH_CACHE", str(Path.home() / ".cache" / "ncbench")),
                   help="where generated data is kept (default: $NCBENCH_CACHE or ~/.cache/ncbench)")
    r.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda if available, else cpu)")
    r.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    r.add_argument("--dry-run", action="store_true", help="print the runs and whether each is done, then stop")
    r.add_argument("--no-progress", action="store_true", help="no progress bars")
    r.add_argument("-v", "--verbose", action="store_true", help="print one line per epoch (loss, validation rSum, time)")

    ls = sub.add_parser("list", help="show registered methods, backbones and datasets")
    ls.add_argument("kind", nargs="?", choices=["methods", "backbones", "datasets"], help="only this kind")

    lb = sub.add_parser("leaderboard", help="aggregate result files into Markdown tables")
    lb.add_argument("--results", default="results", help="results folder (default: ./results)")
    lb.add_argument("--out", default="leaderboards", help="output folder (default: ./leaderboards)")

    b = sub.add_parser("bench", help="end-to-end throughput: training pairs/s and evaluation time",
                       description="Train each method × backbone for a few steady-state epochs on synthetic data of the "
                                   "chosen size and time them, then time one test evaluation. Compare two commits by "
                                   "running this on the same machine.")
    b.add_argument("--methods", type=_names, default=["vanilla", "ncr", "bicro", "crcl"])
    b.add_argument("--backbones", type=_names, default=["vse_light"])
    b.add_argument("--n-train", type=int, default=2000, help="training images (5 captions each; default 2000)")
    b.add_argument("--n-test", type=int, default=1000, help="test images (default 1000, the F30K 1K size)")
    b.add_argument("--epochs", type=int, default=1, help="steady-state epochs timed (default 1)")
    b.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda if available)")
    b.add_argument("--threads", type=int, help="CPU threads for torch")
    b.add_argument("--cache-dir", default=os.environ.get("NCBENCH_CACHE", str(Path.home() / ".cache" / "ncbench")))
    b.add_argument("--out", help="also write the figures (with versions, git revision, hardware) to this JSON file")

    nz = sub.add_parser("noise", help="make or inspect noise-index files")
    nsub = nz.add_subparsers(dest="noise_command", metavar="ACTION", required=True)
    ni = nsub.add_parser("info", help="length, value range, sha256 and realised noise ratio of index files")
    ni.add_argument("files", nargs="+")
    ni.add_argument("--captions-per-image", type=int, default=5, help="captions per image row (default: 5)")
    nm = nsub.add_parser("make", help="generate an index with the papers' caption shuffle")
    nm.add_argument("--captions", type=int, required=True, help="number of training captions (F30K: 145000)")
    nm.add_argument("--captions-per-image", type=int, default=5)
    nm.add_argument("--ratio", type=float, required=True)
    nm.add_argument("--seed", type=int, default=0)
    nm.add_argument("--out", required=True, help="output .npy")
    return p


# -- commands ----------------------------------------------------------------------------------
def cmd_run(args) -> int:
    import torch

    from .report.aggregate import aggregate, results_frame
    from .report.markdown import markdown_tables
    from .results import existing_status, result_path
    from .runner import RunSettings, SweepSpec, check_device, default_device, plan, run_sweep

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    spec = SweepSpec(
        methods=args.methods, backbones=args.backbones, datasets=args.datasets, noise=args.noise, seeds=args.seeds,
        noise_seed=args.noise_seed, noise_file=args.noise_file, noise_dir=args.noise_dir,
        method_options=_options(args.method_opt), backbone_options=_options(args.backbone_opt),
    )
    runs = plan(spec)
    results = Path(args.results)
    if args.dry_run:
        for cfg in runs:
            print(f"{existing_status(result_path(results, cfg), cfg.config_hash):8s} {cfg.label}")
        return 0
    settings = RunSettings(
        results_dir=results, data_root=Path(args.data_root) if args.data_root else None, cache_dir=Path(args.cache_dir),
        device=check_device(args.device or default_device()), progress=not args.no_progress and sys.stderr.isatty(),
        verbose=args.verbose,
        log=lambda msg: print(msg, flush=True),
    )
    print(f"ncbench: {len(runs)} run(s) on {settings.device}; results in {results}/", flush=True)
    t0 = time.perf_counter()
    report = run_sweep(runs, settings)
    print(f"\n{report.ran} run(s) trained, {report.skipped} already done, {len(report.failed)} failed "
          f"in {time.perf_counter() - t0:.0f}s\n")
    print(markdown_tables(aggregate(results_frame(report.done))))
    for f in report.failed:
        print(f"failed: {f}", file=sys.stderr)
    return 1 if report.failed else 0


def cmd_list(args) -> int:
    from .registry import REGISTRIES

    status = 0
    for kind, reg in REGISTRIES.items():
        if args.kind and kind != args.kind:
            continue
        print(f"{kind}:")
        for e in reg.entries():
            src = "" if e.source == "builtin" else f"  [{e.source}]"
            print(f"  {e.name:12s} {e.description}{src}")
        for name, err in reg.load_errors.items():
            print(f"  {name:12s} FAILED TO LOAD: {err}")
            status = 1
    return status


def cmd_leaderboard(args) -> int:
    from .report.aggregate import aggregate, results_frame
    from .report.markdown import markdown_tables
    from .atomic import write_text_atomic
    from .results import load_results

    root = Path(args.results)
    if not root.is_dir():
        raise ConfigError(f"{root}: results folder not found (run `ncbench run` first)")
    loaded = load_results(root)
    for err in loaded.errors:
        print(f"warning: skipped unreadable result: {err}", file=sys.stderr)
    text = "# ncbench leaderboard\n\nMeasured results (mean ± sample std over seeds; n = seeds).\n\n"
    text += markdown_tables(aggregate(results_frame(loaded.results)))
    out = Path(args.out) / "leaderboard.md"
    write_text_atomic(out, text)
    print(text)
    print(f"written to {out} ({len(loaded.results)} result file(s), {len(loaded.errors)} skipped)")
    return 0


def cmd_noise(args) -> int:
    import numpy as np

    from .data.noise import make_noise_index, read_index_file, save_noise_index, validate_index, array_sha256

    if args.noise_command == "make":
        true = np.arange(args.captions, dtype=np.int64) // args.captions_per_image
        idx = make_noise_index(true, args.ratio, args.seed)
        save_noise_index(idx, args.out)
        print(f"{args.out}: ratio {args.ratio:g} -> realised {idx.realised_ratio:.5f}, sha256 {idx.sha256}")
        return 0
    for f in args.files:
        t2i = read_index_file(f)
        n_rows = int(t2i.max()) + 1 if t2i.size else 0
        t2i = validate_index(t2i, len(t2i), max(n_rows, len(t2i) // args.captions_per_image), f)
        true = np.arange(len(t2i), dtype=np.int64) // args.captions_per_image
        realised = float((t2i != true).mean()) if len(t2i) else 0.0
        print(f"{f}: {len(t2i)} captions, images in [{t2i.min()}, {t2i.max()}], realised noise {realised:.5f}, "
              f"sha256 {array_sha256(t2i)}")
    return 0


def cmd_bench(args) -> int:
    import json

    import torch
    from tabulate import tabulate

    from .atomic import write_text_atomic
    from .registry import BACKBONES, METHODS
    from .results import environment
    from .runner import check_device, default_device
    from .throughput import measure

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.n_train < 10 or args.n_test < 2 or args.epochs < 1:
        raise ConfigError("--n-train must be ≥ 10, --n-test ≥ 2 and --epochs ≥ 1")
    for m in args.methods:
        METHODS.get(m)
    for bb in args.backbones:
        BACKBONES.get(bb)
    device = check_device(args.device or default_device())
    rows = []
    for bb in args.backbones:
        for m in args.methods:
            print(f"timing {m}/{bb} on {device} ...", file=sys.stderr, flush=True)
            rows.append(measure(m, bb, args.n_train, args.n_test, device, args.epochs, Path(args.cache_dir)))
    table = [[r.method, r.backbone, r.device, r.n_train_pairs, f"{r.pairs_per_s:,.0f}", f"{r.train_s_per_epoch:.2f}",
              f"{r.eval_s:.2f}", "" if r.peak_gpu_mb is None else f"{r.peak_gpu_mb:,.0f}"] for r in rows]
    print(tabulate(table, ["method", "backbone", "device", "train pairs", "pairs/s", "s/epoch",
                           f"eval {args.n_test}×{5 * args.n_test} (s)", "peak GPU MB"], tablefmt="github"))
    if args.out:
        data = {"results": [r.to_dict() for r in rows], "env": environment(device),
                "settings": {k: getattr(args, k) for k in ("n_train", "n_test", "epochs")}}
        write_text_atomic(Path(args.out), json.dumps(data, indent=1) + "\n")
        print(f"written to {args.out}")
    return 0


COMMANDS = {"run": cmd_run, "bench": cmd_bench, "list": cmd_list, "leaderboard": cmd_leaderboard, "noise": cmd_noise}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    try:
        return COMMANDS[args.command](args)
    except NcbenchError as exc:
        print(f"ncbench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nncbench: interrupted; finished results are kept, re-run the same command to resume", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: say so in one line, traceback only on request
        if os.environ.get("NCBENCH_DEBUG"):
            traceback.print_exc()
        print(f"ncbench: internal error: {type(exc).__name__}: {exc} (set NCBENCH_DEBUG=1 for the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
