"""Live logging (``--log tensorboard|wandb``): the event files TensorBoard's own reader loads hold the
history's scalars per epoch; a missing package is a clear error before training; W&B is called
offline with the same scalars (a stand-in module records the calls: wandb is not a test dependency)."""

from __future__ import annotations

import importlib.machinery
import json
import sys
import types

import pytest

from ncbench.cli import main
from ncbench.live_log import scalars

RUN = ["run", "--methods", "vanilla", "--dataset", "synthetic-small", "--backbones", "vse_bow", "--method-opt", "epochs=3",
       "--noise", "0.2", "--threads", "1", "--no-progress"]


def test_scalars_of_a_history_row():
    row = {"epoch": 3, "loss": 1.5, "val_rsum": 200.0, "train_s": 2.0, "stage": "warm", "flag": True,
           "detection": {"auc": 0.9, "clean_precision": None, "subsets": {"clean": {}}}}
    assert scalars(row) == {"loss": 1.5, "val_rsum": 200.0, "train_s": 2.0, "detection/auc": 0.9}


@pytest.mark.slow
def test_tensorboard_event_files_hold_every_epoch(tmp_path, cache_dir):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    results = tmp_path / "results"
    assert main([*RUN, "--results", str(results), "--cache-dir", str(cache_dir), "--log", "tensorboard"]) == 0
    (result_file,) = results.rglob("seed-0.json")
    history = json.loads(result_file.read_text())["history"]
    folder = results / "logs" / "tensorboard" / result_file.relative_to(results).with_suffix("")
    acc = EventAccumulator(str(folder))
    acc.Reload()
    val = acc.Scalars("val_rsum")
    assert [e.step for e in val] == [row["epoch"] for row in history]
    assert [e.value for e in val] == pytest.approx([row["val_rsum"] for row in history], rel=1e-6)
    assert [e.value for e in acc.Scalars("loss")] == pytest.approx([row["loss"] for row in history], rel=1e-6)
    # the logs folder is not mistaken for results
    from ncbench.results import load_results

    loaded = load_results(results)
    assert len(loaded.results) == 1 and loaded.errors == []


def test_a_logger_that_is_not_installed_stops_before_training(tmp_path, cache_dir, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    results = tmp_path / "results"
    assert main([*RUN, "--results", str(results), "--cache-dir", str(cache_dir), "--log", "wandb"]) == 2
    assert "--log wandb needs the wandb package: pip install wandb" in capsys.readouterr().err
    assert not list(results.rglob("seed-*.json"))
    assert main([*RUN, "--results", str(results), "--log", "visdom"]) == 2
    assert "unknown --log 'visdom'; choose from tensorboard, wandb" in capsys.readouterr().err


@pytest.mark.slow
def test_wandb_is_called_offline_with_the_history(tmp_path, cache_dir, monkeypatch):
    calls = {"init": [], "log": [], "finish": 0}

    class Run:
        def log(self, data, step):
            calls["log"].append((step, data))

        def finish(self):
            calls["finish"] += 1

    fake = types.ModuleType("wandb")
    fake.__spec__ = importlib.machinery.ModuleSpec("wandb", None)
    fake.init = lambda **kw: calls["init"].append(kw) or Run()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    results = tmp_path / "results"
    assert main([*RUN, "--results", str(results), "--cache-dir", str(cache_dir), "--log", "wandb",
                 "--log-dir", str(tmp_path / "wb")]) == 0
    (kw,) = calls["init"]
    assert kw["mode"] == "offline" and kw["project"] == "ncbench" and kw["config"]["method"] == "vanilla"
    assert kw["dir"].startswith(str(tmp_path / "wb" / "wandb" / "protocol-1" / "synthetic-small"))
    history = json.loads(next(results.rglob("seed-0.json")).read_text())["history"]
    assert [s for s, _ in calls["log"]] == [row["epoch"] for row in history]
    assert [d["val_rsum"] for _, d in calls["log"]] == [row["val_rsum"] for row in history]
    assert calls["finish"] == 1
