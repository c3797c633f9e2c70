"""Mixed precision: one switch (``--amp``) for training and evaluation.

``off`` computes in float32. ``bf16`` runs matrix products and linear layers in bfloat16 under
``torch.autocast`` (on CUDA for real runs; on the CPU it works too, which is how the path is tested);
softmax, normalisation, losses and the mixture fits stay in float32, as autocast decides. bfloat16
has float32's range, so summed batch losses need no gradient scaling (float16 would; it is not
offered). The setting is recorded in every result (``meta.amp``); scores can differ from float32
in the last digits, so compare runs with the same setting.
"""

from __future__ import annotations

import contextlib

import torch

from .errors import ConfigError

CHOICES = ("off", "bf16")


def check_amp(amp: str) -> str:
    if amp not in CHOICES:
        raise ConfigError(f"--amp must be one of {', '.join(CHOICES)}, got {amp!r}")
    return amp


def autocast(device: torch.device, amp: str):
    """The autocast context for ``amp`` on ``device`` (a no-op for ``off``)."""
    if check_amp(amp) == "off":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
