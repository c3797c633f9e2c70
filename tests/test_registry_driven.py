"""Every registered method is trained by the suite, whatever added it (issue 30 item 2).

The methods come from the registry when the tests are collected (``registered_method``, conftest's
``pytest_generate_tests``): the ``methods/`` folder's and entry-point plugins'. Each one is trained
on a tiny embedded dataset (60 training images) with ``vse_bow`` and its own ``synthetic`` schedule,
so a new method needs no line here:

* determinism: the same seed twice, the second time from other global random states, gives
  identical metrics, history and detection scores;
* resume: a run stopped by SIGTERM (sent by the method itself, through the handler ``ncbench run``
  installs: mid-way through the steps of its last epoch, or while an epoch is validated for a method
  trained in one block per epoch) exits 143 with a checkpoint, and the same command resumes it to
  the metrics of the uninterrupted run (the run of the determinism test, trained once).

And the whole path for a method dropped in as a file: on the plugin path with no golden entry, it is
in the backbone, determinism and resume parametrisations (and trains in them), and the golden check
fails with the command that records its entry.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ncbench.cli import main
from ncbench.data.cards import SyntheticCard
from ncbench.data.synthetic import SyntheticSpec
from ncbench.registry import DATASETS, METHODS

TINY = "synthetic-tiny"
ROOT = Path(__file__).resolve().parents[1]


def stopping(base: type) -> type:
    """``base`` that, once ``armed``, sends SIGTERM to its own process once: after the middle step
    of its last epoch, or (a method trained in one block per epoch) while its second-to-last epoch
    is validated. ``fired`` records (epoch, step or None)."""

    class Stopping(base):
        armed = False
        fired: tuple | None = None

        def _fire(self, epoch: int, step: int | None) -> None:
            type(self).armed, type(self).fired = False, (epoch, step)
            os.kill(os.getpid(), signal.SIGTERM)

        def train_step(self, epoch, plan, i):
            logs = super().train_step(epoch, plan, i)
            if type(self).armed and epoch == self.total_epochs - 1 and i == len(plan.steps) // 2:
                self._fire(epoch, i)
            return logs

        def observe_validation(self, epoch, metrics):
            super().observe_validation(epoch, metrics)
            if type(self).armed and not self.resumable_steps and epoch == max(self.total_epochs - 2, 0):
                self._fire(epoch, None)

    Stopping.__name__ = f"Stopping{base.__name__}"
    return Stopping


class Runs:
    """Runs of registered methods on the tiny dataset, each method as its ``stopping`` subclass
    registered under ``<method>_generic_test``; the uninterrupted run of each is trained once."""

    def __init__(self, root: Path, cache_dir: Path):
        self.root, self.cache_dir = root, cache_dir
        self.classes: dict[str, type] = {}
        self.references: dict[str, dict] = {}

    def name(self, method: str) -> str:
        if method not in self.classes:
            self.classes[method] = stopping(METHODS.get(method))
            METHODS.register(f"{method}_generic_test")(self.classes[method])
        return f"{method}_generic_test"

    def run(self, method: str, folder: str) -> int:
        threads = torch.get_num_threads()  # one thread for these tiny runs, the session's again afterwards
        try:
            return main(["run", "--dataset", TINY, "--methods", self.name(method), "--backbones", "vse_bow", "--noise",
                         "0.4", "--results", str(self.root / folder / method), "--cache-dir", str(self.cache_dir),
                         "--no-progress", "--device", "cpu", "--threads", "1"])
        finally:
            torch.set_num_threads(threads)

    def result(self, method: str, folder: str) -> dict:
        (path,) = (self.root / folder / method).rglob("seed-0.json")
        return json.loads(path.read_text())

    def reference(self, method: str) -> dict:
        if method not in self.references:
            assert self.run(method, "reference") == 0
            self.references[method] = self.result(method, "reference")
        return self.references[method]

    def close(self) -> None:
        for method in self.classes:
            METHODS.unregister(f"{method}_generic_test")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, cache_dir):
    card = SyntheticCard(TINY, "60 training images, for the generic tests", spec=SyntheticSpec(n_train=60, n_dev=20, n_test=20),
                         schedule="synthetic")
    DATASETS.register(TINY)(card)
    made = Runs(tmp_path_factory.mktemp("generic"), cache_dir)
    yield made
    made.close()
    DATASETS.unregister(TINY)


def comparable(r: dict) -> dict:
    """What two runs of the same seed must agree on: everything but the clocks."""
    history = [{k: v for k, v in row.items() if k not in ("train_s", "val_s", "pairs_per_s", "eta_s")}
               for row in r["history"]]
    return {"test": r["test"], "ranks": r.get("ranks"), "best_val": r["best_val"], "history": history,
            "detection": r.get("detection")}


def test_the_same_seed_gives_identical_metrics(runs, registered_method):
    first = runs.reference(registered_method)
    torch.manual_seed(12345)  # the run's seed, not the process's random states, decides everything
    np.random.seed(54321)
    random.seed(7)
    assert runs.run(registered_method, "again") == 0
    assert comparable(runs.result(registered_method, "again")) == comparable(first)


def test_a_stopped_run_resumes_to_identical_metrics(runs, registered_method, capsys):
    reference = runs.reference(registered_method)
    cls = runs.classes[registered_method]
    cls.armed = True
    assert runs.run(registered_method, "cut") == 128 + signal.SIGTERM
    assert cls.fired is not None and not cls.armed
    folder = runs.root / "cut" / registered_method
    assert list(folder.rglob("seed-0.ckpt")) and not list(folder.rglob("seed-0.json"))
    assert "stopped by SIGTERM" in capsys.readouterr().err
    assert runs.run(registered_method, "cut") == 0
    assert "resuming " in capsys.readouterr().out
    resumed = runs.result(registered_method, "cut")
    assert comparable(resumed) == comparable(reference)
    assert not list(folder.rglob("seed-0.ckpt"))


# -- a method dropped in as a file ---------------------------------------------------------------------
def _plugin(site: Path, name: str) -> None:
    """``ncbench new-method NAME`` as a one-module distribution on ``site`` (on PYTHONPATH), declared
    with an ``ncbench.methods`` entry point: what ``pip install`` of a plugin leaves behind."""
    from ncbench.scaffold import write_skeleton

    write_skeleton(name, site, "single", METHODS.names())
    info = site / f"{name}_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[ncbench.methods]\n{name} = {name}\n")


def test_a_method_dropped_in_is_trained_by_the_suite_and_needs_a_golden_entry(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    _plugin(site, "dropin")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    golden_check = "tests/test_accuracy_golden.py::test_every_registered_method_has_a_golden_entry"
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", "-k",
                           "has_a_golden_entry or dropin-vse_bow or dropin]",
                           golden_check, "tests/test_backbones.py", "tests/test_registry_driven.py"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    out = done.stdout
    # trained by the backbone test (on every backbone; one of the four here), determinism and resume
    for test in ("test_backbones.py::test_every_method_trains_with_every_backbone_and_its_loss_falls[dropin-vse_bow]",
                 "test_registry_driven.py::test_the_same_seed_gives_identical_metrics[dropin]",
                 "test_registry_driven.py::test_a_stopped_run_resumes_to_identical_metrics[dropin]"):
        assert f"PASSED tests/{test}" in out, out[-3000:]
    assert f"FAILED {golden_check}" in out, out[-3000:]
    assert ("dropin: no entry in " in out and "record one with `ncbench golden --method dropin`" in out), out[-3000:]
    assert "1 failed, 3 passed" in out, out[-3000:]
