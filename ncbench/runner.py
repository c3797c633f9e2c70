"""Sweeps: expand methods × backbones × datasets × noise ratios × seeds into runs, execute the
missing ones, and write one result file per run.

A run whose result file exists with the same config hash and status ``ok``, made by the same code
(``ncbench.code_identity``: the method's module and ncbench's training code as imported), is
skipped, so an interrupted sweep re-run with the same arguments finishes only what is missing; one
made by other code is trained again, saying so, unless ``RunSettings.accept_code_change`` keeps it
(recorded in the file, ``results.accept_code_change``); a run that was
killed mid-training continues from its checkpoint (``ncbench.checkpoint``: after every epoch, and
at the next step when stopped by a signal, ``ncbench.preemption``). Each run
is trained under a lock (``ncbench.locks``), so several workers can share one sweep and one
results folder: a run locked by another worker is passed over, never trained twice. A failed run
(e.g. NaN loss) writes a result with status ``failed`` and the error, and is retried next time.
A result with another config or of other code, or a corrupt file, is moved under ``superseded/``
when it is replaced, never deleted. What a ``kill -9`` leaves is cleared under the run's lock: the temporary
files of an interrupted write (``.seed-<s>.*.tmp``) when the run is claimed, and the checkpoint of a
run found already done (killed between writing its result and removing its checkpoint).
A resumed run's ``total_s`` and ``gpu_hours`` add up the time of all the processes that trained it.
"""

from __future__ import annotations

import dataclasses
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from . import PROTOCOL_VERSION
from .agreement import human_agreement
from .atomic import UnsafePathError, remove_temporaries, temporaries
from .checkpoint import Checkpointer
from .code_identity import code_record
from .config import RunConfig, check_tag
from .data.cards import Dataset, DatasetCard, SyntheticCard
from .data.noise import NoiseIndex, check_ratio, load_noise, obtain_noise
from .data.noise_models import inputs_from_split
from .data.noise_spec import CAPTION_SHUFFLE, NoiseSpec
from .engine.context import make_context
from .engine.method import build_config
from .engine.trainer import train_with_selection
from .ensemble import build as build_ensemble
from .ensemble import ensemble_config, expand, group_members, nets_path, save_networks
from .errors import ConfigError, DataError, TrainingError
from .evaluate import evaluate_split
from .live_log import LiveLog
from .recipes import Recipe, RecipeError, load_recipes
from .registry import BACKBONES, DATASETS, METHODS
from .results import (
    LOGS,
    NOISE_INDEX,
    SCHEMA_VERSION,
    SUPERSEDED,
    claim_result,
    environment,
    inspect_result,
    lock_path,
    result_path,
    store_result,
)
from .locks import RunLock
from .precision import check_precision, execution


@dataclass
class SweepSpec:
    """What the user asked for (the command line's ``run`` options)."""

    methods: list[str]
    backbones: list[str] | None = None  # None: each dataset card's default_backbone
    datasets: list[str] = field(default_factory=lambda: ["synthetic"])
    noise: list[float] = field(default_factory=lambda: [0.0, 0.2, 0.6])
    seeds: list[int] = field(default_factory=lambda: [0])
    noise_seed: int = 0
    noise_file: str | None = None
    noise_dir: str | None = None
    noise_protocol: NoiseSpec = CAPTION_SHUFFLE  # type, model and parameters (``ncbench.data.noise_spec``)
    method_options: dict[str, Any] = field(default_factory=dict)
    backbone_options: dict[str, Any] = field(default_factory=dict)
    references: bool = False  # also the boards' floor and ceiling rows (REFERENCE_METHODS)
    recipes: Path | None = None  # folder of recipe files (None: the ones shipped with ncbench)
    use_recipes: bool = True  # False: method defaults and dataset_defaults only
    tag: str | None = None  # ``--tag``: these runs are a named variant, kept beside the others


