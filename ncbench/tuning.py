"""``ncbench tune``: choose each method's recipe for a dataset on the dev split only.

Every method gets the same budget of trials. Trial 0 is the method's starting options (its
defaults and ``dataset_defaults``, without any recipe); trials 1 … budget−1 draw each option of the
method's (and the backbone's) declared ``search_space`` independently and uniformly, from a
generator seeded by (tune seed, method, backbone, dataset, trial), so the same seed and budget give
the same trials everywhere. A trial is one ordinary run per tuning noise ratio and seed
(``RunConfig.trial``): trained on the noisy training split exactly as ``ncbench run`` trains it,
its epoch selected on the dev split, **never tested** (the test split is not even loaded). Trials
are runs of a sweep, so they resume, share local workers and go to SLURM like any other.

The objective of a trial is its mean best-validation rSum over the tuning noise ratios and seeds;
the highest wins, the lower trial index on a tie. A failed trial (e.g. a NaN loss) scores −∞.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .config import RunConfig
from .errors import ConfigError
from .recipes import Recipe, today
from .registry import BACKBONES, METHODS
from .results import git_revision, inspect_result, result_path
from .runner import SweepSpec, plan


@dataclass(frozen=True)
class TuneSpec:
    """What to tune: the sweep's methods, backbones, dataset, tuning noise ratios and seeds."""

    sweep: SweepSpec
    budget: int = 16
    tune_seed: int = 0


def space_of(method: str, backbone: str) -> dict[str, tuple]:
    """The declared search space of a (method, backbone): the method's options, then the backbone's
    as ``backbone.<option>``."""
    mcls = METHODS.get(method)
    space = dict(mcls.search_space)
    if not mcls.fixed_backbone:
        space.update({f"backbone.{k}": v for k, v in BACKBONES.get(backbone).search_space.items()})
    return space


