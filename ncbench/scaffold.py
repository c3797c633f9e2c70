"""``ncbench new-method``: the skeleton of a new method plugin, ready to train and to edit.

Two templates: ``single`` (one network; a per-pair weighted hard-negative triplet loss whose
weights the author replaces with their own correspondence estimate) and ``coteaching`` (two
networks on the shared NCR/BiCro skeleton: warm-up loss, loss-split mixture, co-step). Both run
as written, so ``ncbench run --methods NAME`` works before the first edit.
"""

from __future__ import annotations

import keyword
import re
from pathlib import Path

from .atomic import write_text_atomic
from .errors import ConfigError

NAME = re.compile(r"^[a-z][a-z0-9_]{1,39}\Z")  # \Z: `$` would accept a trailing newline

_HEADER = '''"""``{name}``: TODO one line saying what the method does (paper, venue, year).

TODO: describe the method as its paper and official code define it: how it estimates which
training pairs are mismatched, and how it trains on them.

Deviations from the paper / official code (each also goes into the README's method table):

* TODO: none yet.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
'''

SINGLE = _HEADER + '''
from ncbench.engine.method import EpochPlan, MethodConfig, SingleNetwork
from ncbench.engine.optim import optimizer_step
from ncbench.kernels.losses import triplet_loss
from ncbench.registry import METHODS


@dataclass
class {cls}Config(MethodConfig):
    # hyper-parameters with the paper's defaults; override per run with --method-opt key=value
    margin: float = 0.2


@METHODS.register("{name}")
class {cls}(SingleNetwork):
    """TODO: the one line `ncbench list` shows."""

    Config = {cls}Config
    dataset_defaults = {{"synthetic": {{"epochs": 12, "lr": 2e-3, "lr_update": 8}}}}
    ensemble_size = 1  # networks averaged at test time
    # what `ncbench tune` may try (TODO: the knobs your paper tunes)
    search_space = {{"lr": (1e-3, 2e-3), "margin": (0.1, 0.2)}}

    # SingleNetwork builds self.net (never assume which backbone) and its Adam self.optimizer, both
    # saved in checkpoints so that an interrupted run resumes exactly, and plans each epoch as
    # shuffled batches with a step-decayed learning rate (× lr_decay every lr_update epochs). An
    # epoch is a plan of steps: if the run is stopped (SIGTERM, Ctrl-C) it saves the plan and resumes
    # at the next step; everything a step changes must be in state_dict() (override it for label
    # stores). Override plan_epoch to decide something per epoch first (a split: see
    # methods/decl.py), end_epoch for an update after the last step that must be saved (finish_epoch
    # only reports: it must not change state_dict()). See methods/README.md for the call order.

    def pair_weights(self, sims: torch.Tensor) -> torch.Tensor:
        """TODO: your estimate of how likely each pair of the batch is matched, in [0, 1].
        Everything is trusted here, which makes the skeleton the vanilla baseline."""
        return torch.ones(sims.shape[0], device=sims.device)

    def train_step(self, epoch: int, plan: EpochPlan, i: int) -> dict[str, float]:
        cfg, ctx = self.config, self.ctx
        self.net.train()
        b = ctx.train.batch(plan.steps[i]).to(ctx.device)
        sims = self.net(b.images, b.tokens, b.lengths)  # (B, B), diagonal = the given pairs
        margin = cfg.margin * self.pair_weights(sims.detach())  # per-pair margin
        loss = triplet_loss(sims, margin, hard_negative=True)
        return {{"loss": optimizer_step(self.optimizer, loss, self.net.parameters(), cfg.grad_clip,
                                       f"epoch {{epoch}}, step {{i}}")}}  # logs, averaged over the epoch's steps
'''

COTEACHING = _HEADER + '''
from ncbench.data.batching import Batch
from ncbench.engine.coteaching import CoTeaching, CoTeachingConfig
from ncbench.engine.optim import optimizer_step
from ncbench.kernels.losses import triplet_loss
from ncbench.kernels.mixture import SplitFit, gmm_split
from ncbench.registry import METHODS


@dataclass
class {cls}Config(CoTeachingConfig):
    # hyper-parameters with the paper's defaults; override per run with --method-opt key=value
    warmup_epochs: int = 5
    epochs: int = 40
    lr: float = 2e-4
    lr_update: int = 30


@METHODS.register("{name}")
class {cls}(CoTeaching):
    """TODO: the one line `ncbench list` shows."""

    Config = {cls}Config
    dataset_defaults = {{"synthetic": {{"warmup_epochs": 5, "epochs": 10, "noisy_from": 5, "lr_update": 8}}}}
    ensemble_size = 2  # the skeleton averages networks A and B at test time

    def warmup_loss(self, net, batch: Batch) -> torch.Tensor:
        return triplet_loss(net(batch.images, batch.tokens, batch.lengths), self.config.margin, hard_negative=False)

    def fit_split(self, losses: torch.Tensor) -> SplitFit:
        """TODO: the per-pair clean probability from one network's per-sample losses."""
        return gmm_split(losses)

    def co_step(self, k: int, clean: Batch, w: torch.Tensor, noisy: Batch | None, epoch: int) -> dict[str, float]:
        """TODO: one step of network k on a batch its peer considers clean (clean probabilities w)
        and, from ``noisy_from`` on, a batch it considers noisy. Here: margins scaled by w."""
        net, opt = self.nets[k], self.opts[k]
        sims = net(clean.images, clean.tokens, clean.lengths)
        loss = triplet_loss(sims, self.config.margin * w.to(sims.dtype), hard_negative=True)
        return {{"loss": optimizer_step(opt, loss, net.parameters(), self.config.grad_clip, f"epoch {{epoch}}")}}
'''

TEMPLATES = {"single": SINGLE, "coteaching": COTEACHING}


def class_name(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def check_name(name: str, taken: list[str]) -> None:
    if not NAME.match(name) or keyword.iskeyword(name):
        raise ConfigError(f"method name {name!r} must be 2–40 lower-case letters, digits or _, starting with a letter")
    if name in taken:
        raise ConfigError(f"a method called {name!r} is already registered; choose another name")


def render(name: str, template: str = "single") -> str:
    if template not in TEMPLATES:
        raise ConfigError(f"unknown template {template!r}; choose from {', '.join(TEMPLATES)}")
    return TEMPLATES[template].format(name=name, cls=class_name(name))


def write_skeleton(name: str, folder: Path, template: str, taken: list[str]) -> Path:
    check_name(name, taken)
    path = Path(folder) / f"{name}.py"
    if path.exists():
        raise ConfigError(f"{path} already exists; not overwriting it")
    write_text_atomic(path, render(name, template))
    return path
