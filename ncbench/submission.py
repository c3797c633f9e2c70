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
  ``clean_oracle``), and such a method's result must say so;
* the code that made it is known and committed (``code_problem``): a result with no ``code``
  record (written before ncbench recorded it), no commit, uncommitted changes (``env.git.dirty``)
  or a method file git does not track is refused unless ``allow_dirty``; then it is accepted and
  marked ``dirty code`` on the boards;
* the destination holds no different result of the same run (unless ``replace``).

``review`` decides every verdict (``submit --check`` stops there, so it says exactly what
``submit`` would); ``accept`` only writes. Accepted files are copied atomically, byte for byte, to
``<dest>/protocol-<v>/<dataset>/noise-<r>/<method>/<backbone>/seed-<s>.json``; beside each goes its
provenance, ``seed-<s>.submission`` (JSON, ``Provenance``): the sha256 of the accepted bytes, the
code hash, whether the code was clean, and the method's source (``Source``: the repository URL and
commit of the checkout holding the method file, ``--source URL@COMMIT``, or ``local``). The boards
read it to mark the row ``submitted`` (``report.marks.mark_provenance``). Refused files are listed
with the reason, one line each, and not copied.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from . import PROTOCOL_VERSION
from .atomic import write_atomic, write_text_atomic
from .code_identity import code_hash_of, current_code_hash, process_revision
from .data.noise_spec import NoiseSpec
from .errors import ConfigError, NcbenchError, ResultError
from .git import git, git_bytes
from .registry import METHODS
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

__all__ = ["MAX_BYTES", "LOCAL", "Provenance", "Source", "Verdict", "accept", "canonical_noise", "check_content",
           "code_problem", "read_provenance", "result_schema", "review"]

KNOWN_PROTOCOLS = (PROTOCOL_VERSION,)
PROTOCOL_SEEDS = (0, 1, 2)
PROVENANCE_SUFFIX = ".submission"  # beside seed-<s>.json; not *.json, so no result scan reads it as a result
PROVENANCE_FORMAT = 1
PROVENANCE_MAX_BYTES = 64 * 2**10
ALLOW_DIRTY_HINT = "pass --allow-dirty to submit it anyway, marked 'dirty code' on the boards"


def canonical_noise() -> dict[str, dict[str, dict[str, dict[str, str]]]]:
    """dataset → noise protocol (``NoiseSpec.key``: caption, image, caption-neighbour, ...) → ratio
    (``f"{r:g}"``) → ``{"sha256", "source"}`` (and ``texts_sha256`` for noise that rewrites captions)."""
    text = resources.files("ncbench.reference").joinpath("noise-index.json").read_text(encoding="utf-8")
    return json.loads(text)["datasets"]


def canonical_entry(dataset: str, noise: NoiseSpec | str, ratio: float) -> dict[str, str] | None:
    """The registered index of one (dataset, noise protocol, ratio), or None."""
    return canonical_noise().get(dataset, {}).get(str(noise), {}).get(f"{float(ratio):g}")


# -- the code that made a result, and where its source is ------------------------------------------
def code_problem(data: dict[str, Any]) -> str | None:
    """Why the code that made ``data`` is not known to be committed code, or None when it is: no
    ``code`` record (unknown code), no commit, uncommitted changes (``env.git.dirty`` or
    ``code.ncbench.dirty``) or method files git does not track (``env.git.untracked_methods``)."""
    code = data.get("code") if isinstance(data.get("code"), dict) else {}
    ours = code.get("ncbench") if isinstance(code.get("ncbench"), dict) else {}
    env = data.get("env") if isinstance(data.get("env"), dict) else {}
    git = env.get("git") if isinstance(env.get("git"), dict) else {}
    if code_hash_of(data) is None:
        return "unknown code: the result records no code hash (no `code` block: written before ncbench recorded it)"
    if committed_now(data):
        return None  # made before its code was committed, but that very code is committed now
    untracked = git.get("untracked_methods") or {}
    if untracked:
        return f"dirty code: made with method file(s) git does not track: {', '.join(sorted(map(str, untracked)))}"
    if ours.get("dirty") is True or git.get("dirty") is True:
        commit = str(ours.get("commit") or git.get("commit") or "?")[:12]
        return f"dirty code: made by a checkout with uncommitted changes (commit {commit}, env.git.dirty)"
    if not ours.get("commit"):
        return "unknown code: no commit recorded (code.ncbench.commit is null: not run from a git checkout)"
    if ours.get("dirty") is None:
        return "unknown code: whether the checkout had uncommitted changes was not recorded (code.ncbench.dirty)"
    return None


