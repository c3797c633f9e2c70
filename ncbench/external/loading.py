"""Loading a released checkpoint without running anything in it.

A checkpoint of the official code is a pickle (``torch.save`` of a dict). Unpickling an arbitrary
file can run any code it names, so it is read with ``torch.load(weights_only=True)``, which admits
only tensors, containers and primitive values, plus the globals a family's files need and nothing
more (``allowed``: ``argparse.Namespace`` for every family's ``opt``; NumPy arrays for CRCL's
``move_gt``). The globals a file names are listed before anything is unpickled
(``torch.serialization.get_unsafe_globals_in_checkpoint``), so a file naming anything else is
refused, naming the file and the type, without executing a byte of it; the unpickler's own refusal
is caught and reported the same way. The file is read once: its sha256 is what a result records.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import pickle
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import NcbenchError

MAX_BYTES = 8 * 2**30  # the largest released checkpoints (two SGRAF networks on COCO) are under 1 GiB


class CheckpointError(NcbenchError):
    """A checkpoint file is missing, unreadable, not a checkpoint, or holds what may not be loaded."""


# (object, the name a file spells it with): NumPy 1 and 2 pickle their array constructor under
# different module names, so both spellings are admitted for the same (safe) function
_NP_CORE = getattr(np, "_core", None) or np.core
NAMESPACE = ((argparse.Namespace, "argparse.Namespace"),)
NUMPY_ARRAYS = tuple(
    [(_NP_CORE.multiarray._reconstruct, f"{m}.multiarray._reconstruct") for m in ("numpy.core", "numpy._core")]
    + [(np.ndarray, "numpy.ndarray"), (np.dtype, "numpy.dtype")]
    + [(type(np.dtype(t)), f"numpy.dtypes.{type(np.dtype(t)).__name__}") for t in
       (np.float64, np.float32, np.int64, np.int32, np.bool_, np.uint8)]
    + [(_NP_CORE.multiarray.scalar, f"{m}.multiarray.scalar") for m in ("numpy.core", "numpy._core")])


@dataclass
class LoadedFile:
    path: Path
    sha256: str
    content: Any
    globals: list[str]  # the non-default globals the file names (all of them allowed)


def read_file(path: Path) -> bytes:
    """The bytes of the regular file ``path`` (a link to one is followed: the user named it)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint file not found") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        raise CheckpointError(f"{path}: not a regular file (a folder, FIFO or device); give the checkpoint file")
    if st.st_size > MAX_BYTES:
        raise CheckpointError(f"{path}: larger than {MAX_BYTES // 2**30} GiB; not a checkpoint of these models")
    try:
        with open(path, "rb") as f:
            return f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot be read ({exc.strerror or exc})") from None


def named_globals(path: Path, raw: bytes) -> list[str]:
    """The globals beyond torch's defaults that the pickle names, read without unpickling it."""
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(io.BytesIO(raw)))
    except Exception as exc:  # noqa: BLE001 - any failure to parse the container means "not a checkpoint"
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({type(exc).__name__}: {first_line(exc)})") from None


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


_GLOBAL = re.compile(r"GLOBAL ([\w.]+)|global[^`'\"]*[`'\"]?([\w]+(?:\.[\w]+)+)")


def refused_type(message: str) -> str:
    """The type the weights-only unpickler refused, parsed from its message (or its first line)."""
    m = _GLOBAL.search(message)
    return (m.group(1) or m.group(2)) if m else first_line(Exception(message))


def safe_load(path: str | Path, allowed: tuple[tuple[Any, str], ...], what: str = "this checkpoint") -> LoadedFile:
    """Load ``path`` admitting only torch's weights-only types and ``allowed`` ((object, name) pairs);
    a file naming any other global is refused before it is unpickled."""
    path = Path(path)
    raw = read_file(path)
    sha = hashlib.sha256(raw).hexdigest()
    names = named_globals(path, raw)
    allowed_names = {name for _, name in allowed}
    foreign = [n for n in names if n not in allowed_names]
    if foreign:
        raise CheckpointError(f"{path}: holds {', '.join(foreign)}, which {what} may not contain; not loaded "
                              "(only tensors, numbers, strings, lists, dicts and the options Namespace are)")
    try:
        with torch.serialization.safe_globals([(obj, name) for obj, name in allowed]):
            content = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"{path}: holds {refused_type(str(exc))}, which {what} may not contain; not loaded") from None
    except Exception as exc:  # noqa: BLE001 - a corrupt container: torch raises RuntimeError, EOFError, ...
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__}: {first_line(exc)})") from None
    return LoadedFile(path, sha, content, names)
