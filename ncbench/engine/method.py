"""The method contract.

A method is a training strategy around one or more backbones (vanilla: one network, NCR/BiCro: two
co-teaching networks). It declares its hyperparameters as a dataclass with the paper's defaults,
per-dataset overrides in ``dataset_defaults``, and trains an epoch as a plan of steps:
``plan_epoch`` decides at the epoch's start what its steps are (their batches' caption ids, and
whatever they share, e.g. a co-divide split), ``train_step`` does one optimisation step,
``end_epoch`` makes an update after the last step that the epoch's checkpoint keeps and
``finish_epoch`` turns the steps' averaged logs into the epoch's logs (changing no state). A step is one iteration: it
may make several optimiser updates (NCR: a clean and a noisy one; CREAM: up to three) and update
auxiliary modules with their own optimisers (L2RM's learned cost), all kept in ``state_dict()``;
``observe_validation`` lets a method see each epoch's validation metrics. Because the plan is data, a
run stopped between two steps (SIGTERM, preemption) saves it with the networks and resumes at the
next step, with the same batches. A method that cannot be cut into steps overrides ``train_epoch``
instead; it is then resumed at epoch boundaries only.

The harness does the rest: it evaluates ``networks()`` (averaging their similarity matrices),
selects the epoch with the best validation rSum, and scores ``clean_probability()`` against the
known noise when a method exposes one. ``correspondence()`` is the method's belief about pairs it
never trained on (scored against human judgments by ``ncbench detect``). Methods never know which
backbone they train.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar

import numpy as np
import torch

from ..backbones.base import Backbone
from ..data.batching import TrainingSet
from ..data.precomp import Split
from ..errors import ConfigError
from ..kernels.mixture import SplitFit
from .optim import set_lr, step_decay

if TYPE_CHECKING:
    from ..evaluate import RetrievalMetrics
    from .correspondence import PairContext


@dataclass
class MethodConfig:
    """Hyperparameters every method has. Subclasses add theirs, with paper defaults."""

    epochs: int = 30
    batch_size: int = 128
    lr: float = 2e-4
    lr_update: int = 15  # multiply lr by lr_decay every lr_update epochs
    grad_clip: float = 2.0
    lr_decay: float = 0.1  # the factor of that decay, in (0, 1] (NCR and most: 0.1; GSC: 0.2)


@dataclass
class TrainContext:
    """What a method gets from the harness."""

    train: TrainingSet
    build_backbone: Callable[..., Backbone]  # build_backbone(extra_tokens=0): a fresh network
    vocab_size: int
    device: torch.device
    generator: torch.Generator  # drives every shuffle of this run
    progress: bool = False
    log: Callable[[str], None] = field(default=lambda msg: None)
    # the dev split as loaded (never noised), for methods that learn from a clean meta set (MSCN);
    # the harness selects epochs on it too. The test split is never handed to a method.
    clean_dev: Split | None = None


@dataclass
class EpochPlan:
    """One epoch, decided at its start: ``steps`` (one entry per optimisation step, e.g. the caption
    ids of its batch) and what the steps share (``data``, e.g. the peer's clean probabilities).
    Saved in a mid-epoch checkpoint, so it must be plain data (arrays, tensors, numbers)."""

    steps: list[Any]
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepLogs:
    """The running sums of the scalar logs of an epoch's steps; ``means()`` averages each key over
    the steps that reported it (summed in step order, so a resumed epoch gets the same floats)."""

    sums: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, logs: dict[str, float]) -> None:
        for key, value in logs.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
            self.counts[key] = self.counts.get(key, 0) + 1

    def means(self) -> dict[str, float]:
        return {key: total / self.counts[key] for key, total in self.sums.items()}


class Method:
    """Base class of method plugins."""

    Config: ClassVar[type[MethodConfig]] = MethodConfig
    dataset_defaults: ClassVar[dict[str, dict[str, Any]]] = {}
    ensemble_size: ClassVar[int] = 1  # networks whose similarities are averaged at test time
    fixed_backbone: ClassVar[str | None] = None  # a method with its own similarity model (probe): its runs' backbone
    recipe_of: ClassVar[str | None] = None  # share this method's recipe (clean_oracle: vanilla's), never tuned alone
    training_free: ClassVar[bool] = False  # the floor reference: fitted in closed form, nothing to tune
    unused_options: ClassVar[tuple[str, ...]] = ()  # MethodConfig fields the method does not use
    uses_ground_truth: ClassVar[bool] = False  # the ceiling reference: sees which pairs are truly clean
    # clean data beyond the noisy training set that the method trains on (MSCN: "dev", its meta set):
    # boards show it in the Selection column, since the dev split also selects every method's epoch
    trains_on_split: ClassVar[str | None] = None
    # ``ncbench tune``: option → the values a trial may take (a dict value sets several options together)
    search_space: ClassVar[dict[str, tuple]] = {}
    # what ``correspondence`` computes, stored with every human-agreement score
    correspondence_estimate: ClassVar[str] = "cosine similarity of the pair, mean over the evaluated networks"

    def __init__(self, config: MethodConfig, ctx: TrainContext):
        self.config = config
        self.ctx = ctx

    # -- configuration -------------------------------------------------------------------------
    @classmethod
    def make_config(cls, dataset: str, overrides: dict[str, Any] | None = None) -> MethodConfig:
        """Paper defaults, then the dataset's defaults, then the user's overrides (type-checked)."""
        return build_config(cls.Config, {**cls.dataset_defaults.get(dataset, {}), **(overrides or {})})

    # -- hooks ---------------------------------------------------------------------------------
    @property
    def total_epochs(self) -> int:
        """Epochs the harness runs (co-teaching methods add their warm-up)."""
        return self.config.epochs

    def selectable(self, epoch: int) -> bool:
        """Whether this epoch may be chosen by model selection (warm-up epochs may not)."""
        return True

    @property
    def first_steady_epoch(self) -> int:
        """The first epoch after any warm-up: where throughput benchmarks start timing."""
        return 0

    def training_phases(self) -> dict[str, int]:
        """What an epoch trains, by the epoch it starts at (``ncbench bench`` times each phase apart;
        co-teaching methods declare warm-up / clean / clean+noisy, CREAM its hard subset too)."""
        return {"warm-up": 0, "steady": self.first_steady_epoch}

    def plan_epoch(self, epoch: int) -> EpochPlan:
        """Everything the epoch does before its first step (learning rate, fresh networks, a loss
        split) and the list of its steps. Draws its batches from ``ctx.generator`` up front."""
        raise NotImplementedError

    def train_step(self, epoch: int, plan: EpochPlan, i: int) -> dict[str, float]:
        """Step ``i`` of ``plan`` (one iteration: one or more optimiser updates); return its scalar logs (e.g. ``{"loss": ...}``).
        Everything it changes must be in ``state_dict()``: a resumed epoch continues from there."""
        raise NotImplementedError

    def end_epoch(self, epoch: int, plan: EpochPlan) -> None:
        """An update at the end of the epoch, after its last step and before ``finish_epoch``,
        validation and the epoch's checkpoint (GSC's re-division of its per-pair targets, an
        average over the epoch): unlike ``finish_epoch`` it may change ``state_dict()``. It runs
        exactly once per epoch: a stop signal during it waits for it to finish, and a run stopped
        after it resumes past it. Its effect is in this epoch's checkpoint and best-epoch snapshot,
        and the next ``plan_epoch`` sees it."""

    def finish_epoch(self, epoch: int, plan: EpochPlan, logs: dict[str, float]) -> dict[str, float]:
        """The epoch's logs from its steps' mean ``logs``; may set diagnostics, must not change
        ``state_dict()`` (a stop during it resumes after the last step, then finishes again): an
        update that must be saved belongs in ``end_epoch``."""
        return logs

    def observe_validation(self, epoch: int, metrics: "RetrievalMetrics") -> None:
        """The harness's validation metrics of ``epoch``, right after they are computed and before the
        epoch's checkpoint (CREAM keeps the warm-up epoch that improves all seven numbers). State it
        changes belongs in ``state_dict()``; it must be idempotent for the same epoch and metrics (a
        stop during validation validates the epoch again after the resume)."""

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """Train one epoch; return scalar logs. By default: the plan, each step, the end, the finish.
        A method that overrides this instead of the hooks is checkpointed at epoch boundaries only
        (and does its end-of-epoch work in it: the trainer calls ``end_epoch`` only between hooks)."""
        plan = self.plan_epoch(epoch)
        logs = StepLogs()
        for i in range(len(plan.steps)):
            logs.add(self.train_step(epoch, plan, i))
        self.end_epoch(epoch, plan)
        return self.finish_epoch(epoch, plan, logs.means())

    @property
    def resumable_steps(self) -> bool:
        """Whether epochs run as plan + steps (so a stop mid-epoch saves the place), i.e. the method
        implements the three hooks and leaves ``train_epoch`` alone."""
        return type(self).train_epoch is Method.train_epoch

    def networks(self) -> list[Backbone]:
        """The networks whose averaged similarity is evaluated."""
        raise NotImplementedError

    def clean_probability(self) -> np.ndarray | None:
        """Per training caption, the method's current belief that the pair is clean (or None)."""
        return None

    def clean_split(self) -> np.ndarray | None:
        """Per training caption, whether the method currently treats the pair as clean (or None)."""
        p = self.clean_probability()
        return None if p is None else p > 0.5

    def subsets(self) -> dict[str, np.ndarray] | None:
        """A division into more than clean and noisy (CREAM: clean / hard / noisy), as boolean masks
        over the training captions, for the detection diagnostics (or None)."""
        return None

    def soft_labels(self) -> np.ndarray | None:
        """Per training caption, the soft correspondence label it last trained with (NaN if unused)."""
        return None

    def split_fit(self) -> SplitFit | None:
        """The loss-mixture fit behind ``clean_probability`` (normalised losses, mixture), if the
        method fits one; the result keeps its histogram for the split plot."""
        return None

    def correspondence(self, pairs: "PairContext") -> np.ndarray:
        """Per given pair, the method's own estimate that the caption describes the image (higher:
        more likely), computed as it would be for a pair of a training batch. Default: the
        similarity, averaged over ``networks()``; methods with a correspondence estimate of their
        own (NCR's adaptive prediction, BiCro's consistency label, CRCL's matching probability)
        override it and say what it is in ``correspondence_estimate``."""
        return torch.stack([pairs.similarity(n) for n in self.networks()]).mean(0).cpu().numpy()

    def optimizers(self) -> list[torch.optim.Optimizer]:
        """The optimisers whose state a checkpoint must keep (the default ``state_dict`` saves them)."""
        return []

    def state_dict(self) -> dict[str, Any]:
        """Everything training needs to continue: networks, optimisers and any label store (methods
        with more state override this). Used for the best-epoch snapshot and for checkpoints."""
        return {**{f"net{i}": n.state_dict() for i, n in enumerate(self.networks())},
                **{f"opt{i}": o.state_dict() for i, o in enumerate(self.optimizers())}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for i, n in enumerate(self.networks()):
            n.load_state_dict(state[f"net{i}"])
        for i, o in enumerate(self.optimizers()):
            o.load_state_dict(state[f"opt{i}"])


class WarmedUp:
    """The schedule of a method with ``warmup_epochs`` before its ``epochs`` (config fields of those
    names): the harness runs both, warm-up epochs are not selectable, and throughput is timed after
    them. A mixin: list it before the ``Method`` base (``class M(WarmedUp, SingleNetwork)``)."""

    @property
    def total_epochs(self) -> int:
        return self.config.warmup_epochs + self.config.epochs

    def selectable(self, epoch: int) -> bool:
        return epoch >= self.config.warmup_epochs

    @property
    def first_steady_epoch(self) -> int:
        return self.config.warmup_epochs


class SingleNetwork(Method):
    """The skeleton of a one-network method: a backbone and its Adam optimiser, the learning rate
    step-decayed per epoch (``lr × lr_decay^(epoch // lr_update)``), shuffled batches of the pairs
    in ``train_ids`` (None: all). Subclasses write ``train_step`` (and ``finish_epoch``); vanilla,
    RCL, DECL and L2RM share it."""

    def __init__(self, config: MethodConfig, ctx: TrainContext):
        super().__init__(config, ctx)
        self.net = ctx.build_backbone().to(ctx.device)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=config.lr)
        self.train_ids: np.ndarray | None = None

    def networks(self) -> list[Backbone]:
        return [self.net]

    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [self.optimizer]

    def plan_epoch(self, epoch: int) -> EpochPlan:
        cfg, ctx = self.config, self.ctx
        set_lr(self.optimizer, step_decay(cfg.lr, epoch, cfg.lr_update, cfg.lr_decay))
        return EpochPlan(ctx.train.id_batches(self.train_ids, cfg.batch_size, generator=ctx.generator, min_size=2))


