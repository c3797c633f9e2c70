"""Parity of ``pc2``: PC²'s warm-up step (triplet + pseudo-classification, prediction bank), its
division (the loss and oscillation statistics of ``eval_train_cc`` and their splits) and one
co-training iteration (the clean step and the pseudo-caption step), through PC²'s own SGR
(``pc2/model.py``; float64, dropout off) with a small head (16 hidden units, 8 classes) over 36 × 16 region embeddings.

The official head is built for 36 × 1024 embeddings (``Projection_Head(input_size=36*1024)``); the
case replaces it by the official ``Projection_Head`` class at 36 × 16 (the small SGR's size), and
the official model refuses to be built without CUDA, so ``torch.cuda.is_available`` answers True
while it is built (``.cuda()`` is a no-op throughout, ``official.cpu_only``).
"""

from __future__ import annotations

import contextlib
import sys
import time
import types

import numpy as np
import torch

from ncbench.kernels.losses import per_sample_triplet
from ncbench.kernels.mixture import split_clean

from ..common import SGRAF_SIZES, T, Meter, close, ncbench_sgraf, sgraf_inputs, state_list
from ..official import cpu_only, extract, load_module, require

PROJ = 8  # classes of the small head
HIDDEN = 16  # its hidden width (official default 256)
REGIONS = 36
LAMBDA_EN = 10.0


@contextlib.contextmanager
def _cuda_claimed():
    saved = torch.cuda.is_available
    torch.cuda.is_available = lambda: True
    try:
        yield
    finally:
        torch.cuda.is_available = saved


def _official_model(seed: int):
    """PC²'s ``SGRAF`` (SGR), float64, dropout off, with the official head class at 36 × 16 inputs."""
    off = load_module(require("pc2") / "pc2/model.py", "pc2_model")
    opt = types.SimpleNamespace(**SGRAF_SIZES, grad_clip=2.0, no_imgnorm=False, num_layers=1, bi_gru=True,
                                no_txtnorm=False, module_name="SGR", sgr_step=3, margin=0.2, learning_rate=2e-4,
                                lambda_en=LAMBDA_EN, proj_dim=PROJ, distributed=False, gpu=None)
    torch.manual_seed(seed)
    with cpu_only(), _cuda_claimed():
        m = off.SGRAF(opt)
    m.img_pro_head = off.Projection_Head(input_size=REGIONS * SGRAF_SIZES["embed_size"], hidden_size=HIDDEN,
                                       output_size=PROJ)
    for enc in (m.img_enc, m.txt_enc, m.sim_enc, m.img_pro_head):
        enc.to(torch.float64)
        for layer in enc.modules():
            if isinstance(layer, torch.nn.Dropout):
                layer.p = 0.0
    m.params = [p for enc in (m.txt_enc, m.img_enc, m.sim_enc, m.img_pro_head) for p in enc.parameters()]
    m.optimizer = torch.optim.Adam(m.params, lr=opt.learning_rate)
    return m, opt


def _weights(m, name: str) -> dict[str, np.ndarray]:
    out = {f"{name}_w{i}": v for i, (_, v) in enumerate(state_list(m))}
    return out | {f"{name}_head{i}": v.detach().numpy().copy() for i, v in enumerate(m.img_pro_head.state_dict().values())}


def _after(m, name: str) -> dict[str, np.ndarray]:
    return {f"{name}_after{i}": v for i, v in enumerate(_weights(m, "x").values())}


class _Train:
    """What ``PC2.oscillations`` reads of a training set: its size and its batches in order."""

    def __init__(self, batches):
        self.batches = batches

    def __len__(self):
        return sum(len(b) for b in self.batches)

    def loader(self, batch_size=None, shuffle=False, generator=None):
        return iter(self.batches)


