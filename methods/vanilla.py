"""``vanilla``: the noise-blind baseline, VSE++ hard-negative triplet loss on all pairs as given.

One network, Adam, margin 0.2 with the max-violation (hardest negative) triplet loss summed over
the batch, gradient clipping at 2.0, step-decayed learning rate. Every training pair is trusted,
shuffled or not: this is the reference every robust method has to beat.

Deviations: none from VSE++'s loss. The learning rate and epochs of the ``synthetic`` dataset are
chosen for the small embedded data (see ``dataset_defaults``), not taken from a paper.
"""

from __future__ import annotations

from dataclasses import dataclass


from ncbench.engine.method import EpochPlan, MethodConfig, SingleNetwork
from ncbench.engine.optim import optimizer_step
from ncbench.kernels.losses import triplet_loss
from ncbench.registry import METHODS


@dataclass
class VanillaConfig(MethodConfig):
    margin: float = 0.2
    hard_negative: bool = True
    warmup_epochs: int = 1  # mean-over-negatives loss for these first epochs, then hard negatives


@METHODS.register("vanilla")
class Vanilla(SingleNetwork):
    """Noise-blind baseline: hard-negative (VSE++ max-violation) triplet loss on every pair."""

    Config = VanillaConfig
    dataset_defaults = {"synthetic": {"epochs": 12, "lr": 2e-3, "lr_update": 8}}
    search_space = {
        "lr": (2e-4, 5e-4, 1e-3, 2e-3, 5e-3),
        "batch_size": (32, 64, 128),
        "schedule": ({"epochs": 12, "lr_update": 8}, {"epochs": 20, "lr_update": 12}, {"epochs": 30, "lr_update": 20}),
        "warmup_epochs": (1, 2, 4),
        "margin": (0.1, 0.2),
    }

    def train_step(self, epoch: int, plan: EpochPlan, i: int) -> dict[str, float]:
        cfg, ctx = self.config, self.ctx
        self.net.train()
        b = ctx.train.batch(plan.steps[i]).to(ctx.device)
        hard = cfg.hard_negative and epoch >= cfg.warmup_epochs
        loss = triplet_loss(self.net(b.images, b.tokens, b.lengths), cfg.margin, hard)
        return {"loss": optimizer_step(self.optimizer, loss, self.net.parameters(), cfg.grad_clip, f"epoch {epoch}, step {i}")}

    def finish_epoch(self, epoch: int, plan: EpochPlan, logs: dict[str, float]) -> dict[str, float]:
        return {"loss": logs.get("loss", 0.0)}
