"""Result files: one JSON per run, written atomically, read back with validation.

A result holds the run's identity (method, backbone, dataset, noise ratio, noise-index sha256,
seed, protocol version), its full config and hash, the code that made it (``code``: the method's
and ncbench's training code's hashes as imported, ``ncbench.code_identity``), test and
best-validation metrics, the per-query test ranks, per-epoch history, timings, package versions,
git revision, hardware and a status (``ok`` or ``failed`` with the error). A finished result of the
same config counts as done only when made by the code the process runs now; one of other code
(or of unknown code: written before results recorded it) is ``stale-code``, produced again unless
the change is accepted, which is recorded in the file (``code_accepted``). Everything downstream (leaderboards, plots,
submissions) reads only these files. Files live at
``<results>/<protocol>/<dataset>/noise-<r>/<method>/<backbone>/seed-<s>.json`` (``<method>@<tag>/`` for a
run given ``--tag``, so configs of one method can live side by side).

Reading is strict, because a results folder may be shared and every command reads it: a result
file is read only when it is a regular file (never a FIFO or a device, which would hang or fill the
memory), at most ``MAX_BYTES``; NaN, Infinity and numbers too large for a float are refused by the
parser; the content must follow the published JSON Schema (``ncbench.schema``: identity fields that
become folder and file names match its name pattern, metrics are numbers within range, history
entries have the right types) and the checks a schema cannot express (``result_problems``: rSum is
the sum of its recalls, ranks lie within their test set, a split histogram's arrays fit together).
Anything else is a ``ResultError`` naming the file, which boards skip with a warning.

A new result replaces an old one only once it is safely on disk: it is written to a temporary
name first, then the old file is moved aside (``superseded/``), then the new one renamed into
place, so a full disk never leaves a finished result out of its place.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import platform
import stat
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from . import __version__
from .atomic import move_aside, write_text_atomic
from .code_identity import (  # noqa: F401 - git_revision: ncbench.results.git_revision as before
    accept as code_accept,
    code_hash_of,
    code_problems,
    code_record,
    current_code_hash,
    git_revision,
    process_revision,
    short,
)
from .config import RunConfig, as_before_added_options, row_name
from .data.noise_spec import CAPTION_SHUFFLE, NoiseSpec
from .errors import NcbenchError, ResultError
from .locks import RunLock
from .schema import schema_errors

SCHEMA_VERSION = 1
MAX_BYTES = 64 * 2**20  # no result comes near (MS-COCO's, ranks included, is under 1 MiB)
RECALLS = ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10")
RSUM_TOLERANCE = 0.01
SUPERSEDED = "superseded"  # results replaced by a run with another config are moved here
TUNING = "tuning"  # the trials of ``ncbench tune`` (dev-split only, never on a leaderboard)
LOGS = "logs"  # live logs of ``--log tensorboard|wandb`` (``ncbench.live_log``), not results
NOISE_INDEX = "noise_index"  # generated noise indices and their corrupted texts (``.texts.json``), not results


def noise_folder(noise_ratio: float, noise: NoiseSpec = CAPTION_SHUFFLE) -> str:
    """``noise-0.2`` for the caption-level shuffle (the layout results had before image-level noise
    and noise models existed, so they stay where they are), ``noise-image-0.2``,
    ``noise-neighbour-0.2``, ``noise-image-partial-0.2``, ... (``NoiseSpec.slug``) otherwise."""
    return f"noise{noise.suffix()}-{float(noise_ratio):g}"


def run_folder(root: Path, protocol_version: str, dataset: str, noise_ratio: float, method: str, backbone: str,
               noise: NoiseSpec = CAPTION_SHUFFLE) -> Path:
    """The folder holding the per-seed result files of one configuration."""
    return Path(root) / f"protocol-{protocol_version}" / dataset / noise_folder(noise_ratio, noise) / method / backbone


def noise_type_of(ident: dict[str, Any]) -> str:
    """A result's noise type; results written before the field existed are caption-level."""
    return ident.get("noise_type") or "caption"


def noise_of(ident: dict[str, Any]) -> NoiseSpec:
    """A result's whole noise protocol (``NoiseSpec``); results written before noise models existed
    are shuffles of their type."""
    return NoiseSpec.from_fields(ident)


def noise_output_sha256(ident: dict[str, Any]) -> str | None:
    """What identifies the noise a run trained on: the index's sha256, joined by the corrupted texts'
    sha256 for noise that rewrites captions (two ``partial`` runs share the untouched index)."""
    sha, texts = ident.get("noise_index_sha256"), ident.get("noise_texts_sha256")
    return f"{sha}+{texts}" if sha and texts else sha