@dataclass
class RunSettings:
    """Where and how runs execute; not part of any run's identity."""

    results_dir: Path = Path("results")
    data_root: Path | None = None
    cache_dir: Path = Path.home() / ".cache" / "ncbench"
    device: str = "cpu"
    progress: bool = False  # progress bars (on a terminal)
    verbose: bool = False  # one log line per epoch (for logs that are not a terminal)
    precision: str | None = None  # of training and evaluation: fp32, tf32, bf16 (None: the device's default, ``ncbench.precision``)
    compile: bool = False  # torch.compile the backbones' kernels (``Backbone.compile_kernels``), compilations capped
    keep_networks: bool = False  # keep each run's selected networks (``ensemble.nets_path``)
    log: Callable[[str], None] = print
    warn: Callable[[str], None] | None = None  # ``load_warning`` goes here before the first run trains (None: not checked)
    live_log: tuple[str, ...] = ()  # ``--log``: tensorboard and/or wandb (``ncbench.live_log``)
    log_dir: Path | None = None  # where live logs go (None: <results_dir>/logs)
    accept_code_change: bool = False  # keep finished results of other code as this code's (recorded in each)

    def __post_init__(self) -> None:
        self.precision = check_precision(self.precision, self.device)


def configure_torch(threads: int | None) -> None:
    """What every training process sets before its first run: the CPU thread count (None: torch's
    choice) and deterministic algorithms where torch has them (recorded in each result's env),
    including cuBLAS's, which needs a fixed workspace set before CUDA starts (a user's own value wins)."""
    if threads:
        torch.set_num_threads(threads)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, which follows cgroup/SLURM limits)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def load_warning(threads: int, load: float | None = None, cores: int | None = None) -> str | None:
    """A warning when the machine is already busy: with the 1-minute load average at or above the
    cores, torch's ``threads`` compete with other work and a run can take many times longer (two
    2-thread processes on 2 cores were 23× slower than one). None when it is not."""
    cores = cores or usable_cores()
    if load is None:
        try:
            load = os.getloadavg()[0]
        except OSError:  # not available here
            return None
    if load < cores:
        return None
    return (f"warning: this machine is busy (load average {load:.1f} on {cores} core(s)) and torch will use "
            f"{threads} thread(s): runs compete for the cores and take longer; when several processes share "
            "the machine give each --threads 1 (or --workers N, which divides the cores between its workers)")


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def check_device(device: str) -> str:
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"unknown device {device!r} (expected cpu, cuda or cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available on this machine")
    return device


REFERENCE_METHODS = ("clean_oracle", "probe")  # the ceiling and the floor of every board
def selection_rule(mcls) -> str:
    """How a run's epoch was selected, as boards show it: the best validation rSum, and the clean
    split the method also trained on if any (MSCN's dev meta set: it saw clean dev pairs in training)."""
    return "best_val_rsum" + (f"; trains on {mcls.trains_on_split}" if mcls.trains_on_split else "")


PAPER_DATASETS = ("f30k", "coco", "cc152k", "now")  # their dataset_defaults are the papers' own recipes (now: PC2's)


def dataset_version(card: DatasetCard) -> str:
    return card.spec.folder_name() if isinstance(card, SyntheticCard) else ""


