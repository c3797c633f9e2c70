"""Submissions: result files validated as data and copied into the leaderboard's results folder.

A submission is a set of result JSON files. Nothing in it is executed: only regular files are
read (a symbolic link, a FIFO or a device is refused without being opened for reading, and at
most ``MAX_BYTES`` are read), parsed as strict JSON (no NaN or Infinity: ``results.parse_json``),
checked against the published JSON Schema (``ncbench/schema/result.schema.json``) and what a schema
cannot express (``results.result_problems``: each view's rSum equals the sum of its six recalls
within 0.01, the ranks lie within their test set), then against the protocol:

* the protocol version is one ncbench knows;
* the run's identity agrees with its config (method, backbone, dataset, noise ratio, seed);
* the noise-index sha256 is the canonical one for that dataset and ratio
  (``ncbench.reference/noise-index.json``);
* seed sets are complete: every (dataset, noise, method, backbone) submitted has all of
  ``PROTOCOL_SEEDS`` (counting results already accepted);
* a result may call itself a board's reference row (``meta.reference``: the training-free floor,
  the clean-pairs ceiling) only as ncbench's own method of that name does (``probe``,
  ``clean_oracle``), and such a method's result must say so.

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
from .atomic import write_atomic
from .data.noise_spec import NoiseSpec
from .errors import NcbenchError, ResultError
from .results import (
    MAX_BYTES,
    identity_path,
    noise_of,
    parse_json,
    read_bounded,
    result_files,
    result_problems,
    row_of,
    run_folder,
)
from .schema import result_schema

__all__ = ["MAX_BYTES", "Verdict", "accept", "canonical_noise", "check_content", "result_schema", "review"]

KNOWN_PROTOCOLS = (PROTOCOL_VERSION,)
PROTOCOL_SEEDS = (0, 1, 2)


def canonical_noise() -> dict[str, dict[str, dict[str, dict[str, str]]]]:
    """dataset → noise protocol (``NoiseSpec.key``: caption, image, caption-neighbour, ...) → ratio
    (``f"{r:g}"``) → ``{"sha256", "source"}`` (and ``texts_sha256`` for noise that rewrites captions)."""
    text = resources.files("ncbench.reference").joinpath("noise-index.json").read_text(encoding="utf-8")
    return json.loads(text)["datasets"]


def canonical_entry(dataset: str, noise: NoiseSpec | str, ratio: float) -> dict[str, str] | None:
    """The registered index of one (dataset, noise protocol, ratio), or None."""
    return canonical_noise().get(dataset, {}).get(str(noise), {}).get(f"{float(ratio):g}")


@dataclass
class Verdict:
    path: Path
    data: dict[str, Any] | None = None
    reasons: list[str] = field(default_factory=list)
    dest: Path | None = None
    note: str = ""  # "accepted" details, e.g. "already accepted"
    raw: bytes = b""  # the file as it was reviewed: what ``accept`` copies (never read a second time)

    @property
    def accepted(self) -> bool:
        return not self.reasons


def expected_reference(method: str) -> str | None:
    """The reference role (``floor``, ``ceiling`` or None) ncbench's own method of this name has;
    None for a method ncbench does not know."""
    from .registry import METHODS
    from .runner import reference_role

    try:
        return reference_role(METHODS.get(method))
    except NcbenchError:
        return None


def check_content(data: dict[str, Any]) -> list[str]:
    """The protocol's checks of one valid result (``results.result_problems`` found nothing)."""
    reasons = []
    ident, cfg = data["identity"], data["config"]
    declared, expected = (data.get("meta") or {}).get("reference"), expected_reference(ident["method"])
    if declared != expected:
        reasons.append(f"meta.reference = {declared!r}, but a {ident['method']} result is "
                       + (f"the {expected} reference row" if expected else "not a reference row")
                       + ": only ncbench's own probe (floor) and clean_oracle (ceiling) are shown as references")
    if ident["protocol_version"] not in KNOWN_PROTOCOLS:
        reasons.append(f"unknown protocol version {ident['protocol_version']!r} (known: {', '.join(KNOWN_PROTOCOLS)})")
    for key in ("method", "backbone", "dataset", "noise_ratio", "seed"):
        if key in cfg and cfg[key] != ident[key]:
            reasons.append(f"identity.{key} = {ident[key]!r} but config.{key} = {cfg[key]!r}")
    ratio, kind = f"{float(ident['noise_ratio']):g}", noise_of(ident)
    try:
        declared = NoiseSpec.from_fields(cfg)
    except NcbenchError as exc:
        declared = None
        reasons.append(f"config: {exc}")
    if declared is not None and declared != kind:
        reasons.append(f"identity's noise protocol {kind} is not config's {declared}")
    entry = canonical_entry(ident["dataset"], kind, float(ratio))
    if entry is None:
        reasons.append(f"no canonical {kind.label} noise index is registered for {ident['dataset']} at ratio {ratio} "
                       "(leaderboards/reference/noise-index.json); results there cannot be compared yet")
    elif entry["sha256"] != ident["noise_index_sha256"]:
        reasons.append(f"noise index sha256 {ident['noise_index_sha256'][:12]}… is not the canonical "
                       f"{entry['sha256'][:12]}… for {ident['dataset']} at {kind.label} {ratio} ({entry['source']})")
    elif entry.get("texts_sha256") != ident.get("noise_texts_sha256"):
        reasons.append(f"corrupted caption texts sha256 {str(ident.get('noise_texts_sha256'))[:12]}… are not the "
                       f"canonical {str(entry.get('texts_sha256'))[:12]}… for {ident['dataset']} at {kind.label} {ratio}")
    return reasons


def load_submission_file(path: Path) -> Verdict:
    """Read one submitted file (a regular file, not a link: ``results.read_bounded``), parse it
    strictly and check it; its reasons say what is wrong."""
    v = Verdict(Path(path))
    if v.path.suffix != ".json":
        v.reasons.append("not a .json result file (only JSON data is accepted; nothing is executed)")
        return v
    try:
        v.raw = read_bounded(v.path, follow_symlinks=False)
        data = parse_json(v.raw, v.path)
    except ResultError as exc:
        v.reasons.append(str(exc).removeprefix(f"{v.path}: "))
        return v
    v.reasons += result_problems(data, local=False)
    if not v.reasons:
        v.data = data
        v.reasons += check_content(data)
    return v


def _group(ident: dict[str, Any]) -> tuple:
    return (ident["protocol_version"], ident["dataset"], float(ident["noise_ratio"]), row_of(ident), ident["backbone"],
            noise_of(ident))


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
        if v.dest.exists() or v.dest.is_symlink():
            try:
                same = read_bounded(v.dest, follow_symlinks=False) == v.raw
            except ResultError:
                same = False
            if same:
                v.note = "already accepted"
                continue
            if not replace:
                v.reasons.append(f"{v.dest} already holds a different result for this run (use --replace)")
                continue
        write_atomic(v.dest, lambda f, raw=v.raw: f.write(raw))
        v.note = "accepted"
