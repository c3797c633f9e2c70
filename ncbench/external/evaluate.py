"""``ncbench evaluate``: released checkpoints scored on a dataset's test split by ncbench's own
evaluation, written as a result of kind ``checkpoint``.

Each file is loaded safely (``loading.safe_load``, with its family's allow-list; a family detected
from the keys or given), split into its networks (``Family.split``), each network rebuilt from its
options (``opt.read_opt``) with the official weights mapped on (``weights.to_ncbench``) and the
vocabulary of the dataset (``{vocab}/{data_name}_vocab.json``, as the official evaluation reads it;
L2RM's ``<mask>`` row accepted). All networks of all files are averaged as the family does
(``evaluate.similarity_matrix``: NCR's A and B, CRCL's/L2RM's SAF and SGR; DECL's evidence through
``decl.Evidence``) and scored with ``evaluate.evaluate_split`` (F30K and CC152K: the test split;
MS-COCO: ``testall`` as the 5-fold 1K mean and 5K). The result is an ordinary result file (per-query
ranks included, so ``ncbench compare`` and the significance marks work) under the row
``<method>@checkpoint``, whose ``meta`` says ``kind: checkpoint`` and records each file's sha256,
epoch, saved ``best_rsum`` and unused options, the ``--source`` URL and the ``--claims`` rSum with
the difference evaluated − claimed, and the precision it was evaluated at (``--precision``: the
device's default unless given, as for training runs).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from .. import PROTOCOL_VERSION
from ..atomic import write_text_atomic
from ..backbones.base import Backbone
from ..data.cards import DatasetCard
from ..data.noise_spec import NoiseSpec
from ..data.precomp import Split, load_split
from ..data.vocab import Vocabulary
from ..engine.method import build_config
from ..errors import ConfigError, DataError
from ..evaluate import SplitEvaluation, evaluate_split
from ..precision import check_precision, execution
from ..registry import BACKBONES, DATASETS
from ..results import SCHEMA_VERSION, environment, identity_path, result_text, set_aside
from . import FAMILIES, detect
from .base import Family, Network
from .decl import Evidence
from .loading import CheckpointError, safe_load
from .opt import ModelSpec, read_opt
from .weights import to_ncbench

KIND = "checkpoint"
DEFAULT_TAG = "checkpoint"
ENSEMBLE_NAMES = {frozenset({"sgr", "saf"}): "sgraf"}


@dataclass
class Request:
    files: list[Path]
    family: str | None = None  # None: detected from each file's keys
    dataset: str | None = None  # None: from opt.data_name
    data_root: Path | None = None
    cache_dir: Path = Path(".")
    noise_ratio: float | None = None  # None: from opt.noise_ratio
    noise_type: str | None = None  # None: the family's
    method: str | None = None  # None: the family's first method
    tag: str = DEFAULT_TAG
    seed: int = 0
    source: str | None = None
    claims: float | None = None
    device: str = "cpu"
    precision: str | None = None  # fp32, tf32, bf16 (``ncbench.precision``); None: the device's default


@dataclass
class LoadedNetwork:
    network: Network
    spec: ModelSpec


@dataclass
class Checkpoint:
    path: Path
    sha256: str
    family: Family
    epoch: Any
    best_rsum: Any
    networks: list[LoadedNetwork] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        unused = sorted({k for n in self.networks for k in n.spec.unused})
        return {"file": self.path.name, "sha256": self.sha256, "family": self.family.name,
                "epoch": self.epoch if isinstance(self.epoch, int) else None,
                "best_rsum": float(self.best_rsum) if isinstance(self.best_rsum, (int, float)) else None,
                "networks": [{"label": n.network.label, "backbone": n.spec.backbone} for n in self.networks],
                "opt_unused": unused}


def load_checkpoint(path: Path, family: str | None = None) -> Checkpoint:
    """One file loaded with its family's allow-list (all families' while detecting, then checked
    against the detected family's) and split into networks with their specs."""
    where = str(path)
    if family is not None:
        fam = FAMILIES[family]
        loaded = safe_load(path, fam.allowed, f"a {fam.name} checkpoint")
    else:
        union = tuple({name: (obj, name) for f in FAMILIES.values() for obj, name in f.allowed}.values())
        loaded = safe_load(path, union, "a checkpoint of the known families")
        fam = detect(loaded.content, where)
        foreign = sorted(set(loaded.globals) - {name for _, name in fam.allowed})
        if foreign:
            raise CheckpointError(f"{path}: a {fam.name} checkpoint holding {', '.join(foreign)}, which its family's "
                                  "files do not; not loaded")
    if not isinstance(loaded.content, dict):
        raise CheckpointError(f"{path}: holds a {type(loaded.content).__name__}, not a checkpoint dict")
    networks = [LoadedNetwork(n, read_opt(n.opt, f"{where} ({n.label})")) for n in fam.split(loaded.content, where)]
    return Checkpoint(path, loaded.sha256, fam, loaded.content.get("epoch"), loaded.content.get("best_rsum"), networks)


