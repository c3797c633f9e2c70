"""``gsc``: Geometrical Structure Consistency (Zhao et al., CVPR 2024).

One network (official ``MediaBrain-SJTU/GSC@2759ba0``, ``GSC/model/RINCE.py``: ``train_batch``,
``split_batch``; ``GSC/train.py``, ``opts.py``, ``train_*.sh``; built on DECL's code). Every training
pair carries a target ``t`` in [0, 1] (initially 1); the kernels are ``ncbench.kernels.structure``.

* **Loss** of a batch: the cross-modal InfoNCE of both directions at τ = 0.07, weighted by ``t``, plus
  γ × the **structure** InfoNCE: the batch's image–image scores ``I`` and caption–caption scores
  ``C`` (the backbone's ``image_image_scores`` / ``caption_caption_scores``: on SGR/SAF the
  similarity head on region/region and word/word pairs, GSC's ``forward_topology`` with its
  sigmoid), each column ``j`` scaled by ``t_j``, logits ``Ĩ C̃ᵀ`` at temperature 1, image rows,
  weighted by ``t``. Adam, grad clip 2, lr ``2e-4 × 0.2^(epoch // lr_update)``.
* Per pair and epoch it stores the **matching probability** ``(P_i2t[i,i] + P_t2i[i,i]) / 2`` and
  the **structure consistency** ``cos(Ĩ[i, :], C̃[i, :])`` (how alike the pair's image and caption
  relate to the rest of the batch).
* **End of each epoch** (``end_epoch``): consistencies min-max normalised, two-component GMM,
  posterior ``p`` of the higher-mean component; ``y_topo ← β p + (1 − β) y_topo`` and
  ``y_pred ← β preds + (1 − β) y_pred`` (β = 0.7), ``t = min(y_pred, y_topo)``.
* Defaults from ``train_f30k.sh`` (60 epochs, lr 2e-4, decay ×0.2 every 15, batch 128, γ = 0.01);
  COCO from ``train_coco.sh`` (decay every 20, γ = 1: the script passes none, so ``opts.py``'s 1.0).
* **Warm-up** (``warmup_epochs``, default 0 as in every official script): the official
  ``warmup_batch``, the image-to-text InfoNCE at τ on every pair, at the initial lr; no stores, no
  re-division, not selectable; the decay counts the epochs after it.

Correspondence estimate: ``clean_probability`` is ``t``; a given pair's (``ncbench detect``) is
its matching probability in a batch of true pairs (GSC's ``preds``).

**Noise caveat.** The official ``GSC/data.py`` loads ``--noise_file`` if it exists and otherwise
falls back to drawing the noisy set from ``arange(img_len)`` (29,000 F30K images) while writing
into the caption-indexed array (145,000 captions) (lines 54–59: ``inx = np.arange(img_len)``,
``noisy_inx = inx[0: int(noise_ratio * img_len)]``, ``self.noisy_inx[noisy_inx] = shuffle_noisy_inx``):
only captions 0–28,999 can be shuffled, so a nominal 20/40/60/80% is 4.0/8.0/12.0/16.0% real caption
noise on F30K and COCO (exact for CC152K, one caption per image). The scripts pass a relative
``noise_file_by_caption/...npy`` that the repository does not ship, so a fresh run takes the
fallback silently. ncbench always applies the protocol's noise index, so GSC's published
numbers may not be comparable with rows of the same nominal ratio here.

Named deviations:

* The protocol's noise index, never the fallback above; everything seeded (the official seeds
  with ``randint(0, 100)``).
* Global-feature backbones (``vse_*``): the intra-modal scores are cosines, mapped to [0, 1] by
  ``(c + 1) / 2`` (``Backbone.nonnegative``) where SGR/SAF give the sigmoid score; no official
  counterpart.
* The GMM starts from k-means seeded at ``mean ± std`` (NCR's ``gmm_split``), not scikit-learn's
  random k-means++ (``ncbench.kernels.mixture``).
* ``log_softmax`` instead of ``exp / Σ exp`` (equal where the official is finite; the structure
  logits reach the batch size, past float32 ``exp``'s range at B ≳ 90 when every score is near 1).
* After a warm-up epoch the targets are left alone (the official calls ``split_batch`` after it
  too, on consistencies all still 1, which fails: min-max of a constant).
* Per-pair stores in float64 (the official's are float32 on the GPU) and all of them in the
  checkpoint (the official saves ``targets``, ``topos``, ``topo_targets`` but not the two
  prediction stores, so its resume changes the next update).
* ``synthetic``: a shorter schedule and a larger learning rate for the small embedded data
  (``dataset_defaults``, tuned on its dev split).

Not implemented: the repository's ``GSC+`` (two co-trained networks, each weighted by its peer's
targets; its own noise fallback draws over the captions and gives the nominal rate).

Observed: ``t ≤`` the moving average of the in-batch matching probability, so while the model is
weak (every pair's probability near ``1/B``) the targets, and with them the loss, are small; on the
Flickr8k cards at the paper's lr the mean target falls to about 0.01 within a few epochs.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from ncbench.engine.method import EpochPlan, MethodConfig, SingleNetwork, TrainContext, WarmedUp
from ncbench.engine.optim import optimizer_step, set_lr, step_decay
from ncbench.errors import ConfigError
from ncbench.kernels.complementary import batch_match_probability
from ncbench.kernels.structure import consistent_posterior, gsc_loss, image_to_text_info_nce, update_targets
from ncbench.registry import METHODS

STORES = ("targets", "preds", "pred_targets", "topos", "topo_targets")  # per training pair, all start at 1


@dataclass
class GSCConfig(MethodConfig):
    epochs: int = 60
    lr: float = 2e-4
    lr_update: int = 15
    lr_decay: float = 0.2
    tau: float = 0.07  # cross-modal InfoNCE temperature
    gamma: float = 0.01  # weight of the structure InfoNCE
    beta: float = 0.7  # weight of the new value in the targets' moving averages
    warmup_epochs: int = 0  # the official --warmup_epochs (its scripts: 0): image-to-text InfoNCE only


def check_gsc_config(config: GSCConfig) -> None:
    """A ConfigError naming the option for a value GSC cannot use."""
    if not config.tau > 0:
        raise ConfigError(f"gsc option tau: must be above 0, got {config.tau!r}")
    if not config.gamma >= 0:
        raise ConfigError(f"gsc option gamma: must be at least 0, got {config.gamma!r}")
    if not 0 <= config.beta <= 1:
        raise ConfigError(f"gsc option beta: must lie in [0, 1], got {config.beta!r}")


@METHODS.register("gsc")
class GSC(WarmedUp, SingleNetwork):
    """GSC (CVPR'24): cross-modal InfoNCE plus intra-modal structure InfoNCE, pairs weighted by moving-average targets."""

    Config = GSCConfig
    correspondence_estimate = ("matching probability (P_i2t[i,i] + P_t2i[i,i]) / 2 at temperature tau in a batch of "
                               "true pairs (GSC's preds)")
    dataset_defaults = {
        "coco": {"lr_update": 20, "gamma": 1.0},
        "synthetic": {"epochs": 12, "lr": 2e-3, "lr_update": 8},
    }
    search_space = {
        "lr": (2e-4, 5e-4, 1e-3, 2e-3, 5e-3),
        "batch_size": (32, 64, 128),
        "schedule": ({"epochs": 12, "lr_update": 8}, {"epochs": 20, "lr_update": 12}, {"epochs": 30, "lr_update": 15}),
        "gamma": (0.01, 0.1, 1.0),
        "beta": (0.5, 0.7),
        "tau": (0.05, 0.07),
        "warmup_epochs": (0, 1, 2),
    }

    def __init__(self, config: GSCConfig, ctx: TrainContext):
        check_gsc_config(config)
        super().__init__(config, ctx)
        n = len(ctx.train)
        for key in STORES:
            setattr(self, key, torch.ones(n, dtype=torch.float64))

    def plan_epoch(self, epoch: int) -> EpochPlan:
        cfg, ctx = self.config, self.ctx
        after = max(epoch - cfg.warmup_epochs, 0)
        set_lr(self.optimizer, step_decay(cfg.lr, after, cfg.lr_update, cfg.lr_decay))
        return EpochPlan(ctx.train.id_batches(None, cfg.batch_size, generator=ctx.generator, min_size=2))

    def train_step(self, epoch: int, plan: EpochPlan, i: int) -> dict[str, float]:
        cfg, ctx, net = self.config, self.ctx, self.net
        net.train()
        b = ctx.train.batch(plan.steps[i]).to(ctx.device)
        img, cap = net.encode_images(b.images), net.encode_captions(b.tokens, b.lengths)
        scores = net.score(img, cap)
        where = f"epoch {epoch}, step {i}"
        if epoch < cfg.warmup_epochs:
            loss = image_to_text_info_nce(scores, cfg.tau)
            return {"loss": optimizer_step(self.optimizer, loss, net.parameters(), cfg.grad_clip, where)}
        ids = b.ids.cpu()
        out = gsc_loss(scores, net.nonnegative(net.image_image_scores(img)), net.nonnegative(net.caption_caption_scores(cap)),
                       self.targets[ids].to(scores.device, scores.dtype), cfg.tau, cfg.gamma)
        self.preds[ids] = out.match_probability.double().cpu()
        self.topos[ids] = out.consistency.double().cpu()
        loss = optimizer_step(self.optimizer, out.loss, net.parameters(), cfg.grad_clip, where)
        return {"loss": loss, "loss_cl": float(out.cross_modal), "loss_topo": float(out.structure)}

    def end_epoch(self, epoch: int, plan: EpochPlan) -> None:
        if epoch < self.config.warmup_epochs:
            return
        prob = consistent_posterior(self.topos).prob
        self.topo_targets, self.pred_targets, self.targets = update_targets(
            prob, self.preds, self.topo_targets, self.pred_targets, self.config.beta)

    def finish_epoch(self, epoch: int, plan: EpochPlan, logs: dict[str, float]) -> dict[str, float]:
        return {**logs, "mean_target": float(self.targets.mean())}

    def clean_probability(self) -> np.ndarray:
        return self.targets.numpy().copy()

    def soft_labels(self) -> np.ndarray:
        return self.targets.numpy().copy()

    def correspondence(self, pairs) -> np.ndarray:
        return pairs.in_context(self.net, partial(batch_match_probability, tau=self.config.tau)).cpu().numpy()

    def state_dict(self):
        return {**super().state_dict(), **{key: getattr(self, key).clone() for key in STORES}}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        for key in STORES:
            setattr(self, key, state[key].clone())
