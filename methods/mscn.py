"""``mscn``: Meta Similarity Correction Network (Han et al., CVPR 2023), official code hhc1997/MSCN
(commit 01febc2).

Two networks A and B, each a backbone whose similarity *head* is a meta network: ``Meta_Sim``,
``sigmoid(Linear_64→1(ReLU(Linear_d→64(v))))`` of the pair's similarity vector ``v`` (SGR/SAF: the
reasoned 256-d vector, i.e. the input of the backbone's own ``sim_eval``, which MSCN leaves unused;
cosine backbones ``vse_bow``, ``vse_light``, ``vse_inf``: the element-wise product of the two
embeddings, whose sum is the cosine). Every score of a run, at training and at test time, is the
meta network's (``MetaCorrected`` wraps the backbone, so evaluation averages A's and B's corrected
scores, as the official ``validate``/``evalrank``).

**The clean meta set** (``meta_split = "dev"``): ``meta_fraction`` (2%) of the number of training
pairs, drawn once per run (``ctx.generator``) without replacement from the pairs of the dataset's
**dev split** — the official F30K meta set is 2,900 = 2% × 145,000 pairs drawn at random from the
dev split (README, ``np.random.choice(len(images_dev), 2900, False)``) — at most the dev split's
size. These are the positives (label 1); as many negatives (label 0) pair training captions (drawn
without replacement) with random training images (with replacement, redrawn until no caption meets
its own image), drawn again at the start of every network's training phase
(``PrecompDataset_meta_C``). The test split is never read. The history records ``meta_pairs``.

Schedule (``main_MSCN.py``):

* **warm-up** (``warmup_epochs``, 5): A for a whole epoch, then B, on all pairs, batches of
  ``2 × batch_size``; the mean triplet loss (margin 0.2) of the meta-corrected scores; backbone and
  meta network each with its own Adam at ``lr``, each clipped at 2.0. Warm-up epochs are not
  selectable. After it both Adam optimisers of each network start afresh (meta: ``meta_lr``).
* **co-training** (``epochs``, 50), each epoch: **purify** with A (``kernels.meta_correction.
  meta_bmm_split``: every training pair's corrected similarity, in eval mode; a Beta mixture
  initialised on the meta set's noisy and clean similarities, fitted to the training similarities,
  clean if the posterior exceeds 0.5), train **B** on the clean pairs; purify with B (as trained
  now), train **A**. A training step of network k on a clean batch:
  1. **bilevel step** (every ``meta_interval`` steps): the backbone's parameters take one
     differentiable SGD step at the current lr on the main loss (``torch.func.functional_call`` on
     detached copies; BatchNorm statistics of copies; cuDNN off as the official); the pseudo
     network scores the next meta batch (each pair with its own caption, train mode); the BCE of
     those scores against the meta labels is back-propagated through the step into the meta
     network, which takes an Adam step at ``meta_lr``;
  2. the meta network frozen, the backbone takes an Adam step on the main loss: hardest-negative
     triplet loss with the adaptive margin ``0.2 · s(p)``, ``s(p) = p² / (p² + (1 − p)²)``, ``p`` the
     pair's own corrected similarity (detached); clip 2.0.
  The learning rates decay ×0.1 every ``lr_update`` (30) co-training epochs, meta_lr alike.

Named deviations and switches:

* **Per-pair margins (paper semantics, default).** The official ``(B,)`` margin broadcasts over
  columns: in the caption-retrieval term the margin is the *negative* caption's pair's.
  ``official_broadcast=true`` reproduces it.
* The meta negatives avoid the caption's **observed** (noisy) image; the official avoids its true
  image, which is ground truth under ncbench's protocol (the two differ in 1 / N_images of draws).
* The meta positives are drawn per run from the seed (the official draws them once, unseeded,
  and ships the file); they stay in the dev split, which also selects the epoch (as the official).
* A meta batch of one pair is left out (BatchNorm cannot train on it); the official would fail.
* ``--compile`` is ignored (the head's input is read by a hook, which compiled code would skip).
* ``synthetic`` (hand-set, dev split only): a shorter schedule for the small embedded data, the bilevel
  step on every 4th step (``meta_interval = 4``; the official: every step) to keep CI's sweep short.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from ncbench.backbones.base import Backbone, CosineBackbone
from ncbench.data.batching import Batch, gather_rows, pad_tokens
from ncbench.data.precomp import Split
from ncbench.engine.method import EpochPlan, Method, MethodConfig, TrainContext, WarmedUp
from ncbench.engine.optim import optimizer_step, set_lr, step_decay
from ncbench.errors import ConfigError
from ncbench.kernels.losses import triplet_loss
from ncbench.kernels.meta_correction import draw_meta_negatives, lookahead, meta_bmm_split, meta_size, mscn_loss
from ncbench.kernels.mixture import SplitFit
from ncbench.registry import METHODS

VECTOR_CHUNK = 2**24  # largest images × captions × vector-dim block a corrected score builds at once
META_SPLITS = ("dev",)


@dataclass
class MSCNConfig(MethodConfig):
    # main_MSCN.py / opt.py defaults (Flickr30K)
    warmup_epochs: int = 5
    epochs: int = 50
    batch_size: int = 64
    lr: float = 2e-4
    lr_update: int = 30
    margin: float = 0.2
    meta_lr: float = 17e-6
    meta_hidden: int = 64
    meta_interval: int = 1
    meta_split: str = "dev"  # where the clean meta pairs come from (the only choice: never test)
    meta_fraction: float = 0.02  # meta pairs = this fraction of the training pairs (F30K: 2,900)
    warmup_batch_factor: int = 2  # warm-up batches hold 2 × batch_size pairs
    bmm_iters: int = 10
    bmm_tol: float = 1e-2
    p_threshold: float = 0.5
    official_broadcast: bool = False  # the official (B,) margin broadcast over columns


class MetaSim(nn.Module):
    """The official ``Meta_Sim``: ``sigmoid(Linear(ReLU(Linear(v))))``, one score per vector."""

    def __init__(self, dim: int, hidden: int = 64):
        super().__init__()
        self.hidden = nn.Linear(dim, hidden)
        self.out = nn.Linear(hidden, 1)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.out(torch.relu(self.hidden(v)))).squeeze(-1)


def _head_inputs(net: Backbone, run: Callable[[], Any]) -> list[torch.Tensor]:
    """What ``net.sim_eval`` (the SGR/SAF score head) receives while ``run()`` scores pairs."""
    got: list[torch.Tensor] = []
    handle = net.sim_eval.register_forward_pre_hook(lambda module, args: got.append(args[0]))
    try:
        run()
    finally:
        handle.remove()
    return got


def has_head(net: Backbone) -> bool:
    return isinstance(getattr(net, "sim_eval", None), nn.Linear)


def vector_dim(net: Backbone) -> int:
    """The length of ``net``'s similarity vectors (the head's input, or the cosine's embedding)."""
    if has_head(net):
        return net.sim_eval.in_features
    if isinstance(net, CosineBackbone):
        was = net.training
        net.eval()
        with torch.no_grad():
            tokens = torch.ones(1, 3, dtype=torch.long, device=next(net.parameters()).device)
            dim = net.encode_captions(tokens, torch.tensor([3])).shape[-1]
        net.train(was)
        return int(dim)
    raise ConfigError(f"mscn: backbone {type(net).__name__} has neither a score head (sim_eval) nor cosine "
                      f"embeddings, so it gives no similarity vector for the meta network")


