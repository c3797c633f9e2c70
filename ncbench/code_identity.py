"""The code a result was made by: its record, its hash, and how both are captured.

Every result written by a run carries a ``code`` block (``code_record``)::

    "code": {"hash": "<16 hex>",
             "method": {"name": "ncr", "module": "ncbench.methods.ncr", "sha256": "<64 hex>",
                        "bases": {"ncbench.methods.vanilla": "<64 hex>"}},        # only when there are any
             "ncbench": {"version": "0.1.0", "commit": "<40 hex>" | null, "dirty": true | false | null,
                         "training_sha256": "<64 hex>"}}

``hash`` is THE code identity (``code_hash_of``): the first 16 hex of the sha256 of the method
module's sha256, its bases' sha256 (sorted by module) and ncbench's ``training_sha256``, joined.
Two results with the same config were made by the same code exactly when their hashes are equal;
a result without the block (written before it existed) is of *unknown code* (``None``), which
equals only unknown code. ``version``, ``commit`` and ``dirty`` are provenance, not identity (a
comment changed in a report module changes the commit, not a trained number).

What the hash covers:

- the method: the source of the module that defines its class, and of the modules of the classes
  it inherits from that are neither ncbench's training code (below) nor Python's standard library
  (``clean_oracle`` inherits ``vanilla``'s training: ``bases`` holds ``ncbench.methods.vanilla``);
- ncbench's training code (``TRAINING_CODE``): the modules whose change can change a trained
  number. Report, command-line and submission code are not part of it, so a leaderboard change
  makes no result stale.

How it is captured, and why this way. The hash must describe the code the interpreter imported,
never the file as it is on disk when a run starts: editing a method file in the middle of a sweep
must not give two seeds trained by one imported module two hashes (it did when the file was read
at each run's start).

- A method's module is read when its class is registered (``Registry.watch``): the
  ``@METHODS.register`` decorator runs while the module executes, i.e. at its import, so the bytes
  read are the ones just compiled. It is never read again: an edit after the import changes
  nothing until the module is imported again (a new class registered, a new process). Methods
  from entry points, from the ``methods/`` folder and classes registered by hand all go through
  the same registration; a class registered before this module was imported is read when it is.
- ncbench's training code is read once per process, when this module is imported: it is imported
  by ``ncbench.results``, which the runner imports right after the training modules, so the
  snapshot is taken moments after they were compiled. All ``.py`` files of ``TRAINING_CODE`` are
  hashed, not only those the process happened to import, so that two processes of one checkout
  agree whatever backbones and methods each used. ``inspect.getsource`` or a loader's
  ``get_source`` was not used: both read the file from disk when called (through ``linecache``),
  so they give the same snapshot at best and the bug back at worst; the modules' code objects are
  not kept after import and depend on the Python version.
- ``commit`` and ``dirty`` come from ``git_revision``, asked once per process (``process_revision``,
  which is also each result's ``env.git``).

Known limits: a training module first imported after the snapshot (backbones and kernels are
imported on the registries' first lookup, while the sweep is planned, seconds later) is assumed
unchanged in between; helper functions a method imports from other modules of its own package are
not covered (its base classes are); third-party backbones are not covered.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import sys
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import __version__
from .git import git
from .registry import METHODS

PACKAGE = Path(__file__).resolve().parent
TRAINING_CODE = ("engine", "kernels", "backbones", "data", "evaluate.py", "config.py", "checkpoint.py",
                 "runner.py", "precision.py")
"""ncbench's training code, relative to the package: folders (all their ``.py`` files) and modules
whose change can change a trained number. The one list; ``training_sha256`` hashes exactly these."""

TRAINING_MODULES = tuple(f"ncbench.{part.removesuffix('.py')}" for part in TRAINING_CODE)  # as module names
HASH_HEX = 16  # the code identity: the first 16 hex digits of a sha256


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- ncbench's training code ---------------------------------------------------------------------
def training_files(package: Path = PACKAGE) -> list[Path]:
    """The ``.py`` files of ``TRAINING_CODE`` under ``package``, sorted (those that exist)."""
    files = []
    for part in TRAINING_CODE:
        path = package / part
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path] if path.is_file() else []
    return sorted(files)


def tree_sha256(files: list[Path], root: Path) -> str:
    """sha256 over each file's path relative to ``root`` and the sha256 of its bytes (one line each)."""
    lines = "".join(f"{f.relative_to(root).as_posix()}\0{sha256_hex(f.read_bytes())}\n" for f in files)
    return sha256_hex(lines.encode())


