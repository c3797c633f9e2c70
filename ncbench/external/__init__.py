"""Evaluating the authors' released checkpoints with ncbench's own evaluation (``ncbench evaluate``).

One module per checkpoint layout (``ncr``: NCR, BiCro, CREAM, PC2; ``crcl``; ``decl``; ``l2rm``),
each a ``base.Family``; ``loading`` reads a file without running anything in it (weights-only
unpickling with the family's allow-list), ``opt`` turns the saved options into an ncbench backbone
config, ``weights`` maps the official state dicts onto ncbench's SGR/SAF/VSE∞ (and back), and
``evaluate`` builds the networks, scores a dataset's test split and writes a result of kind
``checkpoint``. ``detect`` names the family of a loaded file from its top-level keys.
"""

from __future__ import annotations

from .base import Family, LayoutError
from .crcl import FAMILY as CRCL
from .decl import FAMILY as DECL
from .l2rm import FAMILY as L2RM
from .ncr import FAMILY as NCR

FAMILIES: dict[str, Family] = {f.name: f for f in (NCR, CRCL, DECL, L2RM)}


def detect(content: object, where: str) -> Family:
    """The family whose layout ``content`` (a loaded checkpoint) has."""
    if not isinstance(content, dict):
        raise LayoutError(f"{where}: holds a {type(content).__name__}, not a checkpoint dict")
    keys = {str(k) for k in content}
    found = [f for f in FAMILIES.values() if f.detect(keys)]
    if len(found) != 1:
        layouts = "; ".join(f"{f.name}: {', '.join(f.keys)}" for f in FAMILIES.values())
        raise LayoutError(f"{where}: keys {', '.join(sorted(keys))} match {'no' if not found else 'more than one'} "
                          f"known layout ({layouts}); give --family")
    return found[0]