def committed_now(data: dict[str, Any]) -> str | None:
    """The commit of the checkout this process runs from when it holds the very code that made
    ``data``: the checkout is clean (no changed or untracked file) and the result's code identity is
    the one its method has here. A result trained before its method file was committed (a method
    author's usual order) is then as reproducible from that commit as one trained after it."""
    code = data.get("code") if isinstance(data.get("code"), dict) else {}
    method = data.get("identity", {}).get("method")
    if not code.get("hash") or method not in METHODS:
        return None
    git = process_revision()
    if git.get("dirty") is not False or not git.get("commit") or current_code_hash(method) != code["hash"]:
        return None
    return git["commit"]


_COMMIT = re.compile(r"[0-9a-f]{7,40}")
_SCP_URL = re.compile(r"[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^\s]+")
_CREDENTIALS = re.compile(r"^([a-z][a-z0-9+.-]*://)[^/@]*@", re.IGNORECASE)


def repository_url(url: str | None) -> str | None:
    """``url`` as a repository address others can reach, with any credentials removed
    (``https://user:token@host/x`` → ``https://host/x``); None for a local path, ``file://`` or
    anything that is not a plain printable address."""
    if not url or len(url) > 300 or not url.isprintable() or any(ch.isspace() for ch in url):
        return None
    if "://" in url:
        url = _CREDENTIALS.sub(r"\1", url)
        return None if url.lower().startswith("file://") else url
    return url if _SCP_URL.fullmatch(url) else None


@dataclass(frozen=True)
class Source:
    """Where a method's code can be fetched: a repository URL and commit, or nowhere (``local``)."""

    url: str | None = None
    commit: str | None = None

    def __str__(self) -> str:
        return f"{self.url}@{self.commit}" if self.url else "local"

    @classmethod
    def parse(cls, text: str, what: str = "--source") -> Source:
        """``local`` or ``URL@COMMIT`` (a repository URL, a commit of 7-40 lower-case hex digits)."""
        if text == "local":
            return LOCAL
        url, _, commit = str(text).rpartition("@")
        clean = repository_url(url)
        if clean is None or clean != url or not _COMMIT.fullmatch(commit):
            raise ConfigError(f"{what} {text!r}: give URL@COMMIT (a repository URL without credentials and a commit "
                              "of 7-40 lower-case hex digits) or 'local'")
        return cls(url, commit)


LOCAL = Source()


def method_file(method: str) -> Path | None:
    """The file of the installed method ``method`` (looked up in the registry: nothing named by a
    result is imported), or None."""
    try:
        module = sys.modules.get(METHODS.get(method).__module__)
    except NcbenchError:
        return None
    path = getattr(module, "__file__", None)
    return Path(path).resolve() if path else None


def _file_at(top: Path, commit: str, relpath: str) -> bytes | None:
    return git_bytes(top, "show", f"{commit}:{relpath}")


def detect_source(data: dict[str, Any]) -> Source:
    """The source of the code behind ``data``, from the submitter's checkout: the ``origin`` URL of
    the git repository holding the method's file, and the commit (the one the result records, else
    HEAD) at which that file is the code that ran (its sha256 is ``code.method.sha256``). ``local``
    when any of this is missing or does not match: no commit is named that does not hold the code."""
    code = data.get("code") if isinstance(data.get("code"), dict) else {}
    method = code.get("method") if isinstance(code.get("method"), dict) else {}
    want = method.get("sha256")
    path = method_file(data["identity"]["method"])
    top = git(path.parent, "rev-parse", "--show-toplevel") if path else None
    if not want or top is None:
        return LOCAL
    url = repository_url(git(Path(top), "remote", "get-url", "origin"))
    relpath = path.relative_to(Path(top).resolve()).as_posix()
    recorded = (code.get("ncbench") or {}).get("commit")
    for commit in filter(None, (recorded, git(Path(top), "rev-parse", "HEAD"))):
        raw = _file_at(Path(top), commit, relpath)
        if url and raw is not None and hashlib.sha256(raw).hexdigest() == want:
            return Source(url, commit)
    return LOCAL


