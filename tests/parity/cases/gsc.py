"""Parity of ``gsc``: GSC's (CVPR'24, ``MediaBrain-SJTU/GSC``) batch loss and per-pair values on given
score matrices, its end-of-epoch target update, and one whole training step through GSC's own SGR.

* ``gsc_loss``: the official ``RINCE.warmup_batch`` and ``RINCE.train_batch`` on a model reduced to
  three logit matrices (the cross-modal scores, ``forward_topology``'s image–image and
  caption–caption logits; SGD), with per-pair targets: the logged losses, the stored ``preds`` and
  ``topos``, the logits after the step. ncbench: ``kernels.structure.image_to_text_info_nce`` and
  ``gsc_loss`` on the sigmoids of the same logits, the same SGD step.
* ``gsc_split``: the official ``RINCE.split_batch`` (scikit-learn's GMM) on stored consistencies and
  predictions with earlier targets: ``topo_targets``, ``preds_targets``, ``targets``. ncbench:
  ``consistent_posterior`` + ``update_targets`` (the GMM's initialisation differs, named: agreement
  to 1e-4 on these well-separated values).
* ``gsc_step``: the official ``RINCE.train_batch`` through GSC's ``model/SGRAF.py`` SGR (float64,
  dropout off; SGD in place of Adam, as ``bicro_step``), i.e. its real ``forward_sim`` and
  ``forward_topology``; ncbench: ``GSC.train_step`` itself on the ``sgr`` backbone with the same
  weights: every weight after the step, the stored values of the batch's pairs.

No deviation shows on these inputs (the log-softmax equals the official ``exp/Σexp`` where that is
finite; the global backbones' ``(c + 1)/2`` intra-modal map has no official counterpart).
"""

from __future__ import annotations

import types

import numpy as np
import torch

from ..common import SGRAF_SIZES, T, Log, close, ncbench_sgraf, state_list
from ..official import cpu_only, extract, load_module, require

N_PAIRS = 12  # the per-pair stores' length; the batch is a subset of it


def _rince(names: list[str]):
    return extract(require("gsc") / "GSC/model/RINCE.py", names)


class _Logits:
    """GSC's ``similarity_model`` reduced to logit matrices: ``forward_sim`` is the official
    sigmoid of the cross-modal logits, ``sim_enc.forward_topology`` returns the intra-modal logits."""

    def __init__(self, d):
        self.w = torch.nn.Parameter(T(d["logits"].copy()))
        self.wi = torch.nn.Parameter(T(d["img_logits"].copy()))
        self.wc = torch.nn.Parameter(T(d["cap_logits"].copy()))
        self.params = [self.w, self.wi, self.wc]
        self.sim_enc = types.SimpleNamespace(forward_topology=lambda img, cap, lens: (self.wi * 1.0, self.wc * 1.0))
        for key in ("targets", "preds", "topos"):  # float32 on the GPU in the official
            setattr(self, key, T(d[f"store_{key}"].copy()).float())

    def forward_emb(self, images, captions, lengths):
        return images, captions, lengths

    def forward_sim(self, img, cap, lens, mode="sim"):
        return torch.sigmoid(self.w)


def _trainer(sim, off, gamma: float, lr: float = 0.5):
    """The ``self`` of ``RINCE.train_batch``: options, logger, an SGD optimiser over ``sim.params``."""
    self = types.SimpleNamespace(opt=types.SimpleNamespace(temp=0.07, gamma=gamma, beta=0.7), grad_clip=2.0, step=0,
                                 logger=Log(), similarity_model=sim, params=sim.params)
    self.optimizer = torch.optim.SGD(self.params, lr=lr)
    self.info_nce_loss = types.MethodType(off.RINCE_info_nce_loss, self)
    return self


def loss_inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(32)
    b = 8
    logits = rng.normal(0, 2, (b, b))
    logits[np.arange(b), np.arange(b)] += 2
    # float32 values (the official stores are float32)
    stores = {f"store_{k}": rng.uniform(0.2, 1.0, N_PAIRS).astype(np.float32).astype(np.float64) for k in ("targets", "preds", "topos")}
    return {"logits": logits, "img_logits": rng.normal(0, 2, (b, b)), "cap_logits": rng.normal(0, 2, (b, b)),
            "ids": rng.permutation(N_PAIRS)[:b], "corrs": (rng.uniform(size=b) > 0.4).astype(np.int64)} | stores


