"""``vse_inf``: VSE∞ (Chen et al., CVPR'21) with the Generalised Pooling Operator, as CRCL uses it
(spec §2.4).

Image: ``fc(x) + MLP(x)`` per region (MLP = Linear(D→512) → BatchNorm → ReLU → Linear(512→1024)),
GPO over the regions, L2-normalised. Global features ``(n, D)`` are one region, for which GPO is
the identity. Regions that augmentation blanked out (every value ≤ 1e-9 in magnitude, as
``data.augment.mask_regions`` writes them) are left out of the pooling, which is what dropping them
from the set does in the official code.
Caption: ``Embedding(V, 300)`` → Bi-GRU(1024), directions averaged → GPO over the valid words →
L2-normalised. Similarity: cosine, one matrix product.

GPO: sinusoidal position encodings (dim 32) of positions ``0..K−1`` → Bi-GRU(32), directions
averaged → ``Linear(32→1)`` scores (padding −10000) → ``softmax(score / 0.1)`` weights; the features
are sorted in descending order **per dimension** over the valid positions and summed with those
weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..registry import BACKBONES
from .base import BackboneConfig, CosineBackbone, bigru_mean
from .sgraf import l2norm

MASKED = -10000.0


def positional_encoding(length: int, dim: int) -> torch.Tensor:
    """``(length, dim)`` sinusoidal encodings: sin on even, cos on odd dimensions."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * -(math.log(10000.0) / dim))
    pe = torch.zeros(length, dim)
    pe[:, 0::2] = torch.sin(position * freq)
    pe[:, 1::2] = torch.cos(position * freq)
    return pe


class GPO(nn.Module):
    """Generalised Pooling Operator: learned weights over sorted feature values."""

    def __init__(self, pe_dim: int = 32, hidden: int = 32, temperature: float = 0.1):
        super().__init__()
        self.pe_dim, self.temperature = pe_dim, temperature
        self.gru = nn.GRU(pe_dim, hidden, batch_first=True, bidirectional=True)
        self.linear = nn.Linear(hidden, 1, bias=False)

    def weights(self, lengths: torch.Tensor, size: int) -> torch.Tensor:
        """``(n, size)`` pooling weights of positions ``0..size−1`` for sets of ``lengths`` items."""
        valid = torch.arange(size, device=lengths.device)[None, :] < lengths[:, None]
        pe = positional_encoding(size, self.pe_dim).to(lengths.device)[None].expand(lengths.shape[0], -1, -1)
        pe = pe * valid[..., None]
        scores = self.linear(bigru_mean(self.gru, pe, lengths)).squeeze(-1).masked_fill(~valid, MASKED)
        return torch.softmax(scores / self.temperature, dim=1)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Pool ``(n, K, D)`` features whose valid items are ``mask`` ``(n, K)`` (anywhere in the set)."""
        lengths = mask.sum(1)
        size = int(lengths.max())
        ordered = features.masked_fill(~mask[..., None], MASKED).sort(dim=1, descending=True).values[:, :size]
        valid = torch.arange(size, device=features.device)[None, :] < lengths[:, None]
        ordered = ordered.masked_fill(~valid[..., None], 0.0)
        return (ordered * self.weights(lengths, size)[..., None].to(ordered.dtype)).sum(1)


@dataclass
class VSEInfConfig(BackboneConfig):
    embed_dim: int = 1024
    word_dim: int = 300
    mlp_hidden: int = 512
    pe_dim: int = 32
    gpo_hidden: int = 32
    gpo_temperature: float = 0.1


@BACKBONES.register("vse_inf")
class VSEInf(CosineBackbone):
    """VSE∞: FC + MLP region encoder and Bi-GRU word encoder, each pooled by its own GPO."""

    Config = VSEInfConfig

    def __init__(self, config: VSEInfConfig, vocab_size: int, feature_dim: int):
        super().__init__(config, vocab_size, feature_dim)
        e = config.embed_dim
        self.fc = nn.Linear(feature_dim, e)
        self.mlp = nn.ModuleList([nn.Linear(feature_dim, config.mlp_hidden), nn.BatchNorm1d(config.mlp_hidden),
                                  nn.Linear(config.mlp_hidden, e)])
        self.img_pool = GPO(config.pe_dim, config.gpo_hidden, config.gpo_temperature)
        self.embed = nn.Embedding(vocab_size, config.word_dim)
        self.gru = nn.GRU(config.word_dim, e, batch_first=True, bidirectional=True)
        self.txt_pool = GPO(config.pe_dim, config.gpo_hidden, config.gpo_temperature)
        r = (6.0 / (feature_dim + e)) ** 0.5
        nn.init.uniform_(self.fc.weight, -r, r)
        nn.init.zeros_(self.fc.bias)
        nn.init.uniform_(self.embed.weight, -0.1, 0.1)

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        regions = images if images.ndim == 3 else images[:, None]
        n, k, d = regions.shape
        flat = regions.reshape(n * k, d)
        lin1, bn, lin2 = self.mlp
        mlp = lin2(torch.relu(bn(lin1(flat)))).view(n, k, -1)
        mask = regions.abs().amax(-1) > 1e-9  # regions blanked by augmentation are not in the set
        mask = torch.where(mask.any(1, keepdim=True), mask, torch.ones_like(mask))
        return l2norm(self.img_pool(self.fc(regions) + mlp, mask))

    def encode_captions(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        lengths = lengths.to(tokens.device)
        words = bigru_mean(self.gru, self.embed(tokens), lengths)
        mask = torch.arange(tokens.shape[1], device=tokens.device)[None, :] < lengths[:, None]
        return l2norm(self.txt_pool(words, mask))
