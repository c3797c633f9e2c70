"""Parity cases: each runs one official function on fixed inputs of ours (``make_*``) and compares
ncbench on the same inputs (``check_*``). Both layers use them: ``test_live.py`` runs ``make`` on a
checkout and checks at once; ``make_golden.py`` stores what ``make`` returns (inputs and official
outputs, small float64 arrays) under ``golden/`` and ``test_golden.py`` checks those on every CI run.

Every documented deviation is asserted *as* a deviation: ncbench's default differs from the
official value where the inputs exercise it, and the switch that restores the official behaviour
(``official_broadcast``, ``official_scatter``) makes the difference vanish.
"""

from __future__ import annotations

import numpy as np
import torch

from ncbench.engine.method import build_config
from ncbench.engine.optim import optimizer_step
from ncbench.kernels import consistency
from ncbench.registry import BACKBONES
from ncbench.kernels.complementary import active_complementary_loss, batch_probabilities, correct_labels, match_probability
from ncbench.kernels.losses import per_sample_triplet, triplet_loss
from ncbench.kernels.mixture import bmm_split, minmax, split_clean
from ncbench.kernels.recall import ranks, recall_at
from ncbench.kernels.rectify import adaptive_prediction, raw_prediction, soft_margin

from .official import cpu_only, extract, load_module, require

T = torch.from_numpy


def close(a, b, what: str, rtol: float = 1e-9, atol: float = 1e-12) -> None:
    np.testing.assert_allclose(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64), rtol=rtol, atol=atol,
                               err_msg=what)


# -- evaluation: NCR/evaluation.py i2t, t2i (shared by BiCro, L2RM) ----------------------------------
def recall_inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    sims = rng.normal(size=(20, 100))
    tied = sims.copy()  # difference D: two ground truths of image 3 tie for its best score
    tied[3, 15] = tied[3, 16] = sims.max() + 1.0
    near = sims.copy()  # difference E: a ground truth 1e-9 above a negative (lost in float32)
    near[5] = -5.0
    near[5, 25], near[5, 60] = 0.7 + 1e-9, 0.7
    return {"random": sims, "tied": tied, "near": near}


def make_recall() -> dict[str, np.ndarray]:
    off = extract(require("ncr") / "NCR/evaluation.py", ["i2t", "t2i"])
    out = {}
    for name, s in recall_inputs().items():
        n = s.shape[0]
        (i2t, (rank_i, *_)), (t2i, (rank_t, *_)) = off.i2t(n, s, 5, True), off.t2i(n, s, 5, True)
        out |= {f"{name}_sims": s, f"{name}_i2t": rank_i, f"{name}_t2i": rank_t, f"{name}_recalls": np.array([*i2t[:3], *t2i[:3]])}
    return out


def check_recall(d) -> None:
    for name in ("random", "tied", "near"):
        r_i, r_t = ranks(d[f"{name}_sims"], 5)
        assert r_i.tolist() == d[f"{name}_i2t"].astype(int).tolist(), f"{name}: i2t ranks"
        assert r_t.tolist() == d[f"{name}_t2i"].astype(int).tolist(), f"{name}: t2i ranks"
        close([*recall_at(r_i), *recall_at(r_t)], d[f"{name}_recalls"], f"{name}: recalls")


# -- NCR/model.py ContrastiveLoss: every mode, labels broadcast as the official code does ------------
def loss_inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {"scores": rng.uniform(-0.3, 0.6, size=(16, 16)), "labels": rng.uniform(0, 1, size=16)}


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


# -- CRCL/model/CRCL.py CRCL.train_self: labels, store and loss of one step (difference G) ---------------
class _Opt:
    def __init__(self, warm_epoch):
        self.mc, self.confident, self.warm_epoch, self.grad_clip = True, True, warm_epoch, 2.0


class _Log:
    def __init__(self):
        self.values = {}

    def update(self, key, value, n=1):
        self.values[key] = value


class _CRCLView:
    """What ``CRCL.train_self`` reads from ``self``: a B×B score matrix as the only parameter."""

    def __init__(self, scores, store, warm_epoch):
        self.w = torch.nn.Parameter(T(scores.copy()))
        self.params = [self.w]
        self.optimizer = torch.optim.SGD(self.params, lr=0.0)
        self.opt, self.tau, self.alpha, self.step = _Opt(warm_epoch), 0.05, 0.8, 0
        self.move_gt, self.logger = store.copy(), _Log()

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