def identity_path(root: Path, ident: dict[str, Any]) -> Path:
    """Where a result with this ``identity`` block lives under ``root``."""
    folder = run_folder(root, ident["protocol_version"], ident["dataset"], ident["noise_ratio"], row_of(ident),
                        ident["backbone"], noise_of(ident))
    return folder / f"seed-{ident['seed']}.json"


def config_key(config: dict[str, Any]) -> str:
    """What the seeds of one board row must share: the config without its seed and provenance (an
    ensemble's member hashes, which carry the seed, count by backbone)."""
    data = {k: v for k, v in (config or {}).items() if k not in ("seed", "recipe")}
    if "method_config" in data:
        data["method_config"] = as_before_added_options(data["method_config"])
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
        return folder / f"{noise_folder(cfg.noise_ratio, cfg.noise_protocol)}-seed-{cfg.seed}.json"
    return (run_folder(root, cfg.protocol_version, cfg.dataset, cfg.noise_ratio, cfg.row_name, cfg.backbone, cfg.noise_protocol)
            / f"seed-{cfg.seed}.json")


def result_text(data: Any) -> str:
    """A record as it is stored (``allow_nan=False``: a NaN is an error here, not a file nobody can read)."""
    return json.dumps(data, indent=1, allow_nan=False) + "\n"


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, result_text(data))


# -- reading -----------------------------------------------------------------------------------
def _kind_problem(mode: int) -> str | None:
    if stat.S_ISLNK(mode):
        return "a symbolic link; only regular files are read here"
    if not stat.S_ISREG(mode):
        return "not a regular file (a FIFO, device or folder); only regular files are read"
    return None


