"""Parity of ``rcl``: RCL's complementary contrastive loss in every variant."""

from __future__ import annotations

import numpy as np
import torch


from ..official import cpu_only, extract, require
from ..common import T, close, loss_inputs


# -- RCL/RCL-SGRAF/model.py CCL: every variant, all negatives and a sampled fraction --------------------
def make_rcl_loss() -> dict[str, np.ndarray]:
    off = extract(require("rcl") / "RCL-SGRAF/model.py", ["CCL"])
    d = loss_inputs()
    s = T(d["scores"])
    with cpu_only():
        for variant in ("log", "tan", "abs", "exp", "gce", "infoNCE"):
            d[f"all_{variant}"] = off.CCL(tau=0.05, method=variant, q=0.2, ratio=-1)(s).numpy()
        torch.manual_seed(11)  # the official draws the sampled negatives from the global RNG
        d["sampled_log"] = off.CCL(tau=0.05, method="log", ratio=0.5)(s).numpy()
    return d


def check_rcl_loss(d) -> None:
    from ncbench.kernels.ccl import complementary_contrastive_loss, negative_mask

    s = T(d["scores"])
    for variant in ("log", "tan", "abs", "exp", "gce", "infoNCE"):
        close(complementary_contrastive_loss(s, 0.05, variant, 0.2), d[f"all_{variant}"], f"rcl {variant}")
    mask = negative_mask(16, 0.5, torch.Generator().manual_seed(11), dtype=s.dtype)
    close(complementary_contrastive_loss(s, 0.05, "log", mask=mask), d["sampled_log"], "rcl log, half the negatives")
