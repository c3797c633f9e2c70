"""Backbone ensembles: ``sgraf`` = an SGR run and a SAF run of the same method, noise and seed,
evaluated with their similarity matrices averaged (what the SGRAF papers and BiCro's/CRCL's
headline rows report).

``--backbones sgraf`` trains the member runs as ordinary runs (each its own result, selected on its
own validation rSum) and keeps their selected networks (``seed-<s>.nets.pt`` beside the result;
read back as tensors only, ``weights_only=True``, and never through a link).
Then every network of both members (NCR/BiCro: A and B of each, 4 in all) scores the test split;
the averaged similarities are ranked once. The ensemble's result lives under backbone ``sgraf``
with ``meta.ensemble_size`` = all networks, ``meta.members`` (each member's backbone and config
hash) and ``meta.selection`` = ``members_best_val_rsum``; it is rebuilt when a member changes.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

import torch

from .atomic import open_regular, remove_temporaries, write_atomic
from .config import RunConfig
from .engine.context import make_context
from .engine.method import build_config
from .evaluate import evaluate_split
from .precision import execution
from .registry import METHODS
from .results import (
    SCHEMA_VERSION,
    claim_result,
    environment,
    inspect_result,
    result_path,
    store_result,
)

ENSEMBLES: dict[str, tuple[str, ...]] = {"sgraf": ("sgr", "saf")}


def nets_path(result: Path) -> Path:
    """Where a run's selected networks are kept (only when an ensemble needs them)."""
    return result.with_name(result.stem + ".nets.pt")


def save_networks(path: Path, networks: list[torch.nn.Module]) -> None:
    states = [{k: v.detach().cpu() for k, v in net.state_dict().items()} for net in networks]
    write_atomic(path, lambda f: torch.save(states, f))


def expand(backbones: list[str] | None) -> tuple[list[str], list[str]]:
    """``(backbones to train, ensembles to build)``: an ensemble name stands for its members."""
    train, ensembles = [], []
    for b in backbones or []:
        for m in ENSEMBLES.get(b, (b,)):
            if m not in train:
                train.append(m)
        if b in ENSEMBLES:
            ensembles.append(b)
    return train, ensembles


def ensemble_config(name: str, members: list[RunConfig]) -> RunConfig:
    """The ensemble's identity: the members' shared fields, backbone ``name``, and the members'
    config hashes in place of a backbone config (so a retrained member makes it stale)."""
    first = members[0]
    return RunConfig(method=first.method, backbone=name, dataset=first.dataset, noise_ratio=first.noise_ratio,
                     seed=first.seed, noise_seed=first.noise_seed, noise_file=first.noise_file,
                     noise_protocol=first.noise_protocol, method_config=first.method_config,
                     backbone_config={"members": {m.backbone: m.config_hash for m in members}},
                     dataset_version=first.dataset_version, protocol_version=first.protocol_version, tag=first.tag)


def build(name: str, members: list[RunConfig], runner, log) -> tuple[str, dict[str, Any] | None]:
    """Evaluate the ensemble of ``members`` (finished runs) and write its result, under its lock.
    Returns ``("done", record)``, ``("busy", None)`` when another worker is building it, or
    ``(why, None)`` when a member is not done or its networks were not kept."""
    cfg = ensemble_config(name, members)
    path = result_path(runner.s.results_dir, cfg)
    with claim_result(runner.s.results_dir, path, cfg.config_hash, log, cfg.label) as (state, record):
        if state != "free":
            return state, record
        remove_temporaries(path.parent, path.stem, log)  # ours now: left by a killed write
        return _build(name, members, cfg, path, runner, log, previous=record)


