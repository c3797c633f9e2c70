"""CRCL's layout: ``{"schedule", "epoch", "model", "best_rsum", "opt", "step", "move_gt"}``,
``model`` a list of 3 state dicts (SGR or SAF, ``model/SGRAF.py``) or 2 (VSE∞, ``model/VSEinfty.py``);
``move_gt`` is a NumPy array (the label store), so CRCL files may hold NumPy arrays. Its "SGRAF"
is two files, an SAF and an SGR network, whose sigmoid scores are averaged (``eval.py``,
``validation_SGRAF``)."""

from __future__ import annotations

from .base import Family, Network, require_keys, state_list
from .loading import NAMESPACE, NUMPY_ARRAYS

KEYS = ("model", "opt")


def split(content: dict, where: str) -> list[Network]:
    require_keys(content, KEYS, where, "CRCL")
    return [Network("model", content["opt"], state_list(content["model"], "model", where, sizes=(3, 2)))]


FAMILY = Family(
    name="crcl", description="CRCL: one network per file (SGR, SAF or VSE∞); SAF + SGR files averaged",
    methods=("crcl",), noise_type="caption",
    detect=lambda keys: "model" in keys and bool({"schedule", "move_gt"} & keys), split=split,
    allowed=NAMESPACE + NUMPY_ARRAYS, keys=KEYS + ("schedule", "move_gt"))
