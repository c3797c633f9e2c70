"""Per-run locks, so concurrent workers on one results folder never train the same run twice.

A worker takes ``seed-<s>.lock`` beside the run's result with ``flock`` before training it and
holds it until the result is written; then it deletes the file while still holding the lock, so a
finished results folder holds results, not lock files. The kernel releases the lock when the process
dies, even by SIGKILL, so a crashed worker never leaves a stale lock behind (only its file, which
records who held it last: host, pid, time, for ``ncbench status``). Because a lock file can be
deleted, a process that obtains the lock checks that the path still names the file it locked, and
starts over otherwise (the usual protocol for removable ``flock`` files). ``flock`` works on local file systems and on
NFS (Linux maps it to POSIX locks through the NFS lock manager).

In a shared results folder anyone may plant ``seed-<s>.lock -> ~victim/.bashrc``: the lock file is
opened without following links and must be a regular file with one link (``atomic.open_regular``),
so such a link is refused with an error naming it (``UnsafePathError``), never truncated or written;
``is_locked`` (``ncbench status``) neither follows nor deletes it.
"""

from __future__ import annotations

import fcntl
import os
import socket
import stat
import time
from pathlib import Path

from .atomic import UnsafePathError, open_regular


class RunLock:
    """An exclusive, non-blocking lock on one run."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self, record: bool = True) -> bool:
        """Take the lock; False if another process holds it. ``record`` writes who holds it.
        UnsafePathError when the path is a link or not a regular file (see the module docstring)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = open_regular(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            if _same_file(fd, self.path):
                break
            os.close(fd)  # the holder deleted the file we opened: lock the one at the path now
        if record:
            os.ftruncate(fd, 0)
            os.write(fd, f"{socket.gethostname()} pid {os.getpid()} since {time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode())
        self._fd = fd
        return True

    def release(self) -> None:
        """Delete the lock file (still holding the lock, so nobody can have it), then let go."""
        if self._fd is not None:
            if _same_file(self._fd, self.path):
                self.path.unlink()
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` itself (not a link's target) still names the open file ``fd``."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (held.st_dev, held.st_ino)


def is_locked(path: Path) -> str | None:
    """Who holds the lock on ``path`` (its recorded holder), or None when nobody does. A link or
    other foreign file at ``path`` is nobody's lock (a run refuses it with an error): None, and it
    is left where it is."""
    path = Path(path)
    lock = RunLock(path)
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return None
        if lock.acquire(record=False):
            lock.release()
            return None
    except (FileNotFoundError, UnsafePathError):
        return None
    try:
        fd = open_regular(path)
    except (OSError, UnsafePathError):
        return "another process"
    with os.fdopen(fd, "rb") as f:
        return f.read(4096).decode("utf-8", "replace").strip() or "another process"
