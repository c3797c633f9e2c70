"""Crash-proof sweeps: checkpoints (kill -9, then resume to identical metrics), per-run locks, two
local workers sharing one sweep, shards and ``ncbench status``.

The interrupted run here is a real ``ncbench`` process, killed from outside while it trains. Every
registered method's stop-and-resume to identical metrics is ``test_registry_driven.py`` (in-process
SIGTERM, a tiny dataset); the deterministic mid-epoch cases are in ``test_preemption.py``, a SIGTERM
to local workers from outside in its ``test_local_workers_forward_a_stop_and_the_sweep_resumes``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


from ncbench.locks import RunLock, is_locked

SHORT = {"ncr": ["--method-opt", "warmup_epochs=2", "--method-opt", "epochs=4"],
         "l2rm": ["--method-opt", "warmup_epochs=1", "--method-opt", "epochs=4"]}


def _cmd(results: Path, cache_dir: Path, method: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "ncbench", "run", "--dataset", "synthetic-small", "--methods", method, "--noise", "0.4", "--results", str(results),
            "--cache-dir", str(cache_dir), "--threads", "1", "--no-progress", *SHORT[method], *extra]


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})


def _result(results: Path) -> dict:
    (path,) = results.rglob("seed-0.json")
    return json.loads(path.read_text())


def _comparable(r: dict) -> dict:
    history = [{k: v for k, v in row.items() if k not in ("train_s", "val_s", "pairs_per_s", "eta_s")}
               for row in r["history"]]
    return {"test": r["test"], "ranks": r["ranks"], "best_val": r["best_val"], "history": history,
            "detection": r["detection"]}


def _checkpointed_epoch(ckpt: Path) -> int:
    import ncbench.engine.trainer  # noqa: F401 - registers Selection, which a checkpoint holds, as storable
    from ncbench.checkpoint import read

    try:
        return int(read(ckpt)["epoch"])
    except (FileNotFoundError, KeyError):
        return -1


def _interrupt(cmd: list[str], ckpt: Path, after_epoch: int, sig: int) -> subprocess.CompletedProcess:
    """Start ``cmd``, wait until its checkpoint records ``after_epoch``, send ``sig``; return the finished process."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if _checkpointed_epoch(ckpt) >= after_epoch:
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"the run ended before it could be interrupted:\n{proc.communicate()}"
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


# kill -9 of a method with much state (L2RM: learned cost, its optimiser, the image queue); every
# method's exact resume after a stop is test_registry_driven.py's (the same checkpoint path)
def test_a_killed_run_resumes_from_its_checkpoint_to_identical_metrics(tmp_path, cache_dir):
    method = "l2rm"
    reference = _run(_cmd(tmp_path / "ref", cache_dir, method))
    assert reference.returncode == 0, reference.stderr
    expected = _result(tmp_path / "ref")

    results = tmp_path / "cut"
    ckpt = results / "protocol-1" / "synthetic-small" / "noise-0.4" / method / "vse_light" / "seed-0.ckpt"
    cut = _interrupt(_cmd(results, cache_dir, method), ckpt, after_epoch=2, sig=signal.SIGKILL)
    assert cut.returncode == -signal.SIGKILL
    assert ckpt.exists() and not list(results.rglob("seed-0.json"))

    status = _run([sys.executable, "-m", "ncbench", "status", "--dataset", "synthetic-small", "--methods", method, "--noise", "0.4", "--results",
                   str(results), *SHORT[method]])
    assert status.returncode == 0 and "partial" in status.stdout and "checkpoint " in status.stdout

    resumed = _run(_cmd(results, cache_dir, method))
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming " in resumed.stdout
    got = _result(results)
    assert got["meta"]["resumed_after_epoch"] >= 2
    assert _comparable(got) == _comparable(expected)
    assert not ckpt.exists()  # removed once the result is written


def test_an_unreadable_checkpoint_is_moved_aside_and_the_run_starts_over(tmp_path, cache_dir):
    results = tmp_path / "r"
    ckpt = results / "protocol-1" / "synthetic-small" / "noise-0.4" / "ncr" / "vse_light" / "seed-0.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"\x80\x04 not a checkpoint")
    done = _run(_cmd(results, cache_dir, "ncr", "--method-opt", "epochs=1", "--method-opt", "warmup_epochs=1"))
    assert done.returncode == 0, done.stderr
    assert "unreadable" in done.stdout and "starting from epoch 0" in done.stdout
    (kept,) = (results / "superseded" / "checkpoints" / ckpt.parent.relative_to(results)).glob("seed-0.corrupt.*.ckpt")
    assert kept.read_bytes() == b"\x80\x04 not a checkpoint"
    assert _result(results)["status"] == "ok"