# -- NCR/model.py SGRAF: SGR and SAF scores, and one training step with the official weights ------------
SGRAF_SIZES = {"img_dim": 8, "embed_size": 16, "word_dim": 12, "vocab_size": 40, "sim_dim": 8}


def sgraf_inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(6)
    lengths = np.array([7, 5, 9, 3, 6, 4])
    tokens = rng.integers(1, SGRAF_SIZES["vocab_size"], size=(6, 9)) * (np.arange(9)[None] < lengths[:, None])
    return {"images": np.maximum(rng.normal(size=(6, 36, SGRAF_SIZES["img_dim"])), 0.0), "tokens": tokens,
            "lengths": lengths, "labels": rng.uniform(0, 1, 6)}


def _official_sgraf(module: str, repo: str = "ncr", dtype: torch.dtype = torch.float64):
    """The official SGRAF wrapper (NCR's ``NCR/model.py``, or CREAM's ``model.py``: the same encoders),
    in float64 with dropout off; its Adam optimiser holds the same parameters."""
    import sys
    import types

    if repo == "ncr":
        off = load_module(require("ncr") / "NCR/model.py", "ncr_model")
    else:  # CREAM's model.py imports its InfoNCELoss.py; L2RM's models.py imports POT (``ot``), unused
        root = require(repo)
        sys.path.insert(0, str(root))
        stub = "ot" not in sys.modules
        if stub:
            sys.modules["ot"] = types.ModuleType("ot")
        try:
            off = load_module(root / ("model.py" if repo == "cream" else "models.py"), f"{repo}_model")
        finally:
            sys.path.remove(str(root))
            if stub:
                del sys.modules["ot"]
    opt = types.SimpleNamespace(**SGRAF_SIZES, grad_clip=2.0, no_imgnorm=False, num_layers=1, bi_gru=True,
                                no_txtnorm=False, module_name=module, sgr_step=3, margin=0.2, learning_rate=2e-4,
                                tau=0.05, reg=0.01, rho=0.1, noise_ratio=0.6)  # the last four: L2RM's
    if repo == "ncr":
        torch.manual_seed(0)
    with cpu_only():
        m = off.SGRAF(opt)
    for enc in (m.img_enc, m.txt_enc, m.sim_enc):
        enc.to(dtype)
        for layer in enc.modules():  # dropout off on both sides: the random masks cannot be matched
            if isinstance(layer, torch.nn.Dropout):
                layer.p = 0.0
    return m


def _state(m) -> list[tuple[str, np.ndarray]]:
    return [(k, v.detach().numpy().copy()) for enc in (m.img_enc, m.txt_enc, m.sim_enc) for k, v in enc.state_dict().items()]


def make_sgraf_step() -> dict[str, np.ndarray]:
    d = sgraf_inputs()
    for module in ("SGR", "SAF"):
        m = _official_sgraf(module)
        images, tokens, lengths = T(d["images"]), T(d["tokens"]), d["lengths"].tolist()
        d |= {f"{module}_w{i}": v for i, (_, v) in enumerate(_state(m))}
        with cpu_only(), torch.no_grad():
            m.val_start()
            d[f"{module}_eval_scores"] = m.forward_sim(*m.forward_emb(images, tokens, lengths)).numpy()
        with cpu_only():
            m.train_start()
            d[f"{module}_loss"] = np.array(m.train(images, tokens, lengths, hard_negative=True, mode="train"))
            d |= {f"{module}_after{i}": v for i, (_, v) in enumerate(_state(m))}
            # a second, co-training step: soft labels as NCR/BiCro pass them (a length-B vector)
            d[f"{module}_loss2"] = np.array(m.train(images, tokens, lengths, hard_negative=True, labels=T(d["labels"]),
                                                    soft_margin="exponential", mode="train"))
        d |= {f"{module}_after2_{i}": v for i, (_, v) in enumerate(_state(m))}
    return d


def _ncbench_sgraf(name: str, d, module: str, dtype: torch.dtype = torch.float64):
    """An ncbench backbone holding the official weights stored under ``{module}_w<i>``."""
    bcls = BACKBONES.get(name)
    cfg = build_config(bcls.Config, {"embed_dim": SGRAF_SIZES["embed_size"], "word_dim": SGRAF_SIZES["word_dim"],
                                     "sim_dim": SGRAF_SIZES["sim_dim"], "dropout": 0.0})
    net = bcls(cfg, SGRAF_SIZES["vocab_size"], SGRAF_SIZES["img_dim"]).to(dtype)
    keys = list(net.state_dict())
    weights = [d[f"{module}_w{i}"] for i in range(len(keys))]
    assert f"{module}_w{len(keys)}" not in d, "the official model has tensors ncbench does not map"
    # the official state, in its order (image encoder, text encoder, similarity), maps one to one
    net.load_state_dict({k: torch.from_numpy(np.asarray(w)) for k, w in zip(keys, weights)})
    return net, keys


