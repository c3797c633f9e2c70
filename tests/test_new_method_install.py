"""Issue 23 item 4: install → new method → run, as the README documents it; and the error that says
why a method file is not seen."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
INSTALL = "pip install torch==2.13.0 -e . && ncbench run"


def test_an_unseen_method_file_is_explained(tmp_path, monkeypatch):
    """A plain ``pip install .`` copies the methods folder; a new file in the checkout's is then
    unknown. The error says so and what to do (it said only ``unknown method 'lowsim'``)."""
    from ncbench.errors import UnknownNameError
    from ncbench.registry import METHODS

    (tmp_path / "methods").mkdir()
    (tmp_path / "methods" / "lowsim.py").write_text("# written by ncbench new-method\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UnknownNameError) as err:
        METHODS.get("lowsim")
    text = str(err.value)
    assert f"{tmp_path / 'methods' / 'lowsim.py'} exists but is not seen" in text and "pip install -e ." in text
    with pytest.raises(UnknownNameError) as err:
        METHODS.get("nosuchfile")
    assert "exists but" not in str(err.value)


@pytest.mark.slow
def test_a_new_method_runs_after_the_readmes_install(tmp_path):
    """The README's command 1 installs the checkout editable. Replayed offline: a fresh virtualenv that
    borrows this environment's packages (all but ncbench), a copy of the checkout installed with
    ``pip install -e .``, ``ncbench new-method lowsim`` in it, and a run of ``lowsim``."""
    assert INSTALL in (REPO / "README.md").read_text()
    deps = tmp_path / "deps"  # this environment's packages, without ncbench
    deps.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.startswith(("ncbench", "__editable__")) and "ncbench" not in entry.name:
            (deps / entry.name).symlink_to(entry)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "zz_borrowed.pth").write_text(f"{deps}\n")
    checkout = tmp_path / "checkout"
    shutil.copytree(REPO, checkout, ignore=shutil.ignore_patterns(".git", ".tox", "__pycache__", "*.egg-info", "build",
                                                                 "results", ".venv", "venv"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NCBENCH_CACHE": str(tmp_path / "cache")}

    def sh(*cmd):
        return subprocess.run([str(c) for c in cmd], cwd=checkout, capture_output=True, text=True, timeout=600,
                              env=env, check=False)

    step = sh(python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "-e", ".")
    assert step.returncode == 0, step.stderr
    step = sh(venv / "bin" / "ncbench", "new-method", "lowsim")
    assert step.returncode == 0 and (checkout / "methods" / "lowsim.py").is_file(), step.stderr
    step = sh(venv / "bin" / "ncbench", "run", "--methods", "lowsim", "--dataset", "synthetic-small", "--noise", "0.2",
              "--method-opt", "epochs=1", "--results", tmp_path / "results", "--threads", "1")
    assert step.returncode == 0, step.stdout + step.stderr
    assert list((tmp_path / "results").rglob("lowsim/*/seed-0.json"))
