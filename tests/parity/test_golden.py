"""Golden-vector parity, run in CI without the official code: the outputs the official functions gave
on the cases' inputs (written by ``make_golden.py``) against ncbench's on the same inputs. The cases
are discovered from ``cases/<name>.py`` (one file per method or component, ``cases/__init__.py``)."""

from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from .cases import CaseError, discover

GOLDEN = Path(__file__).parent / "golden"
CASES = discover()


@pytest.mark.parametrize("name", sorted(CASES))
def test_ncbench_reproduces_the_official_outputs(name):
    path = GOLDEN / f"{name}.npz"
    assert path.is_file(), f"{path} missing: run `python -m tests.parity.make_golden {name}` against the checkouts"
    with np.load(path, allow_pickle=False) as data:
        CASES[name].check({k: data[k] for k in data.files})


def test_every_golden_file_belongs_to_a_case():
    assert {p.stem for p in GOLDEN.glob("*.npz")} == set(CASES)


def _case_file(stem: str, source: str) -> ModuleType:
    module = ModuleType(f"tests.parity.cases.{stem}")
    exec(compile(source, f"{stem}.py", "exec"), module.__dict__)
    return module


def test_a_case_file_is_discovered_and_its_pairs_checked():
    """A new file's ``make_``/``check_`` pairs become cases with no list to edit; an unpaired
    function and a name defined in two files are errors naming the file."""
    mine = _case_file("mymethod", "def make_mine():\n    return {}\n\ndef check_mine(d):\n    pass\n")
    assert set(discover([mine])) == {"mine"} and discover([mine])["mine"].module == "mymethod"
    with pytest.raises(CaseError, match=r"cases/half\.py: make_half has no check_half"):
        discover([_case_file("half", "def make_half():\n    return {}\n")])
    with pytest.raises(CaseError, match=r"'mine' is defined in both cases/mymethod\.py and cases/other\.py"):
        discover([mine, _case_file("other", "def make_mine():\n    return {}\n\ndef check_mine(d):\n    pass\n")])
