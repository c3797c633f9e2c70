"""Scoring given image–caption pairs the way a method scores a pair of a training batch.

A method's belief that a pair corresponds is defined inside a batch: NCR's adaptive prediction and
CRCL's matching probability compare the pair with the batch's other images and captions; BiCro
compares it with anchors of a clean batch. ``PairContext`` gives methods that view of pairs that
were never in training (``ncbench detect``'s human-judged pairs): each pair ``j`` sits at position
0 of its own batch, the other ``B − 1`` positions hold its reference pairs (``JudgedPairs.context``),
so a method applies its batch kernel unchanged.

Embeddings are computed once per network; the ``(B, B)`` score matrices are assembled in chunks
from three products (pairs' images × pool captions, pool images × pairs' captions, pool × pool)
and the kernel is mapped over the chunk with ``torch.func.vmap``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..backbones.base import Backbone
from ..data.judgments import JudgedPairs
from ..evaluate import encode_captions, encode_images


@dataclass
class PairEmbeddings:
    img: torch.Tensor  # (N, ...) each judged pair's image
    cap: torch.Tensor  # (N, ...) each judged pair's caption
    pool_img: torch.Tensor  # (P, ...) the reference pool
    pool_cap: torch.Tensor


class PairContext:
    """Judged pairs on a device, each with the reference pairs of its batch."""

    def __init__(self, judged: JudgedPairs, device: torch.device, chunk: int = 512):
        self.judged, self.device, self.chunk = judged, torch.device(device), chunk
        self.context = torch.from_numpy(judged.context).to(self.device)
        self._cache: dict[int, PairEmbeddings] = {}

    def __len__(self) -> int:
        return len(self.judged)

    @property
    def batch_size(self) -> int:
        return self.judged.context_batch

    @torch.no_grad()
    def embed(self, net: Backbone) -> PairEmbeddings:
        if id(net) not in self._cache:
            j, dev = self.judged, self.device
            img = encode_images(net, j.images, np.arange(len(j.images)), dev)  # distinct images and captions
            cap = encode_captions(net, j.tokens, dev)
            self._cache[id(net)] = PairEmbeddings(
                img[torch.from_numpy(j.pair_image).to(dev)], cap[torch.from_numpy(j.pair_caption).to(dev)],
                encode_images(net, j.context_images, np.arange(len(j.context_images)), dev),
                encode_captions(net, j.context_tokens, dev),
            )
        return self._cache[id(net)]

    @torch.no_grad()
    def similarity(self, net: Backbone) -> torch.Tensor:
        """``(N,)``: each pair's own similarity."""
        e = self.embed(net)
        return net.pair_scores(e.img, e.cap)

    @torch.no_grad()
    def reference_batch(self, net: Backbone) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings (images, captions) of the first ``B`` pool pairs: one batch of true pairs."""
        e = self.embed(net)
        return e.pool_img[: self.batch_size], e.pool_cap[: self.batch_size]

    @torch.no_grad()
    def batches(self, net: Backbone):
        """Yield ``(rows, scores)``: pair indices and their ``(C, B, B)`` batch score matrices, the
        judged pair at position 0, its references at 1..B−1 (rows images, columns captions)."""
        e = self.embed(net)
        pool = net.score(e.pool_img, e.pool_cap)  # (P, P)
        for c0 in range(0, len(self), self.chunk):
            rows = torch.arange(c0, min(c0 + self.chunk, len(self)), device=self.device)
            ctx = self.context[rows]  # (C, R)
            own = net.pair_scores(e.img[rows], e.cap[rows])  # (C,)
            img_vs_pool = net.score(e.img[rows], e.pool_cap).gather(1, ctx)  # pair image × reference captions
            pool_vs_cap = net.score(e.pool_img, e.cap[rows]).T.gather(1, ctx)  # reference images × pair caption
            block = pool[ctx[:, :, None], ctx[:, None, :]]  # (C, R, R)
            top = torch.cat([own[:, None, None], img_vs_pool[:, None, :]], dim=2)
            bottom = torch.cat([pool_vs_cap[:, :, None], block], dim=2)
            yield rows, torch.cat([top, bottom], dim=1)

    @torch.no_grad()
    def in_context(self, net: Backbone, per_sample: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """``(N,)``: ``per_sample(scores)[0]`` for each pair's batch, where ``per_sample`` maps a
        ``(B, B)`` batch score matrix to one value per pair (a method's batch kernel)."""
        out = torch.empty(len(self), device=self.device)
        mapped = torch.func.vmap(lambda s: per_sample(s)[0])
        for rows, scores in self.batches(net):
            out[rows] = mapped(scores).float()
        return out
