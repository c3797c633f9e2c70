"""Parity of ``decl``: DECL's evidential losses, its decision, a warm-up and a training step."""

from __future__ import annotations

import numpy as np
import torch

from ncbench.engine.optim import optimizer_step

from ..official import cpu_only, extract, require
from ..common import T, close, Log


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
            self = types.SimpleNamespace(opt=opt, mu=5, lambda1=0.8, lambda2=0.1, grad_clip=2.0, logger=Log(),
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
