"""Helpers shared by the parity cases of several files: ``close`` (the comparison), the inputs of
the loss cases, the official SGR/SAF built from a checkout and ncbench's with the same weights, the
official training loops' stand-ins (options, logger, meters, unlabeled loaders) and the inputs of
the one-iteration cases. Not a case file: nothing here is discovered as a case.
"""

from __future__ import annotations

import numpy as np
import torch

from ncbench.engine.method import build_config
from ncbench.registry import BACKBONES

from .official import cpu_only, load_module, require


T = torch.from_numpy


def close(a, b, what: str, rtol: float = 1e-9, atol: float = 1e-12) -> None:
    np.testing.assert_allclose(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64), rtol=rtol, atol=atol,
                               err_msg=what)


# -- inputs of the loss cases (NCR, BiCro, RCL) ------------------------------------------------------
def loss_inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {"scores": rng.uniform(-0.3, 0.6, size=(16, 16)), "labels": rng.uniform(0, 1, size=16)}


# -- the official CRCL's options and logger (CRCL, DECL) -----------------------------------------------
class Opt:
    def __init__(self, warm_epoch):
        self.mc, self.confident, self.warm_epoch, self.grad_clip = True, True, warm_epoch, 2.0


class Log:
    def __init__(self):
        self.values = {}

    def update(self, key, value, n=1):
        self.values[key] = value


# -- the official SGR/SAF networks and ncbench's with the same weights (the step cases) -----------------
SGRAF_SIZES = {"img_dim": 8, "embed_size": 16, "word_dim": 12, "vocab_size": 40, "sim_dim": 8}


def sgraf_inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(6)
    lengths = np.array([7, 5, 9, 3, 6, 4])
    tokens = rng.integers(1, SGRAF_SIZES["vocab_size"], size=(6, 9)) * (np.arange(9)[None] < lengths[:, None])
    return {"images": np.maximum(rng.normal(size=(6, 36, SGRAF_SIZES["img_dim"])), 0.0), "tokens": tokens,
            "lengths": lengths, "labels": rng.uniform(0, 1, 6)}


def official_sgraf(module: str, repo: str = "ncr", dtype: torch.dtype = torch.float64):
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


def state_list(m) -> list[tuple[str, np.ndarray]]:
    return [(k, v.detach().numpy().copy()) for enc in (m.img_enc, m.txt_enc, m.sim_enc) for k, v in enc.state_dict().items()]


def ncbench_sgraf(name: str, d, module: str, dtype: torch.dtype = torch.float64):
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


# -- the official training loops' meters and unlabeled loaders, the co-training step's inputs ----------
class Meter:
    def __init__(self, *args, **kwargs):
        pass

    def update(self, *args, **kwargs):
        pass

    def display(self, *args):
        pass


class Unlabeled:
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
