"""NCR's layout, shared by BiCro, CREAM and PC2: ``{"epoch", "model_A", "model_B", "best_rsum", "opt"}``
(PC2 adds its optimisers' states), ``model_A``/``model_B`` each ``[img_enc, txt_enc, sim_enc]``
(``SGRAF.state_dict()`` of ``NCR/model.py``); the two co-trained networks' sigmoid scores are
averaged (``evaluation.evalrank``: ``sims = (sims_A + sims_B) / 2``). Warm-up checkpoints have no
``best_rsum``."""

from __future__ import annotations

from .base import Family, Network, require_keys, state_list

KEYS = ("model_A", "model_B", "opt")


def split(content: dict, where: str) -> list[Network]:
    require_keys(content, KEYS, where, "NCR-layout")
    return [Network(k, content["opt"], state_list(content[k], k, where)) for k in ("model_A", "model_B")]


FAMILY = Family(
    name="ncr", description="NCR / BiCro / CREAM / PC2: model_A and model_B averaged",
    methods=("ncr", "bicro", "cream", "pc2"), noise_type="caption",
    detect=lambda keys: {"model_A", "model_B"} <= keys, split=split, keys=KEYS)
