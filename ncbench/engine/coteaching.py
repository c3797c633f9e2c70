"""The co-teaching skeleton shared by NCR and BiCro, written once.

Two networks A and B of the same backbone, each with its own Adam optimiser. First ``warmup_epochs``
epochs train A for a whole epoch, then B, on all (noisy) pairs with the method's warm-up loss.
Then every epoch:

1. **co-divide**: both networks, in eval mode and without gradients, compute per-sample losses over
   the whole training set on the same shuffled batches; each network's losses give a clean
   probability per pair (``fit_split``: NCR's GMM, BiCro's Beta mixture);
2. each network is trained on its **peer's** split: a labeled loader over the pairs the peer
   considers clean and a cycled unlabeled loader over the rest, one batch of each per step
   (``co_step``: the method's label rectification and loss); A for a whole epoch, then B;
3. evaluation averages A's and B's similarity matrices (``ensemble_size = 2``).

The learning rate is ``lr × lr_decay^(e // lr_update)`` with ``e`` the co-training epoch; warm-up uses a
constant ``lr``. Warm-up epochs are not eligible for model selection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from ..backbones.base import Backbone
from ..data.batching import Batch
from ..kernels.losses import per_sample_triplet
from ..kernels.mixture import SplitFit, split_clean
from .division import per_sample_statistic
from .method import EpochPlan, Method, MethodConfig, TrainContext, WarmedUp
from .optim import optimizer_step, set_lr, step_decay


@dataclass
class CoTeachingConfig(MethodConfig):
    warmup_epochs: int = 5
    p_threshold: float = 0.5  # clean if the peer's clean probability exceeds this
    noisy_from: int = -1  # co-training epoch from which the noisy subset is trained on (-1: epochs // 2)
    margin: float = 0.2


class CoTeaching(WarmedUp, Method):
    """Base class: subclasses implement ``warmup_loss``, ``fit_split`` and ``co_step``."""

    Config = CoTeachingConfig
    ensemble_size = 2
    # ``ncbench tune``: the schedule knobs both co-teaching methods share; each adds its paper's own
    search_space = {
        "lr": (2e-4, 5e-4, 1e-3, 2e-3),
        "batch_size": (32, 64, 128),
        "warmup_epochs": (2, 5, 10),
        "schedule": ({"epochs": 10, "lr_update": 8, "noisy_from": 5}, {"epochs": 20, "lr_update": 15, "noisy_from": 10},
                     {"epochs": 30, "lr_update": 20, "noisy_from": 15}),
    }

    def __init__(self, config: CoTeachingConfig, ctx: TrainContext):
        super().__init__(config, ctx)
        self.nets: list[Backbone] = [ctx.build_backbone().to(ctx.device) for _ in range(2)]
        self.opts = [torch.optim.Adam(n.parameters(), lr=config.lr) for n in self.nets]
        n = len(ctx.train)
        self._prob: np.ndarray | None = None
        self._split: np.ndarray | None = None
        self._fit: SplitFit | None = None  # network A's split of the current epoch (diagnostics)
        self._labels = np.full(n, np.nan)

    # -- schedule (WarmedUp) -------------------------------------------------------------------
    @property
    def noisy_from(self) -> int:
        return self.config.noisy_from if self.config.noisy_from >= 0 else self.config.epochs // 2

    def training_phases(self) -> dict[str, int]:
        """What an epoch trains, by the epoch it starts at (``ncbench bench`` times each): the
        warm-up (all pairs, each network), the peer's clean split, and from ``noisy_from`` on the
        clean split with the cycled noisy batches."""
        w = self.config.warmup_epochs
        return {"warm-up": 0, "clean": w, "clean+noisy": w + self.noisy_from}

    def networks(self) -> list[Backbone]:
        return self.nets

    def clean_probability(self) -> np.ndarray | None:
        return self._prob

    def clean_split(self) -> np.ndarray | None:
        return self._split

    def soft_labels(self) -> np.ndarray | None:
        return self._labels if self._prob is not None else None

    def split_fit(self) -> SplitFit | None:
        return self._fit

    # -- hooks for subclasses --------------------------------------------------------------------
    def warmup_loss(self, net: Backbone, batch: Batch) -> torch.Tensor:
        raise NotImplementedError

    def fit_split(self, losses: torch.Tensor) -> SplitFit:
        """The loss split (clean probability per pair and the fitted mixture) from one network's
        per-sample losses over the training set."""
        raise NotImplementedError

    def co_step(self, k: int, clean: Batch, w: torch.Tensor, noisy: Batch | None, epoch: int) -> dict[str, float]:
        """One step of network ``k`` on a labeled batch (with the peer's clean probabilities ``w``) and,
        from ``noisy_from`` on, an unlabeled batch. Returns scalar logs."""
        raise NotImplementedError

    # -- the skeleton ------------------------------------------------------------------------------
    def plan_epoch(self, epoch: int) -> EpochPlan:
        """Warm-up: A's batches then B's. Co-training: the co-divide (both networks' splits), then
        A's steps on B's split and B's steps on A's; a step is ``(k, clean ids, noisy ids or None)``."""
        cfg, ctx = self.config, self.ctx
        if epoch < cfg.warmup_epochs:
            for opt in self.opts:
                set_lr(opt, cfg.lr)
            steps = [(k, ids) for k in range(2)
                     for ids in ctx.train.id_batches(batch_size=cfg.batch_size, generator=ctx.generator, min_size=2)]
            return EpochPlan(steps, {"warmup": True})
        for opt in self.opts:
            set_lr(opt, step_decay(cfg.lr, epoch - cfg.warmup_epochs, cfg.lr_update, cfg.lr_decay))
        fits = [self.fit_split(loss) for loss in self.per_sample_losses()]
        probs = [f.prob.cpu() for f in fits]
        self._labels[:] = np.nan
        steps = [step for k in range(2) for step in self._split_steps(k, split_clean(probs[1 - k], cfg.p_threshold))]
        return EpochPlan(steps, {"warmup": False, "probs": probs, "fit": fits[0]})

    def _split_steps(self, k: int, clean: torch.Tensor) -> list[tuple]:
        """Network ``k``'s steps on its peer's split: each labeled batch with the next batch of the
        cycled unlabeled loader; stops at the first batch of fewer than two pairs (official code)."""
        ctx, bs = self.ctx, self.config.batch_size
        clean_np = clean.numpy()
        clean_ids, noisy_ids = np.flatnonzero(clean_np), np.flatnonzero(~clean_np)
        unlabeled = self._cycle(noisy_ids) if len(noisy_ids) else None
        steps = []
        for xc in ctx.train.id_batches(clean_ids, bs, generator=ctx.generator):
            xu = next(unlabeled) if unlabeled is not None else None
            if len(xc) < 2 or (xu is not None and len(xu) < 2):
                break
            steps.append((k, xc, xu))
        return steps

    def _cycle(self, ids: np.ndarray) -> Iterator[np.ndarray]:
        while True:
            yield from self.ctx.train.id_batches(ids, self.config.batch_size, generator=self.ctx.generator)

    def train_step(self, epoch: int, plan: EpochPlan, i: int) -> dict[str, float]:
        cfg, ctx = self.config, self.ctx
        k, net = plan.steps[i][0], self.nets[plan.steps[i][0]]
        if plan.data["warmup"]:
            net.train()
            loss = self.warmup_loss(net, ctx.train.batch(plan.steps[i][1]).to(ctx.device))
            return {f"loss_{'AB'[k]}": optimizer_step(self.opts[k], loss, net.parameters(), cfg.grad_clip,
                                                      f"warm-up epoch {epoch}, net {'AB'[k]}")}
        _, clean_ids, noisy_ids = plan.steps[i]
        self.nets[1 - k].eval()
        net.train()
        xc = ctx.train.batch(clean_ids).to(ctx.device)
        xu = ctx.train.batch(noisy_ids).to(ctx.device) if noisy_ids is not None else None
        w = plan.data["probs"][1 - k][torch.from_numpy(clean_ids)].to(ctx.device)
        logs = self.co_step(k, xc, w, xu, epoch - cfg.warmup_epochs)
        return {f"{key}_{'AB'[k]}": v for key, v in logs.items()}

    def finish_epoch(self, epoch: int, plan: EpochPlan, logs: dict[str, float]) -> dict[str, float]:
        if plan.data["warmup"]:
            return {"loss_A": logs.get("loss_A", 0.0), "loss_B": logs.get("loss_B", 0.0)}
        probs = plan.data["probs"]
        self._fit = plan.data["fit"]
        mean_prob = ((probs[0] + probs[1]) / 2).numpy()
        self._prob, self._split = mean_prob, split_clean(torch.from_numpy(mean_prob), self.config.p_threshold).numpy()
        return {**logs, "clean_fraction": float(self._split.mean())}

    def split_statistic(self, scores: torch.Tensor) -> torch.Tensor:
        """The per-pair loss the division is fitted to: the mean hinge at the fixed margin (NCR, BiCro)."""
        return per_sample_triplet(scores, self.config.margin)

    def per_sample_losses(self) -> list[torch.Tensor]:
        """Both networks' ``split_statistic`` over the training set, on the same shuffled batches."""
        ctx = self.ctx
        return per_sample_statistic(self.nets, ctx.train, self.config.batch_size, ctx.generator, ctx.device,
                                    self.split_statistic)

    def record_labels(self, ids: torch.Tensor, labels: torch.Tensor) -> None:
        """Remember the soft labels given to pairs this epoch (for the detection diagnostics)."""
        self._labels[ids.cpu().numpy()] = labels.detach().float().cpu().numpy()

    def state_dict(self):
        return {"nets": [n.state_dict() for n in self.nets], "opts": [o.state_dict() for o in self.opts],
                "labels": self._labels.copy()}

    def load_state_dict(self, state):
        for n, s in zip(self.nets, state["nets"]):
            n.load_state_dict(s)
        for o, s in zip(self.opts, state["opts"]):
            o.load_state_dict(s)
        self._labels[:] = state["labels"]
