"""A results folder shared with others (issue 28; cases S1, S2, F4, F6, C10a of the 2026-12
reliability report): a planted checkpoint runs no code, a planted link is never written through, set
aside files never overwrite each other, a full disk is named as such, and what ``kill -9`` leaves is
cleared under the run's lock."""

from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from ncbench import atomic
from ncbench.atomic import UnsafePathError, write_text_atomic
from ncbench.checkpoint import FORMAT, Checkpointer, CheckpointError, read
from ncbench.cli import main
from ncbench.engine.method import EpochPlan, StepLogs
from ncbench.kernels.mixture import gmm_split
from ncbench.locks import RunLock, is_locked
from ncbench.runner import checkpointer

RUN = ["run", "--dataset", "synthetic-small", "--methods", "vanilla", "--noise", "0.2", "--method-opt", "epochs=1",
       "--threads", "1", "--no-progress"]
V = Path("protocol-1/synthetic-small/noise-0.2/vanilla/vse_light")


def _run(results: Path, cache_dir: Path) -> int:
    return main([*RUN, "--results", str(results), "--cache-dir", str(cache_dir)])


class _Payload:
    """Unpickling this runs a shell command that creates ``marker`` (the report's case E3)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _plant_payload(ckpt: Path, marker: Path, config_hash: str = "x") -> None:
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": FORMAT, "config_hash": config_hash, "epoch": 0, "evil": _Payload(marker)}, ckpt)


# -- S1: a planted checkpoint ----------------------------------------------------------------------
def test_a_planted_checkpoint_runs_no_code_in_status_or_load(tmp_path, cache_dir, capsys):
    ckpt = tmp_path / "r" / V / "seed-0.ckpt"
    marker = tmp_path / "PWNED"
    _plant_payload(ckpt, marker)

    assert Checkpointer(ckpt, "x").where() is None
    assert main(["status", "--dataset", "synthetic-small", "--methods", "vanilla", "--noise", "0.2",
                 "--method-opt", "epochs=1", "--results", str(tmp_path / "r")]) == 0
    assert not marker.exists() and ckpt.exists()  # status moves nothing

    lines = []
    assert checkpointer(tmp_path / "r", ckpt.with_suffix(".json"), "x", lines.append).load() is None
    assert not marker.exists()
    (line,) = lines
    assert str(ckpt) in line and "refused as unsafe to load" in line and "posix.system" in line
    (kept,) = (tmp_path / "r" / "superseded" / "checkpoints" / V).glob("seed-0.corrupt.*.ckpt")
    assert not ckpt.exists() and kept.is_file()


def test_a_run_sets_a_planted_checkpoint_aside_without_running_it(tmp_path, cache_dir, capsys):
    ckpt = tmp_path / "r" / V / "seed-0.ckpt"
    marker = tmp_path / "PWNED"
    _plant_payload(ckpt, marker)
    assert _run(tmp_path / "r", cache_dir) == 0
    out = capsys.readouterr().out
    assert not marker.exists()
    assert f"checkpoint {ckpt} is refused as unsafe to load" in out and "starting from epoch 0" in out


def test_a_loadable_checkpoint_without_the_expected_fields_is_not_one(tmp_path):
    ckpt = tmp_path / "seed-0.ckpt"
    for planted in ({"format": FORMAT, "config_hash": "h"}, {"format": FORMAT, "config_hash": "h", "epoch": 1,
                                                            "partial": {"step": 1, "plan": [1, 2]}}):
        torch.save(planted, ckpt)
        assert Checkpointer(ckpt, "h").where() is None


def test_a_checkpoint_of_the_previous_format_is_set_aside_as_not_loadable_safely(tmp_path):
    ckpt = tmp_path / "seed-0.ckpt"
    torch.save({"format": 1, "config_hash": "h", "epoch": 3, "rng": {"numpy": np.random.get_state()}}, ckpt)
    lines = []
    assert Checkpointer(ckpt, "h", aside=tmp_path / "aside", log=lines.append).load() is None
    assert "refused as unsafe to load" in lines[0] and "older ncbench" in lines[0]


def test_every_part_of_a_state_is_stored_as_plain_data_and_comes_back_identical(tmp_path):
    """What the trainer saves (a mid-epoch plan with a mixture fit, step logs, NumPy arrays and
    scalars, NumPy's random state, a module's state dict) loads with torch's weights_only loader
    alone, and comes back as the same objects with the same bits."""
    fit = gmm_split(torch.rand(40, generator=torch.Generator().manual_seed(3)))
    plan = EpochPlan([np.arange(4), np.array([7, 1])], {"fit": fit, "clean": np.array([True, False]),
                                                          "stage": np.int64(2), "p": np.float32(0.25)})
    net = torch.nn.Linear(3, 2)
    state = {"method": {"net": net.state_dict(), "labels": np.linspace(0, 1, 5)}, "history": [{"loss": 0.5}],
             "partial": {"plan": plan, "step": 1, "logs": StepLogs({"loss": 1.5}, {"loss": 2}), "train_s": 0.1},
             "rng": {"numpy": np.random.get_state(), "python": (3, tuple(range(5)), None)}}
    ckpt = tmp_path / "seed-0.ckpt"
    Checkpointer(ckpt, "h").save(4, state)

    torch.load(ckpt, weights_only=True)  # raises if anything needs the full unpickler
    back = Checkpointer(ckpt, "h").load()
    got = back["partial"]["plan"]
    assert isinstance(got, EpochPlan) and [s.tolist() for s in got.steps] == [[0, 1, 2, 3], [7, 1]]
    assert got.data["clean"].tolist() == [True, False]
    assert type(got.data["stage"]) is np.int64 and got.data["stage"] == 2
    assert type(got.data["p"]) is np.float32 and got.data["p"] == np.float32(0.25)
    assert torch.equal(got.data["fit"].prob, fit.prob) and torch.equal(got.data["fit"].mixture.means, fit.mixture.means)
    assert back["partial"]["logs"].means() == {"loss": 0.75}
    assert np.array_equal(back["method"]["labels"], np.linspace(0, 1, 5))
    assert back["method"]["net"]["weight"].equal(net.weight.detach())
    numpy_state = back["rng"]["numpy"]
    assert numpy_state[0] == "MT19937" and np.array_equal(numpy_state[1], np.random.get_state()[1])
    assert back["rng"]["python"] == (3, (0, 1, 2, 3, 4), None)
    assert back["epoch"] == 4 and back["format"] == FORMAT


def test_a_state_holding_an_unknown_object_is_refused_when_saved(tmp_path):
    with pytest.raises(CheckpointError, match="cannot store a .*_Payload"):
        Checkpointer(tmp_path / "seed-0.ckpt", "h").save(0, {"thing": _Payload(tmp_path / "m")})
    assert not (tmp_path / "m").exists() and not list(tmp_path.iterdir())


# -- C10a: a full disk -------------------------------------------------------------------------
class _FullDisk:
    """A file on a disk that fills up after ``room`` bytes."""

    def __init__(self, f, room: int):
        self.f, self.room = f, room

    def write(self, data) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.f.write(data)

    def __getattr__(self, name):  # flush, fileno, ...
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def test_a_full_disk_while_writing_a_checkpoint_says_so_and_names_the_file(tmp_path, monkeypatch):
    real = os.fdopen
    monkeypatch.setattr(atomic.os, "fdopen", lambda fd, mode: _FullDisk(real(fd, mode), room=1000))
    ckpt = tmp_path / "seed-0.ckpt"
    with pytest.raises(CheckpointError) as err:
        Checkpointer(ckpt, "h").save(0, {"method": {"w": torch.zeros(10_000)}})
    assert str(err.value) == f"could not write checkpoint {ckpt}: no space left on device"
    assert not list(tmp_path.iterdir())  # no temporary file left either


# -- S2: planted links and foreign files ---------------------------------------------------------------
@pytest.fixture
def victim(tmp_path) -> Path:
    path = tmp_path / "victim.txt"
    path.write_text("IMPORTANT USER DATA\nline 2\n")
    return path


def test_a_lock_linked_to_another_file_is_refused_and_the_file_kept(tmp_path, victim):
    lock = tmp_path / "r" / "seed-0.lock"
    lock.parent.mkdir()
    lock.symlink_to(victim)
    with pytest.raises(UnsafePathError, match="seed-0.lock: is a symbolic link to .*victim.txt.*refusing"):
        RunLock(lock).acquire()
    assert is_locked(lock) is None  # status: neither followed nor deleted
    assert lock.is_symlink() and victim.read_text() == "IMPORTANT USER DATA\nline 2\n"

    dangling = tmp_path / "r" / "seed-1.lock"
    dangling.symlink_to(tmp_path / "created-through-the-link")
    with pytest.raises(UnsafePathError):
        RunLock(dangling).acquire()
    assert not (tmp_path / "created-through-the-link").exists()


def test_a_lock_hard_linked_to_another_file_is_refused(tmp_path, victim):
    lock = tmp_path / "seed-0.lock"
    os.link(victim, lock)
    with pytest.raises(UnsafePathError, match="2 hard links"):
        RunLock(lock).acquire()
    assert victim.read_text() == "IMPORTANT USER DATA\nline 2\n"


def test_a_run_refuses_a_planted_lock_link_with_one_clear_error(tmp_path, cache_dir, capsys, victim):
    lock = tmp_path / "r" / V / "seed-0.lock"
    lock.parent.mkdir(parents=True)
    lock.symlink_to(victim)
    assert _run(tmp_path / "r", cache_dir) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"ncbench: error: {lock}: is a symbolic link to {victim}")
    assert victim.read_text() == "IMPORTANT USER DATA\nline 2\n"


def test_atomic_writes_never_replace_or_write_through_a_link(tmp_path, victim):
    target = tmp_path / "seed-0.json"
    target.symlink_to(victim)
    with pytest.raises(UnsafePathError, match="seed-0.json: is a symbolic link"):
        write_text_atomic(target, "{}")
    assert target.is_symlink() and victim.read_text() == "IMPORTANT USER DATA\nline 2\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_a_checkpoint_that_is_a_link_or_a_fifo_is_refused_not_followed(tmp_path, victim):
    ckpt = tmp_path / "r" / "seed-0.ckpt"
    ckpt.parent.mkdir()
    ckpt.symlink_to(victim)
    lines = []
    saver = Checkpointer(ckpt, "h", aside=tmp_path / "aside", log=lines.append)
    assert saver.where() is None and saver.load() is None
    assert "refused as unsafe to load (a symbolic link to" in lines[0]
    (moved,) = (tmp_path / "aside").iterdir()
    assert moved.is_symlink() and not os.path.lexists(ckpt)  # the link moved, not its target
    saver.save(0, {})
    assert not ckpt.is_symlink() and victim.read_text() == "IMPORTANT USER DATA\nline 2\n"

    fifo = tmp_path / "r" / "seed-1.ckpt"
    os.mkfifo(fifo)
    found = []
    reader = threading.Thread(target=lambda: found.append(Checkpointer(fifo, "h").where()), daemon=True)
    reader.start()
    reader.join(timeout=10)
    assert found == [None]  # answered at once; status used to hang here


# -- F4: set-aside names -----------------------------------------------------------------------------
def test_checkpoints_set_aside_in_the_same_second_keep_each_other(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic.time, "strftime", lambda fmt, *a: "20261204-214839")
    root = tmp_path / "r"
    paths = [root / "protocol-1/synthetic-small/noise-0.2/vanilla/vse_light/seed-0.json",
             root / "protocol-1/synthetic-small/noise-0.6/vanilla/vse_light/seed-0.json",
             root / "protocol-1/synthetic-small/noise-0.6/vanilla/vse_light/seed-0.json"]  # the same run twice
    for i, path in enumerate(paths):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.with_suffix(".ckpt").write_bytes(f"checkpoint {i}".encode())
        assert checkpointer(root, path, "h").load() is None
    kept = sorted(p.read_bytes() for p in (root / "superseded" / "checkpoints").rglob("seed-0.corrupt.*.ckpt"))
    assert kept == [b"checkpoint 0", b"checkpoint 1", b"checkpoint 2"]
    assert len(list((root / "superseded" / "checkpoints" / "protocol-1/synthetic-small/noise-0.6").rglob("*.ckpt"))) == 2


# -- F6: what kill -9 leaves -------------------------------------------------------------------------
def test_a_claimed_run_removes_the_temporary_files_a_killed_write_left(tmp_path, cache_dir, capsys, victim):
    folder = tmp_path / "r" / V
    folder.mkdir(parents=True)
    orphans = [folder / ".seed-0.ckpt.82q4b2dk.tmp", folder / ".seed-0.json.a1b2c3d4.tmp",
               folder / "..seed-0.json.pending.tmp.x9y8z7w6.tmp"]
    for p in orphans:
        p.write_bytes(b"half a file")
    others = [folder / ".seed-1.json.a1b2c3d4.tmp", folder / ".seed-0x.tmp", folder / "seed-0.notes.tmp"]
    for p in others:
        p.write_bytes(b"not ours")
    link = folder / ".seed-0.json.linked.tmp"
    link.symlink_to(victim)
    assert _run(tmp_path / "r", cache_dir) == 0
    out = capsys.readouterr().out
    assert not any(p.exists() for p in orphans)
    for p in orphans:
        assert f"removed orphan temporary file {p} left by an interrupted run" in out
    assert all(p.read_bytes() == b"not ours" for p in others)
    assert link.is_symlink() and victim.read_text() == "IMPORTANT USER DATA\nline 2\n"


def test_a_done_run_removes_the_checkpoint_and_lock_a_kill_left_beside_its_result(tmp_path, cache_dir, capsys,
                                                                                  monkeypatch):
    folder = tmp_path / "r" / V
    with monkeypatch.context() as m:  # killed between writing the result and removing the checkpoint
        m.setattr(Checkpointer, "remove", lambda self: None)
        assert _run(tmp_path / "r", cache_dir) == 0
    ckpt, lock = folder / "seed-0.ckpt", folder / "seed-0.lock"
    assert ckpt.is_file() and (folder / "seed-0.json").is_file()
    lock.write_text("vm pid 14069 since 2026-12-04T21:48:18\n")
    capsys.readouterr()

    assert _run(tmp_path / "r", cache_dir) == 0
    out = capsys.readouterr().out
    assert "already done" in out and f"removed the leftover checkpoint {ckpt}" in out
    assert sorted(p.name for p in folder.iterdir()) == ["seed-0.json"]

    # a checkpoint of another config (other --method-opt values) may still be resumed: kept
    Checkpointer(ckpt, "another config").save(0, {})
    assert _run(tmp_path / "r", cache_dir) == 0
    assert ckpt.is_file() and read(ckpt)["config_hash"] == "another config"


def test_move_aside_moves_a_link_itself(tmp_path, victim):
    link = tmp_path / "seed-0.ckpt"
    link.symlink_to(victim)
    dest = atomic.move_aside(link, tmp_path / "aside", "corrupt")
    assert dest.is_symlink() and os.readlink(dest) == str(victim) and victim.is_file()
    assert dest.name.startswith("seed-0.corrupt." + time.strftime("%Y%m%d-"))
