"""Typed run configuration and its stable hash.

A :class:`RunConfig` is everything that determines a run's numbers: method, backbone and dataset
with their hyperparameters, the noise ratio, the noise protocol (``NoiseSpec``: type, model,
parameters, generator version) and how its index is obtained, the training seed and the protocol
version. Its hash (sha256 of the canonical JSON) identifies a result: a finished
result with the same hash is not run again. Where a run executes (device, threads) is recorded in
the result but is not part of the hash, and neither is ``recipe``: where the hyperparameters came
from (a tuned recipe file, the method's defaults, the user's overrides), which is provenance, not
behaviour. A run with ``trial`` set is one trial of ``ncbench tune``: it is selected on the dev
split and never tested. A run with ``tag`` set (``--tag``) is a named variant of its method (other
options, say): its results live beside the untagged ones under ``<method>@<tag>/`` and the boards
show it as a row of its own.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from . import PROTOCOL_VERSION
from .data.noise_spec import CAPTION_SHUFFLE, NoiseSpec
from .errors import ConfigError

TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}\Z")  # \Z: `$` would accept a trailing newline


#: method options added after results existed, with the value every earlier run had: a config that
#: holds that value hashes (and pools on a board) as before the option existed, as ``trial``,
#: ``noise_type`` and ``tag`` do
ADDED_METHOD_OPTIONS: dict[str, Any] = {"lr_decay": 0.1}


def as_before_added_options(method_config: dict[str, Any] | None) -> dict[str, Any]:
    """``method_config`` without the added options that hold their former value."""
    return {k: v for k, v in (method_config or {}).items()
            if k not in ADDED_METHOD_OPTIONS or v != ADDED_METHOD_OPTIONS[k]}


def row_name(method: str, tag: str | None) -> str:
    return f"{method}@{tag}" if tag else method


def check_tag(tag: str | None) -> str | None:
    """A ``--tag`` value: letters, digits, ``_.-``, at most 40 characters (it names a folder)."""
    if tag is not None and not TAG.match(tag):
        raise ConfigError(f"--tag {tag!r}: use 1-40 letters, digits, '_', '.' or '-', starting with a letter or digit")
    return tag


@dataclass(frozen=True)
class RunConfig:
    method: str
    backbone: str
    dataset: str
    noise_ratio: float
    seed: int
    noise_seed: int = 0  # seed of the generated noise index (shared by all methods and seeds)
    noise_file: str | None = None  # an existing index file, loaded verbatim instead
    noise_protocol: NoiseSpec = CAPTION_SHUFFLE  # caption/image-level; the papers' shuffle or another model
    method_config: dict[str, Any] = field(default_factory=dict)
    backbone_config: dict[str, Any] = field(default_factory=dict)
    dataset_version: str = ""  # e.g. the synthetic generator's folder name
    protocol_version: str = PROTOCOL_VERSION
    trial: int | None = None  # a tuning trial (``ncbench.tuning``): dev split only, no test
    tag: str | None = None  # ``--tag``: a named variant of the method, kept beside its other configs
    recipe: dict[str, Any] = field(default_factory=dict, compare=False)  # provenance, not hashed

    @property
    def noise_type(self) -> str:
        return self.noise_protocol.type

    def to_dict(self) -> dict[str, Any]:
        """As stored in a result's ``config``: the noise protocol as flat fields (``noise_type``, and
        for another model than the shuffle ``noise_model``, ``noise_params``, ``noise_generator_version``)."""
        data = dataclasses.asdict(self)
        del data["noise_protocol"]
        return {**data, "noise_type": self.noise_type, **self.noise_protocol.config_fields()}

    @property
    def config_hash(self) -> str:
        data = self.to_dict()
        data["method_config"] = as_before_added_options(data["method_config"])
        data.pop("recipe")
        if data["trial"] is None:  # ordinary runs hash as before trials existed
            data.pop("trial")
        if data["noise_type"] == "caption":  # caption-level runs hash as before image-level noise existed
            data.pop("noise_type")  # (and shuffles as before noise models existed: no model fields)
        if data["tag"] is None:  # untagged runs hash as before tags existed
            data.pop("tag")
        blob = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    @property
    def row_name(self) -> str:
        """The method as results, boards and ``compare`` name it: ``ncr``, or ``ncr@<tag>`` for a tagged run."""
        return row_name(self.method, self.tag)

    @property
    def label(self) -> str:
        trial = "" if self.trial is None else f" (tuning trial {self.trial})"
        kind = "" if self.noise_protocol == CAPTION_SHUFFLE else f" {self.noise_protocol.label}"
        return f"{self.row_name}/{self.backbone} on {self.dataset} @{kind} noise {self.noise_ratio:g}, seed {self.seed}{trial}"
