"""What the plugin API gives a method like GSC (CVPR'24, issue 30 item 4) beyond the intra-modal
scores (``test_intra_scores.py``): the step decay's factor as an option (``lr_decay``, checked, in
the result's config) and ``end_epoch``, an end-of-epoch update that the epoch's checkpoint keeps, so
a run stopped anywhere after it resumes to the metrics of an uninterrupted run; the same update in
``finish_epoch`` does not."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
from pathlib import Path

import pytest
import torch

from ncbench.cli import main
from ncbench.engine.method import MethodConfig, SingleNetwork
from ncbench.engine.optim import optimizer_step
from ncbench.kernels.losses import triplet_loss
from ncbench.registry import METHODS

RUN = ["--dataset", "synthetic-small", "--backbones", "vse_bow", "--noise", "0.4", "--no-progress", "--device", "cpu",
       "--threads", "1"]


def _lrs(method, epochs: range) -> list[float]:
    out = []
    for e in epochs:
        method.plan_epoch(e)
        out.append(method.optimizer.param_groups[0]["lr"] if hasattr(method, "optimizer")
                   else method.opts[0].param_groups[0]["lr"])
    return out


# -- lr_decay ------------------------------------------------------------------------------------
def test_the_step_decay_factor_is_an_option_of_both_skeletons(tmp_path, small_context):
    ctx, _ = small_context(tmp_path)
    vanilla = METHODS.get("vanilla")
    opts = {"lr": "0.01", "lr_update": "2"}  # strings, as from --method-opt
    gsc_like = vanilla(vanilla.make_config("synthetic", {**opts, "lr_decay": "0.2"}), ctx)
    assert _lrs(gsc_like, range(6)) == pytest.approx([0.01, 0.01, 0.002, 0.002, 0.0004, 0.0004], rel=1e-12)
    ncr_like = vanilla(vanilla.make_config("synthetic", opts), ctx)  # the default: ×0.1, as before
    assert _lrs(ncr_like, range(5)) == pytest.approx([0.01, 0.01, 0.001, 0.001, 0.0001], rel=1e-12)
    # co-teaching: warm-up at the constant lr, then the decay counted from the first co-training epoch
    ncr = METHODS.get("ncr")
    cot = ncr(ncr.make_config("synthetic", {"warmup_epochs": 1, "epochs": 3, "lr": 0.004, "lr_update": 1,
                                            "lr_decay": 0.5, "batch_size": 16}), ctx)
    losses = torch.linspace(0, 1, len(ctx.train))  # the division is not under test here: skip the forward passes
    cot.per_sample_losses = lambda: [losses, losses.flip(0)]
    assert _lrs(cot, range(4)) == pytest.approx([0.004, 0.004, 0.002, 0.001], rel=1e-12)
    assert [g["lr"] for o in cot.opts for g in o.param_groups] == pytest.approx([0.001, 0.001])


@pytest.mark.parametrize("name", ["crcl", "cream", "decl", "l2rm"])
def test_methods_with_their_own_schedule_use_the_factor(name, tmp_path, small_context, monkeypatch):
    """The methods that call ``step_decay`` themselves pass their ``lr_decay`` (they ignored it before)."""
    import importlib

    ctx, _ = small_context(tmp_path)
    cls = METHODS.get(name)
    module = importlib.import_module(cls.__module__)
    factors = []
    real = module.step_decay
    monkeypatch.setattr(module, "step_decay", lambda *a: factors.append(a[3] if len(a) > 3 else None) or real(*a))
    method = cls(cls.make_config("synthetic", {"lr_decay": 0.3}), ctx)
    method.plan_epoch(method.first_steady_epoch)
    assert factors and set(factors) == {0.3}, factors


@pytest.mark.parametrize("value, words", [("0", "must be above 0 and at most 1, got 0.0"),
                                          ("1.5", "must be above 0 and at most 1, got 1.5"),
                                          ("-0.2", "must be above 0 and at most 1, got -0.2"),
                                          ("nan", "must be a finite number"),
                                          ("fast", "cannot read 'fast' as float")])
def test_a_bad_lr_decay_is_one_error_line(tmp_path, capsys, value, words):
    code = main(["run", "--methods", "vanilla", *RUN, "--results", str(tmp_path / "r"), "--dry-run",
                 "--method-opt", f"lr_decay={value}"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("ncbench: error: option lr_decay: ") and words in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_the_default_lr_decay_keeps_every_existing_config_hash():
    from ncbench.runner import SweepSpec, plan

    runs = plan(SweepSpec(methods=["vanilla", "ncr", "crcl", "decl"], datasets=["synthetic-small"], noise=[0.2],
                          seeds=[0]))
    for run in runs:
        assert run.method_config["lr_decay"] == 0.1  # recorded in the config like every option
        before = dataclasses.replace(run, method_config={k: v for k, v in run.method_config.items() if k != "lr_decay"})
        assert run.config_hash == before.config_hash, run.label
    changed = dataclasses.replace(runs[0], method_config={**runs[0].method_config, "lr_decay": 0.2})
    assert changed.config_hash != runs[0].config_hash
    # and a board pools a seed recorded before the option with one recorded after it
    from ncbench.results import config_key

    old = {**runs[0].to_dict(), "method_config": {k: v for k, v in runs[0].method_config.items() if k != "lr_decay"}}
    assert config_key(runs[0].to_dict()) == config_key(old) != config_key(changed.to_dict())


# -- end_epoch -----------------------------------------------------------------------------------
@dataclasses.dataclass
class BufferConfig(MethodConfig):
    epochs: int = 3
    lr: float = 2e-3
    batch_size: int = 32
    lr_update: int = 2


class Buffered(SingleNetwork):
    """A toy method with an end-of-epoch update: ``buffer ← buffer / 2 + 0.1`` after each epoch,
    done in ``end_epoch`` (or, with ``in_finish``, in ``finish_epoch``); the buffer scales the
    triplet margin, so it changes the weights, and each epoch logs it. ``stop = (hook, epoch)``
    sends SIGTERM to the process once, from that hook of that epoch."""

    Config = BufferConfig
    in_finish = False
    stop: tuple[str, int] | None = None

    def __init__(self, config, ctx):
        super().__init__(config, ctx)
        self.buffer = torch.ones(())

    def _maybe_stop(self, hook: str, epoch: int) -> None:
        if type(self).stop == (hook, epoch):
            type(self).stop = None
            os.kill(os.getpid(), signal.SIGTERM)

    def plan_epoch(self, epoch):
        self._maybe_stop("plan_epoch", epoch)
        return super().plan_epoch(epoch)

    def train_step(self, epoch, plan, i):
        b = self.ctx.train.batch(plan.steps[i]).to(self.ctx.device)
        self.net.train()
        loss = triplet_loss(self.net(b.images, b.tokens, b.lengths), 0.2 * float(self.buffer), hard_negative=True)
        return {"loss": optimizer_step(self.optimizer, loss, self.net.parameters(), self.config.grad_clip, "toy")}

    def _update(self):
        self.buffer = self.buffer / 2 + 0.1

    def end_epoch(self, epoch, plan):
        if not self.in_finish:
            self._update()
        self._maybe_stop("end_epoch", epoch)

    def finish_epoch(self, epoch, plan, logs):
        if self.in_finish:
            self._update()
        return {**logs, "buffer": float(self.buffer)}

    def observe_validation(self, epoch, metrics):
        self._maybe_stop("observe_validation", epoch)

    def state_dict(self):
        return {**super().state_dict(), "buffer": self.buffer.clone()}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.buffer = state["buffer"].clone()


def _run(tmp_path: Path, cache_dir: Path, results: str, name: str) -> int:
    return main(["run", "--methods", name, *RUN, "--results", str(tmp_path / results), "--cache-dir", str(cache_dir),
                 "--method-opt", "lr_decay=0.5"])


def _comparable(results: Path) -> dict:
    r = json.loads(next(results.rglob("seed-0.json")).read_text())
    history = [{k: v for k, v in row.items() if k not in ("train_s", "val_s", "pairs_per_s", "eta_s")}
               for row in r["history"]]
    return {"test": r["test"], "best_val": r["best_val"], "history": history}


@pytest.fixture
def toy():
    names = []

    def register(in_finish: bool) -> type:
        cls = type("BufferedInFinish" if in_finish else "BufferedAtEnd", (Buffered,), {"in_finish": in_finish})
        names.append(f"buffered_{'finish' if in_finish else 'end'}_test")
        METHODS.register(names[-1])(cls)
        return cls

    yield register
    for name in names:
        METHODS.unregister(name)


def test_an_end_of_epoch_update_survives_every_stop_and_the_same_update_in_finish_epoch_does_not(
        tmp_path, cache_dir, capsys, toy):
    at_end = toy(in_finish=False)
    name = "buffered_end_test"
    assert _run(tmp_path, cache_dir, "ref", name) == 0
    reference = _comparable(tmp_path / "ref")
    # buffer 1 → 0.6 → 0.4 → 0.3, one update per epoch; the option is in the result's config
    assert [row["buffer"] for row in reference["history"]] == pytest.approx([0.6, 0.4, 0.3])
    config = json.loads(next((tmp_path / "ref").rglob("seed-0.json")).read_text())["config"]
    assert config["method_config"]["lr_decay"] == 0.5
    for where in [("observe_validation", 1),  # after the update, while epoch 1 is validated
                  ("plan_epoch", 2),          # after epoch 1's checkpoint
                  ("end_epoch", 1)]:          # during the update itself: it finishes, then the run stops
        at_end.stop = where
        folder = f"cut-{where[0]}"
        assert _run(tmp_path, cache_dir, folder, name) == 128 + signal.SIGTERM, where
        assert _run(tmp_path, cache_dir, folder, name) == 0, where
        assert _comparable(tmp_path / folder) == reference, where
    capsys.readouterr()

    in_finish = toy(in_finish=True)
    name = "buffered_finish_test"
    assert _run(tmp_path, cache_dir, "ref-finish", name) == 0
    assert [row["buffer"] for row in _comparable(tmp_path / "ref-finish")["history"]] == pytest.approx([0.6, 0.4, 0.3])
    in_finish.stop = ("observe_validation", 1)
    assert _run(tmp_path, cache_dir, "cut-finish", name) == 128 + signal.SIGTERM
    assert _run(tmp_path, cache_dir, "cut-finish", name) == 0
    # the resumed epoch 1 finishes again: the update is applied twice (0.6 → 0.4 → 0.3, then 0.25)
    assert [row["buffer"] for row in _comparable(tmp_path / "cut-finish")["history"]] == pytest.approx([0.6, 0.3, 0.25])