def space_digest(space: dict[str, tuple]) -> str:
    blob = json.dumps({k: list(v) for k, v in sorted(space.items())}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def draw(space: dict[str, tuple], rng: np.random.Generator) -> dict[str, Any]:
    """One value per option of ``space`` (a dict value sets several options at once)."""
    out: dict[str, Any] = {}
    for name in sorted(space):
        value = space[name][int(rng.integers(len(space[name])))]
        out.update(value if isinstance(value, dict) else {name: value})
    return out


def trial_options(method: str, backbone: str, dataset: str, trial: int, tune_seed: int) -> dict[str, Any]:
    """The options trial ``trial`` sets (trial 0: none, the starting options)."""
    if trial == 0:
        return {}
    key = int.from_bytes(hashlib.sha256(f"{method}/{backbone}/{dataset}".encode()).digest()[:4], "little")
    return draw(space_of(method, backbone), np.random.default_rng([tune_seed, key, trial]))


def check_tunable(method: str) -> None:
    mcls = METHODS.get(method)
    if mcls.training_free:
        raise ConfigError(f"{method} is training-free: its only choice is made on the dev split inside each run; "
                          "there is nothing to tune")
    if mcls.recipe_of:
        raise ConfigError(f"{method} shares {mcls.recipe_of}'s recipe; tune {mcls.recipe_of} instead")
    if not mcls.search_space:
        raise ConfigError(f"method {method} declares no search_space; nothing to tune")


def split_options(opts: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Trial options → (method options, backbone options)."""
    m = {k: v for k, v in opts.items() if not k.startswith("backbone.")}
    b = {k[len("backbone."):]: v for k, v in opts.items() if k.startswith("backbone.")}
    return m, b


def plan_trials(spec: TuneSpec) -> list[RunConfig]:
    """Every trial run of the tuning sweep: methods × backbones × trials × noise ratios × seeds."""
    if spec.budget < 1:
        raise ConfigError(f"--budget must be at least 1 trial, got {spec.budget}")
    sweep = spec.sweep
    if len(sweep.datasets) != 1:
        raise ConfigError("ncbench tune takes one dataset at a time (its recipes are per dataset)")
    if sweep.references:
        raise ConfigError("ncbench tune tunes methods under comparison; the reference rows (--references) have "
                          "nothing to tune")
    if sweep.method_options or sweep.backbone_options:
        raise ConfigError("ncbench tune chooses the options itself; --method-opt/--backbone-opt do not apply")
    for m in sweep.methods:
        check_tunable(m)
    runs = []
    for base in plan(dataclasses.replace(sweep, use_recipes=False, noise=sweep.noise[:1], seeds=sweep.seeds[:1])):
        for trial in range(spec.budget):
            mopt, bopt = split_options(trial_options(base.method, base.backbone, base.dataset, trial, spec.tune_seed))
            trial_sweep = dataclasses.replace(sweep, methods=[base.method], backbones=[base.backbone],
                                              method_options=mopt, backbone_options=bopt, use_recipes=False)
            for cfg in plan(trial_sweep):
                runs.append(dataclasses.replace(cfg, trial=trial, recipe={"kind": "trial", "tuning": {},
                                                                          "source": f"ncbench tune trial {trial}"}))
    return runs


@dataclass
class TrialScore:
    trial: int
    options: dict[str, Any]
    dev_rsum: dict[str, float | None] = field(default_factory=dict)  # "noise/seed" → best-validation rSum
    seconds: float = 0.0

    @property
    def complete(self) -> bool:
        return all(v is not None for v in self.dev_rsum.values())

    @property
    def objective(self) -> float:
        vals = list(self.dev_rsum.values())
        return float(np.mean(vals)) if vals and all(v is not None and math.isfinite(v) for v in vals) else -math.inf


@dataclass
class TuneOutcome:
    method: str
    backbone: str
    dataset: str
    trials: list[TrialScore]
    chosen: TrialScore | None
    recipe: Recipe | None  # None until every trial has finished

    @property
    def cpu_minutes(self) -> float:
        return sum(t.seconds for t in self.trials) / 60


def score(spec: TuneSpec, runs: list[RunConfig], results_dir: Path) -> list[TuneOutcome]:
    """Read the trials' results (best-validation rSum only: a trial result has no test metrics) and
    choose each (method, backbone)'s trial; the recipe is made once every trial has finished."""
    groups: dict[tuple[str, str, str], dict[int, TrialScore]] = {}
    for cfg in runs:
        trials = groups.setdefault((cfg.method, cfg.backbone, cfg.dataset), {})
        t = trials.setdefault(cfg.trial, TrialScore(cfg.trial, trial_options(cfg.method, cfg.backbone, cfg.dataset,
                                                                              cfg.trial, spec.tune_seed)))
        state, record = inspect_result(result_path(results_dir, cfg), cfg.config_hash)
        key = f"{cfg.noise_ratio:g}/{cfg.seed}"
        if state == "done":
            t.dev_rsum[key] = float(record["best_val"]["rsum"])
        elif state == "failed":
            t.dev_rsum[key] = -math.inf
        else:
            t.dev_rsum[key] = None
        if record and state in ("done", "failed"):
            t.seconds += float(record.get("timings", {}).get("total_s", 0.0))
    out = []
    for (method, backbone, dataset), trials in groups.items():
        scores = [trials[k] for k in sorted(trials)]
        done = all(t.complete for t in scores)
        chosen = max(scores, key=lambda t: (t.objective, -t.trial)) if done else None
        recipe = None
        if chosen is not None:
            base = next(c for c in runs if c.method == method and c.backbone == backbone and c.trial == chosen.trial)
            recipe = make_recipe(spec, method, backbone, base, chosen, scores)
        out.append(TuneOutcome(method, backbone, dataset, scores, chosen, recipe))
    return out


def make_recipe(spec: TuneSpec, method: str, backbone: str, cfg: RunConfig, chosen: TrialScore,
                scores: list[TrialScore]) -> Recipe:
    """The recipe entry of a chosen trial: its full method and backbone options (so a later change
    of a default does not silently change the recipe) and how it was chosen."""
    sweep = spec.sweep
    noise = ", ".join(f"{r:g}" for r in sweep.noise)
    seeds = ", ".join(str(s) for s in sweep.seeds)
    mconf = dict(cfg.method_config)
    git = git_revision()
    tuning = {
        "budget": spec.budget,
        "tune_seed": spec.tune_seed,
        "search": "random: trial 0 = the starting options, then each option drawn uniformly from search_space",
        "search_space": space_digest(space_of(method, backbone)),
        "noise": list(sweep.noise),
        "seeds": list(sweep.seeds),
        "objective": f"mean best-validation rSum over noise {noise} (seeds {seeds}), dev split only",
        "chosen_trial": chosen.trial,
        "dev_rsum": round(chosen.objective, 3),
        "starting_dev_rsum": round(scores[0].objective, 3) if math.isfinite(scores[0].objective) else -1.0,
        "cpu_minutes": round(sum(t.seconds for t in scores) / 60, 2),
        "ncbench": __version__,
        "git": (git["commit"] or "unknown")[:12] + ("+dirty" if git.get("dirty") else ""),
        "date": today(),
    }
    return Recipe(method=mconf, backbone=dict(cfg.backbone_config), tuning=tuning)
