"""Parity of ``crcl``: CRCL's label correction and complementary loss, and its training iteration."""

from __future__ import annotations

import numpy as np
import torch

from ncbench.kernels.complementary import active_complementary_loss, batch_probabilities, correct_labels, match_probability

from ..official import cpu_only, extract, load_module, require
from ..common import T, close, Opt, Log, SGRAF_SIZES, sgraf_inputs, state_list, ncbench_sgraf


# -- CRCL/model/CRCL.py CRCL.train_self: labels, store and loss of one step (difference G) ---------------
class _CRCLView:
    """What ``CRCL.train_self`` reads from ``self``: a B×B score matrix as the only parameter."""

    def __init__(self, scores, store, warm_epoch):
        self.w = torch.nn.Parameter(T(scores.copy()))
        self.params = [self.w]
        self.optimizer = torch.optim.SGD(self.params, lr=0.0)
        self.opt, self.tau, self.alpha, self.step = Opt(warm_epoch), 0.05, 0.8, 0
        self.move_gt, self.logger = store.copy(), Log()

    def forward_emb(self, images, img_lengths, captions, caption_lengths):
        return images, captions

    def forward_sims(self, img, cap, lengths):
        return self.w * 1.0


# (epoch, schedule): a warm epoch, the last warm epoch of stage 0 (labels reset to p), a later epoch,
# a warm epoch of stage 1 (the truncation that difference G is about)
CRCL_STEPS = ((0, 0), (1, 0), (3, 0), (0, 1))


def crcl_inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(5)
    b = 12
    scores = rng.uniform(-0.2, 0.4, size=(b, b))
    scores[np.arange(b), np.arange(b)] += rng.uniform(-0.1, 0.4, b)
    store = rng.uniform(0, 1, size=30)
    store[[2, 7, 11]] = [0.05, 0.09, 0.02]  # stored labels below 0.1
    ids = np.array([2, 7, 11, 0, 1, 3, 4, 5, 6, 8, 9, 10])
    return {"scores": scores, "store": store, "ids": ids}


def make_crcl_step() -> dict[str, np.ndarray]:
    off = extract(require("crcl") / "CRCL_NeurIPS23/model/CRCL.py", ["CRCL.train_self"])
    d = crcl_inputs()
    for epoch, schedule in CRCL_STEPS:
        view = _CRCLView(d["scores"], d["store"], warm_epoch=2)
        with cpu_only():
            off.CRCL_train_self(view, torch.zeros(12), None, torch.zeros(12), torch.ones(12), d["ids"], epoch=epoch,
                                schedule=schedule)
        d[f"store_{epoch}_{schedule}"] = view.move_gt
        d[f"loss_{epoch}_{schedule}"] = np.array(view.logger.values["loss"])
    return d


def check_crcl_step(d) -> None:
    s = T(d["scores"])
    ids = torch.from_numpy(d["ids"])
    p = match_probability(*batch_probabilities(s, 0.05))
    # the official reads stored labels through torch.Tensor(...), i.e. rounded to float32, and forms
    # α·y_last in float32: agreement to float32 precision (ncbench keeps the labels in float64)
    y_last = T(d["store"]).float().double()[ids]
    for epoch, schedule in CRCL_STEPS:
        warm = epoch < 2
        y = correct_labels(y_last, p, warm)
        store = T(d["store"].copy())
        store[ids] = p if (schedule == 0 and epoch == 1) else y
        close(store, d[f"store_{epoch}_{schedule}"], f"label store after epoch {epoch}, stage {schedule}", rtol=1e-6)
        close(active_complementary_loss(s, y, 0.05, 5.0), d[f"loss_{epoch}_{schedule}"],
              f"ACL at epoch {epoch}, stage {schedule}", rtol=1e-6)


# -- CRCL/model/CRCL.py train_self through CRCL's official SGR, against CRCL.train_step ------------------
CRCL_ITERATION = ((0, 0), (1, 0), (2, 0))  # (epoch, schedule): warm, the stage-0 reset, corrected


