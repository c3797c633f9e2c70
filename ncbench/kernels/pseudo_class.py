"""PC²'s pseudo-classification kernels (Duan et al., ACM MM 2024; official ``alipay/PC2-NoiseofWeb``).

PC² adds a classification head to a matching network: captions are treated as categorical labels
through the head's own prediction on them, which gives a non-contrastive auxiliary task, a way to
pick a *pseudo-caption* for a pair judged mismatched, and a second noise statistic (the oscillation
of the prediction). Pure tensor functions, no state; ``methods/pc2.py`` wires them together.

* ``fit_length(words, length)``: a padded caption's word embeddings ``(n, L, E)`` brought to
  ``length`` positions, as the official head input does (the number of image regions, 36 there):
  linear interpolation over the whole padded sequence when ``L > length``, symmetric zero padding
  (``⌊(length − L)/2⌋`` in front) when ``L < length``.
* ``head_input(emb, length)``: one flat vector per item for the head: region / word embeddings
  are flattened (captions first fitted to ``length``); global embeddings are used as they are.
* ``pseudo_classification_loss(img_logits, txt_logits)``: ``(ce, entropy)``: the cross-entropy
  of the image logits against the class the head gives the caption (argmax of its softmax, no
  gradient through it) and the mean per-sample entropy of the image prediction, probabilities
  clamped at 1e-8 (the official ``NonContrastiveLoss`` with hard labels and its ``entropy``). The
  official step minimises ``ce − λ · entropy``.
* ``oscillation(current, previous)``: per row, ``KL(current ‖ previous) = Σ_c p_c (log p_c − log q_c)``
  (the official ``F.kl_div(previous.log(), current, reduction='sum')``, with ``0 log 0 = 0``): how far
  a pair's prediction moved since it was last stored.
* ``clean_targets(w, po_prob, po_clean)``: the soft label of a pair of the clean subset,
  ``w + (1 − w) · p_po · 1[po clean]`` with ``w`` the loss split's clean probability and ``p_po`` the
  oscillation split's.
* ``pseudo_caption_match(p_u, p_l, threshold)``: for each mismatched pair's image prediction, the
  pair of the clean batch with the most similar prediction (cosine; first index on ties), and the
  label of the pseudo pair: that cosine, 0 below ``threshold``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

PROB_FLOOR = 1e-8  # the official entropy clamps probabilities here


def fit_length(words: torch.Tensor, length: int) -> torch.Tensor:
    """``(n, L, E)`` → ``(n, length, E)``: linear interpolation (``align_corners=False``) when ``L >
    length``, zeros ``⌊(length − L)/2⌋`` in front and the rest behind when ``L < length``."""
    n_words = words.shape[1]
    if n_words > length:
        return F.interpolate(words.transpose(1, 2), size=length, mode="linear", align_corners=False).transpose(1, 2)
    if n_words < length:
        pad = length - n_words
        return F.pad(words, (0, 0, pad // 2, pad - pad // 2))
    return words


def head_input(emb: torch.Tensor, length: int | None = None) -> torch.Tensor:
    """One vector per item: ``(n, E)`` as is; ``(n, L, E)`` fitted to ``length`` positions (if given) and
    flattened to ``(n, length · E)``."""
    if emb.ndim == 2:
        return emb
    return (emb if length is None else fit_length(emb, length)).flatten(1)


def pseudo_classification_loss(img_logits: torch.Tensor, txt_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ce, entropy)``: mean cross-entropy of ``img_logits`` against the caption's class (the argmax of
    ``softmax(txt_logits)``), and the mean over images of the entropy of ``softmax(img_logits)``."""
    target = torch.softmax(txt_logits, dim=-1).max(dim=-1).indices
    probs = torch.softmax(img_logits, dim=-1).clamp(min=PROB_FLOOR)
    return F.cross_entropy(img_logits, target), -(probs * probs.log()).sum(dim=1).mean()


def oscillation(current: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    """Per row, ``KL(current ‖ previous)`` of two probability vectors (``0 log 0 = 0``)."""
    return (torch.xlogy(current, current) - current * previous.log()).sum(dim=-1)


def clean_targets(w: torch.Tensor, po_prob: torch.Tensor, po_clean: torch.Tensor) -> torch.Tensor:
    """``w + (1 − w) · po_prob · po_clean``: the loss split's clean probability, topped up by the
    oscillation split's where that split calls the pair clean."""
    return w + (1.0 - w) * po_prob * po_clean.to(w.dtype)


def pseudo_caption_match(p_u: torch.Tensor, p_l: torch.Tensor, threshold: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """``(match, labels)``: ``match[i]`` = the row of ``p_l`` whose cosine with ``p_u[i]`` is largest (the
    first on ties), ``labels[i]`` = that cosine, or 0 where it is below ``threshold``. Gradients flow
    through ``labels`` (detach it for a fixed target)."""
    cos = F.cosine_similarity(p_u[:, None, :], p_l[None, :, :], dim=-1)
    match = cos.argmax(dim=1)
    best = cos.gather(1, match[:, None])[:, 0]
    return match, torch.where(best < threshold, torch.zeros_like(best), best)
