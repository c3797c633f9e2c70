"""Parity of ``bicro``: BiCro's losses, its Beta mixture, its consistency labels and one co-training
iteration.
"""

from __future__ import annotations

import numpy as np
import torch

from ncbench.kernels import consistency
from ncbench.kernels.losses import per_sample_triplet, triplet_loss
from ncbench.kernels.mixture import bmm_split, minmax
from ncbench.kernels.rectify import raw_prediction, soft_margin

from ..official import cpu_only, extract, load_module, require
from ..common import T, close, loss_inputs, SGRAF_SIZES, state_list, ncbench_sgraf, Meter, Unlabeled, ncr_step_inputs


# -- BiCro/model.py ContrastiveLoss: its warm-up selection and the labelled modes ---------------------
def make_bicro_loss() -> dict[str, np.ndarray]:
    off = extract(require("bicro") / "model.py", ["ContrastiveLoss"])
    d = loss_inputs()
    s, y = T(d["scores"]), T(d["labels"])
    crit = off.ContrastiveLoss(margin=0.2, warmup_rate=0.3)
    with cpu_only():
        d["warmup_sele"] = crit(s, mode="warmup_sele").numpy()
        for mode in ("train", "noise_soft"):
            d[f"labelled_{mode}"] = crit(s, hard_negative=True, labels=y, soft_margin="exponential", mode=mode).numpy()
    return d


def check_bicro_loss(d) -> None:
    s, y = T(d["scores"]), T(d["labels"])
    close(consistency.lowest_loss_sum(per_sample_triplet(s, 0.2), 0.3), d["warmup_sele"], "warm-up on the lowest 30%")
    margin = soft_margin(y, 0.2)
    for mode in ("train", "noise_soft"):
        assert abs(float(triplet_loss(s, margin)) - float(d[f"labelled_{mode}"])) > 1e-6, f"{mode}: per-pair margins"
        close(triplet_loss(s, margin[None, :].expand(16, 16)), d[f"labelled_{mode}"], f"{mode}: official broadcast")


# -- BiCro/co_train.py BetaMixture1D -----------------------------------------------------------------
def make_bicro_bmm() -> dict[str, np.ndarray]:
    import scipy.stats as stats

    off = extract(require("bicro") / "co_train.py", ["weighted_mean", "fit_beta_weighted", "BetaMixture1D"],
                  {"stats": stats})
    rng = np.random.default_rng(3)
    losses = np.concatenate([rng.gamma(2.0, 0.05, 700), rng.normal(0.6, 0.15, 300).clip(0.01)])
    x = (losses - losses.min()) / (losses.max() - losses.min())  # as the official eval_train normalises
    bmm = off.BetaMixture1D(max_iters=10).fit(x)
    with np.errstate(all="ignore"):
        post = bmm.posterior(x, 0)
    return {"losses": losses, "alphas": bmm.alphas, "betas": bmm.betas, "weights": bmm.weight, "posterior0": post}


def check_bicro_bmm(d) -> None:
    fit = bmm_split(T(d["losses"]))
    close(fit.mixture.alphas, d["alphas"], "Beta alphas", rtol=1e-7)
    close(fit.mixture.betas, d["betas"], "Beta betas", rtol=1e-7)
    close(fit.mixture.weights, d["weights"], "mixture weights", rtol=1e-7)
    assert fit.clean_component == 0  # on these losses the low-mean component is the official's 0
    x = minmax(T(d["losses"])).numpy()
    inner = (x > 1e-4) & (x < 1 - 1e-4)
    close(fit.prob.numpy()[inner], d["posterior0"][inner], "clean posterior", rtol=1e-7)
    # named deviation (§4.7 4b): the official evaluates the density on unclipped losses, which is
    # not finite or not a probability at exact 0 and 1; ncbench clips first
    edge = d["posterior0"][~inner]
    assert not np.all(np.isfinite(edge) & (edge >= 0) & (edge <= 1)) or not np.allclose(edge, fit.prob.numpy()[~inner])


