"""Per-epoch training checkpoints, so a killed or preempted run resumes where it stopped.

After every epoch the trainer writes one file next to the run's result (``seed-<s>.ckpt``),
atomically (temporary file, fsync, rename): the method's full state (networks, optimisers, label
stores), the model-selection state (best epoch, its validation metrics and network state, the
history), and every random-number state that drives training (the run's shuffle generator and the
global torch, NumPy and Python states). A restarted run loads it and continues with the next epoch;
on CPU with the same number of threads it reaches the same final metrics as an uninterrupted run.
A run stopped by a signal mid-epoch writes the same file with ``partial`` set (the epoch's plan, the
next step, the steps' logs so far; method and random states as they are at that step) and resumes
at that step (``ncbench.engine.trainer``).

A checkpoint written for another config (hash) or one that cannot be read is moved aside under the
results folder's ``superseded/`` and training starts from epoch 0; nothing is deleted silently. The
checkpoint is removed once the run's result file is written. Checkpoints are pickles that ncbench
wrote itself; they are never read from submissions.
"""

from __future__ import annotations

import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .atomic import write_atomic

FORMAT = 1


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


@dataclass(frozen=True)
class CheckpointInfo:
    where: str  # "after epoch 3", "in epoch 4 at step 120/400"
    config_hash: str  # the config it was written for
    epochs_done: float  # epochs finished, with the fraction of a started one


@dataclass
class Checkpointer:
    """The checkpoint file of one run."""

    path: Path
    config_hash: str
    aside: Path | None = None  # where unusable checkpoints are moved (default: beside the file)
    log: Callable[[str], None] = lambda msg: None

    def save(self, epoch: int, state: dict[str, Any]) -> None:
        payload = {**state, "format": FORMAT, "config_hash": self.config_hash, "epoch": epoch}
        write_atomic(self.path, lambda f: torch.save(payload, f))

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None (no checkpoint, or an unusable one, which is moved aside)."""
        if not self.path.exists():
            return None
        state, problem = self._read()
        if problem is not None:
            self._set_aside(*problem)
            return None
        self.log(f"    resuming {describe(state)} from {self.path}")
        return state

    def where(self) -> CheckpointInfo | None:
        """Where a readable checkpoint stands (see :func:`describe`), written for this config or
        another of the same run (other method options); None without one. Moves nothing."""
        state = self._load()[0] if self.path.exists() else None
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
            state = torch.load(self.path, map_location="cpu", weights_only=False)
        except Exception as exc:  # truncated or foreign file: kept for inspection
            return None, f"unreadable ({type(exc).__name__})"
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            return None, "not an ncbench checkpoint"
        return state, None

    def _read(self) -> tuple[dict[str, Any] | None, tuple[str, str] | None]:
        """``(state, None)`` for a usable checkpoint, else ``(None, (reason, why))``."""
        state, why = self._load()
        if state is None:
            return None, ("corrupt", why)
        if state.get("config_hash") != self.config_hash:
            return None, ("stale", f"written for config {state.get('config_hash')}")
        return state, None

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

    def _set_aside(self, reason: str, why: str) -> None:
        folder = self.aside or self.path.parent
        dest = folder / f"{self.path.stem}.{reason}.{time.strftime('%Y%m%d-%H%M%S')}{self.path.suffix}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(self.path), dest)
        self.log(f"    checkpoint {self.path} is {why}; moved to {dest}, starting from epoch 0")
