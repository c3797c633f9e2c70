"""A checkpoint's ``opt`` (the authors' ``argparse.Namespace``) read into an ncbench backbone config.

Fields that set the network (``MODEL_FIELDS``) become the backbone and its config; fields ncbench's
network cannot honour are refused (a unidirectional or multi-layer GRU, unnormalised embeddings,
an unknown ``module_name``); ``data_name`` names the dataset, ``noise_ratio`` the noise, ``tau``
DECL's evidence temperature. Every other field (training options, paths) is returned in
``unused`` so the caller can report it: evaluation does not need it.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

from ..errors import NcbenchError

MODULES = {"SGR": "sgr", "SAF": "saf", "VSEinfty": "vse_inf"}
MODEL_FIELDS = ("module_name", "img_dim", "word_dim", "embed_size", "sim_dim", "sgr_step", "num_layers", "bi_gru",
                "no_imgnorm", "no_txtnorm", "vocab_size", "data_name", "noise_ratio", "tau", "precomp_enc_type")
# VSE∞ as CRCL builds it (``VSEModel``: the sizes are written in the code, not read from opt)
VSE_SIZES = {"embed_dim": 1024, "word_dim": 300, "mlp_hidden": 512}


class OptionsError(NcbenchError):
    """A checkpoint's options describe a network ncbench cannot rebuild."""


@dataclass
class ModelSpec:
    backbone: str  # sgr, saf, vse_inf
    config: dict[str, Any]  # the backbone config's fields
    img_dim: int | None
    data_name: str | None
    noise_ratio: float | None
    tau: float | None
    vocab_size: int | None  # what opt says (the official evaluation replaces it by the vocabulary's size)
    unused: list[str] = field(default_factory=list)


def as_dict(opt: Any, where: str) -> dict[str, Any]:
    if isinstance(opt, argparse.Namespace):
        return vars(opt)
    if isinstance(opt, dict):
        return opt
    raise OptionsError(f"{where}: 'opt' is a {type(opt).__name__}; expected the options Namespace")


def _require(values: dict, name: str, where: str) -> Any:
    if name not in values:
        raise OptionsError(f"{where}: opt has no {name!r}; the network cannot be rebuilt from it")
    return values[name]


def read_opt(opt: Any, where: str) -> ModelSpec:
    values = as_dict(opt, where)
    module = _require(values, "module_name", where)
    if module not in MODULES:
        raise OptionsError(f"{where}: opt.module_name {module!r}; ncbench rebuilds {', '.join(MODULES)}")
    backbone = MODULES[module]
    if values.get("num_layers", 1) != 1:
        raise OptionsError(f"{where}: opt.num_layers {values['num_layers']}; ncbench's text GRU has one layer")
    if backbone != "vse_inf" and values.get("bi_gru", True) is not True:
        raise OptionsError(f"{where}: opt.bi_gru is {values['bi_gru']!r}; ncbench's text GRU is bidirectional")
    for flag in ("no_imgnorm", "no_txtnorm"):
        if values.get(flag):
            raise OptionsError(f"{where}: opt.{flag} is set; ncbench's encoders always L2-normalise")
    if backbone == "vse_inf":
        if values.get("precomp_enc_type", "basic") != "basic":
            raise OptionsError(f"{where}: opt.precomp_enc_type {values['precomp_enc_type']!r}; ncbench's VSE∞ is 'basic'")
        embed, word = values.get("embed_size", VSE_SIZES["embed_dim"]), values.get("word_dim", VSE_SIZES["word_dim"])
        config = {"embed_dim": embed, "word_dim": word, "mlp_hidden": embed // 2}
    else:
        config = {"embed_dim": _require(values, "embed_size", where), "word_dim": _require(values, "word_dim", where),
                  "sim_dim": _require(values, "sim_dim", where), "sgr_steps": values.get("sgr_step", 3)}
    ratio = values.get("noise_ratio")
    return ModelSpec(backbone, config, values.get("img_dim"), values.get("data_name"),
                     float(ratio) if isinstance(ratio, (int, float)) else None,
                     values.get("tau"), values.get("vocab_size"),
                     sorted(k for k in values if k not in MODEL_FIELDS))