# -- BiCro/model.py SGRAF.predict: anchors, consistency ratios, the scatter (differences A, B, C) --------
def bicro_inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(4)
    b, dim = 24, 6
    scores = rng.uniform(-0.2, 0.5, size=(b, b))
    scores[np.arange(b), np.arange(b)] += rng.uniform(0, 0.6, b)
    scores[np.arange(8), np.arange(8)] = 2.0  # 8 > k = 3 pairs tie at the clip value 0.2 (difference C)
    img, txt = rng.normal(size=(b, dim)), rng.normal(size=(b, dim))  # cosines of both signs (difference B)
    img_n, txt_n = rng.normal(size=(10, dim)), rng.normal(size=(10, dim))
    # float32: the official labels are a float32 zeros tensor scattered into (it refuses float64)
    return {k: v.astype(np.float32) for k, v in
            {"scores": scores, "img": img, "txt": txt, "img_n": img_n, "txt_n": txt_n}.items()}


class _View:
    """What ``SGRAF.predict`` reads from ``self``: embeddings, global features and scores given."""

    def __init__(self, crit, d):
        self.criterion, self.d = crit, d
        self.noise_train, self.noise_tem = "noise_soft", 0.5
        self.sim_enc = self

    def forward_emb(self, images, captions, lengths):
        return images, captions, lengths

    def glo_emb(self, img, cap, lens):
        return img, cap

    def forward_sim(self, img, cap, lens):
        return T(self.d["scores"])


def make_bicro_labels() -> dict[str, np.ndarray]:
    off = extract(require("bicro") / "model.py", ["ContrastiveLoss", "SIM_PAIR", "SIM_SELE", "SGRAF.predict"])
    d = bicro_inputs()
    view = _View(off.ContrastiveLoss(margin=0.2), d)
    with cpu_only():
        c_y, n_y = off.SGRAF_predict(view, T(d["img"]), T(d["txt"]), None, T(d["img_n"]), T(d["txt_n"]), None, epoch=1)
        p = view.criterion(T(d["scores"]), mode="predict_clean")
    return d | {"clean_labels": c_y.numpy(), "noisy_labels": n_y.numpy(), "anchors": p[0].numpy(), "others": p[1].numpy()}


def check_bicro_labels(d) -> None:
    s = T(d["scores"])
    anchors, others = consistency.rank_for_anchors(raw_prediction(per_sample_triplet(s, 0.2), 0.2))
    assert anchors.tolist() == d["anchors"].tolist() and others.tolist() == d["others"].tolist(), "anchor choice"
    img, txt = T(d["img"]), T(d["txt"])
    r_v, r_t = consistency.consistency_ratios(img, txt, img[anchors], txt[anchors])
    official = consistency.clean_batch_labels(r_v, r_t, anchors, 0.5, official_scatter=True, others=others)
    close(official, d["clean_labels"], "clean-batch labels with official_scatter=true", rtol=1e-5, atol=1e-6)
    fixed = consistency.clean_batch_labels(r_v, r_t, anchors, 0.5, others=others)
    assert not np.allclose(fixed.numpy(), d["clean_labels"]), "the fixed scatter must differ here (named deviation)"
    y_n = consistency.noisy_batch_labels(*consistency.consistency_ratios(T(d["img_n"]), T(d["txt_n"]), img[anchors],
                                                                         txt[anchors]), 0.5)
    close(y_n, d["noisy_labels"], "noisy-batch labels", rtol=1e-5, atol=1e-6)


# -- BiCro/co_train.py train: one co-training iteration (peer labels, noisy then clean step) -----------
def _official_bicro(seed: int):
    import types

    off = load_module(require("bicro") / "model.py", "bicro_model")
    opt = types.SimpleNamespace(**SGRAF_SIZES, grad_clip=2.0, no_imgnorm=False, num_layers=1, bi_gru=True,
                                no_txtnorm=False, module_name="SGR", sgr_step=3, margin=0.2, learning_rate=2e-4,
                                warmup_rate=0.3, noise_train="noise_soft", noise_tem=0.5)
    torch.manual_seed(seed)
    with cpu_only():
        m = off.SGRAF(opt)
    for enc in (m.img_enc, m.txt_enc, m.sim_enc):
        for layer in enc.modules():
            if isinstance(layer, torch.nn.Dropout):
                layer.p = 0.0
    # float32 (the official labels are a float32 tensor scattered into) and plain SGD, so that the
    # float32 rounding of a tiny gradient cannot flip an Adam step (Adam is covered by sgraf_step)
    m.optimizer = torch.optim.SGD(m.params, lr=0.05)
    return m


