"""Per-epoch training checkpoints, so a killed or preempted run resumes where it stopped.

After every epoch the trainer writes one file next to the run's result (``seed-<s>.ckpt``),
atomically (temporary file, fsync, rename): the method's full state (networks, optimisers, label
stores), the model-selection state (best epoch, its validation metrics and network state, the
history), every random-number state that drives training (the run's shuffle generator and the
global torch, NumPy and Python states), and the run's elapsed wall time so far (``elapsed_s``, and
``gpu_s`` of it on a GPU), which the resumed run adds to its own for the result's ``total_s`` and
``gpu_hours``. A restarted run loads it and continues with the next epoch; on CPU with the same
number of threads it reaches the same final metrics as an uninterrupted run. A run stopped by a
signal mid-epoch writes the same file with ``partial`` set (the epoch's plan, the next step, the
steps' logs so far; method and random states as they are at that step) and resumes at that step
(``ncbench.engine.trainer``).

Loading runs no code from the file, so a checkpoint someone planted in a shared results folder is
harmless: files are read with ``torch.load(weights_only=True)`` (tensors and plain containers
only), after checking that the path is a regular file and not a link. To make that possible,
``save`` stores everything as tensors, numbers, strings, lists, tuples and dicts: NumPy arrays and
scalars become tagged byte tensors, and the few ncbench classes a state holds (the epoch plan,
fits, metrics; ``STORABLE``, extended with ``storable``) become tagged dicts of their fields, which
``load`` turns back into the same objects, bit for bit. A class that is not registered is refused
at save time (``CheckpointError``) rather than stored in a form that could run code.

A checkpoint written for another config (hash), one that cannot be read, and one refused as
unsafe (e.g. one written by an ncbench before ``FORMAT`` 2, which pickled NumPy objects) is moved
aside under the results folder's ``superseded/checkpoints/<the run's relative folder>/``, under a
name no other move can take, and training starts from epoch 0; nothing is deleted silently. A write
that fails (a full disk) raises ``CheckpointError`` naming the file and the cause. The checkpoint is
removed once the run's result file is written; a run found already done has a leftover checkpoint
of its own config removed (``ncbench.runner``).
"""

from __future__ import annotations

import os
import pickle
import random
import re
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .atomic import UnsafePathError, move_aside, open_regular, write_atomic
from .errors import NcbenchError

FORMAT = 2  # 2: weights_only-loadable (plain tensors and containers); 1 pickled NumPy and ncbench objects
TAG = "__ncbench__"  # the key of a dict that stands for a NumPy value or an ncbench object


