"""Result files → one tidy pandas frame → per-group statistics over seeds.

``results_frame`` gives one row per (successful run, evaluation view): MS-COCO runs give two rows,
``coco-1k`` (the 5-fold mean) and ``coco-5k`` (the whole 5K split); every other dataset gives one,
named after the dataset. Each row carries the run's identity, the six recalls and rSum, and the
fairness facts (backbone, ensemble size, selection rule, GPU-hours).

``aggregate`` groups by (protocol, benchmark, noise type, noise ratio, method, backbone) and gives mean,
sample std (ddof = 1), n seeds and the half-width of the 95% confidence interval of the mean
(Student t, n − 1 degrees of freedom). Numbers stay numeric; formatting happens only when rendering.
A statistic never covers fewer seeds than the row shows: a missing (NaN) recall or rSum is refused
with the files named, and where a value may be missing (an AUC undefined for one class) each
metric carries its own count ``<metric>_n``, which its CI uses and its cell shows.

``agreement_frame`` does the same for the human-agreement scores of ``ncbench detect`` (AUC and
Spearman per judgment kind and subset), aggregated by the same ``aggregate``.

``check_noise_indices`` enforces that one table never mixes runs trained on different noise
indices: within a (protocol, dataset, noise type, noise ratio) every run must share one index sha256.
``check_configs`` enforces that one row never pools seeds of different configs or of different code
(``code_identity.code_hash_of``; results without a code record pool only with each other).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import pandas as pd
from scipy import stats

from ..code_identity import code_hash_of, short
from ..errors import ResultError
from ..evaluate import RetrievalMetrics
from ..results import config_key, noise_of, noise_output_sha256, row_of

METRICS = (*RetrievalMetrics.RECALLS, "rsum")
AGREEMENT_METRICS = ("auc", "spearman")
JUDGMENT_KINDS = ("expert", "crowd")
GROUP = ["protocol_version", "benchmark", "dataset", "noise", "noise_ratio", "method", "backbone"]


def run_columns(metrics: tuple[str, ...]) -> list[str]:
    return [*GROUP, "seed", "noise_index_sha256", *metrics, "ensemble_size", "selection", "gpu_hours",
            "reference", "recipe", "config_hash", "config_key", "code_hash", "path"]


RUN_COLUMNS = run_columns(METRICS)


def views(test: dict[str, Any], dataset: str) -> list[tuple[str, dict[str, Any]]]:
    """The (benchmark, metrics) views of one result's test block."""
    if "fold_mean" in test:  # MS-COCO: 5-fold 1K mean and the whole 5K split
        return [(f"{dataset}-1k", test["fold_mean"]), (f"{dataset}-5k", test["full"])]
    return [(dataset, test["full"])]


def _run_row(r: dict[str, Any], benchmark: str, values: dict[str, float]) -> dict[str, Any]:
    ident, meta = r["identity"], r.get("meta") or {}
    return {
        "benchmark": benchmark,
        **{k: ident[k] for k in ("protocol_version", "dataset", "noise_ratio", "backbone", "seed")},
        "method": row_of(ident),
        "noise": noise_of(ident),
        "noise_index_sha256": noise_output_sha256(ident),
        **values,
        "ensemble_size": int(meta.get("ensemble_size", 1)),
        "selection": meta.get("selection", "unknown"),
        "gpu_hours": float((r.get("timings") or {}).get("gpu_hours", 0.0)),
        "reference": meta.get("reference") or "",
        "recipe": recipe_label(r.get("recipe") or (r.get("config") or {}).get("recipe")),
        "config_hash": r.get("config_hash"),
        "config_key": config_key(r.get("config") or {}),
        "code_hash": code_hash_of(r),  # None: unknown code (a result older than code records)
        "path": r.get("_path"),
    }


