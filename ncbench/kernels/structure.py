"""GSC's kernels (Zhao et al., CVPR'24; official ``GSC/model/RINCE.py``, ``train_batch`` and
``split_batch``): the batch's intra-modal structure, each pair's structure consistency, the structure
InfoNCE, the whole per-batch loss and the end-of-epoch update of the per-pair targets.

Notation: a batch of B pairs, ``S`` the cross-modal scores (rows images, columns captions),
``I[a, b]`` / ``C[a, b]`` the image–image / caption–caption scores in [0, 1] (item ``b``, the
query, against item ``a``: ``Backbone.image_image_scores`` mapped by ``nonnegative``), ``t`` the
pairs' current targets in [0, 1], τ the cross-modal temperature (0.07).

* ``weighted_structure``: ``Ĩ = I · diag(t)``, ``C̃ = C · diag(t)``: column ``j`` scaled by ``t_j``, so
  a pair believed noisy drops out of everyone's structure (the official ``sims_img *
  targets_batch`` broadcasts over the last axis).
* ``structure_consistency``: ``cos(Ĩ[i, :], C̃[i, :])``: how alike pair ``i``'s image and caption
  relate to the batch (``torch.cosine_similarity``, eps 1e-8, as the official).
* ``structure_loss``: ``T = Ĩ C̃ᵀ`` and ``ℓ_i = −log softmax_k(T[i, k])[i]``, temperature 1, image
  rows only (the official ``info_nce_loss(sims_topo, temp=1.0)``).
* ``gsc_loss``: ``mean_i t_i (ℓ^{i2t}_i + ℓ^{t2i}_i) / 2 + γ · mean_i t_i ℓ^{topo}_i`` with the
  cross-modal InfoNCE at τ (``mining.info_nce_per_sample``), and the pair's matching probability
  ``(P_i2t[i, i] + P_t2i[i, i]) / 2`` at τ (``complementary.batch_match_probability``, the official
  ``preds``) and its consistency, which the epoch stores per pair.
* ``image_to_text_info_nce``: ``mean_i −log P_i2t[i, i]`` at τ, every pair trusted (the official
  ``warmup_batch``).
* ``consistent_posterior``: a two-component GMM on the min-max normalised consistencies of the
  training set, the posterior of the **higher**-mean component (fitted as NCR's ``gmm_split`` on the
  negated values, whose low-mean component it is).
* ``update_targets``: ``y_topo ← β p + (1 − β) y_topo``, ``y_pred ← β preds + (1 − β) y_pred``,
  ``t = min(y_pred, y_topo)`` (β = 0.7).

Every softmax is a ``log_softmax`` (the official divides ``exp`` by a sum of ``exp``: equal where
that is finite; the structure logits ``T`` reach B, where float32 ``exp`` overflows past 88).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .complementary import batch_match_probability
from .mining import info_nce_per_sample
from .mixture import SplitFit, gmm_split


def weighted_structure(intra: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``intra · diag(targets)``: column ``j`` of a ``B×B`` intra-modal score matrix scaled by ``t_j``."""
    return intra * targets[None, :]


def structure_consistency(img_structure: torch.Tensor, cap_structure: torch.Tensor) -> torch.Tensor:
    """``(B,)``: the cosine of row ``i`` of the weighted image and caption structures."""
    return torch.cosine_similarity(img_structure, cap_structure, dim=1, eps=1e-8)


def structure_loss(img_structure: torch.Tensor, cap_structure: torch.Tensor) -> torch.Tensor:
    """``(B,)``: ``−log softmax_k(T[i, k])[i]`` with ``T = Ĩ C̃ᵀ`` (temperature 1, image rows)."""
    logits = img_structure @ cap_structure.T
    return -torch.log_softmax(logits, dim=1).diagonal()


@dataclass
class GSCLoss:
    """One batch's loss, its two terms (means) and the per-pair values the epoch stores."""

    loss: torch.Tensor  # what is minimised
    cross_modal: torch.Tensor  # mean of t · the symmetric InfoNCE
    structure: torch.Tensor  # mean of t · the structure InfoNCE (before γ)
    match_probability: torch.Tensor  # (B,) (P_i2t[i,i] + P_t2i[i,i]) / 2, detached
    consistency: torch.Tensor  # (B,) structure consistency, detached


def gsc_loss(scores: torch.Tensor, img_intra: torch.Tensor, cap_intra: torch.Tensor, targets: torch.Tensor,
             tau: float = 0.07, gamma: float = 0.01) -> GSCLoss:
    """GSC's batch loss (``RINCE.train_batch``) from the cross-modal ``scores``, the intra-modal
    scores (in [0, 1]) and the pairs' targets."""
    cross = info_nce_per_sample(scores, tau) / 2 * targets
    img_s, cap_s = weighted_structure(img_intra, targets), weighted_structure(cap_intra, targets)
    topo = structure_loss(img_s, cap_s) * targets
    with torch.no_grad():
        prob = batch_match_probability(scores.detach(), tau)
        consistency = structure_consistency(img_s.detach(), cap_s.detach())
    return GSCLoss(cross.mean() + gamma * topo.mean(), cross.mean().detach(), topo.mean().detach(), prob, consistency)


def image_to_text_info_nce(scores: torch.Tensor, tau: float = 0.07) -> torch.Tensor:
    """``mean_i −log softmax_j(S[i, j] / τ)[i]``: the warm-up loss (image rows only, no targets)."""
    return -torch.log_softmax(scores / tau, dim=1).diagonal().mean()


def consistent_posterior(consistency: torch.Tensor, max_iter: int = 10, tol: float = 1e-2,
                         reg_covar: float = 5e-4) -> SplitFit:
    """The GMM split of the training set's structure consistencies: ``prob`` is each pair's posterior
    of the higher-mean (consistent, clean) component. The fit is NCR's ``gmm_split`` of the negated
    consistencies (min-max normalised, so its ``x`` is ``1 −`` the normalised consistency)."""
    return gmm_split(-consistency, max_iter, tol, reg_covar)


def update_targets(prob: torch.Tensor, match_probability: torch.Tensor, topo_targets: torch.Tensor,
                   pred_targets: torch.Tensor, beta: float = 0.7) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(topo_targets, pred_targets, targets)`` after one epoch: both moving averages with weight
    ``beta`` on the new value, and their element-wise minimum."""
    topo_targets = beta * prob + (1 - beta) * topo_targets
    pred_targets = beta * match_probability + (1 - beta) * pred_targets
    return topo_targets, pred_targets, torch.minimum(pred_targets, topo_targets)
