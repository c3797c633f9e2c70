"""A stop signal mid-epoch (SIGTERM from a scheduler, Ctrl-C) saves a checkpoint at the next step,
and the resumed run reaches exactly the metrics of an uninterrupted one.

The signals here are real: a test-only subclass of a built-in method sends one to its own process
at a chosen step (or while the epoch is being validated), through the handler the command line
installs. The comparison is with the same method trained without interruption."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ncbench import preemption
from ncbench.checkpoint import read
from ncbench.cli import main
from ncbench.errors import Preempted
from ncbench.registry import METHODS

SHORT = {"ncr": ["--method-opt", "warmup_epochs=2", "--method-opt", "epochs=3"],
         "bicro": ["--method-opt", "warmup_epochs=2", "--method-opt", "epochs=1"],
         "crcl": ["--method-opt", "schedules=2,2", "--method-opt", "warm_epochs=1"],
         "vanilla": ["--method-opt", "epochs=3"],
         "l2rm": ["--method-opt", "warmup_epochs=1", "--method-opt", "epochs=3"],
         "cream": ["--method-opt", "warmup_epochs=2", "--method-opt", "epochs=2", "--method-opt", "hard_from=0",
                   "--method-opt", "noisy_from=1"]}


def _stopping(base: type, name: str) -> type:
    """``base`` that signals its own process once, at ``stop = (epoch, fraction of the epoch's steps,
    signal)``, or with fraction None while the epoch is finished and validated."""

    class Stopping(base):
        stop: tuple | None = None
        fired: tuple | None = None  # (epoch, step it was sent in, steps in the epoch)

        def _fire(self, epoch: int, i: int, n: int) -> None:
            type(self).fired, type(self).stop = (epoch, i, n), None
            os.kill(os.getpid(), self.fired_signal)

        def train_step(self, epoch, plan, i):
            logs = super().train_step(epoch, plan, i)
            n = len(plan.steps)
            if self.stop and self.stop[1] is not None and self.stop[0] == epoch and i == int(self.stop[1] * n):
                type(self).fired_signal = self.stop[2]
                self._fire(epoch, i, n)
            return logs

        def finish_epoch(self, epoch, plan, logs):
            if self.stop and self.stop[1] is None and self.stop[0] == epoch:
                type(self).fired_signal = self.stop[2]
                self._fire(epoch, len(plan.steps), len(plan.steps))
            return super().finish_epoch(epoch, plan, logs)

    Stopping.__name__ = f"Stopping{base.__name__}"
    METHODS.register(name)(Stopping)
    return Stopping


def _run(tmp_path: Path, cache_dir: Path, results: str, name: str, base: str) -> int:
    # vse_bow: the bag-of-words backbone, a fifth of vse_light's time; what is tested is the method's state
    return main(["run", "--dataset", "synthetic-small", "--backbones", "vse_bow", "--methods", name, "--noise", "0.4", "--results",
                 str(tmp_path / results), "--cache-dir", str(cache_dir), "--no-progress", "--device", "cpu",
                 *SHORT[base]])


def _comparable(path: Path) -> dict:
    r = json.loads(path.read_text())
    history = [{k: v for k, v in row.items() if k not in ("train_s", "val_s", "pairs_per_s", "eta_s")}
               for row in r["history"]]
    return {"test": r["test"], "ranks": r["ranks"], "best_val": r["best_val"], "history": history,
            "detection": r["detection"]}


@pytest.mark.parametrize("base, epoch, fraction, sig", [
    ("ncr", 3, 0.75, signal.SIGTERM),   # co-training, in network B's half: A's steps are already done
    ("bicro", 1, 0.3, signal.SIGINT),   # warm-up, Ctrl-C
    ("crcl", 4, 0.5, signal.SIGTERM),   # the second stage, after its network was re-initialised
    ("vanilla", 0, 0.0, signal.SIGTERM),  # after the very first step
    ("ncr", 2, None, signal.SIGTERM),   # while the first co-training epoch is finished and validated
    ("l2rm", 2, 0.5, signal.SIGTERM),   # mid-epoch: the learned cost, its optimiser and the image queue resume
    ("cream", 3, 0.6, signal.SIGTERM),  # clean + hard + noisy steps, after the kept warm-up epoch was reloaded
    ("cream", 1, None, signal.SIGTERM),  # while a warm-up epoch is validated: the seven-number rule sees it again
])
def test_a_stop_mid_epoch_saves_the_step_and_resumes_to_identical_metrics(tmp_path, cache_dir, capsys,
                                                                          base, epoch, fraction, sig):
    name = f"{base}_stop_test"
    cls = _stopping(METHODS.get(base), name)
    try:
        assert _run(tmp_path, cache_dir, "ref", name, base) == 0
        reference = next((tmp_path / "ref").rglob("seed-0.json"))
        capsys.readouterr()

        cls.stop = (epoch, fraction, sig)
        assert _run(tmp_path, cache_dir, "cut", name, base) == 128 + sig
        err = capsys.readouterr().err
        stopped_epoch, step, n = cls.fired
        assert stopped_epoch == epoch
        ckpt = next((tmp_path / "cut").rglob("seed-0.ckpt"))
        saved = read(ckpt)  # weights_only: every checkpoint ncbench writes loads without running code
        # the step the signal came in finished; the checkpoint continues with the next one
        assert saved["epoch"] == epoch - 1 and saved["partial"]["step"] == min(step + 1, n)
        assert len(saved["partial"]["plan"].steps) == n
        where = f"in epoch {epoch} at step {min(step + 1, n)}/{n}"
        assert f"stopped by {signal.Signals(sig).name}" in err and where in err and "re-run the same command" in err
        assert not list((tmp_path / "cut").rglob("seed-0.json"))

        assert _run(tmp_path, cache_dir, "cut", name, base) == 0
        assert f"resuming {where}" in capsys.readouterr().out
        resumed = next((tmp_path / "cut").rglob("seed-0.json"))
        meta, timings = json.loads(resumed.read_text())["meta"], json.loads(resumed.read_text())["timings"]
        assert meta["resumed_at_step"] == min(step + 1, n)
        # total_s is the time of both processes (F2): at least the time the first one had spent when it
        # saved, and the training and validation of all epochs (train_s, val_s add up across resumes)
        assert timings["total_s"] >= saved["elapsed_s"] >= saved["train_seconds"] + saved["val_seconds"]
        assert timings["total_s"] >= timings["train_s"] + timings["val_s"] + timings["test_s"] - 0.005
        assert meta["resumed_after_epoch"] == (epoch - 1 if epoch > 0 else None)
        assert _comparable(resumed) == _comparable(reference)
        assert not ckpt.exists()
    finally:
        METHODS.unregister(name)


def test_a_second_signal_stops_at_once_and_handlers_are_restored():
    before = signal.getsignal(signal.SIGTERM)
    with preemption.handling(signal.SIGTERM):
        with preemption.deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            assert preemption.pending() == signal.SIGTERM  # remembered, not raised
            with pytest.raises(Preempted):
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(1)  # the handler runs here
        assert preemption.pending() == 0
        with pytest.raises(Preempted) as outside:  # outside the steps: at once
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
        assert outside.value.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before


def test_local_workers_forward_a_stop_and_the_sweep_resumes(tmp_path, cache_dir):
    """SIGTERM to the ``--workers`` parent reaches each worker once; each saves its run's place and
    exits; the parent exits 143; the same command then finishes both runs from their checkpoints."""
    results = tmp_path / "r"
    cmd = [sys.executable, "-m", "ncbench", "run", "--workers", "2", "--dataset", "synthetic-small", "--methods", "ncr",
           "--noise", "0.4", "--seeds", "0,1", "--results", str(results), "--cache-dir", str(cache_dir), "--threads", "1",
           *SHORT["ncr"]]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    ckpts = [results / "protocol-1" / "synthetic-small" / "noise-0.4" / "ncr" / "vse_light" / f"seed-{s}.ckpt"
             for s in (0, 1)]
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not all(c.exists() for c in ckpts):
        time.sleep(0.05)
    assert proc.poll() is None, f"the sweep ended before it could be stopped:\n{proc.communicate()}"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err
    assert err.count("stopped by SIGTERM") == 3  # both workers and the parent
    assert not list(results.rglob("seed-*.json"))
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("resuming ") == 2
    for s in (0, 1):
        record = json.loads(ckpts[s].with_suffix(".json").read_text())
        assert record["status"] == "ok"
        assert record["meta"]["resumed_at_step"] is not None or record["meta"]["resumed_after_epoch"] is not None
