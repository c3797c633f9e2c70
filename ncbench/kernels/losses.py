"""Triplet ranking losses on a batch score matrix (NCR/BiCro ``ContrastiveLoss``, spec §2.3).

``scores`` is ``B×B``: rows are images, columns captions, the diagonal the positive pairs. With
margin ``m``, for ``i ≠ j``

* caption-retrieval hinge  ``h_s[i, j]  = [m_i + S[i, j] − S[i, i]]₊``  (image ``i`` as the query),
* image-retrieval hinge    ``h_im[i, j] = [m_j + S[i, j] − S[j, j]]₊``  (caption ``j`` as the query),

and 0 on the diagonal. A per-pair margin ``m`` (a length-B vector) is attached to its *positive*
pair in both directions: row ``i`` of ``h_s`` and column ``j`` of ``h_im`` (the paper's semantics).
A ``B×B`` margin matrix is added element-wise in both terms, which is what the official NCR/BiCro
code does when its label tensor broadcasts (§2.3 caveat, §3.8); it exists for that compatibility.
"""

from __future__ import annotations

import torch


def hinge_costs(scores: torch.Tensor, margin: float | torch.Tensor = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """The two hinge matrices ``(h_s, h_im)`` with zero diagonals."""
    diag = scores.diagonal()
    m = margin if isinstance(margin, torch.Tensor) else torch.as_tensor(margin, dtype=scores.dtype, device=scores.device)
    m = m.to(scores.dtype)
    if m.ndim == 2:  # a full margin matrix, used as-is in both terms
        m_row = m_col = m
    else:
        m_row = m.reshape(-1, 1) if m.ndim else m  # margin of positive i for row i
        m_col = m.reshape(1, -1) if m.ndim else m  # margin of positive j for column j
    eye = torch.eye(scores.shape[0], dtype=torch.bool, device=scores.device)
    cost_s = (m_row + scores - diag.reshape(-1, 1)).clamp(min=0).masked_fill(eye, 0.0)
    cost_im = (m_col + scores - diag.reshape(1, -1)).clamp(min=0).masked_fill(eye, 0.0)
    return cost_s, cost_im


def triplet_loss(scores: torch.Tensor, margin: float | torch.Tensor = 0.2, hard_negative: bool = True) -> torch.Tensor:
    """VSE++ loss, summed over the batch: the hardest negative per query (``hard_negative``), or the
    mean hinge over the batch (NCR's warm-up loss; the mean divides by B including the diagonal)."""
    cost_s, cost_im = hinge_costs(scores, margin)
    if hard_negative:
        return cost_s.max(dim=1).values.sum() + cost_im.max(dim=0).values.sum()
    return cost_s.mean(dim=1).sum() + cost_im.mean(dim=0).sum()


def per_sample_triplet(scores: torch.Tensor, margin: float | torch.Tensor = 0.2) -> torch.Tensor:
    """Per-pair mean hinge ``ℓ_i = mean_j h_s[i, j] + mean_i' h_im[i', i]`` (the split statistic)."""
    cost_s, cost_im = hinge_costs(scores, margin)
    return cost_s.mean(dim=1) + cost_im.mean(dim=0)
