"""The epoch loop: train one epoch, validate, keep the best; then restore the best state.

Model selection follows the papers: the epoch with the highest validation rSum (on the full dev
split; NCR/BiCro use only its first 200 F30K images, §8.6) is the one tested; warm-up epochs are
not eligible. For methods that estimate which training pairs are clean, each epoch also scores
that estimate against the known injected noise (``detection_metrics``).

With a ``Checkpointer`` every epoch ends with a checkpoint (method state, selection state, random
states; ``ncbench.checkpoint``), and a run that finds one continues after its epoch. A stop signal
(``ncbench.preemption``) during an epoch's steps lets the current step finish and saves a mid-epoch
checkpoint: the same, plus the epoch's plan, the next step and the steps' logs so far; the resumed
run continues at that step with the same batches and random state, so it reaches the metrics of an
uninterrupted run. A stop during the epoch's end (finish, validation) saves the place after its last
step. Methods that override ``train_epoch`` are checkpointed at epoch boundaries only.

The calls of one epoch, in order: ``plan_epoch``; ``train_step`` for each step; ``end_epoch`` (once:
a stop waits for it, and the saved place records that it ran); ``finish_epoch``; validation and
``observe_validation``; ``clean_probability`` and the detection metrics; the best-epoch snapshot of
``state_dict()``; the epoch's checkpoint. A stop after the steps resumes after the last step and
runs ``finish_epoch`` and validation again, so these two must not change ``state_dict()``.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

from .. import preemption
from ..checkpoint import Checkpointer, describe, restore_rng, rng_state
from ..data.precomp import Split
from ..errors import ConfigError, Preempted
from ..evaluate import (
    detection_metrics,
    evaluate_split,
    split_histogram,
)
from ..precision import compute
from .method import EpochPlan, Method, StepLogs
from .selection import Selection




class _Progress:
    """What a run has achieved so far (selection state, history, time) and its checkpoint file."""

    def __init__(self, method: Method, checkpoint: Checkpointer | None):
        self.method, self.checkpoint = method, checkpoint
        self.best: Selection | None = None
        self.best_state: dict[str, Any] | None = None
        self.history: list[dict[str, Any]] = []
        self.t_train = self.t_val = 0.0
        self.start, self.partial = 0, None
        self.kept: str | None = None  # what the checkpoint on disk holds, for the message of a stop

    def resume(self) -> None:
        """Continue from the checkpoint, if there is a usable one."""
        saved = self.checkpoint.load() if self.checkpoint else None
        if saved is None:
            return
        self.method.load_state_dict(saved["method"])
        self.best, self.best_state, self.history = saved["best"], saved["best_state"], saved["history"]
        self.t_train, self.t_val = saved["train_seconds"], saved["val_seconds"]
        restore_rng(saved["rng"], self.method.ctx.generator)
        self.start, self.partial = int(saved["epoch"]) + 1, saved.get("partial")
        self._holds(saved)

    def save(self, epoch: int, rng: dict[str, Any], at: dict[str, Any] | None = None) -> str | None:
        """The checkpoint after ``epoch``, or, with ``at``, at a step of the next epoch; returns what
        the checkpoint now holds."""
        if self.checkpoint:
            state = {"epoch": epoch, "method": self.method.state_dict(), "best": self.best,
                     "best_state": self.best_state, "history": self.history, "train_seconds": self.t_train,
                     "val_seconds": self.t_val, "rng": rng, "partial": at}
            self.checkpoint.save(epoch, state)
            self._holds(state)
        return self.kept

    def _holds(self, state: dict[str, Any]) -> None:
        self.kept = f"checkpoint {describe(state)} ({self.checkpoint.path})"


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
    precision: str = "fp32",
) -> Selection:
    run = _Progress(method, checkpoint)
    run.resume()
    start = run.start
    bar = tqdm(range(start, epochs), desc=desc, unit="epoch", leave=False, disable=not progress, dynamic_ncols=True,
               initial=start, total=epochs)
    t_session = time.perf_counter()
    try:
        for epoch in bar:
            t0 = time.perf_counter()
            with compute(device, precision):
                trained = _train_epoch(method, epoch, run.partial if epoch == start else None, progress,
                                       lambda at, e=epoch: run.save(e - 1, rng_state(method.ctx.generator), at))
            t1 = time.perf_counter()
            t_epoch = t1 - t0 + trained.earlier_s
            try:
                with compute(device, precision):
                    logs = method.finish_epoch(epoch, trained.plan, trained.logs) if trained.plan else trained.logs
                val = evaluate_split(method.networks(), dev, device, precision=precision)
                method.observe_validation(epoch, val.full)
            except Preempted as stop:
                if trained.plan is None or checkpoint is None:
                    raise
                # the steps are done and the state is theirs: resume after the last step
                at = trained.place(len(trained.plan.steps), t_epoch)
                raise Preempted(stop.signum, run.save(epoch - 1, trained.rng, at)) from None
            t2 = time.perf_counter()
            run.t_train, run.t_val = run.t_train + t_epoch, run.t_val + t2 - t1
            row = {"epoch": epoch, **{k: float(v) for k, v in logs.items()}, "val_rsum": val.full.rsum,
                   "train_s": round(t_epoch, 3), "val_s": round(t2 - t1, 3),
                   # training pairs per second of this epoch's training time, and the time still to go
                   # at this session's mean epoch time (training + validation)
                   "pairs_per_s": round(len(method.ctx.train) / max(t_epoch, 1e-9), 1),
                   "eta_s": round((epochs - epoch - 1) * (time.perf_counter() - t_session) / (epoch + 1 - start), 1)}
            det = None
            prob = method.clean_probability()
            if prob is not None and true_clean is not None:
                det = detection_metrics(prob, method.clean_split(), method.soft_labels(), true_clean, method.subsets())
                row["detection"] = det
            run.history.append(row)
            best = run.best
            eligible = method.selectable(epoch) or epoch == epochs - 1 and best is None
            if eligible and (best is None or val.full.rsum > best.best_val.full.rsum):
                fit = method.split_fit()
                if det is not None and fit is not None:
                    det = {**det, "split_histogram": split_histogram(fit, true_clean)}
                run.best, run.best_state = Selection(epoch, val, det), copy.deepcopy(method.state_dict())
            bar.set_postfix(val_rsum=f"{val.full.rsum:.1f}",
                            best=f"{run.best.best_val.full.rsum:.1f}@{run.best.best_epoch}" if run.best else "warm-up")
            with preemption.deferred():  # a stop while the epoch's checkpoint is written waits for it
                run.save(epoch, rng_state(method.ctx.generator))
            if on_epoch:
                on_epoch(row)
            if preemption.pending():
                raise preemption.stop(run.kept)
    except Preempted as stop:  # outside the steps: say which checkpoint holds the work
        if stop.saved is None and run.kept:
            raise Preempted(stop.signum, run.kept) from None
        raise
    bar.close()
    best = run.best
    if best is None or run.best_state is None:  # options are range-checked, so only an odd schedule gets here
        raise ConfigError(f"{desc or 'this run'}: none of its {epochs} epoch(s) may be selected (all warm-up or none); "
                          f"give it more epochs (--method-opt epochs=N)")
    method.load_state_dict(run.best_state)
    best.history, best.train_seconds, best.val_seconds = run.history, run.t_train, run.t_val
    best.resumed_after = start - 1 if start > 0 else None
    best.resumed_at_step = run.partial["step"] if run.partial else None
    return best


@dataclass
class _Trained:
    """An epoch's steps, done: their plan (None for an epoch-granular method), mean logs, the random
    state right after the last step, and training seconds spent on this epoch before a resume."""

    plan: EpochPlan | None
    logs: dict[str, float]
    rng: dict[str, Any] | None = None
    earlier_s: float = 0.0
    step_logs: StepLogs | None = None
    ended: bool = False  # ``end_epoch`` has run (a resumed epoch must not run it again)

    def place(self, step: int, seconds: float) -> dict[str, Any]:
        return {"plan": self.plan, "step": step, "logs": self.step_logs, "train_s": seconds, "ended": self.ended}


def _train_epoch(method: Method, epoch: int, partial: dict[str, Any] | None, progress: bool,
                 save_at: Callable[[dict[str, Any]], str | None]) -> _Trained:
    """Run the steps of ``epoch`` (from a saved place in it, if given), then ``end_epoch`` unless the
    place says it ran. A stop signal during the steps or the end lets the current one finish, then
    ``save_at`` saves the place and Preempted is raised."""
    if not method.resumable_steps:
        return _Trained(None, method.train_epoch(epoch))
    if partial is not None:
        plan, first, logs, earlier = partial["plan"], partial["step"], partial["logs"], partial["train_s"]
    else:
        plan, first, logs, earlier = method.plan_epoch(epoch), 0, StepLogs(), 0.0
    n = len(plan.steps)
    t0 = time.perf_counter()
    trained = _Trained(plan, {}, step_logs=logs, earlier_s=earlier, ended=bool(partial and partial.get("ended")))
    bar = tqdm(total=n, initial=first, desc=f"epoch {epoch}", unit="step", leave=False, dynamic_ncols=True,
               disable=not progress or n < 2)
    with preemption.deferred():
        for i in range(first, n + 1):
            if preemption.pending():
                raise preemption.stop(save_at(trained.place(i, earlier + time.perf_counter() - t0)))
            if i == n:
                break
            logs.add(method.train_step(epoch, plan, i))
            bar.update()
        if not trained.ended:
            method.end_epoch(epoch, plan)
            trained.ended = True
            if preemption.pending():
                raise preemption.stop(save_at(trained.place(n, earlier + time.perf_counter() - t0)))
    bar.close()
    trained.logs, trained.rng = logs.means(), rng_state(method.ctx.generator)
    return trained