def pair_vectors(net: Backbone, img: torch.Tensor, cap: torch.Tensor) -> torch.Tensor:
    """``(n, d)`` similarity vectors of image ``k`` with caption ``k``."""
    if has_head(net):
        return _head_inputs(net, lambda: net.pair_scores(img, cap))[0][:, 0]
    return img * cap


def score_vectors(net: Backbone, img: torch.Tensor, cap: torch.Tensor) -> torch.Tensor:
    """``(n_img, n_cap, d)`` similarity vectors of every image with every caption."""
    if has_head(net):
        return torch.cat(_head_inputs(net, lambda: net.score(img, cap)), dim=0).transpose(0, 1)
    return img[:, None, :] * cap[None, :, :]


class MetaCorrected(Backbone):
    """A backbone whose scores are the meta network's: ``meta(v(image, caption))``."""

    def __init__(self, inner: Backbone, meta: MetaSim):
        super().__init__(inner.config, inner.vocab_size, inner.feature_dim)
        self.inner, self.meta = inner, meta

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        return self.inner.encode_images(images)

    def encode_captions(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The backbone's caption embeddings. Word-level ones (SGR/SAF) have zero vectors at padded
        words, where the L2 norm's square root has an infinite derivative: first-order gradients
        never reach those positions, but the bilevel step's second-order pass would carry ``0·∞``
        into every parameter. The gradient at padded words is therefore selected away
        (``torch.where``, which also drops a NaN), which changes no first-order gradient."""
        cap = self.inner.encode_captions(tokens, lengths)
        if cap.ndim == 3 and cap.requires_grad:
            valid = cap.detach().ne(0).any(-1, keepdim=True)
            cap.register_hook(lambda grad: torch.where(valid, grad, torch.zeros_like(grad)))
        return cap

    def score(self, img_emb: torch.Tensor, cap_emb: torch.Tensor) -> torch.Tensor:
        step = max(1, VECTOR_CHUNK // max(1, img_emb.shape[0] * self.meta.hidden.in_features))
        return torch.cat([self.meta(score_vectors(self.inner, img_emb, cap_emb[c:c + step]))
                          for c in range(0, cap_emb.shape[0], step)], dim=1)

    def pair_scores(self, img_emb: torch.Tensor, cap_emb: torch.Tensor, block: int = 256) -> torch.Tensor:
        return self.meta(pair_vectors(self.inner, img_emb, cap_emb))

    def nonnegative(self, scores: torch.Tensor) -> torch.Tensor:
        return scores  # sigmoid scores already

    def forward(self, images: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor,
                pairs: bool = False) -> torch.Tensor:
        img, cap = self.encode_images(images), self.encode_captions(tokens, lengths)
        return self.pair_scores(img, cap) if pairs else self.score(img, cap)


@contextlib.contextmanager
def frozen(module: nn.Module):
    """``module``'s parameters take no gradient inside the block."""
    saved = [p.requires_grad for p in module.parameters()]
    for p in module.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(module.parameters(), saved):
            p.requires_grad_(flag)


def no_cudnn():
    """cuDNN's RNN has no double backward: the official meta step runs with it off."""
    return torch.backends.cudnn.flags(enabled=False)


@METHODS.register("mscn")
class MSCN(WarmedUp, Method):
    """MSCN (CVPR'23): meta-network similarity head learned by a bilevel step on a clean dev meta set, Beta-mixture purification."""

    Config = MSCNConfig
    ensemble_size = 2
    trains_on_split = "dev"  # its meta set: shown on boards (Selection column)
    dataset_defaults = {
        "f30k": {"warmup_epochs": 5, "epochs": 50, "lr_update": 30},
        "coco": {"warmup_epochs": 5, "epochs": 50, "lr_update": 30},
        "cc152k": {"warmup_epochs": 5, "epochs": 50, "lr_update": 30},
        # meta_interval 4: the bilevel step on every 4th step (the official default is every step), which
        # halves a run's time so that CI's accuracy sweep fits; set without reading any test number
        "synthetic": {"warmup_epochs": 3, "epochs": 8, "lr": 2e-3, "lr_update": 6, "batch_size": 64,
                      "meta_lr": 2e-4, "meta_interval": 4},
    }
    search_space = {
        "lr": (2e-4, 5e-4, 1e-3, 2e-3),
        "meta_lr": (17e-6, 1e-4, 5e-4),
        "batch_size": (32, 64, 128),
        "warmup_epochs": (2, 5),
        "schedule": ({"epochs": 8, "lr_update": 6}, {"epochs": 15, "lr_update": 10}, {"epochs": 30, "lr_update": 20}),
    }
    correspondence_estimate = "meta-corrected similarity of the pair, mean of networks A and B"

    def __init__(self, config: MSCNConfig, ctx: TrainContext):
        super().__init__(config, ctx)
        if config.meta_split not in META_SPLITS:
            raise ConfigError(f"mscn: meta_split must be one of {', '.join(META_SPLITS)}, got {config.meta_split!r}")
        if not 0 < config.meta_fraction <= 1:
            raise ConfigError(f"mscn: meta_fraction must be above 0 and at most 1, got {config.meta_fraction!r}")
        if config.meta_interval < 1:
            raise ConfigError(f"mscn: meta_interval must be at least 1, got {config.meta_interval!r}")
        self.dev = clean_dev_split(ctx)
        self.nets = []
        for _ in range(2):
            inner = ctx.build_backbone()
            self.nets.append(MetaCorrected(inner, MetaSim(vector_dim(inner), config.meta_hidden))
                             .to(ctx.device))
        self._new_optimizers(config.lr, config.lr)
        m = meta_size(len(ctx.train), self.dev.n_captions, config.meta_fraction)
        self.meta_ids = torch.randperm(self.dev.n_captions, generator=ctx.generator)[:m].numpy()
        self.negatives = self._draw_negatives()
        self.pending: list[tuple] = []  # the second network's steps of the running epoch (set mid-epoch)
        self.probs: list[np.ndarray | None] = [None, None]
        self._fit: SplitFit | None = None

    def _new_optimizers(self, lr: float, meta_lr: float) -> None:
        self.opts = [torch.optim.Adam(n.inner.parameters(), lr=lr) for n in self.nets]
        self.meta_opts = [torch.optim.Adam(n.meta.parameters(), lr=meta_lr) for n in self.nets]

    def networks(self) -> list[Backbone]:
        return self.nets

    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [*self.opts, *self.meta_opts]

    def clean_probability(self) -> np.ndarray | None:
        if any(p is None for p in self.probs):
            return None
        return (self.probs[0] + self.probs[1]) / 2

    def split_fit(self) -> SplitFit | None:
        return self._fit

    # -- the meta set ----------------------------------------------------------------------------
    @property
    def n_meta(self) -> int:
        return len(self.meta_ids)

    def _draw_negatives(self) -> np.ndarray:
        """``(2, M)``: training caption rows and image rows of the meta set's negatives."""
        train = self.ctx.train
        own = torch.from_numpy(np.asarray(train.t2i, dtype=np.int64))
        rows = torch.from_numpy(train.split.image_rows())
        caps, imgs = draw_meta_negatives(own, rows, self.n_meta, self.ctx.generator)
        return torch.stack([caps, imgs]).numpy()

    def meta_batch(self, items: np.ndarray) -> tuple[Batch, torch.Tensor]:
        """Meta items ``0..M−1`` (dev positives) and ``M..2M−1`` (negatives) as a batch and labels."""
        items = np.asarray(items, dtype=np.int64)
        pos, neg = items < self.n_meta, items >= self.n_meta
        dev, train = self.dev, self.ctx.train.split
        dev_caps = self.meta_ids[items[pos]]
        neg_caps, neg_imgs = self.negatives[0][items[neg] - self.n_meta], self.negatives[1][items[neg] - self.n_meta]
        order = np.concatenate([np.flatnonzero(pos), np.flatnonzero(neg)])
        back = np.argsort(order, kind="stable")
        images = torch.cat([gather_rows(dev.images, dev.caption_to_row()[dev_caps]),
                            gather_rows(train.images, neg_imgs)])[back]
        tokens, lengths = pad_tokens([dev.tokens[c] for c in dev_caps] + [train.tokens[c] for c in neg_caps])
        labels = torch.from_numpy(pos.astype(np.float32))
        return Batch(images, tokens[back], lengths[back], torch.from_numpy(items)), labels

    def _meta_schedule(self, n_steps: int) -> list[np.ndarray]:
        """The meta items of each of ``n_steps`` steps: shuffled batches of the 2M items, cycled."""
        out: list[np.ndarray] = []
        items = np.arange(2 * self.n_meta, dtype=np.int64)
        while len(out) < n_steps:
            out.extend(self.ctx.train.id_batches(items, self.config.batch_size, generator=self.ctx.generator,
                                                 min_size=2))
        return out[:n_steps]

    # -- purification -----------------------------------------------------------------------------
    @torch.no_grad()
    def _pair_sims(self, net: MetaCorrected, batches) -> torch.Tensor:
        net.eval()
        return torch.cat([net(b.images, b.tokens, b.lengths, pairs=True).float() for b in batches])

    def divide(self, k: int) -> SplitFit:
        """Network ``k``'s purification: the clean probability of every training pair."""
        net, ctx, bs = self.nets[k], self.ctx, 1024
        items = np.arange(2 * self.n_meta)
        metas = [self.meta_batch(items[i:i + bs]) for i in range(0, len(items), bs)]
        meta_sims = self._pair_sims(net, (b.to(ctx.device) for b, _ in metas))
        labels = torch.cat([lab for _, lab in metas]).to(ctx.device)
        ids = np.arange(len(ctx.train))
        sims = self._pair_sims(net, (ctx.train.batch(ids[i:i + bs]).to(ctx.device) for i in range(0, len(ids), bs)))
        c = self.config
        return meta_bmm_split(meta_sims, labels > 0.5, sims, c.bmm_iters, c.bmm_tol)

    def _phase(self, k: int, fit: SplitFit) -> list[tuple]:
        """Network ``k``'s steps on its peer's purified pairs (fresh meta negatives, as the official
        ``train`` draws them first): ``("train", k, clean ids, meta items)``."""
        self.probs[1 - k] = fit.prob.detach().cpu().numpy()
        if k == 1:
            self._fit = fit
        clean = np.flatnonzero(self.probs[1 - k] > self.config.p_threshold)
        self.negatives = self._draw_negatives()
        batches = self.ctx.train.id_batches(clean, self.config.batch_size, generator=self.ctx.generator, min_size=2)
        return [("train", k, ids, items) for ids, items in zip(batches, self._meta_schedule(len(batches)))]

    # -- the epoch ----------------------------------------------------------------------------------
    def plan_epoch(self, epoch: int) -> EpochPlan:
        cfg, ctx = self.config, self.ctx
        if epoch < cfg.warmup_epochs:
            for opt in self.optimizers():
                set_lr(opt, cfg.lr)
            steps = [("warmup", k, ids) for k in range(2)
                     for ids in ctx.train.id_batches(batch_size=cfg.batch_size * cfg.warmup_batch_factor,
                                                     generator=ctx.generator, min_size=2)]
            return EpochPlan(steps, {"warmup": True})
        e = epoch - cfg.warmup_epochs
        if e == 0:  # the official starts every optimiser afresh after the warm-up
            self._new_optimizers(cfg.lr, cfg.meta_lr)
        for opt in self.opts:
            set_lr(opt, step_decay(cfg.lr, e, cfg.lr_update, cfg.lr_decay))
        for opt in self.meta_opts:
            set_lr(opt, step_decay(cfg.meta_lr, e, cfg.lr_update, cfg.lr_decay))
        first = self._phase(1, self.divide(0))  # purify with A, train B
        slots = [("pending", 0, j) for j in range(ctx.train.n_batches(len(ctx.train), cfg.batch_size))]
        return EpochPlan(first + [("divide", 1)] + slots, {"warmup": False})

    def train_step(self, epoch: int, plan: EpochPlan, i: int) -> dict[str, float]:
        step = plan.steps[i]
        if step[0] == "warmup":
            return self._warmup_step(epoch, step[1], step[2])
        if step[0] == "divide":  # purify with B as trained now; A's steps are drawn here
            self.pending = self._phase(0, self.divide(step[1]))
            return {}
        if step[0] == "pending":
            if step[2] >= len(self.pending):
                return {}
            step = self.pending[step[2]]
        _, k, ids, items = step
        return self._train_step(epoch, k, ids, items, i)

    def _warmup_step(self, epoch: int, k: int, ids: np.ndarray) -> dict[str, float]:
        cfg, ctx, net = self.config, self.ctx, self.nets[k]
        net.train()
        b = ctx.train.batch(ids).to(ctx.device)
        loss = triplet_loss(net(b.images, b.tokens, b.lengths), cfg.margin, hard_negative=False)
        self.meta_opts[k].zero_grad(set_to_none=True)
        value = optimizer_step(self.opts[k], loss, net.inner.parameters(), cfg.grad_clip,
                               f"warm-up epoch {epoch}, net {'AB'[k]}")
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(net.meta.parameters(), cfg.grad_clip)
        self.meta_opts[k].step()
        return {f"loss_{'AB'[k]}": value}

    def _train_step(self, epoch: int, k: int, ids: np.ndarray, items: np.ndarray, i: int) -> dict[str, float]:
        cfg, ctx, net = self.config, self.ctx, self.nets[k]
        b = ctx.train.batch(ids).to(ctx.device)
        net.train()
        logs = {}
        if (i + 1) % cfg.meta_interval == 0:
            meta, labels = self.meta_batch(items)
            logs[f"meta_loss_{'AB'[k]}"] = self.meta_step(k, b, meta.to(ctx.device), labels.to(ctx.device))
        with frozen(net.meta):
            loss = mscn_loss(net(b.images, b.tokens, b.lengths), cfg.margin, cfg.official_broadcast)
            logs[f"loss_{'AB'[k]}"] = optimizer_step(self.opts[k], loss, net.inner.parameters(), cfg.grad_clip,
                                                     f"co-training epoch {epoch - cfg.warmup_epochs}, net {'AB'[k]}")
        return logs

    def meta_step(self, k: int, batch: Batch, meta: Batch, labels: torch.Tensor) -> float:
        """The bilevel step of network ``k``: a differentiable look-ahead of the backbone on
        ``batch``, the BCE of the looked-ahead scores of the ``meta`` pairs, an Adam step of the
        meta network on it (the backbone itself unchanged). Returns the meta loss."""
        net, cfg = self.nets[k], self.config
        lr = self.opts[k].param_groups[0]["lr"]
        params = {f"inner.{n}": p.detach().requires_grad_(True) for n, p in net.inner.named_parameters()}
        buffers = {f"inner.{n}": b.clone() for n, b in net.inner.named_buffers()}
        with no_cudnn():
            scores = functional_call(net, {**params, **buffers}, (batch.images, batch.tokens, batch.lengths))
            loss = mscn_loss(scores, cfg.margin, cfg.official_broadcast)
            names = list(params)
            grads = torch.autograd.grad(loss, [params[n] for n in names], create_graph=True, allow_unused=True)
            ahead = lookahead(params, dict(zip(names, grads)), lr)
            out = functional_call(net, {**ahead, **buffers}, (meta.images, meta.tokens, meta.lengths),
                                  {"pairs": True})
            meta_loss = torch.nn.functional.binary_cross_entropy(out, labels.to(out.dtype))
            value = float(meta_loss.detach())
            self.meta_opts[k].zero_grad(set_to_none=True)
            meta_loss.backward()
        self.meta_opts[k].step()
        return value

    def finish_epoch(self, epoch: int, plan: EpochPlan, logs: dict[str, float]) -> dict[str, float]:
        out = {**logs, "meta_pairs": float(self.n_meta)}
        if not plan.data["warmup"] and self.clean_probability() is not None:
            out["clean_fraction"] = float((self.clean_probability() > self.config.p_threshold).mean())
        return out

    def correspondence(self, pairs) -> np.ndarray:
        return torch.stack([pairs.similarity(n) for n in self.nets]).mean(0).cpu().numpy()

    # -- state ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"nets": [n.state_dict() for n in self.nets], "opts": [o.state_dict() for o in self.optimizers()],
                "meta_ids": self.meta_ids.copy(), "negatives": self.negatives.copy(),
                "pending": list(self.pending), "probs": [None if p is None else p.copy() for p in self.probs],
                "fit": self._fit}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for n, s in zip(self.nets, state["nets"]):
            n.load_state_dict(s)
        for o, s in zip(self.optimizers(), state["opts"]):
            o.load_state_dict(s)
        self.meta_ids, self.negatives = np.asarray(state["meta_ids"]), np.asarray(state["negatives"])
        self.pending = [tuple(s) for s in state["pending"]]
        self.probs = [None if p is None else np.asarray(p) for p in state["probs"]]
        self._fit = state["fit"]


def clean_dev_split(ctx: TrainContext) -> Split:
    """The dataset's clean dev split, which the harness hands to methods that learn from a clean
    meta set (``TrainContext.clean_dev``); a ConfigError naming what is missing otherwise."""
    dev = getattr(ctx, "clean_dev", None)
    if dev is None:
        raise ConfigError("mscn: needs the dataset's clean dev split for its meta set (TrainContext.clean_dev), "
                          "which this harness did not provide")
    return dev
