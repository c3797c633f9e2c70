"""What a method is given to train with: ``make_context`` builds a ``TrainContext`` from a loaded
dataset, its noise index and a backbone name (used by the runner, ensembles and ``ncbench bench``)."""

from __future__ import annotations

from typing import Any

import torch

from ..data.batching import TrainingSet
from ..data.cards import Dataset
from ..data.noise import NoiseIndex, noisy_split
from ..registry import BACKBONES
from .method import TrainContext, build_config


def make_context(ds: Dataset, noise: NoiseIndex, backbone: str, backbone_config: dict[str, Any],
                 device: torch.device, generator: torch.Generator, progress: bool = False,
                 compile: bool = False) -> TrainContext:
    """What a method is given: the noisy training set (pairs re-drawn by the noise index, corrupted
    caption texts in place of the originals) and a way to build fresh backbones (with
    ``compile``, their kernels compiled, ``Backbone.compile_kernels``). The backbone is looked up
    when first built: a method with its own similarity model (``fixed_backbone``) builds none."""
    feature_dim = int(ds.train.images.shape[-1])

    def build_backbone(extra_tokens: int = 0):
        bcls = BACKBONES.get(backbone)
        net = bcls(build_config(bcls.Config, backbone_config), len(ds.vocab) + extra_tokens, feature_dim)
        if compile:
            net.compile_kernels()
        return net

    return TrainContext(
        train=TrainingSet(noisy_split(ds.train, noise, ds.vocab), noise, pin_memory=device.type == "cuda"),
        build_backbone=build_backbone, vocab_size=len(ds.vocab), device=device, generator=generator, progress=progress,
        clean_dev=ds.dev,
    )