def _method(d, names, n: int, **options):
    """``PC2`` around ncbench SGRs holding the official weights of ``names`` (its own hooks and steps)."""
    from ncbench.registry import METHODS

    PC2 = METHODS.get("pc2")
    ProjectionHead = sys.modules[PC2.__module__].ProjectionHead

    m = PC2.__new__(PC2)
    m.config = PC2.Config(proj_dim=PROJ, head_hidden=HIDDEN, lambda_en=LAMBDA_EN, **options)
    m.nets = [ncbench_sgraf("sgr", d, name)[0] for name in names]
    m.heads = []
    for name in names:
        head = ProjectionHead(REGIONS * SGRAF_SIZES["embed_size"], m.config.head_hidden, PROJ).to(torch.float64)
        head.load_state_dict({k: T(d[f"{name}_head{i}"]) for i, k in enumerate(head.state_dict())})
        m.heads.append(head)
    m.regions = REGIONS
    m.opts = [m._adam(k) for k in range(len(names))]
    m.bank = torch.zeros(2, n, PROJ)
    m.banked = torch.zeros(2, n, dtype=torch.bool)
    m.record_labels = lambda ids, labels: None
    return m


def _net_after(m, k: int) -> list[np.ndarray]:
    return ([v.detach().numpy() for v in m.nets[k].state_dict().values()]
            + [v.detach().numpy() for v in m.heads[k].state_dict().values()])


# -- pc2/model.py SGRAF.train(mode="warmup"): one warm-up step of one network ---------------------------
def make_pc2_warmup() -> dict[str, np.ndarray]:
    m, opt = _official_model(0)
    d = sgraf_inputs() | _weights(m, "A")
    bank = {}
    with cpu_only():
        m.train_start()
        m.train(opt, T(d["images"]), T(d["tokens"]), d["lengths"].tolist(), list(range(6)), None, bank, mode="warmup")
    return d | _after(m, "A") | {"bank": np.stack([bank[i] for i in range(6)])}


def check_pc2_warmup(d) -> None:
    from ncbench.data.batching import Batch
    from ncbench.engine.optim import optimizer_step

    m = _method(d, ["A"], 6)
    batch = Batch(T(d["images"]), T(d["tokens"]), T(d["lengths"]), torch.arange(6))
    m.nets[0].train()
    optimizer_step(m.opts[0], m.warmup_loss(m.nets[0], batch), m._params(0), 2.0, "parity")
    for i, a in enumerate(_net_after(m, 0)):
        close(a, d[f"A_after{i}"], f"pc2: weight {i} after the warm-up step", rtol=1e-6, atol=1e-9)
    close(m.bank[0, :6].numpy(), d["bank"], "pc2: banked warm-up predictions", rtol=1e-6, atol=1e-8)
    assert m.banked[0, :6].all()


# -- pc2/co_train.py eval_train_cc: the loss and oscillation statistics and their splits -------------------
def division_inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(11)
    n, b = 24, 6
    lengths = rng.integers(3, 10, n)
    tokens = rng.integers(1, SGRAF_SIZES["vocab_size"], (n, 9)) * (np.arange(9)[None] < lengths[:, None])
    peaked = np.where(np.arange(PROJ) == rng.integers(0, PROJ, (2, n, 1)), 0.86, 0.02)  # a class it has moved from
    bank = (peaked * rng.uniform(0.9, 1.1, peaked.shape)).astype(np.float32).astype(np.float64)
    banked = np.ones((2, n), dtype=bool)
    banked[0, [3, 17]] = banked[1, [8]] = False  # never banked: oscillation 0
    return {"images": np.maximum(rng.normal(size=(n, REGIONS, SGRAF_SIZES["img_dim"])), 0.0), "tokens": tokens,
            "lengths": lengths, "order": rng.permutation(n).reshape(-1, b), "bank": bank, "banked": banked}


class _RecordingGMM:
    """scikit-learn's GaussianMixture (seeded), remembering what it was fitted to."""

    seen: list = []

    def __init__(self, **kwargs):
        from sklearn.mixture import GaussianMixture

        self.gmm = GaussianMixture(random_state=0, **kwargs)

    def fit(self, x):
        _RecordingGMM.seen.append(np.asarray(x, dtype=np.float64).ravel().copy())
        self.gmm.fit(x)
        self.means_ = self.gmm.means_
        return self

    def predict_proba(self, x):
        return self.gmm.predict_proba(x)


