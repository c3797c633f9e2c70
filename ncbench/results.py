"""Result files: one JSON per run, written atomically, read back with validation.

A result holds the run's identity (method, backbone, dataset, noise ratio, noise-index sha256,
seed, protocol version), its full config and hash, test and best-validation metrics, the
per-query test ranks, per-epoch history, timings, package versions, git revision, hardware and a
status (``ok`` or ``failed`` with the error). Everything downstream (leaderboards, plots,
submissions) reads only these files. Files live at
``<results>/<protocol>/<dataset>/noise-<r>/<method>/<backbone>/seed-<s>.json`` (``<method>@<tag>/`` for a
run given ``--tag``, so configs of one method can live side by side).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from . import __version__
from .atomic import write_text_atomic
from .config import RunConfig, row_name
from .data.noise import type_suffix
from .errors import ResultError
from .locks import RunLock

SCHEMA_VERSION = 1
REQUIRED = ("schema_version", "status", "identity", "config", "config_hash")
IDENTITY = ("method", "backbone", "dataset", "noise_ratio", "seed", "protocol_version")
SUPERSEDED = "superseded"  # results replaced by a run with another config are moved here
TUNING = "tuning"  # the trials of ``ncbench tune`` (dev-split only, never on a leaderboard)
LOGS = "logs"  # live logs of ``--log tensorboard|wandb`` (``ncbench.live_log``), not results


def noise_folder(noise_ratio: float, noise_type: str = "caption") -> str:
    """``noise-0.2`` for caption-level noise (the layout results had before image-level noise
    existed, so they stay where they are), ``noise-image-0.2`` for image-level noise."""
    return f"noise{type_suffix(noise_type)}-{float(noise_ratio):g}"


def run_folder(root: Path, protocol_version: str, dataset: str, noise_ratio: float, method: str, backbone: str,
               noise_type: str = "caption") -> Path:
    """The folder holding the per-seed result files of one configuration."""
    return Path(root) / f"protocol-{protocol_version}" / dataset / noise_folder(noise_ratio, noise_type) / method / backbone


def noise_type_of(ident: dict[str, Any]) -> str:
    """A result's noise protocol; results written before the field existed are caption-level."""
    return ident.get("noise_type") or "caption"


def identity_path(root: Path, ident: dict[str, Any]) -> Path:
    """Where a result with this ``identity`` block lives under ``root``."""
    folder = run_folder(root, ident["protocol_version"], ident["dataset"], ident["noise_ratio"], row_of(ident),
                        ident["backbone"], noise_type_of(ident))
    return folder / f"seed-{ident['seed']}.json"


def config_key(config: dict[str, Any]) -> str:
    """What the seeds of one board row must share: the config without its seed and provenance (an
    ensemble's member hashes, which carry the seed, count by backbone)."""
    data = {k: v for k, v in (config or {}).items() if k not in ("seed", "recipe")}
    members = (data.get("backbone_config") or {}).get("members")
    if isinstance(members, dict):
        data["backbone_config"] = {**data["backbone_config"], "members": sorted(members)}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def row_of(ident: dict[str, Any]) -> str:
    """The method as boards name a result's row: ``ncr``, or ``ncr@<tag>`` for a run given ``--tag``."""
    return row_name(ident["method"], ident.get("tag"))


def result_path(root: Path, cfg: RunConfig) -> Path:
    """A run's result file; a tuning trial's lives under ``<root>/tuning/``, one folder per trial."""
    if cfg.trial is not None:
        folder = (Path(root) / TUNING / f"protocol-{cfg.protocol_version}" / cfg.dataset / cfg.row_name / cfg.backbone
                  / f"trial-{cfg.trial}")
        return folder / f"{noise_folder(cfg.noise_ratio, cfg.noise_type)}-seed-{cfg.seed}.json"
    return (run_folder(root, cfg.protocol_version, cfg.dataset, cfg.noise_ratio, cfg.row_name, cfg.backbone, cfg.noise_type)
            / f"seed-{cfg.seed}.json")


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=1, allow_nan=False) + "\n")


