"""``l2rm``: Learning to ReMatch mismatched pairs (Han et al., CVPR 2024).

One network and a small learned cost function C_φ (spec: methods-beyond §2.2, from the official
``main_L2RM.py`` and ``models.py`` @ a766c22). Noisy pairs are not discarded: their images and
captions are *re-matched* by a partial optimal-transport plan under the learned cost, and the
network is trained towards that plan.

* **Warm-up** (``warmup_epochs``): the robust symmetric CE (``RCE``) on all pairs, τ = 0.05.
* **Division**, every later epoch: per-pair mean hinge (margin 0.2, eval mode, shuffled batches),
  min-max normalised, clipped to [10⁻³, 1 − 10⁻³], a two-component Beta mixture (10 EM iterations);
  the clean component is the one with the larger posterior at x = 10⁻³, ``w`` its posterior, clean
  iff ``w > p_threshold``. Clean and noisy batches of exactly ``batch_size`` pairs (drop-last: the
  cost is a Linear over the batch axis); one clean and one (cycled) noisy batch per step; the epoch
  has as many steps as full clean batches.
* **Cost learning**, each step: ``k ~ U{1..⌊0.1 B⌋}`` clean pairs' images are put at ``k`` random
  slots of the image queue (the previous step's noisy images; ``queue_length = B``), the network
  (eval, no gradient) scores the queue against the clean captions, and C_φ takes one Adam step
  (``lr_cost``) on the summed cost of the ``k`` known positives, nothing else (official).
* **Rematching**: the noisy batch's scores (train mode) → ``C = max(C_φ(S), 10⁻¹⁰)`` → partial OT of
  mass ρ = 0.1 with entropic ε (``reg``), the diagonal forbidden when the run has noise
  (``ncbench.kernels.transport``, in torch on the training device) → row-normalised targets; loss
  ``L = triplet_hardest(clean) + ½ Σ_dir [KL(T‖P) + KL(P‖T)]`` (``ncbench.kernels.rematch``), one Adam
  step with grad clip 2. Learning rates ×0.1 every ``lr_update`` epochs after warm-up (both).
* **Selection** over warm-up *and* training epochs (official, ``select_warmup``). L2RM-SGRAF = the
  average of an SGR run and a SAF run: ``--backbones sgraf``.
* Detection metrics: the Beta posterior ``w`` per training pair. Correspondence of a given pair
  (``ncbench detect``): its hinge in a batch of true pairs, normalised by the last division's range
  and scored by that division's Beta posterior (the similarity before the first division).

Official quirks kept, behind switches:

* ``cost="batch_linear"`` (official): C_φ = ReLU(S Wᵀ + b), a Linear(B, B) over each row of S, W = −I,
  b = 1 at the start; its output depends on the order of the captions in the batch (the author
  confirms, hhc1997/L2RM#14). ``cost="elementwise"``: C_φ = ReLU(w·S + b) with scalars w = −1,
  b = 1, the same start, independent of order.
* ``massless="uniform"`` (official): rows of the plan that received no mass become uniform targets
  after the 10⁻¹⁰ clip (with ρ = 0.1 most rows); ``"drop"`` leaves such rows out of the KL.

Named deviations:

* The Beta mixture is the moment-matching EM of ``ncbench.kernels.mixture`` (BiCro's), not the
  pomegranate fork's ``TrueBetaDistribution`` fit (not installable; no parity test for it).
* The random draws (queue start, k, slots) come from the run's seeded generator, not ``random``.
* A split with fewer than ``batch_size`` noisy pairs trains the clean batches alone (the official
  loader would raise); the cost step then uses the queue as it stands.
* Validation on the full dev split (official: the first 1,000 F30K dev rows = 200 images).
* ``synthetic``: a short schedule and learning rate for the small embedded data (not paper values).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ncbench.data.batching import gather_rows
from ncbench.engine.division import per_sample_statistic
from ncbench.engine.method import EpochPlan, MethodConfig, SingleNetwork, TrainContext
from ncbench.engine.optim import optimizer_step, set_lr, step_decay
from ncbench.errors import ConfigError
from ncbench.kernels.losses import per_sample_triplet, triplet_loss
from ncbench.kernels.mixture import BMM1D, SplitFit, bmm_split
from ncbench.kernels.rematch import robust_warmup_loss, symmetric_kl_loss
from ncbench.kernels.transport import PLAN_FLOOR, partial_ot_plan, transport_targets
from ncbench.registry import METHODS

CLIP = 1e-3  # the official clip of the normalised losses, and where the clean component is read


@dataclass
class L2RMConfig(MethodConfig):
    # train_f30k.sh; per-dataset values in L2RM.dataset_defaults
    epochs: int = 35
    lr: float = 2e-4
    lr_update: int = 15
    warmup_epochs: int = 5
    margin: float = 0.2
    tau: float = 0.05
    rho: float = 0.1  # transported mass
    reg: float = 0.01  # Sinkhorn's entropic regulariser ε
    lr_cost: float = 2e-6
    key_fraction: float = 0.1  # up to this fraction of a batch's clean pairs supervise the cost
    p_threshold: float = 0.5
    bmm_iters: int = 10
    cost: str = "batch_linear"  # batch_linear (official) | elementwise
    massless: str = "uniform"  # uniform (official) | drop
    select_warmup: bool = True  # warm-up epochs may be selected (official)


class BatchLinearCost(nn.Module):
    """The official cost ``ReLU(S Wᵀ + b)``: a Linear over the batch axis, ``W = −I``, ``b = 1``."""

    def __init__(self, size: int):
        super().__init__()
        self.fc = nn.Linear(size, size)
        with torch.no_grad():
            self.fc.weight.copy_(-torch.eye(size))
            self.fc.bias.fill_(1.0)

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.fc(scores))


class ElementwiseCost(nn.Module):
    """``ReLU(w·S + b)`` with scalars ``w = −1``, ``b = 1`` at the start: the same initial cost,
    independent of the order of the pairs in the batch."""

    def __init__(self, size: int):
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(-1.0))
        self.bias = nn.Parameter(torch.tensor(1.0))

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.weight * scores + self.bias)


COSTS = {"batch_linear": BatchLinearCost, "elementwise": ElementwiseCost}


@METHODS.register("l2rm")
class L2RM(SingleNetwork):
    """L2RM (CVPR'24): Beta-mixture division, learned cost, partial-OT rematching of noisy pairs."""

    Config = L2RMConfig
    dataset_defaults = {
        "f30k": {"epochs": 35, "lr_update": 15, "warmup_epochs": 5, "reg": 0.01},
        "coco": {"epochs": 20, "lr_update": 10, "warmup_epochs": 10, "reg": 0.07},
        "cc152k": {"epochs": 40, "lr_update": 20, "warmup_epochs": 10, "reg": 0.07},
        "synthetic": {"epochs": 6, "lr": 5e-4, "lr_update": 4, "warmup_epochs": 2, "batch_size": 64},
    }
    search_space = {
        "lr": (2e-4, 5e-4, 1e-3, 2e-3),
        "batch_size": (32, 64, 128),
        "warmup_epochs": (2, 5, 10),
        "schedule": ({"epochs": 10, "lr_update": 8}, {"epochs": 20, "lr_update": 10}, {"epochs": 35, "lr_update": 15}),
        "reg": (0.01, 0.07),
    }
    correspondence_estimate = ("Beta-mixture clean posterior of the pair's mean hinge in a batch of true pairs "
                               "(last division's normalisation and mixture)")

    def __init__(self, config: L2RMConfig, ctx: TrainContext):
        if config.cost not in COSTS:
            raise ConfigError(f"l2rm: unknown cost {config.cost!r} (one of {', '.join(COSTS)})")
        if config.massless not in ("uniform", "drop"):
            raise ConfigError(f"l2rm: massless must be 'uniform' or 'drop', not {config.massless!r}")
        super().__init__(config, ctx)  # the network and its Adam optimiser
        b = config.batch_size
        self.cost = COSTS[config.cost](b).to(ctx.device)
        self.cost_optimizer = torch.optim.Adam(self.cost.parameters(), lr=config.lr_cost)
        n_images = ctx.train.split.images.shape[0]
        # the image queue: rows of the image array (the previous noisy batch's images; at first B random
        # distinct images, or drawn with replacement from a training set with fewer than B images)
        self.queue = (torch.randperm(n_images, generator=ctx.generator)[:b] if n_images >= b
                      else torch.randint(n_images, (b,), generator=ctx.generator)).numpy()
        self._prob: np.ndarray | None = None
        self._fit: SplitFit | None = None
        self._range: tuple[float, float] | None = None  # raw loss range of the last division

    # -- schedule ------------------------------------------------------------------------------
    @property
    def total_epochs(self) -> int:
        return self.config.warmup_epochs + self.config.epochs

    def selectable(self, epoch: int) -> bool:
        return self.config.select_warmup or epoch >= self.config.warmup_epochs

    @property
    def first_steady_epoch(self) -> int:
        return self.config.warmup_epochs

    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [self.optimizer, self.cost_optimizer]

    def clean_probability(self) -> np.ndarray | None:
        return self._prob

    def split_fit(self) -> SplitFit | None:
        return self._fit

    # -- division ------------------------------------------------------------------------------
    def divide(self, losses: torch.Tensor) -> tuple[SplitFit, tuple[float, float]]:
        """The official ``BMM_pred``: min-max, clip, Beta mixture, posterior of the component that is
        larger at x = 10⁻³."""
        fit = bmm_split(losses, self.config.bmm_iters, CLIP, clean_at=CLIP)
        return fit, (float(losses.min()), float(losses.max()))

    # -- the epoch -----------------------------------------------------------------------------
    def plan_epoch(self, epoch: int) -> EpochPlan:
        cfg, ctx = self.config, self.ctx
        if epoch < cfg.warmup_epochs:
            set_lr(self.optimizer, cfg.lr)
            return EpochPlan(ctx.train.id_batches(batch_size=cfg.batch_size, generator=ctx.generator, min_size=2),
                             {"warmup": True})
        e = epoch - cfg.warmup_epochs
        set_lr(self.optimizer, step_decay(cfg.lr, e, cfg.lr_update, cfg.lr_decay))
        set_lr(self.cost_optimizer, step_decay(cfg.lr_cost, e, cfg.lr_update, cfg.lr_decay))
        (losses,) = per_sample_statistic([self.net], ctx.train, cfg.batch_size, ctx.generator, ctx.device,
                                         lambda s: per_sample_triplet(s, cfg.margin))
        fit, loss_range = self.divide(losses)
        clean = (fit.prob.cpu() > cfg.p_threshold).numpy()  # official: no forced noisy share
        full = lambda ids: [b for b in ctx.train.id_batches(ids, cfg.batch_size, generator=ctx.generator)  # noqa: E731
                            if len(b) == cfg.batch_size]
        clean_batches = full(np.flatnonzero(clean))
        noisy_ids = np.flatnonzero(~clean)
        noisy_batches: list[np.ndarray] = []
        while len(noisy_ids) >= cfg.batch_size and len(noisy_batches) < len(clean_batches):
            noisy_batches += full(noisy_ids)  # the cycled noisy loader: a new shuffle each pass
        steps = [(c, noisy_batches[i] if noisy_batches else None) for i, c in enumerate(clean_batches)]
        return EpochPlan(steps, {"warmup": False, "prob": fit.prob.cpu(), "fit": fit, "range": loss_range})

    def train_step(self, epoch: int, plan: EpochPlan, i: int) -> dict[str, float]:
        cfg, ctx = self.config, self.ctx
        where = f"epoch {epoch}, step {i}"
        if plan.data["warmup"]:
            self.net.train()
            b = ctx.train.batch(plan.steps[i]).to(ctx.device)
            loss = robust_warmup_loss(self.net(b.images, b.tokens, b.lengths), cfg.tau)
            return {"loss": optimizer_step(self.optimizer, loss, self.net.parameters(), cfg.grad_clip, where)}
        clean_ids, noisy_ids = plan.steps[i]
        xc = ctx.train.batch(clean_ids).to(ctx.device)
        logs = {"cost_loss": self.cost_step(clean_ids, xc)}
        if noisy_ids is not None:
            self.queue = ctx.train.t2i[noisy_ids]
        self.net.train()
        loss = triplet_loss(self.net(xc.images, xc.tokens, xc.lengths), cfg.margin, hard_negative=True)
        if noisy_ids is not None:
            xn = ctx.train.batch(noisy_ids).to(ctx.device)
            scores = self.net(xn.images, xn.tokens, xn.lengths)
            t_i2t, t_t2i, w_i2t, w_t2i = self.targets(scores.detach())
            kl = symmetric_kl_loss(scores, t_i2t, t_t2i, cfg.tau, w_i2t, w_t2i)
            logs["loss_noisy"] = float(kl.detach())
            loss = loss + kl
        logs["loss"] = optimizer_step(self.optimizer, loss, self.net.parameters(), cfg.grad_clip, where)
        return logs

    def cost_step(self, clean_ids: np.ndarray, xc) -> float:
        """One Adam step of C_φ on the known positives: ``k`` clean images put into the image queue,
        scored (eval, no gradient) against the clean captions; loss = their summed cost."""
        cfg, ctx = self.config, self.ctx
        b, gen = cfg.batch_size, ctx.generator
        k = int(torch.randint(1, max(int(b * cfg.key_fraction), 1) + 1, (1,), generator=gen))
        pick = torch.randperm(b, generator=gen)[:k].numpy()  # clean pairs (same index for image and caption)
        slots = torch.randperm(len(self.queue), generator=gen)[:k].numpy()  # where their images go
        rows = self.queue.copy()
        rows[slots] = ctx.train.t2i[clean_ids[pick]]
        self.net.eval()
        with torch.no_grad():
            images = gather_rows(ctx.train.split.images, rows, ctx.train.pin_memory).to(ctx.device)
            keys = self.net(images, xc.tokens, xc.lengths).float()
        known = torch.zeros_like(keys)
        known[torch.from_numpy(slots).to(keys.device), torch.from_numpy(pick).to(keys.device)] = 1.0
        self.cost.train()
        loss = (known * self.cost(keys)).sum()
        return optimizer_step(self.cost_optimizer, loss, self.cost.parameters(), 0.0, "l2rm cost")

    @torch.no_grad()
    def targets(self, scores: torch.Tensor):
        """The rematching targets of a noisy batch (``transport.transport_targets``), in the scores' dtype."""
        cfg = self.config
        self.cost.eval()
        cost = self.cost(scores.float()).clamp_min(PLAN_FLOOR)
        plan = partial_ot_plan(cost, cfg.rho, cfg.reg, forbid_diagonal=self.ctx.train.noise_ratio > 0)
        return tuple(t.to(scores.dtype) for t in transport_targets(plan, cfg.massless))

    def finish_epoch(self, epoch: int, plan: EpochPlan, logs: dict[str, float]) -> dict[str, float]:
        if plan.data["warmup"]:
            return {"loss": logs.get("loss", 0.0)}
        self._fit, self._range = plan.data["fit"], plan.data["range"]
        self._prob = plan.data["prob"].double().numpy()
        return {**logs, "clean_fraction": float((self._prob > self.config.p_threshold).mean()), "steps": len(plan.steps)}

    # -- correspondence --------------------------------------------------------------------------
    def correspondence(self, pairs) -> np.ndarray:
        if self._fit is None or self._range is None:
            return super().correspondence(pairs)
        lo, hi = self._range
        fit, margin = self._fit, self.config.margin

        def kernel(scores: torch.Tensor) -> torch.Tensor:
            x = ((per_sample_triplet(scores, margin).double() - lo) / max(hi - lo, 1e-12)).clamp(CLIP, 1 - CLIP)
            return fit.mixture.posterior(x.to(fit.mixture.alphas.device), fit.clean_component)

        return pairs.in_context(self.net, kernel).cpu().numpy()

    # -- state -----------------------------------------------------------------------------------
    def state_dict(self):
        fit = None
        if self._fit is not None:
            m = self._fit.mixture
            fit = {"x": self._fit.x, "prob": self._fit.prob, "alphas": m.alphas, "betas": m.betas, "weights": m.weights,
                   "clean": self._fit.clean_component, "range": self._range}
        return {"net": self.net.state_dict(), "opt": self.optimizer.state_dict(), "cost": self.cost.state_dict(),
                "cost_opt": self.cost_optimizer.state_dict(), "queue": self.queue.copy(),
                "prob": None if self._prob is None else self._prob.copy(), "fit": fit}

    def load_state_dict(self, state):
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["opt"])
        self.cost.load_state_dict(state["cost"])
        self.cost_optimizer.load_state_dict(state["cost_opt"])
        self.queue = np.asarray(state["queue"]).copy()
        self._prob = None if state["prob"] is None else np.asarray(state["prob"]).copy()
        f = state["fit"]
        if f is None:
            self._fit, self._range = None, None
        else:
            self._fit = SplitFit(f["x"], f["prob"], BMM1D(f["alphas"], f["betas"], f["weights"]), f["clean"])
            self._range = tuple(f["range"])