def make_pc2_division() -> dict[str, np.ndarray]:
    import os

    f = extract(require("pc2") / "pc2/co_train.py", ["eval_train_cc", "split_prob"],
                {"AverageMeter": Meter, "ProgressMeter": Meter, "time": time, "os": os, "GaussianMixture": _RecordingGMM})
    d = division_inputs()
    models = [_official_model(seed)[0] for seed in (0, 1)]
    for name, m in zip("AB", models):
        d |= _weights(m, name)
    loader = [(T(d["images"][ids]), T(d["tokens"][ids]), d["lengths"][ids].tolist(), ids.tolist()) for ids in d["order"]]
    opt = types.SimpleNamespace(log_step=100, p_threshold=0.5, gpu=None)
    # two kinds of pairs: a stable prediction (banked ≈ the current one) and one that moved (peaked elsewhere)
    stable = np.random.default_rng(13).random(24) < 0.6
    for k, m in enumerate(models):
        m.val_start()
        with cpu_only(), torch.no_grad():
            for images, tokens, lengths, ids in loader:
                _, now = m.train(opt, images, tokens, lengths, ids, None, mode="eval_loss")
                near = 0.9 * now.numpy() + 0.1 / PROJ
                d["bank"][k, ids] = np.where(stable[ids, None], near.astype(np.float32), d["bank"][k, ids])
    banks = [{i: d["bank"][k, i] for i in range(24) if d["banked"][k, i]} for k in range(2)]
    _RecordingGMM.seen = []
    with cpu_only():
        out = f.eval_train_cc(opt, models[0], models[1], banks[0], banks[1], loader, 24, [[], []], None, 0, "", "")
    names = ("prob_loss_A", "prob_loss_B", "pred_loss_A", "pred_loss_B", "prob_ctt_A", "prob_ctt_B", "pred_ctt_A",
             "pred_ctt_B")
    seen = dict(zip(("x_loss_A", "x_loss_B", "x_ctt_A", "x_ctt_B"), _RecordingGMM.seen))
    return d | dict(zip(names, (np.asarray(v) for v in out[:8]))) | seen


def check_pc2_division(d) -> None:
    from ncbench.data.batching import Batch
    from ncbench.kernels.mixture import gmm_split, minmax

    m = _method(d, ["A", "B"], 24)
    m.bank.copy_(T(d["bank"]).float())
    m.banked.copy_(T(d["banked"]))
    batches = [Batch(T(d["images"][ids]), T(d["tokens"][ids]), T(d["lengths"][ids]), T(ids)) for ids in d["order"]]
    m.ctx = types.SimpleNamespace(train=_Train(batches), device=torch.device("cpu"))
    for k, name in enumerate("AB"):
        net = m.nets[k].eval()
        loss = torch.zeros(24, dtype=torch.float64)
        with torch.no_grad():
            for b in batches:  # the skeleton's statistic (per_sample_triplet) on the official batches
                loss[b.ids] = per_sample_triplet(net(b.images, b.tokens, b.lengths), 0.2)
        close(minmax(loss), d[f"x_loss_{name}"], f"pc2: normalised per-sample loss of {name}", atol=1e-6)
        po = m.oscillations(k)
        close(minmax(po.double()), d[f"x_ctt_{name}"], f"pc2: normalised oscillation of {name}", rtol=1e-4, atol=1e-6)
        # the oscillation split (two clear groups here): NCR's deterministic GMM against scikit-learn's.
        # (The loss split is NCR's, pinned by NCR's tests; on these untrained networks' unimodal losses
        # a 10-iteration GMM depends on its initialisation, so only its statistic is compared above.)
        prob = gmm_split(po).prob.double()
        assert split_clean(prob, 0.5).tolist() == d[f"pred_ctt_{name}"].tolist(), f"oscillation split of {name}"
        close(prob, d[f"prob_ctt_{name}"], f"pc2: oscillation clean probability of {name}", atol=1e-3)