def test_two_local_workers_share_a_sweep_without_duplicates_or_losses(tmp_path, cache_dir):
    results = tmp_path / "r"
    cmd = [sys.executable, "-m", "ncbench", "run", "--workers", "2", "--dataset", "synthetic-small", "--methods", "vanilla", "--noise", "0,0.2,0.6",
           "--seeds", "0,1", "--method-opt", "epochs=1", "--results", str(results), "--cache-dir", str(cache_dir),
           "--threads", "1"]
    done = _run(cmd)
    assert done.returncode == 0, done.stderr
    files = sorted(results.rglob("seed-*.json"))
    assert len(files) == 6 and all(json.loads(f.read_text())["status"] == "ok" for f in files)
    trained = [line for line in done.stdout.splitlines() if "test rSum" in line and line.startswith("[worker ")]
    labels = [line.split("] ", 2)[2].split(":")[0] for line in trained]
    assert len(labels) == 6 and len(set(labels)) == 6  # every run trained exactly once
    assert {line.split("]")[0] for line in trained} == {"[worker 0", "[worker 1"}  # both workers took runs
    assert "6 of 6 run(s) done" in done.stdout


def test_a_run_lock_excludes_others_and_dies_with_its_holder(tmp_path):
    path = tmp_path / "seed-0.lock"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; sys.path.insert(0, %r); from ncbench.locks import RunLock; "
        "lock = RunLock(%r); assert lock.acquire(); print('held', flush=True); time.sleep(600)"
    ) % (str(Path(__file__).resolve().parents[1]), str(path))], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    assert not RunLock(path).acquire()
    assert f"pid {holder.pid}" in is_locked(path)
    holder.kill()
    holder.wait()
    assert path.exists()  # a killed holder leaves its file (who held it), not its lock
    assert is_locked(path) is None
    with RunLock(path) as lock:
        assert lock.acquire()


def test_a_released_lock_leaves_no_file_and_a_deleted_file_is_never_locked_twice(tmp_path):
    """Issue 23 item 8: a ``.lock`` was left beside every finished result. Released locks delete their
    file (while still held); a process that locked a file that was deleted meanwhile starts over on
    the file at the path, so two processes never hold "the" lock at once."""
    import fcntl
    import os

    path = tmp_path / "seed-0.lock"
    lock = RunLock(path)
    assert lock.acquire() and path.exists()
    lock.release()
    assert not path.exists()
    # a late process opened the old file before the holder deleted it and locks it afterwards
    first = RunLock(path)
    assert first.acquire()
    stale_fd = os.open(path, os.O_RDWR)
    first.release()  # deletes the file the late process has open
    fcntl.flock(stale_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # it gets a lock on a deleted file ...
    second = RunLock(path)
    assert second.acquire()  # ... which must not keep anyone from the lock at the path
    assert path.exists() and is_locked(path) is not None
    os.close(stale_fd)
    second.release()


def test_a_finished_sweep_leaves_results_not_lock_files(tmp_path, cache_dir):
    done = _run([sys.executable, "-m", "ncbench", "run", "--dataset", "synthetic-small", "--methods", "vanilla",
                 "--noise", "0.2", "--results", str(tmp_path / "r"), "--cache-dir", str(cache_dir), "--threads", "1",
                 "--no-progress", "--method-opt", "epochs=1"])
    assert done.returncode == 0, done.stderr
    assert [p.name for p in (tmp_path / "r").rglob("seed-0.*")] == ["seed-0.json"]


def test_shards_split_a_sweep_and_auto_reads_the_launcher(tmp_path, monkeypatch, capsys):
    from ncbench.cli import main

    base = ["run", "--methods", "vanilla", "--noise", "0,0.2,0.6", "--seeds", "0,1", "--results", str(tmp_path),
            "--dry-run"]
    assert main(base) == 0
    everything = capsys.readouterr().out.splitlines()
    parts = []
    for i in range(3):
        assert main([*base, "--shard", f"{i}/3"]) == 0
        parts.append(capsys.readouterr().out.splitlines())
    assert sorted(sum(parts, [])) == sorted(everything) and all(len(p) == 2 for p in parts)
    monkeypatch.setenv("SLURM_PROCID", "2")
    monkeypatch.setenv("SLURM_NTASKS", "3")
    assert main([*base, "--shard", "auto"]) == 0
    assert capsys.readouterr().out.splitlines() == parts[2]
    assert main([*base, "--shard", "3/3"]) == 2
    assert "shard 3/3: need 0 ≤ i < n" in capsys.readouterr().err


def test_a_process_that_only_reads_checkpoints_can_read_a_selection(tmp_path):
    """A checkpoint holds the trainer's ``Selection``; a process that imported only the checkpoint
    module (``ncbench status``, a reviewer's script) must still read it, not fail on an unknown class."""
    script = (
        "import sys, torch\n"
        "from ncbench.checkpoint import read, to_plain\n"
        "from ncbench.engine.selection import Selection\n"
        "from ncbench.evaluate import SplitEvaluation\n"
        "ev = SplitEvaluation.__new__(SplitEvaluation)\n"
        "torch.save(to_plain({'best': Selection(best_epoch=3, best_val=ev)}), sys.argv[1])\n")
    path = tmp_path / "state.pt"
    subprocess.run([sys.executable, "-c", script, str(path)], check=True, cwd=tmp_path)
    out = subprocess.run([sys.executable, "-c", "import sys; from ncbench.checkpoint import read; "
                          "s = read(sys.argv[1])['best']; print(type(s).__name__, s.best_epoch)", str(path)],
                         capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["Selection", "3"]
