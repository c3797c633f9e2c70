"""Option types and the options shared by the sweep commands (``run``, ``detect``, ``tune``, ``status``),
how they become a ``SweepSpec`` and its planned runs, ``--precision`` (with its deprecated alias
``--amp``) for every command that trains or evaluates, and the up-front check of the options that
name a folder or an output file (``check_paths``)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..errors import ConfigError
from ..precision import COMPILE_LIMIT, EVAL_TOLERANCE, LEGACY_AMP, PRECISIONS


def floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def workers(text: str) -> int:
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


def names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def key_values(pairs: list[str]) -> dict[str, str]:
    out = {}
    for p in pairs:
        key, sep, value = p.partition("=")
        if not sep or not key:
            raise ConfigError(f"option {p!r} must look like key=value")
        out[key.strip()] = value.strip()
    return out


def default_cache_dir() -> str:
    """Where generated data is kept: ``$NCBENCH_CACHE`` or ``~/.cache/ncbench``."""
    return os.environ.get("NCBENCH_CACHE", str(Path.home() / ".cache" / "ncbench"))


NOISE_MODELS_HELP = ("noise model (what happens to a chosen item): shuffle (the papers': it gets a random other "
                     "image), neighbour (one of the k most similar other images under a frozen embedder, below a "
                     "similarity ceiling: hard noise), partial (the image stays, one content word of the caption is "
                     "replaced by another of its class), mixed (a share alpha neighbour, the rest shuffled). Results "
                     "of different models are kept apart and never share a table (default: shuffle)")


def noise_protocol_options(p: argparse.ArgumentParser, what: str = "") -> None:
    """``--noise-type``, ``--noise-model`` and ``--noise-opt``: the noise protocol (``noise_protocol``)."""
    p.add_argument("--noise-type", choices=("caption", "image"), default="caption",
                   help=f"noise type{what}: caption (NCR, BiCro, CRCL: each chosen caption is corrupted) or image "
                        "(DECL, RCL, L2RM: all captions of a chosen image together; harder). Results of the two "
                        "are kept apart and never share a table (default: caption)")
    p.add_argument("--noise-model", default="shuffle", metavar="MODEL", help=NOISE_MODELS_HELP)
    p.add_argument("--noise-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="a parameter of the noise model: neighbour/mixed k (10), ceiling (0.85), embedder (features, "
                        "or a .npy of one row per training image); mixed alpha (0.5); partial words (auto)")


def noise_protocol(args):
    """The ``NoiseSpec`` the noise options describe."""
    from ..data.noise_spec import NoiseSpec, parse_noise_params

    return NoiseSpec.make(args.noise_type, args.noise_model, parse_noise_params(args.noise_opt))


class _Precision(argparse.Action):
    """``--precision NAME``, and the deprecated ``--amp off|bf16`` (mapped, with a one-line warning):
    the name goes to ``args.precision``, mirrored in ``args.amp`` for code that still reads that."""

    def __call__(self, parser, namespace, values, option_string=None):
        if option_string == "--amp":
            print(f"ncbench: warning: --amp is deprecated; use --precision {LEGACY_AMP[values]}", file=sys.stderr)
        namespace.precision = namespace.amp = LEGACY_AMP.get(values, values)


def precision_options(p: argparse.ArgumentParser) -> None:
    """``--precision`` (``ncbench.precision``) and its deprecated alias ``--amp``; both None unless given
    (the device's default)."""
    p.set_defaults(precision=None, amp=None)
    p.add_argument("--precision", choices=PRECISIONS, action=_Precision,
                   help="numeric precision of training and evaluation: fp32; tf32 (CUDA only: float32 tensors, "
                        "matrix products on TF32 tensor cores); bf16 (bfloat16 autocast). Default: tf32 on CUDA "
                        f"(the fastest that keeps evaluation scores within {EVAL_TOLERANCE:g} of fp32), fp32 on the "
                        "CPU. Recorded in each result as meta.precision")
    p.add_argument("--amp", choices=tuple(LEGACY_AMP), action=_Precision,
                   help="deprecated: --precision (--amp off = fp32, --amp bf16 = bf16)")


def sweep_options(p: argparse.ArgumentParser, methods: list[str], datasets: list[str], noise: list[float],
                   dataset_help: str) -> None:
    """The options shared by ``run`` and ``detect``."""
    fmt = ",".join
    p.add_argument("--methods", type=names, default=methods, help=f"comma-separated method names (default: {fmt(methods)})")
    p.add_argument("--references", action="store_true",
                   help="also run the boards' reference rows: the training-free floor (probe) and the clean-pairs "
                        "ceiling (clean_oracle), on the same split and noise index (--method-opt reaches them only "
                        "where they have the option)")
    p.add_argument("--backbones", type=names, default=None,
                   help="comma-separated backbones (default: the dataset card's: vse_light, or vse_bow for the "
                        "Flickr8k cards); sgraf = an sgr and a saf run, evaluated together as an ensemble")
    p.add_argument("--dataset", "--datasets", dest="datasets", type=names, default=datasets, help=dataset_help)
    p.add_argument("--noise", type=floats, default=noise,
                   help=f"noise ratios in [0,1) (default: {fmt(f'{x:g}' for x in noise)})")
    p.add_argument("--seeds", type=ints, default=[0], help="training seeds (default: 0)")
    p.add_argument("--noise-seed", type=int, default=0, help="seed of generated noise indices, shared by all runs (default: 0)")
    noise_protocol_options(p)
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
    p.add_argument("--tag", metavar="NAME",
                   help="name these runs as a variant of their method (e.g. other --method-opt values): results go "
                        "to <method>@NAME/ beside the untagged ones, and boards and `compare` show them as the row "
                        "<method>@NAME; without a tag, a run with other options replaces the previous result")
    p.add_argument("--results", default="results", help="results folder (default: ./results)")
    p.add_argument("--accept-code-change", action="store_true",
                   help="keep the finished results made by other code (the method's file or ncbench's training code "
                        "changed since; `status` shows them as stale-code) as results of this code instead of "
                        "training them again: each file keeps its numbers and the code that made it, and records the "
                        "acceptance (code_accepted: from, to, when), so boards pool it with this code's results")
    p.add_argument("--data-root", help="folder holding a real dataset's files")
    p.add_argument("--cache-dir", default=default_cache_dir(),
                   help="where generated data is kept (default: $NCBENCH_CACHE or ~/.cache/ncbench)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda if available, else cpu)")
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    precision_options(p)
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the backbone's pair-scoring kernel (sgr, saf; the first steps wait for the "
                        f"compiler, at most {COMPILE_LIMIT} compilations of the kernel per process, further variants run "
                        "uncompiled; recorded as meta.compiled)")
    p.add_argument("--dry-run", action="store_true", help="print the runs and whether each is done, then stop")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("-v", "--verbose", action="store_true", help="print one line per epoch (loss, validation rSum, time)")
    p.add_argument("--log", type=names, default=[], metavar="tensorboard,wandb",
                   help="also log every epoch's scalars live: tensorboard (torch's SummaryWriter; pip install "
                        "tensorboard) and/or wandb (offline unless WANDB_MODE is set; pip install wandb)")
    p.add_argument("--log-dir", metavar="DIR",
                   help="where --log writes, one folder per run as under the results (default: <results>/logs)")
    p.add_argument("--shard", metavar="I/N",
                   help="train only every N-th run starting at I (0-based); 'auto' takes I and N from "
                        "SLURM_PROCID/SLURM_NTASKS or RANK/WORLD_SIZE, for ranks launched by srun or torchrun")
    p.add_argument("--executor", choices=["local", "slurm"], default="local",
                   help="local: train here (see --workers); slurm: submit the missing runs as a SLURM job array "
                        "through submitit (default: local)")
    p.add_argument("--workers", type=workers, default=1, metavar="N|auto",
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


def shard_option(text: str | None) -> tuple[int, int] | None:
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


def sweep_spec(args):
    from ..runner import SweepSpec

    return SweepSpec(
        methods=args.methods, references=args.references, backbones=args.backbones, datasets=args.datasets, noise=args.noise, seeds=args.seeds,
        noise_seed=args.noise_seed, noise_file=args.noise_file, noise_dir=args.noise_dir, noise_protocol=noise_protocol(args),
        method_options=key_values(args.method_opt), backbone_options=key_values(args.backbone_opt),
        recipes=Path(args.recipes) if args.recipes and args.command != "tune" else None, use_recipes=not args.no_recipes,
        tag=args.tag,
    )


def planned_runs(args):
    from ..runner import plan, shard

    runs = plan(sweep_spec(args))
    part = shard_option(args.shard)
    return shard(runs, *part) if part else runs


# Per command, the options (argparse dests) that name a folder ncbench reads or writes, and those that
# name a file it writes: a path that cannot be one (a file where a folder is meant, or below a file;
# a folder where a file is meant) is refused before any work, naming the option and the path.
_SWEEP_FOLDERS = ("results", "cache_dir", "log_dir", "recipes")
FOLDER_OPTIONS = {"run": _SWEEP_FOLDERS, "detect": _SWEEP_FOLDERS, "tune": _SWEEP_FOLDERS, "status": _SWEEP_FOLDERS,
                  "plan": _SWEEP_FOLDERS, "leaderboard": ("results", "out"), "compare": ("results",),
                  "report": ("out",), "submit": ("dest",), "new-method": ("dir",), "bench": ("cache_dir",),
                  "golden": ("results", "cache_dir"), "evaluate": ("results", "cache_dir")}
FILE_OPTIONS = {"noise": ("out",), "bench": ("out",), "golden": ("file",)}


def path_options(args) -> list[tuple[str, str, bool]]:
    """(option, path, names a folder) of each folder or output-file option given to ``args.command``."""
    out = []
    for table, folder in ((FOLDER_OPTIONS, True), (FILE_OPTIONS, False)):
        for dest in table.get(args.command, ()):
            value = getattr(args, dest, None)
            out += [("--" + dest.replace("_", "-"), str(v), folder) for v in (value if isinstance(value, list) else [value])
                    if v]
    return out


def check_paths(args) -> None:
    """Refuse the folder and output-file options of ``args.command`` that cannot be what they name."""
    for option, path, folder in path_options(args):
        (check_folder_path if folder else check_file_path)(path, option)


def _below_a_file(path: Path) -> Path | None:
    """The nearest existing folder above ``path`` if it is not a folder (a file), else None."""
    for above in path.parents:
        if above.exists():
            return None if above.is_dir() else above
    return None


def check_folder_path(path: str, option: str) -> None:
    """``option`` names a folder: refuse a file there, or a path below a file."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ConfigError(f"{option} {path}: is a file, not a folder")
    blocker = _below_a_file(p)
    if blocker is not None:
        raise ConfigError(f"{option} {path}: {blocker} is a file, not a folder")


def check_file_path(path: str, option: str) -> None:
    """``option`` names a file to write: refuse a folder there, or a path below a file."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{option} {path}: is a folder, not a file")
    blocker = _below_a_file(p)
    if blocker is not None:
        raise ConfigError(f"{option} {path}: {blocker} is a file, not a folder")
