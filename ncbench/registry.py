"""One registry mechanism for methods, backbones and datasets.

Built-ins register themselves with a decorator when their module is imported::

    @METHODS.register("vanilla")
    class Vanilla(Method): ...

(the built-in dataset cards are a plain tuple, ``data.cards.BUILTIN_CARDS``, registered here).

Third-party packages add plugins through the entry-point groups ``ncbench.methods``,
``ncbench.backbones`` and ``ncbench.datasets``: each entry point names a module (or an object in
it) whose import registers the plugin with the same decorator. Plugins load only from these two
places, the package's own modules and installed entry points; nothing is imported from arbitrary
paths. Discovery is lazy (on the first lookup), a duplicate name is an error, an unknown name gets
"did you mean" suggestions, and a plugin that fails to import is reported (``ncbench list`` shows
it, and asking for it raises with the original error) rather than silently missing. A watcher
(``Registry.watch``) sees every registration as it happens: ``ncbench.code_identity`` reads each
method's source then, i.e. as it is imported.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import importlib.util
import pkgutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Generic, Iterator, TypeVar

from .errors import PluginError, UnknownNameError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    obj: T
    description: str
    source: str  # "builtin" or the distribution/entry point that provided it


def _first_line(doc: str | None) -> str:
    for line in (doc or "").strip().splitlines():
        if line.strip():
            return line.strip()
    return ""


class Registry(Generic[T]):
    """A name → object table for one kind of plugin."""

    def __init__(self, kind: str, group: str, builtin_loader: Callable[[], None],
                 unknown_hint: Callable[[str], str] | None = None):
        self.kind = kind
        self.group = group
        self._builtin_loader = builtin_loader
        self._unknown_hint = unknown_hint  # name → why it may be missing ("" when nothing to say)
        self._entries: dict[str, Entry[T]] = {}
        self._errors: dict[str, str] = {}  # plugin name → import error message
        self._discovered = False
        self._source = "builtin"
        self._watchers: list[Callable[[str, T], None]] = []

    # -- registration ------------------------------------------------------------------------
    def register(self, name: str, *, description: str | None = None) -> Callable[[T], T]:
        """Decorator: register ``obj`` under ``name``. A second object with that name is an error."""

        def deco(obj: T) -> T:
            if name in self._entries and self._entries[name].obj is not obj:
                other = self._entries[name]
                raise PluginError(
                    f"{self.kind} {name!r} is registered twice: by {other.source} "
                    f"({_qualname(other.obj)}) and by {self._source} ({_qualname(obj)})"
                )
            own = getattr(obj, "description", None)
            desc = description or (own if isinstance(own, str) else _first_line(getattr(obj, "__doc__", None)))
            self._entries[name] = Entry(name, obj, desc, self._source)
            for watcher in self._watchers:
                watcher(name, obj)
            return obj

        return deco

    def watch(self, watcher: Callable[[str, T], None]) -> None:
        """Call ``watcher(name, obj)`` on every registration from now on, and now on each entry
        already registered (``ncbench.code_identity`` reads a method's source as it registers)."""
        self._watchers.append(watcher)
        for entry in list(self._entries.values()):
            watcher(entry.name, entry.obj)

    def unregister(self, name: str) -> None:
        """Remove an entry (used by tests and by plugins that replace a built-in on purpose)."""
        self._entries.pop(name, None)

    # -- discovery -----------------------------------------------------------------------------
    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        self._builtin_loader()
        for ep in importlib.metadata.entry_points(group=self.group):
            self._source = f"entry point {ep.name!r} ({ep.value})"
            try:
                ep.load()
            except PluginError:
                raise
            except Exception as exc:  # noqa: BLE001 - reported, not swallowed
                self._errors[ep.name] = f"{type(exc).__name__}: {exc} (entry point {ep.value})"
            finally:
                self._source = "builtin"

    @property
    def load_errors(self) -> dict[str, str]:
        """Plugins that were found but failed to import, with their error."""
        self._discover()
        return dict(self._errors)

    # -- lookup ----------------------------------------------------------------------------------
    def get(self, name: str) -> T:
        self._discover()
        if name in self._entries:
            return self._entries[name].obj
        if name in self._errors:
            raise PluginError(f"{self.kind} plugin {name!r} failed to import: {self._errors[name]}")
        raise UnknownNameError(self.unknown_message(name))

    def unknown_message(self, name: str) -> str:
        known = self.names()
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        why = self._unknown_hint(name) if self._unknown_hint else ""
        return f"unknown {self.kind} {name!r}{hint} (known: {', '.join(known) or 'none'}){why}"

    def entry(self, name: str) -> Entry[T]:
        self.get(name)
        return self._entries[name]

    def names(self) -> list[str]:
        self._discover()
        return sorted(self._entries)

    def entries(self) -> Iterator[Entry[T]]:
        for n in self.names():
            yield self._entries[n]

    def __contains__(self, name: str) -> bool:
        self._discover()
        return name in self._entries


def _qualname(obj: object) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


# -- built-in discovery ----------------------------------------------------------------------
def _import_all(package: str) -> None:
    pkg = importlib.import_module(package)
    for info in pkgutil.iter_modules(pkg.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")


def _builtin_methods_package() -> str:
    """Import ``ncbench.methods``: installed from the top-level ``methods/`` folder by
    ``pip install``; in a source checkout run without installing, the folder is mapped in here."""
    name = "ncbench.methods"
    if name in sys.modules:
        return name
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise
        folder = Path(__file__).resolve().parent.parent / "methods"
        spec = importlib.util.spec_from_file_location(
            name, folder / "__init__.py", submodule_search_locations=[str(folder)]
        )
        if spec is None or not folder.is_dir():
            raise PluginError(f"built-in methods not found (looked for {folder})") from exc
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    return name


def _load_builtin_methods() -> None:
    _import_all(_builtin_methods_package())


def _unseen_method_file(name: str, cwd: Path | None = None) -> str:
    """Why a method written as ``methods/<name>.py`` in the current folder is unknown: ncbench
    imports its methods from another folder (``pip install .`` copies them), or the file registers
    another name."""
    here = (cwd or Path.cwd()) / "methods" / f"{name}.py"
    if not here.is_file():
        return ""
    folders = [Path(p).resolve() for p in getattr(sys.modules.get("ncbench.methods"), "__path__", [])]
    if here.parent.resolve() in folders:
        return (f". {here} is in the methods folder ncbench imports, but registers no method {name!r}: check its "
                "@METHODS.register(...) name, and `ncbench list methods` for an import error")
    where = ", ".join(map(str, folders)) or "its installed package"
    return (f". {here} exists but is not seen: this ncbench imports its methods from {where} (a plain "
            "`pip install .` copies the methods folder at install time). Install this checkout editable "
            "(`pip install -e .`, as the README's set-up does) and the methods folder is read where it is")


def _register_builtin_cards() -> None:
    """The built-in dataset cards are plain data in ``data.cards`` (which imports nothing of this
    module, so the two never import each other); each is registered under its name."""
    from .data.cards import BUILTIN_CARDS

    for card in BUILTIN_CARDS:
        DATASETS.register(card.name)(card)


METHODS: Registry = Registry("method", "ncbench.methods", _load_builtin_methods, _unseen_method_file)
BACKBONES: Registry = Registry("backbone", "ncbench.backbones", lambda: _import_all("ncbench.backbones"))
DATASETS: Registry = Registry("dataset", "ncbench.datasets", _register_builtin_cards)

REGISTRIES = {"methods": METHODS, "backbones": BACKBONES, "datasets": DATASETS}
