"""The ``ncbench`` command: run sweeps, score noise detection against human judgments, list plugins,
build leaderboards, submit results, inspect noise indices.

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
from .errors import ConfigError, NcbenchError, Preempted

EPILOG_LEADERBOARD = """\
examples:
  ncbench leaderboard                               measured results of ./results into ./leaderboards
  ncbench leaderboard --with-reported               ... with the papers' numbers as marked reference rows
  ncbench leaderboard --results runs/a --results runs/b --format md,html --out boards/
"""

EPILOG_RUN = """\
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

Re-running the same command skips finished runs (same config hash) and finishes the rest; a run
that was interrupted continues from its checkpoint. SIGTERM or Ctrl-C during training finishes the
current step and saves a mid-epoch checkpoint first (exit 143 / 130); a second signal stops at once.
"""


EPILOG_DETECT = """\
examples:
  ncbench detect --data-root ../shared/data                      vanilla, NCR, BiCro, CRCL at 20/50/80% noise
  ncbench detect --data-root ../shared/data --methods ncr --noise 0.5 --seeds 0,1,2

The judged pairs are among Flickr8k's 1000 official test images; --data-root is the folder holding
flickr8k/ (features and text files). Finished runs are reused, as with `ncbench run`.
"""

EPILOG_TUNE = """\
examples:
  ncbench tune --dataset flickr8k-clip --data-root ../shared/data --budget 16 --workers 2
  ncbench tune --dataset flickr8k-xception --data-root ../shared/data --methods vanilla,ncr --noise 0.5 --dry-run

The recipes land in ./recipes/<dataset>.toml (--recipes DIR elsewhere): review the diff and commit it.
clean_oracle uses vanilla's recipe; the training-free probe chooses its penalty on the dev split in each run.
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


def _workers(text: str) -> int:
    if text == "auto":
        import torch

        return max(torch.cuda.device_count(), 1)
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of workers or 'auto', got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"need at least 1 worker, got {n}")
    return n


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


