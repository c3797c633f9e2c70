"""End-to-end throughput: the pairs each epoch trains, per second, and a full run's estimated time.

Builds a dataset at a chosen size (the embedded synthetic one, or random data in the shape of
F30K / COCO / CC152K, ``ncbench.data.shaped``) and times each method's epochs **per phase of its
schedule** (``training_phases``): an epoch of a co-teaching method trains both networks on all pairs
in the warm-up, then each network on its peer's clean split only, and from ``noisy_from`` on also on
the cycled noisy batches (CREAM: clean, then hard, then noisy joins), so one figure for "an epoch"
would hide a factor of two. Every phase is timed on its own epochs (cycling through them), with:

* the pairs each network **trained** in each timed epoch (``trained_pairs``): counted where a
  network encodes captions in training mode with gradients on (every training forward
  ``net(images, tokens, lengths)`` does; predictions and targets under ``no_grad`` or in ``eval()``
  mode do not count), by wrapping the networks the context builds, so any method is counted
  without code of its own; beside all training pairs (``n_train_pairs``);
* what the epoch did before its first step (``plan_s``: the division pass of co-teaching methods).

Then one evaluation of the test split is timed, and a full run at the card's own sizes and the
method's schedule is **estimated** (``RunEstimate``: arithmetic on the timings, not a measurement).
Two references are measured in the same run, because absolute times only compare on one machine:
every phase's throughput relative to ``vanilla`` on the same backbone (all pairs/s and trained
pairs/s), and, for cross-attention backbones (SGR, SAF), one training step's pair scoring
vectorised vs one caption at a time (the official code's structure). Every record carries
versions, git revision and hardware.
"""

from __future__ import annotations

import time
import weakref
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .backbones.base import Backbone
from .benchmarking import min_time
from .data.batching import TrainingSet
from .data.cards import Dataset, DatasetCard, SyntheticCard
from .data.noise import make_noise_index
from .data.shaped import shaped_dataset
from .data.synthetic import SyntheticSpec
from .engine.context import make_context
from .engine.method import Method
from .errors import ConfigError, DataError
from .evaluate import evaluate_split
from .precision import compute, execution
from .registry import DATASETS, METHODS
from .runner import seed_everything

ESTIMATE_NOTE = ("each phase's median epoch × its epochs in the method's schedule, scaled "
                 "by the card's training pairs ÷ the timed ones; one validation per epoch and one test, the timed "
                 "evaluation scaled by images × captions")


# -- the phases of a schedule ------------------------------------------------------------------------
@dataclass(frozen=True)
class Phase:
    """Epochs ``start`` to ``end − 1`` of a schedule, in which every epoch trains the same subsets."""

    name: str
    start: int
    end: int

    @property
    def epochs(self) -> int:
        return self.end - self.start


def training_phases(method: Method) -> list[Phase]:
    """The phases of ``method``'s schedule, from its ``training_phases()`` (name → first epoch; by
    default a warm-up before ``first_steady_epoch`` and the steady epochs after it). Empty phases are
    left out."""
    starts = method.training_phases()
    total = method.total_epochs
    ordered = sorted(starts.items(), key=lambda item: item[1])
    bounds = [min(max(start, 0), total) for _, start in ordered] + [total]
    return [Phase(name, a, b) for (name, _), a, b in zip(ordered, bounds, bounds[1:]) if b > a]


# -- counting the pairs each network trains ------------------------------------------------------------
class TrainedPairs:
    """Per network, the captions (= pairs) it encoded in training mode with gradients on since the
    last ``reset`` (pair-passes: a pair trained twice in an epoch counts twice). ``watch`` wraps a context's ``build_backbone`` so that every network a method
    builds (also one rebuilt mid-run) is counted; the wrapper only counts, so the training is the same."""

    def __init__(self):
        self._counts: weakref.WeakKeyDictionary[Backbone, int] = weakref.WeakKeyDictionary()

    def watch(self, build: Callable[..., Backbone]) -> Callable[..., Backbone]:
        def build_counted(*args, **kwargs) -> Backbone:
            net = build(*args, **kwargs)
            self._count(net)
            return net

        return build_counted

    def _count(self, net: Backbone) -> None:
        encode = net.encode_captions
        self._counts[net] = 0

        def encode_captions(tokens, *args, **kwargs):
            if net.training and torch.is_grad_enabled():
                self._counts[net] += int(tokens.shape[0])
            return encode(tokens, *args, **kwargs)

        net.encode_captions = encode_captions  # on this instance only: forward calls it

    def reset(self) -> None:
        for net in list(self._counts.keys()):
            self._counts[net] = 0

    def of(self, nets: list[torch.nn.Module]) -> list[int]:
        """The count of each of ``nets``: of the backbones built through ``watch`` that it is or holds
        (a method's network may wrap one, as MSCN's meta-corrected scorer does); 0 if none."""
        return [sum(self._counts.get(module, 0) for module in net.modules()) for net in nets]