@dataclass(frozen=True)
class Provenance:
    """What is stored beside an accepted result (``seed-<s>.submission``)."""

    result_sha256: str  # of the accepted bytes: ties this record to one file
    source: str  # ``URL@COMMIT`` or ``local``
    code_hash: str | None
    code_problem: str | None = None  # None: committed code; else why not (accepted with --allow-dirty)
    format: int = PROVENANCE_FORMAT

    def text(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True) + "\n"

    @classmethod
    def parse(cls, raw: bytes, path: Path) -> Provenance:
        """Read and check a stored record; ResultError names the file and what is wrong."""
        data = parse_json(raw, path)
        fields = {"result_sha256", "source", "code_hash", "code_problem", "format"}
        if not isinstance(data, dict) or set(data) != fields or data["format"] != PROVENANCE_FORMAT:
            raise ResultError(f"{path}: not a submission record of format {PROVENANCE_FORMAT} "
                              f"(fields {sorted(fields)})")

        def hex_text(value: Any, n: str) -> bool:
            return isinstance(value, str) and re.fullmatch(f"[0-9a-f]{{{n}}}", value) is not None

        ok = (hex_text(data["result_sha256"], "64") and isinstance(data["source"], str)
              and (data["code_hash"] is None or hex_text(data["code_hash"], "8,64"))
              and (data["code_problem"] is None or isinstance(data["code_problem"], str)
                   and len(data["code_problem"]) < 1000))
        if not ok:
            raise ResultError(f"{path}: a field of the submission record has the wrong form")
        try:
            Source.parse(data["source"], what="source")
        except ConfigError as exc:
            raise ResultError(f"{path}: {exc}") from None
        return cls(**data)


def provenance_path(result: Path) -> Path:
    return Path(result).with_suffix(PROVENANCE_SUFFIX)


def read_provenance(result: Path) -> Provenance | None:
    """The submission record beside the result file ``result``: None when there is none (a local
    result); ResultError when it is unreadable, malformed or records another file's bytes."""
    path = provenance_path(result)
    if not (path.exists() or path.is_symlink()):
        return None
    record = Provenance.parse(read_bounded(path, follow_symlinks=False, max_bytes=PROVENANCE_MAX_BYTES), path)
    if hashlib.sha256(read_bounded(Path(result), follow_symlinks=False)).hexdigest() != record.result_sha256:
        raise ResultError(f"{path}: records the submission of another version of {Path(result).name} (sha256 differs); "
                          "the row is not marked submitted")
    return record


# -- verdicts --------------------------------------------------------------------------------
@dataclass
class Verdict:
    path: Path
    data: dict[str, Any] | None = None
    reasons: list[str] = field(default_factory=list)
    dest: Path | None = None
    note: str = ""  # accepted: "accepted", ``ALREADY`` or ``REPLACING`` (set by ``review``)
    raw: bytes = b""  # the file as it was reviewed: what ``accept`` copies (never read a second time)
    provenance: Provenance | None = None  # what is stored beside the accepted copy

    @property
    def accepted(self) -> bool:
        return not self.reasons

    def lines(self) -> list[str]:
        """What ``submit`` (and ``submit --check``, the same) prints: one line per file accepted, one
        line per reason a file is refused, each naming the file."""
        if not self.accepted:
            return [f"refused: {self.path}: {reason}" for reason in self.reasons]
        p, line = self.provenance, f"{self.note or 'accepted'}: {self.path} -> {self.dest}"
        if p is None:
            return [line]
        dirty = f"; {p.code_problem.split(':', 1)[0]} allowed by --allow-dirty" if p.code_problem else ""
        return [f"{line} (code {p.code_hash or 'unknown'}, source {p.source}{dirty})"]


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


