"""BiCro's soft correspondence labels from bi-directional similarity consistency (spec §4.4).

*Anchors* are the pairs of a clean batch the peer network matches best: the ``⌊B/10⌋ + 1`` largest
un-normalised NCR predictions ``P_i = clip(0.2 − ℓ_i/2, 0, 0.2)``. For every sample ``x`` and anchor
``a``, the closeness of their images ``s^v(x, a)`` and of their texts ``s^t(x, a)`` is compared:
a correctly matched pair is as close to an anchor on the image side as on the text side. For the
nearest anchor in image space ``a_v`` and in text space ``a_t``::

    r_v = q_v if q_v < 1 else 1/q_v,  q_v = s^v/s^t at a_v
    r_t = q_t if q_t < 1 else 1/q_t,  q_t = s^t/s^v at a_t

(the official ``SIM_SELE``: the modality that chose the anchor is the numerator. With positive
closeness this is ``min(s^v/s^t, s^t/s^v)`` in both directions; with cosines of opposite signs the
ratio is negative and stays as it is, e.g. v = 0.3, t = −0.6 gives r_v = −0.5, r_t = −2.)

Default ``form="cosine"``: closeness = cosine similarity of global features (what the official
training scripts run, and what produced the reported numbers). ``form="distance"``: the paper's
formulation with Euclidean distances (nearest = smallest distance). Labels:

* clean batch: anchors get 1; others ``0.5 + (r_v + r_t)/4`` (cosine form) or ``(r_v + r_t)/2``
  (distance form); values ``≤ threshold`` become 0; clamped to [0, 1];
* noisy batch: ``(r_v + r_t)/2``, zeroed ``≤ threshold``, clamped to [0, 1].

All batched; no Python loop over samples.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .rectify import top_k_count

EPS = 1e-8


def rank_for_anchors(raw_prediction: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(anchors, others)``: the ``⌊B/10⌋ + 1`` samples with the largest un-normalised prediction,
    and the rest **in ascending order of prediction**, exactly as the official
    ``idx = torch.argsort(p); idx[-k:], idx[:-k]`` (the order matters for ``official_scatter``;
    ties, common late in training when many predictions sit at the clip value, are broken by
    the same call, so on CPU the choice is deterministic and equal to the official one)."""
    n = raw_prediction.numel()
    k = min(top_k_count(n), n)
    order = torch.argsort(raw_prediction)
    return order[n - k:], order[: n - k]


def select_anchors(raw_prediction: torch.Tensor) -> torch.Tensor:
    """Indices of the ``⌊B/10⌋ + 1`` samples with the largest un-normalised prediction."""
    return rank_for_anchors(raw_prediction)[0]


def _safe_div(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a / torch.where(b.abs() < EPS, torch.full_like(b, EPS) * torch.where(b < 0, -1.0, 1.0), b)


def consistency_ratios(
    img: torch.Tensor, txt: torch.Tensor, anchor_img: torch.Tensor, anchor_txt: torch.Tensor, form: str = "cosine"
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(r_v, r_t)`` for every sample against its nearest anchor in each modality."""
    if form == "cosine":
        s_v = F.normalize(img, dim=-1) @ F.normalize(anchor_img, dim=-1).T  # (B, K)
        s_t = F.normalize(txt, dim=-1) @ F.normalize(anchor_txt, dim=-1).T
        a_v, a_t = s_v.argmax(dim=1), s_t.argmax(dim=1)
    elif form == "distance":
        s_v = torch.cdist(img, anchor_img)
        s_t = torch.cdist(txt, anchor_txt)
        a_v, a_t = s_v.argmin(dim=1), s_t.argmin(dim=1)
    else:
        raise ValueError(f"unknown consistency form {form!r} (cosine or distance)")
    rows = torch.arange(img.shape[0], device=img.device)

    def ratio(top: torch.Tensor, other: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        q = _safe_div(top[rows, a], other[rows, a])
        return torch.where(q < 1, q, _safe_div(other[rows, a], top[rows, a]))

    return ratio(s_v, s_t, a_v), ratio(s_t, s_v, a_t)


def clean_batch_labels(
    r_v: torch.Tensor, r_t: torch.Tensor, anchors: torch.Tensor, threshold: float = 0.5, form: str = "cosine",
    official_scatter: bool = False, others: torch.Tensor | None = None,
) -> torch.Tensor:
    """Labels of a labeled batch: 1 for anchors, the consistency score for the others.

    ``official_scatter`` reproduces the official code's misalignment (§4.7 (1)): the ``m``-th
    non-anchor sample *in the order of* ``others`` (the official: ascending raw prediction, as
    ``rank_for_anchors`` returns them; batch order if not given) receives the score computed for
    batch position ``m``."""
    score = 0.5 + (r_v + r_t) / 4 if form == "cosine" else (r_v + r_t) / 2
    score = torch.where(score <= threshold, torch.zeros_like(score), score).clamp(0.0, 1.0)
    labels = torch.ones_like(score)
    is_anchor = torch.zeros_like(score, dtype=torch.bool)
    is_anchor[anchors] = True
    if others is None:
        others = (~is_anchor).nonzero().flatten()
    labels[others] = score[: others.numel()] if official_scatter else score[others]
    return labels


def noisy_batch_labels(r_v: torch.Tensor, r_t: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    score = (r_v + r_t) / 2
    return torch.where(score <= threshold, torch.zeros_like(score), score).clamp(0.0, 1.0)


def lowest_loss_sum(per_sample: torch.Tensor, rate: float = 0.3) -> torch.Tensor:
    """BiCro's warm-up loss: the sum of the ``⌊rate · B⌋`` smallest per-sample losses of the batch."""
    k = max(1, int(rate * per_sample.numel()))
    return per_sample.topk(k, largest=False).values.sum()