def plan(spec: SweepSpec) -> list[RunConfig]:
    """The runs of a sweep, in order; every name and value is checked before anything trains."""
    if not spec.methods:
        raise ConfigError("no method given")
    ratios = [check_ratio(r) for r in spec.noise]
    check_tag(spec.tag)
    if spec.noise_file and len(ratios) != 1:
        raise ConfigError("--noise-file gives the index of one noise ratio; pass exactly one --noise value")
    added = [m for m in REFERENCE_METHODS if spec.references and m not in spec.methods]
    methods = {m: METHODS.get(m) for m in [*spec.methods, *added]}
    cards = {d: DATASETS.get(d) for d in spec.datasets}
    for b in expand(spec.backbones)[0]:  # an ensemble trains its members
        BACKBONES.get(b)
    runs = []
    for d, card in cards.items():
        if not card.allows_injected_noise and any(r > 0 for r in ratios):
            raise ConfigError(f"dataset {d!r} carries real noise only; injected noise must be 0 (got {spec.noise})")
        if not card.allows_injected_noise and spec.noise_protocol != CAPTION_SHUFFLE:
            raise ConfigError(f"dataset {d!r} carries real noise only; {spec.noise_protocol.label} noise does not apply")
        recipes = load_recipes(d, spec.recipes) if spec.use_recipes else {}
        backbones = expand(spec.backbones or [card.default_backbone])[0]
        for m, mcls in methods.items():
            mopts = spec.method_options
            if m not in spec.methods:  # an added reference takes only the user's options it uses
                used = {f.name for f in dataclasses.fields(mcls.Config)} - set(mcls.unused_options)
                mopts = {k: v for k, v in mopts.items() if k in used}
            for b in [mcls.fixed_backbone] if mcls.fixed_backbone else backbones:
                mconf, bconf, recipe = options(m, b, card, recipes, mopts, spec.backbone_options)
                for r in ratios:
                    for s in spec.seeds:
                        runs.append(RunConfig(
                            method=m, backbone=b, dataset=d, noise_ratio=r, seed=s,
                            noise_seed=spec.noise_seed, noise_file=_noise_file(spec, d, r), noise_protocol=spec.noise_protocol,
                            method_config=mconf, backbone_config=bconf,
                            dataset_version=dataset_version(card), protocol_version=PROTOCOL_VERSION, recipe=recipe,
                            tag=spec.tag,
                        ))
    return runs


def options(method: str, backbone: str, card: DatasetCard, recipes: dict[tuple[str, str], Recipe],
            method_options: dict[str, Any], backbone_options: dict[str, Any]) -> tuple[dict, dict, dict]:
    """The method and backbone options of one (method, backbone) on a dataset, and their provenance:
    method defaults < ``dataset_defaults`` < the dataset's recipe < the user's options."""
    mcls = METHODS.get(method)
    key = card.schedule or card.name
    recipe = recipes.get((mcls.recipe_of or method, backbone))
    if recipe is not None:
        where = f"{recipe.source}: [{mcls.recipe_of or method}.{backbone}]"
        prov = recipe.provenance()
    elif mcls.training_free:
        where = None
        prov = {"kind": "closed-form", "tuning": {}, "source": f"{mcls.__name__}: fitted in closed form, choices on dev"}
    elif key in mcls.dataset_defaults:
        where = None
        # the papers' own values, or a schedule set by hand for this dataset (e.g. synthetic's short one)
        prov = {"kind": "paper" if key in PAPER_DATASETS else "hand-set", "tuning": {},
                "source": f"{mcls.__name__}.dataset_defaults[{key!r}]"}
    else:
        where = None
        prov = {"kind": "defaults", "tuning": {}, "source": f"{mcls.__name__} defaults (no recipe for {card.name})"}
    try:
        mconf = dataclasses.asdict(mcls.make_config(key, {**(recipe.method if recipe else {}), **method_options}))
        bconf = {}
        if not mcls.fixed_backbone:
            bcls = BACKBONES.get(backbone)
            bconf = dataclasses.asdict(build_config(bcls.Config, {**(recipe.backbone if recipe else {}), **backbone_options}))
    except ConfigError as exc:
        if where is None:
            raise
        raise RecipeError(f"{where}: {exc}") from None
    if recipe is not None:  # a recipe option the user did not override must be valid for the method
        bad = sorted(set(recipe.method) - set(mconf))
        if bad:
            raise RecipeError(f"{where}: unknown option(s) {', '.join(bad)}")
    prov["overrides"] = {**method_options, **{f"backbone.{k}": v for k, v in backbone_options.items()}}
    return mconf, bconf, prov


def _noise_file(spec: SweepSpec, dataset: str, ratio: float) -> str | None:
    if spec.noise_file:
        return str(Path(spec.noise_file).resolve())
    if spec.noise_dir and ratio > 0:
        names = (f"{dataset}_precomp_{ratio:g}.npy", f"noise_inx_{ratio:g}.npy")  # BiCro/L2RM's names, RCL's
        found = [Path(spec.noise_dir) / n for n in names if (Path(spec.noise_dir) / n).is_file()]
        if not found:
            raise DataError(f"{spec.noise_dir}: no noise index for {dataset} at ratio {ratio:g} in --noise-dir "
                            f"(looked for {' or '.join(names)})")
        return str(found[0].resolve())
    return None


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