class CheckpointError(NcbenchError):
    """A checkpoint could not be written, or a state holds something a checkpoint cannot store."""


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    state = {"generator": generator.get_state(), "torch": torch.get_rng_state(), "numpy": np.random.get_state(),
             "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], generator: torch.Generator) -> None:
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def describe(state: dict[str, Any]) -> str:
    """"after epoch 3", or for a mid-epoch checkpoint "in epoch 4 at step 120/400"."""
    partial = state.get("partial")
    if partial:
        return f"in epoch {int(state['epoch']) + 1} at step {partial['step']}/{len(partial['plan'].steps)}"
    return f"after epoch {state['epoch']}"


# -- plain storage ---------------------------------------------------------------------------------
STORABLE: dict[str, type] = {}  # "module.Class" -> the class, for the objects a checkpoint may hold


def storable(cls: type) -> type:
    """Let checkpoints hold instances of ``cls`` (stored as their fields; a method plugin's plan
    data may need this for a class of its own). Usable as a decorator."""
    STORABLE[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return cls


def _builtin_storable() -> None:
    """ncbench's own classes that states hold (imported here, late: a process that only reads
    checkpoints, e.g. ``ncbench status``, must know them too)."""
    if STORABLE.get("ncbench.engine.method.EpochPlan"):
        return
    from .engine.method import EpochPlan, StepLogs
    from .engine.selection import Selection
    from .evaluate import RetrievalMetrics, SplitEvaluation
    from .kernels.mixture import BMM1D, GMM1D, SplitFit
    from .kernels.ridge import RidgeFit

    for cls in (EpochPlan, StepLogs, Selection, RetrievalMetrics, SplitEvaluation, SplitFit, GMM1D, BMM1D, RidgeFit):
        storable(cls)
    STORABLE["ncbench.engine.trainer.Selection"] = Selection  # where it lived before (older checkpoints)


_LEAVES = (type(None), bool, int, float, str, torch.Tensor, torch.dtype, torch.Size)


def to_plain(obj: Any) -> Any:
    """``obj`` as tensors and plain containers only (what ``torch.load(weights_only=True)`` reads)."""
    if isinstance(obj, (np.ndarray, np.generic)):  # before the leaves: np.float64 is a float
        arr = np.asarray(obj)
        if arr.dtype.hasobject or arr.dtype.fields is not None:
            raise CheckpointError(f"a checkpoint cannot store a NumPy array of dtype {arr.dtype}")
        data = torch.from_numpy(np.frombuffer(np.ascontiguousarray(arr).tobytes(), dtype=np.uint8).copy())
        return {TAG: "numpy", "dtype": arr.dtype.str, "shape": list(arr.shape), "scalar": isinstance(obj, np.generic),
                "data": data}
    if isinstance(obj, _LEAVES):
        return obj
    kind = type(obj)
    if kind in (dict, OrderedDict):
        out = kind((_key(k), to_plain(v)) for k, v in obj.items())
        if hasattr(obj, "_metadata"):  # a module's state_dict
            out._metadata = to_plain(obj._metadata)
        return out
    if kind in (list, tuple):
        return kind(to_plain(v) for v in obj)
    if kind in (set, frozenset):
        return {TAG: kind.__name__, "items": [to_plain(v) for v in obj]}
    _builtin_storable()
    name = f"{kind.__module__}.{kind.__qualname__}"
    if STORABLE.get(name) is not kind:
        raise CheckpointError(f"a checkpoint cannot store a {name}: a method's state and plan data must be tensors, "
                              "arrays, numbers, strings, lists and dicts (or a class registered with "
                              "ncbench.checkpoint.storable)")
    return {TAG: "object", "class": name, "fields": to_plain(dict(vars(obj)))}


def _key(key: Any) -> Any:
    if not isinstance(key, (str, int, float, bool, type(None))) or isinstance(key, np.generic):
        raise CheckpointError(f"a checkpoint cannot store a dict key of type {type(key).__name__}")
    return key


def from_plain(obj: Any) -> Any:
    """The inverse of ``to_plain``; ValueError for a tag or class it does not know."""
    kind = type(obj)
    if kind in (dict, OrderedDict):
        tag = obj.get(TAG)
        if tag is None:
            out = kind((k, from_plain(v)) for k, v in obj.items())
            if hasattr(obj, "_metadata"):
                out._metadata = from_plain(obj._metadata)
            return out
        if tag == "numpy":
            arr = np.frombuffer(obj["data"].numpy().tobytes(), dtype=np.dtype(obj["dtype"])).reshape(obj["shape"])
            return arr[()] if obj["scalar"] else arr.copy()
        if tag in ("set", "frozenset"):
            return (set if tag == "set" else frozenset)(from_plain(v) for v in obj["items"])
        if tag == "object":
            _builtin_storable()
            cls = STORABLE.get(obj["class"])
            if cls is None:
                raise ValueError(f"unknown class {obj['class']}")
            out = cls.__new__(cls)
            out.__dict__.update(from_plain(obj["fields"]))
            return out
        raise ValueError(f"unknown tag {tag!r}")
    if kind in (list, tuple):
        return kind(from_plain(v) for v in obj)
    return obj


def read(path: Path) -> dict[str, Any]:
    """The state a checkpoint file holds, read without running any code from it: the path must be a
    regular file (not a link), loaded with ``weights_only=True``. Raises on anything else."""
    fd = open_regular(path)
    with os.fdopen(fd, "rb") as f:
        raw = torch.load(f, map_location="cpu", weights_only=True)
    return from_plain(raw)


# -- the checkpoint of one run ----------------------------------------------------------------------
@dataclass(frozen=True)
class CheckpointInfo:
    where: str  # "after epoch 3", "in epoch 4 at step 120/400"
    config_hash: str  # the config it was written for
    epochs_done: float  # epochs finished, with the fraction of a started one


@dataclass
class Checkpointer:
    """The checkpoint file of one run. ``started`` (``time.perf_counter``) is when this process
    began the run: the time since then is added to the elapsed total the checkpoint carries
    (``earlier``, what the previous processes spent, set by ``load``)."""

    path: Path
    config_hash: str
    aside: Path | None = None  # where unusable checkpoints are moved (default: beside the file)
    code_hash: str | None = None  # the code training now (``code_identity``); None: not checked
    log: Callable[[str], None] = lambda msg: None
    on_gpu: bool = False  # this process trains on a GPU (its time counts towards gpu_s)
    started: float = field(default_factory=time.perf_counter)
    earlier: dict[str, float] = field(default_factory=lambda: {"elapsed_s": 0.0, "gpu_s": 0.0})

    def elapsed(self) -> dict[str, float]:
        """The run's wall time so far over all its processes, and the part of it on a GPU."""
        now = time.perf_counter() - self.started
        return {"elapsed_s": self.earlier["elapsed_s"] + now, "gpu_s": self.earlier["gpu_s"] + (now if self.on_gpu else 0.0)}

    def save(self, epoch: int, state: dict[str, Any]) -> None:
        payload = to_plain({**state, "format": FORMAT, "config_hash": self.config_hash, "epoch": epoch,
                            **({"code_hash": self.code_hash} if self.code_hash else {}), **self.elapsed()})
        files: list[_Watched] = []

        def write(f) -> None:
            files.append(_Watched(f))
            torch.save(payload, files[-1])

        try:
            write_atomic(self.path, write)
        except (OSError, RuntimeError) as exc:
            cause = (files[0].error if files else None) or _os_error(exc)
            if cause is None:  # not a failed write: a bug
                raise
            why = os.strerror(cause.errno).lower() if cause.errno else str(cause)
            raise CheckpointError(f"could not write checkpoint {self.path}: {why}") from None

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None (no checkpoint, or an unusable one, which is moved aside)."""
        if not os.path.lexists(self.path):
            return None
        state, problem = self._read()
        if problem is not None:
            self._set_aside(*problem)
            return None
        self.earlier = {k: float(state.get(k, 0.0)) for k in ("elapsed_s", "gpu_s")}
        self.log(f"    resuming {describe(state)} from {self.path}")
        return state

    def where(self) -> CheckpointInfo | None:
        """Where a readable checkpoint stands (see :func:`describe`), written for this config or
        another of the same run (other method options); None without one. Moves nothing, runs no
        code from the file."""
        state = self._load()[0] if os.path.lexists(self.path) else None
        if state is None:
            return None
        done = int(state["epoch"]) + 1
        partial = state.get("partial")
        if partial:  # the next epoch is under way
            done += partial["step"] / max(len(partial["plan"].steps), 1)
        return CheckpointInfo(describe(state), str(state.get("config_hash")), float(done))

    def _load(self) -> tuple[dict[str, Any] | None, str | None]:
        """``(state, None)`` if the file is an ncbench checkpoint (of any config), else ``(None, why)``."""
        try:
            state = read(self.path)
        except UnsafePathError as exc:
            return None, f"refused as unsafe to load ({exc.problem})"
        except pickle.UnpicklingError as exc:
            unsafe = re.search(r"GLOBAL ([\w.]+)", str(exc))
            if unsafe:
                return None, (f"refused as unsafe to load (it would import {unsafe.group(1)}; a checkpoint of an "
                              "older ncbench, or not an ncbench file)")
            return None, f"unreadable ({type(exc).__name__})"
        except Exception as exc:  # truncated or foreign file: kept for inspection
            return None, f"unreadable ({type(exc).__name__})"
        if not isinstance(state, dict) or state.get("format") != FORMAT or not _well_formed(state):
            return None, "not an ncbench checkpoint of this version"
        return state, None

    def _read(self) -> tuple[dict[str, Any] | None, tuple[str, str] | None]:
        """``(state, None)`` for a usable checkpoint, else ``(None, (reason, why))``."""
        state, why = self._load()
        if state is None:
            return None, ("corrupt", why)
        if state.get("config_hash") != self.config_hash:
            return None, ("stale", f"written for config {state.get('config_hash')}")
        if self.code_hash is not None and state.get("code_hash") != self.code_hash:
            # resuming would train one run with two versions of the code under the new one's name
            return None, ("stale-code", f"written by other code ({state.get('code_hash') or 'unrecorded'}, now "
                                        f"{self.code_hash})")
        return state, None

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

    def _set_aside(self, reason: str, why: str) -> None:
        dest = move_aside(self.path, self.aside or self.path.parent, reason)
        self.log(f"    checkpoint {self.path} is {why}; moved to {dest}, starting from epoch 0")


def _well_formed(state: dict[str, Any]) -> bool:
    """Whether the fields that ``describe`` and ``where`` read are there, with their types."""
    partial = state.get("partial")
    return (type(state.get("epoch")) is int and isinstance(state.get("config_hash"), str)
            and (partial is None or isinstance(partial, dict) and type(partial.get("step")) is int
                 and isinstance(getattr(partial.get("plan"), "steps", None), (list, tuple))))


class _Watched:
    """The file torch.save writes to, remembering a failed write: torch reports one as ``RuntimeError:
    [enforce fail at inline_container.cc:672] . unexpected pos ...``, which never says why."""

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, data) -> int:
        try:
            return self.f.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self.f.flush()


def _os_error(exc: BaseException) -> OSError | None:
    """The OSError an exception was raised while handling, if any."""
    while exc is not None:
        if isinstance(exc, OSError):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None
