"""CRCL's kernels (spec §5.2–5.4): batch matching probabilities, the Active Complementary Loss and
the momentum label correction with confidence truncation.

Batch score matrix ``S`` (rows images, columns captions), temperature ``τ``::

    P_i2t[i, j] = softmax_j(S[i, j] / τ)          image i over captions
    P_t2i[i, j] = softmax_j(S[j, i] / τ)          caption i over images
    p_i = (P_i2t[i, i] + P_t2i[i, i]) / 2          the model's belief that pair i matches

The official code divides ``exp`` by the sum plus 1e-10; a plain softmax is used here (identical
to float precision, and finite for any finite scores).
"""

from __future__ import annotations

import torch


def batch_probabilities(scores: torch.Tensor, tau: float = 0.05) -> tuple[torch.Tensor, torch.Tensor]:
    """``(P_i2t, P_t2i)``, each ``B×B`` with rows summing to 1."""
    return torch.softmax(scores / tau, dim=1), torch.softmax(scores.T / tau, dim=1)


def match_probability(p_i2t: torch.Tensor, p_t2i: torch.Tensor) -> torch.Tensor:
    """``p_i``: the mean of both directions' diagonal probabilities."""
    return (p_i2t.diagonal() + p_t2i.diagonal()) / 2


def batch_match_probability(scores: torch.Tensor, tau: float = 0.05) -> torch.Tensor:
    """``p_i`` of every pair of a batch score matrix (CRCL's and RCL's correspondence estimate)."""
    return match_probability(*batch_probabilities(scores, tau))


def _complementary(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``Σ_{j≠i} tan(P[i, j]) / (Σ_j tan(P[i, j]))^{q_i}`` per row (the denominator is > 0 because
    each row of probabilities sums to one)."""
    t = torch.tan(p)
    off = t.sum(dim=1) - t.diagonal()
    return off / t.sum(dim=1).pow(q)


def active_complementary_loss(
    scores: torch.Tensor, labels: torch.Tensor, tau: float = 0.05, lam: float = 5.0, q: float | None = None
) -> torch.Tensor:
    """CRCL's ACL: ``mean(y · (−log P_i2t[i,i] − log P_t2i[i,i])) + λ · mean(comp_i2t + comp_t2i)``.

    ``q=None`` reproduces the official code, where the robustness exponent is tied to the label,
    ``q_i = 1 − y_i``; a number fixes it for every pair. The active term uses ``log_softmax``, so a
    label of 0 never meets ``log 0`` (no ``0 · inf = NaN``)."""
    labels = labels.to(scores.dtype)
    log_i2t = torch.log_softmax(scores / tau, dim=1).diagonal()
    log_t2i = torch.log_softmax(scores.T / tau, dim=1).diagonal()
    active = -(log_i2t + log_t2i)
    p_i2t, p_t2i = batch_probabilities(scores, tau)
    exponent = (1.0 - labels) if q is None else torch.full_like(labels, float(q))
    comp = _complementary(p_i2t, exponent) + _complementary(p_t2i, exponent)
    return (labels * active).mean() + lam * comp.mean()


def correct_labels(
    y_last: torch.Tensor, p: torch.Tensor, warm: bool, alpha: float = 0.8, momentum: bool = True,
    confident: bool = True, floor: float = 0.1,
) -> torch.Tensor:
    """Self-refining correspondence correction for one batch.

    During the warm epochs of a stage the stored labels are used as they are; afterwards
    ``y = α · y_last + (1 − α) · p``. Without momentum ``y = p`` in every epoch (the official
    ``mc`` off: nothing is frozen). With the confidence truncation
    (only applied with momentum, as in the official code) labels below ``floor`` become 0, **in the
    warm epochs too**: the official ``train_self`` truncates ``y`` after either branch, which matters
    for a stage without post-warm epochs (e.g. ``schedules=0,5``)."""
    if not momentum:
        return p
    y = y_last if warm else alpha * y_last + (1.0 - alpha) * p
    return torch.where(y < floor, torch.zeros_like(y), y) if confident else y