class _PlanClock:
    """Times a method's ``plan_epoch`` (what an epoch does before its first step): set on the
    method instance, for the bench only."""

    def __init__(self, method: Method, sync: Callable[[], None]):
        self._plan, self._sync, self.seconds = method.plan_epoch, sync, 0.0
        method.plan_epoch = self  # type: ignore[method-assign]

    def __call__(self, epoch: int):
        t0 = time.perf_counter()
        plan = self._plan(epoch)
        self._sync()
        self.seconds += time.perf_counter() - t0
        return plan


# -- the records ----------------------------------------------------------------------------------------
@dataclass
class PhaseTiming:
    """The timed epochs of one phase: wall time, the part before the first step, and the pairs each
    network trained in each."""

    phase: str
    first_epoch: int  # of the phase in the method's schedule
    schedule_epochs: int  # epochs a full run spends in it
    n_train_pairs: int
    epoch_s: list[float] = field(default_factory=list)
    plan_s: list[float] = field(default_factory=list)
    epoch_trained_pairs: list[list[int]] = field(default_factory=list)  # per timed epoch, per network

    @property
    def train_s_per_epoch(self) -> float:
        return float(np.median(self.epoch_s))

    @property
    def plan_s_per_epoch(self) -> float:
        return float(np.median(self.plan_s))

    @property
    def spread(self) -> float:
        """(slowest − fastest epoch) ÷ median: how much the machine moved during the timing."""
        return (max(self.epoch_s) - min(self.epoch_s)) / self.train_s_per_epoch if len(self.epoch_s) > 1 else 0.0

    @property
    def trained_pairs(self) -> list[float]:
        """Pairs each network trained per epoch (mean over the timed epochs)."""
        return [float(np.mean(col)) for col in zip(*self.epoch_trained_pairs)]

    @property
    def pairs_per_s(self) -> float:
        """All training pairs ÷ the median epoch: how fast the epochs get through the data."""
        return self.n_train_pairs / self.train_s_per_epoch

    @property
    def trained_pairs_per_s(self) -> float:
        """Pairs trained (all networks together) ÷ the median epoch."""
        return sum(self.trained_pairs) / self.train_s_per_epoch

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "train_s_per_epoch": round(self.train_s_per_epoch, 4),
                "plan_s_per_epoch": round(self.plan_s_per_epoch, 4), "spread": round(self.spread, 4),
                "trained_pairs": self.trained_pairs, "pairs_per_s": round(self.pairs_per_s, 3),
                "trained_pairs_per_s": round(self.trained_pairs_per_s, 3)}


@dataclass(frozen=True)
class CardSizes:
    """The sizes a full run on a card works at."""

    card: str
    train_pairs: int
    dev_images: int
    dev_captions: int
    test_images: int
    test_captions: int


def card_sizes(card: DatasetCard) -> CardSizes | None:
    """The registered card of this name's own split sizes (the bench's data may be a subset or random
    data in its shape); None if it states none."""
    own = DATASETS.get(card.name) if card.name in DATASETS.names() else card
    cpi = own.captions_per_image
    if own.layout is not None:
        images = own.layout.images
        n = [images.get(s) for s in (own.train_split, own.dev_split, own.test.split)]
    elif isinstance(own, SyntheticCard):
        n = [own.spec.n_train, own.spec.n_dev, own.spec.n_test]
    else:
        return None
    if None in n:
        return None
    return CardSizes(own.name, n[0] * cpi, n[1], n[1] * cpi, n[2], n[2] * cpi)