def read_result(path: Path) -> dict[str, Any]:
    """Parse and minimally validate one result file; ResultError says what is wrong."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResultError(f"{path}: result file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ResultError(f"{path}: not valid JSON ({exc}); truncated or corrupt?") from None
    if not isinstance(data, dict):
        raise ResultError(f"{path}: expected a JSON object")
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise ResultError(f"{path}: missing field(s) {', '.join(missing)}")
    ident = data["identity"]
    if not isinstance(ident, dict) or any(k not in ident for k in IDENTITY):
        raise ResultError(f"{path}: 'identity' must hold {', '.join(IDENTITY)}")
    if data["status"] == "ok" and not isinstance(data.get("test"), dict) and not _is_trial(data):
        raise ResultError(f"{path}: status ok but no 'test' metrics")
    return data


def _is_trial(data: dict[str, Any]) -> bool:
    return isinstance(data["config"], dict) and data["config"].get("trial") is not None


@dataclass
class LoadedResults:
    results: list[dict[str, Any]]
    errors: list[str]  # unreadable files: reported, never deleted


def iter_result_files(root: Path) -> Iterator[Path]:
    for p in sorted(Path(root).rglob("*.json")):
        parts = p.relative_to(root).parts
        if SUPERSEDED not in parts and parts[0] not in (TUNING, LOGS) and not p.name.startswith("."):
            yield p


def result_files(paths: list[Path]) -> list[Path]:
    """Files as given; folders searched recursively for result files (``iter_result_files``: not the
    superseded, tuning or live-log folders)."""
    out = []
    for p in map(Path, paths):
        out += list(iter_result_files(p)) if p.is_dir() else [p]
    return out


def load_results(root: Path) -> LoadedResults:
    results, errors = [], []
    for p in iter_result_files(root):
        try:
            data = read_result(p)
        except ResultError as exc:
            errors.append(str(exc))
            continue
        data["_path"] = str(p)
        results.append(data)
    return LoadedResults(results, errors)


def inspect_result(path: Path, config_hash: str) -> tuple[str, dict[str, Any] | None]:
    """The state of a run's result file and, when readable, its content (read once): state ``done``
    (same config, status ok), ``stale`` (another config), ``failed``, ``corrupt`` or ``missing``."""
    if not path.exists():
        return "missing", None
    try:
        data = read_result(path)
    except ResultError:
        return "corrupt", None
    if data["config_hash"] != config_hash:
        return "stale", data
    return ("done" if data["status"] == "ok" else "failed"), data


def existing_status(path: Path, config_hash: str) -> str:
    """The state alone (see ``inspect_result``)."""
    return inspect_result(path, config_hash)[0]


def set_aside(root: Path, path: Path, reason: str) -> Path:
    """Move a result that is about to be replaced under ``<root>/superseded/`` (nothing is deleted)."""
    rel = path.relative_to(root)
    dest = Path(root) / SUPERSEDED / rel.parent / f"{path.stem}.{reason}.{time.strftime('%Y%m%d-%H%M%S')}{path.suffix}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(path), dest)
    return dest


def lock_path(path: Path) -> Path:
    """The lock file of a result file (``ncbench.locks``)."""
    return path.with_suffix(".lock")


@contextmanager
def claim_result(root: Path, path: Path, config_hash: str, log: Callable[[str], None], where: str):
    """Claim the result file ``path`` before producing it (a run, an ensemble), with the check
    repeated under its lock: yields ``("done", record)`` when it is already finished, ``("busy",
    None)`` when another worker holds its lock, otherwise ``("free", previous)`` while holding the
    lock, ``previous`` the state of the file there (missing, failed, stale, corrupt). Nothing is moved
    yet: ``store_result`` replaces the file once the new record exists, so a run that fails to start
    (a bad input) or fails leaves a finished result where it is."""
    state, record = inspect_result(path, config_hash)
    if state == "done":
        yield state, record
        return
    lock = RunLock(lock_path(path))
    if not lock.acquire():
        log(f"{where}: being produced by another worker ({lock.path}); passed over")
        yield "busy", None
        return
    with lock:
        state, record = inspect_result(path, config_hash)  # another worker may have finished it meanwhile
        if state == "done":
            yield state, record
            return
        yield "free", state


def store_result(root: Path, path: Path, record: dict, previous: str, log: Callable[[str], None], where: str) -> bool:
    """Write a new ``record`` at ``path`` (atomically), where ``previous`` was found by ``claim_result``.
    A stale result (another config's, finished) is moved under ``superseded/`` only when the new run
    succeeded; a failed run then leaves it in place and is not written (False). A corrupt file is
    always set aside first."""
    if previous == "stale" and record.get("status") != "ok":
        log(f"{where}: the run failed; the finished result of another config stays at {path}")
        return False
    if previous in ("stale", "corrupt"):
        log(f"{where}: existing result is {previous}, moved to {set_aside(root, path, previous)}")
    write_json_atomic(path, record)
    return True


# -- provenance --------------------------------------------------------------------------------
def git_revision(src: Path | None = None) -> dict[str, Any]:
    """Commit and dirty flag of the source tree ncbench runs from (``src``: its root), when that
    tree is a git checkout (an installed copy inside some other repository reports none). Dirty means
    a changed tracked file *or* a method file git does not track (``methods/*.py``: a result made by
    an uncommitted method is not reproducible from the commit); those are listed with their sha256."""
    src = Path(__file__).resolve().parent.parent if src is None else Path(src).resolve()

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(src), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    top = git("rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != src:
        return {"commit": None, "dirty": None}
    dirty = git("status", "--porcelain", "--untracked-files=no")
    untracked = git("ls-files", "--others", "--exclude-standard", "--", "methods/*.py")
    out: dict[str, Any] = {"commit": git("rev-parse", "HEAD"), "dirty": None if dirty is None else bool(dirty)}
    if untracked:
        out["dirty"] = True
        out["untracked_methods"] = {name: hashlib.sha256((src / name).read_bytes()).hexdigest()
                                    for name in sorted(untracked.splitlines())}
    return out


def environment(device: str) -> dict[str, Any]:
    import numpy
    import torch

    env: dict[str, Any] = {
        "versions": {
            "ncbench": __version__,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": numpy.__version__,
        },
        "git": git_revision(),
        "hardware": {
            "platform": platform.platform(),
            "machine": platform.machine(),
            "processor": platform.processor() or None,
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "device": device,
        },
        "determinism": {
            "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "cudnn_deterministic": torch.backends.cudnn.deterministic,
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        },
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        idx = torch.device(device).index or 0
        env["hardware"]["gpu"] = torch.cuda.get_device_name(idx)
        env["versions"]["cuda"] = torch.version.cuda
        env["versions"]["cudnn"] = torch.backends.cudnn.version()
    return env
