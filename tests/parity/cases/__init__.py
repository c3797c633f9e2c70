"""Parity cases, one file per method or component: ``cases/<name>.py`` holds every case of ``<name>``
(a registered method such as ``ncr.py``, a backbone such as ``vse_inf.py``, or ``evaluation.py``).

A case is a pair of functions in such a file: ``make_<case>()`` runs the official function
unchanged on fixed inputs of ours and returns inputs and official outputs (small arrays), and
``check_<case>(d)`` runs ncbench on the same inputs and asserts agreement. Both layers use them:
``test_live.py`` runs ``make`` on a checkout and checks at once; ``make_golden.py`` stores what
``make`` returns under ``golden/<case>.npz`` and ``test_golden.py`` checks those on every CI run.

Cases are discovered (``discover``): every module of this package whose name does not start with
``_`` is imported and its ``make_*``/``check_*`` pairs collected, so adding a method's parity is
adding its file, with no list to edit. A ``make_`` without its ``check_`` (or the reverse), and a
case name defined in two files, are errors. Helpers shared by several files live in
``tests/parity/common.py``.

Every documented deviation is asserted *as* a deviation: ncbench's default differs from the
official value where the inputs exercise it, and the switch that restores the official behaviour
(``official_broadcast``, ``official_scatter``) makes the difference vanish.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from types import ModuleType
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Case:
    """One parity case: its name, the file it lives in, and its two functions."""

    name: str
    module: str  # the file's stem: the method or component the case pins down
    make: Callable[[], dict[str, np.ndarray]]
    check: Callable[[dict[str, np.ndarray]], None]


class CaseError(Exception):
    """A case file that does not follow the layout (an unpaired function, a name used twice)."""


def case_modules() -> list[ModuleType]:
    """Every case file of this package, in name order."""
    return [importlib.import_module(f"{__name__}.{info.name}")
            for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name)
            if not info.name.startswith("_")]


def cases_of(module: ModuleType) -> dict[str, Case]:
    """The ``make_<case>``/``check_<case>`` pairs defined in ``module`` (imported ones are not its own)."""
    own = {k: v for k, v in vars(module).items() if callable(v) and getattr(v, "__module__", None) == module.__name__}
    makes = {k.removeprefix("make_") for k in own if k.startswith("make_")}
    checks = {k.removeprefix("check_") for k in own if k.startswith("check_")}
    stem = module.__name__.rsplit(".", 1)[-1]
    unpaired = sorted(makes ^ checks)
    if unpaired:
        raise CaseError(f"tests/parity/cases/{stem}.py: " + ", ".join(
            f"{'make' if n in makes else 'check'}_{n} has no {'check' if n in makes else 'make'}_{n}" for n in unpaired))
    return {n: Case(n, stem, own[f"make_{n}"], own[f"check_{n}"]) for n in sorted(makes)}


def discover(modules: list[ModuleType] | None = None) -> dict[str, Case]:
    """Every case of every case file, by name."""
    found: dict[str, Case] = {}
    for module in case_modules() if modules is None else modules:
        for name, case in cases_of(module).items():
            if name in found:
                raise CaseError(f"parity case {name!r} is defined in both cases/{found[name].module}.py "
                                f"and cases/{case.module}.py")
            found[name] = case
    return found