class Runner:
    """Executes runs, caching loaded datasets and generated noise across the runs of a sweep."""

    def __init__(self, settings: RunSettings):
        self.s = settings
        self._datasets: dict[str, Dataset] = {}
        self._noise: dict[tuple, NoiseIndex] = {}  # generated noise per (file, protocol, ratio, seed)
        self._load_checked = settings.warn is None or settings.device != "cpu"

    def dataset(self, name: str) -> Dataset:
        if name not in self._datasets:
            self._datasets[name] = DATASETS.get(name).load(self.s.data_root, self.s.cache_dir)
        return self._datasets[name]

    def noise_index(self, cfg: RunConfig, ds: Dataset) -> NoiseIndex:
        inputs = inputs_from_split(ds.train, ds.vocab, ds.card.word_list, ds.root)
        spec = cfg.noise_protocol
        if cfg.noise_file:
            return load_noise(spec, cfg.noise_file, inputs, cfg.noise_ratio)
        version = f"-{cfg.dataset_version}" if cfg.dataset_version else ""
        name = f"{cfg.dataset}{version}_{cfg.noise_ratio:g}{spec.suffix('_')}_seed{cfg.noise_seed}.npy"  # ``_image``, ``_partial``
        path = self.s.results_dir / NOISE_INDEX / name
        key = (str(path), spec, cfg.noise_ratio, cfg.noise_seed)
        if key not in self._noise:  # generated and checked against its cache once per sweep process, not per
            # run: a neighbour table costs O(N_images² · D) (minutes on MS-COCO)
            self._noise[key] = obtain_noise(spec, inputs, cfg.noise_ratio, cfg.noise_seed, path)
        return self._noise[key]

    def run(self, cfg: RunConfig, checkpoint: Checkpointer | None = None, keep: Path | None = None) -> dict[str, Any]:
        """Train (continuing from ``checkpoint`` if it holds one), select on validation, test, and
        return the result record (status ok or failed); ``keep``: save the selected networks there.
        Its ``total_s`` (and ``gpu_hours``) include what earlier processes spent (``checkpoint.earlier``).
        It runs inside ``precision.execution``: the run's TF32 setting, the caller's restored after it,
        and with ``compile`` the cap on compilations."""
        t_start = time.perf_counter()
        device = torch.device(self.s.device)
        if checkpoint is not None:  # its elapsed total counts this process from here
            checkpoint.started, checkpoint.on_gpu = t_start, device.type == "cuda"
        with execution(self.s.precision, self.s.compile):  # TF32 flags restored, compilations capped
            return self._run(cfg, checkpoint, keep, t_start, device)

    def _run(self, cfg: RunConfig, checkpoint: Checkpointer | None, keep: Path | None, t_start: float,
             device: torch.device) -> dict[str, Any]:
        ds = self.dataset(cfg.dataset)
        noise = self.noise_index(cfg, ds)
        generator = seed_everything(cfg.seed)
        mcls = METHODS.get(cfg.method)
        ctx = make_context(ds, noise, cfg.backbone, cfg.backbone_config, device, generator, self.s.progress,
                           self.s.compile)
        if not self._load_checked:  # once, when the inputs have loaded and training is about to start
            self._load_checked = True
            busy = load_warning(torch.get_num_threads())
            if busy:
                self.s.warn(busy)
        record = self._record(cfg, noise)
        live = self._live_log(cfg)
        try:
            method = mcls(build_config(mcls.Config, cfg.method_config), ctx)

            def on_epoch(row: dict[str, Any]) -> None:
                if self.s.verbose:
                    self.s.log(_epoch_line(row))
                if live is not None:
                    live.log(row)

            sel = train_with_selection(method, ds.dev, device, method.total_epochs, true_clean=noise.clean,
                                       desc=cfg.label, progress=self.s.progress, on_epoch=on_epoch,
                                       checkpoint=checkpoint, precision=self.s.precision)
            t_test = time.perf_counter()
            tuning = cfg.trial is not None  # a tuning trial is selected on dev and never tested
            test = None if tuning else evaluate_split(method.networks(), ds.test, device, folds=ds.card.test.folds,
                                                      precision=self.s.precision)
            t_judged = time.perf_counter()
            judged = human_agreement(method, ds.judged, device) if not tuning and ds.judged is not None else None
            if keep is not None:
                save_networks(keep, method.networks())
        except TrainingError as exc:
            record.update(status="failed", error=str(exc))
            record["timings"] = {"total_s": round(_elapsed(checkpoint, t_start, device)["elapsed_s"], 3)}
            return record
        finally:
            if live is not None:
                live.close()
        t_end = time.perf_counter()
        spent = _elapsed(checkpoint, t_start, device)
        record.update(
            status="ok",
            best_val={"epoch": sel.best_epoch, **sel.best_val.full.to_dict()},
            history=sel.history,
            detection=sel.detection,
            meta={"ensemble_size": mcls.ensemble_size, "selection": selection_rule(mcls), "epochs": method.total_epochs,
                  "resumed_after_epoch": sel.resumed_after, "resumed_at_step": sel.resumed_at_step,
                  "precision": self.s.precision,
                  "compiled": self.s.compile and not mcls.fixed_backbone
                  and BACKBONES.get(cfg.backbone).has_compiled_kernels(),
                  "reference": reference_role(mcls)},
            timings={
                "train_s": round(sel.train_seconds, 3), "val_s": round(sel.val_seconds, 3),
                "test_s": round(t_judged - t_test, 3), "judged_s": round(t_end - t_judged, 3),
                "total_s": round(spent["elapsed_s"], 3), "gpu_hours": round(spent["gpu_s"] / 3600, 6),
            },
        )
        if test is not None:
            record.update(test={**test.to_dict(), "split": ds.card.test.split},
                          ranks=test.ranks_record())
        if judged is not None:
            record["human_agreement"] = judged
        return record

    def _live_log(self, cfg: RunConfig) -> LiveLog | None:
        """The run's TensorBoard / W&B loggers, under the log folder as its result is under the results."""
        if not self.s.live_log:
            return None
        relative = result_path(Path(), cfg).with_suffix("")
        return LiveLog(self.s.live_log, Path(self.s.log_dir or self.s.results_dir / LOGS), relative, cfg.label,
                       cfg.to_dict())

    def _record(self, cfg: RunConfig, noise: NoiseIndex) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "status": "running",
            "identity": {
                "method": cfg.method, **({"tag": cfg.tag} if cfg.tag else {}), "backbone": cfg.backbone,
                "dataset": cfg.dataset,
                "noise_ratio": cfg.noise_ratio, **cfg.noise_protocol.identity_fields(), "seed": cfg.seed,
                "protocol_version": cfg.protocol_version,
                "noise_index_sha256": noise.sha256, "noise_realised_ratio": noise.realised_ratio,
                "noise_source": noise.source,
                **({"noise_texts_sha256": noise.texts_sha256} if noise.texts_sha256 else {}),
                **({"noise_details": noise.details} if noise.details else {}),
            },
            "config": cfg.to_dict(),
            "config_hash": cfg.config_hash,
            "code": code_record(cfg.method),
            "recipe": cfg.recipe,
            "env": environment(self.s.device),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "error": None,
        }


