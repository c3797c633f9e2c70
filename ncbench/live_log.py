"""Live logging of long runs: the per-epoch scalars of the history, as they are recorded, to
TensorBoard (``--log tensorboard``, torch's ``SummaryWriter``) and/or Weights & Biases
(``--log wandb``, offline unless ``WANDB_MODE`` says otherwise). Neither is a dependency of
ncbench: asking for one that is not installed is an error before anything trains.

A run's logs go under ``<log dir>/<kind>/<the run's path below the results folder>/`` (default log
dir ``<results>/logs``, which result scanning skips). Every number of a history row is logged at
step = epoch, ``detection`` metrics as ``detection/<name>``; a resumed run appends to the same place.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from .errors import ConfigError

KINDS = ("tensorboard", "wandb")
PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb"}


def check_kinds(kinds: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The requested kinds, each known and importable; a ConfigError saying what to install otherwise."""
    for kind in kinds:
        if kind not in KINDS:
            raise ConfigError(f"unknown --log {kind!r}; choose from {', '.join(KINDS)}")
        if importlib.util.find_spec(PACKAGES[kind]) is None:
            raise ConfigError(f"--log {kind} needs the {PACKAGES[kind]} package: pip install {PACKAGES[kind]}")
    return tuple(dict.fromkeys(kinds))


def scalars(row: dict[str, Any]) -> dict[str, float]:
    """The loggable numbers of one history row (``epoch`` is the step, not a scalar)."""
    out = {}
    for key, value in row.items():
        if key == "detection" and isinstance(value, dict):
            out.update({f"detection/{k}": float(v) for k, v in value.items()
                        if isinstance(v, (int, float)) and not isinstance(v, bool)})
        elif key != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = float(value)
    return out


class TensorBoardLog:
    def __init__(self, folder: Path):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(folder))

    def log(self, row: dict[str, Any]) -> None:
        for key, value in scalars(row).items():
            self.writer.add_scalar(key, value, global_step=int(row["epoch"]))
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbLog:
    def __init__(self, folder: Path, name: str, config: dict[str, Any]):
        import wandb

        folder.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "ncbench"), name=name, config=config,
                              dir=str(folder), mode=os.environ.get("WANDB_MODE", "offline"), reinit=True)

    def log(self, row: dict[str, Any]) -> None:
        self.run.log(scalars(row), step=int(row["epoch"]))

    def close(self) -> None:
        self.run.finish()


class LiveLog:
    """The loggers of one run (``log_dir/<kind>/<relative>``); ``log`` takes a history row, ``close``
    ends them (idempotent)."""

    def __init__(self, kinds: tuple[str, ...], log_dir: Path, relative: Path, name: str, config: dict[str, Any]):
        self.loggers = [TensorBoardLog(log_dir / kind / relative) if kind == "tensorboard"
                        else WandbLog(log_dir / kind / relative, name, config) for kind in kinds]

    def log(self, row: dict[str, Any]) -> None:
        for logger in self.loggers:
            logger.log(row)

    def close(self) -> None:
        while self.loggers:
            self.loggers.pop().close()