def dataset_name(checkpoints: list[Checkpoint], given: str | None) -> str:
    """``--dataset``, or the one ``opt.data_name`` the files share (``f30k_precomp`` → ``f30k``)."""
    names = {n.spec.data_name for c in checkpoints for n in c.networks if n.spec.data_name}
    stripped = {str(x).removesuffix("_precomp") for x in names}
    if given is not None:
        if stripped and stripped != {given}:
            raise ConfigError(f"--dataset {given}: the checkpoints were trained on {', '.join(sorted(names))} (opt.data_name)")
        return given
    if len(stripped) != 1:
        raise ConfigError("the checkpoints name " + (f"several datasets ({', '.join(sorted(names))})" if stripped
                                                     else "no dataset (no opt.data_name)") + "; give --dataset")
    return stripped.pop()


def noise_ratio(checkpoints: list[Checkpoint], given: float | None) -> float:
    ratios = {n.spec.noise_ratio for c in checkpoints for n in c.networks if n.spec.noise_ratio is not None}
    if given is not None:
        return float(given)
    if len(ratios) != 1:
        raise ConfigError("the checkpoints' options give " + (f"several noise ratios ({', '.join(map(str, sorted(ratios)))})"
                          if ratios else "no noise ratio (no opt.noise_ratio)") + "; give --noise")
    return ratios.pop()


def load_test_split(card: DatasetCard, data_root: Path | None, cache_dir: Path) -> tuple[Vocabulary, Split, str]:
    """The dataset's vocabulary, its test split and where the vocabulary is from (only the test files
    are read for a precomp card)."""
    if type(card).load is DatasetCard.load:
        root = card.locate(data_root, cache_dir)
        path = card.vocab_path(root, data_root)
        vocab = Vocabulary.load(path)
        return vocab, load_split(root, card.test.split, vocab, card.captions_per_image), str(path)
    ds = card.load(data_root, cache_dir)
    return ds.vocab, ds.test, f"the {card.name} vocabulary"


def embedding_rows(states: list, where: str) -> int:
    weight = states[1].get("embed.weight") if len(states) > 1 else None
    if not isinstance(weight, torch.Tensor) or weight.ndim != 2:
        raise CheckpointError(f"{where}: the text encoder has no 'embed.weight' matrix")
    return int(weight.shape[0])


def build_network(item: LoadedNetwork, family: Family, vocab: Vocabulary, feature_dim: int, where: str,
                  vocab_file: str) -> Backbone:
    """The ncbench network holding one official network's weights (and DECL's evidence on top)."""
    spec = item.spec
    rows = embedding_rows(item.network.states, where)
    allowed = {len(vocab), len(vocab) + len(family.extra_tokens)}
    if rows not in allowed:
        extra = f" (+{', '.join(family.extra_tokens)})" if family.extra_tokens else ""
        raise DataError(f"{where}: the word embedding has {rows} rows; the vocabulary {vocab_file} has "
                        f"{len(vocab)} words{extra}: another dataset's vocabulary?")
    if spec.img_dim is not None and spec.img_dim != feature_dim:
        raise DataError(f"{where}: opt.img_dim is {spec.img_dim}; the test features have {feature_dim} per region")
    bcls = BACKBONES.get(spec.backbone)
    net = bcls(build_config(bcls.Config, spec.config), rows, feature_dim)
    net.load_state_dict(to_ncbench(spec.backbone, item.network.states, net.state_dict(), where))
    net.eval()
    if family.combine == "mean_evidence":
        if not isinstance(spec.tau, (int, float)) or spec.tau <= 0:
            raise CheckpointError(f"{where}: opt.tau {spec.tau!r}; DECL's evidence needs a positive temperature")
        return Evidence(net, spec.tau).eval()
    return net


def backbone_name(checkpoints: list[Checkpoint]) -> str:
    kinds = {n.spec.backbone for c in checkpoints for n in c.networks}
    return ENSEMBLE_NAMES.get(frozenset(kinds)) or "+".join(sorted(kinds))