@dataclass
class RunEstimate:
    """An **estimate** (arithmetic on the timings, not a measurement) of one full run of a method at a
    card's sizes: training steps and division passes (per phase: median epoch × schedule epochs ×
    ``train_scale``), one validation per epoch and one test (the timed evaluation × ``dev_scale``,
    ``test_scale``)."""

    card: str
    epochs: dict[str, int]  # per phase
    train_scale: float  # the card's training pairs ÷ the timed ones
    dev_scale: float  # the card's dev images × captions ÷ those of the timed evaluation
    test_scale: float
    training_s: float
    division_s: float
    validation_s: float
    test_s: float
    note: str = ESTIMATE_NOTE

    @property
    def total_s(self) -> float:
        return self.training_s + self.division_s + self.validation_s + self.test_s

    def to_dict(self) -> dict[str, Any]:
        return {"is_estimate": True, **asdict(self), "total_s": round(self.total_s, 1)}


def estimate_run(phases: list[PhaseTiming], n_train_pairs: int, eval_s: float, eval_pairs: int,
                 sizes: CardSizes) -> RunEstimate:
    """A full run at ``sizes`` from the timed ``phases`` (trained on ``n_train_pairs``) and one timed
    evaluation of ``eval_pairs`` image × caption pairs taking ``eval_s``."""
    train_scale = sizes.train_pairs / n_train_pairs
    dev_scale = sizes.dev_images * sizes.dev_captions / eval_pairs
    test_scale = sizes.test_images * sizes.test_captions / eval_pairs
    steps = sum(p.schedule_epochs * float(np.median(np.subtract(p.epoch_s, p.plan_s))) for p in phases)
    division = sum(p.schedule_epochs * p.plan_s_per_epoch for p in phases)
    epochs = sum(p.schedule_epochs for p in phases)
    return RunEstimate(sizes.card, {p.phase: p.schedule_epochs for p in phases}, round(train_scale, 4),
                       round(dev_scale, 4), round(test_scale, 4), round(steps * train_scale, 2),
                       round(division * train_scale, 2), round(epochs * eval_s * dev_scale, 2),
                       round(eval_s * test_scale, 2))


@dataclass
class Throughput:
    """One method on one backbone: its phases' timings, one evaluation, the estimated full run."""

    method: str
    backbone: str
    device: str
    n_train_pairs: int
    phases: list[PhaseTiming]
    eval_s: float  # one evaluation of the test split (all its images × captions)
    n_test_images: int
    n_test_captions: int
    peak_gpu_mb: float | None
    precision: str = "fp32"
    compiled: bool = False
    estimate: RunEstimate | None = None

    @property
    def steady(self) -> PhaseTiming:
        """The last phase: every subset the method trains has joined."""
        return self.phases[-1]

    @property
    def train_s_per_epoch(self) -> float:
        return self.steady.train_s_per_epoch

    @property
    def pairs_per_s(self) -> float:
        return self.steady.pairs_per_s

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "phases": [p.to_dict() for p in self.phases],
                "estimate": self.estimate.to_dict() if self.estimate else None}


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


@dataclass
class _Timed:
    """One phase of one built method, being timed."""

    method: Method
    clock: _PlanClock
    phase: Phase
    record: PhaseTiming
    run: int = 0  # epochs of this phase run so far (timed or not)

    def next_epoch(self) -> int:
        """The phase's epochs in turn, from its first (a phase shorter than the timing is cycled)."""
        return self.phase.start + self.run % self.phase.epochs


def measure(methods: list[str], backbone: str, ds: Dataset, device: str, repeats: int, precision: str = "fp32",
            compile: bool = False, noise: float = 0.2, seed: int = 0,
            backbone_config: dict[str, Any] | None = None, warmup: int = 1) -> list[Throughput]:
    """Time ``methods`` on one backbone, each phase of each method's schedule apart: every phase
    first trains ``warmup`` untimed epochs (compilation, allocator, lazy initialisation would
    otherwise be charged to the first one timed); then ``repeats`` rounds, each timing one more
    epoch of every phase of every method in turn, so that a change in the machine's load falls on
    all alike; then one evaluation of the test split per method (after an untimed one, with
    ``warmup``), and the estimated full run. A phase's figure is the median of its epochs, with
    their spread. All of it runs in the run's ``execution`` scope (TF32 setting, compilation cap)."""
    with execution(precision, compile):
        return _measure(methods, backbone, ds, device, repeats, precision, compile, noise, seed, backbone_config,
                        warmup)


