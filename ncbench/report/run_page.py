"""One self-contained HTML page per run (``ncbench report``): what was run, how, where, what came
out, and how training went.

The page holds the run's identity, test and best-validation metrics, detection at the selected
epoch, config and recipe, environment (versions, git revision, hardware, determinism flags),
timings and GPU-hours, the per-epoch history as a table, the training curves (this run drawn over
the mean ± std of its sweep group: the other seeds of the same config found beside it), and the
loss-split histogram at the selected epoch. Images are embedded (base64 PNG); every value from the
result file is escaped by the template engine, as on the boards.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import ResultError
from ..code_identity import code_hash_of
from ..results import config_key, noise_of, read_result, row_of
from .curves import SERIES, curve_frame, curve_stats, training_loss
from .html import Figure, templates
from .plots import curves_png, split_histogram_png


def flatten(data: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested dicts as (dotted key, text) rows; lists and scalars as compact JSON text."""
    if isinstance(data, dict) and data:
        rows = []
        for k, v in data.items():
            rows += flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return rows
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return [(prefix, text)]


def siblings(result: dict[str, Any]) -> list[dict[str, Any]]:
    """This result and the ok results beside it of the same config but the seed (``results.config_key``)
    and made by the same code (``code_identity.code_hash_of``), as a board row: its sweep group."""
    path = result.get("_path")
    found = [result]
    if not path:
        return found
    for p in sorted(Path(path).parent.glob("seed-*.json")):
        if p.resolve() == Path(path).resolve():
            continue
        try:
            other = read_result(p)
        except ResultError:  # an unreadable neighbour only leaves the band out
            continue
        if (other.get("status") == "ok" and config_key(other["config"]) == config_key(result["config"])
                and code_hash_of(other) == code_hash_of(result) and other["identity"]["seed"] != result["identity"]["seed"]):
            found.append(other)
    return found


def _title(r: dict[str, Any]) -> str:
    ident = r["identity"]
    return (f"{row_of(ident)} ({ident['backbone']}) on {ident['dataset']}, {float(ident['noise_ratio']):.0%} "
            f"{noise_of(ident).label} noise, seed {ident['seed']}")


def figures(result: dict[str, Any]) -> list[Figure]:
    group = siblings(result)
    figs = []
    frame = curve_frame(group)
    own = frame[frame.seed == int(result["identity"]["seed"])]
    caption = (f"training curves: this run (dashed) over its sweep group, mean ± std of {len(group)} seed(s) "
               "of the same config found beside it")
    png = curves_png(curve_stats(frame), caption, runs=own)
    if png:
        figs.append(Figure(caption, png))
    hist = (result.get("detection") or {}).get("split_histogram")
    if hist:
        cap = f"loss split at the selected epoch {result.get('best_val', {}).get('epoch')}"
        figs.append(Figure(cap, split_histogram_png(hist, cap)))
    return figs


def render_run_page(result: dict[str, Any]) -> str:
    """The page of one result (as read by ``results.read_result``, with ``_path`` where known)."""
    r = result
    test = r.get("test") or {}
    metrics = [(view, test[view]) for view in ("full", "fold_mean") if isinstance(test.get(view), dict)]
    history_cols = ["epoch", *SERIES, "train_s", "val_s"]
    history = []
    for h in r.get("history") or []:
        det = h.get("detection") or {}
        row = {"epoch": h.get("epoch"), "train_s": h.get("train_s"), "val_s": h.get("val_s"),
               "val_rsum": h.get("val_rsum"), **{k: det.get(k) for k in ("auc", "clean_precision", "clean_recall")}}
        row["loss"] = training_loss(h)
        history.append(row)
    detection = {k: v for k, v in (r.get("detection") or {}).items() if k != "split_histogram"}
    return templates().get_template("run.html").render(
        title=_title(r), r=r, path=r.get("_path"), metrics=metrics, best_val=r.get("best_val") or {},
        identity=flatten(r.get("identity") or {}), detection=flatten(detection),
        config=json.dumps(r.get("config"), indent=1, ensure_ascii=False),
        recipe=json.dumps(r.get("recipe"), indent=1, ensure_ascii=False),
        env=flatten(r.get("env") or {}), timings=flatten(r.get("timings") or {}), meta=flatten(r.get("meta") or {}),
        history=history, history_cols=history_cols, figures=figures(r), version=__version__,
    )
