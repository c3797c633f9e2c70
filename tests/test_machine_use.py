"""Issue 23 item 3: a run says what it is doing when its output is a log, and does not oversubscribe
the cores without saying so."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ncbench.cli import main
from ncbench.cli.sweep import worker_argv
from ncbench.runner import load_warning

SMOKE = ["run", "--methods", "vanilla", "--dataset", "synthetic-small", "--backbones", "vse_bow", "--noise", "0.2",
         "--method-opt", "epochs=2"]


def test_load_warning_only_when_the_cores_are_already_busy():
    assert load_warning(2, load=0.5, cores=2) is None
    assert load_warning(2, load=1.9, cores=2) is None
    text = load_warning(2, load=2.3, cores=2)
    assert "load average 2.3 on 2 core(s)" in text and "--threads 1" in text


def test_local_workers_divide_the_cores_between_them():
    argv = ["run", "--methods", "ncr", "--workers", "2", "--seeds", "0,1"]
    assert worker_argv(argv, 2, None, 0, 8) == ["run", "--methods", "ncr", "--seeds", "0,1", "--threads", "4"]
    assert worker_argv(argv, 3, None, 0, 2) == ["run", "--methods", "ncr", "--seeds", "0,1", "--threads", "1"]
    assert worker_argv([*argv, "--threads", "2"], 2, 2, 0, 8)[-2:] == ["--threads", "2"]  # the user's choice stays
    assert "--threads" not in worker_argv(["run", "--workers=2"], 2, None, 1, 8)  # one GPU each: torch's default


@pytest.mark.slow
def test_without_a_terminal_every_epoch_is_one_line(tmp_path, cache_dir):
    """Output to a log (no progress bars): one line per epoch, without asking for -v."""
    cmd = [sys.executable, "-m", "ncbench", *SMOKE, "--results", str(tmp_path / "r"), "--cache-dir", str(cache_dir),
           "--threads", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    lines = [x for x in proc.stdout.splitlines() if x.strip().startswith("epoch ")]
    assert [x.split(":")[0].strip() for x in lines] == ["epoch 0", "epoch 1"]
    assert "val rSum" in lines[0]


@pytest.mark.slow
def test_a_busy_machine_is_reported_before_training(tmp_path, cache_dir, capsys, monkeypatch):
    monkeypatch.setattr(os, "getloadavg", lambda: (64.0, 64.0, 64.0))
    assert main([*SMOKE, "--results", str(tmp_path / "r"), "--cache-dir", str(cache_dir), "--no-progress"]) == 0
    assert "warning: this machine is busy (load average 64.0" in capsys.readouterr().err


def test_a_bad_input_on_a_busy_machine_is_one_error_line(tmp_path, capsys, monkeypatch):
    """The load is checked once the inputs have loaded: a bad input stays the single line
    ``ncbench: error: ...`` (the warning came first, and a loaded CI machine failed the CLI tests)."""
    monkeypatch.setattr(os, "getloadavg", lambda: (64.0, 64.0, 64.0))
    assert main(["run", "--dataset", "f30k", "--noise", "0.2", "--results", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ncbench: error:") and "needs --data-root" in err and "busy" not in err
