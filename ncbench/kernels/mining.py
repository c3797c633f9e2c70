"""CREAM's kernels (methods-beyond §2.3, official ``InfoNCELoss.py`` and ``train.py``): InfoNCE per
pair, the three-way split, the refined targets, and the soft-target InfoNCE that mines false negatives.

Batch score matrix ``S`` (rows images, columns captions), temperature τ = 0.07, the row softmaxes
``P_i2t = softmax(S/τ)`` and ``P_t2i = softmax(Sᵀ/τ)`` (``complementary.batch_probabilities``).

* ``info_nce_per_sample``: ``ℓ_i = −log P_i2t[i, i] − log P_t2i[i, i]`` (the division statistic; its
  mean is the warm-up loss).
* ``three_way_split``: clean where both networks' splits say clean, noisy where both say noisy,
  hard where they disagree.
* ``soft_target_weights``: for targets ``y`` and non-negative similarities ``S``, the row weights
  ``W[i, i] = y_i``, ``W[i, j] = (1 − y_i) S[i, j] / (Σ_{k≠i} S[i, k] + 10⁻⁶)`` and the column weights
  the same down each column; entries below the filter ``f`` are zeroed *before* the diagonal is
  added (so ``f ≥ 1`` leaves only the positives, ``f = 0`` every negative).
* ``soft_target_info_nce``: ``(1/B) Σ_ij [W_row[i, j] (−log P_i2t[i, j]) + W_col[i, j] (−log P_col[i, j])]``
  with ``P_col[i, j] = softmax_i(S[i, j]/τ)`` (caption ``j`` over the images).

Probabilities by ``softmax`` rather than ``exp / Σ exp`` (equal to float precision).
"""

from __future__ import annotations

import torch

from .complementary import batch_probabilities

WEIGHT_EPS = 1e-6


def info_nce_per_sample(scores: torch.Tensor, tau: float = 0.07) -> torch.Tensor:
    """``−log P_i2t[i, i] − log P_t2i[i, i]`` of every pair of a batch."""
    p_i2t, p_t2i = batch_probabilities(scores, tau)
    return -(p_i2t.diagonal().log() + p_t2i.diagonal().log())


def three_way_split(clean_a: torch.Tensor, clean_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(clean, hard, noisy)`` boolean masks from two networks' clean splits."""
    return clean_a & clean_b, clean_a ^ clean_b, ~clean_a & ~clean_b


def soft_target_weights(similarity: torch.Tensor, targets: torch.Tensor,
                        threshold: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(W_row, W_col)``: each pair's target on the diagonal, ``1 − y`` shared among its negatives in
    proportion to their similarity, negatives below ``threshold`` dropped."""
    eye = torch.eye(similarity.shape[0], dtype=torch.bool, device=similarity.device)
    off = similarity.masked_fill(eye, 0.0)
    rest = 1.0 - targets
    w_row = off / (off.sum(dim=1, keepdim=True) + WEIGHT_EPS) * rest[:, None]
    w_col = off / (off.sum(dim=0, keepdim=True) + WEIGHT_EPS) * rest[None, :]
    positive = torch.diag_embed(targets)
    drop_row, drop_col = (w_row < threshold).detach(), (w_col < threshold).detach()
    return w_row.masked_fill(drop_row, 0.0) + positive, w_col.masked_fill(drop_col, 0.0) + positive


def soft_target_info_nce(scores: torch.Tensor, targets: torch.Tensor, tau: float = 0.07, threshold: float = 0.0,
                         similarity: torch.Tensor | None = None) -> torch.Tensor:
    """CREAM's loss of one batch. The weights use ``similarity`` (default: the scores) *with* its
    gradient, as the official code does (its weights are built from a clone of the scores)."""
    sim = scores if similarity is None else similarity
    w_row, w_col = soft_target_weights(sim, targets.detach().to(scores.dtype), threshold)
    p_i2t, p_t2i = batch_probabilities(scores, tau)
    return ((w_row * -p_i2t.log()).sum() + (w_col * -p_t2i.T.log()).sum()) / scores.shape[0]


def negative_threshold(target_means: list[float], sizes: list[int]) -> float:
    """The filter ``f̄``: the mean of the subsets' current batch-mean targets weighted by subset size
    (subsets without a batch left out)."""
    total = sum(s for m, s in zip(target_means, sizes) if m is not None)
    return sum(m * s for m, s in zip(target_means, sizes) if m is not None) / total if total else 0.0
