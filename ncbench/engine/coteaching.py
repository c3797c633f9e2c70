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

The learning rate is ``lr × 0.1^(e // lr_update)`` with ``e`` the co-training epoch; warm-up uses a
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
from .method import Method, MethodConfig, TrainContext
from .optim import optimizer_step, set_lr, step_decay


@dataclass
class CoTeachingConfig(MethodConfig):
    warmup_epochs: int = 5
    p_threshold: float = 0.5  # clean if the peer's clean probability exceeds this
    noisy_from: int = -1  # co-training epoch from which the noisy subset is trained on (-1: epochs // 2)
    margin: float = 0.2


class CoTeaching(Method):
    """Base class: subclasses implement ``warmup_loss``, ``fit_split`` and ``co_step``."""

    Config = CoTeachingConfig
    ensemble_size = 2

    def __init__(self, config: CoTeachingConfig, ctx: TrainContext):
        super().__init__(config, ctx)
        self.nets: list[Backbone] = [ctx.build_backbone().to(ctx.device) for _ in range(2)]
        self.opts = [torch.optim.Adam(n.parameters(), lr=config.lr) for n in self.nets]
        n = len(ctx.train)
        self._prob: np.ndarray | None = None
        self._split: np.ndarray | None = None
        self._fit: SplitFit | None = None  # network A's split of the current epoch (diagnostics)
        self._labels = np.full(n, np.nan)

    # -- schedule ------------------------------------------------------------------------------
    @property
    def total_epochs(self) -> int:
        return self.config.warmup_epochs + self.config.epochs

    def selectable(self, epoch: int) -> bool:
        return epoch >= self.config.warmup_epochs

    @property
    def first_steady_epoch(self) -> int:
        return self.config.warmup_epochs

    @property
    def noisy_from(self) -> int:
        return self.config.noisy_from if self.config.noisy_from >= 0 else self.config.epochs // 2

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
    def train_epoch(self, epoch: int) -> dict[str, float]:
        cfg = self.config
        if epoch < cfg.warmup_epochs:
            return self._warmup_epoch(epoch)
        e = epoch - cfg.warmup_epochs
        for opt in self.opts:
            set_lr(opt, step_decay(cfg.lr, e, cfg.lr_update))
        losses = self.per_sample_losses()
        fits = [self.fit_split(loss) for loss in losses]
        probs = [f.prob for f in fits]
        self._fit = fits[0]
        self._labels[:] = np.nan
        logs: dict[str, float] = {}
        for k in range(2):
            w = probs[1 - k]
            clean = split_clean(w, cfg.p_threshold)
            for key, v in self._train_on_split(k, w, clean, e).items():
                logs[f"{key}_{'AB'[k]}"] = v
        mean_prob = ((probs[0] + probs[1]) / 2).cpu().numpy()
        self._prob, self._split = mean_prob, split_clean(torch.from_numpy(mean_prob), cfg.p_threshold).numpy()
        logs["clean_fraction"] = float(self._split.mean())
        return logs

    def _warmup_epoch(self, epoch: int) -> dict[str, float]:
        cfg, ctx = self.config, self.ctx
        logs = {}
        for k, (net, opt) in enumerate(zip(self.nets, self.opts)):
            set_lr(opt, cfg.lr)
            net.train()
            total, steps = 0.0, 0
            for batch in ctx.train.loader(batch_size=cfg.batch_size, generator=ctx.generator):
                if len(batch) < 2:
                    continue
                loss = self.warmup_loss(net, batch.to(ctx.device))
                total += optimizer_step(opt, loss, net.parameters(), cfg.grad_clip, f"warm-up epoch {epoch}, net {'AB'[k]}")
                steps += 1
            logs[f"loss_{'AB'[k]}"] = total / max(steps, 1)
        return logs

    @torch.no_grad()
    def per_sample_losses(self) -> list[torch.Tensor]:
        """Both networks' per-sample mean hinge (fixed margin) over the training set, same shuffled batches."""
        ctx = self.ctx
        for net in self.nets:
            net.eval()
        out = [torch.zeros(len(ctx.train), device=ctx.device) for _ in self.nets]
        for batch in ctx.train.loader(batch_size=self.config.batch_size, generator=ctx.generator):
            b = batch.to(ctx.device)
            for net, store in zip(self.nets, out):
                store[b.ids] = per_sample_triplet(net(b.images, b.tokens, b.lengths), self.config.margin).float()
        return out

    def _cycle(self, ids: np.ndarray) -> Iterator[Batch]:
        while True:
            yield from self.ctx.train.loader(ids, self.config.batch_size, generator=self.ctx.generator)

    def _train_on_split(self, k: int, w: torch.Tensor, clean: torch.Tensor, e: int) -> dict[str, float]:
        ctx = self.ctx
        clean_np = clean.cpu().numpy()
        clean_ids, noisy_ids = np.flatnonzero(clean_np), np.flatnonzero(~clean_np)
        self.nets[1 - k].eval()
        self.nets[k].train()
        unlabeled = self._cycle(noisy_ids) if len(noisy_ids) else None
        sums: dict[str, float] = {}
        steps = 0
        for xc in ctx.train.loader(clean_ids, self.config.batch_size, generator=ctx.generator):
            xu = next(unlabeled) if unlabeled is not None else None
            if len(xc) < 2 or (xu is not None and len(xu) < 2):
                break
            xc = xc.to(ctx.device)
            xu = xu.to(ctx.device) if xu is not None else None
            for key, v in self.co_step(k, xc, w[xc.ids], xu, e).items():
                sums[key] = sums.get(key, 0.0) + v
            steps += 1
        return {key: v / max(steps, 1) for key, v in sums.items()}

    def record_labels(self, ids: torch.Tensor, labels: torch.Tensor) -> None:
        """Remember the soft labels given to pairs this epoch (for the detection diagnostics)."""
        self._labels[ids.cpu().numpy()] = labels.detach().float().cpu().numpy()

    def state_dict(self):
        return {"nets": [n.state_dict() for n in self.nets], "opts": [o.state_dict() for o in self.opts]}

    def load_state_dict(self, state):
        for n, s in zip(self.nets, state["nets"]):
            n.load_state_dict(s)
        for o, s in zip(self.opts, state["opts"]):
            o.load_state_dict(s)
