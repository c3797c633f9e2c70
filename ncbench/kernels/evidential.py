"""DECL's evidential kernels (Qin et al., ACM MM'22; methods-beyond §2.1), pure tensor functions.

From a batch's signed scores ``t`` (``B×B``, rows images, columns captions; ``tanh`` of the head's
logit for SGR/SAF, the cosine for global backbones):

* **evidence** ``e = exp(t / τ)`` (τ = 0.1); image ``i`` has the Dirichlet ``α_i2t[i] = e[i, :] + 1``
  over the captions, caption ``i`` has ``α_t2i[i] = e[:, i] + 1`` over the images;
* **EDL loss** per row (target ``y``: one-hot at the pair if it is taken as clean, all-zero if
  noisy): ``Σ_j (y_j − α_j/S)² + Σ_j α_j (S − α_j) / (S² (S + 1)) + λ₂ · KL(Dir(α̃) ‖ Dir(1))`` with
  ``α̃ = (α − 1)(1 − y) + 1``, ``S = Σ_j α_j`` (the official ``mse_loss`` and ``KL``);
* **robust dynamic hinge** per pair: the mean of the ``K`` largest hinges
  ``[γ − t_ii + t_ij]₊`` of its row plus the ``K`` largest ``[γ − t_jj + t_ij]₊`` of its column
  (``γ = 0.2``), with ``K = max(⌊B₀ − η · step⌋, μ)`` annealed over the global step (``B₀`` the
  configured batch size, η = 0.025, μ = 5; ``B − 1`` for a smaller batch);
* **decision** (``get_correspondence``): ``E' = e + eᵀ`` row-normalised; pair ``i`` is clean iff
  ``argmax_j E'[i, j] = i``; its continuous form, the pair's own share ``E'[i, i]`` (the official
  ``norm_es_eye``), is the decision score; **uncertainty** ``u = B/S_i2t + B/S_t2i`` (0 < u ≤ 2).
"""

from __future__ import annotations

import torch

from .losses import hinge_costs


def evidence(signed: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
    return torch.exp(signed / tau)


def dirichlets(e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(α_i2t, α_t2i)``: per image over captions and per caption over images."""
    return e + 1.0, e.T + 1.0


def kl_to_uniform(alpha: torch.Tensor) -> torch.Tensor:
    """``KL(Dir(α) ‖ Dir(1, …, 1))`` per row."""
    k = alpha.shape[1]
    s = alpha.sum(dim=1)
    log_b = torch.lgamma(s) - torch.lgamma(alpha).sum(dim=1)
    log_b_uniform = -torch.lgamma(torch.tensor(float(k), dtype=alpha.dtype, device=alpha.device))
    return ((alpha - 1.0) * (torch.digamma(alpha) - torch.digamma(s)[:, None])).sum(dim=1) + log_b + log_b_uniform


def edl_loss(alpha: torch.Tensor, target: torch.Tensor, lambda2: float = 0.1) -> torch.Tensor:
    """The EDL loss of each row of ``alpha`` against its 0/1 ``target`` row, ``(B,)``."""
    s = alpha.sum(dim=1, keepdim=True)
    m = alpha / s
    err = (target - m).pow(2).sum(dim=1)
    var = (alpha * (s - alpha) / (s * s * (s + 1))).sum(dim=1)
    return err + var + lambda2 * kl_to_uniform((alpha - 1.0) * (1.0 - target) + 1.0)


def hardness(step: int, batch_size: int, batch_len: int, eta: float = 0.025, mu: int = 5) -> int:
    """``K`` of the robust dynamic hinge at global step ``step`` (counted from 1, warm-up included)."""
    k = max(int(batch_size - eta * step), mu)
    return batch_len - 1 if batch_len < k else k


def rdh_loss(signed: torch.Tensor, k: int, margin: float = 0.2) -> torch.Tensor:
    """Per pair, the mean of its row's and its column's ``k`` largest hinges, ``(B,)``."""
    cost_s, cost_im = hinge_costs(signed, margin)
    return (cost_s.topk(k, dim=1).values.sum(dim=1) + cost_im.T.topk(k, dim=1).values.sum(dim=1)) / k


def decl_loss(signed: torch.Tensor, clean: torch.Tensor, k: int, tau: float = 0.1, lambda1: float = 0.8,
              lambda2: float = 0.1, margin: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """``(L_EDL, L_RDH)`` of one batch: the EDL loss of both directions averaged over the pairs
    (targets one-hot for ``clean`` pairs, zero rows for the others), and ``λ₁`` times the summed
    robust dynamic hinge of the clean pairs."""
    a_i2t, a_t2i = dirichlets(evidence(signed, tau))
    target = torch.diag(clean.to(signed.dtype))
    l_edl = (edl_loss(a_i2t, target, lambda2) + edl_loss(a_t2i, target, lambda2)).mean()
    l_rdh = lambda1 * rdh_loss(signed, k, margin)[clean].sum() if bool(clean.any()) else signed.new_zeros(())
    return l_edl, l_rdh


def _uncertainty(e: torch.Tensor) -> torch.Tensor:
    a_i2t, a_t2i = dirichlets(e)
    b = e.shape[0]
    return b / a_i2t.sum(dim=1) + b / a_t2i.sum(dim=1)


def _shared(e: torch.Tensor) -> torch.Tensor:
    both = e + e.T
    return both / both.sum(dim=1, keepdim=True)


def uncertainty(signed: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
    """``u = B/S_i2t + B/S_t2i`` per pair of a batch (0 < u ≤ 2; high for pairs without evidence)."""
    return _uncertainty(evidence(signed, tau))


def shared_evidence(signed: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
    """``E' = e + eᵀ`` row-normalised: each image's share of the symmetrised evidence per caption."""
    return _shared(evidence(signed, tau))


def decision_score(signed: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
    """``E'[i, i]`` per pair: the pair's own share of its row (the official ``norm_es_eye``)."""
    return shared_evidence(signed, tau).diagonal()


def decide(signed: torch.Tensor, tau: float = 0.1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(clean, score, u)`` per pair of a batch: the argmax decision, its score ``E'[i, i]`` and
    the uncertainty (the evidence computed once)."""
    e = evidence(signed, tau)
    norm = _shared(e)
    clean = norm.argmax(dim=1) == torch.arange(signed.shape[0], device=signed.device)
    return clean, norm.diagonal(), _uncertainty(e)
