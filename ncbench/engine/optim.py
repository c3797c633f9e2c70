"""Small optimisation helpers shared by methods: a guarded optimiser step and step-decay lr."""

from __future__ import annotations

import math

import torch

from ..errors import TrainingError


def step_decay(base_lr: float, epoch: int, every: int, factor: float = 0.1) -> float:
    """``base_lr × factor^(epoch // every)``: the schedule of NCR, BiCro and CRCL with the factor 0.1,
    GSC's with 0.2 (methods pass their ``lr_decay`` option)."""
    return base_lr * (factor ** (epoch // every)) if every > 0 else base_lr


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def optimizer_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor, params, grad_clip: float, where: str) -> float:
    """Backward, clip the gradient norm, step. A NaN/inf loss stops the run with a clear error."""
    value = float(loss.detach())
    if not math.isfinite(value):
        raise TrainingError(f"loss became {value} ({where})")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    optimizer.step()
    return value
