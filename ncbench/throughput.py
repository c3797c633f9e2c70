"""End-to-end throughput: training pairs per second and evaluation time per method × backbone.

Builds a dataset at a chosen size (the embedded synthetic one, or random data in the shape of
F30K / COCO / CC152K, ``ncbench.data.shaped``), trains each method for a few steady-state epochs
(from the method's ``first_steady_epoch``: warm-up is skipped, so co-teaching methods start at
their first co-training epoch and CRCL after its warm epochs) and times them, then times one
evaluation of the test split. Two references are measured in the same run, because absolute times
only compare on one machine: every method's throughput relative to ``vanilla`` on the same
backbone (what the method's extra work costs), and, for cross-attention backbones (SGR, SAF), one
training step's pair scoring vectorised vs one caption at a time (the official code's structure).
Every record carries versions, git revision and hardware.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .backbones.base import Backbone
from .benchmarking import min_time
from .data.batching import TrainingSet
from .data.cards import Dataset, SyntheticCard
from .data.noise import make_noise_index
from .data.shaped import shaped_dataset
from .data.synthetic import SyntheticSpec
from .engine.context import make_context
from .errors import ConfigError, DataError
from .evaluate import evaluate_split
from .precision import autocast
from .registry import METHODS
from .runner import seed_everything


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
    amp: str = "off"
    compiled: bool = False
    epoch_s: list[float] = field(default_factory=list)  # each timed epoch; train_s_per_epoch is their median

    @property
    def spread(self) -> float:
        """(slowest − fastest epoch) ÷ median: how much the machine moved during the timing."""
        return (max(self.epoch_s) - min(self.epoch_s)) / self.train_s_per_epoch if len(self.epoch_s) > 1 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "spread": round(self.spread, 4)}


def bench_dataset(shape: str, n_train: int, n_test: int, cache_dir: Path) -> Dataset:
    """``synthetic`` (generated once into ``cache_dir``) or random data shaped like ``shape``."""
    if shape == "synthetic":
        card = SyntheticCard("synthetic", "", spec=SyntheticSpec(n_train=n_train, n_dev=10, n_test=n_test))
        return card.load(None, Path(cache_dir) / "data")
    return shaped_dataset(shape, n_train, n_test)


def _schedule(ds: Dataset) -> str:
    """Which per-dataset method defaults apply (batch size above all): the card's own."""
    return ds.card.schedule or ds.card.name


def _probe(backbone: str, ds: Dataset, backbone_config: dict[str, Any] | None = None) -> tuple[Backbone, TrainingSet]:
    """A fresh backbone that has encoded a batch of two training pairs, so that features it cannot
    take (an SGR on global features) are refused before anything is timed; and the clean training
    set it was fed from."""
    ctx = make_context(ds, make_noise_index(ds.train.caption_to_row(), 0.0, 0), backbone, backbone_config or {},
                       torch.device("cpu"), torch.Generator())
    net = ctx.build_backbone()
    with torch.no_grad():
        net.eval().encode_images(ctx.train.batch(np.arange(2)).images)
    return net, ctx.train


def check_backbone(backbone: str, ds: Dataset, backbone_config: dict[str, Any] | None = None) -> None:
    """Raise a ConfigError naming the backbone if it cannot take this dataset's features."""
    try:
        _probe(backbone, ds, backbone_config)
    except DataError as exc:
        raise ConfigError(f"backbone {backbone!r} on {ds.card.name}-shaped features: {exc}") from None


