"""RCL's complementary contrastive loss (Hu et al., TPAMI'23; methods-beyond §2.4), pure tensor functions.

Batch score matrix ``S`` (rows images, columns captions), temperature ``τ``; the row softmaxes
``P_i2t = softmax(S/τ)`` and ``P_t2i = softmax(Sᵀ/τ)`` (``complementary.batch_probabilities``). The
loss pushes the probability of every *negative* down and never pulls the positive directly, so a
mismatched positive pair gets no gradient towards its wrong partner::

    L = mean_i Σ_{j ∈ neg(i)} f(P_i2t[i, j]) + mean_i Σ_{j ∈ neg(i)} f(P_t2i[i, j])

with ``f`` one of the official code's variants (``CCL.forward``): ``log`` −log(1 − p + ε) (the
default and the scripts'), ``tan`` tan p, ``abs`` p, ``exp`` exp(−(1 − p)), ``gce``
(1 − (1 − p + ε)^q)/q; ``infoNCE`` is −mean log P[i, i] instead (no negatives). ``neg(i)`` is every
other column, or with ``0 < ratio < 1`` a random ``int(ratio·B)`` of them per row (``negative_mask``).
ε = 1e-10 as in the official code. Probabilities by ``softmax`` rather than ``exp / (Σ exp + 1e-10)``
(the same to float precision, and finite for any scores).
"""

from __future__ import annotations

import torch

from .complementary import batch_probabilities

EPS = 1e-10
VARIANTS = ("log", "tan", "abs", "exp", "gce", "infoNCE")


def negative_mask(n: int, ratio: float = -1.0, generator: torch.Generator | None = None,
                  device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(n, n)`` float mask of the negatives each row sums over: every off-diagonal entry, or, for
    ``0 < ratio < 1``, ``int(ratio·n)`` off-diagonal entries per row drawn uniformly (the official
    ``topk`` of uniform noise of the scores' dtype with the diagonal pushed below every other entry;
    the same draws as the official ``rand_like`` given the same seed and ``dtype``)."""
    eye = torch.eye(n, dtype=torch.bool, device=device)
    if ratio <= 0 or ratio >= 1:
        return (~eye).float()
    noise = torch.rand(n, n, generator=generator, dtype=dtype).to(device)
    noise[eye] = -1.0
    keep = noise.topk(int(ratio * n), dim=1).indices
    return torch.zeros(n, n, device=device).scatter_(1, keep, 1.0)


def _criterion(p: torch.Tensor, mask: torch.Tensor, variant: str, q: float) -> torch.Tensor:
    if variant == "log":
        f = -torch.log(1.0 - p + EPS)
    elif variant == "tan":
        f = torch.tan(p)
    elif variant == "abs":
        f = p
    elif variant == "exp":
        f = torch.exp(-(1.0 - p))
    elif variant == "gce":
        f = (1.0 - (1.0 - p + EPS) ** q) / q
    elif variant == "infoNCE":
        return -torch.log(p.diagonal()).mean()
    else:
        raise ValueError(f"unknown complementary loss {variant!r} (one of {', '.join(VARIANTS)})")
    return (f * mask).sum(dim=1).mean()


def complementary_contrastive_loss(scores: torch.Tensor, tau: float = 0.05, variant: str = "log", q: float = 0.2,
                                   mask: torch.Tensor | None = None) -> torch.Tensor:
    """RCL's loss of one batch: both directions' ``f`` summed over the negatives, mean over rows."""
    if mask is None:
        mask = negative_mask(scores.shape[0], device=scores.device)
    p_i2t, p_t2i = batch_probabilities(scores, tau)
    mask = mask.to(scores.dtype)
    return _criterion(p_i2t, mask, variant, q) + _criterion(p_t2i, mask, variant, q)
