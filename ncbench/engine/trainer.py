"""The epoch loop: train one epoch, validate, keep the best; then restore the best state.

Model selection follows the papers: the epoch with the highest validation rSum (on the full dev
split; NCR/BiCro use only its first 200 F30K images, §8.6) is the one tested; warm-up epochs are
not eligible. For methods that estimate which training pairs are clean, each epoch also scores
that estimate against the known injected noise (``detection_metrics``).

With a ``Checkpointer`` every epoch ends with a checkpoint (method state, selection state, random
states; ``ncbench.checkpoint``), and a run that finds one continues after its epoch.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

from ..checkpoint import Checkpointer, restore_rng, rng_state
from ..data.precomp import Split
from ..evaluate import SplitEvaluation, detection_metrics, evaluate_split, split_histogram
from ..precision import autocast
from .method import Method


@dataclass
class Selection:
    best_epoch: int
    best_val: SplitEvaluation
    detection: dict[str, Any] | None = None  # at the selected epoch
    history: list[dict[str, Any]] = field(default_factory=list)
    train_seconds: float = 0.0
    val_seconds: float = 0.0
    resumed_after: int | None = None  # the checkpointed epoch training continued from, if any


def train_with_selection(
    method: Method,
    dev: Split,
    device: torch.device,
    epochs: int,
    true_clean=None,
    desc: str = "",
    progress: bool = False,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    checkpoint: Checkpointer | None = None,
    amp: str = "off",
) -> Selection:
    best: Selection | None = None
    best_state: dict[str, Any] | None = None
    history: list[dict[str, Any]] = []
    t_train = t_val = 0.0
    start, resumed = 0, None
    saved = checkpoint.load() if checkpoint else None
    if saved is not None:
        method.load_state_dict(saved["method"])
        best, best_state, history = saved["best"], saved["best_state"], saved["history"]
        t_train, t_val = saved["train_seconds"], saved["val_seconds"]
        restore_rng(saved["rng"], method.ctx.generator)
        start = resumed = int(saved["epoch"]) + 1
    bar = tqdm(range(start, epochs), desc=desc, unit="epoch", leave=False, disable=not progress, dynamic_ncols=True,
               initial=start, total=epochs)
    t_session = time.perf_counter()
    for epoch in bar:
        t0 = time.perf_counter()
        with autocast(device, amp):
            logs = method.train_epoch(epoch)
        t1 = time.perf_counter()
        val = evaluate_split(method.networks(), dev, device, amp=amp)
        t2 = time.perf_counter()
        t_train, t_val = t_train + t1 - t0, t_val + t2 - t1
        done = epoch + 1 - start
        row = {"epoch": epoch, **{k: float(v) for k, v in logs.items()}, "val_rsum": val.full.rsum,
               "train_s": round(t1 - t0, 3), "val_s": round(t2 - t1, 3),
               # training pairs per second of this epoch's training time, and the time still to go
               # at this session's mean epoch time (training + validation)
               "pairs_per_s": round(len(method.ctx.train) / max(t1 - t0, 1e-9), 1),
               "eta_s": round((epochs - epoch - 1) * (time.perf_counter() - t_session) / done, 1)}
        det = None
        prob = method.clean_probability()
        if prob is not None and true_clean is not None:
            det = detection_metrics(prob, method.clean_split(), method.soft_labels(), true_clean)
            row["detection"] = det
        history.append(row)
        eligible = method.selectable(epoch) or epoch == epochs - 1 and best is None
        if eligible and (best is None or val.full.rsum > best.best_val.full.rsum):
            fit = method.split_fit()
            if det is not None and fit is not None:
                det = {**det, "split_histogram": split_histogram(fit, true_clean)}
            best = Selection(epoch, val, det)
            best_state = copy.deepcopy(method.state_dict())
        bar.set_postfix(val_rsum=f"{val.full.rsum:.1f}",
                        best=f"{best.best_val.full.rsum:.1f}@{best.best_epoch}" if best else "warm-up")
        if checkpoint:
            checkpoint.save(epoch, {"method": method.state_dict(), "best": best, "best_state": best_state,
                                    "history": history, "train_seconds": t_train, "val_seconds": t_val,
                                    "rng": rng_state(method.ctx.generator)})
        if on_epoch:
            on_epoch(row)
    bar.close()
    assert best is not None and best_state is not None, "a run needs at least one epoch"
    method.load_state_dict(best_state)
    best.history, best.train_seconds, best.val_seconds = history, t_train, t_val
    best.resumed_after = None if resumed is None else resumed - 1
    return best