def make_gsc_loss() -> dict[str, np.ndarray]:
    off = _rince(["RINCE.info_nce_loss", "RINCE.train_batch", "RINCE.warmup_batch"])
    d = loss_inputs()
    sim = _Logits(d)
    self = _trainer(sim, off, 0.01)
    self.opt.contrastive_loss = "InfoNCE"
    with cpu_only():
        off.RINCE_warmup_batch(self, torch.zeros(8), None, None, torch.from_numpy(d["ids"]), torch.from_numpy(d["corrs"]))
    d["warmup_Loss"], d["warmup_w_after"] = np.array(self.logger.values["Loss"]), sim.w.detach().numpy().copy()
    for gamma in (0.01, 1.0):
        sim = _Logits(d)
        self = _trainer(sim, off, gamma)
        with cpu_only():
            off.RINCE_train_batch(self, torch.zeros(8), None, None, torch.from_numpy(d["ids"]), torch.from_numpy(d["corrs"]))
        tag = f"g{gamma}"
        for key in ("Loss", "Loss_CL", "Loss_TOPO"):
            d[f"{tag}_{key}"] = np.array(self.logger.values[key])
        d[f"{tag}_preds"], d[f"{tag}_topos"] = sim.preds.numpy().copy(), sim.topos.numpy().copy()
        for name, p in (("w", sim.w), ("wi", sim.wi), ("wc", sim.wc)):
            d[f"{tag}_{name}_after"] = p.detach().numpy().copy()
    return d


def check_gsc_loss(d) -> None:
    from ncbench.engine.optim import optimizer_step
    from ncbench.kernels.structure import gsc_loss

    from ncbench.kernels.structure import image_to_text_info_nce

    w = torch.nn.Parameter(T(d["logits"].copy()))
    loss = optimizer_step(torch.optim.SGD([w], lr=0.5), image_to_text_info_nce(torch.sigmoid(w), 0.07), [w], 2.0, "parity")
    close(loss, d["warmup_Loss"], "gsc: warm-up loss (warmup_batch)", rtol=1e-10)
    close(w.detach(), d["warmup_w_after"], "gsc: logits after a warm-up SGD step", rtol=1e-9, atol=1e-12)
    ids = d["ids"]
    for gamma in (0.01, 1.0):
        tag = f"g{gamma}"
        w, wi, wc = (torch.nn.Parameter(T(d[k].copy())) for k in ("logits", "img_logits", "cap_logits"))
        out = gsc_loss(torch.sigmoid(w), torch.sigmoid(wi), torch.sigmoid(wc), T(d["store_targets"][ids]), 0.07, gamma)
        close(out.cross_modal, d[f"{tag}_Loss_CL"], f"gsc: cross-modal InfoNCE (gamma {gamma})", rtol=1e-10)
        close(out.structure, d[f"{tag}_Loss_TOPO"], f"gsc: structure InfoNCE (gamma {gamma})", rtol=1e-10)
        preds, topos = d["store_preds"].copy(), d["store_topos"].copy()
        preds[ids], topos[ids] = out.match_probability.numpy(), out.consistency.numpy()
        # (the official stores them as float32)
        close(preds, d[f"{tag}_preds"], "gsc: stored matching probabilities", rtol=1e-7)
        close(topos, d[f"{tag}_topos"], "gsc: stored structure consistencies", rtol=1e-7)
        loss = optimizer_step(torch.optim.SGD([w, wi, wc], lr=0.5), out.loss, [w, wi, wc], 2.0, "parity")
        close(loss, d[f"{tag}_Loss"], f"gsc: total loss (gamma {gamma})", rtol=1e-10)
        for name, p in (("w", w), ("wi", wi), ("wc", wc)):
            close(p.detach(), d[f"{tag}_{name}_after"], f"gsc: {name} after one SGD step (gamma {gamma})", rtol=1e-9,
                  atol=1e-12)


# -- RINCE.split_batch: the GMM on the consistencies and the two moving averages ---------------------
def split_inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(33)
    n = 400
    clean = rng.uniform(size=n) > 0.45
    topos = np.where(clean, rng.normal(0.8, 0.05, n), rng.normal(0.35, 0.08, n))
    return {"topos": topos, "preds": rng.uniform(0, 1, n), "topo_targets": rng.uniform(0.3, 1, n),
            "preds_targets": rng.uniform(0.3, 1, n)}


def make_gsc_split() -> dict[str, np.ndarray]:
    from sklearn.mixture import GaussianMixture

    off = extract(require("gsc") / "GSC/model/RINCE.py", ["RINCE.split_batch"], {"GaussianMixture": GaussianMixture})
    d = split_inputs()
    sim = types.SimpleNamespace(**{k: T(v.copy()) for k, v in d.items()})
    self = types.SimpleNamespace(similarity_model=sim, opt=types.SimpleNamespace(beta=0.7))
    with cpu_only():
        off.RINCE_split_batch(self, None)
    return d | {f"{k}_after": getattr(sim, k).numpy().copy() for k in ("topo_targets", "preds_targets", "targets")}


def check_gsc_split(d) -> None:
    from ncbench.kernels.structure import consistent_posterior, update_targets

    prob = consistent_posterior(T(d["topos"])).prob
    topo, pred, targets = update_targets(prob, T(d["preds"]), T(d["topo_targets"]), T(d["preds_targets"]), 0.7)
    close(pred, d["preds_targets_after"], "gsc: moving average of the matching probabilities", rtol=1e-12)
    # scikit-learn's k-means++ start against ncbench's mean ± std (named in the mixture kernel)
    close(topo, d["topo_targets_after"], "gsc: moving average of the consistency posterior", rtol=0, atol=1e-4)
    close(targets, d["targets_after"], "gsc: targets = min of the two", rtol=0, atol=1e-4)
    assert (np.asarray(targets) > 0.5).tolist() == (d["targets_after"] > 0.5).tolist(), "gsc: clean side of the targets"