def recipe_label(recipe: dict[str, Any] | None) -> str:
    """How a run's options were chosen, for the boards' Recipe column: ``tuned N`` (a recipe
    ``ncbench tune`` chose with a budget of N trials on the dev split), ``paper`` (the paper's own
    per-dataset values), ``hand-set`` (a schedule set by hand for this dataset in the method's
    ``dataset_defaults``, not tuned: e.g. the embedded dataset's short one), ``recipe`` (a
    hand-written recipe), ``defaults`` (the method's defaults, not tuned for the dataset),
    ``closed-form`` (the training-free floor); ``+opts`` when the user overrode any of them."""
    if not isinstance(recipe, dict) or not recipe:
        return "unrecorded"
    kind = str(recipe.get("kind", "unrecorded"))
    tuning = recipe.get("tuning") or {}
    text = f"tuned {tuning['budget']}" if kind == "tuned" and "budget" in tuning else kind
    return text + (" +opts" if recipe.get("overrides") else "")


def _frame(rows: list[dict[str, Any]], metrics: tuple[str, ...]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=run_columns(metrics))
    return frame.astype({"noise_ratio": float, "seed": int}) if not frame.empty else frame


def results_frame(results: list[dict[str, Any]]) -> pd.DataFrame:
    rows = [_run_row(r, benchmark, {m: float(view[m]) for m in METRICS})
            for r in results if r.get("status") == "ok"
            for benchmark, view in views(r["test"], r["identity"]["dataset"])]
    return _frame(rows, METRICS)


