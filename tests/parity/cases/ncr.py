"""Parity of ``ncr``: NCR's ContrastiveLoss in every mode, its clean/noisy split and one co-training step."""

from __future__ import annotations

import numpy as np
import torch

from ncbench.kernels.losses import per_sample_triplet, triplet_loss
from ncbench.kernels.mixture import split_clean
from ncbench.kernels.rectify import adaptive_prediction, soft_margin

from ..official import cpu_only, extract, require
from ..common import T, close, loss_inputs, official_sgraf, state_list, ncbench_sgraf, Meter, Unlabeled, ncr_step_inputs


# -- NCR/model.py ContrastiveLoss: every mode, labels broadcast as the official code does ------------
def make_ncr_loss() -> dict[str, np.ndarray]:
    off = extract(require("ncr") / "NCR/model.py", ["ContrastiveLoss"])
    d = loss_inputs()
    s, y = T(d["scores"]), T(d["labels"])
    crit = off.ContrastiveLoss(margin=0.2)
    with cpu_only():
        d["train_hard"] = crit(s, hard_negative=True).numpy()
        d["train_mean"] = crit(s, hard_negative=False).numpy()
        d["warmup"] = crit(s, mode="warmup").numpy()
        d["eval_loss"] = crit(s, mode="eval_loss").numpy()
        d["predict"] = crit(s, mode="predict").clamp(0, 1).numpy()  # SGRAF.predict clamps to [0, 1]
        for mode in ("linear", "exponential", "sin"):
            d[f"labelled_{mode}"] = crit(s, hard_negative=True, labels=y, soft_margin=mode).numpy()
    return d


def check_ncr_loss(d) -> None:
    s, y = T(d["scores"]), T(d["labels"])
    close(triplet_loss(s, 0.2), d["train_hard"], "hardest-negative loss")
    close(triplet_loss(s, 0.2, hard_negative=False), d["train_mean"], "mean loss")
    close(triplet_loss(s, 0.2, hard_negative=False), d["warmup"], "warm-up loss")
    close(per_sample_triplet(s, 0.2), d["eval_loss"], "per-sample loss (the split statistic)")
    close(adaptive_prediction(per_sample_triplet(s, 0.2)), d["predict"], "adaptive prediction")
    for mode in ("linear", "exponential", "sin"):
        m = soft_margin(y, 0.2, mode)
        # named deviation (§3.8): the paper attaches each label's margin to its own pair ...
        assert abs(float(triplet_loss(s, m)) - float(d[f"labelled_{mode}"])) > 1e-6, f"{mode}: per-pair margins"
        # ... official_broadcast=true adds margin m_j to column j in both terms, as the official code
        close(triplet_loss(s, m[None, :].expand(16, 16)), d[f"labelled_{mode}"], f"{mode}: official broadcast")


# -- NCR/co_train.py split_prob: the ≥ 1% forced-noisy rule (difference F) ----------------------------
def split_inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(2)
    return {"small": rng.uniform(0.6, 1.0, 50), "large": rng.uniform(0.6, 1.0, 1000), "mixed": rng.uniform(0, 1, 300)}


def make_split() -> dict[str, np.ndarray]:
    off = extract(require("ncr") / "NCR/co_train.py", ["split_prob"])
    d = split_inputs()
    return d | {f"{k}_pred": off.split_prob(v, 0.5) for k, v in list(d.items())}


def check_split(d) -> None:
    for k in ("small", "large", "mixed"):
        assert split_clean(T(d[k]), 0.5).tolist() == d[f"{k}_pred"].tolist(), k


# -- NCR/co_train.py train: one co-training step of NCR (clean and noisy batch) with the official SGR ----
def make_ncr_step() -> dict[str, np.ndarray]:
    import time
    import types

    off = extract(require("ncr") / "NCR/co_train.py", ["train"], {"AverageMeter": Meter, "ProgressMeter": Meter,
                                                                  "time": time})
    d = ncr_step_inputs()
    nets = []
    for seed, net_name in ((0, "A"), (1, "B")):
        torch.manual_seed(seed)
        m = official_sgraf("SGR")
        d |= {f"{net_name}_w{i}": v for i, (_, v) in enumerate(state_list(m))}
        nets.append(m)
    b = 6
    clean = (T(d["images"]), T(d["tokens"]), d["lengths"].tolist(), list(range(b)), torch.ones(b, 1).long(),
             T(d["w"])[:, None], torch.ones(b))
    noisy = (T(d["noisy_images"]), T(d["noisy_tokens"]), d["noisy_lengths"].tolist(), list(range(b)), torch.ones(b))
    opt = types.SimpleNamespace(num_epochs=4, soft_margin="exponential", log_step=100)
    with cpu_only():
        off.train(opt, nets[0], nets[1], [clean], Unlabeled(noisy), epoch=2)  # epoch ≥ 4 // 2: noisy batch trained
    return d | {f"A_after{i}": v for i, (_, v) in enumerate(state_list(nets[0]))}


def check_ncr_step(d) -> None:
    from ncbench.data.batching import Batch
    from ncbench.registry import METHODS

    NCR = METHODS.get("ncr")
    NCRConfig = NCR.Config
    nets = [ncbench_sgraf("sgr", d, name)[0] for name in ("A", "B")]
    method = NCR.__new__(NCR)  # the method's own co_step, on the official networks' weights
    method.nets, method.opts = nets, [torch.optim.Adam(n.parameters(), lr=2e-4) for n in nets]
    method.config = NCRConfig(official_broadcast=True, epochs=4, noisy_from=2)
    method.record_labels = lambda ids, labels: None
    ids = torch.arange(6)
    clean = Batch(T(d["images"]), T(d["tokens"]), T(d["lengths"]), ids)
    noisy = Batch(T(d["noisy_images"]), T(d["noisy_tokens"]), T(d["noisy_lengths"]), ids)
    method.co_step(0, clean, T(d["w"]), noisy, epoch=2)
    for i, (k, v) in enumerate(nets[0].state_dict().items()):
        close(v.detach().numpy(), d[f"A_after{i}"], f"ncr: net A {k} after one co-training step", rtol=1e-6, atol=1e-9)
    # named deviation: with per-pair margins (the default) the step differs
    method.nets = [ncbench_sgraf("sgr", d, name)[0] for name in ("A", "B")]
    method.opts = [torch.optim.Adam(n.parameters(), lr=2e-4) for n in method.nets]
    method.config = NCRConfig(epochs=4, noisy_from=2)
    method.co_step(0, clean, T(d["w"]), noisy, epoch=2)
    after = [v.detach().numpy() for v in method.nets[0].state_dict().values()]
    assert not all(np.allclose(a, d[f"A_after{i}"], rtol=1e-6, atol=1e-9) for i, a in enumerate(after))
