"""Asking git about a checkout: the one subprocess wrapper that code identity, submissions and the
benchmark history use (a missing ``git``, a folder outside a checkout or a hung call is ``None``)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def git_bytes(folder: Path, *args: str) -> bytes | None:
    """``git -C folder ARGS``'s standard output, or None when it fails or cannot run (10 s limit)."""
    try:
        out = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def git(folder: Path, *args: str) -> str | None:
    """``git_bytes`` as stripped text (undecodable bytes replaced)."""
    out = git_bytes(folder, *args)
    return None if out is None else out.decode("utf-8", "replace").strip()