def _measure(methods, backbone, ds, device, repeats, precision, compile, noise, seed, backbone_config,
             warmup) -> list[Throughput]:
    dev = torch.device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    counter = TrainedPairs()
    built: list[tuple[str, Method, list[_Timed]]] = []
    for method in methods:
        generator = seed_everything(seed)
        ctx = make_context(ds, make_noise_index(ds.train.caption_to_row(), noise, seed), backbone,
                           backbone_config or {}, dev, generator, compile=compile)
        ctx.build_backbone = counter.watch(ctx.build_backbone)
        mcls = METHODS.get(method)
        m = mcls(mcls.make_config(_schedule(ds)), ctx)
        clock = _PlanClock(m, sync)
        built.append((method, m, [_Timed(m, clock, p, PhaseTiming(p.name, p.start, p.epochs, len(ctx.train)))
                                  for p in training_phases(m)]))
    timed = [t for _, _, phases in built for t in phases]

    def train_one(t: _Timed, record: bool) -> None:
        epoch = t.next_epoch()
        counter.reset()
        t.clock.seconds = 0.0
        t0 = time.perf_counter()
        with compute(dev, precision):
            t.method.train_epoch(epoch)
        sync()
        seconds = time.perf_counter() - t0
        t.run += 1
        if record:
            t.record.epoch_s.append(round(seconds, 4))
            t.record.plan_s.append(round(t.clock.seconds, 4))
            t.record.epoch_trained_pairs.append(counter.of(t.method.networks()))

    for t in timed:
        for _ in range(warmup):
            train_one(t, record=False)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    for _ in range(repeats):
        for t in timed:
            train_one(t, record=True)
    sizes = card_sizes(ds.card)
    eval_pairs = ds.test.n_images * ds.test.n_captions
    if warmup and built:  # the first evaluation pays for lazy initialisation: not charged to the first method
        evaluate_split(built[0][1].networks(), ds.test, dev, precision=precision)
    out = []
    for name, m, phases in built:
        t1 = time.perf_counter()
        evaluate_split(m.networks(), ds.test, dev, precision=precision)
        sync()
        eval_s = time.perf_counter() - t1
        peak = torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None
        records = [t.record for t in phases]
        n = records[0].n_train_pairs
        out.append(Throughput(name, backbone, device, n, records, round(eval_s, 4), ds.test.n_images,
                              ds.test.n_captions, None if peak is None else round(peak, 1), precision,
                              compile and type(m.networks()[0]).has_compiled_kernels(),
                              estimate_run(records, n, eval_s, eval_pairs, sizes) if sizes else None))
    return out


def relative_to_vanilla(rows: list[Throughput]) -> dict[tuple[str, str, str], tuple[float, float]]:
    """Each phase's (all pairs/s, trained pairs/s) ÷ vanilla's on the same backbone and device,
    keyed by (method, backbone, phase); rows without a vanilla reference are left out."""
    ref = {(r.backbone, r.device): r.steady for r in rows if r.method == "vanilla" and r.steady.trained_pairs_per_s > 0}
    return {(r.method, r.backbone, p.phase): (p.pairs_per_s / v.pairs_per_s,
                                              p.trained_pairs_per_s / v.trained_pairs_per_s)
            for r in rows if (v := ref.get((r.backbone, r.device))) is not None for p in r.phases}


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


def time_pair_kernel(backbone: str, ds: Dataset, device: str, batch: int = 128, rounds: int = 5, precision: str = "fp32",
                     backbone_config: dict[str, Any] | None = None) -> PairKernel | None:
    """Time one batch of ``batch`` training pairs scored all at once and caption by caption
    (minimum of ``rounds`` after a warm-up call each); ``None`` for a backbone whose captions are
    single vectors (its score is one matrix product: there is no per-caption loop to compare)."""
    dev = torch.device(device)
    torch.manual_seed(0)
    net, train = _probe(backbone, ds, backbone_config)
    net.train().to(dev)
    b = train.batch(np.arange(min(batch, len(train)))).to(dev)
    with torch.no_grad(), compute(dev, precision):
        img, cap = net.encode_images(b.images), net.encode_captions(b.tokens, b.lengths)
    if cap.dim() != 3:
        return None
    img, cap = img.float().requires_grad_(), cap.float().requires_grad_()
    lengths = b.lengths.tolist()

    def best_ms(score) -> float:
        def step():
            with compute(dev, precision):
                out = score(net, img, cap, lengths)
            out.float().sum().backward()

        step()  # warm-up call, untimed
        return 1e3 * min_time(step, rounds, torch.cuda.synchronize if dev.type == "cuda" else None)

    return PairKernel(backbone, device, len(b), round(best_ms(score_all_pairs), 3), round(best_ms(score_per_caption), 3))
