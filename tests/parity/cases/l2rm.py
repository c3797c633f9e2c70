"""Parity of ``l2rm``: L2RM's partial optimal transport, its losses and one training iteration."""

from __future__ import annotations

import numpy as np
import torch

from ncbench.kernels.losses import per_sample_triplet

from ..official import cpu_only, extract, require
from ..common import T, close, SGRAF_SIZES, official_sgraf, state_list, ncbench_sgraf, Meter


# -- L2RM/models.py: partial OT (SGRAF.partial_ot + sinkhorn_log_domain), RCE, sym_KL_Divergence -----------
def l2rm_inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(5)
    b = 32
    scores = rng.uniform(0.05, 0.95, size=(b, b))
    narrow = np.clip(0.5 + 0.03 * rng.normal(size=(b, b)), 0, 1)
    diag = rng.uniform(0, 0.3, size=(b, b)) + 0.6 * np.eye(b)
    return {"uniform": scores, "narrow": narrow, "diag": diag}


def make_l2rm() -> dict[str, np.ndarray]:
    path = require("l2rm") / "models.py"
    off = extract(path, ["SGRAF.sinkhorn_log_domain", "SGRAF.partial_ot", "RCE", "sym_KL_Divergence", "ContrastiveLoss",
                         "FeedForward_Network"])
    d = l2rm_inputs()
    for noise in (0.2, 0.0):
        this = type("S", (), {"noise_ratio": noise})()
        this.sinkhorn_log_domain = lambda *a, _t=this, **k: off.SGRAF_sinkhorn_log_domain(_t, *a, **k)
        for name in ("uniform", "narrow", "diag"):
            with torch.no_grad():
                cost = off.FeedForward_Network(d[name].shape[0])(T(d[name]).float()).clip(1e-10)  # the initial C_φ
            p = np.ones(cost.shape[0]) / cost.shape[0]
            for reg in (0.01, 0.07):
                d[f"plan_{name}_{reg}_{noise}"] = off.SGRAF_partial_ot(this, torch.tensor(p), torch.Tensor(p), cost, s=0.1,
                                                                       reg=reg)
    s = T(d["uniform"]).float()
    with cpu_only():
        d["rce"] = off.RCE(tau=0.05)(s).numpy()
        plan = torch.tensor(d["plan_uniform_0.01_0.2"])
        d["sym_kl"] = off.sym_KL_Divergence(tau=0.05)(s, plan).numpy()
        d["eval_loss"] = off.ContrastiveLoss(margin=0.2)(s.clone(), hard_negative="eval_loss").numpy()
    return d


def check_l2rm(d) -> None:
    from ncbench.kernels.rematch import robust_warmup_loss, symmetric_kl_loss
    from ncbench.kernels.transport import partial_ot_plan, transport_targets
    import sys

    from ncbench.registry import METHODS

    BatchLinearCost = sys.modules[METHODS.get("l2rm").__module__].BatchLinearCost

    for noise in (0.2, 0.0):
        for name in ("uniform", "narrow", "diag"):
            with torch.no_grad():
                cost = BatchLinearCost(d[name].shape[0])(T(d[name]).float()).clamp_min(1e-10)
            for reg in (0.01, 0.07):
                close(partial_ot_plan(cost, 0.1, reg, forbid_diagonal=noise > 0), d[f"plan_{name}_{reg}_{noise}"],
                      f"l2rm partial OT {name} reg {reg} noise {noise}", rtol=1e-6, atol=1e-12)
    s = T(d["uniform"]).float()
    close(robust_warmup_loss(s, 0.05), d["rce"], "l2rm RCE", rtol=1e-6)
    targets = transport_targets(T(d["plan_uniform_0.01_0.2"]).float())
    close(symmetric_kl_loss(s, targets[0], targets[1], 0.05), d["sym_kl"], "l2rm symmetric KL", rtol=1e-5)
    close(per_sample_triplet(s, 0.2), d["eval_loss"], "l2rm division loss", rtol=1e-6)


# -- L2RM/main_L2RM.py train: one iteration (cost step, queue, clean triplet + noisy symmetric KL) ---------
L2RM_B = 10  # the official draws k ~ U{1..int(0.1 B)}: B ≥ 10


def l2rm_step_inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(9)
    out = {}
    for part in ("clean", "noisy", "queue"):
        lengths = rng.integers(3, 9, L2RM_B)
        # no all-zero region: its L2 norm has no gradient (NaN on both sides, which would compare equal)
        out[f"{part}_images"] = np.abs(rng.normal(size=(L2RM_B, 36, SGRAF_SIZES["img_dim"]))) + 1e-3
        out[f"{part}_tokens"] = rng.integers(1, SGRAF_SIZES["vocab_size"], size=(L2RM_B, 8)) * (np.arange(8)[None] < lengths[:, None])
        out[f"{part}_lengths"] = lengths
    return out


def _l2rm_draws(seed: int = 3) -> tuple[int, list[int], list[int]]:
    """The draws ``L2RM.cost_step`` makes from a generator seeded ``seed`` (k, clean pairs, queue slots)."""
    gen = torch.Generator().manual_seed(seed)
    k = int(torch.randint(1, max(int(L2RM_B * 0.1), 1) + 1, (1,), generator=gen))
    return k, torch.randperm(L2RM_B, generator=gen)[:k].tolist(), torch.randperm(L2RM_B, generator=gen)[:k].tolist()


