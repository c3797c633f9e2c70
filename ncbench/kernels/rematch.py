"""L2RM's losses (methods-beyond §2.2), pure tensor functions on a batch score matrix.

``S`` is ``B×B`` (rows images, columns captions), ``P_i2t = softmax(S/τ)`` over each row and
``P_t2i = softmax(Sᵀ/τ)`` (``complementary.batch_probabilities``); τ = 0.05 in L2RM.

* ``robust_warmup_loss`` (the official ``RCE``): ``½ Σ_dir mean_i [−log P_ii − Σ_j P_ij log(δ_ij + 10⁻⁷)]``,
  i.e. the cross-entropy plus the *reverse* cross-entropy against the one-hot label smoothed by
  10⁻⁷ (``A = −ln 10⁻⁷ ≈ 16.1`` times the probability off the diagonal).
* ``symmetric_kl_loss`` (the official ``sym_KL_Divergence``): ``½ Σ_dir [KL(T ‖ P) + KL(P ‖ T)]``
  against the transport targets ``T`` (``transport.transport_targets``), each KL summed over the
  matrix and divided by B (``KLDivLoss(reduction="batchmean")``); optional per-row weights leave rows
  out (``massless="drop"``; the mean then divides by B all the same, as the official reduction).

Probabilities by ``softmax`` rather than ``exp / (Σ exp + 10⁻¹⁰)`` (equal to float precision).
"""

from __future__ import annotations

import math

import torch

from .complementary import batch_probabilities

SMOOTH = 1e-7


def robust_warmup_loss(scores: torch.Tensor, tau: float = 0.05) -> torch.Tensor:
    """L2RM's warm-up loss ("RCE") of one batch."""
    out = scores.new_zeros(())
    eye = torch.eye(scores.shape[0], dtype=torch.bool, device=scores.device)
    log_label = torch.full_like(scores, math.log(SMOOTH)).masked_fill(eye, math.log1p(SMOOTH))
    for p in batch_probabilities(scores, tau):
        out = out - (log_label * p).sum(dim=1).mean() - p.diagonal().log().mean()
    return out / 2


def _kl_rows(target: torch.Tensor, log_target: torch.Tensor, log_p: torch.Tensor) -> torch.Tensor:
    """``Σ_j t_ij (log t_ij − log p_ij)`` per row."""
    return (target * (log_target - log_p)).sum(dim=-1)


def symmetric_kl_loss(scores: torch.Tensor, target_i2t: torch.Tensor, target_t2i: torch.Tensor, tau: float = 0.05,
                      weight_i2t: torch.Tensor | None = None, weight_t2i: torch.Tensor | None = None) -> torch.Tensor:
    """L2RM's rematching loss of one noisy batch against its transport targets."""
    b = scores.shape[0]
    total = scores.new_zeros(())
    for p, t, w in zip(batch_probabilities(scores, tau), (target_i2t, target_t2i), (weight_i2t, weight_t2i)):
        log_p, log_t = p.log(), t.log()
        rows = _kl_rows(t, log_t, log_p) + _kl_rows(p, log_p, log_t)
        total = total + (rows if w is None else rows * w).sum() / b
    return total / 2