# -- one whole training step through GSC's own SGR ----------------------------------------------------------
STEP_B = 6


def step_inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(34)
    lengths = np.array([9, 8, 6, 5, 4, 3])  # the official collate sorts by length, longest first
    tokens = rng.integers(1, SGRAF_SIZES["vocab_size"], size=(STEP_B, 9)) * (np.arange(9)[None] < lengths[:, None])
    return {"images": np.abs(rng.normal(size=(STEP_B, 36, SGRAF_SIZES["img_dim"]))) + 1e-3, "tokens": tokens,
            "lengths": lengths, "ids": np.array([7, 2, 9, 0, 4, 11]), "corrs": np.array([1, 0, 1, 1, 0, 1]),
            "store_targets": rng.uniform(0.3, 1.0, N_PAIRS).astype(np.float32).astype(np.float64)}


def _gsc_sgraf():
    """GSC's ``model/SGRAF.py`` SGR in float64 with dropout off, its per-pair stores set by the caller."""
    off = load_module(require("gsc") / "GSC/model/SGRAF.py", "gsc_sgraf")
    opt = types.SimpleNamespace(**SGRAF_SIZES, grad_clip=2.0, no_imgnorm=False, num_layers=1, bi_gru=True, no_txtnorm=False,
                                module_name="SGR", sgr_step=3, learning_rate=2e-4, data_name="parity")
    torch.manual_seed(0)
    with cpu_only():
        m = off.SGRAF(opt)
    for enc in (m.img_enc, m.txt_enc, m.sim_enc):
        enc.to(torch.float64)
        for layer in enc.modules():
            if isinstance(layer, torch.nn.Dropout):
                layer.p = 0.0
    return m


def make_gsc_step() -> dict[str, np.ndarray]:
    off = _rince(["RINCE.info_nce_loss", "RINCE.train_batch"])
    d = step_inputs()
    m = _gsc_sgraf()
    d |= {f"net_w{i}": v for i, (_, v) in enumerate(state_list(m))}
    m.targets = T(d["store_targets"].copy()).float()  # float32 stores, as the official's
    m.preds, m.topos = torch.ones(N_PAIRS), torch.ones(N_PAIRS)
    self = _trainer(m, off, gamma=1.0, lr=0.1)  # γ = 1 (COCO's) so the structure term moves the weights visibly
    m.train_start()
    with cpu_only():
        off.RINCE_train_batch(self, T(d["images"]), T(d["tokens"]), d["lengths"].tolist(), torch.from_numpy(d["ids"]),
                              torch.from_numpy(d["corrs"]))
    return d | {f"net_after{i}": v for i, (_, v) in enumerate(state_list(m))} | {
        "loss": np.array(self.logger.values["Loss"]), "loss_topo": np.array(self.logger.values["Loss_TOPO"]),
        "preds_after": m.preds.numpy().copy(), "topos_after": m.topos.numpy().copy()}


def check_gsc_step(d) -> None:
    import sys

    from ncbench.data.batching import Batch
    from ncbench.engine.method import EpochPlan
    from ncbench.registry import METHODS

    GSC = METHODS.get("gsc")
    stores = sys.modules[GSC.__module__].STORES
    net, _ = ncbench_sgraf("sgr", d, "net")
    method = GSC.__new__(GSC)  # the method's own train_step, on the official network's weights
    method.config = GSC.Config(gamma=1.0)
    method.net, method.optimizer = net, torch.optim.SGD(net.parameters(), lr=0.1)
    for key in stores:
        setattr(method, key, torch.ones(N_PAIRS, dtype=torch.float64))
    method.targets = T(d["store_targets"].copy())
    rows = {int(i): k for k, i in enumerate(d["ids"])}

    def batch(ids):
        k = [rows[int(i)] for i in ids]
        return Batch(T(d["images"][k]), T(d["tokens"][k]), T(d["lengths"][k]), torch.as_tensor(ids))

    method.ctx = types.SimpleNamespace(train=types.SimpleNamespace(batch=batch), device=torch.device("cpu"))
    logs = method.train_step(0, EpochPlan([d["ids"]]), 0)
    close(logs["loss"], d["loss"], "gsc: the step's loss through GSC's SGR", rtol=1e-9)
    close(logs["loss_topo"], d["loss_topo"], "gsc: the structure term through forward_topology", rtol=1e-9)
    close(method.preds.numpy(), d["preds_after"], "gsc: stored matching probabilities (float32 in the official)", rtol=1e-7)
    close(method.topos.numpy(), d["topos_after"], "gsc: stored structure consistencies (float32 in the official)", rtol=1e-7)
    for i, (k, v) in enumerate(net.state_dict().items()):
        close(v.detach().numpy(), d[f"net_after{i}"], f"gsc: {k} after one step", rtol=1e-7, atol=1e-10)
