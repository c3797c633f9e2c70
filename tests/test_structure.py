"""The package's shape: no module imports another in a circle, nothing below the command line
imports it, and splitting ``cli.py`` into a package changed no ``--help`` text."""

from __future__ import annotations

import ast
import contextlib
import io
from pathlib import Path

import pytest

import ncbench
from ncbench.cli import build_parser

PACKAGE = Path(ncbench.__file__).parent
HELP = Path(__file__).parent / "golden" / "help"


def import_graph() -> dict[str, set[str]]:
    """Module → the ncbench modules it imports, from every import statement in its source
    (module level and inside functions alike); ``from . import x`` counts as importing ``x``."""
    modules = {}
    for f in PACKAGE.rglob("*.py"):
        parts = list(f.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = f
    graph = {m: set() for m in modules}
    for m, f in modules.items():
        here = m.split(".") if f.name == "__init__.py" else m.split(".")[:-1]
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = ".".join(here[: len(here) - node.level + 1] + [node.module or ""]).strip(".") if node.level \
                    else node.module
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            graph[m] |= {t for t in targets if t in modules and t != m}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_in_a_circle():
    graph = import_graph()
    assert "ncbench.runner" in graph["ncbench.cli.sweep"]  # an import inside a function counts
    assert "ncbench.cli.options" in graph["ncbench.cli.sweep"]  # so does a relative one
    assert cycles(graph) == []


def test_nothing_below_the_command_line_imports_it():
    graph = import_graph()
    users = sorted(m for m, deps in graph.items() if not m.startswith("ncbench.cli") and m != "ncbench.__main__"
                   and any(d.startswith("ncbench.cli") for d in deps))
    assert users == []


COMMANDS = sorted(p.stem for p in HELP.glob("*.txt"))


@pytest.mark.parametrize("name", COMMANDS)
def test_help_texts_are_unchanged(name, monkeypatch):
    """Recorded from the single-file ``cli.py`` before it became a package (``ncbench.txt``, the
    top-level help, re-recorded when ``compare`` and ``report`` joined the list)."""
    monkeypatch.setenv("COLUMNS", "100")
    argv = [] if name == "ncbench" else name.replace("data_check", "data check").replace("noise_", "noise ").split()
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), pytest.raises(SystemExit):
        build_parser().parse_args([*argv, "--help"])
    assert buf.getvalue() == (HELP / f"{name}.txt").read_text()


def test_every_subpackage_is_shipped_in_the_wheel():
    """``pyproject.toml`` lists the packages by name: a new folder missing there works in a source
    checkout and is absent from ``pip install .`` (and from tox, which tests the wheel)."""
    import re

    root = Path(__file__).resolve().parents[1]  # the source tree (tox imports the installed wheel)
    text = (root / "pyproject.toml").read_text()
    listed = set(re.findall(r'"(ncbench[\w.]*)"', text.split("packages = [", 1)[1].split("]", 1)[0]))
    found = {".".join(p.parent.relative_to(root).parts) for p in (root / "ncbench").rglob("__init__.py")}
    assert found - listed == set()