def _seeds_text(seeds: set[int], what: str) -> str:
    return f"seed{'s' if len(seeds) != 1 else ''} {sorted(seeds)} {what}"


def seed_set_problem(label: str, valid: set[int], refused: set[int]) -> str | None:
    """Why the seeds of one configuration are not the protocol's full set, or None. ``valid``: seeds
    with an acceptable result (submitted now or accepted before); ``refused``: seeds submitted but
    refused. Each seed is named once: present, refused or not submitted. When every seed was submitted
    and all are refused, each already says why: nothing is added."""
    refused, absent = refused - valid, set(PROTOCOL_SEEDS) - valid - refused
    if not absent and (not refused or not valid):  # complete, or every seed refused for its own reason
        return None
    parts = [_seeds_text(valid, "present") if valid else "no seed present"]
    parts += [_seeds_text(refused, "refused for the reasons given with them")] if refused else []
    parts += [_seeds_text(absent, "not submitted")] if absent else []
    return f"incomplete seed set for {label}: {'; '.join(parts)}; the protocol needs {list(PROTOCOL_SEEDS)}"


ALREADY = "already accepted"
REPLACING = "accepted, replacing a different result"


def _check_destination(v: Verdict, replace: bool) -> None:
    """Compare an acceptable file with what its destination holds and set its note: the same bytes
    are ``already accepted``; a different result is refused unless ``replace``."""
    v.note = "accepted"
    if not (v.dest.exists() or v.dest.is_symlink()):
        return
    try:
        same = read_bounded(v.dest, follow_symlinks=False) == v.raw
    except ResultError:
        same = False
    if same:
        v.note = ALREADY
    elif replace:
        v.note = REPLACING
    else:
        v.reasons.append(f"{v.dest} already holds a different result for this run (use --replace)")


def review(paths: list[Path], dest: Path, *, replace: bool = False, allow_dirty: bool = False,
           source: Source | None = None) -> list[Verdict]:
    """Decide every verdict (``submit --check`` prints these; ``submit`` then ``accept``s them);
    nothing is written. ``source``: the method's source for every file (default: ``detect_source``)."""
    missing = [p for p in map(Path, paths) if not p.exists()]
    verdicts = [Verdict(p, reasons=["file not found"]) for p in missing]
    verdicts += [load_submission_file(p) for p in result_files([p for p in paths if Path(p).exists()])]
    for v in verdicts:
        if v.data is None:
            continue
        problem = code_problem(v.data)
        if problem and not allow_dirty:
            v.reasons.append(f"{problem}; {ALLOW_DIRTY_HINT}")
        v.dest = identity_path(dest, v.data["identity"])
        if v.accepted:
            _check_destination(v, replace)
        v.provenance = Provenance(hashlib.sha256(v.raw).hexdigest(), str(source or detect_source(v.data)),
                                  code_hash_of(v.data), problem)
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
        valid = {v.data["identity"]["seed"] for v in members if v.accepted} | _accepted_seeds(dest, group)
        label = f"{group[1]} at {group[5]}-level noise {group[2]:g}, {group[3]}/{group[4]}"
        problem = seed_set_problem(label, valid, {v.data["identity"]["seed"] for v in members})
        if problem:
            for v in members:
                v.reasons.append(problem)
    return verdicts


def accept(verdicts: list[Verdict]) -> None:
    """Write what ``review`` accepted: each file (atomically, the bytes reviewed) and its provenance
    beside it. A destination that appeared since the review is checked again the same way (another
    submitter's result written in between is refused, not overwritten)."""
    for v in verdicts:
        if not v.accepted or v.dest is None:
            continue
        if v.note == "accepted" and (v.dest.exists() or v.dest.is_symlink()):
            _check_destination(v, replace=False)
            if not v.accepted:
                continue
        if v.note != ALREADY:
            write_atomic(v.dest, lambda f, raw=v.raw: f.write(raw))
        if v.note != ALREADY or not provenance_path(v.dest).exists():
            write_text_atomic(provenance_path(v.dest), v.provenance.text())
