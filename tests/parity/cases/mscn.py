"""Parity of ``mscn``: MSCN's ``ContrastiveLoss`` (warm-up and the adaptive soft margin) and one whole
iteration of its ``main_MSCN.train`` (pseudo network, ``MetaAdam.meta_step`` look-ahead, the meta
network's BCE step on a meta batch, then the network's step with the meta network frozen) through
MSCN's own SGR and ``Meta_Sim``, against ``kernels.meta_correction.mscn_loss`` and the method's own
``_train_step`` on the same weights and batches.

The purification's Beta mixture needs the pomegranate fork (Cython) and is not run here; it is
checked against pomegranate's EM written out sample by sample in ``tests/test_mscn.py``."""

from __future__ import annotations

import sys
import types

import numpy as np
import torch

from ncbench.kernels.losses import triplet_loss
from ncbench.kernels.meta_correction import mscn_loss

from ..common import SGRAF_SIZES, T, close, loss_inputs, sgraf_inputs, state_list
from ..official import cpu_only, extract, load_module, require



# -- models.py ContrastiveLoss: warm-up (mean) and the s_adaptive margin with hardest negatives -------------
def make_mscn_loss() -> dict[str, np.ndarray]:
    off = extract(require("mscn") / "models.py", ["ContrastiveLoss"])
    d = loss_inputs()
    s = T(d["scores"]).abs().clamp(0.02, 0.98)  # similarities in (0, 1), as the meta network's
    d["scores"] = s.numpy()
    crit = off.ContrastiveLoss(margin=0.2)
    with cpu_only():
        d["warmup"] = crit(s.clone()).numpy()
        d["adaptive"] = crit(s.clone(), hard_negative="max_violation", probs=s.diagonal().clone(),
                             soft_margin="s_adaptive").numpy()
    return d


def check_mscn_loss(d) -> None:
    s = T(d["scores"])
    close(triplet_loss(s, 0.2, hard_negative=False), d["warmup"], "warm-up loss")
    close(mscn_loss(s, 0.2, official_broadcast=True), d["adaptive"], "adaptive margin, official broadcast")
    # named deviation: per-pair margins (the default) attach m_i to row i of the caption term
    assert abs(float(mscn_loss(s, 0.2)) - float(d["adaptive"])) > 1e-6, "per-pair margins"


# -- main_MSCN.train: one iteration through MSCN's own SGR and Meta_Sim ---------------------------------------
def _official_models():
    root = require("mscn")
    return load_module(root / "models.py", "mscn_models")


def _official_net(models, dtype=torch.float64):
    opt = types.SimpleNamespace(**SGRAF_SIZES, no_imgnorm=False, num_layers=1, bi_gru=True, no_txtnorm=False,
                                module_name="SGR", sgr_step=3, margin=0.2)
    with cpu_only():
        m = models.SGRAF(opt)
    m.to(dtype)
    for layer in m.modules():  # dropout off: the random masks cannot be matched
        if isinstance(layer, torch.nn.Dropout):
            layer.p = 0.0
    return m


def step_inputs() -> dict[str, np.ndarray]:
    d = sgraf_inputs()
    rng = np.random.default_rng(11)
    meta = {f"meta_{k}": v for k, v in sgraf_inputs().items()}
    meta["meta_images"] = np.maximum(rng.normal(size=meta["meta_images"].shape), 0.0)
    return d | meta | {"meta_labels": np.array([1.0, 0.0, 1.0, 1.0, 0.0, 0.0])}


def make_mscn_step() -> dict[str, np.ndarray]:
    import time

    models = _official_models()
    torch.manual_seed(0)
    net = _official_net(models)
    meta_net = models.Meta_Sim(input_size=SGRAF_SIZES["sim_dim"], hidden_size=5).to(torch.float64)
    sys.path.insert(0, str(require("mscn")))
    try:
        utils = load_module(require("mscn") / "utils.py", "mscn_utils")
    finally:
        sys.path.remove(str(require("mscn")))
    d = step_inputs()
    d |= {f"net_w{i}": v for i, (_, v) in enumerate(state_list(net))}
    d |= {f"meta_w{i}": v.detach().numpy().copy() for i, v in enumerate(meta_net.state_dict().values())}
    off = extract(require("mscn") / "main_MSCN.py", ["train"],
                  {"SGRAF": lambda opt: _official_net(models), "MetaAdam": utils.MetaAdam, "time": time,
                   "AverageMeter": lambda *a, **k: types.SimpleNamespace(update=lambda *a, **k: None),
                   "ProgressMeter": lambda *a, **k: types.SimpleNamespace(display=lambda *a: None)})
    b = len(d["lengths"])
    batch = (T(d["images"]), T(d["tokens"]), d["lengths"].tolist(), list(range(b)), None, None, None)
    meta_batch = (T(d["meta_images"]), T(d["meta_tokens"]), d["meta_lengths"].tolist(),
                  tuple(d["meta_labels"].tolist()), list(range(b)))

    class MetaLoader:  # the official calls dataset.get_add_non_correspondence_idx(), then iterates
        dataset = types.SimpleNamespace(get_add_non_correspondence_idx=lambda: None)

        def __iter__(self):
            return iter([meta_batch])

    # SGD in place of Adam on both sides (as bicro_step): one Adam step is about lr·sign(g), which
    # float rounding could flip where a gradient is ~0; the look-ahead is SGD in both codes anyway
    opt = types.SimpleNamespace(lr=0.05, meta_lr=0.1, lr_update=30, meta_interval=1, grad_clip=2.0, log_step=100)
    optimizer = torch.optim.SGD(net.parameters(), lr=opt.lr)
    meta_optimizer = torch.optim.SGD(meta_net.parameters(), lr=opt.meta_lr)
    torch.set_default_dtype(torch.float64)  # the official builds its labels with torch.Tensor (default dtype)
    try:
        with cpu_only():
            off.train(opt, [batch], MetaLoader(), net, meta_net, optimizer, meta_optimizer, 0, torch.nn.BCELoss())
    finally:
        torch.set_default_dtype(torch.float32)
    d |= {f"net_after{i}": v for i, (_, v) in enumerate(state_list(net))}
    return d | {f"meta_after{i}": v.detach().numpy().copy() for i, v in enumerate(meta_net.state_dict().values())}


