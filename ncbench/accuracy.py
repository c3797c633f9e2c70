"""Accuracy-regression bookkeeping: every registered method's test rSum and detection AUC over seeds
on the embedded dataset, compared with a golden file.

A golden file (``benchmarks/accuracy_golden*.json``) records, for one sweep (dataset, backbone,
noise ratio, seeds), each method's per-seed rSum and AUC and their means. ``problems`` lists each
method whose mean moved by more than the file's tolerance in either direction (an unexplained
improvement deserves a look as much as a loss); ``coverage_problems`` lists each registered method
with no entry (with the command that records one) and each entry of a method no longer registered.

The methods covered are the registry's (built-ins from the ``methods/`` folder and entry-point
plugins) minus the boards' reference rows (``runner.REFERENCE_METHODS``): ``golden_methods``; a
sweep may name fewer (``GoldenSweep.methods``). The tracked sweeps are defined here once
(``GoldenSweep``), for the test suite and for ``ncbench golden``, which trains one method's sweep
and records its entry (``record``): ``CI_SWEEP`` on ``vse_bow`` in CI (the whole sweep in about a
minute on two cores), ``FULL_SWEEP`` on the recurrent ``vse_light`` in the full benchmark run
(``pytest benchmarks --accuracy-full``, about eleven minutes), and ``SCENES_SWEEP``: the papers'
SGR backbone on the CI-sized region-feature dataset ``synthetic-scenes-ci`` for vanilla, NCR and
CRCL (their options from ``recipes/synthetic-scenes-ci.toml``; about 70 CPU-seconds in two
workers), each with a tolerance of its own chosen from the seed spread measured on it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .atomic import read_regular, write_text_atomic
from .errors import ConfigError, ResultError

RSUM_TOL = 3.0
AUC_TOL = 0.01
MAX_GOLDEN_BYTES = 10 * 2**20


@dataclass(frozen=True)
class GoldenSweep:
    """One tracked sweep: every covered method at one noise ratio over ``seeds`` on ``dataset`` with
    ``backbone``, trained by ``workers`` local workers of ``threads`` CPU thread each (one thread
    makes the numbers independent of the machine's core count; the worker count changes nothing)."""

    name: str  # ``ncbench golden --sweep NAME``
    backbone: str
    file: str  # the golden file's name under benchmarks/
    dataset: str = "synthetic"
    noise: float = 0.6
    seeds: tuple[int, ...] = (0, 1, 2)
    workers: int = 2
    threads: int = 1
    methods: tuple[str, ...] | None = None  # None: every registered method but the reference rows
    rsum_tolerance: float = RSUM_TOL  # what a new golden file of the sweep records
    auc_tolerance: float = AUC_TOL
    # method → (rSum, AUC) tolerance of its entry, where the methods' seed spreads differ too much for one
    method_tolerances: dict[str, tuple[float, float]] = field(default_factory=dict)

    def covered(self) -> list[str]:
        """The methods the sweep's golden file must cover (``golden_methods`` unless it names its own)."""
        return list(self.methods) if self.methods is not None else golden_methods()

    def describe(self) -> str:
        """One line for ``ncbench golden --help``: what the sweep trains and its file."""
        who = f" ({', '.join(self.methods)})" if self.methods is not None else ""
        return f"{self.backbone} on {self.dataset}{who}, benchmarks/{self.file}"

    def header(self) -> dict[str, Any]:
        """What the golden file records about the sweep (checked before comparing)."""
        return {"noise": self.noise, "dataset": self.dataset, "backbone": self.backbone}

    def results_of(self, results: list[dict[str, Any]], methods: list[str]) -> list[dict[str, Any]]:
        """The results among ``results`` that belong to this sweep and one of ``methods``."""
        return [r for r in results if r["identity"]["method"] in methods and r["identity"]["noise_ratio"] == self.noise
                and r["identity"]["backbone"] == self.backbone and r["identity"]["dataset"] == self.dataset
                and r["identity"]["seed"] in self.seeds]


CI_SWEEP = GoldenSweep("ci", "vse_bow", "accuracy_golden.json")
FULL_SWEEP = GoldenSweep("full", "vse_light", "accuracy_golden_vse_light.json")
# SGR on region features at 20% noise, one seed per method (three would take three times as long);
# NCR first, the longest run, so that the two workers finish together. Each method's tolerance is
# three sample standard deviations of its single-run test rSum (and AUC) over seeds 0, 1, 2 of this
# sweep, rounded up to 5 (0.005): what re-drawing the seed moves a run by, which is what a change of
# summation order does to a short training. Measured (2026-12-05): vanilla 285.0 / 385.7 / 466.0
# (sd 90.7), NCR 450.7 / 483.3 / 492.0 (sd 21.8; AUC sd 0.0116), CRCL 437.0 / 482.3 / 382.7 (sd 49.9;
# AUC sd 0.0265). NCR's is the guard that counts: uniform word→region attention moves it by 97.
SCENES_SWEEP = GoldenSweep("scenes", "sgr", "accuracy_golden_scenes.json", dataset="synthetic-scenes-ci", noise=0.2,
                           seeds=(0,), methods=("ncr", "crcl", "vanilla"), rsum_tolerance=70.0, auc_tolerance=0.035,
                           method_tolerances={"ncr": (70.0, 0.035), "crcl": (150.0, 0.08), "vanilla": (275.0, AUC_TOL)})
SWEEPS = {s.name: s for s in (CI_SWEEP, FULL_SWEEP, SCENES_SWEEP)}


def golden_methods() -> list[str]:
    """The registered methods a golden file must cover: all of them but the reference rows."""
    from .registry import METHODS
    from .runner import REFERENCE_METHODS

    return [m for m in METHODS.names() if m not in REFERENCE_METHODS]


def summarise(results: list[dict[str, Any]], method: str) -> dict[str, Any]:
    """One method's per-seed test rSum and detection AUC (seed order) and their means."""
    import numpy as np  # here, not at the top: ``ncbench golden``'s parser reads SWEEPS at start-up

    rows = sorted((r for r in results if r["identity"]["method"] == method), key=lambda r: r["identity"]["seed"])
    rsum = [r["test"]["full"]["rsum"] for r in rows]
    auc = [r["detection"]["auc"] for r in rows if r.get("detection")]
    return {"seeds": [r["identity"]["seed"] for r in rows], "rsum": rsum, "rsum_mean": float(np.mean(rsum)),
            "auc": auc, "auc_mean": float(np.mean(auc)) if auc else None}


def entry(sweep: GoldenSweep, method: str, summary: dict[str, Any]) -> dict[str, Any]:
    """The golden entry of ``method`` (``summarise``'s record), with its own tolerances where the sweep
    sets them (an entry without them is held to the file's)."""
    if method not in sweep.method_tolerances:
        return summary
    rsum_tol, auc_tol = sweep.method_tolerances[method]
    return {**summary, "rsum_tolerance": rsum_tol, "auc_tolerance": auc_tol}


def new_golden(sweep: GoldenSweep, found: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {**sweep.header(), "rsum_tolerance": sweep.rsum_tolerance, "auc_tolerance": sweep.auc_tolerance,
            "methods": {m: entry(sweep, m, f) for m, f in found.items()}}


def save_golden(path: Path, golden: dict[str, Any]) -> None:
    write_text_atomic(Path(path), json.dumps(golden, indent=1) + "\n")


def write_golden(path: Path, sweep: GoldenSweep, found: dict[str, dict[str, Any]]) -> None:
    """Replace the whole file with ``found`` (``NCBENCH_UPDATE_GOLDEN=1``, ``--update-golden``)."""
    save_golden(path, new_golden(sweep, found))


def read_golden(path: Path, sweep: GoldenSweep) -> dict[str, Any]:
    """The golden file at ``path`` (a regular file, never a link), checked to be ``sweep``'s."""
    try:
        golden = json.loads(read_regular(path, MAX_GOLDEN_BYTES))
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError, as is too large
        raise ResultError(f"{path}: not a golden file ({exc})") from None
    if not isinstance(golden, dict) or not isinstance(golden.get("methods"), dict):
        raise ResultError(f"{path}: not a golden file (no 'methods' table)")
    recorded = {k: golden.get(k) for k in sweep.header()}
    if recorded != sweep.header():
        raise ResultError(f"{path} records the sweep {recorded}, not the {sweep.name!r} sweep {sweep.header()}")
    return golden


def _sweep_option(sweep: GoldenSweep) -> str:
    return "" if sweep is CI_SWEEP else f" --sweep {sweep.name}"


def record_command(method: str, sweep: GoldenSweep) -> str:
    return f"ncbench golden --method {method}" + _sweep_option(sweep)


def coverage_problems(golden: dict[str, Any], methods: list[str], sweep: GoldenSweep, path: Path) -> list[str]:
    """Each of ``methods`` without an entry in ``golden`` (saying how to record one), and each entry
    of a method not among them (saying how to remove it)."""
    entries = golden["methods"]
    missing = [f"{m}: no entry in {path}; train its sweep and record one with `{record_command(m, sweep)}` "
               "(then commit the file)" for m in methods if m not in entries]
    stale = [f"{m}: {path} has an entry for a method that is not registered; remove it with "
             f"`ncbench golden --drop {m}{_sweep_option(sweep)}`"
             for m in entries if m not in methods]
    return missing + stale


def problems(found: dict[str, dict[str, Any]], golden: dict[str, Any]) -> list[str]:
    """What moved past the golden file's tolerances (an entry's own, else the file's; empty: all
    within), for the methods of ``found`` that have an entry (``coverage_problems`` reports the others)."""
    out = []
    for m, f in found.items():
        g = golden["methods"].get(m)
        if g is None:
            continue
        rsum_tol = g.get("rsum_tolerance", golden.get("rsum_tolerance", RSUM_TOL))
        auc_tol = g.get("auc_tolerance", golden.get("auc_tolerance", AUC_TOL))
        if not f["rsum"]:
            out.append(f"{m}: no results")
            continue
        if f["seeds"] != g["seeds"]:
            out.append(f"{m}: seeds {f['seeds']} vs golden {g['seeds']}")
        if abs(f["rsum_mean"] - g["rsum_mean"]) > rsum_tol:
            out.append(f"{m}: mean rSum {f['rsum_mean']:.1f} vs golden {g['rsum_mean']:.1f}")
        if g["auc_mean"] is not None and (f["auc_mean"] is None or abs(f["auc_mean"] - g["auc_mean"]) > auc_tol):
            out.append(f"{m}: mean detection AUC {f['auc_mean']} vs golden {g['auc_mean']:.3f}")
    return out


def _existing_or_new(path: Path, sweep: GoldenSweep) -> dict[str, Any]:
    return read_golden(path, sweep) if path.exists() else new_golden(sweep, {})


def check_recordable(path: Path, sweep: GoldenSweep, methods: list[str], replace: bool) -> dict[str, Any]:
    """The golden file at ``path`` (a new one when absent), after refusing to overwrite an entry of
    ``methods`` without ``replace`` (called before the sweep trains, and again before writing)."""
    golden = _existing_or_new(path, sweep)
    untracked = [m for m in methods if sweep.methods is not None and m not in sweep.methods]
    if untracked:
        raise ConfigError(f"the {sweep.name!r} sweep tracks {', '.join(sweep.methods)} only, not {', '.join(untracked)}")
    held = sorted(set(methods) & set(golden["methods"]))
    if held and not replace:
        raise ConfigError(f"{path} already holds an entry for {', '.join(held)}; pass --replace to overwrite it")
    return golden


def record(path: Path, sweep: GoldenSweep, entries: dict[str, dict[str, Any]], replace: bool = False) -> None:
    """Write ``entries`` (method → ``summarise``) into the golden file at ``path`` (created when absent),
    leaving every other entry as it is; an existing entry is replaced only with ``replace``."""
    golden = check_recordable(path, sweep, list(entries), replace)
    for method, summary in entries.items():
        if summary["seeds"] != list(sweep.seeds):
            raise ConfigError(f"{method}: results for seeds {summary['seeds']}, the sweep needs {list(sweep.seeds)}; "
                              "nothing recorded")
        golden["methods"][method] = entry(sweep, method, summary)
    save_golden(path, golden)


def drop(path: Path, sweep: GoldenSweep, methods: list[str]) -> None:
    """Remove the entries of ``methods`` (no longer registered) from the golden file at ``path``."""
    golden = read_golden(path, sweep)
    absent = [m for m in methods if m not in golden["methods"]]
    if absent:
        raise ConfigError(f"{path} has no entry for {', '.join(absent)}")
    registered = sorted(set(methods) & set(sweep.covered()))
    if registered:
        raise ConfigError(f"{', '.join(registered)} is registered, so its entry is needed; re-record it with "
                          f"`{record_command(registered[0], sweep)} --replace` instead")
    for m in methods:
        del golden["methods"][m]
    save_golden(path, golden)
