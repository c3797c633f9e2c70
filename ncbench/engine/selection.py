"""What model selection keeps of a run (``Selection``): the selected epoch, its validation, the
history and the times. Its own module so that the checkpoint module, which stores it, can import it
without importing the trainer (which imports the checkpoint module)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..evaluate import SplitEvaluation


@dataclass
class Selection:
    best_epoch: int
    best_val: SplitEvaluation
    detection: dict[str, Any] | None = None  # at the selected epoch
    history: list[dict[str, Any]] = field(default_factory=list)
    train_seconds: float = 0.0
    val_seconds: float = 0.0
    resumed_after: int | None = None  # the checkpointed epoch training continued from, if any
    resumed_at_step: int | None = None  # the step of the next epoch it continued at (mid-epoch checkpoint)
