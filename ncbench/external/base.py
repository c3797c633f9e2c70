"""What a checkpoint family is: how its files are recognised, what they may hold, how they split
into networks and how the family scores with them.

A ``Family`` names the top-level keys that identify its layout (``detect``), the globals its files
may hold beyond tensors and containers (``allowed``, ``loading.safe_load``), how one loaded file
becomes ``Network`` s (its options and per-encoder state dicts) and how the similarities of several
networks are combined (``combine``: the mean of the sigmoid scores for NCR, CRCL and L2RM; DECL
averages its evidence ``exp(tanh(z) / tau)``). ``extra_tokens`` is what the family's evaluation adds
to the vocabulary (L2RM's ``<mask>``: its embedding may have one row more than the vocabulary).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from ..errors import NcbenchError
from .loading import NAMESPACE


class LayoutError(NcbenchError):
    """A checkpoint's content is not the layout of its family."""


@dataclass(frozen=True)
class Network:
    """One network of a checkpoint file: its ``opt`` and the official per-encoder state dicts."""

    label: str  # where it is in the file: "model_A", "model", "net", ...
    opt: Any  # the argparse.Namespace the authors' code saved
    states: list[Mapping[str, Any]]


@dataclass(frozen=True)
class Family:
    name: str
    description: str
    methods: tuple[str, ...]  # methods whose released checkpoints have this layout
    noise_type: str  # the noise type of the family's papers (caption- or image-level)
    detect: Callable[[set[str]], bool]
    split: Callable[[dict, str], list[Network]]
    allowed: tuple[tuple[Any, str], ...] = NAMESPACE
    extra_tokens: tuple[str, ...] = ()
    combine: str = "mean_score"  # or "mean_evidence" (DECL)
    keys: tuple[str, ...] = field(default=())  # the layout's top-level keys, for messages


def state_list(value: Any, label: str, where: str, sizes: tuple[int, ...] = (3,)) -> list[Mapping[str, Any]]:
    """``value`` as a list of per-encoder state dicts (the official ``SGRAF.state_dict()``)."""
    if not isinstance(value, (list, tuple)) or len(value) not in sizes or not all(isinstance(s, Mapping) for s in value):
        what = f"a list of {len(value)}" if isinstance(value, (list, tuple)) else f"a {type(value).__name__}"
        raise LayoutError(f"{where}: {label!r} is {what}; expected a list of {' or '.join(map(str, sizes))} state dicts "
                          "(image, text, similarity encoders)")
    return list(value)


def require_keys(content: dict, keys: tuple[str, ...], where: str, family: str) -> None:
    missing = [k for k in keys if k not in content]
    if missing:
        raise LayoutError(f"{where}: no {', '.join(repr(k) for k in missing)}; not a {family} checkpoint "
                          f"(its keys: {', '.join(sorted(map(str, content)))})")
