"""L2RM's layout: ``{"epoch", "net", "cost_function", "best_rsum", "opt"}`` (warm-up files lack
``cost_function``), ``net`` the flat state dict of an ``nn.Module`` SGRAF (``models.py``: keys
``img_enc.*``, ``txt_enc.*``, ``sim_enc.*``); the learned cost is training-only. Its evaluation adds
``<mask>`` to the vocabulary, so the embedding may have one row more than the vocabulary file
(``evaluation.py`` retries with one row less on a mismatch: both are accepted). Its "SGRAF" averages
the sigmoid scores of an SAF and an SGR file (``evaluation([SAF, SGR])``)."""

from __future__ import annotations

from typing import Mapping

from .base import Family, LayoutError, Network, require_keys

KEYS = ("net", "opt")
ENCODERS = ("img_enc.", "txt_enc.", "sim_enc.")


def split(content: dict, where: str) -> list[Network]:
    require_keys(content, KEYS, where, "L2RM")
    net = content["net"]
    if not isinstance(net, Mapping):
        raise LayoutError(f"{where}: 'net' is a {type(net).__name__}; expected the network's state dict")
    states: list[dict] = [{} for _ in ENCODERS]
    for key, value in net.items():
        index = next((i for i, p in enumerate(ENCODERS) if str(key).startswith(p)), None)
        if index is None:
            raise LayoutError(f"{where}: 'net' has {key!r}, outside img_enc/txt_enc/sim_enc (not an L2RM SGRAF)")
        states[index][key[len(ENCODERS[index]):]] = value
    return [Network("net", content["opt"], states)]


FAMILY = Family(
    name="l2rm", description="L2RM: one SGR or SAF network per file ('net'); SAF + SGR averaged",
    methods=("l2rm",), noise_type="image", detect=lambda keys: "net" in keys, split=split,
    extra_tokens=("<mask>",), keys=KEYS + ("cost_function",))
