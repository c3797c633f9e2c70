"""Golden-vector parity, run in CI without the official code: the outputs the official functions gave
on the cases' inputs (written by ``make_golden.py``) against ncbench's on the same inputs."""

from pathlib import Path

import numpy as np
import pytest

from .cases import CASES

GOLDEN = Path(__file__).parent / "golden"


@pytest.mark.parametrize("name", sorted(CASES))
def test_ncbench_reproduces_the_official_outputs(name):
    path = GOLDEN / f"{name}.npz"
    assert path.is_file(), f"{path} missing: run `python -m tests.parity.make_golden {name}` against the checkouts"
    with np.load(path, allow_pickle=False) as data:
        CASES[name][1]({k: data[k] for k in data.files})


def test_every_golden_file_belongs_to_a_case():
    assert {p.stem for p in GOLDEN.glob("*.npz")} == set(CASES)
