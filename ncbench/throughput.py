"""End-to-end throughput: training pairs per second and evaluation time per method × backbone.

Builds the synthetic dataset at a chosen size, trains each method for a few steady-state epochs
(from the method's ``first_steady_epoch``: warm-up is skipped, so co-teaching methods start at
their first co-training epoch and CRCL after its warm epochs) and times them, then times one evaluation of the test split. Meant for
comparing two commits on the same machine; every record carries versions, git revision and
hardware.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from .data.cards import SyntheticCard
from .data.noise import make_noise_index
from .data.synthetic import SyntheticSpec
from .evaluate import evaluate_split
from .registry import METHODS
from .runner import make_context, seed_everything


@dataclass
class Throughput:
    method: str
    backbone: str
    device: str
    n_train_pairs: int
    epochs_timed: int
    train_s_per_epoch: float
    pairs_per_s: float
    eval_s: float  # one evaluation of the test split (all its images × captions)
    n_test_images: int
    peak_gpu_mb: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure(method: str, backbone: str, n_train: int, n_test: int, device: str, epochs: int,
            cache_dir: Path, noise: float = 0.2, seed: int = 0) -> Throughput:
    card = SyntheticCard("synthetic", "", spec=SyntheticSpec(n_train=n_train, n_dev=10, n_test=n_test))
    ds = card.load(None, Path(cache_dir) / "data")
    dev = torch.device(device)
    generator = seed_everything(seed)
    ctx = make_context(ds, make_noise_index(ds.train.caption_to_row(), noise, seed), backbone, {}, dev, generator)
    mcls = METHODS.get(method)
    m = mcls(mcls.make_config("synthetic"), ctx)
    start = m.first_steady_epoch
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for e in range(start, start + epochs):
        m.train_epoch(e)
    sync()
    train = (time.perf_counter() - t0) / epochs
    t1 = time.perf_counter()
    evaluate_split(m.networks(), ds.test, dev)
    sync()
    eval_s = time.perf_counter() - t1
    peak = torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None
    n = len(ctx.train)
    return Throughput(method, backbone, device, n, epochs, round(train, 4), round(n / train, 1), round(eval_s, 4),
                      ds.test.n_images, None if peak is None else round(peak, 1))