def make_l2rm_step() -> dict[str, np.ndarray]:
    import time
    import types

    k, pick, slots = _l2rm_draws()
    draws = iter([pick, slots])
    rand = types.SimpleNamespace(randint=lambda a, b: k, sample=lambda population, n: next(draws))
    path = require("l2rm") / "main_L2RM.py"
    off = extract(path, ["train"], {"AverageMeter": Meter, "ProgressMeter": Meter, "time": time, "random": rand})
    cost_cls = extract(require("l2rm") / "models.py", ["FeedForward_Network"]).FeedForward_Network
    d = l2rm_step_inputs()
    torch.manual_seed(0)
    # float32: the official similarity matrix is float32 whatever the weights (``torch.zeros`` in
    # ``EncoderSimilarity.forward``); SGD in place of Adam, as in ``bicro_step``, so that float32 rounding
    # cannot flip an update's sign; a cost learning rate that makes its step visible
    net = official_sgraf("SGR", "l2rm", torch.float32)
    d |= {f"net_w{i}": v for i, (_, v) in enumerate(state_list(net))}
    cost = cost_cls(L2RM_B)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    optimizer_c = torch.optim.SGD(cost.parameters(), lr=0.01)
    t = {key: T(v).float() if v.dtype == np.float64 else T(v) for key, v in d.items()}
    clean = (t["clean_images"], t["clean_tokens"], t["clean_lengths"].tolist(), np.zeros(L2RM_B), None, None)
    noisy = (t["noisy_images"], t["noisy_tokens"], t["noisy_lengths"].tolist(), None, None)
    queue = t["queue_images"].clone()
    opt = types.SimpleNamespace(lr=0.1, lr_cost=0.01, lr_update=15, batch_size=L2RM_B, grad_clip=2.0, log_step=100)
    with cpu_only():
        off.train(opt, [clean], [noisy], net, optimizer, 0, queue, cost, optimizer_c)
    return d | {f"net_after{i}": v for i, (_, v) in enumerate(state_list(net))} | {
        "cost_weight": cost.fc.weight.detach().numpy().copy(), "cost_bias": cost.fc.bias.detach().numpy().copy(),
        "queue_after": queue.numpy().copy()}


def check_l2rm_step(d) -> None:
    import sys
    import types

    from ncbench.data.batching import Batch
    from ncbench.engine.method import EpochPlan
    from ncbench.registry import METHODS

    L2RM = METHODS.get("l2rm")
    module = sys.modules[L2RM.__module__]
    images = np.concatenate([d["clean_images"], d["noisy_images"], d["queue_images"]]).astype(np.float32)  # rows 0-9, 10-19, 20-29
    tokens = {"clean": (T(d["clean_tokens"]), T(d["clean_lengths"])), "noisy": (T(d["noisy_tokens"]), T(d["noisy_lengths"]))}

    def batch(ids):
        part = "clean" if int(ids[0]) < L2RM_B else "noisy"
        return Batch(T(images[np.asarray(ids)]), *tokens[part], torch.as_tensor(ids))

    net, _ = ncbench_sgraf("sgr", d, "net", torch.float32)
    method = L2RM.__new__(L2RM)  # the method's own train_step, on the official network's weights
    method.config = L2RM.Config(batch_size=L2RM_B)
    method.net, method.optimizer = net, torch.optim.SGD(net.parameters(), lr=0.1)
    method.cost = module.BatchLinearCost(L2RM_B)
    method.cost_optimizer = torch.optim.SGD(method.cost.parameters(), lr=0.01)
    method.queue = np.arange(2 * L2RM_B, 3 * L2RM_B)
    train = types.SimpleNamespace(batch=batch, t2i=np.arange(2 * L2RM_B), split=types.SimpleNamespace(images=images),
                                  pin_memory=False, noise_ratio=0.6)
    method.ctx = types.SimpleNamespace(train=train, device=torch.device("cpu"), generator=torch.Generator().manual_seed(3))
    step = (np.arange(L2RM_B), np.arange(L2RM_B, 2 * L2RM_B))
    logs = method.train_step(0, EpochPlan([step], {"warmup": False}), 0)
    assert {"loss", "loss_noisy", "cost_loss"} <= set(logs), logs
    close(method.cost.fc.weight.detach(), d["cost_weight"], "l2rm: learned cost weight after its step", rtol=1e-5,
          atol=1e-7)
    close(method.cost.fc.bias.detach(), d["cost_bias"], "l2rm: learned cost bias after its step", rtol=1e-5, atol=1e-7)
    close(images[method.queue], d["queue_after"], "l2rm: the image queue holds the noisy batch", rtol=0)
    for i, (k, v) in enumerate(net.state_dict().items()):
        assert np.isfinite(d[f"net_after{i}"]).all(), f"l2rm: the official {k} is not finite after the step"
        close(v.detach().numpy(), d[f"net_after{i}"], f"l2rm: {k} after one iteration", rtol=1e-4, atol=1e-6)
