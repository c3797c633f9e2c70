"""MSCN's pure kernels (Han et al., CVPR 2023, "Noisy Correspondence Learning with Meta Similarity
Correction"; official code hhc1997/MSCN).

* ``adaptive_margin``: the soft margin of the main loss, ``m · s(p)`` with ``p`` the pair's own
  (meta-corrected) similarity and ``s(p) = 1 / (1 + (p / (1 − p))^−2) = p² / (p² + (1 − p)²)``
  (the official ``ContrastiveLoss`` with ``soft_margin="s_adaptive"``; ``p`` carries no gradient).
* ``mscn_loss``: the hardest-negative triplet loss with that margin. The official ``(B,)`` margin
  broadcasts over the columns of both hinge matrices (``m_j`` on column ``j``: in the caption term
  that is the *negative* caption's pair); ``official_broadcast=False`` attaches each pair's margin
  to its positive in both directions (``kernels.losses`` semantics), as the paper writes it.
* ``official_clip``: the official way sims enter the Beta mixture: values ``≥ 1`` become
  ``1 − 10e−4``, values ``≤ 0`` become ``10e−4``, everything in between is kept as it is.
* ``meta_bmm_split``: the purification. A two-component Beta mixture whose components are first
  fitted (method of moments, pomegranate's ``TrueBetaDistribution.from_samples``) to the meta set's
  noisy (component 0) and clean (component 1) similarities, with equal weights, then fitted by EM to
  the training similarities exactly as pomegranate's ``GeneralMixtureModel.fit(stop_threshold,
  max_iterations)`` runs (an E-step; then up to ``max_iter`` rounds of M-step + E-step while the
  summed log-likelihood improves by more than ``tol``; the last E-step's statistics are dropped);
  a pair's clean probability is its posterior of component 1 (``predict_proba(x)[:, 1]``).
* ``lookahead``: the pseudo network's one differentiable step, ``θ' = θ − lr · ∇θ`` (what the
  official ``MetaAdam.meta_step`` does: plain SGD at the current lr, despite its name; the
  gradient is not clipped — the official ``clip_grad_norm_`` acts on ``.grad``, which is empty).
* ``draw_meta_negatives``: the meta set's negatives, training captions (without replacement) paired
  with random training images (with replacement), the whole draw repeated until no caption gets
  its own image (``PrecompDataset_meta_C.get_add_non_correspondence_idx``).

Everything is a tensor function without hidden state; random draws take an explicit generator.
"""

from __future__ import annotations

import math
from typing import Mapping

import torch

from .losses import triplet_loss
from .mixture import BMM1D, SplitFit, _beta_moments

CLIP_EPS = 10e-4  # the official ``1 - 10e-4`` / ``10e-4`` (that is 1e-3)


def adaptive_weight(p: torch.Tensor) -> torch.Tensor:
    """``s(p) = 1 / (1 + (p / (1 − p))^−2)``, written ``p² / (p² + (1 − p)²)`` (equal, finite at 0 and 1)."""
    return p * p / (p * p + (1 - p) * (1 - p))


def adaptive_margin(diag: torch.Tensor, margin: float = 0.2) -> torch.Tensor:
    """The per-pair margin ``margin · s(p)`` from the pairs' own similarities ``diag`` (no gradient)."""
    return margin * adaptive_weight(diag.detach())


def mscn_loss(scores: torch.Tensor, margin: float = 0.2, official_broadcast: bool = False) -> torch.Tensor:
    """Hardest-negative triplet loss of a ``B×B`` score matrix with the adaptive margin of each pair
    (summed over the batch). ``official_broadcast``: margin ``m_j`` on column ``j`` of both terms."""
    m = adaptive_margin(scores.diagonal(), margin)
    if official_broadcast:
        m = m[None, :].expand(scores.shape[0], -1)
    return triplet_loss(scores, m, hard_negative=True)


def official_clip(x: torch.Tensor) -> torch.Tensor:
    """Values ``≥ 1`` → ``1 − 1e−3``, ``≤ 0`` → ``1e−3`` (the official assignment, made in the
    similarities' own dtype as the official NumPy array is; the rest unchanged), as float64."""
    hi, lo = x.new_tensor(1 - CLIP_EPS), x.new_tensor(CLIP_EPS)
    return torch.where(x >= 1, hi, torch.where(x <= 0, lo, x)).to(torch.float64)


