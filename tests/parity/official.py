"""Running the authors' official functions unchanged, from checkouts outside this repository.

Nothing of the official code is committed here: ``NCBENCH_OFFICIAL`` names a folder holding one
checkout per repository, under the repository's name (``fetch`` them, e.g. ``git clone
https://github.com/XLearning-SCU/2021-NeurIPS-NCR`` at the commit below). A function or a class is
taken out of its file with ``ast`` and executed in a namespace holding only what it needs, so the
files' command-line parsing, data loaders and CUDA set-up never run; ``.cuda()`` is a no-op while an
official function runs (``cpu_only``). Where the folder or a checkout is missing, ``require`` skips
the test and says why.
"""

from __future__ import annotations

import ast
import contextlib
import math
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

# name → (repository, commit the specs and these tests were written from, folder name of a checkout)
REPOSITORIES = {
    "ncr": ("XLearning-SCU/2021-NeurIPS-NCR", "60256ba", "2021-NeurIPS-NCR"),
    "bicro": ("xu5zhao/BiCro", "0231631", "BiCro"),
    "crcl": ("QinYang79/CRCL", "4a96406", "CRCL"),
    "rcl": ("penghu-cs/RCL", "1096a24", "RCL"),
    "decl": ("QinYang79/DECL", "1b0a775", "DECL"),
    "l2rm": ("hhc1997/L2RM", "a766c22", "L2RM"),
    "cream": ("XLearning-SCU/2024-TIP-CREAM", "f487d6f", "CREAM"),
    "mscn": ("hhc1997/MSCN", "01febc2", "MSCN"),
    "pc2": ("alipay/PC2-NoiseofWeb", "c7ea41a", "PC2-NoiseofWeb"),
    "gsc": ("MediaBrain-SJTU/GSC", "2759ba0", "GSC"),
}
ENV = "NCBENCH_OFFICIAL"


def checkout(name: str) -> Path | None:
    root = os.environ.get(ENV)
    if not root:
        return None
    path = Path(root) / REPOSITORIES[name][2]
    return path if path.is_dir() else None


def require(name: str) -> Path:
    """The checkout of ``name``, or skip the test saying what is missing."""
    path = checkout(name)
    if path is None:
        repo, commit, folder = REPOSITORIES[name]
        where = f"{os.environ[ENV]}/{folder}" if os.environ.get(ENV) else f"${ENV} is not set"
        pytest.skip(f"official {repo}@{commit} not available ({where}); see tests/parity/README.md")
    return path


def extract(path: Path, names: list[str], namespace: dict | None = None) -> SimpleNamespace:
    """Execute the top-level functions/classes ``names`` of ``path`` (``"Class.method"`` takes one
    method out of a class as a plain function of ``self``) in ``namespace``; returns them."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    ns = {"np": np, "torch": torch, "math": math, "nn": torch.nn, "F": torch.nn.functional,
          "clip_grad_norm_": torch.nn.utils.clip_grad_norm_, **(namespace or {})}
    found = {}
    for name in names:
        outer, _, inner = name.partition(".")
        node = next((n for n in tree.body if getattr(n, "name", None) == outer), None)
        if node is not None and inner:
            node = next((n for n in node.body if getattr(n, "name", None) == inner), None)
        if node is None:
            raise LookupError(f"{path}: no {name} (has the official file changed?)")
        module = ast.Module(body=[node], type_ignores=[])
        exec(compile(module, str(path), "exec"), ns)  # noqa: S102 - the authors' code, run on purpose
        found[name.replace(".", "_")] = ns[node.name]
    return SimpleNamespace(**found)


def load_module(path: Path, name: str):
    """Import a whole official file by path (for files whose only imports are torch and numpy)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"official_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def cpu_only():
    """``Tensor.cuda()`` and ``Module.cuda()`` return their argument while official code runs."""
    saved = torch.Tensor.cuda, torch.nn.Module.cuda
    torch.Tensor.cuda = lambda self, *a, **k: self
    torch.nn.Module.cuda = lambda self, *a, **k: self
    try:
        yield
    finally:
        torch.Tensor.cuda, torch.nn.Module.cuda = saved