def read_bounded(path: Path, follow_symlinks: bool = True, max_bytes: int = MAX_BYTES) -> bytes:
    """The bytes of the regular file ``path``, at most ``max_bytes``; ResultError names the file
    otherwise. Never blocks and never opens anything else: a FIFO, a device (``/dev/zero``), a folder
    and, unless ``follow_symlinks``, a symbolic link are refused from their ``stat``, and the file is
    opened non-blocking and checked again on the open descriptor (in case the name was swapped)."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | (0 if follow_symlinks else os.O_NOFOLLOW)
    try:
        problem = _kind_problem(os.stat(path, follow_symlinks=follow_symlinks).st_mode)
        fd = None if problem else os.open(path, flags)
    except FileNotFoundError:
        raise ResultError(f"{path}: result file not found") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP and not follow_symlinks:
            raise ResultError(f"{path}: {_kind_problem(stat.S_IFLNK)}") from None
        raise ResultError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if problem:
        raise ResultError(f"{path}: {problem}")
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        problem = _kind_problem(st.st_mode) or (f"larger than {max_bytes // 2**20} MiB" if st.st_size > max_bytes
                                                else None)
        if problem:
            raise ResultError(f"{path}: {problem}")
        try:
            raw = f.read(max_bytes + 1)
        except OSError as exc:
            raise ResultError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if len(raw) > max_bytes:  # it grew while being read
        raise ResultError(f"{path}: larger than {max_bytes // 2**20} MiB")
    return raw


class _NotFinite(ValueError):
    pass


def _refuse_constant(name: str) -> float:
    raise _NotFinite(f"{name} is not a number a result may hold")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotFinite(f"{text} is too large for a float")
    return value


def parse_json(raw: bytes, path: Path) -> Any:
    """Strict JSON: finite numbers only (``NaN``, ``Infinity`` and overflowing floats are refused)."""
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant, parse_float=_finite_float)
    except _NotFinite as exc:
        raise ResultError(f"{path}: {exc}; every number must be finite") from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, an int of 5000 digits
        raise ResultError(f"{path}: not valid JSON ({exc}); truncated or corrupt?") from None


def _views(test: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    views = [("full", test["full"])]
    if "fold_mean" in test:
        views.append(("fold_mean", test["fold_mean"]))
    views += [(f"folds[{i}]", f) for i, f in enumerate(test.get("folds", []))]
    return views


def rank_problems(ranks: dict[str, Any]) -> list[str]:
    """The stored per-query ranks (schema-checked as arrays): at least one image, a whole number of
    captions per image, each rank a whole number below its number of candidates (an image query
    ranks every caption, a caption query every image), folds that make up the whole split."""
    out = []
    blocks = [("ranks", ranks)] + [(f"ranks.folds[{i}]", f) for i, f in enumerate(ranks.get("folds") or [])]
    for where, block in blocks:
        n, m = len(block["i2t"]), len(block["t2i"])
        if not n or m % n or not m:
            out.append(f"{where}: {n} image and {m} caption queries; a test set has at least one image and the same "
                       "number of captions for each")
            continue
        for name, values, bound, what in (("i2t", block["i2t"], m, "captions"), ("t2i", block["t2i"], n, "images")):
            if not all(type(v) is int and 0 <= v < bound for v in values):
                out.append(f"{where}.{name}: every rank must be a whole number from 0 to {bound - 1} (one less than "
                           f"the {bound} {what} it ranks)")
    folds = ranks.get("folds") or []
    if folds and not out and sum(len(f["i2t"]) for f in folds) != len(ranks["i2t"]):
        out.append(f"ranks.folds: {sum(len(f['i2t']) for f in folds)} images in the folds, {len(ranks['i2t'])} in the "
                   "whole split")
    return out


def _histogram_problems(hist: dict[str, Any]) -> list[str]:
    bins, grid = len(hist["edges"]) - 1, len(hist["grid"])
    if bins < 1 or len(hist["clean_counts"]) != bins or len(hist["noisy_counts"]) != bins:
        return [f"detection.split_histogram: {len(hist['edges'])} edges for {len(hist['clean_counts'])} clean and "
                f"{len(hist['noisy_counts'])} noisy counts (one edge more than counts)"]
    if len(hist["component_pdf"]) != 2 or any(len(c) != grid for c in hist["component_pdf"]) or not grid:
        return [f"detection.split_histogram: component_pdf must be two densities of {grid} grid points"]
    return []


def result_problems(data: Any, local: bool = True) -> list[str]:
    """Everything wrong with a parsed result: the schema (``local``: as a results folder may hold it,
    e.g. a failed run; otherwise as submitted), then what a schema cannot say. Empty when valid."""
    problems = schema_errors(data, local=local)
    if problems:
        return problems
    ident = data["identity"]
    if type(ident["seed"]) is not int:
        problems.append(f"identity.seed {ident['seed']!r} is not a whole number")
    try:
        noise_of(ident)  # a known noise model with valid parameters
    except NcbenchError as exc:
        problems.append(f"identity: {exc}")
    test = data.get("test")
    if data["status"] == "ok" and test is None and not _is_trial(data):
        problems.append("status ok but no 'test' metrics")
    if test is not None:
        if test["primary"] not in test:
            problems.append(f"test.primary is {test['primary']!r} but there is no test.{test['primary']}")
        for name, view in _views(test):
            total = sum(float(view[k]) for k in RECALLS)
            if abs(total - float(view["rsum"])) > RSUM_TOLERANCE:
                problems.append(f"test.{name}: rsum {view['rsum']} is not the sum of its six recalls ({total:.2f})")
    if "ranks" in data:
        problems += rank_problems(data["ranks"])
    hist = (data.get("detection") or {}).get("split_histogram")
    if hist is not None:
        problems += _histogram_problems(hist)
    return problems + code_problems(data)


def read_result(path: Path) -> dict[str, Any]:
    """Read (``read_bounded``), parse (``parse_json``) and validate (``result_problems``) one local
    result file; ResultError names the file and says what is wrong."""
    data = parse_json(read_bounded(path), path)
    if not isinstance(data, dict):
        raise ResultError(f"{path}: expected a JSON object")
    problems = result_problems(data, local=True)
    if problems:
        raise ResultError(f"{path}: " + "; ".join(problems))
    return data


def _is_trial(data: dict[str, Any]) -> bool:
    return isinstance(data["config"], dict) and data["config"].get("trial") is not None


@dataclass
class LoadedResults:
    results: list[dict[str, Any]]
    errors: list[str]  # unreadable files: reported, never deleted


def iter_result_files(root: Path) -> Iterator[Path]:
    """The result files under ``root``, sorted (not the superseded, tuning, live-log or noise-index folders, not
    hidden names such as a result still being written). Only names: ``read_result`` checks each
    one is a regular file before opening it."""
    for p in sorted(Path(root).rglob("*.json")):
        parts = p.relative_to(root).parts
        if SUPERSEDED not in parts and parts[0] not in (TUNING, LOGS, NOISE_INDEX) and not p.name.startswith("."):
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
    (same config, status ok, made by the code its method has in this process: ``code_identity``),
    ``stale-code`` (the same but made by other code, or by unknown code: a result older than code
    records), ``stale`` (another config), ``failed``, ``corrupt`` or ``missing``."""
    if not path.exists():
        return "missing", None
    try:
        data = read_result(path)
    except ResultError:
        return "corrupt", None
    if data["config_hash"] != config_hash:
        return "stale", data
    if data["status"] != "ok":
        return "failed", data
    if code_hash_of(data) != current_code_hash(data["identity"]["method"]):
        return "stale-code", data
    return "done", data


