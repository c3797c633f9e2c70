"""Training pairs after noise, and batches of them.

A training sample is a caption row ``c`` paired with image row ``t2i[c]`` (the noisy index), so
the same code serves clean and corrupted data. Batches are drawn with an explicit
``torch.Generator``: the same seed gives the same batches on any machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from .noise import NoiseIndex
from .precomp import Split


@dataclass
class Batch:
    images: torch.Tensor  # (B, D) or (B, R, D) float32
    tokens: torch.Tensor  # (B, L) int64, 0-padded
    lengths: torch.Tensor  # (B,) int64
    ids: torch.Tensor  # (B,) caption rows in the training split

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def to(self, device: torch.device | str) -> "Batch":
        nb = torch.device(device).type == "cuda"
        return Batch(*(t.to(device, non_blocking=nb) for t in (self.images, self.tokens, self.lengths, self.ids)))


def pad_tokens(seqs: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    out = np.zeros((len(seqs), int(lengths.max(initial=1))), dtype=np.int64)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return torch.from_numpy(out), torch.from_numpy(lengths)


def gather_rows(images: np.ndarray, rows: np.ndarray, pin: bool = False) -> torch.Tensor:
    """Rows of a (memory-mapped) feature array as a float32 tensor, read in sorted order; with
    ``pin``, in page-locked memory, so that ``.to("cuda", non_blocking=True)`` copies asynchronously."""
    order = np.argsort(rows, kind="stable")
    block = torch.empty((len(rows), *images.shape[1:]), dtype=torch.float32, pin_memory=pin)
    block.numpy()[order] = images[rows[order]]
    return block


class TrainingSet:
    """The training split with its noise index applied. ``pin_memory`` (set for CUDA runs): batch
    features are gathered into page-locked memory, so ``Batch.to`` copies them without blocking."""

    def __init__(self, split: Split, noise: NoiseIndex, pin_memory: bool = False):
        self.split = split
        self.t2i = noise.t2i
        self.clean = noise.clean
        self.noise_ratio = noise.ratio  # the nominal ratio the user asked for (not the ground truth)
        self.pin_memory = pin_memory

    def __len__(self) -> int:
        return self.split.n_captions

    def batch(self, ids: np.ndarray) -> Batch:
        ids = np.asarray(ids, dtype=np.int64)
        tokens, lengths = pad_tokens([self.split.tokens[i] for i in ids])
        if self.pin_memory:
            tokens, lengths = tokens.pin_memory(), lengths.pin_memory()
        return Batch(gather_rows(self.split.images, self.t2i[ids], self.pin_memory), tokens, lengths,
                     torch.from_numpy(ids))

    def id_batches(
        self,
        ids: np.ndarray | None = None,
        batch_size: int = 128,
        shuffle: bool = True,
        generator: torch.Generator | None = None,
        min_size: int = 1,
    ) -> list[np.ndarray]:
        """The caption ids of each batch over ``ids`` (default: all captions), in one shuffled
        order drawn now from ``generator``. The last batch may be smaller; one of fewer than
        ``min_size`` ids is left out (training steps pass 2: a ranking loss needs two pairs)."""
        ids = np.arange(len(self), dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64)
        if shuffle:
            ids = ids[torch.randperm(len(ids), generator=generator).numpy()]
        batches = [ids[b0 : b0 + batch_size] for b0 in range(0, len(ids), batch_size)]
        return [b for b in batches if len(b) >= min_size]

    def loader(
        self,
        ids: np.ndarray | None = None,
        batch_size: int = 128,
        shuffle: bool = True,
        generator: torch.Generator | None = None,
    ) -> Iterator[Batch]:
        """Batches over ``ids`` (default: all captions); the order is drawn at the first batch."""
        for batch_ids in self.id_batches(ids, batch_size, shuffle, generator):
            yield self.batch(batch_ids)

    def n_batches(self, n_ids: int, batch_size: int) -> int:
        return -(-n_ids // batch_size)