def make_crcl_iteration() -> dict[str, np.ndarray]:
    import types

    root = require("crcl") / "CRCL_NeurIPS23/model"
    sgraf = load_module(root / "SGRAF.py", "crcl_sgraf")
    off = extract(root / "CRCL.py", ["CRCL.train_self", "CRCL.forward_emb", "CRCL.forward_sims"])
    d = sgraf_inputs()
    opt = types.SimpleNamespace(**SGRAF_SIZES, grad_clip=2.0, no_imgnorm=False, num_layers=1, bi_gru=True,
                                no_txtnorm=False, module_name="SGR", sgr_step=3, margin=0.2, learning_rate=5e-4,
                                max_violation=True, mc=True, confident=True, warm_epoch=2)
    torch.manual_seed(2)
    with cpu_only():
        base = sgraf.SGRAF(opt)
    for enc in (base.img_enc, base.txt_enc, base.sim_enc):
        enc.double()
        for layer in enc.modules():
            if isinstance(layer, torch.nn.Dropout):
                layer.p = 0.0
    d |= {f"C_w{i}": v for i, (_, v) in enumerate(state_list(base))}
    rng = np.random.default_rng(8)
    store = rng.uniform(0, 1, 10).astype(np.float32).astype(np.float64)  # float32-exact: the official rounds
    store[[1, 4]] = np.float32(0.05)
    d |= {"store": store, "ids": np.array([1, 4, 0, 2, 3, 5])}
    self = types.SimpleNamespace(opt=opt, tau=0.05, alpha=0.8, module_name="SGR", base_model=base, step=0,
                                 params=base.params, logger=Log(), move_gt=store.copy(),
                                 optimizer=torch.optim.SGD(base.params, lr=0.05))  # SGD: see _official_bicro
    self.forward_emb = types.MethodType(off.CRCL_forward_emb, self)
    self.forward_sims = types.MethodType(off.CRCL_forward_sims, self)
    for epoch, schedule in CRCL_ITERATION:
        base.train_start()
        with cpu_only():
            off.CRCL_train_self(self, T(d["images"]), None, T(d["tokens"]), torch.from_numpy(d["lengths"]), d["ids"],
                                epoch=epoch, schedule=schedule)
        d[f"store_{epoch}"] = self.move_gt.copy()
        d[f"loss_{epoch}"] = np.array(self.logger.values["loss"])
    return d | {f"C_after{i}": v for i, (_, v) in enumerate(state_list(base))}


def check_crcl_iteration(d) -> None:
    import types

    from ncbench.data.batching import Batch
    from ncbench.engine.method import EpochPlan
    from ncbench.registry import METHODS

    CRCL = METHODS.get("crcl")
    method = CRCL.__new__(CRCL)
    method.config = CRCL.Config(augment=0.0, warm_epochs=2)
    method.net = ncbench_sgraf("sgr", d, "C")[0]
    method.optimizer = torch.optim.SGD(method.net.parameters(), lr=0.05)
    method.labels = T(d["store"].copy())
    ids = torch.from_numpy(d["ids"])
    batch = Batch(T(d["images"]), T(d["tokens"]), T(d["lengths"]), ids)
    method.ctx = types.SimpleNamespace(train=types.SimpleNamespace(batch=lambda steps: batch), device=torch.device("cpu"))
    for epoch, schedule in CRCL_ITERATION:
        plan = EpochPlan([ids], {"stage": schedule, "e": epoch, "warm": epoch < 2, "reset": schedule == 0 and epoch == 1})
        logs = method.train_step(epoch, plan, 0)
        close(method.labels, d[f"store_{epoch}"], f"crcl: label store after epoch {epoch}", rtol=1e-6)
        close(logs["loss"], d[f"loss_{epoch}"], f"crcl: loss at epoch {epoch}", rtol=1e-6)
    for i, (k, v) in enumerate(method.net.state_dict().items()):
        close(v.detach().numpy(), d[f"C_after{i}"], f"crcl: {k} after three steps", rtol=1e-5, atol=1e-8)