def _elapsed(checkpoint: Checkpointer | None, t_start: float, device: torch.device) -> dict[str, float]:
    """The run's wall time over all its processes (the checkpoint carries the earlier ones') and the GPU part of it."""
    if checkpoint is not None:
        return checkpoint.elapsed()
    now = time.perf_counter() - t_start
    return {"elapsed_s": now, "gpu_s": now if device.type == "cuda" else 0.0}


def reference_role(mcls) -> str | None:
    """``floor`` for a training-free reference method, ``ceiling`` for one that sees the true clean
    pairs, None for a method under comparison (shown as such on the boards)."""
    return "floor" if mcls.training_free else "ceiling" if mcls.uses_ground_truth else None


TIMING_KEYS = ("train_s", "val_s", "pairs_per_s", "eta_s")  # history entries that measure speed, not learning


def _epoch_line(row: dict[str, Any]) -> str:
    logs = " ".join(f"{k} {v:.4g}" for k, v in row.items()
                    if isinstance(v, float) and k != "val_rsum" and k not in TIMING_KEYS)
    det = row.get("detection")
    det_text = f"  detection AUC {det['auc']:.3f}" if det and det.get("auc") is not None else ""
    speed = f", {row['pairs_per_s']:.0f} pairs/s" if "pairs_per_s" in row else ""
    eta = f", ETA {_duration(row['eta_s'])}" if "eta_s" in row else ""
    return (f"    epoch {row['epoch']}: {logs}  val rSum {row['val_rsum']:.1f}{det_text}  "
            f"({row['train_s']:.1f}s train{speed}, {row['val_s']:.1f}s val{eta})")


