"""Live parity: the official functions, from checkouts named by ``NCBENCH_OFFICIAL`` (never committed),
run on the cases' inputs and compared with ncbench at once. Skipped, with the reason, without them."""

import pytest

from .cases import CASES


@pytest.mark.parametrize("name", sorted(CASES))
def test_official_function_agrees(name):
    make, check = CASES[name]
    check(make())
