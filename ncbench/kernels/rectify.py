"""Label rectification: NCR's adaptive prediction and co-rectified soft labels (spec §3.5).

Given a batch's per-sample mean hinge ``ℓ_i`` (fixed margin α = 0.2), NCR's *adaptive prediction*
(paper Eq. 4) is ``P_i = clip(α − ℓ_i / 2, 0, α)`` normalised by ``τ``, the mean of the largest
``⌊B/10⌋ + 1`` values of ``P`` in the batch: ``P̂_i = clip(P_i / τ, 0, 1)``. ``τ = 0`` (every
prediction zero) would give NaN; it is guarded so that ``P̂ = 0``.

Co-rectified labels (paper Eq. 5): for the clean batch ``ŷ_i = w_i + (1 − w_i) P̂_i`` with ``w`` the
peer's clean probability; for the noisy batch the mean of both networks' predictions.
"""

from __future__ import annotations

import torch


def soft_margin(labels: torch.Tensor, alpha: float = 0.2, mode: str = "exponential") -> torch.Tensor:
    """Per-pair margin from a soft label ``ŷ ∈ [0, 1]``: ``α (10^ŷ − 1) / 9`` by default (ŷ = 1 → α,
    ŷ = 0 → 0); ``linear`` = ``α ŷ``; ``sin`` = ``α (sin(π ŷ − π/2) + 1) / 2``."""
    if mode == "exponential":
        return alpha * (torch.pow(10.0, labels) - 1.0) / 9.0
    if mode == "linear":
        return alpha * labels
    if mode == "sin":
        return alpha * (torch.sin(torch.pi * labels - torch.pi / 2) + 1.0) / 2.0
    raise ValueError(f"unknown soft-margin mode {mode!r} (exponential, linear or sin)")


def raw_prediction(per_sample_loss: torch.Tensor, alpha: float = 0.2) -> torch.Tensor:
    """``P_i = clip(α − ℓ_i / 2, 0, α)``: large for pairs the model already matches well."""
    return (alpha - per_sample_loss / 2).clamp(0.0, alpha)


def top_k_count(batch_size: int) -> int:
    """``⌊B/10⌋ + 1``: the "top 10%" of NCR's τ and of BiCro's anchors (13 for B = 128)."""
    return batch_size // 10 + 1


def adaptive_prediction(per_sample_loss: torch.Tensor, alpha: float = 0.2, eps: float = 1e-12) -> torch.Tensor:
    """NCR's ``P̂``: the raw prediction divided by the mean of its top ``⌊B/10⌋ + 1`` values, in [0, 1]."""
    p = raw_prediction(per_sample_loss, alpha)
    k = min(top_k_count(p.numel()), p.numel())
    tau = p.topk(k).values.mean()
    return (p / tau.clamp_min(eps)).clamp(0.0, 1.0)


def clean_batch_labels(w: torch.Tensor, prediction: torch.Tensor) -> torch.Tensor:
    """``ŷ_i = w_i + (1 − w_i) P̂_i`` (paper semantics: one label per pair)."""
    return w + (1.0 - w) * prediction


def official_clean_label_matrix(w: torch.Tensor, prediction: torch.Tensor) -> torch.Tensor:
    """The official code's broadcast (since commit 60256ba): ``ŷ[i, j] = w_i + (1 − w_i) P̂_j``, B×B."""
    return w[:, None] + (1.0 - w[:, None]) * prediction[None, :]


def noisy_batch_labels(prediction_a: torch.Tensor, prediction_b: torch.Tensor) -> torch.Tensor:
    """The mean of both networks' adaptive predictions."""
    return (prediction_a + prediction_b) / 2