TRAINING_SHA256 = tree_sha256(training_files(), PACKAGE)
"""ncbench's training code as this process imported it (read when this module was imported)."""


# -- the method's module, read when its class is registered --------------------------------------
@dataclass(frozen=True)
class MethodSource:
    module: str  # the module that defines the class
    sha256: str | None  # of that module's source as imported; None when it has no source file
    bases: tuple[tuple[str, str], ...]  # (module, sha256) of the base classes' modules it also covers


def module_sha256(name: str) -> str | None:
    """sha256 of the file the imported module ``name`` was loaded from (None: no such file)."""
    module = sys.modules.get(name)
    spec = getattr(module, "__spec__", None)
    origin = spec.origin if spec is not None and spec.has_location else getattr(module, "__file__", None)
    try:
        return sha256_hex(Path(origin).read_bytes()) if origin else None
    except OSError:
        return None


def _own_code(module: str) -> bool:
    """Whether a base class's module is the method's own code: not ncbench's training code (hashed
    on its own), not the standard library, not built in."""
    top = module.split(".")[0]
    training = any(module == t or module.startswith(t + ".") for t in TRAINING_MODULES)
    return not training and top not in sys.stdlib_module_names and top != "builtins"


def read_source(cls: type) -> MethodSource:
    """What a method class's code is now: its module's sha256 and its own base classes' modules'."""
    module = cls.__module__
    bases = sorted({k.__module__ for k in inspect.getmro(cls)[1:]} - {module})
    hashed = tuple((m, module_sha256(m)) for m in bases if _own_code(m))
    return MethodSource(module, module_sha256(module), tuple((m, s) for m, s in hashed if s is not None))


_PINNED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # class → MethodSource at registration


def pin(name: str, obj: Any) -> None:
    """Read a registered method's source now (``METHODS.watch`` calls this on registration; a class
    registered again keeps what was read the first time)."""
    if isinstance(obj, type) and obj not in _PINNED:
        _PINNED[obj] = read_source(obj)


METHODS.watch(pin)


def method_source(cls: type) -> MethodSource:
    """The source of ``cls`` as pinned at its registration (read now, and kept, if it never was)."""
    if cls not in _PINNED:
        _PINNED[cls] = read_source(cls)
    return _PINNED[cls]


# -- the record ------------------------------------------------------------------------------------
def combined_hash(method_sha256: str | None, bases: dict[str, str], training_sha256: str) -> str | None:
    """The code identity from its parts; None when the method's source is unknown."""
    if method_sha256 is None:
        return None
    joined = method_sha256 + "".join(bases[m] for m in sorted(bases)) + training_sha256
    return sha256_hex(joined.encode())[:HASH_HEX]


@functools.cache
def _revision() -> str:
    return json.dumps(git_revision())


def process_revision() -> dict[str, Any]:
    """``git_revision()`` of the checkout this process imported ncbench from, asked once per process
    (a fresh copy each call): an untracked method file is hashed as it was then, not at each run."""
    return json.loads(_revision())


def ncbench_record() -> dict[str, Any]:
    """ncbench's part of the record: version, commit and dirty flag (``process_revision``), training sha256."""
    git = process_revision()
    return {"version": __version__, "commit": git.get("commit"), "dirty": git.get("dirty"),
            "training_sha256": TRAINING_SHA256}


