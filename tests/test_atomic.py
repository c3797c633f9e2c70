"""Atomic writes keep the permissions an ordinary new file would get (issue 23, item 8): a results
folder shared on a cluster must be readable by colleagues, as the README's SLURM set-up assumes."""

import os
import stat

import pytest

from ncbench.atomic import write_text_atomic
from ncbench.results import write_json_atomic


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_files_get_the_umask_permissions_not_the_temporary_files(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        write_text_atomic(tmp_path / "a" / "board.md", "x")
        write_json_atomic(tmp_path / "r" / "seed-0.json", {"ok": True})
        write_text_atomic(tmp_path / "a" / "board.md", "y")  # replacing keeps the same rule
    finally:
        os.umask(old)
    for p in (tmp_path / "a" / "board.md", tmp_path / "r" / "seed-0.json"):
        assert stat.S_IMODE(p.stat().st_mode) == mode, (p, oct(p.stat().st_mode))
    assert (tmp_path / "a" / "board.md").read_text() == "y"
    assert not list(tmp_path.rglob("*.tmp"))