def _beta_from_samples(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Method-of-moments ``(α, β)`` of unweighted samples (``TrueBetaDistribution.from_samples``)."""
    return _beta_moments(x, torch.ones_like(x))


def _log_joint(bmm: BMM1D, x: torch.Tensor) -> torch.Tensor:
    """``log π_k + log Beta(x; α_k, β_k)``, ``(N, 2)``."""
    return bmm.weights[None, :].log() + bmm.log_pdf(x)


def fit_meta_bmm(meta_noisy: torch.Tensor, meta_clean: torch.Tensor, x: torch.Tensor, max_iter: int = 10,
                 tol: float = 1e-2) -> BMM1D:
    """The meta-initialised Beta mixture fitted by EM to ``x`` (all inputs already clipped, float64).
    Component 0 starts from the meta noisy pairs, component 1 from the meta clean pairs."""
    (a0, b0), (a1, b1) = _beta_from_samples(meta_noisy), _beta_from_samples(meta_clean)
    half = torch.tensor([0.5, 0.5], dtype=x.dtype, device=x.device)
    bmm = BMM1D(torch.stack([a0, a1]), torch.stack([b0, b1]), half)
    log_joint = _log_joint(bmm, x)
    last = torch.logsumexp(log_joint, dim=1).sum()
    for _ in range(max_iter):
        r = torch.softmax(log_joint, dim=1)
        bmm = _m_step(bmm, x, r)
        log_joint = _log_joint(bmm, x)
        total = torch.logsumexp(log_joint, dim=1).sum()
        if not float(total - last) > tol:
            break
        last = total
    return bmm


def _m_step(bmm: BMM1D, x: torch.Tensor, r: torch.Tensor) -> BMM1D:
    """Weighted moments per component (a component with no weight keeps its parameters, as pomegranate)."""
    alphas, betas = bmm.alphas.clone(), bmm.betas.clone()
    mass = r.sum(dim=0)
    for k in range(2):
        if float(mass[k]) >= 1e-8:
            alphas[k], betas[k] = _beta_moments(x, r[:, k])
    return BMM1D(alphas, betas, mass / mass.sum())


def meta_bmm_split(meta_sims: torch.Tensor, meta_clean: torch.Tensor, sims: torch.Tensor, max_iter: int = 10,
                   tol: float = 1e-2) -> SplitFit:
    """MSCN's purification: the clean probability of every training pair (similarities ``sims``)
    under the Beta mixture initialised on the meta set (``meta_sims`` with ``meta_clean`` True for
    its positive pairs) and fitted to ``sims``; the clean component is 1."""
    meta = official_clip(meta_sims.flatten())
    clean = meta_clean.flatten().to(torch.bool)
    x = official_clip(sims.flatten())
    bmm = fit_meta_bmm(meta[~clean], meta[clean], x, max_iter, tol)
    prob = torch.softmax(_log_joint(bmm, x), dim=1)[:, 1]
    return SplitFit(x, prob.to(sims.dtype), bmm, 1)


def lookahead(params: Mapping[str, torch.Tensor], grads: Mapping[str, torch.Tensor | None],
              lr: float) -> dict[str, torch.Tensor]:
    """``θ − lr · g`` per parameter (a parameter without a gradient is kept as it is)."""
    return {name: p if grads.get(name) is None else p - lr * grads[name] for name, p in params.items()}


def draw_meta_negatives(own: torch.Tensor, candidates: torch.Tensor, count: int, generator: torch.Generator,
                        max_draws: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """``(captions, images)``: ``count`` caption rows drawn without replacement from ``len(own)``
    and as many images drawn with replacement from ``candidates`` (image rows), the image draw
    repeated until no caption ``c`` is paired with its own image row ``own[c]``."""
    captions = torch.randperm(len(own), generator=generator)[:count]
    mine = own[captions]
    for _ in range(max_draws):
        images = candidates[torch.randint(len(candidates), (count,), generator=generator)]
        if not bool((images == mine).any()):
            return captions, images
    raise ValueError(f"no draw of {count} negative images out of {len(candidates)} avoided every caption's own "
                     f"image in {max_draws} tries")


def meta_size(n_train: int, n_dev: int, fraction: float) -> int:
    """How many clean meta pairs: ``fraction`` of the training pairs (F30K: 2% of 145,000 = 2,900),
    at most the dev split's pairs, at least 2."""
    return max(2, min(n_dev, int(math.floor(fraction * n_train))))
