"""Parity of the ``sgr`` and ``saf`` backbones: NCR's SGRAF scores and one training step with the official
weights.
"""

from __future__ import annotations

import numpy as np
import torch

from ncbench.engine.optim import optimizer_step
from ncbench.kernels.losses import triplet_loss
from ncbench.kernels.rectify import soft_margin

from ..official import cpu_only
from ..common import T, close, sgraf_inputs, official_sgraf, state_list, ncbench_sgraf


# -- NCR/model.py SGRAF: SGR and SAF scores, and one training step with the official weights ------------
def make_sgraf_step() -> dict[str, np.ndarray]:
    d = sgraf_inputs()
    for module in ("SGR", "SAF"):
        m = official_sgraf(module)
        images, tokens, lengths = T(d["images"]), T(d["tokens"]), d["lengths"].tolist()
        d |= {f"{module}_w{i}": v for i, (_, v) in enumerate(state_list(m))}
        with cpu_only(), torch.no_grad():
            m.val_start()
            d[f"{module}_eval_scores"] = m.forward_sim(*m.forward_emb(images, tokens, lengths)).numpy()
        with cpu_only():
            m.train_start()
            d[f"{module}_loss"] = np.array(m.train(images, tokens, lengths, hard_negative=True, mode="train"))
            d |= {f"{module}_after{i}": v for i, (_, v) in enumerate(state_list(m))}
            # a second, co-training step: soft labels as NCR/BiCro pass them (a length-B vector)
            d[f"{module}_loss2"] = np.array(m.train(images, tokens, lengths, hard_negative=True, labels=T(d["labels"]),
                                                    soft_margin="exponential", mode="train"))
        d |= {f"{module}_after2_{i}": v for i, (_, v) in enumerate(state_list(m))}
    return d


def check_sgraf_step(d) -> None:
    images, tokens, lengths = T(d["images"]), T(d["tokens"]), T(d["lengths"])
    for module, name in (("SGR", "sgr"), ("SAF", "saf")):
        net, keys = ncbench_sgraf(name, d, module)
        net.eval()
        with torch.no_grad():
            close(net(images, tokens, lengths), d[f"{module}_eval_scores"], f"{name}: test-time scores", rtol=1e-10)
        net.train()
        optimizer = torch.optim.Adam(net.parameters(), lr=2e-4)
        loss = optimizer_step(optimizer, triplet_loss(net(images, tokens, lengths), 0.2), list(net.parameters()), 2.0,
                              "parity")
        close(loss, d[f"{module}_loss"], f"{name}: training loss", rtol=1e-10)
        for i, (k, v) in enumerate(net.state_dict().items()):
            # after one Adam step (grad clip 2.0): weights, BatchNorm running statistics and counts
            close(v.detach().numpy(), d[f"{module}_after{i}"], f"{name}: {k} after one step", rtol=1e-7, atol=1e-10)
        # the labelled step with official_broadcast=true (margin m_j on column j, §3.8)
        margin = soft_margin(T(d["labels"]), 0.2)[None, :].expand(6, 6)
        loss = optimizer_step(optimizer, triplet_loss(net(images, tokens, lengths), margin), list(net.parameters()), 2.0,
                              "parity")
        close(loss, d[f"{module}_loss2"], f"{name}: labelled training loss", rtol=1e-9)
        for i, (k, v) in enumerate(net.state_dict().items()):
            close(v.detach().numpy(), d[f"{module}_after2_{i}"], f"{name}: {k} after the labelled step", rtol=1e-6,
                  atol=1e-9)