def existing_status(path: Path, config_hash: str) -> str:
    """The state alone (see ``inspect_result``)."""
    return inspect_result(path, config_hash)[0]


def code_change(record: dict[str, Any]) -> str:
    """How a ``stale-code`` result's code differs, for messages: ``code 1a2b3c4d, now 5e6f7a8b``."""
    return f"code {short(code_hash_of(record))}, now {short(current_code_hash(record['identity']['method']))}"


def accept_code_change(path: Path, record: dict[str, Any]) -> dict[str, Any]:
    """Keep the ``stale-code`` result ``record`` of ``path`` as a result of this code: rewritten
    atomically (never through a link) with the acceptance appended to its ``code_accepted``
    (``code_identity.accept``); its numbers and its ``code`` block stay as they were."""
    accepted = code_accept(record, time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    try:
        write_json_atomic(path, accepted)
    except OSError as exc:
        raise ResultError(f"{path}: the accepted code change could not be written ({exc.strerror or exc}); "
                          "the result is unchanged") from None
    return accepted


def set_aside(root: Path, path: Path, reason: str) -> Path:
    """Move a result that is about to be replaced under ``<root>/superseded/`` (its relative folder,
    a name no other move can take: ``atomic.move_aside``; nothing is deleted)."""
    return move_aside(path, Path(root) / SUPERSEDED / path.relative_to(root).parent, reason)


def lock_path(path: Path) -> Path:
    """The lock file of a result file (``ncbench.locks``)."""
    return path.with_suffix(".lock")


@contextmanager
def claim_result(root: Path, path: Path, config_hash: str, log: Callable[[str], None], where: str,
                 accept_code: bool = False):
    """Claim the result file ``path`` before producing it (a run, an ensemble), with the check
    repeated under its lock: yields ``("done", record)`` when it is already finished, ``("busy",
    None)`` when another worker holds its lock, otherwise ``("free", previous)`` while holding the
    lock, ``previous`` the state of the file there (missing, failed, stale, stale-code, corrupt).
    Nothing is moved yet: ``store_result`` replaces the file once the new record exists, so a run
    that fails to start (a bad input) or fails leaves a finished result where it is. A ``stale-code``
    result is produced again, saying so, unless ``accept_code``: then it is kept as this code's
    (``accept_code_change``) and yielded as ``("accepted", record)``."""
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
        if state == "stale-code" and accept_code:
            change = code_change(record)
            record = accept_code_change(path, record)
            log(f"{where}: result of other code ({change}) kept as this code's; the acceptance is recorded in "
                f"its code_accepted ({path})")
            yield "accepted", record
            return
        if state == "stale-code":
            log(f"{where}: result of other code ({code_change(record)}): produced again; the old result is set "
                "aside once the new one is written")
        yield "free", state


def pending_path(path: Path) -> Path:
    """Where a new result waits, complete on disk, while the old one is moved aside (a hidden name
    ``iter_result_files`` passes over)."""
    return path.with_name(f".{path.name}.pending.tmp")


def store_result(root: Path, path: Path, record: dict, previous: str, log: Callable[[str], None], where: str) -> bool:
    """Write a new ``record`` at ``path`` (atomically), where ``previous`` was found by ``claim_result``;
    a record without a ``code`` block gets its method's (``code_identity.code_record``). A stale
    result (another config's or other code's, finished) is moved under ``superseded/`` only when the
    new run succeeded; a failed run then leaves it in place and is not written (False). A corrupt
    file is set aside too. The new file is written in full under a temporary name first, and only then is
    the old one moved and the new one renamed into place: a write that fails (a full disk) is a
    ResultError naming the file, and the old result stays where it was."""
    if previous in ("stale", "stale-code") and record.get("status") != "ok":
        other = "another config" if previous == "stale" else "other code"
        log(f"{where}: the run failed; the finished result of {other} stays at {path}")
        return False
    record.setdefault("code", code_record(record["identity"]["method"]))
    pending = pending_path(path)
    try:
        write_text_atomic(pending, result_text(record))
    except OSError as exc:
        pending.unlink(missing_ok=True)
        raise ResultError(f"{path}: the result could not be written ({exc.strerror or exc}); "
                          + ("the previous result stays in place" if path.exists() else "nothing was written")) from None
    try:
        if previous in ("stale", "stale-code", "corrupt"):
            log(f"{where}: existing result is {previous}, moved to {set_aside(root, path, previous)}")
        os.replace(pending, path)
    except OSError as exc:
        raise ResultError(f"{path}: the result could not be put in place ({exc.strerror or exc}); it is complete in "
                          f"{pending}") from None
    return True


# -- provenance --------------------------------------------------------------------------------
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
        "git": process_revision(),
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