def measure(methods: list[str], backbone: str, ds: Dataset, device: str, repeats: int, amp: str = "off",
            compile: bool = False, noise: float = 0.2, seed: int = 0,
            backbone_config: dict[str, Any] | None = None, warmup: int = 1) -> list[Throughput]:
    """Time ``methods`` on one backbone: each trains ``warmup`` untimed steady-state epochs
    (compilation, allocator, lazy initialisation would otherwise be charged to the first method
    timed); then ``repeats`` rounds, each timing one more epoch of every method in turn, so that a
    change in the machine's load falls on all methods alike; then one evaluation of the test split
    each. A method's figure is the median of its epochs, with their spread."""
    dev = torch.device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    built = []
    for method in methods:
        generator = seed_everything(seed)
        ctx = make_context(ds, make_noise_index(ds.train.caption_to_row(), noise, seed), backbone,
                           backbone_config or {}, dev, generator, compile=compile)
        mcls = METHODS.get(method)
        m = mcls(mcls.make_config(_schedule(ds)), ctx)
        built.append((method, m, len(ctx.train), m.first_steady_epoch))
    next_epoch = {name: start for name, _, _, start in built}

    def train_one(name: str, m) -> float:
        t0 = time.perf_counter()
        with autocast(dev, amp):
            m.train_epoch(next_epoch[name])
        sync()
        next_epoch[name] += 1
        return time.perf_counter() - t0

    for name, m, _, _ in built:
        for _ in range(warmup):
            train_one(name, m)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    times: dict[str, list[float]] = {name: [] for name, *_ in built}
    for _ in range(repeats):
        for name, m, _, _ in built:
            times[name].append(train_one(name, m))
    out = []
    for name, m, n, _ in built:
        t1 = time.perf_counter()
        evaluate_split(m.networks(), ds.test, dev, amp=amp)
        sync()
        eval_s = time.perf_counter() - t1
        per_epoch = float(np.median(times[name]))
        peak = torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None
        out.append(Throughput(name, backbone, device, n, repeats, round(per_epoch, 4), round(n / per_epoch, 1),
                              round(eval_s, 4), ds.test.n_images, None if peak is None else round(peak, 1), amp,
                              compile and type(m.networks()[0]).has_compiled_kernels(),
                              [round(t, 4) for t in times[name]]))
    return out


def relative_to_vanilla(rows: list[Throughput]) -> dict[tuple[str, str], float]:
    """Each row's pairs/s ÷ vanilla's on the same backbone and device (rows without a vanilla
    reference are left out)."""
    ref = {(r.backbone, r.device): r.pairs_per_s for r in rows if r.method == "vanilla"}
    return {(r.method, r.backbone): r.pairs_per_s / ref[(r.backbone, r.device)]
            for r in rows if (r.backbone, r.device) in ref}


# -- the pair-scoring kernel of cross-attention backbones ------------------------------------------
def score_all_pairs(net: Backbone, img: torch.Tensor, cap: torch.Tensor, lengths: list[int]) -> torch.Tensor:
    """The batch's ``(n_img, n_cap)`` score matrix in one call (ncbench's vectorised scoring)."""
    return net.score(img, cap)


def score_per_caption(net: Backbone, img: torch.Tensor, cap: torch.Tensor, lengths: list[int]) -> torch.Tensor:
    """The same matrix one caption (its real words only) at a time: the official SGRAF structure."""
    return torch.cat([net.score(img, cap[c:c + 1, :n]) for c, n in enumerate(lengths)], dim=1)


@dataclass
class PairKernel:
    """Forward + backward of one training batch's score matrix, both ways, on one device."""

    backbone: str
    device: str
    batch: int
    vectorised_ms: float
    per_caption_ms: float

    @property
    def speedup(self) -> float:
        return self.per_caption_ms / self.vectorised_ms

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "speedup": round(self.speedup, 2)}


def time_pair_kernel(backbone: str, ds: Dataset, device: str, batch: int = 128, rounds: int = 5, amp: str = "off",
                     backbone_config: dict[str, Any] | None = None) -> PairKernel | None:
    """Time one batch of ``batch`` training pairs scored all at once and caption by caption
    (minimum of ``rounds`` after a warm-up call each); ``None`` for a backbone whose captions are
    single vectors (its score is one matrix product: there is no per-caption loop to compare)."""
    dev = torch.device(device)
    torch.manual_seed(0)
    net, train = _probe(backbone, ds, backbone_config)
    net.train().to(dev)
    b = train.batch(np.arange(min(batch, len(train)))).to(dev)
    with torch.no_grad(), autocast(dev, amp):
        img, cap = net.encode_images(b.images), net.encode_captions(b.tokens, b.lengths)
    if cap.dim() != 3:
        return None
    img, cap = img.float().requires_grad_(), cap.float().requires_grad_()
    lengths = b.lengths.tolist()

    def best_ms(score) -> float:
        def step():
            with autocast(dev, amp):
                out = score(net, img, cap, lengths)
            out.float().sum().backward()

        step()  # warm-up call, untimed
        return 1e3 * min_time(step, rounds, torch.cuda.synchronize if dev.type == "cuda" else None)

    return PairKernel(backbone, device, len(b), round(best_ms(score_all_pairs), 3), round(best_ms(score_per_caption), 3))