def make_bicro_step() -> dict[str, np.ndarray]:
    import time

    off = extract(require("bicro") / "co_train.py", ["train"], {"AverageMeter": Meter, "ProgressMeter": Meter,
                                                                "time": time})
    d = {k: (v.astype(np.float32) if v.dtype == np.float64 else v) for k, v in ncr_step_inputs().items()}
    nets = []
    for seed, net_name in ((0, "A"), (1, "B")):
        m = _official_bicro(seed)
        d |= {f"{net_name}_w{i}": v for i, (_, v) in enumerate(state_list(m))}
        calls = []
        train = m.train
        m.train = lambda *a, _train=train, _calls=calls, **k: _calls.append((k.get("labels"), _train(*a, **k))) or _calls[-1][1]
        nets.append((m, calls))
    b = 6
    clean = (T(d["images"]), T(d["tokens"]), d["lengths"].tolist(), list(range(b)), torch.ones(b, 1).long(),
             T(d["w"])[:, None], torch.ones(b))
    noisy = (T(d["noisy_images"]), T(d["noisy_tokens"]), d["noisy_lengths"].tolist(), list(range(b)), torch.ones(b))
    import types

    opt = types.SimpleNamespace(num_epochs=4, soft_margin="exponential", log_step=100, noise_train="noise_soft")
    with cpu_only():
        off.train(opt, nets[0][0], nets[1][0], [clean], Unlabeled(noisy), epoch=2)
    (labels_u, loss_u), (labels_c, loss_c) = nets[0][1]
    return d | {"labels_noisy": labels_u.numpy(), "loss_noisy": np.array(loss_u), "labels_clean": labels_c.numpy(),
                "loss_clean": np.array(loss_c)} | {f"A_after{i}": v for i, (_, v) in enumerate(state_list(nets[0][0]))}


def check_bicro_step(d) -> None:
    from ncbench.data.batching import Batch
    from ncbench.registry import METHODS

    BiCro = METHODS.get("bicro")
    nets = []
    for name in ("A", "B"):
        net = ncbench_sgraf("sgr", d, name)[0].float()
        nets.append(net)
    method = BiCro.__new__(BiCro)
    method.nets, method.opts = nets, [torch.optim.SGD(n.parameters(), lr=0.05) for n in nets]
    method.config = BiCro.Config(official_scatter=True, official_broadcast=True, epochs=4, noisy_from=2)
    recorded = []
    method.record_labels = lambda ids, labels: recorded.append(labels)
    ids = torch.arange(6)
    clean = Batch(T(d["images"]), T(d["tokens"]), T(d["lengths"]), ids)
    noisy = Batch(T(d["noisy_images"]), T(d["noisy_tokens"]), T(d["noisy_lengths"]), ids)
    logs = method.co_step(0, clean, T(d["w"]), noisy, epoch=2)
    close(recorded[0], d["labels_noisy"], "bicro: noisy-batch labels from the peer", rtol=1e-5, atol=1e-6)
    close(recorded[1], d["labels_clean"], "bicro: clean-batch labels from the peer (official scatter)", rtol=1e-5, atol=1e-6)
    close(logs["loss_noisy"], d["loss_noisy"], "bicro: noisy-batch loss", rtol=1e-5)
    close(logs["loss"], d["loss_clean"], "bicro: clean-batch loss", rtol=1e-5)
    for i, (k, v) in enumerate(nets[0].state_dict().items()):
        close(v.detach().numpy(), d[f"A_after{i}"], f"bicro: net A {k} after the iteration", rtol=1e-4, atol=1e-6)