def check_sgraf_step(d) -> None:
    images, tokens, lengths = T(d["images"]), T(d["tokens"]), T(d["lengths"])
    for module, name in (("SGR", "sgr"), ("SAF", "saf")):
        net, keys = _ncbench_sgraf(name, d, module)
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


# -- NCR/co_train.py train: one co-training step of NCR (clean and noisy batch) with the official SGR ----
class _Meter:
    def __init__(self, *args, **kwargs):
        pass

    def update(self, *args, **kwargs):
        pass

    def display(self, *args):
        pass


class _Unlabeled:
    """The official loop calls ``iterator.next()`` (Python 2); one noisy batch, forever."""

    def __init__(self, batch):
        self.batch = batch

    def __iter__(self):
        return self

    def next(self):
        return self.batch

    __next__ = next


def ncr_step_inputs() -> dict[str, np.ndarray]:
    d = sgraf_inputs()
    rng = np.random.default_rng(7)
    noisy = {f"noisy_{k}": v for k, v in sgraf_inputs().items()}
    noisy["noisy_images"] = np.maximum(rng.normal(size=noisy["noisy_images"].shape), 0.0)
    noisy["noisy_tokens"] = np.where(noisy["noisy_tokens"] > 0, rng.integers(1, SGRAF_SIZES["vocab_size"], noisy["noisy_tokens"].shape), 0)
    return d | noisy | {"w": rng.uniform(0.5, 1.0, 6)}


def make_ncr_step() -> dict[str, np.ndarray]:
    import time
    import types

    off = extract(require("ncr") / "NCR/co_train.py", ["train"], {"AverageMeter": _Meter, "ProgressMeter": _Meter,
                                                                  "time": time})
    d = ncr_step_inputs()
    nets = []
    for seed, net_name in ((0, "A"), (1, "B")):
        torch.manual_seed(seed)
        m = _official_sgraf("SGR")
        d |= {f"{net_name}_w{i}": v for i, (_, v) in enumerate(_state(m))}
        nets.append(m)
    b = 6
    clean = (T(d["images"]), T(d["tokens"]), d["lengths"].tolist(), list(range(b)), torch.ones(b, 1).long(),
             T(d["w"])[:, None], torch.ones(b))
    noisy = (T(d["noisy_images"]), T(d["noisy_tokens"]), d["noisy_lengths"].tolist(), list(range(b)), torch.ones(b))
    opt = types.SimpleNamespace(num_epochs=4, soft_margin="exponential", log_step=100)
    with cpu_only():
        off.train(opt, nets[0], nets[1], [clean], _Unlabeled(noisy), epoch=2)  # epoch ≥ 4 // 2: noisy batch trained
    return d | {f"A_after{i}": v for i, (_, v) in enumerate(_state(nets[0]))}


def check_ncr_step(d) -> None:
    from ncbench.data.batching import Batch
    from ncbench.registry import METHODS

    NCR = METHODS.get("ncr")
    NCRConfig = NCR.Config
    nets = [_ncbench_sgraf("sgr", d, name)[0] for name in ("A", "B")]
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
    method.nets = [_ncbench_sgraf("sgr", d, name)[0] for name in ("A", "B")]
    method.opts = [torch.optim.Adam(n.parameters(), lr=2e-4) for n in method.nets]
    method.config = NCRConfig(epochs=4, noisy_from=2)
    method.co_step(0, clean, T(d["w"]), noisy, epoch=2)
    after = [v.detach().numpy() for v in method.nets[0].state_dict().values()]
    assert not all(np.allclose(a, d[f"A_after{i}"], rtol=1e-6, atol=1e-9) for i, a in enumerate(after))


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

    off = extract(require("bicro") / "co_train.py", ["train"], {"AverageMeter": _Meter, "ProgressMeter": _Meter,
                                                                "time": time})
    d = {k: (v.astype(np.float32) if v.dtype == np.float64 else v) for k, v in ncr_step_inputs().items()}
    nets = []
    for seed, net_name in ((0, "A"), (1, "B")):
        m = _official_bicro(seed)
        d |= {f"{net_name}_w{i}": v for i, (_, v) in enumerate(_state(m))}
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
        off.train(opt, nets[0][0], nets[1][0], [clean], _Unlabeled(noisy), epoch=2)
    (labels_u, loss_u), (labels_c, loss_c) = nets[0][1]
    return d | {"labels_noisy": labels_u.numpy(), "loss_noisy": np.array(loss_u), "labels_clean": labels_c.numpy(),
                "loss_clean": np.array(loss_c)} | {f"A_after{i}": v for i, (_, v) in enumerate(_state(nets[0][0]))}


