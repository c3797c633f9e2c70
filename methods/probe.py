"""``probe``: the training-free floor, a closed-form ridge map from caption words to image features.

Each training caption becomes a bag of words (counts over the vocabulary; ``<start>``/``<end>``
and padding left out, ``<unk>`` kept); its paired image (the pair *as given*, injected noise
included) is the image features, mean-pooled over regions when there are several. A ridge
regression with an intercept maps words to features in closed form (``ncbench.kernels.ridge``);
a caption is scored against an image by the cosine of its predicted features and the image's
features, both centred on the training mean. Nothing is trained by gradient descent and nothing
knows which pairs are noisy: a learned method that cannot beat this on the same split and noise
index has learned less than a linear fit of word counts.

The penalty α is chosen like every other method's epoch: one "epoch" per α of ``alphas``
(ascending), each validated on the dev split, the best one tested. The run's backbone is always
``bow-ridge`` (``--backbones`` does not apply). Not a paper method; it is the lower reference
row on every leaderboard of its dataset.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ncbench.backbones.base import BackboneConfig, CosineBackbone, mean_regions
from ncbench.backbones.bow import bag_of_words_mask
from ncbench.engine.method import Method, MethodConfig, TrainContext
from ncbench.errors import ConfigError
from ncbench.kernels.ridge import bag_of_words, ridge_path
from ncbench.registry import METHODS


@dataclass
class ProbeConfig(MethodConfig):
    alphas: tuple[float, ...] = (0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
    epochs: int = 0  # unused: one epoch per alpha


class RidgeProbeNet(CosineBackbone):
    """The probe as a similarity model: centred image features vs centred, mapped bags of words."""

    def __init__(self, vocab_size: int, feature_dim: int):
        super().__init__(BackboneConfig(embed_dim=feature_dim), vocab_size, feature_dim)
        self.register_buffer("x_mean", torch.zeros(vocab_size, dtype=torch.float64))
        self.register_buffer("y_mean", torch.zeros(feature_dim, dtype=torch.float64))
        self.register_buffer("weight", torch.zeros(vocab_size, feature_dim, dtype=torch.float64))

    def words(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return bag_of_words(tokens, bag_of_words_mask(tokens, lengths), self.vocab_size)

    @staticmethod
    def pooled(images: torch.Tensor) -> torch.Tensor:
        return mean_regions(images).to(torch.float64)

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.pooled(images) - self.y_mean, dim=-1).float()

    def encode_captions(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return F.normalize((self.words(tokens, lengths) - self.x_mean) @ self.weight, dim=-1).float()


@METHODS.register("probe")
class Probe(Method):
    """Training-free floor: closed-form bag-of-words ridge map to image features, on the noisy pairs as given."""

    Config = ProbeConfig
    fixed_backbone = "bow-ridge"
    training_free = True
    unused_options = ("epochs", "batch_size", "lr", "lr_update", "grad_clip")
    correspondence_estimate = "cosine of the caption's ridge-predicted image features and the image's features (centred)"

    def __init__(self, config: ProbeConfig, ctx: TrainContext):
        if config.epochs:
            raise ConfigError("probe's length is set by alphas (one epoch per ridge penalty), not epochs")
        if not config.alphas or any(a <= 0 for a in config.alphas):
            raise ConfigError(f"probe: alphas must be positive ridge penalties, got {config.alphas}")
        super().__init__(config, ctx)
        self.net = RidgeProbeNet(ctx.vocab_size, ctx.train.split.images.shape[-1]).to(ctx.device)
        self._fit = None

    @property
    def total_epochs(self) -> int:
        return len(self.config.alphas)

    def networks(self):
        return [self.net]

    @torch.no_grad()
    def _fit_all(self):
        """Bags of words of every training caption and the features of its paired image, in
        batches, then the ridge maps of all penalties at once."""
        ctx, xs, ys = self.ctx, [], []
        for batch in ctx.train.loader(batch_size=1024, shuffle=False):
            b = batch.to(ctx.device)
            xs.append(self.net.words(b.tokens, b.lengths))
            ys.append(self.net.pooled(b.images))
        return ridge_path(torch.cat(xs), torch.cat(ys), self.config.alphas)

    def train_epoch(self, epoch: int) -> dict[str, float]:
        if self._fit is None:
            self._fit = self._fit_all()
        self.net.x_mean.copy_(self._fit.x_mean)
        self.net.y_mean.copy_(self._fit.y_mean)
        self.net.weight.copy_(self._fit.weights[epoch])
        return {"alpha": float(self.config.alphas[epoch])}
