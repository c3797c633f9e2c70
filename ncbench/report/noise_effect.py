"""What a noise model changes: each method's test rSum and split AUC under every noise model of a
sweep, its gain over the noise-blind ``vanilla`` and how much of the gain under the papers' shuffle
survives each other model.

For one dataset, noise type and ratio, with results of several noise models (``NoiseSpec.key``):

* per method and model: test rSum mean ± sample std over seeds (n), and the mean split AUC of its
  clean/noisy estimate at the selected epoch (methods that estimate one);
* **gain** = mean rSum − vanilla's mean rSum under the same model; **survives** = gain under the
  model / gain under the shuffle (the papers' protocol), in percent: 100% means the method's
  advantage is as large on that noise as on the shuffle it was designed for (given only where the
  shuffle gain is at least ``MIN_GAIN`` rSum: a ratio of two near-zero gains means nothing);
* the floor (``probe``, training-free) and the ceiling (``clean_oracle``) are shown as rows, never
  as contenders.

Only ok results with finite metrics are used; seeds are pooled only within one config (the boards'
rule is not repeated here: this is a summary over results a board has already accepted).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..data.noise_spec import NoiseSpec

REFERENCES = ("probe", "clean_oracle")
MIN_GAIN = 5.0  # rSum points of gain under the shuffle below which no survival share is given


@dataclass
class Cell:
    rsums: list[float] = field(default_factory=list)
    aucs: list[float] = field(default_factory=list)

    @property
    def mean(self) -> float:
        return float(np.mean(self.rsums)) if self.rsums else math.nan

    @property
    def std(self) -> float:
        return float(np.std(self.rsums, ddof=1)) if len(self.rsums) > 1 else 0.0

    @property
    def auc(self) -> float:
        return float(np.mean(self.aucs)) if self.aucs else math.nan


@dataclass
class EffectTable:
    dataset: str
    noise_type: str
    ratio: float
    models: list[str]  # NoiseSpec keys, the shuffle first
    methods: list[str]
    cells: dict[tuple[str, str], Cell]  # (method, model key) → cell

    def gain(self, method: str, model: str) -> float:
        base = self.cells.get(("vanilla", model))
        cell = self.cells.get((method, model))
        return cell.mean - base.mean if cell and base and cell.rsums and base.rsums else math.nan

    def survives(self, method: str, model: str) -> float:
        ref = self.gain(method, self.models[0])
        g = self.gain(method, model)
        return 100.0 * g / ref if not math.isnan(ref) and ref >= MIN_GAIN and not math.isnan(g) else math.nan


def _auc(result: dict[str, Any]) -> float | None:
    det = result.get("detection") or {}
    auc = det.get("auc") if isinstance(det, dict) else None
    return float(auc) if isinstance(auc, (int, float)) and math.isfinite(auc) else None


def effect_tables(results: list[dict[str, Any]]) -> list[EffectTable]:
    """One table per (dataset, noise type, ratio) that has results of more than one noise model."""
    groups: dict[tuple[str, str, float], dict[tuple[str, str], Cell]] = defaultdict(dict)
    for r in results:
        if r.get("status") != "ok":
            continue
        ident = r["identity"]
        spec = NoiseSpec.from_fields(ident)
        try:
            rsum = float(r["test"]["full"]["rsum"])
        except (KeyError, TypeError, ValueError):
            continue
        if not math.isfinite(rsum):
            continue
        method = ident["method"] + (f"@{ident['tag']}" if ident.get("tag") else "")
        cell = groups[(ident["dataset"], spec.type, float(ident["noise_ratio"]))].setdefault((method, spec.key), Cell())
        cell.rsums.append(rsum)
        auc = _auc(r)
        if auc is not None:
            cell.aucs.append(auc)
    tables = []
    for (dataset, kind, ratio), cells in sorted(groups.items()):
        models = sorted({m for _, m in cells}, key=lambda k: (k not in ("caption", "image"), k))  # the shuffle first
        if len(models) < 2:
            continue
        methods = sorted({m for m, _ in cells}, key=lambda m: (m in REFERENCES, m != "vanilla", m))
        tables.append(EffectTable(dataset, kind, ratio, models, methods, cells))
    return tables


def _fmt(x: float, digits: int = 1) -> str:
    return "–" if x is None or math.isnan(x) else f"{x:.{digits}f}"


def model_name(key: str, noise_type: str) -> str:
    """A column's name in a table of one noise type: ``shuffle``, ``neighbour``, ``neighbour-k3``."""
    return "shuffle" if key == noise_type else key.removeprefix(f"{noise_type}-")


def render_effect(table: EffectTable) -> str:
    """A Markdown table: per method, rSum ± std and AUC per model, then gain and survival."""
    names = [model_name(m, table.noise_type) for m in table.models]
    head = ["method"] + [f"{m} rSum" for m in names] + [f"{m} AUC" for m in names]
    head += [f"gain {m}" for m in names] + [f"survives {m}" for m in names[1:]]
    lines = [f"**{table.dataset}, {table.ratio:.0%} {table.noise_type}-level noise**", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method in table.methods:
        ref = method in REFERENCES
        cells = [table.cells.get((method, m)) for m in table.models]
        row = [f"*{method}*" if ref else method]
        row += [f"{_fmt(c.mean)} ± {_fmt(c.std)}" if c and c.rsums else "–" for c in cells]
        row += [_fmt(c.auc, 3) if c else "–" for c in cells]
        if ref or method == "vanilla":
            row += ["" for _ in table.models] + ["" for _ in table.models[1:]]
        else:
            row += [f"{table.gain(method, m):+.1f}" if not math.isnan(table.gain(method, m)) else "–" for m in table.models]
            row += [f"{_fmt(table.survives(method, m), 0)}%" if not math.isnan(table.survives(method, m)) else "–"
                    for m in table.models[1:]]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``python -m ncbench.report.noise_effect RESULTS...``: print every summary table."""
    import sys
    from pathlib import Path

    from ..results import load_results

    results = []
    for root in argv if argv is not None else sys.argv[1:]:
        loaded = load_results(Path(root))
        results += loaded.results
        for err in loaded.errors:
            print(f"warning: skipped {err}", file=sys.stderr)
    for table in effect_tables(results):
        print(render_effect(table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