def check_bicro_step(d) -> None:
    from ncbench.data.batching import Batch
    from ncbench.registry import METHODS

    BiCro = METHODS.get("bicro")
    nets = []
    for name in ("A", "B"):
        net = _ncbench_sgraf("sgr", d, name)[0].float()
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
    d |= {f"C_w{i}": v for i, (_, v) in enumerate(_state(base))}
    rng = np.random.default_rng(8)
    store = rng.uniform(0, 1, 10).astype(np.float32).astype(np.float64)  # float32-exact: the official rounds
    store[[1, 4]] = np.float32(0.05)
    d |= {"store": store, "ids": np.array([1, 4, 0, 2, 3, 5])}
    self = types.SimpleNamespace(opt=opt, tau=0.05, alpha=0.8, module_name="SGR", base_model=base, step=0,
                                 params=base.params, logger=_Log(), move_gt=store.copy(),
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
    return d | {f"C_after{i}": v for i, (_, v) in enumerate(_state(base))}


def check_crcl_iteration(d) -> None:
    import types

    from ncbench.data.batching import Batch
    from ncbench.engine.method import EpochPlan
    from ncbench.registry import METHODS

    CRCL = METHODS.get("crcl")
    method = CRCL.__new__(CRCL)
    method.config = CRCL.Config(augment=0.0, warm_epochs=2)
    method.net = _ncbench_sgraf("sgr", d, "C")[0]
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


# -- CRCL/model/VSEinfty.py: the VSE∞ encoders (GPO on both sides) with mapped weights ----------------
VSE_MAP = {  # official (encoder, key prefix) → ncbench key prefix; the official's unused last MLP BatchNorm is not mapped
    ("img", "fc."): "fc.", ("img", "mlp.layers.0."): "mlp.0.", ("img", "mlp.bns.0."): "mlp.1.",
    ("img", "mlp.layers.1."): "mlp.2.", ("img", "gpool."): "img_pool.",
    ("txt", "embed."): "embed.", ("txt", "rnn."): "gru.", ("txt", "gpool."): "txt_pool.",
}


def make_vse_inf() -> dict[str, np.ndarray]:
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    off = extract(require("crcl") / "CRCL_NeurIPS23/model/VSEinfty.py",
                  ["positional_encoding_1d", "GPO", "MLP", "l2norm", "EncoderImageAggr", "EncoderText"],
                  {"pack_padded_sequence": pack_padded_sequence, "pad_packed_sequence": pad_packed_sequence})
    torch.manual_seed(3)
    # float32: the official GPO's positional encodings are float32 whatever the weights
    encoders = {"img": off.EncoderImageAggr(8, 16), "txt": off.EncoderText(40, 16, 12, 1)}
    d = sgraf_inputs()
    d["images"] = d["images"].astype(np.float32)
    order = np.argsort(-d["lengths"], kind="stable")  # the official packs with enforce_sorted=True
    d["tokens"], d["lengths"] = d["tokens"][order], d["lengths"][order]
    images, tokens, lengths = T(d["images"]), T(d["tokens"]), T(d["lengths"])
    for (enc, prefix), target in VSE_MAP.items():
        for k, v in encoders[enc].state_dict().items():
            if k.startswith(prefix):
                d[f"w:{target}{k[len(prefix):]}"] = v.numpy().copy()
    n_regions = torch.full((6,), 36)
    with cpu_only():
        for mode in ("eval", "train"):
            for e in encoders.values():
                e.train(mode == "train")
            img, cap = encoders["img"](images, n_regions), encoders["txt"](tokens, lengths)
            scores = img @ cap.T
            d[f"{mode}_scores"] = scores.detach().numpy()
        (scores * torch.linspace(-1, 1, 36).reshape(6, 6)).sum().backward()
    for (enc, prefix), target in VSE_MAP.items():
        for k, v in encoders[enc].named_parameters():
            if k.startswith(prefix):
                d[f"g:{target}{k[len(prefix):]}"] = v.grad.numpy().copy()
        for k, v in encoders[enc].state_dict().items():
            if k.startswith(prefix) and "running" in k:
                d[f"bn:{target}{k[len(prefix):]}"] = v.numpy().copy()
    return d


def check_vse_inf(d) -> None:
    bcls = BACKBONES.get("vse_inf")
    net = bcls(build_config(bcls.Config, {"embed_dim": 16, "word_dim": 12, "mlp_hidden": 8}), 40, 8)
    weights = {k[2:]: torch.from_numpy(np.asarray(v)) for k, v in d.items() if k.startswith("w:")}
    assert set(weights) == set(net.state_dict()), sorted(set(net.state_dict()) ^ set(weights))
    net.load_state_dict(weights)
    images, tokens, lengths = T(d["images"]), T(d["tokens"]), T(d["lengths"])
    for mode in ("eval", "train"):
        net.train(mode == "train")
        scores = net(images, tokens, lengths)
        close(scores.detach(), d[f"{mode}_scores"], f"vse_inf: {mode}-mode scores", rtol=1e-5, atol=1e-6)
    (scores * torch.linspace(-1, 1, 36).reshape(6, 6)).sum().backward()
    for k, v in net.named_parameters():
        close(v.grad, d[f"g:{k}"], f"vse_inf: gradient of {k}", rtol=1e-4, atol=1e-6)
    for k, v in net.state_dict().items():
        if "running" in k:
            close(v, d[f"bn:{k}"], f"vse_inf: {k}", rtol=1e-5, atol=1e-7)


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


# -- DECL/model/DECL.py: EDL loss, KL, the dynamic hinge, the decision, warm-up and training steps ---------
class _DECLSim:
    """DECL's ``similarity_model`` reduced to a B×B logit matrix (the only parameter), with the
    official ``SGRAF.forward_sim`` turning logits into (sigmoid, evidence, tanh)."""

    def __init__(self, logits, forward_sim, tau):
        self.w = torch.nn.Parameter(T(logits.copy()))
        self.params, self.tau = [self.w], tau
        self.sim_enc = lambda img, cap, lens: self.w * 1.0
        self._forward_sim = forward_sim

    def forward_emb(self, images, captions, lengths):
        return images, captions, lengths

    def forward_sim(self, img, cap, lens, mode="sim"):
        return self._forward_sim(self, img, cap, lens, mode)


def decl_inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(9)
    b = 10
    logits = rng.normal(0, 1.5, size=(b, b))
    logits[np.arange(b), np.arange(b)] += rng.uniform(-1, 3, b)
    return {"logits": logits, "preds": (rng.uniform(size=b) > 0.3).astype(np.int64)}


def make_decl() -> dict[str, np.ndarray]:
    import types

    root = require("decl") / "2022-ACMMM-DECL/model"
    off = extract(root / "DECL.py", ["KL", "mse_loss", "DECL.get_alpha", "DECL.RDH_loss", "DECL.warmup_batch",
                                     "DECL.train_batch"])
    sgraf = extract(root / "SGRAF.py", ["SGRAF.forward_sim"])
    d = decl_inputs()
    b = len(d["logits"])
    opt = types.SimpleNamespace(margin=0.2, batch_size=128, eta=0.025)
    with cpu_only():
        e = torch.exp(torch.tanh(T(d["logits"])) / 0.1)
        a = e + 1
        d["kl"] = off.KL(a, b).numpy()
        d["edl"] = off.mse_loss(torch.eye(b).long(), a, b, 0.1).numpy()
        d["edl_noisy_rows"] = off.mse_loss(torch.diag(T(d["preds"])).long(), a, b, 0.1).numpy()
        for k in (9, 5):
            d[f"rdh_{k}"] = off.DECL_RDH_loss(types.SimpleNamespace(mu=5, opt=opt), torch.tanh(T(d["logits"])), k).numpy()
        for mode in ("warmup", "train"):
            self = types.SimpleNamespace(opt=opt, mu=5, lambda1=0.8, lambda2=0.1, grad_clip=2.0, logger=_Log(),
                                         step=4900 if mode == "train" else 0)  # K = 5 after the step, and 127
            self.similarity_model = _DECLSim(d["logits"], sgraf.SGRAF_forward_sim, 0.1)
            self.params = self.similarity_model.params
            self.optimizer = torch.optim.SGD(self.params, lr=0.1)
            self.get_alpha = types.MethodType(off.DECL_get_alpha, self)
            self.RDH_loss = types.MethodType(off.DECL_RDH_loss, self)
            if mode == "warmup":
                off.DECL_warmup_batch(self, torch.zeros(b), None, None)
            else:
                off.DECL_train_batch(self, torch.zeros(b), None, None, torch.from_numpy(d["preds"]))
            d[f"{mode}_loss"] = np.array(self.logger.values["Loss"])
            d[f"{mode}_hardness"] = np.array(self.logger.values["H_n"])
            d[f"{mode}_after"] = self.similarity_model.w.detach().numpy().copy()
            if mode == "warmup":
                self.similarity_model.w.data = T(d["logits"].copy())
                with torch.no_grad():
                    _, _, norm_e, _, _ = self.get_alpha(None, None, None)
                d["decision"] = (torch.arange(b).eq(torch.argmax(norm_e, dim=1)) + 0).numpy()
    return d


def check_decl(d) -> None:
    from ncbench.kernels import evidential as ev

    z = T(d["logits"])
    t = torch.tanh(z)
    a_i2t, _ = ev.dirichlets(ev.evidence(t, 0.1))
    b = len(z)
    # (the official's uniform Dirichlet is a float32 tensor: lgamma(K) agrees to ~1e-9 relative)
    close(ev.kl_to_uniform(a_i2t), d["kl"][:, 0], "decl: KL to the uniform Dirichlet", rtol=1e-8)
    close(ev.edl_loss(a_i2t, torch.eye(b, dtype=z.dtype)), d["edl"][:, 0], "decl: EDL loss, clean targets", rtol=1e-8)
    clean = torch.from_numpy(d["preds"]).bool()
    close(ev.edl_loss(a_i2t, torch.diag(clean.to(z.dtype))), d["edl_noisy_rows"][:, 0], "decl: EDL loss, noisy rows",
          rtol=1e-8)
    for k in (9, 5):
        close(ev.rdh_loss(t, k), d[f"rdh_{k}"], f"decl: dynamic hinge, K = {k}")
    clean_dec, _, _ = ev.decide(t)
    assert clean_dec.long().tolist() == d["decision"].tolist(), "decl: clean/noisy decision"
    # the warm-up and a training step: every pair clean / the given decision; K from the global step;
    # the signed score from the sigmoid as ncbench computes it (tanh(z) in closed form)
    from ncbench.backbones.sgraf import SGRAF

    for mode, step, mask in (("warmup", 1, torch.ones(b, dtype=torch.bool)), ("train", 4901, clean)):
        w = torch.nn.Parameter(z.clone())
        k = ev.hardness(step, 128, b)
        assert k == int(d[f"{mode}_hardness"]), f"decl: {mode} hardness"
        signed = SGRAF.signed(None, torch.sigmoid(w))
        l_edl, l_rdh = ev.decl_loss(signed, mask, k)
        opt = torch.optim.SGD([w], lr=0.1)
        loss = optimizer_step(opt, l_edl + l_rdh, [w], 2.0, "parity")
        close(loss, d[f"{mode}_loss"], f"decl: {mode} loss", rtol=1e-8)
        close(w.detach(), d[f"{mode}_after"], f"decl: {mode} logits after one step", rtol=1e-7, atol=1e-10)


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


# -- CREAM: InfoNCELoss (every mode, filters 0 / between / ≥ 1) and train.split_samples ------------------
def cream_inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(6)
    b = 24
    return {"scores": rng.uniform(0.05, 0.95, size=(b, b)), "labels": rng.uniform(0, 1, size=b),
            "prob_a": rng.uniform(0, 1, size=400), "prob_b": rng.uniform(0, 1, size=400)}


FILTERS = (0.0, 0.02, 0.05, 1.0)


def make_cream() -> dict[str, np.ndarray]:
    root = require("cream")
    off = load_module(root / "InfoNCELoss.py", "cream_infonce")
    split = extract(root / "train.py", ["split_prob", "split_samples"])
    d = cream_inputs()
    crit = off.InfoNCELoss(temperature=0.07)
    s, y = T(d["scores"]).float(), T(d["labels"]).float()[:, None]
    d["warmup"] = crit(s.clone(), mode="warmup")[0].numpy()
    d["eval_loss"] = crit(s.clone(), mode="eval_loss")[0].numpy()
    d["predict"] = crit(s.clone(), mode="predict").numpy()[0]
    for f in FILTERS:
        w = s.clone().requires_grad_(True)
        loss = crit(w, labels=y, mode="train", soft_label=True, smooth_label=False, filter=f)[0]
        loss.backward()
        d[f"train_{f}"], d[f"grad_{f}"] = loss.detach().numpy(), w.grad.numpy()
    clean, hard, noisy = split.split_samples(d["prob_a"], d["prob_b"], 0.5)
    d["clean"], d["hard"], d["noisy"] = clean, hard, noisy
    return d


def check_cream(d) -> None:
    from ncbench.kernels.complementary import batch_match_probability
    from ncbench.kernels.mining import info_nce_per_sample, soft_target_info_nce, three_way_split

    s, y = T(d["scores"]).float(), T(d["labels"]).float()
    close(info_nce_per_sample(s, 0.07).mean(), d["warmup"], "cream warm-up InfoNCE", rtol=1e-6)
    close(info_nce_per_sample(s, 0.07), d["eval_loss"], "cream per-sample InfoNCE", rtol=1e-6)
    close(batch_match_probability(s, 0.07), d["predict"], "cream prediction q", rtol=1e-6)
    for f in FILTERS:
        w = s.clone().requires_grad_(True)
        loss = soft_target_info_nce(w, y, 0.07, f)
        loss.backward()
        close(loss.detach(), d[f"train_{f}"], f"cream soft-target InfoNCE, filter {f}", rtol=1e-6)
        close(w.grad, d[f"grad_{f}"], f"cream gradient, filter {f}", rtol=1e-5, atol=1e-8)
    masks = [split_clean(T(d[k]), 0.5) for k in ("prob_a", "prob_b")]
    for got, name in zip(three_way_split(*masks), ("clean", "hard", "noisy")):
        np.testing.assert_array_equal(got.numpy(), d[name], err_msg=f"cream {name} subset")


# -- CREAM/train.py train_one_epoch: one iteration (clean, hard and noisy step) with CREAM's own SGR -----
class _Loader:
    """What ``train_one_epoch`` reads from a DataLoader: ``len``, ``.dataset`` (its size, for the filter),
    and iterators with the Python-2 ``.next()`` the official calls (absent from today's DataLoader)."""

    def __init__(self, batches: list, size: int):
        self.batches, self.dataset = batches, range(size)

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        return _Iter(self.batches)


class _Iter:
    def __init__(self, batches):
        self.left = list(batches)

    def __iter__(self):
        return self

    def next(self):
        if not self.left:
            raise StopIteration
        return self.left.pop(0)

    __next__ = next


CREAM_CASES = {"mixed": (60, 10, 30), "mostly_clean": (90, 5, 5)}  # subset sizes: clean share 0.6 and 0.9


def cream_step_inputs() -> dict[str, np.ndarray]:
    d = ncr_step_inputs()
    rng = np.random.default_rng(8)
    hard = {f"hard_{k}": v for k, v in sgraf_inputs().items()}
    hard["hard_images"] = np.maximum(rng.normal(size=hard["hard_images"].shape), 0.0)
    return d | hard | {"prob_a": rng.uniform(0, 1, 18), "prob_b": rng.uniform(0, 1, 18)}


def make_cream_step() -> dict[str, np.ndarray]:
    import time
    import types

    off = extract(require("cream") / "train.py", ["train_one_epoch"],
                  {"AverageMeter": _Meter, "ProgressMeter": _Meter, "time": time})
    d = cream_step_inputs()
    b = 6
    pa, pb = T(d["prob_a"]).float(), T(d["prob_b"]).float()

    def rows(prefix, first):
        ids = slice(first, first + b)
        return (T(d[f"{prefix}images"]), T(d[f"{prefix}tokens"]), d[f"{prefix}lengths"].tolist(), list(range(b)),
                torch.ones(b, 1).long(), pa[ids, None].double(), pb[ids, None].double(), torch.ones(b))

    clean, hard = rows("", 0), rows("hard_", 6)
    noisy = (T(d["noisy_images"]), T(d["noisy_tokens"]), d["noisy_lengths"].tolist(), list(range(b)), torch.zeros(b),
             torch.ones(b))
    opt = types.SimpleNamespace(hard_start_epoch=1, noisy_start_epoch=2, soft_label=True, smooth_label=False, log_step=100)
    for case, sizes in CREAM_CASES.items():
        nets = []
        for seed, name in ((0, "A"), (1, "B")):
            torch.manual_seed(seed)
            m = _official_sgraf("SGR", "cream")
            d |= {f"{case}_{name}_w{i}": v for i, (_, v) in enumerate(_state(m))}
            nets.append(m)
        loaders = [_Loader([batch], size) for batch, size in zip((clean, hard, noisy), sizes)]
        with cpu_only():
            off.train_one_epoch(opt, nets[0], nets[1], *loaders, epoch=2, model="A", ratio=sizes[0] / sum(sizes))
        d |= {f"{case}_A_after{i}": v for i, (_, v) in enumerate(_state(nets[0]))}
    return d


def check_cream_step(d) -> None:
    import types

    from ncbench.data.batching import Batch
    from ncbench.engine.method import EpochPlan
    from ncbench.registry import METHODS

    CREAM = METHODS.get("cream")
    ids = torch.arange(6)
    batches = {0: Batch(T(d["images"]), T(d["tokens"]), T(d["lengths"]), ids),
               6: Batch(T(d["hard_images"]), T(d["hard_tokens"]), T(d["hard_lengths"]), ids + 6),
               12: Batch(T(d["noisy_images"]), T(d["noisy_tokens"]), T(d["noisy_lengths"]), ids + 12)}
    train = types.SimpleNamespace(batch=lambda rows: batches[int(rows[0])])
    probs = [T(d["prob_a"]).float(), T(d["prob_b"]).float()]
    for case, sizes in CREAM_CASES.items():
        nets = [_ncbench_sgraf("sgr", d, f"{case}_{name}")[0] for name in ("A", "B")]
        method = CREAM.__new__(CREAM)  # the method's own train_step, on the official networks' weights
        method.nets, method.opts = nets, [torch.optim.Adam(n.parameters(), lr=2e-4) for n in nets]
        method.config = CREAM.Config(warmup_epochs=0, hard_from=1, noisy_from=2)
        method.ctx = types.SimpleNamespace(train=train, device=torch.device("cpu"))
        method.record_labels = lambda ids, labels: None
        step = (0, np.arange(6), np.arange(6, 12), True, np.arange(12, 18))
        logs = method.train_step(2, EpochPlan([step], {"warmup": False, "probs": probs, "sizes": list(sizes)}), 0)
        assert {"loss_A", "loss_hard_A", "loss_noisy_A"} <= set(logs), logs
        for i, (k, v) in enumerate(nets[0].state_dict().items()):
            close(v.detach().numpy(), d[f"{case}_A_after{i}"], f"cream ({case}): {k} after one iteration", rtol=1e-6,
                  atol=1e-9)


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
    off = extract(path, ["train"], {"AverageMeter": _Meter, "ProgressMeter": _Meter, "time": time, "random": rand})
    cost_cls = extract(require("l2rm") / "models.py", ["FeedForward_Network"]).FeedForward_Network
    d = l2rm_step_inputs()
    torch.manual_seed(0)
    # float32: the official similarity matrix is float32 whatever the weights (``torch.zeros`` in
    # ``EncoderSimilarity.forward``); SGD in place of Adam, as in ``bicro_step``, so that float32 rounding
    # cannot flip an update's sign; a cost learning rate that makes its step visible
    net = _official_sgraf("SGR", "l2rm", torch.float32)
    d |= {f"net_w{i}": v for i, (_, v) in enumerate(_state(net))}
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
    return d | {f"net_after{i}": v for i, (_, v) in enumerate(_state(net))} | {
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

    net, _ = _ncbench_sgraf("sgr", d, "net", torch.float32)
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


CASES = {
    "recall": (make_recall, check_recall),
    "ncr_loss": (make_ncr_loss, check_ncr_loss),
    "ncr_step": (make_ncr_step, check_ncr_step),
    "split": (make_split, check_split),
    "bicro_bmm": (make_bicro_bmm, check_bicro_bmm),
    "bicro_loss": (make_bicro_loss, check_bicro_loss),
    "bicro_step": (make_bicro_step, check_bicro_step),
    "bicro_labels": (make_bicro_labels, check_bicro_labels),
    "crcl_step": (make_crcl_step, check_crcl_step),
    "crcl_iteration": (make_crcl_iteration, check_crcl_iteration),
    "rcl_loss": (make_rcl_loss, check_rcl_loss),
    "decl": (make_decl, check_decl),
    "sgraf_step": (make_sgraf_step, check_sgraf_step),
    "vse_inf": (make_vse_inf, check_vse_inf),
    "l2rm": (make_l2rm, check_l2rm),
    "cream": (make_cream, check_cream),
    "cream_step": (make_cream_step, check_cream_step),
    "l2rm_step": (make_l2rm_step, check_l2rm_step),
}
