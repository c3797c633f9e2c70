"""``vse_light``: a light VSE-style backbone for global or mean-pooled features.

Image: mean over regions when features are ``(R, D)``, then ``fc(x) + mlp(x)`` (a linear
projection plus a two-layer MLP, as VSE∞'s image head), L2-normalised. Text: word embedding →
one-layer bidirectional GRU with the two directions averaged (as in SGR/SAF) → mean over the valid
words → L2-normalised. Similarity: cosine, one matrix product. Cheap enough to train on a CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import BACKBONES
from .base import BackboneConfig, CosineBackbone, bigru_mean, mean_regions


@dataclass
class LightConfig(BackboneConfig):
    embed_dim: int = 256
    word_dim: int = 128
    mlp_hidden: int = 256


@BACKBONES.register("vse_light")
class LightVSE(CosineBackbone):
    """Light VSE: MLP image head + Bi-GRU text encoder, cosine similarity (global features)."""

    Config = LightConfig

    def __init__(self, config: LightConfig, vocab_size: int, feature_dim: int):
        super().__init__(config, vocab_size, feature_dim)
        e = config.embed_dim
        self.fc = nn.Linear(feature_dim, e)
        self.mlp = nn.Sequential(nn.Linear(feature_dim, config.mlp_hidden), nn.ReLU(), nn.Linear(config.mlp_hidden, e))
        self.embed = nn.Embedding(vocab_size, config.word_dim, padding_idx=0)
        self.gru = nn.GRU(config.word_dim, e, batch_first=True, bidirectional=True)
        nn.init.uniform_(self.embed.weight, -0.1, 0.1)
        nn.init.xavier_uniform_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        images = mean_regions(images)
        return F.normalize(self.fc(images) + self.mlp(images), dim=-1)

    def encode_captions(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        out = bigru_mean(self.gru, self.embed(tokens), lengths)
        mask = (torch.arange(tokens.shape[1], device=tokens.device)[None, :] < lengths.to(tokens.device)[:, None])
        pooled = (out * mask[..., None]).sum(1) / lengths.to(out.dtype).to(out.device)[:, None]
        return F.normalize(pooled, dim=-1)
