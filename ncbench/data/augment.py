"""Training-time augmentation of batches (CRCL, spec §5.6), as pure tensor functions.

Random draws come from an explicit ``torch.Generator``, so augmentation is reproducible; inputs are
never modified in place (the official CRCL masks regions inside the shared feature array, §8 row 12).
"""

from __future__ import annotations

import torch


def perturb_captions(
    tokens: torch.Tensor, lengths: torch.Tensor, mask_id: int, vocab_size: int, generator: torch.Generator,
    p: float = 0.2,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each token (``<start>``/``<end>`` included) is perturbed with probability ``p``: of those, 50%
    become ``mask_id``, 10% a uniformly random vocabulary id, 40% are deleted. A caption whose every
    token would be deleted is left unchanged. Returns new ``(tokens, lengths)``."""
    B, L = tokens.shape
    valid = torch.arange(L)[None, :] < lengths[:, None]
    u = torch.rand((B, L), generator=generator)
    kind = torch.rand((B, L), generator=generator)
    random_ids = torch.randint(0, vocab_size, (B, L), generator=generator)
    hit = (u < p) & valid
    out = torch.where(hit & (kind < 0.5), torch.full_like(tokens, mask_id), tokens)
    out = torch.where(hit & (kind >= 0.5) & (kind < 0.6), random_ids, out)
    keep = valid & ~(hit & (kind >= 0.6))
    emptied = keep.sum(1) == 0
    keep = torch.where(emptied[:, None], valid, keep)
    out = torch.where(emptied[:, None], tokens, out)
    order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)  # kept tokens first, in order
    new_lengths = keep.sum(1)
    compact = out.gather(1, order) * (torch.arange(L)[None, :] < new_lengths[:, None])
    return compact[:, : int(new_lengths.max())], new_lengths


def mask_regions(images: torch.Tensor, generator: torch.Generator, p: float = 0.2, value: float = 1e-10) -> torch.Tensor:
    """For region features ``(B, R, D)``, each region is replaced by ``value`` with probability ``p``
    (the shape is kept); global features ``(B, D)`` are returned unchanged. Returns a new tensor."""
    if images.ndim != 3:
        return images
    drop = torch.rand(images.shape[:2], generator=generator) < p
    return torch.where(drop[..., None].to(images.device), torch.full_like(images, value), images)