def _build(name: str, members: list[RunConfig], cfg: RunConfig, path: Path, runner,
           log, previous: str = "missing") -> tuple[str, dict[str, Any] | None]:
    root = runner.s.results_dir
    nets, member_records = [], []
    for m in members:
        mpath = result_path(root, m)
        mstate, mrecord = inspect_result(mpath, m.config_hash)
        if mstate != "done" or not nets_path(mpath).is_file():
            why = "not done" if mstate != "done" else f"its networks were not kept ({nets_path(mpath).name})"
            log(f"{cfg.label}: member {m.backbone} {why}; ensemble not built")
            return f"not built: member {m.backbone} {why}", None
        nets += _networks(m, runner, nets_path(mpath))
        member_records.append(mrecord)
    t0 = time.perf_counter()
    ds = runner.dataset(cfg.dataset)
    device = torch.device(runner.s.device)
    with execution(runner.s.precision):  # the run's precision, the caller's TF32 flags restored after
        test = evaluate_split(nets, ds.test, device, folds=ds.card.test.folds, precision=runner.s.precision)
    record = {
        "schema_version": SCHEMA_VERSION, "status": "ok",
        "identity": {**member_records[0]["identity"], "backbone": name},
        "config": cfg.to_dict(), "config_hash": cfg.config_hash,
        "test": {**test.to_dict(), "split": ds.card.test.split},
        "ranks": test.ranks_record(),
        "meta": {"ensemble_size": len(nets), "selection": "members_best_val_rsum",
                 "members": [{"backbone": m.backbone, "config_hash": m.config_hash,
                              "best_val_rsum": r["best_val"]["rsum"], "best_epoch": r["best_val"]["epoch"]}
                             for m, r in zip(members, member_records)], "precision": runner.s.precision},
        "timings": {"test_s": round(time.perf_counter() - t0, 3),
                    "total_s": round(sum(r["timings"]["total_s"] for r in member_records), 3),
                    "gpu_hours": round(sum(r["timings"].get("gpu_hours", 0.0) for r in member_records), 6)},
        "env": environment(runner.s.device),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "error": None,
    }
    store_result(root, path, record, previous, log, cfg.label)
    log(f"{cfg.label}: test rSum {test.primary.rsum:.1f} ({len(nets)} networks of "
        f"{' + '.join(m.backbone for m in members)} averaged) -> {path}")
    return "done", record


def _networks(cfg: RunConfig, runner, path: Path) -> list[torch.nn.Module]:
    """The member's networks, rebuilt through its method (which knows e.g. CRCL's extra token)."""
    ds = runner.dataset(cfg.dataset)
    device = torch.device(runner.s.device)
    ctx = make_context(ds, runner.noise_index(cfg, ds), cfg.backbone, cfg.backbone_config, device,
                       torch.Generator().manual_seed(cfg.seed))
    mcls = METHODS.get(cfg.method)
    method = mcls(build_config(mcls.Config, cfg.method_config), ctx)
    with os.fdopen(open_regular(path), "rb") as f:  # never through a link; tensors only, no code
        states = torch.load(f, map_location=device, weights_only=True)
    networks = method.networks()
    if len(states) != len(networks):
        raise ValueError(f"{path}: {len(states)} networks kept, {cfg.method} has {len(networks)}")
    for net, state in zip(networks, states):
        net.load_state_dict(state)
        net.eval()
    return networks


def group_members(runs: list[RunConfig], name: str) -> list[list[RunConfig]]:
    """The runs of ``runs`` that form one ``name`` ensemble each (same everything but the backbone)."""
    wanted = ENSEMBLES[name]
    by_key: dict[str, dict[str, RunConfig]] = {}
    for r in runs:
        if r.backbone in wanted:
            key = hashlib.sha256(repr((r.method, r.tag, r.dataset, r.noise_ratio, r.noise_protocol.key, r.seed, r.noise_seed, r.noise_file,
                                       sorted(r.method_config.items(), key=str))).encode()).hexdigest()
            by_key.setdefault(key, {})[r.backbone] = r
    return [[g[b] for b in wanted] for g in by_key.values() if all(b in g for b in wanted)]
