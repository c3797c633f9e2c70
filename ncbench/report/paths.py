"""Names of the files the boards and run pages write, and where they may go.

Page and plot names are built from result fields (protocol, dataset, method, backbone, tag).
``read_result`` already refuses a result whose names could leave a folder; here every generated
name is also slugged (``slug``), and every writer asks ``output_path`` for the path it writes, which
refuses any path that does not resolve inside its output folder.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from ..errors import ResultError

MAX_NAME = 120  # characters of a slug before its tail is replaced by a hash of the whole


def slug(text: str) -> str:
    """``text`` as a file name: letters, digits and ``_.+@-`` kept, every other run of characters one
    ``_``, no leading dot; a name longer than ``MAX_NAME`` is cut and given a hash of the whole, so two
    long names never meet."""
    name = re.sub(r"[^A-Za-z0-9_.+@-]+", "_", text).lstrip(".") or "_"
    if len(name) > MAX_NAME:
        name = name[:MAX_NAME - 13] + "-" + hashlib.sha256(text.encode()).hexdigest()[:12]
    return name


def output_path(folder: str | Path, name: str) -> Path:
    """``folder / name``, refused (ResultError) unless it resolves inside ``folder``, symbolic links
    followed: no generated name may write anywhere else."""
    folder = Path(folder)
    path = folder / name
    root, target = folder.resolve(), path.resolve()
    if target == root or not target.is_relative_to(root):
        raise ResultError(f"refusing to write {path}: it resolves to {target}, outside the output folder {root}")
    return path
