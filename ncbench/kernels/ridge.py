"""Closed-form ridge regression from caption bags of words to image features (the ``probe`` floor).

``bag_of_words`` turns padded token ids into word counts; ``ridge_path`` fits
``W(α) = (X̃ᵀX̃ + αI)⁻¹ X̃ᵀỸ`` for several ``α`` at once from one eigendecomposition of ``X̃ᵀX̃``,
where ``X̃``/``Ỹ`` are the counts and features centred on their means (an unpenalised intercept).
Computed in float64 on whatever device the inputs are on.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def bag_of_words(tokens: torch.Tensor, weights: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """``(n, V)`` float64 word counts of ``tokens`` ``(n, L)``, each position counted with its
    ``weights`` entry (1 for a word, 0 for padding and left-out tokens)."""
    out = torch.zeros(tokens.shape[0], vocab_size, dtype=torch.float64, device=tokens.device)
    return out.scatter_add_(1, tokens, weights.to(torch.float64))


@dataclass
class RidgeFit:
    x_mean: torch.Tensor  # (V,)
    y_mean: torch.Tensor  # (D,)
    weights: list[torch.Tensor]  # one (V, D) map per alpha


def ridge_path(x: torch.Tensor, y: torch.Tensor, alphas: list[float] | tuple[float, ...]) -> RidgeFit:
    """Ridge maps with an intercept from ``x`` ``(n, V)`` to ``y`` ``(n, D)``, one per ``alpha`` > 0."""
    if any(a <= 0 for a in alphas):
        raise ValueError(f"ridge penalties must be positive, got {list(alphas)}")
    x, y = x.to(torch.float64), y.to(torch.float64)
    x_mean, y_mean = x.mean(0), y.mean(0)
    xc, yc = x - x_mean, y - y_mean
    evals, evecs = torch.linalg.eigh(xc.T @ xc)
    proj = evecs.T @ (xc.T @ yc)  # (V, D) in the eigenbasis
    weights = [evecs @ (proj / (evals.clamp(min=0) + a)[:, None]) for a in alphas]
    return RidgeFit(x_mean, y_mean, weights)
