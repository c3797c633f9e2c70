"""DECL's layout: ``{"epoch", "model", "best_rsum", "opt", "step"}``, ``model`` the three state dicts
of one SGR or SAF network (``model/SGRAF.py``, whose similarity head returns the logit ``z``).
DECL ranks by its evidence ``exp(tanh(z) / tau)`` (``evaluation.shard_attn_scores(mode="not sim")``)
and its "SGRAF" averages the evidence of an SAF and an SGR file (``validation_dul``): ``Evidence``
wraps a network so that ncbench's evaluation averages the same quantity."""

from __future__ import annotations

import torch

from ..backbones.base import Backbone
from .base import Family, Network, require_keys, state_list

KEYS = ("model", "opt")


class Evidence(Backbone):
    """A network whose scores are DECL's evidence ``exp(tanh(z) / tau)`` of its sigmoid head."""

    def __init__(self, net: Backbone, tau: float):
        super().__init__(net.config, net.vocab_size, net.feature_dim)
        self.net, self.tau = net, float(tau)

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        return self.net.encode_images(images)

    def encode_captions(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.net.encode_captions(tokens, lengths)

    def score(self, img_emb: torch.Tensor, cap_emb: torch.Tensor) -> torch.Tensor:
        return torch.exp(self.net.signed(self.net.score(img_emb, cap_emb)) / self.tau)

    def test_scores(self, img_emb: torch.Tensor, cap_emb: torch.Tensor) -> torch.Tensor:
        return torch.exp(self.net.signed(self.net.test_scores(img_emb, cap_emb)) / self.tau)


def split(content: dict, where: str) -> list[Network]:
    require_keys(content, KEYS, where, "DECL")
    return [Network("model", content["opt"], state_list(content["model"], "model", where))]


FAMILY = Family(
    name="decl", description="DECL: one SGR or SAF network per file; SAF + SGR evidence averaged",
    methods=("decl",), noise_type="image",
    detect=lambda keys: "model" in keys and not {"schedule", "move_gt"} & keys, split=split,
    combine="mean_evidence", keys=KEYS)