def _ncbench_method(d, official_broadcast: bool):
    """MSCN with network A holding the official weights (its unused ``sim_eval`` kept as built)."""
    from ncbench.registry import METHODS

    mod = sys.modules[METHODS.get("mscn").__module__]
    sgr = _sgr_with_official_weights(d, "net_w")
    meta = mod.MetaSim(SGRAF_SIZES["sim_dim"], 5).to(torch.float64)
    meta.load_state_dict({k: T(d[f"meta_w{i}"]) for i, k in enumerate(meta.state_dict())})
    net = mod.MetaCorrected(sgr, meta)
    cls = METHODS.get("mscn")
    method = cls.__new__(cls)
    method.config = cls.Config(official_broadcast=official_broadcast)
    method.nets = [net]
    method.opts = [torch.optim.SGD(sgr.parameters(), lr=0.05)]
    method.meta_opts = [torch.optim.SGD(meta.parameters(), lr=0.1)]
    return method, net


def _sgr_with_official_weights(d, prefix):
    """ncbench's SGR with the official state (which has no ``sim_eval``): the official tensors in
    order, ncbench's own (unused) ``sim_eval`` inserted where ncbench keeps it."""
    from ncbench.engine.method import build_config
    from ncbench.registry import BACKBONES

    bcls = BACKBONES.get("sgr")
    cfg = build_config(bcls.Config, {"embed_dim": SGRAF_SIZES["embed_size"], "word_dim": SGRAF_SIZES["word_dim"],
                                     "sim_dim": SGRAF_SIZES["sim_dim"], "dropout": 0.0})
    net = bcls(cfg, SGRAF_SIZES["vocab_size"], SGRAF_SIZES["img_dim"]).to(torch.float64)
    own = net.state_dict()
    official_keys = [k for k in own if not k.startswith("sim_eval.")]
    state = {k: T(np.asarray(d[f"{prefix}{i}"])) for i, k in enumerate(official_keys)}
    assert f"{prefix}{len(official_keys)}" not in d, "the official model has tensors ncbench does not map"
    net.load_state_dict({k: state.get(k, own[k]) for k in own})
    return net


class _Train:
    """A stand-in training set: ``batch(ids)`` gives the fixed batch."""

    def __init__(self, batch):
        self._batch = batch

    def batch(self, ids):
        return self._batch


def check_mscn_step(d) -> None:
    from ncbench.data.batching import Batch

    ids = torch.arange(len(d["lengths"]))
    batch = Batch(T(d["images"]), T(d["tokens"]), T(d["lengths"]), ids)
    meta = Batch(T(d["meta_images"]), T(d["meta_tokens"]), T(d["meta_lengths"]), ids)
    labels = T(d["meta_labels"])
    for official_broadcast in (True, False):
        method, net = _ncbench_method(d, official_broadcast)
        method.ctx = types.SimpleNamespace(train=_Train(batch), device=torch.device("cpu"))
        method.meta_batch = lambda items: (meta, labels)
        method._train_step(0, 0, np.arange(6), np.arange(6), 0)
        sgr_after = [v for k, v in net.inner.state_dict().items() if not k.startswith("sim_eval.")]
        pairs = [(v.numpy(), d[f"net_after{i}"]) for i, v in enumerate(sgr_after)]
        pairs += [(v.numpy(), d[f"meta_after{i}"]) for i, v in enumerate(net.meta.state_dict().values())]
        same = all(np.allclose(a, b, rtol=1e-7, atol=1e-10) for a, b in pairs)
        if official_broadcast:
            for i, (a, b) in enumerate(pairs):
                close(a, b, f"mscn: tensor {i} after one iteration", rtol=1e-7, atol=1e-10)
        else:  # named deviation: the per-pair margins change the step
            assert not same, "per-pair margins"