def _duration(seconds: float) -> str:
    h, rest = divmod(round(seconds), 3600)
    return f"{h}h{rest // 60:02d}m" if h else f"{rest // 60}m{rest % 60:02d}s"


def detection_summary(det: dict[str, Any] | None) -> str:
    """One line for a run's noise-detection metrics at its selected epoch."""
    if not det:
        return ""

    def f(key: str) -> str:
        return "n/a" if det.get(key) is None else f"{det[key]:.3f}"

    return (f"detection AUC {f('auc')}, clean precision {f('clean_precision')}, clean recall {f('clean_recall')}, "
            f"mean label clean/noisy {f('label_clean')}/{f('label_noisy')}")


@dataclass
class SweepReport:
    done: list[dict[str, Any]] = field(default_factory=list)  # results of this sweep (run or skipped)
    ran: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)  # runs another worker was training
    code_retrained: list[str] = field(default_factory=list)  # runs trained again: their result was of other code
    code_accepted: list[str] = field(default_factory=list)  # results of other code kept (``accept_code_change``)


def checkpoint_path(path: Path) -> Path:
    return path.with_suffix(".ckpt")


def checkpointer(root: Path, path: Path, config_hash: str, log: Callable[[str], None] = lambda msg: None,
                 code_hash: str | None = None) -> Checkpointer:
    """The checkpoint of the run whose result is ``path``; unusable ones (another config's, or
    written by other code than ``code_hash``) are set aside under ``superseded/checkpoints/`` at the
    run's own relative folder."""
    aside = root / SUPERSEDED / "checkpoints" / path.parent.relative_to(root)
    return Checkpointer(checkpoint_path(path), config_hash, aside=aside, log=log, code_hash=code_hash)


def tidy_done(path: Path, config_hash: str, log: Callable[[str], None]) -> None:
    """A run found done may hold what a ``kill -9`` between its result and its clean-up left: its
    checkpoint (of the same config), temporary files, its lock file. Removed under the run's lock
    (a checkpoint of another config is kept: that config may still resume from it)."""
    ckpt, folder = checkpoint_path(path), path.parent
    if not (os.path.lexists(ckpt) or os.path.lexists(lock_path(path)) or temporaries(folder, path.stem)):
        return
    lock = RunLock(lock_path(path))
    try:
        if not lock.acquire(record=False):
            return  # someone is working on this path (another config): not ours to tidy
    except (OSError, UnsafePathError):  # e.g. a planted link: left for a run that claims it to refuse
        return
    with lock:
        remove_temporaries(folder, path.stem, log)
        found = Checkpointer(ckpt, config_hash).where()
        if found is not None and found.config_hash == config_hash:
            ckpt.unlink()
            log(f"    removed the leftover checkpoint {ckpt} of this finished run (left by an interrupted run)")