# -- pc2/co_train.py train: one co-training iteration (clean step, then pseudo-caption step) ---------------
def step_inputs() -> dict[str, np.ndarray]:
    d = sgraf_inputs()
    rng = np.random.default_rng(12)
    perm = rng.permutation(6)  # the mismatched batch's captions: the clean batch's, reordered (same padded length)
    return d | {"noisy_images": np.maximum(rng.normal(size=d["images"].shape), 0.0), "noisy_tokens": d["tokens"][perm],
                "noisy_lengths": d["lengths"][perm], "w": rng.uniform(0.5, 1.0, 6), "po_prob": rng.uniform(0, 1, 6),
                "po_clean": np.array([1, 0, 1, 1, 0, 1])}


def make_pc2_step() -> dict[str, np.ndarray]:
    off = extract(require("pc2") / "pc2/co_train.py", ["train"], {"AverageMeter": Meter, "ProgressMeter": Meter,
                                                                  "time": time})
    d = step_inputs()
    (a, opt), (b, _) = _official_model(0), _official_model(1)
    d |= _weights(a, "A") | _weights(b, "B")
    ones = torch.ones(6, 1)
    clean = (T(d["images"]), T(d["tokens"]), d["lengths"].tolist(), list(range(6)), list(range(6)), ones.long(),
             T(d["w"])[:, None], T(d["po_clean"])[:, None].long(), T(d["po_prob"])[:, None], torch.ones(6))
    noisy = (T(d["noisy_images"]), T(d["noisy_tokens"]), d["noisy_lengths"].tolist(), list(range(6, 12)),
             list(range(6)), torch.ones(6))
    opt.warmup_epoch_2, opt.soft_margin, opt.log_step = 1, "exponential", 100
    bank = {}
    with cpu_only():
        off.train(opt, a, b, bank, [clean], [noisy], epoch=1)  # epoch ≥ warmup_epoch_2: both steps
    return d | _after(a, "A") | {"bank": np.stack([bank[i] for i in range(12)])}


def _co_step(d, **options) -> "object":
    from ncbench.data.batching import Batch

    m = _method(d, ["A", "B"], 12, noisy_from=1, **options)
    po_prob, po_clean = torch.zeros(12, dtype=torch.float64), torch.zeros(12, dtype=torch.bool)
    po_prob[:6], po_clean[:6] = T(d["po_prob"]), T(d["po_clean"]).bool()
    m._plan_data = {"po_probs": [None, po_prob], "po_clean": [None, po_clean]}  # the peer B's splits
    clean = Batch(T(d["images"]), T(d["tokens"]), T(d["lengths"]), torch.arange(6))
    noisy = Batch(T(d["noisy_images"]), T(d["noisy_tokens"]), T(d["noisy_lengths"]), torch.arange(6, 12))
    m.nets[1].eval()
    m.co_step(0, clean, T(d["w"]), noisy, epoch=1)
    return m


def _matches(m, d) -> bool:
    return all(np.allclose(a, d[f"A_after{i}"], rtol=1e-6, atol=1e-9) for i, a in enumerate(_net_after(m, 0)))


def check_pc2_step(d) -> None:
    m = _co_step(d, official_broadcast=True, official_label_grad=True)
    for i, a in enumerate(_net_after(m, 0)):
        close(a, d[f"A_after{i}"], f"pc2: weight {i} of A after one co-training iteration", rtol=1e-6, atol=1e-9)
    close(m.bank[0, :12].numpy(), d["bank"], "pc2: predictions banked by the pseudo-caption step", rtol=1e-6, atol=1e-8)
    # named deviations: per-pair margins, and pseudo-caption labels as targets; each switch matters
    assert not _matches(_co_step(d), d)
    assert not _matches(_co_step(d, official_broadcast=True), d)
    assert not _matches(_co_step(d, official_label_grad=True), d)