def agreement_frame(results: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per (successful run with a human-agreement block, judgment kind, subset): benchmark
    ``expert`` / ``crowd`` (all judged pairs) or ``expert-heldout`` / ``crowd-heldout``."""
    rows = []
    for r in results:
        block = r.get("human_agreement")
        if r.get("status") != "ok" or not block:
            continue
        for kind in JUDGMENT_KINDS:
            for subset in ("all", "heldout"):
                m = (block.get(kind) or {}).get(subset)
                if m:
                    values = {k: math.nan if m.get(k) is None else float(m[k]) for k in AGREEMENT_METRICS}
                    rows.append(_run_row(r, kind if subset == "all" else f"{kind}-{subset}", values))
    return _frame(rows, AGREEMENT_METRICS)


def check_noise_indices(frame: pd.DataFrame, allow_mixed: bool = False) -> pd.DataFrame:
    """Flag runs whose noise index differs from the one most runs of their (protocol, dataset,
    ratio) used. Without ``allow_mixed`` any such run is an error naming the files; with it the
    returned frame has ``mixed`` = True on those runs, and the renderers mark their rows."""
    frame = frame.copy()
    frame["mixed"] = False
    if frame.empty:
        return frame
    problems = []
    for key, block in frame.groupby(["protocol_version", "dataset", "noise", "noise_ratio"], sort=True):
        counts = block.drop_duplicates("path")["noise_index_sha256"].value_counts(dropna=False)
        if len(counts) <= 1:
            continue
        main = counts.index[0]
        odd = block[block["noise_index_sha256"] != main]
        frame.loc[odd.index, "mixed"] = True
        files = sorted(set(odd["path"].astype(str)))
        problems.append(
            f"{key[1]} at {key[2]}-level noise {key[3]:g} (protocol {key[0]}): {len(files)} run(s) used noise index "
            f"{str(odd['noise_index_sha256'].iloc[0])[:12]}…, not {str(main)[:12]}… like the other "
            f"{int(counts.iloc[0])}: " + ", ".join(files[:5]) + (" …" if len(files) > 5 else "")
        )
    if problems and not allow_mixed:
        raise ResultError(
            "results trained on different noise indices cannot share a table:\n  " + "\n  ".join(problems)
            + "\nmove them to another results folder, or pass --allow-mixed to show them marked"
        )
    return frame


def _split_rows(frame: pd.DataFrame, column: str, what: str, show: Callable[[Any], str] | None = None) -> list[str]:
    """One line per board row (protocol, benchmark, noise, method, backbone) whose seeds differ in
    ``column`` (a missing value, None, is a value of its own), naming the values (``show``) and files."""
    problems = []
    for key, block in frame.groupby(GROUP, sort=True):
        values = set(block[column].astype(object).where(block[column].notna(), None))
        if len(values) > 1:
            files = sorted(set(block["path"].astype(str)))
            named = f" ({', '.join(sorted(map(show, values)))})" if show else ""
            problems.append(f"{key[5]} ({key[6]}) on {key[1]} at {key[3]}-level noise {key[4]:g}: "
                            f"{len(values)} {what} in one row{named}: " + ", ".join(files[:6])
                            + (" …" if len(files) > 6 else ""))
    return problems


def check_configs(frame: pd.DataFrame) -> None:
    """Refuse a board row (protocol, benchmark, noise, method, backbone) whose seeds were trained with
    different configs (e.g. other ``--method-opt`` values in another results folder), or by different
    code (``code_identity.code_hash_of``: the method's file or ncbench's training code changed
    between them; unknown code pools only with unknown code): pooled, their mean ± std would
    describe no config, or no code. The error names the files and the way out."""
    if frame.empty:
        return
    problems = _split_rows(frame, "config_key", "configs")
    if problems:
        raise ResultError("results of different configs would be pooled into one row:\n  " + "\n  ".join(problems)
                          + "\nread one config's results folder, or re-run the other config with --tag NAME "
                          "(its row is then <method>@NAME)")
    problems = _split_rows(frame, "code_hash", "code versions", show=lambda h: f"code {short(h)}")
    if problems:
        raise ResultError("results of different code would be pooled into one row:\n  " + "\n  ".join(problems)
                          + "\nrun the sweep again with this code (`ncbench run` trains the results of other code "
                          "again), or keep them with `ncbench run --accept-code-change` where the change does not "
                          "alter what they measure")


def ci95(std: float, n: int) -> float:
    """Half-width of the 95% confidence interval of a mean of ``n`` values (NaN for n < 2)."""
    if n < 2 or math.isnan(std):
        return math.nan
    return float(stats.t.ppf(0.975, n - 1) * std / math.sqrt(n))


def check_complete(frame: pd.DataFrame, metrics: tuple[str, ...]) -> None:
    """Refuse runs with a missing (NaN) value of ``metrics``: averaged, the row would show more seeds
    than its mean covers. ``read_result`` refuses such files already; this guards every other way in."""
    missing = frame[frame[list(metrics)].isna().any(axis=1)]
    if not missing.empty:
        files = sorted(set(missing["path"].astype(str)))
        raise ResultError(f"{len(files)} result(s) lack a value of {', '.join(metrics)} (NaN), so their row would show "
                          "more seeds than its mean covers: " + ", ".join(files[:5]) + (" …" if len(files) > 5 else ""))


def aggregate(frame: pd.DataFrame, metrics: tuple[str, ...] = METRICS, missing_ok: bool = False) -> pd.DataFrame:
    """Mean, sample std, 95% CI half-width and n per group (std and CI are NaN for one seed); per
    metric, ``<metric>_n`` seeds with a value. A missing value is refused (``check_complete``) unless
    ``missing_ok`` (then the metric's statistics cover its ``_n`` seeds)."""
    if not missing_ok and not frame.empty:
        check_complete(frame, metrics)
    stat_cols = [f"{m}_{s}" for m in metrics for s in ("mean", "std", "ci95", "n")]
    cols = [*GROUP, "n", "seeds", *stat_cols, "ensemble_size", "selection", "gpu_hours", "reference", "recipe",
            "noise_indices", "mixed"]
    if frame.empty:
        return pd.DataFrame(columns=cols)
    if "mixed" not in frame:
        frame = frame.assign(mixed=False)
    g = frame.groupby(GROUP, sort=True)
    out = g[list(metrics)].agg(["mean", "std"])
    out.columns = [f"{m}_{s}" for m, s in out.columns]
    out["n"] = g.size()
    for m in metrics:
        out[f"{m}_n"] = g[m].count()
        out[f"{m}_ci95"] = [ci95(s, n) for s, n in zip(out[f"{m}_std"], out[f"{m}_n"])]
    out["seeds"] = g["seed"].agg(lambda s: ",".join(str(v) for v in sorted(s)))
    out["ensemble_size"] = g["ensemble_size"].max()
    out["selection"] = g["selection"].agg(lambda s: "/".join(sorted(set(s))))
    out["gpu_hours"] = g["gpu_hours"].sum()
    out["reference"] = g["reference"].agg(lambda s: "/".join(sorted(set(s) - {""})))
    out["recipe"] = g["recipe"].agg(lambda s: "/".join(sorted(set(s))))
    out["noise_indices"] = g["noise_index_sha256"].nunique(dropna=False)
    out["mixed"] = g["mixed"].any()
    return out.reset_index()[cols]