def code_record(method_name: str) -> dict[str, Any]:
    """The ``code`` block of a result of the registered method ``method_name`` made by this process."""
    source = method_source(METHODS.get(method_name))
    bases = dict(source.bases)
    method = {"name": method_name, "module": source.module, "sha256": source.sha256, **({"bases": bases} if bases else {})}
    return {"hash": combined_hash(source.sha256, bases, TRAINING_SHA256), "method": method, "ncbench": ncbench_record()}


def current_code_hash(method_name: str) -> str | None:
    """The code identity a result of ``method_name`` made now would have."""
    return code_record(method_name)["hash"]


def code_hash_of(record: dict[str, Any]) -> str | None:
    """A result's code identity: the hash of the code that made it (``code.hash``), or the last one
    a code change was accepted for (``code_accepted``, see ``accept``); None for unknown code (a
    result written before results recorded their code)."""
    accepted = record.get("code_accepted")
    if isinstance(accepted, list) and accepted and isinstance(accepted[-1], dict):
        return accepted[-1].get("to")
    code = record.get("code")
    return code.get("hash") if isinstance(code, dict) else None


def accept(record: dict[str, Any], at: str) -> dict[str, Any]:
    """``record`` kept as a result of the code its method has now: its ``code`` block (the code that
    trained it) stays as it is, and ``{"from": its code identity, "to": this code's, "at": at}`` is
    appended to ``code_accepted``, which makes ``to`` its code identity from then on."""
    entry = {"from": code_hash_of(record), "to": current_code_hash(record["identity"]["method"]), "at": at}
    return {**record, "code_accepted": [*(record.get("code_accepted") or []), entry]}


def short(code_hash: str | None) -> str:
    """A code hash as messages show it: its first 8 hex digits, or ``unknown``."""
    return code_hash[:8] if code_hash else "unknown"


def code_problems(record: dict[str, Any]) -> list[str]:
    """What a schema cannot check in a result's ``code`` and ``code_accepted`` (schema-valid) blocks:
    the hash is the one its parts give, the block names the result's method, and each accepted
    change starts from the identity the one before it ended at. Empty when valid or absent."""
    code, out = record.get("code"), []
    if isinstance(code, dict):
        method = code["method"]
        expected = combined_hash(method["sha256"], method.get("bases") or {}, code["ncbench"]["training_sha256"])
        if code["hash"] != expected:
            out.append(f"code.hash {code['hash']!r} is not the hash of its parts ({expected!r})")
        if method["name"] != record["identity"]["method"]:
            out.append(f"code.method.name {method['name']!r} is not the result's method "
                       f"{record['identity']['method']!r}")
    previous = code.get("hash") if isinstance(code, dict) else None
    for i, entry in enumerate(record.get("code_accepted") or []):
        if entry["from"] != previous:
            out.append(f"code_accepted[{i}].from {entry['from']!r} is not the code identity before it ({previous!r})")
        previous = entry["to"]
    return out


# -- provenance ------------------------------------------------------------------------------------
def git_revision(src: Path | None = None) -> dict[str, Any]:
    """Commit and dirty flag of the source tree ncbench runs from (``src``: its root), when that
    tree is a git checkout (an installed copy inside some other repository reports none). Dirty means
    a changed tracked file *or* a method file git does not track (``methods/*.py``: a result made by
    an uncommitted method is not reproducible from the commit); those are listed with their sha256."""
    src = PACKAGE.parent if src is None else Path(src).resolve()
    top = git(src, "rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != src:
        return {"commit": None, "dirty": None}
    dirty = git(src, "status", "--porcelain", "--untracked-files=no")
    untracked = git(src, "ls-files", "--others", "--exclude-standard", "--", "methods/*.py")
    out: dict[str, Any] = {"commit": git(src, "rev-parse", "HEAD"), "dirty": None if dirty is None else bool(dirty)}
    if untracked:
        out["dirty"] = True
        out["untracked_methods"] = {name: sha256_hex((src / name).read_bytes()) for name in sorted(untracked.splitlines())}
    return out
