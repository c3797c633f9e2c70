"""``vse_bow``: a bag-of-words VSE backbone for small real data.

Image: mean over regions when features are ``(R, D)``, then ``fc(x) + mlp(x)`` as ``vse_light``,
L2-normalised. Text: the mean of the caption's word embeddings (``<start>``, ``<end>`` and padding
left out; ``<unk>`` kept), then one linear layer, L2-normalised. Similarity: cosine.

Why it exists: on a few thousand training captions (the Flickr8k cards: 1,495 and 3,000) a Bi-GRU
trained from scratch has far more parameters than the data can pin down, while a caption's words
already say most of what it means: a closed-form bag-of-words ridge map (the ``probe`` method)
beats a trained Bi-GRU there. An order-free text encoder with the same loss gives the robust
methods a model that can learn from such data. Not a paper backbone; the paper datasets keep
``vse_light``, ``sgr``, ``saf`` and ``vse_inf``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data.vocab import END, START
from ..errors import ConfigError
from ..registry import BACKBONES
from .base import BackboneConfig, CosineBackbone, mean_regions

IMAGE_HEADS = ("mlp", "linear", "shift")


@dataclass
class BowConfig(BackboneConfig):
    embed_dim: int = 256
    word_dim: int = 256
    mlp_hidden: int = 256
    image_head: str = "mlp"  # mlp: fc + MLP (as vse_light); linear: fc only; shift: the features plus a learned offset


def bag_of_words_mask(tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``(n, L)`` float mask of the caption words that enter a bag of words: within the length, not
    the ``<start>``/``<end>`` wrappers (padding is 0 and outside the length)."""
    pos = torch.arange(tokens.shape[1], device=tokens.device)[None, :]
    valid = pos < lengths.to(tokens.device)[:, None]
    return (valid & (tokens != START) & (tokens != END)).to(torch.float32)


@BACKBONES.register("vse_bow")
class BowVSE(CosineBackbone):
    """Bag-of-words VSE: MLP image head, mean word embedding + linear text head, cosine (small data)."""

    Config = BowConfig
    search_space = {"image_head": IMAGE_HEADS}

    def __init__(self, config: BowConfig, vocab_size: int, feature_dim: int):
        super().__init__(config, vocab_size, feature_dim)
        e = config.embed_dim
        if config.image_head not in IMAGE_HEADS:
            raise ConfigError(f"vse_bow: image_head must be one of {', '.join(IMAGE_HEADS)}, got {config.image_head!r}")
        if config.image_head == "shift":
            e = feature_dim  # the text side maps into the image feature space
            self.shift = nn.Parameter(torch.zeros(feature_dim))
        else:
            self.fc = nn.Linear(feature_dim, e)
            nn.init.xavier_uniform_(self.fc.weight)
            nn.init.zeros_(self.fc.bias)
        if config.image_head == "mlp":
            self.mlp = nn.Sequential(nn.Linear(feature_dim, config.mlp_hidden), nn.ReLU(), nn.Linear(config.mlp_hidden, e))
        self.embed = nn.Embedding(vocab_size, config.word_dim, padding_idx=0)
        self.text_fc = nn.Linear(config.word_dim, e)
        nn.init.uniform_(self.embed.weight, -0.1, 0.1)

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        images = mean_regions(images)
        head = self.config.image_head
        if head == "shift":
            return F.normalize(images + self.shift, dim=-1)
        x = self.fc(images)
        return F.normalize(x + self.mlp(images) if head == "mlp" else x, dim=-1)

    def encode_captions(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = bag_of_words_mask(tokens, lengths).to(self.embed.weight.dtype)
        pooled = (self.embed(tokens) * mask[..., None]).sum(1) / mask.sum(1).clamp(min=1.0)[:, None]
        return F.normalize(self.text_fc(pooled), dim=-1)
