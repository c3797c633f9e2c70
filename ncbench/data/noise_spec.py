"""The noise protocol of a run as one typed value: ``NoiseSpec`` (type, model, parameters, version).

* **type**: which items are chosen, ``caption`` (NCR, BiCro, CRCL: ⌊r·N_captions⌋ captions) or
  ``image`` (DECL, RCL, L2RM: ⌊r·N_images⌋ images, each with all its captions);
* **model**: what happens to a chosen item (``ncbench.data.noise_models``): ``shuffle`` (the papers'),
  ``neighbour``, ``partial``, ``mixed``;
* **params**: all of the model's parameters, defaults filled in;
* **version**: the model's generator version (from its registry entry).

The data layer builds it from the command line (``NoiseSpec.make``), the run config and the
result identity store it (``identity_fields`` / ``from_fields``), folders and file names use its
``slug``, and boards group by its ``key`` and title tables with its ``title``. The papers' protocols
keep the names they had before noise models existed: caption-level shuffle is the empty slug
(``noise-0.2``), image-level shuffle is ``image`` (``noise-image-0.2``); a result that records no
model is a shuffle. A new model is one generator and one registry entry; nothing here changes.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from .noise import NOISE_TYPES, check_noise_type
from .noise_models import build_params, get_model
TYPE_TITLES = {"caption": "caption-level noise (NCR, BiCro, CRCL)",
               "image": "image-level noise (DECL, RCL, L2RM)"}
_SLUG_VALUE = re.compile(r"[^A-Za-z0-9.]+")


@dataclass(frozen=True)
class NoiseSpec:
    """A noise protocol. Build it with :meth:`make` (checked, defaults filled); it is hashable and
    compares equal exactly when two runs' noise was made the same way."""

    type: str = "caption"
    model: str = "shuffle"
    params: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def make(cls, type: str = "caption", model: str = "shuffle", params: dict[str, Any] | None = None) -> "NoiseSpec":
        check_noise_type(type)
        m = get_model(model)
        if type not in m.types:
            raise ConfigError(f"noise model {model!r} has no {type}-level form (it has: {', '.join(m.types)})")
        return cls(type, model, tuple(sorted(build_params(model, params).items())))

    def __str__(self) -> str:  # in tables and CSV files
        return self.key

    def sort_key(self) -> tuple:
        """Boards list the caption-level before the image-level tables, the papers' shuffle first."""
        return (self.type, not self.is_papers, self.model, tuple((k, str(v)) for k, v in self.params))

    def __lt__(self, other: "NoiseSpec") -> bool:  # so that pandas can sort groups of results by protocol
        return self.sort_key() < other.sort_key()

    @property
    def version(self) -> str:
        return get_model(self.model).version

    @property
    def params_dict(self) -> dict[str, Any]:
        return dict(self.params)

    @property
    def changed_params(self) -> dict[str, Any]:
        """The parameters that differ from the model's defaults."""
        defaults = build_params(self.model)
        return {k: v for k, v in self.params if defaults.get(k) != v}

    @property
    def is_papers(self) -> bool:
        """A protocol of the published tables: a random shuffle."""
        return self.model == "shuffle"

    @property
    def slug(self) -> str:
        """The name in folders and files: ``""`` (caption shuffle), ``image``, ``neighbour``,
        ``image-neighbour``, ``neighbour-ceiling0.9-k5`` (parameters off their defaults)."""
        parts = [] if self.type == "caption" else [self.type]
        if self.model != "shuffle":
            parts.append(self.model)
            for k, v in sorted(self.changed_params.items()):
                text = f"{v:g}" if isinstance(v, float) else str(v)
                if _SLUG_VALUE.search(text) or len(text) > 24:  # e.g. an embedder file's path
                    text = hashlib.sha256(text.encode()).hexdigest()[:10]
                parts.append(f"{k}{text}")
        return "-".join(parts)

    def suffix(self, sep: str = "-") -> str:
        """What a name adds for this protocol: ``""`` for the caption-level shuffle (names as before
        noise types and models existed), else ``sep + slug`` (``-image``, ``_neighbour``)."""
        return f"{sep}{self.slug}" if self.slug else ""

    @property
    def key(self) -> str:
        """What boards group by: ``caption``, ``image``, ``caption-neighbour``, ... (never empty)."""
        return self.slug if self.type != "caption" else "caption" + self.suffix()

    @property
    def model_title(self) -> str:
        """``""`` for the papers' shuffle, else ``, neighbour model v1 (ceiling=0.85, embedder=features, k=10)``."""
        if self.is_papers:
            return ""
        shown = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.params)
        return f", {self.model} model v{self.version}" + (f" ({shown})" if shown else "")

    @property
    def title(self) -> str:
        """How a table names it in full (with the papers that use its type)."""
        return TYPE_TITLES[self.type] + self.model_title

    @property
    def label(self) -> str:
        """A short phrase: ``caption-level``, ``image-level neighbour``."""
        return f"{self.type}-level" + ("" if self.is_papers else f" {self.model}")

    def identity_fields(self) -> dict[str, Any]:
        """What a result's identity records about its noise protocol."""
        return {"noise_type": self.type, "noise_model": self.model, "noise_params": self.params_dict,
                "noise_generator_version": self.version}

    def config_fields(self) -> dict[str, Any]:
        """What enters the config hash: nothing for the caption-level shuffle (hashes stay as they
        were before the fields existed), the type for image-level shuffle, type, model and all
        parameters otherwise."""
        out: dict[str, Any] = {}
        if self.type != "caption":
            out["noise_type"] = self.type
        if not self.is_papers:
            out["noise_model"] = self.model
            out["noise_params"] = self.params_dict
            out["noise_generator_version"] = self.version
        return out

    @classmethod
    def from_fields(cls, data: dict[str, Any]) -> "NoiseSpec":
        """The protocol recorded in a result identity or config (older results: a shuffle)."""
        model = data.get("noise_model") or "shuffle"
        params = data.get("noise_params") or {}
        if not isinstance(params, dict):
            raise ConfigError(f"noise_params must be a mapping, got {type(params).__name__}")
        return cls.make(data.get("noise_type") or "caption", model, params)

    @classmethod
    def from_key(cls, key: str) -> "NoiseSpec":
        """Inverse of :attr:`key` for default parameters (``caption``, ``image-neighbour``)."""
        parts = key.split("-")
        kind = parts[0] if parts[0] in NOISE_TYPES else "caption"
        rest = parts[1:] if parts[0] in NOISE_TYPES else parts
        spec = cls.make(kind, rest[0] if rest else "shuffle")
        if spec.key != key:
            raise ConfigError(f"not a noise protocol with default parameters: {key!r}")
        return spec


CAPTION_SHUFFLE = NoiseSpec("caption", "shuffle", ())


def parse_noise_params(items: list[str] | None) -> dict[str, str]:
    """``--noise-opt key=value`` items as a dict of strings (converted by the model's parameters)."""
    out: dict[str, str] = {}
    for item in items or []:
        for part in filter(None, (p.strip() for p in item.split(","))):
            if "=" not in part:
                raise ConfigError(f"--noise-opt {part!r} must look like key=value")
            k, v = part.split("=", 1)
            out[k.strip()] = v.strip()
    return out
