"""The per-sample statistic behind every data division, computed once for any number of networks.

Methods that split the training pairs into clean and noisy each epoch (NCR, BiCro, L2RM, CREAM)
first score every pair with its networks in eval mode, without gradients, on shuffled batches of
the training set (each pair's statistic depends on the batch it lands in, as in the official code):
``per_sample_statistic`` does that pass once and returns one vector per network.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from ..backbones.base import Backbone
from ..data.batching import TrainingSet


@torch.no_grad()
def per_sample_statistic(nets: Sequence[Backbone], train: TrainingSet, batch_size: int, generator: torch.Generator,
                         device: torch.device, statistic: Callable[[torch.Tensor], torch.Tensor]) -> list[torch.Tensor]:
    """``statistic(scores)`` (a batch score matrix → one value per pair) of every training pair, for
    each network, on the same shuffled batches (float32, on ``device``)."""
    for net in nets:
        net.eval()
    out = [torch.zeros(len(train), device=device) for _ in nets]
    for batch in train.loader(batch_size=batch_size, generator=generator):
        b = batch.to(device)
        for net, store in zip(nets, out):
            store[b.ids] = statistic(net(b.images, b.tokens, b.lengths)).float()
    return out
