"""Live parity: the official functions, from checkouts named by ``NCBENCH_OFFICIAL`` (never committed),
run on the cases' inputs and compared with ncbench at once. Skipped, with the reason, without them.
The cases are discovered from ``cases/<name>.py`` (``cases/__init__.py``)."""

import pytest

from .cases import discover

CASES = discover()


@pytest.mark.parametrize("name", sorted(CASES))
def test_official_function_agrees(name):
    case = CASES[name]
    case.check(case.make())