def _sweep_options(p: argparse.ArgumentParser, methods: list[str], datasets: list[str], noise: list[float],
                   dataset_help: str) -> None:
    """The options shared by ``run`` and ``detect``."""
    fmt = ",".join
    p.add_argument("--methods", type=_names, default=methods, help=f"comma-separated method names (default: {fmt(methods)})")
    p.add_argument("--references", action="store_true",
                   help="also run the boards' reference rows: the training-free floor (probe) and the clean-pairs "
                        "ceiling (clean_oracle), on the same split and noise index (--method-opt reaches them only "
                        "where they have the option)")
    p.add_argument("--backbones", type=_names, default=None,
                   help="comma-separated backbones (default: the dataset card's: vse_light, or vse_bow for the "
                        "Flickr8k cards); sgraf = an sgr and a saf run, evaluated together as an ensemble")
    p.add_argument("--dataset", "--datasets", dest="datasets", type=_names, default=datasets, help=dataset_help)
    p.add_argument("--noise", type=_floats, default=noise,
                   help=f"noise ratios in [0,1) (default: {fmt(f'{x:g}' for x in noise)})")
    p.add_argument("--seeds", type=_ints, default=[0], help="training seeds (default: 0)")
    p.add_argument("--noise-seed", type=int, default=0, help="seed of generated noise indices, shared by all runs (default: 0)")
    p.add_argument("--noise-type", choices=("caption", "image"), default="caption",
                   help="noise protocol: caption (NCR, BiCro, CRCL: each chosen caption gets another image) or image "
                        "(DECL, RCL, L2RM: all captions of a chosen image move together; harder). Results of the two "
                        "are kept apart and never share a table (default: caption)")
    p.add_argument("--noise-file", help="use this noise-index .npy verbatim (one --noise value only); per-caption or "
                        "per-image (RCL's); it must hold noise of --noise-type")
    p.add_argument("--noise-dir", help="folder of official index files named <dataset>_precomp_<ratio>.npy "
                        "(BiCro, L2RM) or noise_inx_<ratio>.npy (RCL)")
    p.add_argument("--method-opt", action="append", default=[], metavar="KEY=VALUE", help="override a method hyperparameter")
    p.add_argument("--backbone-opt", action="append", default=[], metavar="KEY=VALUE", help="override a backbone hyperparameter")
    p.add_argument("--recipes", metavar="DIR",
                   help="folder of per-dataset recipe files <dataset>.toml (default: the recipes shipped with ncbench, "
                        "the repository's recipes/); for `tune`, where the chosen recipes are written (default: ./recipes)")
    p.add_argument("--no-recipes", action="store_true",
                   help="ignore recipe files: the methods' own defaults (and their papers' per-dataset values)")
    p.add_argument("--results", default="results", help="results folder (default: ./results)")
    p.add_argument("--data-root", help="folder holding a real dataset's files")
    p.add_argument("--cache-dir", default=os.environ.get("NCBENCH_CACHE", str(Path.home() / ".cache" / "ncbench")),
                   help="where generated data is kept (default: $NCBENCH_CACHE or ~/.cache/ncbench)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda if available, else cpu)")
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--amp", choices=["off", "bf16"], default="off",
                   help="mixed precision for training and evaluation: bf16 autocast (for CUDA; recorded in "
                        "each result as meta.amp); default off (float32)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the backbone's pair-scoring kernel (sgr, saf; the first steps wait for the "
                        "compiler; recorded as meta.compiled)")
    p.add_argument("--dry-run", action="store_true", help="print the runs and whether each is done, then stop")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("-v", "--verbose", action="store_true", help="print one line per epoch (loss, validation rSum, time)")
    p.add_argument("--shard", metavar="I/N",
                   help="train only every N-th run starting at I (0-based); 'auto' takes I and N from "
                        "SLURM_PROCID/SLURM_NTASKS or RANK/WORLD_SIZE, for ranks launched by srun or torchrun")
    p.add_argument("--executor", choices=["local", "slurm"], default="local",
                   help="local: train here (see --workers); slurm: submit the missing runs as a SLURM job array "
                        "through submitit (default: local)")
    p.add_argument("--workers", type=_workers, default=1, metavar="N|auto",
                   help="local executor: N worker processes share the sweep (one GPU each when GPUs are visible); "
                        "auto: one per visible GPU, or 1 without GPUs (default 1)")
    p.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)
    g = p.add_argument_group("SLURM executor (--executor slurm; one array task per run, requeued on "
                             "preemption or time-out and resumed from the run's last checkpoint)")
    g.add_argument("--slurm-config", metavar="FILE",
                   help="TOML file with the options below as keys (partition, time_min, gpus_per_task, "
                        "cpus_per_task, mem, array_parallelism, max_requeues, job_name, logs, setup = [...], "
                        "[extra]); flags override it")
    g.add_argument("--slurm-partition", metavar="NAME", help="partition to submit to")
    g.add_argument("--slurm-time", type=int, metavar="MIN", help="time limit per task in minutes (default 1440)")
    g.add_argument("--slurm-gpus", type=int, metavar="N", help="GPUs per task (default 1; 0 for CPU nodes)")
    g.add_argument("--slurm-cpus", type=int, metavar="N", help="CPUs per task (default: the cluster's)")
    g.add_argument("--slurm-mem", metavar="SIZE", help="memory per task, e.g. 64G (default: the cluster's)")
    g.add_argument("--slurm-parallel", type=int, metavar="N", help="array tasks running at once (default 64)")
    g.add_argument("--slurm-requeues", type=int, metavar="N", help="requeues after a time-out (default 5)")
    g.add_argument("--slurm-setup", action="append", default=[], metavar="LINE",
                   help="shell line run before each task, e.g. 'module load cuda' (repeatable)")
    g.add_argument("--slurm-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="any other sbatch option, e.g. account=abc or qos=high (repeatable)")
    g.add_argument("--slurm-logs", metavar="DIR", help="submitit's folder of scripts and logs (default <results>/slurm)")
    g.add_argument("--wait", action="store_true",
                   help="stay until every job has ended, then print the summary (default: submit and return)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ncbench", description="Noisy-correspondence benchmark harness.")
    p.add_argument("--version", action="version", version=f"ncbench {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    r = sub.add_parser("run", help="train and evaluate a sweep of runs", epilog=EPILOG_RUN,
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Train every method × backbone × dataset × noise × seed combination, select "
                                   "each on validation rSum, test it and write one JSON result per run.")
    _sweep_options(r, methods=["vanilla"], datasets=["synthetic"], noise=[0.0, 0.2, 0.6],
                   dataset_help="comma-separated datasets (default: synthetic, the embedded one)")

    d = sub.add_parser(
        "detect", help="score noise detection against human judgments (Flickr8k expert and crowd)",
        epilog=EPILOG_DETECT, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train the methods on a dataset that comes with human judgments of image-caption pairs "
                    "(flickr8k-xception: Flickr8k's expert and CrowdFlower judgments of pairs among its 1000 test "
                    "images), exactly as `ncbench run` does, then score every judged pair with each method's own "
                    "correspondence estimate and report ROC AUC ('describes' vs 'does not describe', majority "
                    "verdict) and Spearman correlation with the mean human score, over all judged pairs and over "
                    "held-out pairs (image and caption from test-split images). The scores are stored in each "
                    "result file and shown by `ncbench leaderboard` as a table of their own.")
    _sweep_options(d, methods=["vanilla", "ncr", "bicro", "crcl"], datasets=["flickr8k-xception"],
                   noise=[0.2, 0.5, 0.8], dataset_help="comma-separated datasets with judgments "
                                                       "(default: flickr8k-xception)")

    tu = sub.add_parser(
        "tune", help="choose each method's recipe for a dataset on the dev split (same trial budget for every method)",
        epilog=EPILOG_TUNE, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="For each method (and backbone), train the same number of trials (--budget): trial 0 with the "
                    "method's starting options, the others with options drawn from the method's declared search space "
                    "(seeded). Each trial trains at every tuning noise ratio exactly as `ncbench run` does and is "
                    "selected on the dev split; the test split is never loaded. The trial with the best mean "
                    "validation rSum becomes the method's recipe in <recipes>/<dataset>.toml, with the budget, the "
                    "objective and the cost, which `ncbench run` then uses by default. Trials are ordinary runs "
                    "under <results>/tuning/: an interrupted tuning resumes, and --workers/--executor slurm share it.")
    _sweep_options(tu, methods=["vanilla", "ncr", "bicro", "crcl"], datasets=["flickr8k-clip"], noise=[0.2, 0.5, 0.8],
                   dataset_help="the dataset to tune for (one; default: flickr8k-clip)")
    tu.add_argument("--budget", type=int, default=16, help="trials per method and backbone, trial 0 included (default 16)")
    tu.add_argument("--tune-seed", type=int, default=0, help="seed of the trials' draws (default 0)")
    tu.add_argument("--no-write", action="store_true", help="print the outcome; write no recipe file")

    st = sub.add_parser(
        "status", aliases=["plan"], help="show which runs of a sweep are done, running, failed or missing",
        description="For the sweep the same options would run: each run's state (done, failed, running in some "
                    "worker, partial with the epoch of its checkpoint, missing, stale, corrupt), counts, and an "
                    "estimate of the time still needed from the finished runs of the same method/backbone/dataset. "
                    "Starts nothing.")
    _sweep_options(st, methods=["vanilla"], datasets=["synthetic"], noise=[0.0, 0.2, 0.6],
                   dataset_help="comma-separated datasets (default: synthetic)")

    ls = sub.add_parser("list", help="show registered methods, backbones and datasets")
    ls.add_argument("kind", nargs="?", choices=["methods", "backbones", "datasets"], help="only this kind")

    lb = sub.add_parser(
        "leaderboard", help="aggregate result files into tables in the papers' layout (Markdown, HTML, LaTeX)",
        description="Aggregate result files over seeds (mean, sample std, 95%% CI) into tables laid out like BiCro's "
                    "Table 1: rows grouped by noise ratio then method, a column group per benchmark. Writes "
                    "leaderboard.md/.tex/.csv, index.html with one self-contained page per table, and plots/.",
        epilog=EPILOG_LEADERBOARD, formatter_class=argparse.RawDescriptionHelpFormatter)
    lb.add_argument("--results", action="append", metavar="DIR",
                    help="results folder; repeatable (default: ./results and, if present, <out>/results)")
    lb.add_argument("--out", default="leaderboards", help="output folder (default: ./leaderboards)")
    lb.add_argument("--format", type=_names, default=["md", "html", "tex"], metavar="md,html,tex",
                    help="formats to write (default: all three; leaderboard.csv is always written)")
    lb.add_argument("--with-reported", action="store_true",
                    help="add the papers' published numbers as reference rows, marked 'reported'")
    lb.add_argument("--allow-mixed", action="store_true",
                    help="show runs trained on a different noise index (marked ‡) instead of refusing them")
    lb.add_argument("--no-plots", action="store_true", help="skip the PNG plots")

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
    b.add_argument("--methods", type=_names, default=["vanilla", "ncr", "bicro", "crcl"],
                   help="comma-separated methods (default: vanilla,ncr,bicro,crcl; vanilla is the reference)")
    b.add_argument("--backbones", type=_names, default=["vse_light"], help="comma-separated backbones (default: vse_light)")
    b.add_argument("--shape", default="synthetic",
                   help="synthetic (the embedded data's generator) or the name of a dataset with a fixed feature shape "
                        "(f30k, coco, cc152k): random features and captions of that shape (default: synthetic)")
    b.add_argument("--n-train", type=int, default=2000, help="training images (5 captions each; default 2000)")
    b.add_argument("--n-test", type=int, default=1000, help="test images (default 1000, the F30K 1K size; 5000: COCO 5K)")
    b.add_argument("--epochs", type=int, default=1, help="steady-state epochs timed (default 1)")
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

    sm = sub.add_parser(
        "submit", help="validate result files and copy the accepted ones into the leaderboard",
        description="Validate result files against the published JSON Schema (ncbench/schema/result.schema.json) and "
                    "the protocol (rSum = sum of the six recalls, known protocol version, canonical noise index, "
                    "complete seed sets %s), then copy the accepted ones into <dest>/. Files are read as JSON "
                    "data only; nothing in a submission is executed." % "{0, 1, 2}",
        epilog="example:\n  ncbench submit results/protocol-1/synthetic/noise-0.2/mymethod\n"
               "  ncbench leaderboard --with-reported     (includes leaderboards/results/)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sm.add_argument("paths", nargs="*", metavar="RESULTS", help="result .json files or folders (searched recursively)")
    sm.add_argument("--dest", default="leaderboards/results", help="where accepted files go (default: leaderboards/results)")
    sm.add_argument("--check", action="store_true", help="validate only; copy nothing")
    sm.add_argument("--replace", action="store_true", help="overwrite a different accepted result of the same run")
    sm.add_argument("--print-schema", action="store_true", help="print the result JSON Schema and exit")

    nmth = sub.add_parser("new-method", help="write the skeleton of a new method plugin",
                          description="Write methods/NAME.py: a registered method that trains as written, with TODOs "
                                      "where the method's own ideas go. See methods/README.md for the walk-through.")
    nmth.add_argument("name", help="registry name, e.g. mymethod (lower case, digits, _)")
    nmth.add_argument("--template", choices=["single", "coteaching"], default="single",
                      help="single network (default) or the NCR/BiCro co-teaching skeleton")
    nmth.add_argument("--dir", default="methods", help="folder to write into (default: ./methods, the repo's methods folder)")

    da = sub.add_parser("data", help="check a dataset folder against its card")
    dsub = da.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    dc = dsub.add_parser(
        "check", help="validate a folder against a dataset card (files, shapes, row and caption counts)",
        description="Check that DIR holds the dataset as its card in datasets/ describes it: the vocabulary, and "
                    "for every split the image features (memory-mapped: only the header is read, so shapes of "
                    "multi-GB files are checked at once; truncated files are found) and the number of captions. "
                    "Prints one line per file; exit code 1 when anything is missing or misshapen.")
    dc.add_argument("--dataset", required=True, help="a dataset with a file layout: f30k, coco or cc152k")
    dc.add_argument("--root", "--data-root", dest="root", required=True, metavar="DIR",
                    help="the folder given to `ncbench run --data-root`")

    nz = sub.add_parser("noise", help="make or inspect noise-index files")
    nsub = nz.add_subparsers(dest="noise_command", metavar="ACTION", required=True)
    ni = nsub.add_parser("info", help="layout, noise type, length, value range, sha256 and realised noise ratio of "
                                      "index files")
    ni.add_argument("files", nargs="+")
    ni.add_argument("--captions-per-image", type=int, default=5, help="captions per image row (default: 5)")
    nm = nsub.add_parser("make", help="generate an index with the papers' caption or image shuffle")
    nm.add_argument("--captions", type=int, required=True, help="number of training captions (F30K: 145000)")
    nm.add_argument("--captions-per-image", type=int, default=5)
    nm.add_argument("--ratio", type=float, required=True)
    nm.add_argument("--type", dest="noise_type", choices=("caption", "image"), default="caption",
                    help="caption-level (NCR) or image-level (DECL/RCL) noise (default: caption)")
    nm.add_argument("--seed", type=int, default=0)
    nm.add_argument("--out", required=True, help="output .npy (one entry per caption)")
    return p


# -- commands ----------------------------------------------------------------------------------
def _shard(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    if text == "auto":
        for i, n in (("SLURM_PROCID", "SLURM_NTASKS"), ("RANK", "WORLD_SIZE")):
            if os.environ.get(i) is not None and os.environ.get(n) is not None:
                return int(os.environ[i]), int(os.environ[n])
        raise ConfigError("--shard auto needs SLURM_PROCID/SLURM_NTASKS or RANK/WORLD_SIZE in the environment")
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard expects I/N (e.g. 0/4) or auto, got {text!r}") from None
    return i, n


def _spec(args):
    from .runner import SweepSpec

    return SweepSpec(
        methods=args.methods, references=args.references, backbones=args.backbones, datasets=args.datasets, noise=args.noise, seeds=args.seeds,
        noise_seed=args.noise_seed, noise_file=args.noise_file, noise_dir=args.noise_dir, noise_type=args.noise_type,
        method_options=_options(args.method_opt), backbone_options=_options(args.backbone_opt),
        recipes=Path(args.recipes) if args.recipes and args.command != "tune" else None, use_recipes=not args.no_recipes,
    )


def _plan(args):
    from .runner import plan, shard

    runs = plan(_spec(args))
    part = _shard(args.shard)
    return shard(runs, *part) if part else runs


def _sweep(args, runs=None):
    """Plan (unless given ``runs``) and execute the sweep of ``run``/``detect``/``tune`` options;
    None after a dry run."""
    import signal

    from . import preemption
    from .results import existing_status, result_path

    if runs is None:
        runs = _plan(args)
    results = Path(args.results)
    if args.dry_run:
        for cfg in runs:
            print(f"{existing_status(result_path(results, cfg), cfg.config_hash):8s} {cfg.label}")
        return None
    if args.executor == "slurm":
        return _slurm(args, runs)
    # SIGTERM (preemption) and Ctrl-C stop training at the next step with a checkpoint
    with preemption.handling(signal.SIGTERM, signal.SIGINT):
        if args.workers > 1 and args.worker_index is None:
            return _local_workers(args, runs)  # the workers set their own threads
        return _train_here(args, runs, results)


def _train_here(args, runs, results):
    """Train the sweep's runs in this process (one local worker)."""
    from .ensemble import expand
    from .runner import (
        RunSettings,
        check_device,
        configure_torch,
        default_device,
        run_sweep,
    )

    configure_torch(args.threads)
    ensembles = expand(args.backbones)[1]
    prefix = "" if args.worker_index is None else f"[worker {args.worker_index}] "
    settings = RunSettings(
        results_dir=results, data_root=Path(args.data_root) if args.data_root else None, cache_dir=Path(args.cache_dir),
        device=check_device(args.device or default_device()), progress=not args.no_progress and sys.stderr.isatty(),
        verbose=args.verbose, amp=args.amp, compile=args.compile, keep_networks=bool(ensembles),
        log=lambda msg: print(prefix + msg, flush=True),
    )
    print(f"{prefix}ncbench: {len(runs)} run(s) on {settings.device}; results in {results}/", flush=True)
    t0 = time.perf_counter()
    report = run_sweep(runs, settings, ensembles)
    busy = f", {len(report.busy)} being trained by other workers" if report.busy else ""
    print(f"\n{prefix}{report.ran} run(s) trained, {report.skipped} already done, {len(report.failed)} failed{busy} "
          f"in {time.perf_counter() - t0:.0f}s\n", flush=True)
    return report


def _local_workers(args, runs):
    """The local executor: N copies of this command share the sweep through the per-run locks."""
    import signal
    import subprocess

    import torch

    from .ensemble import expand
    from .runner import collect

    argv, skip = [], False
    for a in args.argv:
        if skip:
            skip = False
        elif a == "--workers":
            skip = True
        elif not a.startswith("--workers="):
            argv.append(a)
    gpus = torch.cuda.device_count() if (args.device or "cuda").startswith("cuda") else 0
    print(f"ncbench: {len(runs)} run(s) shared by {args.workers} local workers"
          + (f" on {gpus} GPU(s)" if gpus else ""), flush=True)
    t0 = time.perf_counter()
    procs = []
    for i in range(args.workers):
        env = dict(os.environ)
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = str(i % gpus)
        # own session: a Ctrl-C at the terminal reaches the workers once, forwarded below
        procs.append(subprocess.Popen([sys.executable, "-m", "ncbench", *argv, "--worker-index", str(i), "--no-progress"],
                                      env=env, start_new_session=True))
    try:
        codes = [p.wait() for p in procs]
    except BaseException as exc:  # stopped: each worker saves a checkpoint at its next step, then exits
        for p in procs:
            if p.poll() is None:
                p.send_signal(getattr(exc, "signum", signal.SIGTERM))
        try:
            for p in procs:
                p.wait(timeout=300)
        except BaseException:  # a second stop, or a worker that does not stop: at once
            for p in procs:
                p.kill()
            raise exc from None
        raise
    report = collect(runs, Path(args.results), expand(args.backbones)[1])
    print(f"\n{args.workers} workers finished in {time.perf_counter() - t0:.0f}s (exit codes {codes}): "
          f"{len(report.done)} of {len(runs)} run(s) done\n")
    return report


def _slurm(args, runs):
    """The SLURM executor: submit the runs that are neither done nor being trained, as one job array."""
    from .ensemble import expand
    from .locks import is_locked
    from .results import inspect_result, lock_path, result_path
    from .runner import collect
    from .slurm import JobSettings, SlurmOptions, submit, wait

    options = SlurmOptions.from_sources(args.slurm_config, {
        "partition": args.slurm_partition, "time_min": args.slurm_time, "gpus_per_task": args.slurm_gpus,
        "cpus_per_task": args.slurm_cpus, "mem": args.slurm_mem, "array_parallelism": args.slurm_parallel,
        "max_requeues": args.slurm_requeues, "logs": args.slurm_logs, "setup": args.slurm_setup,
        "extra": _options(args.slurm_opt),
    })
    results, ensembles = Path(args.results).resolve(), expand(args.backbones)[1]
    todo, running = [], 0
    for cfg in runs:
        path = result_path(results, cfg)
        if inspect_result(path, cfg.config_hash)[0] == "done":
            continue
        if is_locked(lock_path(path)):
            running += 1
        else:
            todo.append(cfg)
    print(f"ncbench: {len(runs)} run(s): {len(runs) - len(todo) - running} done, {running} being trained, "
          f"{len(todo)} to submit", flush=True)
    if todo:
        settings = JobSettings(results_dir=str(results), data_root=str(Path(args.data_root).resolve()) if args.data_root
                               else None, cache_dir=str(Path(args.cache_dir).resolve()), device=args.device,
                               threads=args.threads, amp=args.amp, compile=args.compile, keep_networks=bool(ensembles))
        jobs = submit(todo, settings, options)
        array = jobs[0].job_id.split("_")[0]
        print(f"submitted {len(jobs)} run(s) as SLURM job array {array} "
              f"({options.gpus_per_task} GPU(s), {options.time_min} min per task); "
              f"submitit's scripts and logs in {Path(options.logs or results / 'slurm')}/", flush=True)
        for job, cfg in zip(jobs, todo):
            print(f"  {job.job_id}  {cfg.label}")
    if not args.wait:
        print(f"Follow the sweep with `ncbench status` and the same options; results land in {results}/")
        return None
    problems = wait(jobs) if todo else []
    report = collect(runs, results, ensembles)
    report.failed += problems
    return report


def _failures(report) -> int:
    for f in report.failed:
        print(f"failed: {f}", file=sys.stderr)
    return 1 if report.failed else 0


def cmd_run(args) -> int:
    from .report.build import summary_markdown

    report = _sweep(args)
    if report is None:
        return 0
    print(summary_markdown(report.done))
    print(f"Tables of everything in {args.results}/, in the papers' layout (Markdown, HTML, LaTeX): "
          f"ncbench leaderboard --results {args.results} --with-reported")
    return _failures(report)


def cmd_detect(args) -> int:
    from .registry import DATASETS
    from .report.build import agreement_boards
    from .report.markdown import render_board

    without = [d for d in args.datasets if not DATASETS.get(d).has_judgments]
    if without:
        with_judgments = [n for n in DATASETS.names() if DATASETS.get(n).has_judgments]
        raise ConfigError(f"dataset(s) {', '.join(without)} have no human judgments; "
                          f"choose from {', '.join(with_judgments)}")
    report = _sweep(args)
    if report is None:
        return 0
    missing = [r.get("_path") or r["identity"]["method"] for r in report.done if not r.get("human_agreement")]
    for m in missing:
        print(f"warning: {m} has no human-agreement scores (written by an older ncbench); move it away and "
              "re-run to score it", file=sys.stderr)
    boards, _ = agreement_boards(report.done, allow_mixed=True)
    print("\n".join(render_board(b) for b in boards) or "_No human-agreement scores._\n")
    print(f"All tables (retrieval and human agreement): ncbench leaderboard --results {args.results}")
    return _failures(report)


def cmd_status(args) -> int:
    from collections import Counter

    import numpy as np
    from tabulate import tabulate

    from .checkpoint import Checkpointer
    from .locks import is_locked
    from .results import inspect_result, lock_path, result_path
    from .runner import checkpoint_path

    runs, results = _plan(args), Path(args.results)
    if not results.is_dir():
        raise NcbenchError(f"results folder {str(results)!r} does not exist: give the --results of the sweep "
                           "(nothing has run there yet, or the path is mistyped)")
    rows, counts, seconds, gpu = [], Counter(), {}, False
    for cfg in runs:
        path = result_path(results, cfg)
        (state, r), detail = inspect_result(path, cfg.config_hash), ""
        key = (cfg.method, cfg.backbone, cfg.dataset)
        if state == "done":
            t = r["test"][r["test"]["primary"]]
            seconds.setdefault(key, []).append(float(r["timings"]["total_s"]))
            gpu = gpu or str(r.get("env", {}).get("device", "")).startswith("cuda")
            detail = f"test rSum {t['rsum']:.1f}"
        elif state == "failed":
            detail = str(r.get("error"))[:80]
        if state != "done":
            holder = is_locked(lock_path(path))
            found = Checkpointer(checkpoint_path(path), cfg.config_hash).where()  # one read of the file
            if found is not None and found[1] == cfg.config_hash:
                state, detail = ("partial" if state == "missing" else state), f"checkpoint {found[0]}"
            elif found is not None:  # interrupted with other --method-opt values than these
                state = "partial-other" if state == "missing" else state
                detail = (f"checkpoint {found[0]} of another config ({found[1][:12]}): give that run's "
                          "--method-opt values to see or resume it")
            if holder:
                state, detail = "running", f"{holder}" + (f"; {detail}" if detail else "")
        counts[state] += 1
        rows.append([state, cfg.label, detail])
    print(tabulate(rows, ["state", "run", "detail"], tablefmt="simple"))
    print("\n" + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + f" ({len(runs)} run(s))")
    todo = [cfg for cfg, row in zip(runs, rows) if row[0] != "done"]
    known = [np.mean(seconds[k]) for k in ((c.method, c.backbone, c.dataset) for c in todo) if k in seconds]
    if todo and not known:
        print(f"still to run: {len(todo)}; no time estimate yet (it needs a finished run of the same "
              "method/backbone/dataset)")
    elif todo:
        unit = "GPU-hours" if gpu else "hours"
        print(f"still to run: {len(todo)}; estimated {sum(known) / 3600:.2f} {unit} for {len(known)} of them "
              f"(mean time of finished runs of the same method/backbone/dataset)"
              + (f"; {len(todo) - len(known)} without an estimate" if len(todo) > len(known) else ""))
    return 0


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
    from .report.build import LeaderboardRequest, build_leaderboard

    folders = [Path(p) for p in args.results] if args.results else [Path("results")]
    if not args.results and Path(args.out, "results").is_dir():
        folders.append(Path(args.out, "results"))  # accepted submissions
    req = LeaderboardRequest(results=folders, out=Path(args.out), formats=tuple(args.format),
                             with_reported=args.with_reported, allow_mixed=args.allow_mixed, plots=not args.no_plots)
    out = build_leaderboard(req)
    for err in out.skipped:
        print(f"warning: skipped unreadable result: {err}", file=sys.stderr)
    print(out.markdown)
    shown = sorted({p.parent if p.parent.name == "plots" else p for p in out.written})
    print(f"read {out.n_results} result file(s) from {', '.join(map(str, folders))} ({len(out.skipped)} unreadable); "
          f"wrote {len(out.written)} file(s):")
    for p in shown:
        print(f"  {p}{'/' if p.name == 'plots' else ''}")
    return 0


def cmd_data(args) -> int:
    from .data.check import check_dataset
    from .registry import DATASETS

    findings = check_dataset(DATASETS.get(args.dataset), Path(args.root))
    for f in findings:
        print(f"{'ok  ' if f.ok else 'FAIL'}  {f.path}: {f.message}")
    bad = [f for f in findings if not f.ok]
    print(f"\n{args.dataset}: " + (f"{len(bad)} problem(s) in {len(findings)} file(s)" if bad
                                   else f"all {len(findings)} file(s) as the card describes"))
    return 1 if bad else 0


def cmd_noise(args) -> int:
    import numpy as np

    from .data.noise import describe_index_file, make_noise_index, save_noise_index

    cpi = args.captions_per_image
    if cpi < 1:
        raise ConfigError(f"--captions-per-image must be ≥ 1, got {cpi}")
    if args.noise_command == "make":
        true = np.arange(args.captions, dtype=np.int64) // cpi
        idx = make_noise_index(true, args.ratio, args.seed, args.noise_type)
        save_noise_index(idx, args.out)
        print(f"{args.out}: {args.noise_type}-level, ratio {args.ratio:g} -> realised {idx.realised_ratio:.5f}, "
              f"sha256 {idx.sha256}")
        return 0
    for f in args.files:
        d = describe_index_file(f, cpi)
        print(f"{f}: {d['noise_type']}-level noise, {d['layout']} ({d['entries']} entries, {d['captions']} captions), "
              f"images in [{d['min']}, {d['max']}], realised noise {d['realised']:.5f}, sha256 {d['sha256']} "
              f"(per caption)")
    return 0


def cmd_bench(args) -> int:
    import json

    import torch
    from tabulate import tabulate

    from .atomic import write_text_atomic
    from .data.shaped import shapes
    from .registry import BACKBONES, METHODS
    from .results import environment
    from .runner import check_device, default_device
    from .throughput import (
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
    bconf = _options(args.backbone_opt)
    device = check_device(args.device or default_device())
    say = lambda text: print(text, file=sys.stderr, flush=True)
    say(f"building {args.shape} data: {args.n_train} train / {args.n_test} test images ...")
    ds = bench_dataset(args.shape, args.n_train, args.n_test, Path(args.cache_dir))
    for bb in args.backbones:
        check_backbone(bb, ds, bconf)
    rows, kernels = [], []
    for bb in args.backbones:
        say(f"timing {bb} on {device} ...")
        k = time_pair_kernel(bb, ds, device, args.batch, amp=args.amp, backbone_config=bconf)
        kernels += [k] if k else []
        for m in args.methods:
            say(f"  {m}/{bb} ...")
            rows.append(measure(m, bb, ds, device, args.epochs, args.amp, args.compile, backbone_config=bconf,
                                warmup=args.warmup))
    rel = relative_to_vanilla(rows)
    table = [[r.method, r.backbone, r.device, r.n_train_pairs, f"{r.pairs_per_s:,.0f}",
              f"{rel[(r.method, r.backbone)]:.2f}" if (r.method, r.backbone) in rel else "",
              f"{r.train_s_per_epoch:.2f}", f"{r.eval_s:.2f}", "" if r.peak_gpu_mb is None else f"{r.peak_gpu_mb:,.0f}"]
             for r in rows]
    print(tabulate(table, ["method", "backbone", "device", "train pairs", "pairs/s", "× vanilla", "s/epoch",
                           f"eval {args.n_test}×{ds.test.n_captions} (s)", "peak GPU MB"], tablefmt="github"))
    if kernels:
        print()
        print(tabulate([[k.backbone, k.device, k.batch, f"{k.vectorised_ms:.1f}", f"{k.per_caption_ms:.1f}",
                         f"{k.speedup:.2f}×"] for k in kernels],
                       ["pair kernel", "device", "batch", "all pairs (ms)", "per caption (ms)", "speed-up"],
                       tablefmt="github"))
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


def cmd_submit(args) -> int:
    import json

    from .submission import accept, result_schema, review

    if args.print_schema:
        print(json.dumps(result_schema(), indent=2))
        return 0
    if not args.paths:
        raise ConfigError("give result files or folders to submit (or --print-schema)")
    verdicts = review(args.paths, Path(args.dest))
    if not args.check:
        accept(verdicts, replace=args.replace)
    for v in verdicts:
        if v.accepted:
            what = "valid" if args.check else (v.note or "accepted")
            print(f"{what}: {v.path}" + ("" if args.check else f" -> {v.dest}"))
        else:
            print(f"refused: {v.path}", file=sys.stderr)
            for reason in v.reasons:
                print(f"    {reason}", file=sys.stderr)
    refused = sum(not v.accepted for v in verdicts)
    print(f"{len(verdicts) - refused} accepted, {refused} refused" + (" (check only; nothing copied)" if args.check else ""))
    return 2 if refused else 0


def cmd_new_method(args) -> int:
    from .registry import METHODS
    from .scaffold import write_skeleton

    path = write_skeleton(args.name, Path(args.dir), args.template, METHODS.names())
    print(f"wrote {path} ({args.template} template). Next:\n"
          f"  1. fill in the TODOs (what the method does, its defaults, its deviations);\n"
          f"  2. pip install -e .   (once, so the repo's methods folder is what ncbench imports)\n"
          f"  3. ncbench run --methods {args.name},vanilla --noise 0.2,0.6 --seeds 0,1,2\n"
          f"  4. ncbench leaderboard; ncbench submit results/protocol-1/synthetic   (see methods/README.md)")
    return 0


def cmd_tune(args) -> int:
    from tabulate import tabulate

    from .recipes import write_recipe
    from .runner import shard
    from .tuning import TuneSpec, plan_trials, score

    spec = TuneSpec(_spec(args), budget=args.budget, tune_seed=args.tune_seed)
    runs = plan_trials(spec)
    part = _shard(args.shard)
    report = _sweep(args, shard(runs, *part) if part else runs)
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


def _brief(opts: dict) -> str:
    return ", ".join(f"{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in opts.items())


COMMANDS = {"tune": cmd_tune, "run": cmd_run, "detect": cmd_detect, "status": cmd_status, "plan": cmd_status, "bench": cmd_bench, "list": cmd_list, "leaderboard": cmd_leaderboard, "noise": cmd_noise,
            "data": cmd_data,
            "submit": cmd_submit, "new-method": cmd_new_method}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if not args.command:
        parser.print_help()
        return 2
    try:
        code = COMMANDS[args.command](args)
        sys.stdout.flush()  # a reader that has gone away (``| head``) is noticed here, not at exit
        return code
    except BrokenPipeError:  # the output's reader closed it (``ncbench status | head``): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush at exit
        return 0
    except NcbenchError as exc:
        print(f"ncbench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nncbench: interrupted; finished results and the last checkpoint of the current run are kept, "
              "re-run the same command to resume", file=sys.stderr)
        return 130
    except Preempted as stop:
        import signal

        kept = f"the {stop.saved}" if stop.saved else "any checkpoint of the current run"
        print(f"\nncbench: stopped by {signal.Signals(stop.signum).name}; finished results and {kept} are kept, "
              "re-run the same command to resume", file=sys.stderr)
        return 128 + stop.signum
    except Exception as exc:  # a bug: say so in one line, traceback only on request
        if os.environ.get("NCBENCH_DEBUG"):
            traceback.print_exc()
        print(f"ncbench: internal error: {type(exc).__name__}: {exc} (set NCBENCH_DEBUG=1 for the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