def networks_for(checkpoints: list[Checkpoint], vocab: Vocabulary, split: Split, vocab_file: str) -> list[Backbone]:
    feature_dim = int(split.images.shape[-1])
    return [build_network(n, c.family, vocab, feature_dim, f"{c.path} ({n.network.label})", vocab_file)
            for c in checkpoints for n in c.networks]


def config_of(req: Request, checkpoints: list[Checkpoint], dataset: str) -> dict[str, Any]:
    return {"kind": KIND, "family": checkpoints[0].family.name, "dataset": dataset,
            "checkpoints_sha256": sorted(c.sha256 for c in checkpoints),
            "networks": [{"backbone": n.spec.backbone, **n.spec.config} for c in checkpoints for n in c.networks]}


def noise_of(dataset: str, given: str | None, family_default: str) -> NoiseSpec:
    """The noise protocol a checkpoint's row is filed under: ``--noise-type``, else its family's;
    always caption-level on CC152K, whose noise is the web's own (its reported rows are filed so)."""
    return NoiseSpec.make("caption" if dataset == "cc152k" else (given or family_default))


def build_record(req: Request, checkpoints: list[Checkpoint], dataset: str, ratio: float, card: DatasetCard,
                 test: SplitEvaluation, seconds: float) -> dict[str, Any]:
    family = checkpoints[0].family
    noise = noise_of(dataset, req.noise_type, family.noise_type)
    config = config_of(req, checkpoints, dataset)
    rsum = test.primary.rsum
    meta: dict[str, Any] = {
        "kind": KIND, "ensemble_size": sum(len(c.networks) for c in checkpoints),
        "selection": "released_checkpoint", "family": family.name, "combine": family.combine,
        "checkpoints": [c.record() for c in checkpoints], "source": req.source,
        "precision": req.precision,
    }
    if req.claims is not None:
        meta["claims"] = {"rsum": float(req.claims), "delta": round(rsum - float(req.claims), 4)}
    return {
        "schema_version": SCHEMA_VERSION, "status": "ok",
        "identity": {"method": req.method or family.methods[0], **({"tag": req.tag} if req.tag else {}),
                     "backbone": backbone_name(checkpoints), "dataset": dataset, "noise_ratio": ratio,
                     **noise.identity_fields(), "seed": req.seed, "protocol_version": PROTOCOL_VERSION},
        "config": config,
        "config_hash": hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16],
        "test": {**test.to_dict(), "split": card.test.split},
        "ranks": test.ranks_record(),
        "meta": meta,
        "timings": {"test_s": round(seconds, 3), "total_s": round(seconds, 3)},
        "env": environment(req.device),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "error": None,
    }


def evaluate_checkpoints(req: Request) -> tuple[dict[str, Any], list[Checkpoint]]:
    """Load, rebuild and evaluate; the result record (not yet written) and the loaded files."""
    if not req.files:
        raise ConfigError("give at least one checkpoint file")
    req = dataclasses.replace(req, precision=check_precision(req.precision, req.device))  # refused before any work
    checkpoints = [load_checkpoint(Path(p), req.family) for p in req.files]
    families = {c.family.name for c in checkpoints}
    if len(families) > 1:
        raise ConfigError(f"the files are of several families ({', '.join(sorted(families))}); evaluate them separately")
    dataset = dataset_name(checkpoints, req.dataset)
    ratio = noise_ratio(checkpoints, req.noise_ratio)
    card = DATASETS.get(dataset)
    vocab, split, vocab_file = load_test_split(card, req.data_root, req.cache_dir)
    nets = [n.to(req.device) for n in networks_for(checkpoints, vocab, split, vocab_file)]
    t0 = time.perf_counter()
    with execution(req.precision):
        test = evaluate_split(nets, split, torch.device(req.device), folds=card.test.folds, precision=req.precision)
    return build_record(req, checkpoints, dataset, ratio, card, test, time.perf_counter() - t0), checkpoints


def write_record(results_dir: Path, record: dict[str, Any], log: Callable[[str], None]) -> Path:
    """Put ``record`` at its place under ``results_dir``; a result already there is moved under
    ``superseded/`` once the new one is complete on disk."""
    path = identity_path(Path(results_dir), record["identity"])
    pending = path.with_name(f".{path.name}.pending.tmp")
    write_text_atomic(pending, result_text(record))
    if os.path.lexists(path):
        log(f"{path}: replaced; the previous result is at {set_aside(Path(results_dir), path, 'replaced')}")
    os.replace(pending, path)
    return path
