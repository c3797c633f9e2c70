"""Submissions: result files validated as data and copied into the leaderboard's results folder.

A submission is a set of result JSON files. Nothing in it is executed: files are parsed with
``json`` only, checked against the published JSON Schema (``ncbench/schema/result.schema.json``),
then against what a schema cannot express:

* each view's rSum equals the sum of its six recalls (within 0.01);
* the protocol version is one ncbench knows;
* the run's identity agrees with its config (method, backbone, dataset, noise ratio, seed);
* the noise-index sha256 is the canonical one for that dataset and ratio
  (``ncbench.reference/noise-index.json``);
* seed sets are complete: every (dataset, noise, method, backbone) submitted has all of
  ``PROTOCOL_SEEDS`` (counting results already accepted).

Accepted files are copied atomically to ``<dest>/protocol-<v>/<dataset>/noise-<r>/<method>/
<backbone>/seed-<s>.json``; refused ones are listed with the reason and not copied.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from . import PROTOCOL_VERSION
from .atomic import write_text_atomic
from .evaluate import RetrievalMetrics
from .results import identity_path, noise_type_of, result_files, row_of, run_folder

KNOWN_PROTOCOLS = (PROTOCOL_VERSION,)
PROTOCOL_SEEDS = (0, 1, 2)
MAX_BYTES = 64 * 2**20
RSUM_TOLERANCE = 0.01


def result_schema() -> dict[str, Any]:
    return json.loads(resources.files("ncbench.schema").joinpath("result.schema.json").read_text(encoding="utf-8"))


def canonical_noise() -> dict[str, dict[str, dict[str, dict[str, str]]]]:
    """dataset → noise type (caption | image) → ratio (``f"{r:g}"``) → ``{"sha256", "source"}``."""
    text = resources.files("ncbench.reference").joinpath("noise-index.json").read_text(encoding="utf-8")
    return json.loads(text)["datasets"]


def canonical_entry(dataset: str, noise_type: str, ratio: float) -> dict[str, str] | None:
    """The registered index of one (dataset, noise type, ratio), or None."""
    return canonical_noise().get(dataset, {}).get(noise_type, {}).get(f"{float(ratio):g}")


@dataclass
class Verdict:
    path: Path
    data: dict[str, Any] | None = None
    reasons: list[str] = field(default_factory=list)
    dest: Path | None = None
    note: str = ""  # "accepted" details, e.g. "already accepted"

    @property
    def accepted(self) -> bool:
        return not self.reasons


def _schema_errors(data: Any) -> list[str]:
    import jsonschema

    validator = jsonschema.Draft202012Validator(result_schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    out = []
    for e in errors[:5]:
        where = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        out.append(f"schema: {where}: {e.message}")
    if len(errors) > 5:
        out.append(f"schema: … and {len(errors) - 5} more")
    return out


def _views(test: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    views = [("full", test["full"])]
    if "fold_mean" in test:
        views.append(("fold_mean", test["fold_mean"]))
    views += [(f"folds[{i}]", f) for i, f in enumerate(test.get("folds", []))]
    return views


def check_content(data: dict[str, Any]) -> list[str]:
    """Checks beyond the schema for one (schema-valid) result."""
    reasons = []
    ident, cfg = data["identity"], data["config"]
    for name, view in _views(data["test"]):
        total = sum(float(view[k]) for k in RetrievalMetrics.RECALLS)
        if abs(total - float(view["rsum"])) > RSUM_TOLERANCE:
            reasons.append(f"test.{name}: rsum {view['rsum']} is not the sum of its six recalls ({total:.2f})")
    if ident["protocol_version"] not in KNOWN_PROTOCOLS:
        reasons.append(f"unknown protocol version {ident['protocol_version']!r} (known: {', '.join(KNOWN_PROTOCOLS)})")
    for key in ("method", "backbone", "dataset", "noise_ratio", "seed"):
        if key in cfg and cfg[key] != ident[key]:
            reasons.append(f"identity.{key} = {ident[key]!r} but config.{key} = {cfg[key]!r}")
    ratio, kind = f"{float(ident['noise_ratio']):g}", noise_type_of(ident)
    if cfg.get("noise_type", "caption") != kind:
        reasons.append(f"identity.noise_type = {kind!r} but config.noise_type = {cfg.get('noise_type', 'caption')!r}")
    entry = canonical_entry(ident["dataset"], kind, float(ratio))
    if entry is None:
        reasons.append(f"no canonical {kind}-level noise index is registered for {ident['dataset']} at ratio {ratio} "
                       "(leaderboards/reference/noise-index.json); results there cannot be compared yet")
    elif entry["sha256"] != ident["noise_index_sha256"]:
        reasons.append(f"noise index sha256 {ident['noise_index_sha256'][:12]}… is not the canonical "
                       f"{entry['sha256'][:12]}… for {ident['dataset']} at {kind}-level {ratio} ({entry['source']})")
    return reasons


def load_submission_file(path: Path) -> Verdict:
    v = Verdict(Path(path))
    if path.suffix != ".json":
        v.reasons.append("not a .json result file (only JSON data is accepted; nothing is executed)")
        return v
    if path.stat().st_size > MAX_BYTES:
        v.reasons.append(f"larger than {MAX_BYTES // 2**20} MiB")
        return v
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        v.reasons.append(f"not valid JSON ({exc}); truncated or corrupt?")
        return v
    v.reasons += _schema_errors(data)
    if not v.reasons:
        v.data = data
        v.reasons += check_content(data)
    return v


def _group(ident: dict[str, Any]) -> tuple:
    return (ident["protocol_version"], ident["dataset"], float(ident["noise_ratio"]), row_of(ident), ident["backbone"],
            noise_type_of(ident))


def _accepted_seeds(dest: Path, group: tuple) -> set[int]:
    return {int(p.stem.split("-", 1)[1]) for p in run_folder(dest, *group).glob("seed-*.json")
            if p.stem.split("-", 1)[1].isdigit()}


def review(paths: list[Path], dest: Path) -> list[Verdict]:
    """Validate every file; nothing is written."""
    missing = [p for p in map(Path, paths) if not p.exists()]
    verdicts = [Verdict(p, reasons=["file not found"]) for p in missing]
    verdicts += [load_submission_file(p) for p in result_files([p for p in paths if Path(p).exists()])]
    groups: dict[tuple, list[Verdict]] = defaultdict(list)
    for v in verdicts:
        if v.data is not None:
            groups[_group(v.data["identity"])].append(v)
    for group, members in groups.items():
        seen: dict[int, Path] = {}
        for v in members:
            seed = v.data["identity"]["seed"]
            if seed in seen:
                v.reasons.append(f"seed {seed} of this configuration is also in {seen[seed]}")
            seen.setdefault(seed, v.path)
        earlier = _accepted_seeds(dest, group)
        have = {v.data["identity"]["seed"] for v in members if v.accepted} | earlier
        lacking = sorted(set(PROTOCOL_SEEDS) - have)
        if lacking:
            label = f"{group[1]} at {group[5]}-level noise {group[2]:g}, {group[3]}/{group[4]}"
            present = sorted({v.data["identity"]["seed"] for v in members} | earlier)
            refused = sorted(set(present) - have)
            why = f"; seeds {refused} are refused for the reasons given with them" if refused else ""
            for v in members:
                v.reasons.append(f"incomplete seed set for {label}: seeds {present} present{why}, "
                                 f"the protocol needs {list(PROTOCOL_SEEDS)} (missing {lacking})")
    for v in verdicts:
        if v.data is not None:
            v.dest = identity_path(dest, v.data["identity"])
    return verdicts


def accept(verdicts: list[Verdict], replace: bool = False) -> None:
    """Copy the accepted files to their destination (atomically); an existing different file there
    is a conflict unless ``replace``."""
    for v in verdicts:
        if not v.accepted or v.dest is None:
            continue
        text = v.path.read_text(encoding="utf-8")
        if v.dest.exists():
            if v.dest.read_text(encoding="utf-8") == text:
                v.note = "already accepted"
                continue
            if not replace:
                v.reasons.append(f"{v.dest} already holds a different result for this run (use --replace)")
                continue
        write_text_atomic(v.dest, text)
        v.note = "accepted"