def shard(runs: list[RunConfig], index: int, count: int) -> list[RunConfig]:
    """Every ``count``-th run starting at ``index`` (0-based): one worker's share of a sweep."""
    if count < 1 or not 0 <= index < count:
        raise ConfigError(f"shard {index}/{count}: need 0 ≤ i < n")
    return runs[index::count]


def collect(runs: list[RunConfig], results_dir: Path, ensembles: list[str] = ()) -> SweepReport:
    """The state of a sweep trained elsewhere (local workers, SLURM jobs): a run (or an ensemble of
    ``ensembles`` its runs make up) counts as done when its result file holds an ok result of the
    same config, and as failed otherwise."""
    report = SweepReport(ran=len(runs))
    built = [ensemble_config(name, members) for name in ensembles for members in group_members(runs, name)]
    for cfg in [*runs, *built]:
        path = result_path(results_dir, cfg)
        state, record = inspect_result(path, cfg.config_hash)
        if state == "done":
            report.done.append(record)
        else:
            detail = f": {record.get('error')}" if state == "failed" and record else ""
            report.failed.append(f"{cfg.label}: {state}{detail} ({path})")
    return report


def run_sweep(runs: list[RunConfig], settings: RunSettings, ensembles: list[str] = ()) -> SweepReport:
    """Train the missing runs of ``runs``, then build the ``ensembles`` (e.g. ``sgraf``) their
    finished members make up (``ncbench.ensemble``; needs ``settings.keep_networks``)."""
    runner, report, log = Runner(settings), SweepReport(), settings.log
    root = settings.results_dir
    bar = tqdm(runs, desc="sweep", unit="run", disable=not settings.progress or len(runs) < 2, dynamic_ncols=True)
    for i, cfg in enumerate(bar, 1):
        where = f"[{i}/{len(runs)}] {cfg.label}"
        path = result_path(root, cfg)
        with claim_result(root, path, cfg.config_hash, log, where, settings.accept_code_change) as (state, data):
            if state in ("done", "accepted"):  # accepted: kept across a code change (``claim_result`` said so)
                _skip(report, path, data, log, where, cfg.label if state == "accepted" else None)
                tidy_done(path, cfg.config_hash, log)
                continue
            if state == "busy":
                report.busy.append(cfg.label)
                continue
            if data == "stale-code":
                report.code_retrained.append(cfg.label)
            remove_temporaries(path.parent, path.stem, log)  # ours now: left by a killed write
            ckpt = checkpointer(root, path, cfg.config_hash, log, code_record(cfg.method)["hash"])
            record = runner.run(cfg, ckpt, keep=nets_path(path) if settings.keep_networks else None)
            store_result(root, path, record, data, log, where)
            ckpt.remove()
        report.ran += 1
        if record["status"] == "ok":
            report.done.append(record)
            score = (f"dev rSum {record['best_val']['rsum']:.1f} (not tested)" if cfg.trial is not None else
                     f"test rSum {record['test'][record['test']['primary']]['rsum']:.1f}")
            log(f"{where}: {score} "
                f"(best val epoch {record['best_val']['epoch']}, {record['timings']['total_s']:.0f}s) -> {path}")
            if record.get("detection"):
                log(f"    {detection_summary(record['detection'])}")
        else:
            report.failed.append(f"{cfg.label}: {record['error']}")
            log(f"{where}: FAILED: {record['error']} -> {path}")
    for name in ensembles:
        for members in group_members(runs, name):
            state, record = build_ensemble(name, members, runner, log)
            label = ensemble_config(name, members).label
            if state == "done":
                report.done.append(record)
            elif state == "busy":
                report.busy.append(label)
            else:
                report.failed.append(f"{label}: {state}")
    return report


def _skip(report: SweepReport, path: Path, record: dict[str, Any], log: Callable[[str], None], where: str,
          accepted: str | None = None) -> None:
    """Count a run found done, or ``accepted`` (its label) across a code change."""
    report.skipped += 1
    report.done.append(record)
    if accepted:
        report.code_accepted.append(accepted)
    else:
        log(f"{where}: already done ({path})")
