"""Parity of the ``vse_inf`` backbone: CRCL's VSE∞ encoders (GPO on both sides) with mapped weights."""

from __future__ import annotations

import numpy as np
import torch

from ncbench.engine.method import build_config
from ncbench.registry import BACKBONES

from ..official import cpu_only, extract, require
from ..common import T, close, sgraf_inputs


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
