"""The backbone contract: ``encode_images``, ``encode_captions``, ``score``.

A backbone is a similarity model. Methods never look inside it: they call ``forward`` for a batch
score matrix and ``score`` on cached embeddings for evaluation. Global-embedding backbones score
with one matrix product; cross-attention backbones (SGR, SAF) score every pair, which is why
evaluation calls ``score`` on chunks of embeddings. ``global_features`` is the hook methods such as
BiCro use for per-sample image/text vectors; ``pair_scores`` scores given (image, caption) pairs;
``image_image_scores`` and ``caption_caption_scores`` score images with images and captions with
captions by the same head (structure-based methods such as GSC, CVPR'24: the cosine for global
backbones, the similarity head on region/word pairs for SGR/SAF); ``signed`` maps scores to a
logit-like value in [−1, 1] (DECL), ``nonnegative`` to a similarity in [0, 1] (CREAM's negative
weights).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


def bigru_mean(gru: nn.GRU, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """A bidirectional GRU over the first ``lengths`` steps of each sequence in ``x`` ``(n, L, d)``
    (packed, so padding never enters), the two directions averaged; padded steps are zero."""
    packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    out, _ = gru(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    h = out.shape[-1] // 2
    return (out[..., :h] + out[..., h:]) / 2


@dataclass
class BackboneConfig:
    """Hyperparameters shared by all backbones; subclasses add their own fields."""

    embed_dim: int = 1024


class Backbone(nn.Module):
    Config: type[BackboneConfig] = BackboneConfig
    # ``ncbench tune``: backbone option → values a trial may take (the same for every method)
    search_space: dict[str, tuple] = {}

    def __init__(self, config: BackboneConfig, vocab_size: int, feature_dim: int):
        super().__init__()
        self.config = config
        self.vocab_size = vocab_size
        self.feature_dim = feature_dim

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def encode_captions(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def score(self, img_emb: torch.Tensor, cap_emb: torch.Tensor) -> torch.Tensor:
        """``[n_img, n_cap]`` similarities of already-encoded images and captions."""
        raise NotImplementedError

    def test_scores(self, img_emb: torch.Tensor, cap_emb: torch.Tensor) -> torch.Tensor:
        """``score`` at test time: every image × every caption, eval mode, no gradient (what evaluation
        ranks). A backbone may restructure it (SGR/SAF share the image-only and caption-only work)."""
        return self.score(img_emb, cap_emb)

    def compile_kernels(self) -> None:
        """Compile the hot path with ``torch.compile`` (``--compile``). Default: nothing worth it (a
        global-embedding score is one matrix product); cross-attention backbones override this."""

    @classmethod
    def has_compiled_kernels(cls) -> bool:
        return cls.compile_kernels is not Backbone.compile_kernels

    def pair_scores(self, img_emb: torch.Tensor, cap_emb: torch.Tensor, block: int = 256) -> torch.Tensor:
        """``[n]`` similarities of image ``i`` with caption ``i`` (the diagonal of ``score``, in blocks)."""
        return torch.cat([self.score(img_emb[i:i + block], cap_emb[i:i + block]).diagonal()
                          for i in range(0, img_emb.shape[0], block)])

    def global_features(self, img_emb: torch.Tensor, cap_emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One vector per image and per caption (the embeddings themselves for global backbones)."""
        return img_emb, cap_emb

    def image_image_scores(self, img_emb: torch.Tensor) -> torch.Tensor:
        """``[n, n]`` similarities of already-encoded images with each other, by the head that
        ``score`` uses for image–caption pairs and in the same units (a cosine, or SGR/SAF's sigmoid
        score). Entry ``[a, b]`` scores image ``b`` (the query) against image ``a``, the orientation of
        ``score`` (rows: the side attended over, columns: the query); symmetric for a cosine."""
        raise NotImplementedError(f"{type(self).__name__} has no image–image scores")

    def caption_caption_scores(self, cap_emb: torch.Tensor) -> torch.Tensor:
        """``[n, n]`` similarities of already-encoded captions with each other, as
        ``image_image_scores``: entry ``[a, b]`` scores caption ``b``'s words (the query) against
        caption ``a`` (what they attend over, for a cross-attention head)."""
        raise NotImplementedError(f"{type(self).__name__} has no caption–caption scores")

    def signed(self, scores: torch.Tensor) -> torch.Tensor:
        """Scores as a signed, logit-like value in [−1, 1], for methods that need one (DECL's
        ``tanh(z)``). Default: the scores themselves (a cosine already is one); a sigmoid head
        overrides this with ``tanh`` of its logit."""
        return scores

    def nonnegative(self, scores: torch.Tensor) -> torch.Tensor:
        """Scores as a similarity in [0, 1], for methods that share mass in proportion to it (CREAM's
        negative weights). Default: a cosine mapped to ``(s + 1) / 2``; a sigmoid head's scores are
        one already (SGR/SAF override this with the identity)."""
        return (scores + 1) / 2

    def forward(self, images: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.score(self.encode_images(images), self.encode_captions(tokens, lengths))


class CosineBackbone(Backbone):
    """A global-embedding backbone: images and captions are encoded to L2-normalised vectors and a
    pair's similarity is their dot product (one matrix product for a block of pairs)."""

    def score(self, img_emb: torch.Tensor, cap_emb: torch.Tensor) -> torch.Tensor:
        return img_emb @ cap_emb.T

    def pair_scores(self, img_emb: torch.Tensor, cap_emb: torch.Tensor, block: int = 256) -> torch.Tensor:
        return (img_emb * cap_emb).sum(dim=-1)

    def image_image_scores(self, img_emb: torch.Tensor) -> torch.Tensor:
        """The cosine of every two image embeddings (they are L2-normalised)."""
        return img_emb @ img_emb.T

    def caption_caption_scores(self, cap_emb: torch.Tensor) -> torch.Tensor:
        """The cosine of every two caption embeddings (they are L2-normalised)."""
        return cap_emb @ cap_emb.T


def mean_regions(images: torch.Tensor) -> torch.Tensor:
    """One vector per image: region features ``(n, R, D)`` averaged, global features ``(n, D)`` as they are."""
    return images.mean(dim=1) if images.ndim == 3 else images