# The least value of options that any method or backbone having them needs (a run of zero epochs
# selects nothing; a ranking loss needs two pairs per batch); ``lr`` must be above 0, ``lr_decay`` in
# (0, 1] and every float finite. Checked on the values given (command line, recipe, dataset_defaults), not on a class's own
# defaults: probe and CRCL keep an unused ``epochs = 0``.
MIN_OPTION = {"epochs": 1, "batch_size": 2, "warmup_epochs": 0, "embed_dim": 1}
POSITIVE_OPTION = ("lr",)
FACTOR_OPTION = ("lr_decay",)  # a factor in (0, 1]


def build_config(cls: type, values: dict[str, Any]):
    """Instantiate a config dataclass, converting strings from the command line to field types and
    checking their range (``check_option``)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(unknown)} for {cls.__name__}; valid: {', '.join(fields)}")
    kwargs = {}
    defaults = cls()
    for name, value in values.items():
        kwargs[name] = _coerce(name, value, getattr(defaults, name))
        if kwargs[name] != getattr(defaults, name):
            check_option(name, kwargs[name])
    return cls(**kwargs)


def check_option(name: str, value: Any) -> None:
    """A ConfigError naming the option and value when ``value`` is out of range for ``name``."""
    items = value if isinstance(value, tuple) else (value,)
    if any(isinstance(v, float) and not math.isfinite(v) for v in items):
        raise ConfigError(f"option {name}: must be a finite number, got {value!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if name in MIN_OPTION and value < MIN_OPTION[name]:
        raise ConfigError(f"option {name}: must be at least {MIN_OPTION[name]}, got {value!r}")
    if name in POSITIVE_OPTION and value <= 0:
        raise ConfigError(f"option {name}: must be above 0, got {value!r}")
    if name in FACTOR_OPTION and not 0 < value <= 1:
        raise ConfigError(f"option {name}: must be above 0 and at most 1, got {value!r}")


def _coerce(name: str, value: Any, default: Any) -> Any:
    if not isinstance(value, str) or isinstance(default, str):
        if isinstance(default, bool) and not isinstance(value, bool):
            raise ConfigError(f"option {name}: expected true/false, got {value!r}")
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        return value
    try:
        if isinstance(default, bool):
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, tuple):
            return tuple(type(default[0])(v) for v in value.split(",")) if default else tuple(value.split(","))
    except ValueError:
        raise ConfigError(f"option {name}: cannot read {value!r} as {type(default).__name__}") from None
    return value
