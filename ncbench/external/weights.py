"""The official networks' state dicts mapped onto ncbench's backbones, and back.

The SGRAF family (NCR's ``model.py``; CRCL's, DECL's, L2RM's and CREAM's copies of it) saves a
network as three state dicts ``[img_enc, txt_enc, sim_enc]``; ncbench's ``sgr``/``saf`` hold the
same tensors (parity-tested: ``tests/parity``) under other names. CRCL's VSE∞ saves two
``[img_enc, txt_enc]``; its image MLP's last BatchNorm is never used (the official ``MLP.forward``
skips it) and has no counterpart. ``to_ncbench`` renames by prefix and checks that every tensor
lands on a tensor of the same shape, so a file of another architecture is refused naming the first
key that does not fit; ``to_official`` is the inverse (an ncbench network saved in the official
layout, which the official ``load_state_dict`` reads).
"""

from __future__ import annotations

import re
from typing import Mapping

import torch

from ..errors import NcbenchError

# (official encoder index, official key prefix) → ncbench key prefix
SGRAF_MAP: dict[tuple[int, str], str] = {
    (0, "fc."): "img_fc.",
    (1, "embed."): "embed.", (1, "cap_rnn."): "gru.",
    (2, "v_global_w.embedding_local."): "v_att.local.", (2, "v_global_w.embedding_global."): "v_att.glob.",
    (2, "v_global_w.embedding_common.0."): "v_att.common.",
    (2, "t_global_w.embedding_local."): "t_att.local.", (2, "t_global_w.embedding_global."): "t_att.glob.",
    (2, "t_global_w.embedding_common.0."): "t_att.common.",
    (2, "sim_tranloc_w."): "sim_loc.", (2, "sim_tranglo_w."): "sim_glo.", (2, "sim_eval_w."): "sim_eval.",
    (2, "SAF_module.attn_sim_w."): "filter.", (2, "SAF_module.bn."): "filter_bn.",
}
SGR_STEP = {"graph_query_w": "query", "graph_key_w": "key", "sim_graph_w": "node"}  # SGR_module.<k>.<name>.
_SGR_KEY = re.compile(r"SGR_module\.(\d+)\.(\w+)\.(.+)")
_STEP_KEY = re.compile(r"steps\.(\d+)\.(\w+)\.(.+)")

# CRCL's VSE∞ (``model/VSEinfty.py``): encoder 0 the image side, 1 the text side
VSE_MAP: dict[tuple[int, str], str] = {
    (0, "fc."): "fc.", (0, "mlp.layers.0."): "mlp.0.", (0, "mlp.bns.0."): "mlp.1.",
    (0, "mlp.layers.1."): "mlp.2.", (0, "gpool."): "img_pool.",
    (1, "embed."): "embed.", (1, "rnn."): "gru.", (1, "gpool."): "txt_pool.",
}
VSE_UNUSED = ((0, "mlp.bns.1."),)  # the official MLP's last BatchNorm: defined, never applied

MAPS = {"sgr": SGRAF_MAP, "saf": SGRAF_MAP, "vse_inf": VSE_MAP}
UNUSED = {"vse_inf": VSE_UNUSED}


class WeightError(NcbenchError):
    """The official state dicts do not fit the ncbench network."""


def _rename(index: int, key: str, mapping: Mapping[tuple[int, str], str]) -> str | None:
    m = _SGR_KEY.fullmatch(key) if index == 2 else None
    if m and m.group(2) in SGR_STEP:
        return f"steps.{m.group(1)}.{SGR_STEP[m.group(2)]}.{m.group(3)}"
    for (i, prefix), target in mapping.items():
        if i == index and key.startswith(prefix):
            return target + key[len(prefix):]
    return None


def to_ncbench(backbone: str, states: list[Mapping[str, torch.Tensor]], expected: Mapping[str, torch.Tensor],
               where: str) -> dict[str, torch.Tensor]:
    """The ncbench state dict of ``backbone`` from the official per-encoder ``states``; every key of
    ``expected`` (the ncbench network's own state) must be filled by a tensor of its shape."""
    mapping, unused = MAPS[backbone], UNUSED.get(backbone, ())
    if len(states) != len({i for i, _ in mapping}):
        raise WeightError(f"{where}: {len(states)} state dicts; a {backbone} network has "
                          f"{len({i for i, _ in mapping})} (image, text{', similarity' if backbone != 'vse_inf' else ''})")
    out: dict[str, torch.Tensor] = {}
    for index, state in enumerate(states):
        if not isinstance(state, Mapping):
            raise WeightError(f"{where}: encoder {index} is a {type(state).__name__}, not a state dict")
        for key, value in state.items():
            if any(i == index and key.startswith(p) for i, p in unused):
                continue
            target = _rename(index, key, mapping)
            if target is None or target not in expected:
                raise WeightError(f"{where}: encoder {index} has {key!r}, which a {backbone} network does not have "
                                  "(another architecture or module_name?)")
            if not isinstance(value, torch.Tensor) or tuple(value.shape) != tuple(expected[target].shape):
                shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                raise WeightError(f"{where}: {key!r} has shape {shape}; the {backbone} network built from the "
                                  f"checkpoint's options needs {tuple(expected[target].shape)}")
            out[target] = value
    missing = [k for k in expected if k not in out]
    if missing:
        raise WeightError(f"{where}: no weights for {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''} "
                          f"(a {backbone} network needs them)")
    return out


def to_official(backbone: str, state: Mapping[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    """The official per-encoder state dicts of an ncbench ``backbone`` network's ``state`` (the
    inverse of ``to_ncbench``; VSE∞'s unused BatchNorm is written as the official initialises it)."""
    mapping = MAPS[backbone]
    n = len({i for i, _ in mapping})
    out: list[dict[str, torch.Tensor]] = [{} for _ in range(n)]
    inverse = sorted(((t, i, p) for (i, p), t in mapping.items()), key=lambda x: -len(x[0]))
    for key, value in state.items():
        m = _STEP_KEY.fullmatch(key)
        if m and backbone == "sgr":
            name = next(o for o, s in SGR_STEP.items() if s == m.group(2))
            out[2][f"SGR_module.{m.group(1)}.{name}.{m.group(3)}"] = value
            continue
        target, index, prefix = next((t, i, p) for t, i, p in inverse if key.startswith(t))
        out[index][prefix + key[len(target):]] = value
    if backbone == "vse_inf":
        dim = state["mlp.2.weight"].shape[0]
        out[0].update({"mlp.bns.1.weight": torch.ones(dim), "mlp.bns.1.bias": torch.zeros(dim),
                       "mlp.bns.1.running_mean": torch.zeros(dim), "mlp.bns.1.running_var": torch.ones(dim),
                       "mlp.bns.1.num_batches_tracked": torch.tensor(0)})
    return out
